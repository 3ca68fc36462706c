"""The shared contract suite (tests/contract.py) against every registered generator, and tests of the suite itself:
each check must catch a generator that breaks the rule it checks."""

from __future__ import annotations

from fractions import Fraction

import contract
import pytest
import torch
from contract import CHECKS, Case, Workspace, applies, cases

from streamrt import registry
from streamrt.frames import DataFrame, VideoFrame
from streamrt.generator import Generator, GeneratorSpec, MediaKind
from streamrt.params import Param, ParamSet

CASES = cases()


@pytest.fixture(scope="session")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    return Workspace(tmp_path_factory.mktemp("contract"))


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # Tiny models on a shared 2-core machine: one intra-op thread is an order of magnitude faster than two.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


PARAMS = [
    pytest.param(check, case, id=f"{case.id}-{check.__name__.removeprefix('check_')}")
    for case in CASES
    for check in CHECKS
    if check is not contract.check_describe and applies(check, case)
]


@pytest.mark.parametrize(("check", "case"), PARAMS)
def test_contract(check, case: Case, workspace: Workspace):
    check(case, workspace)


@pytest.mark.parametrize("name", registry.available())
def test_describe(name):
    case = next(c for c in CASES if c.generator == name)
    contract.check_describe(case, None)


@pytest.mark.parametrize("name", registry.available())
def test_every_registered_generator_has_a_factory(name):
    assert name in contract.FACTORIES, f"add a fixture factory for {name!r} to FACTORIES in tests/contract.py"


def test_suite_covers_the_builtin_generators():
    ids = {c.id for c in CASES}
    assert {"passthrough-video", "streamdiffusion-video", "streamdiffusion-opened-ssf"} <= ids
    # the wrapped generator really is the SSF wrapper, with the filter on
    assert any(c.generator == "streamdiffusion" and c.id.startswith("streamdiffusion-opened") for c in CASES)


def test_opened_streamdiffusion_is_wrapped(workspace):
    from streamrt.similarity import SimilarityFilteredGenerator

    case = next(c for c in CASES if c.id == "streamdiffusion-opened-ssf")
    gen = case.build(workspace)
    assert isinstance(gen, SimilarityFilteredGenerator) and gen.enabled
    contract.run(gen, case.inputs(case.frames))
    assert gen.ssf.skipped > 0, (
        "the SSF case must actually skip frames, or it tests nothing the plain case does not"
    )


def test_broken_registration_fails_loudly(monkeypatch, workspace):
    monkeypatch.setitem(registry._BUILTIN, "broken", "no_such_module_xyz:Gen")
    monkeypatch.setitem(contract.FACTORIES, "broken", contract.passthrough_cases)
    found = [c for c in cases() if c.generator == "broken"]
    assert len(found) == 1
    with pytest.raises(pytest.fail.Exception, match="cannot load generator 'broken'.*no_such_module_xyz"):
        found[0].build(workspace)


def test_new_generator_without_factory_fails_loudly(monkeypatch, workspace):
    monkeypatch.setitem(registry._BUILTIN, "brand-new", "streamrt.passthrough:PassthroughGenerator")
    found = [c for c in cases() if c.generator == "brand-new"]
    assert len(found) == 1
    with pytest.raises(pytest.fail.Exception, match="no contract fixture factory.*FACTORIES"):
        found[0].build(workspace)


# ---------------------------------------------------------------------- the suite catches broken generators
TB = Fraction(1, 90_000)


def _video_spec(name: str, **kwargs) -> GeneratorSpec:
    return GeneratorSpec(
        name=name, description="test", inputs=(MediaKind.VIDEO,), outputs=(MediaKind.VIDEO,), **kwargs
    )


class Good(Generator):
    """A correct video generator with one frame of latency: output i = input i inverted, emitted at push i + 1."""

    spec = _video_spec("good", latency=1, params=ParamSet((Param("size", int, 0, "Unused.", live=False),)))

    def on_prepare(self) -> None:
        self.held: list[VideoFrame] = []

    def process(self, frame: DataFrame) -> list[DataFrame]:
        self.held.append(frame)
        return self._emit(keep=1)

    def flush(self) -> list[DataFrame]:
        return self._emit(keep=0)

    def _emit(self, keep: int) -> list[DataFrame]:
        out = []
        while len(self.held) > keep:
            f = self.held.pop(0)
            out.append(VideoFrame(data=255 - f.data, pts=f.pts, time_base=f.time_base))
        return out


class Leaky(Good):
    spec = _video_spec("leaky", latency=1)

    def on_prepare(self) -> None:
        super().on_prepare()
        self.history: list[VideoFrame] = []

    def process(self, frame: DataFrame) -> list[DataFrame]:
        self.history.append(frame)
        return super().process(frame)


