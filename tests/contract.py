"""The shared contract test suite: what every registered generator must do (DESIGN.md, "The generator contract").

``test_contract.py`` runs every ``check_*`` function below against every generator in ``streamrt.registry.available()``,
through the fixture factories in ``FACTORIES``. A generator registered later is picked up automatically; without an
entry in ``FACTORIES`` every check fails for it, with a message saying what to add.

A *case* is one way of driving a generator: the generator built fast (tiny weights, small frames), and the kind of
input fed to it (video, audio, text, or ``None`` for ticks, i.e. ``pull`` without input). The checks are plain
functions that raise ``AssertionError``, so the harness itself can be tested against deliberately broken generators.
"""

from __future__ import annotations

import bisect
import gc
import json
import math
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
import torch

from streamrt import registry
from streamrt.errors import InputError, ParamError
from streamrt.frames import AudioFrame, DataFrame, Frame, TextFrame, Tick, VideoFrame
from streamrt.generator import Generator, GeneratorSpec, MediaKind, kind_of

VIDEO_TB = Fraction(1, 90_000)
VIDEO_STEP = 3000  # 30 fps on the 90 kHz clock


class Workspace:
    """Per-test-session scratch space: tiny model folders are written once and shared by every case."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._tiny_sd: Path | None = None

    def tiny_sd(self) -> Path:
        if self._tiny_sd is None:
            from tiny_sd import make_tiny_sd

            # The KL VAE: with the default seed, the tiny random AutoencoderTiny decodes every latent to (nearly) the
            # same picture, so outputs would not depend on inputs and several checks would prove nothing.
            self._tiny_sd = make_tiny_sd(self.root / "tiny-sd", vae="kl")
        return self._tiny_sd


@dataclass
class Case:
    """One way of running one generator through the contract."""

    id: str
    generator: str  # the registered name
    build: Callable[[Workspace], Generator]  # a fresh, prepared generator
    feed: MediaKind | None  # the input kind; None: ticks (``pull``)
    width: int = 32
    height: int = 32
    sample_rate: int = 48_000
    channels: int = 2
    chunk: int = 480  # audio samples per input chunk
    out_size: tuple[int, int] | None = None  # (height, width) of video outputs, when known
    frames: int = 10  # stream length of most checks
    long_frames: int = 300  # stream length of the bounded-memory check
    # (index, variant) -> input frame; variant 0 is the reference stream, others change the content
    make_input: Callable[[Case, int, int], Frame] | None = None
    spec: GeneratorSpec | None = field(default=None, repr=False)

    def input(self, index: int, variant: int = 0) -> Frame:
        if self.make_input is not None:
            return self.make_input(self, index, variant)
        return default_input(self, index, variant)

    def inputs(self, n: int) -> list[Frame]:
        return [self.input(i) for i in range(n)]


def _rng(index: int, variant: int) -> torch.Generator:
    return torch.Generator().manual_seed(1_000_003 * variant + index + 17)


def default_input(case: Case, index: int, variant: int) -> Frame:
    if case.feed is None:
        return Tick(pts=index * VIDEO_STEP, time_base=VIDEO_TB)
    gen = _rng(index, variant)
    if case.feed is MediaKind.VIDEO:
        data = torch.randint(0, 256, (case.height, case.width, 3), generator=gen, dtype=torch.uint8)
        return VideoFrame(data=data, pts=index * VIDEO_STEP, time_base=VIDEO_TB)
    if case.feed is MediaKind.AUDIO:
        data = torch.rand((case.channels, case.chunk), generator=gen).mul(2).sub(1)
        return AudioFrame(data=data, sample_rate=case.sample_rate, pts=index * case.chunk)
    return TextFrame(text=f"line {index} variant {variant}", pts=index * VIDEO_STEP, time_base=VIDEO_TB)


def slowly_changing_video(case: Case, index: int, variant: int) -> Frame:
    """Scenes that hold still for 4 frames (with a little sensor noise), so a similarity filter has work to do."""
    base = torch.randint(
        0, 256, (case.height, case.width, 3), generator=_rng(index // 4, variant), dtype=torch.uint8
    )
    noise = torch.randint(-2, 3, base.shape, generator=_rng(index, variant + 7))
    data = (base.int() + noise).clamp(0, 255).to(torch.uint8)
    return VideoFrame(data=data, pts=index * VIDEO_STEP, time_base=VIDEO_TB)


# ---------------------------------------------------------------------- fixture factories
def _passthrough(ws: Workspace) -> Generator:
    gen = registry.get("passthrough").load()
    gen.prepare({})
    return gen


def _streamdiffusion(params: dict[str, Any]) -> Callable[[Workspace], Generator]:
    def build(ws: Workspace) -> Generator:
        gen = registry.get("streamdiffusion").load(model=str(ws.tiny_sd()))
        gen.prepare(params)
        return gen

    return build


def _streamdiffusion_opened(params: dict[str, Any]) -> Callable[[Workspace], Generator]:
    def build(ws: Workspace) -> Generator:
        from streamrt.loading import open_generator

        return open_generator("streamdiffusion", model=str(ws.tiny_sd()), params=params)

    return build


def passthrough_cases() -> list[Case]:
    return [
        Case("passthrough-video", "passthrough", _passthrough, MediaKind.VIDEO, out_size=(32, 32)),
        Case("passthrough-audio", "passthrough", _passthrough, MediaKind.AUDIO),
        Case("passthrough-ticks", "passthrough", _passthrough, None, out_size=(256, 256)),
    ]


# Long enough to tell a leak (one object per frame grows the footprint by > 50 between the early and late samples)
# from noise, short enough for a 2-core machine.
SD_LONG = 160


def streamdiffusion_cases() -> list[Case]:
    return [
        # img2img with the defaults (2 steps, one frame per slot)
        Case(
            "streamdiffusion-video",
            "streamdiffusion",
            _streamdiffusion({}),
            MediaKind.VIDEO,
            out_size=(32, 32),
            long_frames=300,  # the main case gets the full-length stream; the variants a shorter one
        ),
        # a deeper window with two frames per Stream Batch slot
        Case(
            "streamdiffusion-video-steps3-fbs2",
            "streamdiffusion",
            _streamdiffusion({"steps": 3, "frame_buffer_size": 2}),
            MediaKind.VIDEO,
            out_size=(32, 32),
            frames=12,
            long_frames=SD_LONG,
        ),
        # txt2img: ticks, at the model's default size (64x64 for the tiny model)
        Case(
            "streamdiffusion-ticks",
            "streamdiffusion",
            _streamdiffusion({}),
            None,
            out_size=(64, 64),
            long_frames=SD_LONG,
        ),
        # as the runtime opens it: wrapped with the similarity filter, here switched on
        Case(
            "streamdiffusion-opened-ssf",
            "streamdiffusion",
            _streamdiffusion_opened({"ssf": True, "ssf_threshold": 0.9, "ssf_max_skip": 3}),
            MediaKind.VIDEO,
            out_size=(32, 32),
            frames=16,
            long_frames=SD_LONG,
            make_input=slowly_changing_video,
        ),
        # as the runtime opens it, filter off, with 3 steps (so the wrapper must pass the inner latency on)
        Case(
            "streamdiffusion-opened-steps3",
            "streamdiffusion",
            _streamdiffusion_opened({"steps": 3}),
            MediaKind.VIDEO,
            out_size=(32, 32),
            long_frames=SD_LONG,
        ),
    ]


# registered name -> the cases that exercise it. Every registered generator needs an entry.
def _cases_in(module: str) -> Callable[[], list[Case]]:
    """Cases defined next to the suite in ``tests/<module>.py`` (a ``cases()`` function), imported when needed."""

    def load() -> list[Case]:
        import importlib

        return importlib.import_module(module).cases()

    return load


FACTORIES: dict[str, Callable[[], list[Case]]] = {
    "passthrough": passthrough_cases,
    "streamdiffusion": streamdiffusion_cases,
    "ap-bwe": _cases_in("contract_ap_bwe"),
    "binauralflow": _cases_in("contract_binauralflow"),
    "streamdit": _cases_in("contract_streamdit"),
    "rolling-forcing": _cases_in("contract_rolling_forcing"),
    "streamingt2v": _cases_in("contract_streamingt2v"),
    "rain": _cases_in("contract_rain"),
    "evanimate": _cases_in("contract_evanimate"),
    "xstreamer": _cases_in("contract_xstreamer"),
}


def _failing(message: str) -> Callable[[Workspace], Generator]:
    def build(ws: Workspace) -> Generator:
        pytest.fail(message, pytrace=False)

    return build


def _missing_factory(name: str) -> Callable[[Workspace], Generator]:
    return _failing(
        f"generator {name!r} is registered but has no contract fixture factory: add an entry for it to "
        "FACTORIES in tests/contract.py (how to build it fast, with tiny weights and small inputs)"
    )


def cases() -> list[Case]:
    """Every case of every registered generator (collected at import time by ``test_contract.py``)."""
    out: list[Case] = []
    for name in registry.available():
        if name not in FACTORIES:
            out.append(Case(f"{name}-NO-FACTORY", name, _missing_factory(name), MediaKind.VIDEO))
            continue
        try:
            spec = registry.get(name).spec
        except Exception as exc:
            # a broken registration fails its own checks, not the collection of everyone else's
            out.append(
                Case(f"{name}-BROKEN", name, _failing(f"cannot load generator {name!r}: {exc!r}"), None)
            )
            continue
        for case in FACTORIES[name]():
            case.spec = spec
            out.append(case)
    return out


# ---------------------------------------------------------------------- driving a generator
@dataclass
class Run:
    outputs: list[DataFrame]
    emitted_at: list[int]  # for each output: the index of the input whose push returned it (n = flush)


def feed(gen: Generator, frame: Frame) -> list[DataFrame]:
    if isinstance(frame, Tick):
        return gen.pull(frame.pts, frame.time_base)
    return gen.push(frame)


def run(gen: Generator, inputs: list[Frame], *, flush: bool = True) -> Run:
    outputs: list[DataFrame] = []
    emitted_at: list[int] = []
    for i, frame in enumerate(inputs):
        outs = feed(gen, frame)
        outputs += outs
        emitted_at += [i] * len(outs)
    if flush:
        outs = gen.flush()
        outputs += outs
        emitted_at += [len(inputs)] * len(outs)
    return Run(outputs, emitted_at)


def payload(frame: DataFrame) -> Any:
    return frame.text if isinstance(frame, TextFrame) else frame.data


def same_frame(a: DataFrame, b: DataFrame) -> bool:
    if type(a) is not type(b) or a.pts != b.pts or a.time_base != b.time_base:
        return False
    pa, pb = payload(a), payload(b)
    if isinstance(pa, torch.Tensor):
        return pa.shape == pb.shape and pa.dtype == pb.dtype and torch.equal(pa, pb)
    return pa == pb


def assert_same_outputs(a: list[DataFrame], b: list[DataFrame], what: str) -> None:
    assert len(a) == len(b), f"{what}: {len(a)} outputs against {len(b)}"
    for k, (x, y) in enumerate(zip(a, b, strict=True)):
        assert same_frame(x, y), f"{what}: output {k} (pts {x.pts} / {y.pts}) differs"


def latency_of(gen: Generator) -> int:
    """Declared latency in input chunks: the generator's ``latency_frames`` if it has one, else ``spec.latency``."""
    declared = getattr(gen, "latency_frames", None)
    latency = gen.spec.latency if declared is None else declared
    if gen.spec.inputs == (MediaKind.AUDIO,) and gen.spec.input_chunk > 1:
        latency = math.ceil(latency / gen.spec.input_chunk)  # audio latency is declared in samples
    return int(latency)


