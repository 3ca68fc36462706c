"""A tiny X-Streamer model folder for the tests: a Thinker trained for a few steps on a handful of turns, random
Actor and codecs (tests of mechanisms, never of quality)."""

from __future__ import annotations

import random
from pathlib import Path

import torch

PAIRS = [
    ("hello there", "hi, it is nice to meet you."),
    ("what is your name?", "my name is ada."),
    ("what colour is the sky?", "the sky is blue today."),
    ("how are you?", "i am fine, thank you."),
    ("goodbye", "bye, see you soon."),
]


def tiny_xstreamer_folder(root: Path) -> Path:
    from pipelines.xstreamer.actor import Actor, ActorConfig
    from pipelines.xstreamer.model import PORTRAITS, SIZE, THINKER, XStreamerModel
    from pipelines.xstreamer.thinker import Thinker, train_thinker
    from streamrt.animation.folder import write_image
    from streamrt.audio_codec import AudioCodec, AudioCodecConfig
    from streamrt.faces import portrait, sample_identity
    from streamrt.video.codec import CodecConfig, FrameCodec

    folder = root / "xstreamer-tiny-test"
    if (folder / "config.json").is_file():
        return folder
    torch.manual_seed(0)
    train_thinker(PAIRS, folder / THINKER, steps=20, batch=4, seed=0)
    thinker = Thinker.load(folder / THINKER)
    cfg = ActorConfig(
        dim=32,
        layers=1,
        heads=2,
        text_vocab=len(thinker.tokenizer),
        thinker_dim=thinker.hidden_size,
        levels=2,
        cache_chunks=2,
    )
    model = XStreamerModel(
        Actor(cfg), FrameCodec(CodecConfig(width=8)), AudioCodec(AudioCodecConfig()), folder, {}
    )
    model.save(folder)
    (folder / PORTRAITS).mkdir(exist_ok=True)
    for k in range(2):
        image = portrait(sample_identity(random.Random(k), "held_out"), SIZE)
        write_image(
            folder / PORTRAITS / f"{k:02d}.png", image.mul(255).round().permute(1, 2, 0).to(torch.uint8)
        )
    return folder
