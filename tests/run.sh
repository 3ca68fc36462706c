#!/usr/bin/env bash
# The README's test command. On a fresh machine it sets up everything the tests need (a venv with the CPU build of
# torch, the package with its dev extras, the Debian packages below), then lints and runs the suite.
# Extra arguments go to pytest, e.g. `bash tests/run.sh -k stream_batch`.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
# shellcheck disable=SC1091
. .venv/bin/activate
# torch first and pinned: the CPU wheel 2.13.0 (a bare `torch` requirement would pull a multi-GB CUDA build).
pip install --quiet --disable-pip-version-check torch==2.13.0
pip install --quiet --disable-pip-version-check -e '.[dev,gradio]'

# Debian packages the tests use: chromium (browser tests), espeak-ng and festival (speech for the audio and
# talking-head recipes) and libopenal-data (the HRTF set BinauralFlow's simulator reads).
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v espeak-ng >/dev/null 2>&1 || missing+=(espeak-ng)
command -v festival >/dev/null 2>&1 || missing+=(festival festvox-kallpc16k)
# the second festival voice of the held-out sets (streamrt/speech.py: FESTIVAL_VOICES)
[ -d /usr/share/festival/voices/us/cmu_us_slt_arctic_hts ] || missing+=(festvox-us-slt-hts)
[ -e /usr/share/openal/hrtf/default-48000.mhr ] || missing+=(libopenal-data)
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        echo "tests/run.sh: missing Debian packages; install them with: sudo apt-get install ${missing[*]}" >&2
    fi
fi

ruff check .
ruff format --check .
python -m pytest -q "$@"
