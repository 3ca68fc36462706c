"""The streaming speech codec: FSQ codes, lengths, streaming == offline, causality, save/load, training."""

from __future__ import annotations

import json
import math

import pytest
import torch

from streamrt.audio_codec import (
    FSQ,
    AudioCodec,
    AudioCodecConfig,
    compare,
    evaluate_codec,
    load_codec,
    save_codec,
    train_codec,
)
from streamrt.errors import InputError, ParamError

torch.set_num_threads(1)

HOP = 320
TINY = AudioCodecConfig(channels=4, max_channels=16, dilations=(1, 3))


def _codec(seed: int = 0, cfg: AudioCodecConfig | None = None) -> AudioCodec:
    torch.manual_seed(seed)
    return AudioCodec(cfg).eval()


def _voiced(n: int, seconds: float, seed: int) -> list[torch.Tensor]:
    """Harmonic 'vowels' with a syllable envelope and pauses: speech-like enough for a smoke training run."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * 16000)) / 16000
    out = []
    for _ in range(n):
        f0 = 90 + 150 * float(torch.rand(1, generator=g))
        x = sum(
            torch.sin(2 * math.pi * f0 * k * t + float(torch.rand(1, generator=g)) * 6) / k
            for k in range(1, 6)
        )
        env = torch.sin(math.pi * t * (2 + 3 * float(torch.rand(1, generator=g)))).clamp_min(0)
        out.append(0.2 * x * env)
    return out


# -------------------------------------------------------------------------------------------------------- FSQ
def test_fsq_indices_cover_codebook_and_round_trip() -> None:
    fsq = FSQ((8, 5, 5, 5))
    assert fsq.codebook_size == 1000
    codes = fsq.indices_to_codes(torch.arange(1000))  # (1000, 4)
    assert codes.abs().max() <= 1.0
    assert len({tuple(r.tolist()) for r in codes}) == 1000  # every index is a distinct point
    # Each dim takes exactly its level count of values.
    assert [len(codes[:, d].unique()) for d in range(4)] == [8, 5, 5, 5]
    # Latents spread over the bounded range reach almost every code (edge bins are half as wide as the rest).
    z = torch.atanh(torch.rand(8192, 4, generator=torch.Generator().manual_seed(0)) * 1.998 - 0.999)
    zq, idx = fsq.quantize(z)
    assert idx.dtype == torch.long and int(idx.min()) >= 0 and int(idx.max()) < 1000
    assert len(idx.unique()) >= 950
    assert torch.equal(fsq.indices_to_codes(idx), zq)
    # index -> code -> a latent on that grid point (the tanh bound inverted) -> quantize gives the index back.
    lv = torch.tensor([8.0, 5, 5, 5])
    half_l, offset = (lv - 1) * (1 + fsq.eps) / 2, torch.tensor([0.5, 0, 0, 0])
    pre = torch.atanh((codes * (lv // 2) + offset) / half_l) - torch.atanh(offset / half_l)
    assert torch.equal(fsq.quantize(pre)[1], torch.arange(1000))


def test_fsq_straight_through_gradient_and_bad_indices() -> None:
    fsq = FSQ((8, 5, 5, 5))
    z = torch.randn(16, 4, requires_grad=True)
    zq, _ = fsq.quantize(z)
    (zq * torch.arange(1.0, 5.0)).sum().backward()
    assert z.grad is not None and bool((z.grad.abs() > 0).all())
    with pytest.raises(InputError, match="1000"):
        fsq.indices_to_codes(torch.tensor([1000]))
    with pytest.raises(InputError):
        fsq.indices_to_codes(torch.tensor([0.5]))


# ----------------------------------------------------------------------------------------------------- config
def test_config_round_trip_and_validation() -> None:
    cfg = AudioCodecConfig(channels=8)
    assert cfg.codebook_size == 1000
    again = AudioCodecConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    with pytest.raises(ParamError, match="hop"):
        AudioCodecConfig(strides=(2, 4, 5, 4))
    with pytest.raises(ParamError, match="unknown"):
        AudioCodecConfig.from_dict({"width": 3})


# ----------------------------------------------------------------------------------------------- model shapes
def test_lengths_and_parameter_budget() -> None:
    codec = _codec()
    assert codec.num_parameters() <= 3_000_000
    wav = torch.randn(2, 3 * HOP + 100) * 0.1  # a trailing partial step is dropped
    codes = codec.encode(wav)
    assert codes.shape == (2, 3, 4) and codes.dtype == torch.long
    assert int(codes.min()) >= 0 and int(codes.max()) < 1000
    out = codec.decode(codes)
    assert out.shape == (2, 3 * HOP)
    assert codec.encode(torch.zeros(1, HOP - 1)).shape == (1, 0, 4)
    with pytest.raises(InputError, match="mono"):
        codec.encode(torch.zeros(1, 2, HOP))
    with pytest.raises(InputError):
        codec.decode(torch.zeros(1, 3, 2, dtype=torch.long))


def test_stream_decoder_matches_offline_for_random_splits() -> None:
    codec = _codec(1)
    g = torch.Generator().manual_seed(0)
    codes = torch.randint(0, 1000, (2, 37, 4), generator=g)
    whole = codec.decode(codes)
    assert whole.abs().max() > 1e-3  # a non-trivial output, so equality below means something
    stream = codec.stream_decoder()
    for trial in range(3):
        cuts = sorted(torch.randint(0, 38, (5,), generator=g).tolist())  # may include empty pushes
        bounds = [0, *cuts, 37]
        parts = [stream.push(codes[:, a:b]) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
        for (a, b), p in zip(zip(bounds[:-1], bounds[1:], strict=True), parts, strict=True):
            assert p.shape == (2, (b - a) * HOP)
        assert (torch.cat(parts, 1) - whole).abs().max() <= 1e-4, f"trial {trial} cuts {cuts}"
        assert stream.nbytes() > 0
        stream.reset()


def test_decoder_is_causal() -> None:
    codec = _codec(2)
    g = torch.Generator().manual_seed(1)
    codes = torch.randint(0, 1000, (1, 20, 4), generator=g)
    base = codec.decode(codes)
    for s in (0, 7, 18):
        changed = codes.clone()
        changed[:, s + 1 :] = torch.randint(0, 1000, changed[:, s + 1 :].shape, generator=g)
        out = codec.decode(changed)
        assert torch.equal(out[:, : (s + 1) * HOP], base[:, : (s + 1) * HOP]), s
        assert (
            out[:, (s + 1) * HOP :] - base[:, (s + 1) * HOP :]
        ).abs().max() > 1e-4  # the change did arrive


def test_silence_codes_are_the_codes_of_zeros() -> None:
    codec = _codec(3)
    sil = codec.silence_codes()
    assert sil.shape == (4,)
    assert torch.equal(codec.encode(torch.zeros(1, 12 * HOP))[0], sil.expand(12, 4))


# ------------------------------------------------------------------------------------------------ save / load
def test_save_load_round_trip(tmp_path) -> None:
    codec = _codec(4)
    codec.half().float()  # weights are stored in fp16: round them first so the outputs must match exactly
    save_codec(codec, tmp_path / "c")
    loaded = load_codec(tmp_path / "c")
    assert loaded.cfg == codec.cfg
    codes = torch.randint(0, 1000, (1, 10, 4), generator=torch.Generator().manual_seed(2))
    assert torch.equal(loaded.decode(codes), codec.decode(codes))
    wav = torch.randn(1, 10 * HOP, generator=torch.Generator().manual_seed(3)) * 0.1
    assert torch.equal(loaded.encode(wav), codec.encode(wav))


def test_load_errors_name_the_fix(tmp_path) -> None:
    with pytest.raises(InputError, match="save_codec"):
        load_codec(tmp_path / "missing")
    save_codec(_codec(5, TINY), tmp_path / "c")
    (tmp_path / "c" / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(InputError, match="cannot read"):
        load_codec(tmp_path / "c")
    save_codec(_codec(5, TINY), tmp_path / "d")
    (tmp_path / "d" / "config.json").write_text("{")
    with pytest.raises(InputError, match="JSON"):
        load_codec(tmp_path / "d")


# ----------------------------------------------------------------------------------------------------- metrics
def test_compare_metrics_properties() -> None:
    x = _voiced(1, 1.0, 0)[0]
    same = compare(x, x)
    assert same["mel_l1"] == 0 and same["lsd_db"] == 0 and same["snr_db"] > 100
    half = compare(x, 0.5 * x)
    assert half["snr_db"] == pytest.approx(20 * math.log10(2), abs=1e-3)  # error = x/2: 6.02 dB
    # Log-mels are off by log 2 wherever both are above the floor, by less where the floor clips them.
    assert 0.2 < half["mel_l1"] <= math.log(2) + 1e-4
    noisy = compare(x, x + 0.05 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0)))
    assert noisy["lsd_db"] > 1.0 and noisy["snr_db"] < same["snr_db"]


# ---------------------------------------------------------------------------------------------------- training
@pytest.fixture(scope="module")
def trained() -> tuple[AudioCodec, dict, list[torch.Tensor]]:
    wavs = _voiced(6, 0.6, 0)
    codec, info = train_codec(wavs, TINY, steps=60, batch=4, segment_s=0.2, lr=1e-2, seed=0, silence_p=0.25)
    return codec, info, wavs


def test_training_lowers_the_loss(trained) -> None:
    codec, info, wavs = trained
    losses = info["losses"]
    assert len(losses) == 60 and info["parameters"] == codec.num_parameters()
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.8 * first, (first, last)
    # The trained codec reconstructs better than an untrained one of the same shape.
    assert evaluate_codec(codec, wavs)["mel_l1"] < evaluate_codec(_codec(0, TINY), wavs)["mel_l1"]


def test_silence_codes_decode_to_near_silence_after_training(trained) -> None:
    codec, _, wavs = trained
    speech_rms = float(torch.cat(wavs).pow(2).mean().sqrt())
    out = codec.decode(codec.silence_codes().expand(1, 25, 4))
    assert float(out[:, 5 * HOP :].pow(2).mean().sqrt()) < 0.1 * speech_rms


def test_recipe_quick_run_writes_a_loadable_codec(tmp_path) -> None:
    import argparse

    from streamrt import audio_codec

    parser = argparse.ArgumentParser()
    audio_codec.add_arguments(parser)
    args = parser.parse_args(["--quick", "--out", str(tmp_path / "out"), "--data", str(tmp_path / "speech")])
    assert audio_codec.run(args) == 0
    metrics = json.loads((tmp_path / "out" / "eval_metrics.json").read_text())
    assert metrics["steps"] == 3 and math.isfinite(metrics["mel_l1"])
    codec = load_codec(tmp_path / "out")
    assert codec.decode(codec.silence_codes().expand(1, 2, 4)).shape == (1, 2 * HOP)