def index_by_pts(inputs: list[Frame]) -> dict[int, int]:
    return {f.pts: i for i, f in enumerate(inputs)}


def input_at(inputs: list[Frame], pts: int) -> int:
    """Index of the input whose span holds ``pts`` (audio outputs may be re-chunked: their pts fall inside inputs)."""
    starts = [f.pts for f in inputs]
    return max(bisect.bisect_right(starts, pts) - 1, 0)


def pictures(outputs: list[DataFrame]) -> list[DataFrame]:
    """The outputs that follow the input one for one (everything but the audio a talking generator adds to its
    video; for video-only generators, all of them)."""
    return [o for o in outputs if not isinstance(o, AudioFrame)]


def check_audio_contiguous(outputs: list[DataFrame]) -> None:
    """Audio that a generator makes next to its video: contiguous samples from pts 0."""
    sounds = [o for o in outputs if isinstance(o, AudioFrame)]
    if not sounds:
        return
    assert sounds[0].pts == 0, f"generated audio starts at pts {sounds[0].pts}, not 0"
    for prev, nxt in zip(sounds, sounds[1:], strict=False):
        assert nxt.pts == prev.pts + prev.samples, f"generated audio not contiguous at pts {prev.pts}"
        assert nxt.sample_rate == prev.sample_rate and nxt.time_base == Fraction(1, nxt.sample_rate)


