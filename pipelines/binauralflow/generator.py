"""The ``binauralflow`` generator: mono speech in, binaural (left, right) speech out, at 48 kHz, streaming.

Positions are parameters: ``source_position`` (x, y, z metres in the listener's frame: facing +x, +y left, +z up),
optionally ``source_orientation``, or whole 7-DoF ``source_pose`` / ``listener_pose`` strings, all live (the WebRTC
data channel can move the source); or a ``trajectory`` CSV (see ``poses``), which takes precedence and is read at
``prepare``. Poses are evaluated per STFT frame.

Output chunks follow the input chunks: the output for an input chunk (same pts, same length, two channels) is emitted
as soon as all of its samples are final, i.e. ``LATENCY_SAMPLES`` (511) samples after its last sample arrived.
"""

from __future__ import annotations

import json
import logging
from collections import deque
from fractions import Fraction
from pathlib import Path
from typing import Any, Self

import torch

from pipelines.binauralflow.flow import Schedule
from pipelines.binauralflow.model import CausalUNet, UNetConfig
from pipelines.binauralflow.poses import (
    Trajectory,
    load_trajectory,
    make_pose,
    parse_numbers,
    parse_pose,
)
from pipelines.binauralflow.streaming import LATENCY_SAMPLES, SAMPLE_RATE, BinauralStreamer, frame_times
from streamrt.errors import ModelLoadError, ParamError
from streamrt.frames import AudioFrame, DataFrame
from streamrt.generator import Generator, GeneratorSpec, MediaKind
from streamrt.params import Param, ParamSet

log = logging.getLogger(__name__)

DEFAULT_MODEL = Path(__file__).resolve().parents[2] / "assets" / "binauralflow-small"
WEIGHTS = "model.safetensors"
CONFIG = "config.json"
NOMINAL_CHUNK = 480  # 10 ms: the push size the latency is counted in; any size is accepted

PARAMS = ParamSet(
    (
        Param(
            "source_position",
            str,
            "1,0,0",
            help="speaker x,y,z in metres (listener frame: +x front, +y left)",
        ),
        Param("source_orientation", str, "1,0,0,0", help="speaker rotation quaternion qw,qx,qy,qz"),
        Param(
            "source_pose",
            str,
            None,
            optional=True,
            help="speaker 7-DoF pose x,y,z,qw,qx,qy,qz (overrides source_position/orientation)",
        ),
        Param("listener_pose", str, "0,0,0,1,0,0,0", help="listener 7-DoF pose x,y,z,qw,qx,qy,qz"),
        Param(
            "trajectory",
            str,
            None,
            optional=True,
            path=True,
            live=False,
            help="CSV of time_s + speaker and listener 7-DoF poses per row (overrides the constant poses)",
        ),
        Param(
            "nfe",
            int,
            6,
            live=False,
            minimum=2,
            maximum=64,
            help="network evaluations (early skip: the last nfe of steps)",
        ),
        Param(
            "steps",
            int,
            12,
            live=False,
            minimum=2,
            maximum=64,
            help="evaluations of the full midpoint schedule",
        ),
        Param("seed", int, 0, live=False, minimum=0, help="seed of the per-frame noise"),
    )
)


def read_model(folder: str | Path | None = None, checkpoint: str | Path | None = None) -> CausalUNet:
    """A CausalUNet from a folder (config.json + model.safetensors), optionally with another safetensors file."""
    from safetensors.torch import load_file

    folder = Path(folder) if folder is not None else DEFAULT_MODEL
    config_path = folder / CONFIG
    weights = Path(checkpoint) if checkpoint is not None else folder / WEIGHTS
    if not config_path.is_file() or not weights.is_file():
        raise ModelLoadError(
            f"no BinauralFlow model in {folder} (needs {CONFIG} and {WEIGHTS}); train the default with "
            "`streamrt train binauralflow` or pass --model FOLDER"
        )
    if weights.suffix != ".safetensors":
        raise ModelLoadError(f"{weights}: BinauralFlow weights load from .safetensors files only")
    try:
        config = UNetConfig.from_dict(json.loads(config_path.read_text())["unet"])
        net = CausalUNet(config)
        state = load_file(str(weights))
        net.load_state_dict({k: v.to(torch.float32) for k, v in state.items()})
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise ModelLoadError(f"cannot load BinauralFlow weights from {weights}: {exc}") from exc
    return net.eval()


