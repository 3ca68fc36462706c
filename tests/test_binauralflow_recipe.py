"""BinauralFlow's recipe (--quick), bench suite and the trained default: a source on the left comes out louder and
earlier in the left ear."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch

from pipelines.binauralflow import bench, train
from pipelines.binauralflow.evaluate import interaural, model_render
from pipelines.binauralflow.flow import flow_matching_loss
from pipelines.binauralflow.generator import BinauralFlowGenerator, read_model
from pipelines.binauralflow.model import CausalUNet
from pipelines.binauralflow.simulate import SPEECH_RMS
from streamrt.errors import ParamError
from streamrt.frames import AudioFrame


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _parse(module, argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    return parser.parse_args(argv)


def test_quick_recipe_trains_saves_and_evaluates(tmp_path):
    args = _parse(
        train,
        ["--quick", "--out", str(tmp_path / "m"), "--data-dir", str(tmp_path / "speech"), "--no-progress"],
    )
    assert train.run(args) == 0
    out = tmp_path / "m"
    for name in ("model.safetensors", "config.json", "train_metrics.json", "eval_metrics.json", "plot.png"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "eval_metrics.json").read_text())
    # the recipe's model warps its condition, so the warp alone is scored as a baseline too
    assert set(metrics["overall"]) == {"binauralflow", "dsp", "mono", "warp"}
    assert "warp" in metrics["lateral"]["left"] and "warp" in metrics["ild_by_azimuth"]["rows"][0]
    assert all(np.isfinite(v) for m in metrics["overall"].values() for v in m.values())
    BinauralFlowGenerator.load(model=str(out))  # the folder is a loadable model


def test_recipe_refuses_a_device_it_does_not_have(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the refusal is for machines without it")
    args = _parse(train, ["--quick", "--out", str(tmp_path / "m"), "--device", "cuda", "--no-progress"])
    with pytest.raises(ParamError, match="--device cpu"):
        train.run(args)
    assert not (tmp_path / "m").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_training_step_on_cuda_draws_the_cpu_run_s_numbers():
    torch.manual_seed(0)
    net = CausalUNet(train.TINY)
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(2, 2, 8, 256, generator=g), torch.randn(2, 4, 8, 256, generator=g)
    poses = torch.randn(2, 8, 14, generator=g)
    cpu = flow_matching_loss(net, y, x, poses, torch.Generator().manual_seed(5))
    cuda = flow_matching_loss(
        net.to("cuda"), y.cuda(), x.cuda(), poses.cuda(), torch.Generator().manual_seed(5)
    ).cpu()
    assert torch.allclose(cpu, cuda, rtol=1e-3)


def test_bench_rows_have_the_issue_fields(tmp_path):
    torch.manual_seed(0)
    train.save_model(CausalUNet(train.TINY), tmp_path / "m", {})
    args = _parse(
        bench,
        [
            "--model",
            str(tmp_path / "m"),
            "--models",
            "default",
            "--seconds",
            "0.3",
            "--chunk-ms",
            "20,100",
            "--repeats",
            "1",
            "--warmup",
            "0",
        ],
    )
    rows = list(bench.run(args))
    assert [r["chunk_ms"] for r in rows] == [20.0, 100.0]
    for row in rows:
        assert set(bench.FIELDS) <= set(row) and row["suite"] == "binauralflow" and row["nfe"] == 6
        assert row["stream_speed"] > 0 and row["params"] > 0


@pytest.fixture(scope="module")
def default_renders():
    """The embedded default on a held-out-style utterance (2 s), a source 1.5 m to the left and to the right, with
    the default schedule (NFE 6 of 12, early skip) and the full one (NFE 12)."""
    from streamrt import speech

    if not speech.available("espeak"):  # pragma: no cover - CI installs espeak-ng
        pytest.skip("espeak-ng is not installed")
    net = read_model()
    mono = speech.corpus("runs/speech/test-probe", 1, engine="espeak", sample_rate=48_000, seed=4242)[0]
    mono = (mono / mono.pow(2).mean().sqrt() * SPEECH_RMS)[:, : 2 * 48_000 + 50]
    return {
        (side, nfe): interaural(model_render(net, mono, np.array([0.0, 1.5 * side, 0.0]), nfe=nfe))
        for side in (1.0, -1.0)
        for nfe in (6, 12)
    }


def test_trained_default_puts_a_left_source_louder_in_the_left_ear(default_renders):
    for side in (1.0, -1.0):
        ild, _ = default_renders[(side, 6)]
        assert side * ild > 1.0, (side, ild)


def test_trained_default_without_early_skip_puts_a_left_source_earlier_in_the_left_ear(default_renders):
    for side in (1.0, -1.0):
        _, lead = default_renders[(side, 12)]
        assert side * lead > 0, (side, lead)


def test_trained_default_puts_a_left_source_earlier_in_the_left_ear(default_renders):
    for side in (1.0, -1.0):
        _, lead = default_renders[(side, 6)]
        assert side * lead > 0, (side, lead)


def test_default_generator_streams_stereo():
    gen = BinauralFlowGenerator.load()
    gen.prepare({"source_position": "0,1,0"})
    data = torch.randn(1, 4800) * 0.05
    outs = gen.push(AudioFrame(data=data, sample_rate=48_000)) + gen.flush()
    assert sum(o.samples for o in outs) == 4800 and all(o.channels == 2 for o in outs)