def audio_samples(outputs: list[DataFrame]) -> torch.Tensor:
    """Re-chunked audio outputs joined into one (channels, samples) signal."""
    return torch.cat([o.data for o in outputs], dim=-1)


# ---------------------------------------------------------------------- the checks
def check_shapes_and_timestamps(case: Case, ws: Workspace) -> None:
    gen = case.build(ws)
    inputs = case.inputs(case.frames)
    outs = run(gen, inputs).outputs
    spec = gen.spec
    for o in outs:
        assert kind_of(o) in spec.outputs, (
            f"output {type(o).__name__} is not among the declared {spec.outputs}"
        )
    in_tb = inputs[0].time_base
    timed = outs if case.feed is MediaKind.AUDIO else pictures(outs)
    assert all(o.time_base == in_tb for o in timed), "outputs keep the input's time base"
    if case.feed is MediaKind.AUDIO:
        # audio may be re-chunked: contiguous samples from the first input pts, as many as went in
        assert outs, "no output for audio input"
        assert outs[0].pts == inputs[0].pts
        for prev, nxt in zip(outs, outs[1:], strict=False):
            assert nxt.pts == prev.pts + prev.samples, f"audio outputs not contiguous at pts {prev.pts}"
        assert sum(o.samples for o in outs) == sum(f.samples for f in inputs)
    else:
        # one output per input (video and ticks), carrying the input's pts, in order
        assert [o.pts for o in timed] == [f.pts for f in inputs], (
            f"output pts {[o.pts for o in timed]} != input pts {[f.pts for f in inputs]}"
        )
        check_audio_contiguous(outs)
    for o in outs:
        if isinstance(o, VideoFrame):
            assert o.data.dtype == torch.uint8 and o.data.ndim == 3 and o.data.shape[-1] == 3
            if case.out_size is not None:
                assert (o.height, o.width) == case.out_size, (
                    f"output {o.width}x{o.height}, wanted {case.out_size}"
                )
            assert o.height % spec.size_multiple == 0 and o.width % spec.size_multiple == 0


