"""The X-Streamer model folder: every trained part of a talking character, loaded together.

Layout (``assets/xstreamer-tiny`` is one)::

    config.json          {"pipeline": "xstreamer", "actor": ..., "frames": ..., "audio_codec": ..., "fps": 25, ...}
    model.safetensors    fp16 weights under the prefixes actor., frames., audio_codec.
    thinker/             a Hugging Face causal LM folder (model + tokenizer), loaded with AutoModelForCausalLM
    portraits/*.png      reference portraits for the demo's picker (held-out characters); the first is the default

The Thinker is a plain Hugging Face folder so that any local causal LM can replace it (``--set thinker=DIR``); the
Actor's cross-attention input width is then that model's hidden size, so a replacement Thinker needs an Actor trained
against it (the recipe's ``--thinker DIR``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipelines.xstreamer.actor import Actor, ActorConfig
from streamrt.audio_codec import AudioCodec, AudioCodecConfig
from streamrt.errors import ModelLoadError
from streamrt.video.codec import CodecConfig, FrameCodec
from streamrt.video.folder import load_into, read_folder, resolve_model, save_folder

NAME = "xstreamer"
FPS = 25.0
SAMPLE_RATE = 16_000
SIZE = 128
THINKER = "thinker"
PORTRAITS = "portraits"


@dataclass
class XStreamerModel:
    actor: Actor
    frames: FrameCodec
    audio_codec: AudioCodec
    folder: Path
    config: dict

    @property
    def thinker_folder(self) -> Path:
        return self.folder / THINKER

    def portraits(self) -> list[Path]:
        return sorted((self.folder / PORTRAITS).glob("*.png"))

    def save(self, folder: Path, extra: dict | None = None) -> None:
        config = {
            "actor": self.actor.cfg.to_dict(),
            "frames": self.frames.cfg.to_dict(),
            "audio_codec": self.audio_codec.cfg.to_dict(),
            "fps": FPS,
            "sample_rate": SAMPLE_RATE,
            "size": SIZE,
            **(extra or {}),
        }
        save_folder(
            folder,
            NAME,
            config,
            {"actor": self.actor, "frames": self.frames, "audio_codec": self.audio_codec},
        )


def load_model(model: str | None, device: str = "cpu") -> XStreamerModel:
    """The committed default (``model=None``) or a folder written by ``streamrt train xstreamer``."""
    folder = resolve_model(NAME, model)
    config, parts = read_folder(folder, NAME)
    try:
        actor = Actor(ActorConfig.from_dict(config["actor"]))
        frames = FrameCodec(CodecConfig.from_dict(config["frames"]))
        audio_codec = AudioCodec(AudioCodecConfig.from_dict(config["audio_codec"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelLoadError(f"{folder}/config.json is not an xstreamer config: {exc}") from exc
    for name, module in (("actor", actor), ("frames", frames), ("audio_codec", audio_codec)):
        load_into(module, parts.get(name), name, folder)
    if not (folder / THINKER).is_dir():
        raise ModelLoadError(
            f"{folder} has no {THINKER}/ folder (the Thinker); retrain with `streamrt train {NAME}`"
        )
    for m in (actor, frames, audio_codec):
        m.to(device).eval().requires_grad_(False)
    return XStreamerModel(actor, frames, audio_codec, folder, config)
