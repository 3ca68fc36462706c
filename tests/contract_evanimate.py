"""A tiny random EvAnimate model folder (written once per test session) and EvAnimate's contract cases.
Random weights exist only here, in tests: they are never a default."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from contract import Case, Workspace

from streamrt.generator import Generator, MediaKind

SIZE = 32
_FOLDERS: dict[str, Path] = {}


def tiny_evanimate(root: Path, seed: int = 0) -> Path:
    """A model folder in the layout the recipe writes (RAIN's module names + the event settings), tiny sizes. The
    guider's zero-initialised output gets random weights so that the event path is not cut off. (Random weights
    say nothing about following the motion: those tests use the trained default.)"""
    from pipelines.evanimate.conditioning import EventSettings
    from streamrt.animation.backbone import AnimationBackbone, BackboneConfig
    from streamrt.animation.folder import save_model
    from streamrt.animation.unet import UNetConfig
    from streamrt.puppets import PuppetSpec, make_puppet_dataset, still
    from streamrt.video.codec import CodecConfig
    from streamrt.video.training import train_codec

    key = f"{root}-{seed}"
    if key not in _FOLDERS:
        torch.manual_seed(seed)
        cfg = BackboneConfig(
            size=SIZE,
            condition_channels=3,
            guider_channels=(4, 8, 8, 16),
            unet=UNetConfig(block_out_channels=(16, 32), cross_attention_dim=32, motion_heads=2),
            codec=CodecConfig(latent_channels=4, width=8, levels=3),
        )
        backbone = AnimationBackbone(cfg)
        # A random codec decodes every latent to nearly one picture, so outputs would not depend on the input and
        # several checks would prove nothing: a few reconstruction steps on puppet frames make it a decoder.
        codec, _ = train_codec(make_puppet_dataset(2, 4, SIZE, seed=seed).clips, cfg.codec, 20, 2, 1e-2, seed)
        backbone.codec.load_state_dict(codec.state_dict())
        with torch.no_grad():
            backbone.pose_guider.conv_out.weight.normal_(0, 3.0)
        folder = root / f"tiny-evanimate-{seed}"
        settings = EventSettings(density=150, saturation=2.0)
        save_model(folder, "evanimate", backbone, still(PuppetSpec(), SIZE), {"events": settings.to_dict()})
        _FOLDERS[key] = folder
    return _FOLDERS[key]


def _built(params: dict) -> callable:
    def build(ws: Workspace) -> Generator:
        from pipelines.evanimate import EvAnimateGenerator

        gen = EvAnimateGenerator.load(model=str(tiny_evanimate(ws.root)))
        gen.prepare(params)
        return gen

    return build


def _recorded_events(ws: Workspace) -> Path:
    """An event file (npz) of random events over 20 s on a 64x48 sensor."""
    path = ws.root / "evanimate-events.npz"
    if not path.exists():
        rng = np.random.default_rng(0)
        n = 40_000
        np.savez(
            path,
            t=np.sort(rng.uniform(0, 20, n)),
            x=rng.integers(0, 64, n),
            y=rng.integers(0, 48, n),
            p=rng.choice([-1, 1], n),
        )
    return path


def _built_recorded(ws: Workspace) -> Generator:
    from pipelines.evanimate import EvAnimateGenerator

    gen = EvAnimateGenerator.load(model=str(tiny_evanimate(ws.root)))
    gen.prepare({"events": str(_recorded_events(ws)), "sensor": "64x48"})
    return gen


def cases() -> list[Case]:
    return [
        Case(
            "evanimate-video",
            "evanimate",
            _built({}),
            MediaKind.VIDEO,
            out_size=(SIZE, SIZE),
            frames=40,  # the lookahead check needs outputs before input frames // 2 - 15
            long_frames=110,
        ),
        Case(
            "evanimate-recorded-events",
            "evanimate",
            _built_recorded,
            None,
            out_size=(SIZE, SIZE),
            frames=40,  # the lookahead check needs outputs before input frames // 2 - 15
            long_frames=110,
        ),
    ]
