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
