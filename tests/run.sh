#!/usr/bin/env bash
# The README's test command. On a fresh machine it sets up everything the tests need (a venv with the CPU build of
# torch, the package with its dev extras, Debian's chromium for the browser tests), then lints and runs the suite.
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

if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
        echo "tests/run.sh: chromium is missing; install it with: sudo apt-get install chromium" >&2
    fi
fi

ruff check .
ruff format --check .
python -m pytest -q "$@"
