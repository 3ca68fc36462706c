"""The generator contract: the plug every streaming generator fits.

Life cycle::

    gen = SomeGenerator.load(model=None, checkpoint=None, device="cpu")   # default embedded weights
    gen.prepare({"prompt": "..."})        # validate params, allocate per-stream state
    outs = gen.push(frame)                # zero or more output frames per input chunk
    outs = gen.pull(pts, time_base)       # generators that run without input produce on demand
    gen.update({"prompt": "..."})         # live parameters, applied at this point of the stream
    outs = gen.flush()                    # end of stream: everything still in flight comes out
    gen.reset()                           # a new stream, weights kept
    gen.close()

All state lives in the generator object. A generator is used from one thread at a time (the session's worker), so it
needs no locks of its own.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, ClassVar, Self

from streamrt.errors import InputError, ParamError
from streamrt.frames import AudioFrame, DataFrame, TextFrame, VideoFrame
from streamrt.params import ParamSet


class MediaKind(enum.StrEnum):
    VIDEO = "video"
    AUDIO = "audio"
    TEXT = "text"


_FRAME_KIND = {VideoFrame: MediaKind.VIDEO, AudioFrame: MediaKind.AUDIO, TextFrame: MediaKind.TEXT}


def kind_of(frame: DataFrame) -> MediaKind:
    return _FRAME_KIND[type(frame)]


@dataclass(frozen=True)
class GeneratorSpec:
    """What a generator consumes and produces, and how.

    ``latency`` is the algorithmic delay in input chunks (frames, or samples for audio): output for input i is emitted
    at the latest when input ``i + latency`` is pushed. ``lookahead`` is how many future chunks an output may depend on
    (0 = causal). The shared contract tests check both.
    """

    name: str
    description: str
    inputs: tuple[MediaKind, ...]
    outputs: tuple[MediaKind, ...]
    params: ParamSet = field(default_factory=ParamSet)
    # Input is optional: without it the generator runs on ``pull`` (e.g. txt2img).
    input_optional: bool = False
    # Video: width and height must be multiples of this; audio: the sample rate it works at.
    size_multiple: int = 1
    sample_rate: int | None = None
    channels: int | None = None
    # Samples (audio) or frames (video) per push and per output chunk.
    input_chunk: int = 1
    output_chunk: int = 1
    latency: int = 0
    lookahead: int = 0
    # Intra-op threads the generator runs fastest with on a CPU, when fewer than torch's default (one per core):
    # small convolutions lose more to splitting across threads than they gain. ``render`` uses it unless the user
    # set OMP_NUM_THREADS; None: torch's default.
    cpu_threads: int | None = None
    # The output does not depend on how the audio input is cut into pushes (exact streaming), so a session that has
    # fallen behind may join the audio frames waiting in its queue into one push (``Session``): larger chunks cost
    # less per second of audio, and the session catches up instead of falling further behind.
    joins_audio: bool = False

    def describe(self) -> dict[str, Any]:
        """JSON-friendly summary (for ``streamrt pipelines`` and ``GET /api/pipelines``)."""
        return {
            "name": self.name,
            "description": self.description,
            "inputs": [k.value for k in self.inputs],
            "outputs": [k.value for k in self.outputs],
            "input_optional": self.input_optional,
            "size_multiple": self.size_multiple,
            "sample_rate": self.sample_rate,
            "channels": self.channels,
            "input_chunk": self.input_chunk,
            "output_chunk": self.output_chunk,
            "latency": self.latency,
            "lookahead": self.lookahead,
            "cpu_threads": self.cpu_threads,
            "joins_audio": self.joins_audio,
            "params": self.params.json_schema(),
        }


class Generator(abc.ABC):
    """Base class of every streaming generator."""

    spec: ClassVar[GeneratorSpec]

    def __init__(self) -> None:
        self.params: dict[str, Any] = self.spec.params.defaults()
        self._prepared = False

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(
        cls,
        *,
        model: str | None = None,
        checkpoint: str | None = None,
        device: str = "cpu",
        dtype: str | None = None,
    ) -> Self:
        """Build the generator with its weights: the embedded default, a local ``model`` folder or a hub id
        (online only), optionally overridden by a ``checkpoint`` file (safetensors, or torch with weights_only)."""
        if model or checkpoint:
            raise ParamError(f"{cls.spec.name} has no weights; --model/--checkpoint do not apply")
        return cls()

    # ------------------------------------------------------------------ stream life cycle
    def prepare(self, params: Mapping[str, Any] | None = None) -> None:
        """Validate parameters and allocate per-stream state. Calling it again starts a new stream."""
        self.params = self.spec.params.resolve(params)
        self._prepared = True
        self.on_prepare()

    def update(self, params: Mapping[str, Any]) -> None:
        """Change live parameters mid-stream."""
        values = self.spec.params.validate(params, live_only=True)
        self.params.update(values)
        self.on_update(values)

    def reset(self) -> None:
        """Start a new stream with the current parameters, keeping weights."""
        self.prepare(self.params)

    def push(self, frame: DataFrame) -> list[DataFrame]:
        """Feed one input chunk; returns the output chunks that are ready."""
        self._require_prepared()
        self.check_input(frame)
        return self.process(frame)

    def pull(self, pts: int, time_base: Fraction) -> list[DataFrame]:
        """Produce without input (generators whose input is optional or absent)."""
        self._require_prepared()
        if self.spec.inputs and not self.spec.input_optional:
            raise InputError(
                f"{self.spec.name} needs {'/'.join(self.spec.inputs)} input; give it an input file"
            )
        return self.generate(pts, time_base)

    def flush(self) -> list[DataFrame]:
        """Return everything still in flight (end of stream). The stream may go on afterwards: a later ``push``
        continues it with the same state and parameters (the similarity filter relies on this)."""
        self._require_prepared()
        return []

    def close(self) -> None:
        """Release resources. The object is not used afterwards."""

    # ------------------------------------------------------------------ for subclasses
    @abc.abstractmethod
    def process(self, frame: DataFrame) -> list[DataFrame]:
        """Handle one validated input chunk."""

    def generate(self, pts: int, time_base: Fraction) -> list[DataFrame]:
        raise InputError(f"{self.spec.name} cannot run without input")

    def on_prepare(self) -> None:
        """Allocate per-stream state from ``self.params``."""

    def on_update(self, changed: dict[str, Any]) -> None:
        """React to live parameter changes (already validated and stored in ``self.params``)."""

    def audio_input_format(self) -> tuple[int | None, int | None]:
        """(sample rate, channels) of the audio this generator takes with its current parameters (None: any).

        The spec's values by default; a generator whose rate depends on a parameter (AP-BWE's ``target_rate``)
        overrides it. File renders resample their input to this rate."""
        return self.spec.sample_rate, self.spec.channels

    def check_input(self, frame: DataFrame) -> None:
        """Reject input the generator cannot take, with a message that names the fix."""
        kind = _FRAME_KIND.get(type(frame))
        if kind is None or kind not in self.spec.inputs:
            wanted = "/".join(self.spec.inputs) or "no"
            raise InputError(f"{self.spec.name} takes {wanted} input, not {type(frame).__name__}")
        if isinstance(frame, VideoFrame):
            m = self.spec.size_multiple
            if frame.width % m or frame.height % m:
                raise InputError(
                    f"{self.spec.name} needs frame sizes that are multiples of {m}; got "
                    f"{frame.width}x{frame.height} (resize the input or set width/height)"
                )
        if isinstance(frame, AudioFrame):
            rate, channels = self.audio_input_format()
            if rate is not None and frame.sample_rate != rate:
                raise InputError(
                    f"{self.spec.name} needs audio at {rate} Hz; got {frame.sample_rate} Hz (resample the input)"
                )
            if channels is not None and frame.channels != channels:
                raise InputError(
                    f"{self.spec.name} needs {channels}-channel audio; got {frame.channels} channels"
                )

    def _require_prepared(self) -> None:
        if not self._prepared:
            raise RuntimeError(f"{self.spec.name}: call prepare() before streaming")