class BinauralFlowGenerator(Generator):
    spec = GeneratorSpec(
        name="binauralflow",
        # exact streaming: any chunking gives the same output, so a session that fell behind may join chunks
        joins_audio=True,
        # its 4-24-channel convolutions run faster on one thread than split over two (bench binauralflow --threads)
        cpu_threads=1,
        description="BinauralFlow: binaural speech from mono audio and speaker/listener poses (flow matching, "
        "causal U-Net, streaming with a buffer bank).",
        inputs=(MediaKind.AUDIO,),
        outputs=(MediaKind.AUDIO,),
        params=PARAMS,
        sample_rate=SAMPLE_RATE,
        channels=1,
        input_chunk=NOMINAL_CHUNK,
        output_chunk=NOMINAL_CHUNK,
        latency=LATENCY_SAMPLES,
        # in nominal 480-sample chunks: an output sample depends on input up to 511 samples ahead (the STFT window)
        lookahead=2,
    )

    def __init__(self, net: CausalUNet | None = None) -> None:
        super().__init__()
        if net is None:
            raise ModelLoadError("BinauralFlowGenerator needs a model; use BinauralFlowGenerator.load()")
        self.net = net.eval()
        self._streamer: BinauralStreamer | None = None
        self._trajectory: Trajectory | None = None
        self._constant = torch.zeros(14)
        # (pts, samples, time base) of the input chunks whose output is not out yet
        self._pending: deque[tuple[int, int, Fraction]] = deque()
        self._out = torch.zeros(2, 0)

    @classmethod
    def load(
        cls,
        *,
        model: str | None = None,
        checkpoint: str | None = None,
        device: str = "cpu",
        dtype: str | None = None,
    ) -> Self:
        if device != "cpu":
            log.info("binauralflow runs on the CPU; device %s ignored", device)
        return cls(read_model(model, checkpoint))

    # ------------------------------------------------------------------ parameters
    def on_prepare(self) -> None:
        schedule = Schedule(steps=self.params["steps"], nfe=self.params["nfe"])
        path = self.params["trajectory"]
        self._trajectory = load_trajectory(path) if path else None
        self._constant = self._constant_poses(self.params)
        self._streamer = BinauralStreamer(self.net, schedule, self.params["seed"], self._poses)
        self._pending.clear()
        self._out = torch.zeros(2, 0)

    def on_update(self, changed: dict[str, Any]) -> None:
        self._constant = self._constant_poses(self.params)

    @staticmethod
    def _constant_poses(params: dict[str, Any]) -> torch.Tensor:
        if params["source_pose"]:
            speaker = parse_pose(params["source_pose"], "source_pose")
        else:
            position = parse_numbers(params["source_position"], 3, "source_position")
            quat = parse_numbers(params["source_orientation"], 4, "source_orientation")
            speaker = make_pose(position, quat, "source_orientation")
        listener = parse_pose(params["listener_pose"], "listener_pose")
        if torch.linalg.vector_norm(speaker[:3] - listener[:3]) < 1e-3:
            raise ParamError(
                "the source and the listener are at the same point; move the source (source_position)"
            )
        return torch.cat([speaker, listener])

    def _poses(self, frames: torch.Tensor) -> torch.Tensor:
        if self._trajectory is not None:
            return self._trajectory.at(frame_times(frames))
        return self._constant.expand(len(frames), -1)

    # ------------------------------------------------------------------ streaming
    def process(self, frame: DataFrame) -> list[DataFrame]:
        assert isinstance(frame, AudioFrame) and self._streamer is not None
        if frame.samples:
            self._pending.append((frame.pts, frame.samples, frame.time_base))
        self._out = torch.cat([self._out, self._streamer.push(frame.data.to(torch.float32))], dim=-1)
        return self._emit(final=False)

    def flush(self) -> list[DataFrame]:
        self._require_prepared()
        if self._streamer is None or not self._pending:
            return []
        self._out = torch.cat([self._out, self._streamer.flush()], dim=-1)
        outs = self._emit(final=True)
        # the stream may go on after a flush (Generator.flush): a fresh streamer continues from here
        self._streamer.reset()
        return outs

    def _emit(self, *, final: bool) -> list[DataFrame]:
        outs: list[DataFrame] = []
        while self._pending and (final or self._out.shape[-1] >= self._pending[0][1]):
            pts, n, time_base = self._pending.popleft()
            data, self._out = self._out[:, :n], self._out[:, n:]
            outs.append(
                AudioFrame(data=data.contiguous(), sample_rate=SAMPLE_RATE, pts=pts, time_base=time_base)
            )
        return outs