def check_determinism(case: Case, ws: Workspace) -> None:
    inputs = case.inputs(case.frames)
    a = run(case.build(ws), inputs).outputs
    b = run(case.build(ws), inputs).outputs
    assert a, "no outputs"
    assert_same_outputs(a, b, "two fresh runs with the same seed")
    gen = case.build(ws)
    if "seed" in gen.spec.params:
        # the seed is what makes it reproducible: another seed gives another stream
        gen.prepare({**gen.params, "seed": gen.params["seed"] + 1})
        c = run(gen, inputs).outputs
        assert len(c) == len(a)
        assert not all(same_frame(x, y) for x, y in zip(a, c, strict=True)), (
            "changing the seed changed nothing"
        )


def check_flush_emits_everything(case: Case, ws: Workspace) -> None:
    gen = case.build(ws)
    inputs = case.inputs(case.frames)
    r = run(gen, inputs)
    if case.feed is MediaKind.AUDIO:
        assert sum(o.samples for o in r.outputs) == sum(f.samples for f in inputs)
    else:
        n_out = len(pictures(r.outputs))
        assert n_out == len(inputs), f"{len(inputs)} in, {n_out} out after flush"
    # nothing is left over: another flush yields nothing
    assert gen.flush() == [], "a second flush still emitted frames"


