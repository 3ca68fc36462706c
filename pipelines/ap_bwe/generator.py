"""The ``ap-bwe`` generator: mono narrowband speech (already at the target rate) in, wideband speech out, streamed.

Input is the narrowband signal resampled up to ``target_rate`` (16 or 48 kHz), as the official models take it; file
renders do that resampling (``audio_input_format``), and an input already at the target rate is used as it is. Any
number of samples may be pushed; output comes out as soon as it is final and equals the offline result over the
whole stream (``streaming.AudioStream``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Self

import torch

from pipelines.ap_bwe.checkpoint import load_checkpoint, load_default, load_folder
from pipelines.ap_bwe.model import APBWE, FULL_SIZE, APBWEConfig
from pipelines.ap_bwe.streaming import AudioStream, PackedAPBWE
from streamrt.errors import ModelLoadError, ParamError
from streamrt.frames import AudioFrame, DataFrame
from streamrt.generator import Generator, GeneratorSpec, MediaKind
from streamrt.params import Param, ParamSet

log = logging.getLogger(__name__)

TARGET_RATES = (16_000, 48_000)
PRECISIONS = ("float32", "int8", "bfloat16")
NOMINAL_CHUNK = 160  # 10 ms at 16 kHz: the push size the declared latency and lookahead are counted in


def lookahead_samples(config: APBWEConfig = FULL_SIZE) -> int:
    """Future input samples an output sample depends on.

    Output sample n is overlap-added from the frames whose window (``win`` samples, centred) covers it, the last one
    at frame floor((n + win/2) / hop); the network reaches ``frame_lookahead`` frames further, and that frame's
    window ends win/2 - 1 samples after its centre: n + win/2 + lookahead * hop + win/2 - 1 at most.
    """
    return config.win + config.frame_lookahead * config.hop - 1


def latency_samples(config: APBWEConfig = FULL_SIZE) -> int:
    """Samples pushed after an input sample before its output sample is emitted, at most (algorithmic latency).

    The streaming STFT completes frame t as soon as its window's last sample, t*hop + win/2 - 1, is in (the zeros
    that pad the 320-sample window to n_fft need no input); the network needs ``frame_lookahead`` frames more; the
    ISTFT releases a sample once no later window covers it. So the latency equals the lookahead: nothing waits
    longer than the model's receptive field requires.
    """
    return config.win + config.frame_lookahead * config.hop - 1


class APBWEGenerator(Generator):
    spec = GeneratorSpec(
        name="ap-bwe",
        # exact streaming: any chunking gives the same output, so a session that fell behind may join chunks
        joins_audio=True,
        description=(
            "AP-BWE speech bandwidth extension (Lu et al. 2024): parallel amplitude and phase ConvNeXt streams; "
            "narrowband speech at target_rate in, wideband out, streamed exactly (equal to offline)."
        ),
        inputs=(MediaKind.AUDIO,),
        outputs=(MediaKind.AUDIO,),
        params=ParamSet(
            (
                Param(
                    "target_rate",
                    int,
                    16_000,
                    "Output (and input) sample rate: 16000 for the 8k->16k models, 48000 for the 48 kHz models. "
                    "Narrowband input is resampled up to it.",
                    live=False,
                    choices=TARGET_RATES,
                ),
                Param(
                    "precision",
                    str,
                    "float32",
                    "Arithmetic of the linear layers: float32 gives the official model's output; int8 (weights per "
                    "channel, activations per call) reads a quarter of the weight memory, which is what small "
                    "streaming chunks of the full-size model wait for; bfloat16 helps only on CPUs with bf16 dot "
                    "products. Both move the output away from the official one (card: the measured LSD).",
                    live=False,
                    choices=PRECISIONS,
                ),
            )
        ),
        sample_rate=16_000,
        channels=1,
        # nominal: any number of samples may be pushed; latency is in samples, lookahead in nominal chunks
        input_chunk=NOMINAL_CHUNK,
        output_chunk=NOMINAL_CHUNK,
        latency=latency_samples(),
        lookahead=-(-lookahead_samples() // NOMINAL_CHUNK),
    )

    def __init__(self, model: APBWE | None = None) -> None:
        super().__init__()
        if model is None:
            model = load_default()
        self.model = model.eval()
        self.packed = PackedAPBWE.from_module(self.model)
        self._packed_by_precision = {"float32": self.packed}
        self.stream: AudioStream | None = None
        self._next_pts: int | None = None

    @property
    def config(self) -> APBWEConfig:
        return self.model.config

    @property
    def latency_frames(self) -> int:
        """This model's latency in samples (the spec's is the published 8-block model's)."""
        return latency_samples(self.config)

    @classmethod
    def load(
        cls,
        *,
        model: str | None = None,
        checkpoint: str | None = None,
        device: str = "cpu",
        dtype: str | None = None,
    ) -> Self:
        """The embedded default (8k->16k), a model folder (``--model``: model.safetensors + config.json, or a
        checkpoint file), or an official checkpoint (``--checkpoint``: torch.save file with key ``generator``, read
        with weights_only=True, or safetensors). Official checkpoints are the full-size architecture."""
        if device != "cpu":
            raise ParamError(f"ap-bwe runs on the CPU here; got --device {device}")
        if dtype not in (None, "float32", "fp32"):
            raise ParamError(f"ap-bwe computes in float32; got --dtype {dtype}")
        if checkpoint:
            net = load_checkpoint(checkpoint)
        elif model:
            path = Path(model)
            if path.is_dir():
                net = load_folder(path)
            elif path.is_file():
                net = load_checkpoint(path)
            else:
                raise ModelLoadError(
                    f"--model {model}: no such folder or file (hub ids need a download; give a path)"
                )
        else:
            net = load_default()
        return cls(net)

    # ------------------------------------------------------------------ stream life cycle
    def on_prepare(self) -> None:
        rate = self.params["target_rate"]
        trained = self.config.sample_rate
        if trained is not None and trained != rate:
            raise ParamError(
                f"these AP-BWE weights were trained for {trained} Hz output; set target_rate={trained} "
                f"(or give a {rate} Hz checkpoint with --checkpoint)"
            )
        if trained is None:
            log.info(
                "ap-bwe: the checkpoint does not record its rates; running at target_rate=%d "
                "(the official 48 kHz models need target_rate=48000, the 16 kHz ones 16000)",
                rate,
            )
        precision = self.params["precision"]
        if precision not in self._packed_by_precision:
            self._packed_by_precision[precision] = self.packed.with_precision(precision)
        self.stream = AudioStream(self._packed_by_precision[precision])
        self._next_pts = None

    def audio_input_format(self) -> tuple[int | None, int | None]:
        return int(self.params["target_rate"]), 1

    @property
    def sample_rate(self) -> int:
        return int(self.params["target_rate"])

    def process(self, frame: DataFrame) -> list[DataFrame]:
        assert isinstance(frame, AudioFrame) and self.stream is not None
        if self._next_pts is None:
            self._next_pts = frame.pts
            self._time_base = frame.time_base
        return self._emit(self.stream.push(frame.data[0]))

    def flush(self) -> list[DataFrame]:
        self._require_prepared()
        assert self.stream is not None
        if self._next_pts is None:
            return []
        out = self._emit(self.stream.flush())
        self._next_pts = None  # the next push starts a new stream (the STFT's end reflection closed this one)
        return out

    def _emit(self, samples: torch.Tensor) -> list[DataFrame]:
        if samples.shape[-1] == 0:
            return []
        assert self._next_pts is not None
        out = AudioFrame(
            data=samples.reshape(1, -1).contiguous(),
            sample_rate=self.sample_rate,
            pts=self._next_pts,
            time_base=self._time_base,
        )
        self._next_pts += samples.shape[-1]
        return [out]
