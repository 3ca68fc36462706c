"""The StreamDiffusion generator on tiny random diffusers components: img2img, txt2img, live updates, sizes."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest
import torch
from tiny_sd import make_tiny_sd

from pipelines.streamdiffusion.pipeline import StreamDiffusionGenerator
from streamrt.errors import InputError, ModelLoadError, ParamError
from streamrt.frames import AudioFrame, VideoFrame
from streamrt.loading import open_generator
from streamrt.similarity import SimilarityFilteredGenerator

TB = Fraction(1, 90_000)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_sd(tmp_path_factory.mktemp("sd") / "model")


@pytest.fixture(scope="module")
def loaded(model: Path) -> StreamDiffusionGenerator:
    return StreamDiffusionGenerator.load(model=str(model))


def clip(n: int, size: int = 64, seed: int = 0) -> list[VideoFrame]:
    gen = torch.Generator().manual_seed(seed)
    return [
        VideoFrame(
            data=torch.randint(0, 256, (size, size, 3), generator=gen, dtype=torch.uint8), pts=i * 3000
        )
        for i in range(n)
    ]


def run(gen: StreamDiffusionGenerator, frames: list[VideoFrame]) -> list[VideoFrame]:
    out = []
    for f in frames:
        out += gen.push(f)
    out += gen.flush()
    return out  # type: ignore[return-value]


def test_img2img_one_output_per_input_with_its_pts(loaded: StreamDiffusionGenerator) -> None:
    loaded.prepare({"steps": 3, "prompt": "fire style"})
    frames = clip(6)
    out = run(loaded, frames)
    assert [o.pts for o in out] == [f.pts for f in frames]
    assert all(o.data.shape == (64, 64, 3) for o in out)
    # no blank warm-up frames: the first output is a decoded picture, not a decoded zero latent
    zero = loaded.engine.decode_latents(torch.zeros(1, 4, 8, 8))[0]
    first = out[0].to_float()
    assert (first - zero).abs().mean() > 1e-3


def test_latency_matches_steps_and_buffer(loaded: StreamDiffusionGenerator) -> None:
    for steps, fbs in ((1, 1), (2, 1), (4, 1), (2, 2)):
        loaded.prepare({"steps": steps, "frame_buffer_size": fbs})
        pushes_until_first = None
        for i, f in enumerate(clip(10)):
            if loaded.push(f) and pushes_until_first is None:
                pushes_until_first = i
        assert pushes_until_first == loaded.latency_frames == steps * fbs - 1


def test_deterministic_under_seed_and_seed_matters(loaded: StreamDiffusionGenerator) -> None:
    frames = clip(4)
    loaded.prepare({"seed": 5})
    a = run(loaded, frames)
    loaded.prepare({"seed": 5})
    b = run(loaded, frames)
    loaded.prepare({"seed": 6})
    c = run(loaded, frames)
    assert all(torch.equal(x.data, y.data) for x, y in zip(a, b, strict=True))
    assert not all(torch.equal(x.data, y.data) for x, y in zip(a, c, strict=True))


def test_txt2img_pull(loaded: StreamDiffusionGenerator) -> None:
    loaded.prepare({"t_index_list": "0,16,32,45", "cfg_type": "none", "width": 64, "height": 64})
    out = []
    for i in range(5):
        out += loaded.pull(i * 3000, TB)
    out += loaded.flush()
    assert [o.pts for o in out] == [i * 3000 for i in range(5)]
    assert all(o.data.shape == (64, 64, 3) for o in out)
    assert not torch.equal(out[0].data, out[1].data), "each frame starts from its own noise"


def test_live_steps_change_is_lossless(loaded: StreamDiffusionGenerator) -> None:
    loaded.prepare({"steps": 3})
    frames = clip(8)
    out = []
    for i, f in enumerate(frames):
        if i == 4:
            loaded.update({"steps": 1, "strength": 0.5})
            assert loaded.engine.schedule is not None and loaded.engine.schedule.num_levels == 1
        out += loaded.push(f)
    out += loaded.flush()
    assert [o.pts for o in out] == [f.pts for f in frames]


def test_live_prompt_transition_changes_output_gradually(loaded: StreamDiffusionGenerator) -> None:
    frame = clip(1)[0]
    loaded.prepare({"steps": 1, "prompt": "neon style", "cfg_type": "none"})

    def one(pts: int) -> torch.Tensor:
        return loaded.push(frame.with_pts(pts))[0].to_float()

    before = one(0)
    loaded.update({"prompt": "sunset", "prompt_transition": 4, "prompt_blend": "linear"})
    path = [one(i) for i in range(1, 7)]
    loaded.prepare({"steps": 1, "prompt": "sunset", "cfg_type": "none"})
    target = one(99)
    assert torch.allclose(path[-1], target, atol=1e-6), "the transition ends at the new prompt"
    dist = [float((p - target).abs().mean()) for p in [before, *path]]
    assert dist[0] > dist[2] > dist[4] - 1e-9, "moves towards the new prompt step by step"


def test_non_live_param_cannot_change_mid_stream(loaded: StreamDiffusionGenerator) -> None:
    loaded.prepare({})
    with pytest.raises(ParamError, match="cannot change during a stream"):
        loaded.update({"frame_buffer_size": 2})
    with pytest.raises(ParamError, match="unknown parameter 'bogus'"):
        loaded.update({"bogus": 1})


def test_sizes(loaded: StreamDiffusionGenerator) -> None:
    loaded.prepare({})
    with pytest.raises(InputError, match="multiples of 8"):
        loaded.push(VideoFrame(data=torch.zeros(60, 60, 3, dtype=torch.uint8)))
    loaded.prepare({"steps": 2})
    loaded.push(clip(1, 64)[0])
    with pytest.raises(InputError, match="changed mid-stream"):
        loaded.push(clip(1, 72)[0])
    loaded.prepare({"width": 32, "height": 48})
    out = run(loaded, [VideoFrame(data=torch.zeros(60, 50, 3, dtype=torch.uint8))])
    assert out[0].data.shape == (48, 32, 3), "explicit width/height resize any input"
    with pytest.raises(ParamError, match="both width and height"):
        loaded.prepare({"width": 32})
    with pytest.raises(InputError, match="takes video input"):
        loaded.push(AudioFrame(data=torch.zeros(1, 100), sample_rate=16000))


def test_open_generator_adds_the_similarity_filter(model: Path) -> None:
    gen = open_generator("streamdiffusion", model=str(model), params={"ssf": "true", "steps": "2"})
    assert isinstance(gen, SimilarityFilteredGenerator)
    frame = clip(1)[0]
    out = []
    for i in range(30):
        out += gen.push(frame.with_pts(i))
    out += gen.flush()
    assert [o.pts for o in out] == list(range(30))
    assert gen.ssf.skipped >= 20


def test_open_generator_validates_before_loading(tmp_path: Path) -> None:
    with pytest.raises(ParamError, match="unknown parameter"):
        open_generator("streamdiffusion", model=str(tmp_path / "nowhere"), params={"nope": 1})
    with pytest.raises(ModelLoadError, match="does not exist"):
        open_generator("streamdiffusion", model=str(tmp_path / "nowhere"))


def test_reset_restarts_the_stream(loaded: StreamDiffusionGenerator) -> None:
    loaded.prepare({"steps": 2})
    frames = clip(3)
    a = run(loaded, frames)
    loaded.push(clip(1, seed=9)[0])  # leave something in flight
    loaded.reset()
    b = run(loaded, frames)
    assert all(torch.equal(x.data, y.data) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("kind", ["v_prediction", "sample"])
def test_other_prediction_types_convert_to_epsilon(model: Path, kind: str) -> None:
    """SD 2.x v-prediction models: the model output is turned into epsilon exactly."""
    from pipelines.streamdiffusion.components import load_components
    from pipelines.streamdiffusion.pipeline import StreamDiffusion

    components = load_components(model)
    components.scheduler.register_to_config(prediction_type=kind)
    engine = StreamDiffusion(components)
    gen = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(2, 4, 8, 8, generator=gen), torch.randn(2, 4, 8, 8, generator=gen)
    t = torch.tensor([359, 99])
    abar = components.scheduler.alphas_cumprod[t].view(-1, 1, 1, 1)
    x_t = abar.sqrt() * x0 + (1 - abar).sqrt() * eps
    out = abar.sqrt() * eps - (1 - abar).sqrt() * x0 if kind == "v_prediction" else x0
    torch.testing.assert_close(engine._to_epsilon(out, x_t, t), eps, rtol=1e-4, atol=1e-4)