def check_reset(case: Case, ws: Workspace) -> None:
    inputs = case.inputs(case.frames)
    fresh = run(case.build(ws), inputs).outputs
    gen = case.build(ws)
    # a stream interrupted with frames in flight, then a reset
    other = [case.input(i, variant=3) for i in range(case.frames // 2 + 1)]
    run(gen, other, flush=False)
    gen.reset()
    after_reset = run(gen, inputs).outputs
    assert_same_outputs(after_reset, fresh, "a run after reset() against a fresh run")
    # and a reset after a completed stream
    gen.reset()
    again = run(gen, inputs).outputs
    assert_same_outputs(again, fresh, "a second run after reset() against a fresh run")


def check_latency(case: Case, ws: Workspace) -> None:
    gen = case.build(ws)
    latency = latency_of(gen)
    inputs = case.inputs(case.frames)
    r = run(gen, inputs)
    where = index_by_pts(inputs)
    for o, k in zip(r.outputs, r.emitted_at, strict=True):
        if case.feed is not MediaKind.AUDIO and isinstance(o, AudioFrame):
            continue  # generated audio rides with the picture of the same push
        i = input_at(inputs, o.pts) if case.feed is MediaKind.AUDIO else where[o.pts]
        if i + latency < len(inputs):
            assert k <= i + latency, (
                f"output for input {i} came out at input {k}; the declared latency is {latency} "
                f"(emitted at {list(zip([where[x.pts] for x in r.outputs], r.emitted_at, strict=True))})"
            )


def check_lookahead(case: Case, ws: Workspace) -> None:
    assert case.feed is not None
    gen = case.build(ws)
    lookahead = gen.spec.lookahead
    n = case.frames
    j = n // 2
    inputs = case.inputs(n)
    changed = list(inputs)
    changed[j] = case.input(j, variant=1)
    a = run(gen, inputs).outputs
    b = run(case.build(ws), changed).outputs
    if case.feed is MediaKind.AUDIO:
        # lookahead is declared in the spec's nominal chunks (input_chunk samples): convert to this case's chunks
        lookahead = math.ceil(lookahead * max(gen.spec.input_chunk, 1) / case.chunk)
        # re-chunked audio: compare samples, those of inputs before j - lookahead and those of input j
        sa, sb = audio_samples(a), audio_samples(b)
        base = inputs[0].pts
        cut = inputs[j - lookahead].pts - base if j - lookahead > 0 else 0
        assert cut > 0, "no outputs before the changed input"
        assert torch.equal(sa[..., :cut], sb[..., :cut]), (
            f"outputs before input {j - lookahead} changed with input {j} changed (lookahead {lookahead})"
        )
        lo, hi = inputs[j].pts - base, inputs[j].pts - base + inputs[j].samples
        assert not torch.equal(sa[..., lo:hi], sb[..., lo:hi]), (
            f"changing input {j} did not change its output: the comparison above proves nothing"
        )
        return
    where = index_by_pts(inputs)
    earlier_a = [o for o in a if where[o.pts] < j - lookahead]
    earlier_b = [o for o in b if where[o.pts] < j - lookahead]
    assert earlier_a, "no outputs before the changed input"
    assert_same_outputs(
        earlier_a,
        earlier_b,
        f"outputs before input {j - lookahead} with input {j} changed (lookahead {lookahead})",
    )
    at_j_a = [o for o in a if where[o.pts] == j]
    at_j_b = [o for o in b if where[o.pts] == j]
    assert at_j_a and at_j_b, f"no output for input {j}"
    assert not all(same_frame(x, y) for x, y in zip(at_j_a, at_j_b, strict=True)), (
        f"changing input {j} did not change its output: the comparison above proves nothing"
    )


_OPAQUE = (
    type,
    types.ModuleType,
    types.FunctionType,
    types.BuiltinFunctionType,
    types.CodeType,
    types.FrameType,
)


def footprint(root: object) -> tuple[int, int]:
    """Objects reachable from ``root`` (not through classes, modules or functions) and the bytes of their tensors."""
    seen: set[int] = set()
    storages: set[int] = set()
    stack = [root]
    count = 0
    nbytes = 0
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, _OPAQUE):
            continue
        seen.add(id(obj))
        count += 1
        if isinstance(obj, torch.Tensor):
            storage = obj.untyped_storage()
            if storage.data_ptr() not in storages:
                storages.add(storage.data_ptr())
                nbytes += storage.nbytes()
        stack.extend(gc.get_referents(obj))
    return count, nbytes


def check_bounded_memory(case: Case, ws: Workspace) -> None:
    """Over a long stream, what the generator holds on to stops growing (catches an ever-growing list or tensor)."""
    gen = case.build(ws)
    n = case.long_frames
    samples: dict[int, tuple[int, int]] = {}
    for i in range(n):
        feed(gen, case.input(i))
        if i >= 50 and i % 10 == 0 or i == n - 1:
            samples[i] = footprint(gen)
    early = [v for i, v in samples.items() if i <= n // 2]
    late = [v for i, v in samples.items() if i >= 2 * n // 3]
    early_objects, early_bytes = max(v[0] for v in early), max(v[1] for v in early)
    late_objects, late_bytes = max(v[0] for v in late), max(v[1] for v in late)
    assert late_objects <= early_objects + 50, (
        f"objects held by the generator grew from {early_objects} to {late_objects} over {n} frames: {samples}"
    )
    assert late_bytes <= early_bytes + 16 * 1024, (
        f"tensor bytes held by the generator grew from {early_bytes} to {late_bytes} over {n} frames"
    )
    gen.flush()


def _still_works(gen: Generator, case: Case) -> None:
    outs = run(gen, case.inputs(3)).outputs
    assert outs, "the generator stopped working after rejecting bad input"


def _wrong_kind_frame(spec: GeneratorSpec, like: Case) -> Frame | None:
    options: list[Frame] = [
        VideoFrame(data=torch.zeros(like.height, like.width, 3, dtype=torch.uint8)),
        AudioFrame(data=torch.zeros(1, 480), sample_rate=spec.sample_rate or 48_000),
        TextFrame(text="hello"),
    ]
    for frame in options:
        if kind_of(frame) not in spec.inputs:
            return frame
    return None


def check_wrong_kind(case: Case, ws: Workspace) -> None:
    gen = case.build(ws)
    frame = _wrong_kind_frame(gen.spec, case)
    assert frame is not None
    with pytest.raises(InputError) as info:
        gen.push(frame)
    msg = str(info.value)
    assert type(frame).__name__ in msg or kind_of(frame).value in msg, (
        f"the message does not name the input: {msg}"
    )
    assert any(k.value in msg for k in gen.spec.inputs), f"the message does not say what is accepted: {msg}"
    _still_works(gen, case)


def check_wrong_size(case: Case, ws: Workspace) -> None:
    gen = case.build(ws)
    m = gen.spec.size_multiple
    assert m > 1
    for h, w in ((case.height, case.width + m // 2), (case.height + 1, case.width)):
        frame = VideoFrame(data=torch.zeros(h, w, 3, dtype=torch.uint8))
        with pytest.raises(InputError) as info:
            gen.push(frame)
        msg = str(info.value)
        assert f"{w}x{h}" in msg and str(m) in msg, (
            f"the message does not name the size and the multiple: {msg}"
        )
    _still_works(gen, case)


def check_wrong_audio(case: Case, ws: Workspace) -> None:
    gen = case.build(ws)
    spec = gen.spec
    assert spec.sample_rate is not None or spec.channels is not None
    # the format for the current parameters (a generator's rate may depend on one, e.g. AP-BWE's target_rate)
    rate, channels = gen.audio_input_format()
    if rate is not None:
        wrong_rate = rate // 2 + 1
        frame = AudioFrame(data=torch.zeros(channels or 1, case.chunk), sample_rate=wrong_rate)
        with pytest.raises(InputError) as info:
            gen.push(frame)
        msg = str(info.value)
        assert str(wrong_rate) in msg and str(rate) in msg, f"the message does not name the rates: {msg}"
    if channels is not None:
        wrong = channels + 1
        frame = AudioFrame(data=torch.zeros(wrong, case.chunk), sample_rate=rate or case.sample_rate)
        with pytest.raises(InputError) as info:
            gen.push(frame)
        msg = str(info.value)
        assert str(wrong) in msg and "channel" in msg, f"the message does not name the channels: {msg}"
    _still_works(gen, case)


def check_params(case: Case, ws: Workspace) -> None:
    gen = case.build(ws)
    bogus = "no_such_parameter_xyz"
    with pytest.raises(ParamError, match=bogus):
        gen.prepare({bogus: 1})
    with pytest.raises(ParamError, match=bogus):
        gen.update({bogus: 1})
    for p in gen.spec.params:
        if not p.live:
            with pytest.raises(ParamError, match=p.name):
                gen.update({p.name: p.default})
    _still_works(gen, case)


def check_describe(case: Case, ws: Workspace) -> None:
    spec = registry.get(case.generator).spec
    described = json.loads(json.dumps(spec.describe()))
    assert described["name"] == case.generator == spec.name
    assert described["inputs"] == [k.value for k in spec.inputs]
    assert described["outputs"] == [k.value for k in spec.outputs] and described["outputs"]
    assert described["latency"] == spec.latency and described["lookahead"] == spec.lookahead
    props = described["params"]["properties"]
    assert list(props) == [p.name for p in spec.params]
    for p in spec.params:
        assert props[p.name]["default"] == p.default
        assert p.help, f"parameter {p.name!r} has no help text"
        if p.default is not None or not p.optional:
            assert p.coerce(p.default) == p.default, f"the default of {p.name!r} does not validate"


# ---------------------------------------------------------------------- which checks apply to which case
def applies(check: Callable[[Case, Workspace], None], case: Case) -> bool:
    spec = case.spec
    if spec is None:  # no factory: every check runs, and fails
        return True
    if check is check_lookahead:
        return case.feed is not None
    if check is check_wrong_kind:
        return _wrong_kind_frame(spec, case) is not None
    if check is check_wrong_size:
        return case.feed is MediaKind.VIDEO and spec.size_multiple > 1
    if check is check_wrong_audio:
        return case.feed is MediaKind.AUDIO and (spec.sample_rate is not None or spec.channels is not None)
    return True


CHECKS: list[Callable[[Case, Workspace], None]] = [
    check_shapes_and_timestamps,
    check_determinism,
    check_flush_emits_everything,
    check_reset,
    check_latency,
    check_lookahead,
    check_bounded_memory,
    check_wrong_kind,
    check_wrong_size,
    check_wrong_audio,
    check_params,
    check_describe,
]