class Late(Good):
    spec = _video_spec("late", latency=0)  # declares 0, delivers 1


class Peeking(Good):
    """Output i mixes in input i + 1 but declares no lookahead."""

    spec = _video_spec("peeking", latency=1)

    def _emit(self, keep: int) -> list[DataFrame]:
        out = []
        while len(self.held) > keep:
            f = self.held.pop(0)
            nxt = self.held[0].data if self.held else f.data
            out.append(VideoFrame(data=f.data // 2 + nxt // 2, pts=f.pts, time_base=f.time_base))
        return out


class Random(Good):
    spec = _video_spec("random", latency=1)

    def _emit(self, keep: int) -> list[DataFrame]:
        out = super()._emit(keep)
        for o in out:
            o.data = o.data ^ torch.randint(0, 256, o.data.shape, dtype=torch.uint8)  # unseeded
        return out


class Stateful(Good):
    """A frame counter that reset() does not clear."""

    spec = _video_spec("stateful", latency=1)

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def process(self, frame: DataFrame) -> list[DataFrame]:
        self.count += 1
        frame = VideoFrame(data=frame.data // 2 + self.count % 64, pts=frame.pts, time_base=frame.time_base)
        return super().process(frame)


class Lossy(Good):
    spec = _video_spec("lossy", latency=1)

    def flush(self) -> list[DataFrame]:
        self.held.clear()
        return []


class ShiftedPts(Good):
    spec = _video_spec("shifted", latency=1)

    def _emit(self, keep: int) -> list[DataFrame]:
        out = super()._emit(keep)
        for o in out:
            o.pts += 1
        return out


class Lenient(Good):
    """Declares a size multiple but checks nothing (not even the input kind)."""

    spec = _video_spec("lenient", latency=1, size_multiple=8)

    def check_input(self, frame: DataFrame) -> None:
        pass


class Mono16k(Generator):
    spec = GeneratorSpec(
        name="mono16k",
        description="test",
        inputs=(MediaKind.AUDIO,),
        outputs=(MediaKind.AUDIO,),
        sample_rate=16_000,
        channels=1,
    )

    def process(self, frame: DataFrame) -> list[DataFrame]:
        return [frame]


class LenientAudio(Mono16k):
    def check_input(self, frame: DataFrame) -> None:
        pass


def _case(cls: type[Generator], feed: MediaKind = MediaKind.VIDEO, **kwargs) -> Case:
    def build(ws: Workspace) -> Generator:
        gen = cls()
        gen.prepare({})
        return gen

    kwargs.setdefault("long_frames", 150)
    case = Case(cls.spec.name, cls.spec.name, build, feed, **kwargs)
    case.spec = cls.spec
    return case


def audio_case(cls) -> Case:
    return _case(cls, MediaKind.AUDIO, sample_rate=16_000, channels=1, chunk=160)


@pytest.mark.parametrize(
    "case",
    [_case(Good), audio_case(Mono16k)],
    ids=lambda c: c.id,
)
def test_a_correct_generator_passes_every_check(case, workspace):
    for check in CHECKS:
        if applies(check, case) and check is not contract.check_describe:
            check(case, workspace)


@pytest.mark.parametrize(
    ("check", "case"),
    [
        (contract.check_bounded_memory, _case(Leaky)),
        (contract.check_latency, _case(Late)),
        (contract.check_lookahead, _case(Peeking)),
        (contract.check_determinism, _case(Random)),
        (contract.check_reset, _case(Stateful)),
        (contract.check_flush_emits_everything, _case(Lossy)),
        (contract.check_shapes_and_timestamps, _case(Lossy)),
        (contract.check_shapes_and_timestamps, _case(ShiftedPts)),
        (contract.check_wrong_size, _case(Lenient)),
        (contract.check_wrong_kind, _case(Lenient)),
        (contract.check_wrong_audio, audio_case(LenientAudio)),
    ],
    ids=lambda x: x.id if isinstance(x, Case) else x.__name__.removeprefix("check_"),
)
def test_the_suite_catches_a_broken_generator(check, case, workspace):
    assert applies(check, case)
    with pytest.raises((AssertionError, pytest.fail.Exception)):
        check(case, workspace)


def test_footprint_sees_tensors_and_lists():
    holder = type("Holder", (), {})()
    holder.items = []
    before = contract.footprint(holder)
    holder.items += [torch.zeros(256) for _ in range(10)]
    after = contract.footprint(holder)
    assert after[0] >= before[0] + 10
    assert after[1] >= before[1] + 10 * 256 * 4
