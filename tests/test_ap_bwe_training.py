"""The AP-BWE training recipe (``streamrt train ap-bwe --quick``) and the embedded default it produced."""

from __future__ import annotations

import argparse
import json

import pytest
import torch

from pipelines.ap_bwe import train
from pipelines.ap_bwe.checkpoint import DEFAULT_DIR, load_folder
from pipelines.ap_bwe.generator import APBWEGenerator
from pipelines.ap_bwe.losses import lsd
from pipelines.ap_bwe.streaming import PackedAPBWE, enhance
from streamrt import speech
from streamrt.cli import main

needs_espeak = pytest.mark.skipif(not speech.available("espeak"), reason="espeak-ng is not installed")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_held_out_voices_are_disjoint_from_training_voices():
    held, used = set(train.voices("eval")), set(train.voices("train"))
    assert held and used and not held & used
    assert all(
        v.startswith(train.HELD_OUT_LANGUAGE) or v.split("+")[1] in train.HELD_OUT_VARIANTS for v in held
    )


def test_narrowband_input_is_band_limited_and_aligned():
    t = torch.arange(16_000) / 16_000
    low, high = torch.sin(2 * torch.pi * 1000 * t), torch.sin(2 * torch.pi * 6000 * t)
    nb = train.narrowband((low + high)[None])
    assert nb.shape == (1, 16_000)
    spec = torch.fft.rfft(nb[0]).abs()
    assert spec[6000] < 1e-3 * spec[1000]  # 6 kHz is above the 4 kHz Nyquist limit of 8 kHz audio
    torch.testing.assert_close(nb[0, 2000:-2000], low[2000:-2000], atol=2e-3, rtol=0)


@needs_espeak
def test_quick_recipe_runs_and_writes_a_loadable_model(tmp_path, capsys):
    out = tmp_path / "model"
    argv = [
        "train",
        "ap-bwe",
        "--quick",
        "--out",
        str(out),
        "--data-dir",
        str(tmp_path / "speech"),
        "--no-progress",
    ]
    assert main(argv) == 0, capsys.readouterr().err
    metrics = json.loads((out / "train_metrics.json").read_text())
    assert metrics["steps"] == 3 and metrics["history"]
    assert {"mag", "pha", "com", "stft", "adv", "fm", "disc"} <= set(metrics["history"][0])
    summary = metrics["eval"]["summary"]["espeak_held_out"]
    assert summary["lsd_model"] > 0 and summary["lsd_plain_resampling"] > 0
    model = load_folder(out)
    assert model.config.sample_rate == 16_000 and model.config.narrowband_rate == 8_000
    assert (out / "model.safetensors").stat().st_size < 2_000_000


def test_recipe_defaults_are_the_paper_structure():
    parser = argparse.ArgumentParser()
    train.add_arguments(parser)
    args = parser.parse_args([])
    assert args.layers == 8 and args.segment == 8000  # the published depth (receptive field) and segment
    assert args.lr_decay == 0.999


@pytest.mark.skipif(
    not (DEFAULT_DIR / "model.safetensors").is_file(), reason="the default is not trained yet"
)
def test_embedded_default_loads_and_beats_plain_resampling(tmp_path):
    gen = APBWEGenerator.load()
    assert gen.config.sample_rate == 16_000 and gen.config.layers == 8
    if not speech.available("espeak"):
        pytest.skip("espeak-ng is not installed")
    pairs = train.speech_pairs(tmp_path, 3, split="eval", seed=0)
    packed = PackedAPBWE.from_module(gen.model)
    for nb, wb in pairs:
        assert float(lsd(enhance(packed, nb), wb)) < float(lsd(nb, wb))
    assert (DEFAULT_DIR / "README.md").is_file()


@pytest.mark.skipif(
    not (DEFAULT_DIR / "model.safetensors").is_file(), reason="the default is not trained yet"
)
def test_bench_rows_have_the_issue_fields(capsys):
    argv = [
        "bench",
        "ap-bwe",
        "--json",
        "--models",
        "default",
        "--seconds",
        "0.5",
        "--repeats",
        "1",
        "--warmup",
        "0",
    ]
    assert main([*argv, "--threads", "1", "--bf16", "--precisions", "int8"]) == 0, capsys.readouterr().err
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"suite", "model", "params", "offline_speed", "stream_speed_20ms"} <= set(row)
    assert row["suite"] == "ap-bwe" and row["model"] == "default" and row["params"] == 2_722_691
    assert row["offline_speed"] > 0 and row["stream_speed_20ms"] > 0 and row["stream_speed_20ms_bf16"] > 0
    assert row["offline_speed_int8"] > 0 and row["stream_speed_20ms_int8"] > 0
    assert main([*argv, "--precisions", "float16"]) != 0
    assert "float16" in capsys.readouterr().err
