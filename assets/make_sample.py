"""Make ``assets/sample.mp4``: the bundled clip that the README's render command runs on.

3 s, 256x256, 30 fps, h264 + aac. The picture is webcam-like: a slow pan and zoom over scikit-image's ``astronaut``
photograph (a face, shoulders, a flag: real structure for img2img to keep) with a soft ball moving across it. The
sound is a short spoken phrase from ``espeak-ng`` when it is installed (Debian: ``apt-get install -y espeak-ng``),
otherwise a soft two-note tone.

Run from the repository root::

    python assets/make_sample.py            # writes assets/sample.mp4
    python assets/make_sample.py -o x.mp4   # somewhere else

It needs the dev extra (scikit-image) and is deterministic apart from the encoder's version.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import subprocess
import sys
import tempfile
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from streamrt.frames import AudioFrame, VideoFrame  # noqa: E402
from transport.files import AudioSpec, MediaWriter, open_input  # noqa: E402

log = logging.getLogger(__name__)

SIZE = 256
FPS = 30
SECONDS = 3
SAMPLE_RATE = 48_000
PHRASE = "Hello from stream R T."


def picture(index: int, frames: int, source: torch.Tensor) -> torch.Tensor:
    """Frame ``index``: a crop that pans right and zooms in over time, resized to SIZE, with a moving ball."""
    _, h, w = source.shape  # (3, H, W) float in [0, 1]
    t = index / max(1, frames - 1)
    ease = 0.5 - 0.5 * np.cos(np.pi * t)  # smooth start and stop, like a hand-held camera settling
    crop = int(round(h * (0.85 - 0.25 * ease)))  # zoom from 85 % of the image to 60 %
    top = int(round((h - crop) * 0.25))
    left = int(round((w - crop) * (0.2 + 0.6 * ease)))
    view = source[:, top : top + crop, left : left + crop].unsqueeze(0)
    view = F.interpolate(view, size=(SIZE, SIZE), mode="bilinear", antialias=True, align_corners=False)[0]
    # A soft orange ball crossing the frame on an arc.
    yy, xx = torch.meshgrid(torch.arange(SIZE), torch.arange(SIZE), indexing="ij")
    cx = 30 + (SIZE - 60) * t
    cy = SIZE * 0.75 - 60 * np.sin(np.pi * t)
    dist = ((xx - cx) ** 2 + (yy - cy) ** 2).float().sqrt()
    alpha = (1 - (dist - 18).clamp(0, 3) / 3).clamp(0, 1)  # radius 18 px with a 3 px soft edge
    ball = torch.tensor([1.0, 0.55, 0.1]).view(3, 1, 1)
    return view * (1 - alpha) + ball * alpha


def speech(seconds: float) -> np.ndarray:
    """(1, samples) float32 mono at SAMPLE_RATE: the phrase from espeak-ng, or a soft tone without it."""
    total = int(seconds * SAMPLE_RATE)
    out = np.zeros((1, total), np.float32)
    espeak = shutil.which("espeak-ng")
    if espeak:
        with tempfile.TemporaryDirectory() as tmp:
            wav = Path(tmp) / "speech.wav"
            subprocess.run([espeak, "-v", "en-us", "-s", "150", "-w", str(wav), PHRASE], check=True)
            reader = open_input(wav, need_video=False)
            chunks = [f for f in reader.frames(video=False) if isinstance(f, AudioFrame)]
            reader.close()
            voice = torch.cat([c.data for c in chunks], dim=1).mean(0, keepdim=True)  # (1, samples)
            rate = chunks[0].sample_rate
            voice = F.interpolate(voice[None], scale_factor=SAMPLE_RATE / rate, mode="linear")[0].numpy()
            start = int(0.3 * SAMPLE_RATE)  # speech begins shortly after the picture
            n = min(voice.shape[1], total - start)
            out[:, start : start + n] = 0.8 * voice[:, :n]
            return out
    log.warning("espeak-ng not found; using a tone (apt-get install -y espeak-ng for speech)")
    t = np.arange(total) / SAMPLE_RATE
    env = np.minimum(1, np.minimum(t, seconds - t) / 0.2)  # 200 ms fades
    out[0] = (0.08 * (np.sin(2 * np.pi * 220 * t) + np.sin(2 * np.pi * 330 * t)) * env).astype(np.float32)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", default=str(Path(__file__).with_name("sample.mp4")))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    from skimage import data

    source = torch.from_numpy(data.astronaut()).permute(2, 0, 1).float() / 255  # (3, 512, 512)
    frames = FPS * SECONDS
    time_base = Fraction(1, FPS)
    audio = speech(SECONDS)
    # crf 20: the photo's detail survives and the clip stays well under 400 KB.
    with MediaWriter(
        args.output,
        width=SIZE,
        height=SIZE,
        rate=FPS,
        time_base=time_base,
        audio=AudioSpec(SAMPLE_RATE, 1),
        video_options={"crf": "20", "preset": "slow"},
    ) as writer:
        chunk = SAMPLE_RATE // FPS
        for i in range(frames):
            writer.write(VideoFrame.from_float(picture(i, frames, source), pts=i, time_base=time_base))
            block = torch.from_numpy(audio[:, i * chunk : (i + 1) * chunk])
            writer.write(AudioFrame(data=block, sample_rate=SAMPLE_RATE, pts=i * chunk))
    size = Path(args.output).stat().st_size
    log.info("wrote %s (%d frames, %.1f KB)", args.output, frames, size / 1024)
    return 0


if __name__ == "__main__":
    sys.exit(main())
