"""Tiny random model folders of the text-to-video generators (written once per test session), and the contract
cases built on them. Random weights exist only here, in tests: they are never a default."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from contract import Case, Workspace

from streamrt.generator import Generator

SIZE = 32  # pixels; the codec's 8x downsampling gives 4x4 latents
_FOLDERS: dict[tuple[str, str], Path] = {}


def _text_and_codec():
    from streamrt.synthetic_video import all_captions
    from streamrt.video.codec import CodecConfig, FrameCodec
    from streamrt.video.text import TextConfig, WordTextEncoder, build_vocab

    tc = TextConfig(vocab=build_vocab(all_captions()), dim=16, max_words=12, layers=1, heads=2)
    cc = CodecConfig(latent_channels=4, width=8, levels=3)
    return tc, WordTextEncoder(tc), cc, FrameCodec(cc)


def tiny_dit_config():
    from streamrt.video.dit import DiTConfig

    return DiTConfig(
        in_dim=4, out_dim=4, dim=24, ffn_dim=48, num_heads=2, num_layers=2, text_dim=16, freq_dim=32
    )


def tiny_rolling_forcing(root: Path, rolling: dict[str, Any] | None = None, seed: int = 0) -> Path:
    """A Rolling Forcing folder with the published window settings (5 blocks of 3 frames, 21 attended, 24 cached)
    and a tiny transformer."""
    from pipelines.rolling_forcing.model import RollingConfig
    from pipelines.rolling_forcing.pipeline import NAME, folder_config
    from streamrt.video.dit import VideoDiT
    from streamrt.video.folder import save_folder

    key = (str(root), f"rf-{rolling}-{seed}")
    if key not in _FOLDERS:
        torch.manual_seed(seed)
        dc = tiny_dit_config()
        tc, text, cc, codec = _text_and_codec()
        rc = RollingConfig(**(rolling or {}))
        folder = root / f"tiny-rolling-forcing-{len(_FOLDERS)}"
        save_folder(
            folder,
            NAME,
            folder_config(dc, tc, cc, rc, SIZE),
            {"transformer": VideoDiT(dc), "text": text, "codec": codec},
        )
        _FOLDERS[key] = folder
    return _FOLDERS[key]


def built(load: Callable[[Workspace], Generator], params: dict[str, Any]) -> Callable[[Workspace], Generator]:
    def build(ws: Workspace) -> Generator:
        gen = load(ws)
        gen.prepare(params)
        return gen

    return build


def contract_params(cases: list[Case], generator_cls: type[Generator]) -> list:
    """(check, case) pairs of every applicable contract check, for the generator's own runner (used until the
    coordinator registers it; afterwards test_contract.py runs the same cases)."""
    import contract
    import pytest

    out = []
    for case in cases:
        case.spec = generator_cls.spec
        for check in contract.CHECKS:
            if contract.applies(check, case):
                out.append(pytest.param(check, case, id=f"{case.id}-{check.__name__.removeprefix('check_')}"))
    return out


def tiny_streamdit(root: Path, streamdit: dict[str, Any] | None = None, seed: int = 0) -> Path:
    from pipelines.streamdit.pipeline import NAME, StreamDiTConfig, folder_config
    from streamrt.video.dit import VideoDiT
    from streamrt.video.folder import save_folder

    key = (str(root), f"sd-{streamdit}-{seed}")
    if key not in _FOLDERS:
        torch.manual_seed(seed)
        dc = tiny_dit_config()
        tc, text, cc, codec = _text_and_codec()
        cfg = StreamDiTConfig(
            **(
                streamdit
                or {
                    "ref_frames": 1,
                    "num_chunks": 3,
                    "chunk_frames": 2,
                    "micro_steps": 1,
                    "window": [3, 1, 1],
                }
            )
        )
        folder = root / f"tiny-streamdit-{len(_FOLDERS)}"
        save_folder(
            folder,
            NAME,
            folder_config(dc, tc, cc, cfg, SIZE),
            {"transformer": VideoDiT(dc), "text": text, "codec": codec},
        )
        _FOLDERS[key] = folder
    return _FOLDERS[key]


def tiny_unet():
    from diffusers import UNet3DConditionModel

    return UNet3DConditionModel(
        sample_size=4, in_channels=4, out_channels=4,
        down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"), up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"),
        block_out_channels=(16, 16), layers_per_block=1, norm_num_groups=8, cross_attention_dim=16, attention_head_dim=8,
    )  # fmt: skip


def tiny_streamingt2v(root: Path, seed: int = 0, randomize: bool = True) -> Path:
    """A StreamingT2V folder: tiny UNet3D base; CAM/APM with their zero initialisations perturbed (``randomize``),
    so that the conditioning actually acts in the tests."""
    from pipelines.streamingt2v.model import StreamingT2VConfig, StreamingT2VModel
    from pipelines.streamingt2v.pipeline import NAME, folder_config
    from streamrt.video.folder import save_folder

    key = (str(root), f"st-{seed}-{randomize}")
    if key not in _FOLDERS:
        torch.manual_seed(seed)
        tc, text, cc, codec = _text_and_codec()
        cfg = StreamingT2VConfig(
            chunk_frames=4,
            cond_frames=2,
            apm_tokens=2,
            cam_heads=2,
            steps=2,
            guidance_scale=1.0,
            text_tokens=tc.max_words,
        )
        unet = tiny_unet()
        model = StreamingT2VModel(unet, cfg)
        if randomize:
            with torch.no_grad():
                for m in (model.cam, model.apm):
                    for name, p in m.named_parameters():
                        if name.endswith(("proj_out.weight", "frame_encoder.2.weight")) or name == "alphas":
                            p.copy_(torch.randn_like(p) * 0.5)
        folder = root / f"tiny-streamingt2v-{len(_FOLDERS)}"
        save_folder(
            folder,
            NAME,
            folder_config(unet.config, tc, cc, cfg, SIZE),
            {"unet": unet, "cam": model.cam, "apm": model.apm, "text": text, "codec": codec},
        )
        _FOLDERS[key] = folder
    return _FOLDERS[key]
