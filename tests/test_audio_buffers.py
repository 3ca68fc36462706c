"""The shared audio machinery: streaming STFT/ISTFT against torch's offline transforms, carried convolution state
against an offline convolution, the resampler, and the offline speech corpus."""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F

from buffers.conv_state import ContextCarry, StateBank
from buffers.stft import StreamingISTFT, StreamingSTFT, istft, stft
from streamrt import speech
from streamrt.resample import StreamResampler, resample

CONFIGS = [
    (1024, 80, 320, "center"),
    (512, 128, None, "center"),
    (512, 128, None, "causal"),
    (64, 16, 48, "center"),
]


def _chunks(total: int, seed: int, most: int) -> list[tuple[int, int]]:
    rng = random.Random(seed)
    out, i = [], 0
    while i < total:
        k = rng.randint(1, most)
        out.append((i, min(total, i + k)))
        i += k
    return out


@pytest.mark.parametrize(("n_fft", "hop", "win", "padding"), CONFIGS)
def test_streaming_stft_equals_offline(n_fft, hop, win, padding):
    x = torch.randn(2, 3001, generator=torch.Generator().manual_seed(0))
    whole = stft(x, n_fft, hop, win, padding=padding)
    if padding == "center":
        ref = torch.stft(
            x, n_fft, hop, win, torch.hann_window(win or n_fft), center=True, return_complex=True
        )
        torch.testing.assert_close(whole, ref)
    s = StreamingSTFT(n_fft, hop, win, padding=padding)
    parts = [s.push(x[..., a:b]) for a, b in _chunks(x.shape[-1], 1, 700)] + [s.flush()]
    torch.testing.assert_close(torch.cat(parts, dim=-1), whole, rtol=0, atol=0)


@pytest.mark.parametrize(("n_fft", "hop", "win", "padding"), CONFIGS)
def test_streaming_istft_equals_offline_and_reconstructs(n_fft, hop, win, padding):
    x = torch.randn(2, 3001, generator=torch.Generator().manual_seed(1))
    spec = stft(x, n_fft, hop, win, padding=padding)
    if padding == "center":
        ref = torch.istft(spec, n_fft, hop, win, torch.hann_window(win or n_fft), center=True, length=3001)
        torch.testing.assert_close(istft(spec, n_fft, hop, win, padding=padding, length=3001), ref)
    inverse = StreamingISTFT(n_fft, hop, win, padding=padding)
    parts = [inverse.push(spec[..., a:b]) for a, b in _chunks(spec.shape[-1], 2, 9)] + [inverse.flush(3001)]
    y = torch.cat(parts, dim=-1)
    assert y.shape == x.shape
    torch.testing.assert_close(y, x, atol=1e-5, rtol=1e-5)


def test_istft_emits_samples_as_soon_as_they_are_final():
    # causal, full-length window: after frame t, samples up to (t + 1) * hop - (n_fft - hop) are final
    n_fft, hop = 512, 128
    x = torch.randn(1, 128 * 20)
    spec = stft(x, n_fft, hop, padding="causal")
    inverse = StreamingISTFT(n_fft, hop, padding="causal")
    emitted = 0
    for t in range(spec.shape[-1]):
        emitted += inverse.push(spec[..., t : t + 1]).shape[-1]
        assert emitted == max(0, (t + 1) * hop - (n_fft - hop))
    # and changing a later frame never changes what was emitted: it was final
    assert inverse.flush().shape[-1] == x.shape[-1] - emitted


def test_stft_of_a_stream_shorter_than_the_reflection():
    x = torch.randn(1, 100)
    s = StreamingSTFT(1024, 80, 320)
    assert s.push(x).shape[-1] == 0
    torch.testing.assert_close(s.flush(), stft(x, 1024, 80, 320))


def test_causal_framing_refuses_a_short_window():
    with pytest.raises(ValueError, match="win_length == n_fft"):
        StreamingSTFT(1024, 80, 320, padding="causal")


@pytest.mark.parametrize(("kernel", "dilation"), [(3, 1), (7, 1), (3, 4)])
def test_context_carry_makes_a_chunked_causal_conv_equal_the_offline_one(kernel, dilation):
    conv = torch.nn.Conv1d(4, 5, kernel, dilation=dilation)
    x = torch.randn(2, 4, 301)
    context = (kernel - 1) * dilation
    ref = conv(F.pad(x, (context, 0)))
    carry = ContextCarry(context)
    with torch.no_grad():
        got = torch.cat([conv(carry(x[..., a:b])) for a, b in _chunks(301, 3, 40)], dim=-1)
    torch.testing.assert_close(got, ref.detach())


def test_context_carry_streams_a_symmetric_conv_with_a_delay():
    # a non-causal k7 conv (padding 3 each side) streams with 3 steps of delay and 3 zeros fed at the end
    conv = torch.nn.Conv1d(2, 2, 7, padding=0)
    x = torch.randn(1, 2, 50)
    ref = conv(F.pad(x, (3, 3))).detach()
    carry = ContextCarry(6)
    with torch.no_grad():
        outs = [conv(carry(torch.cat([x[..., :10]], -1)))]
        outs.append(conv(carry(x[..., 10:])))
        outs.append(conv(carry(torch.zeros(1, 2, 3))))
    got = torch.cat(outs, -1)[..., 3:]  # the first 3 outputs are for positions before the stream
    torch.testing.assert_close(got, ref)


def test_state_bank():
    bank = StateBank()
    a = bank.carry(("step0", "conv1"), 2)
    assert bank.carry(("step0", "conv1"), 2) is a and len(bank) == 1
    a(torch.ones(1, 3, 5))
    assert bank.nbytes() == 1 * 3 * 2 * 4
    with pytest.raises(ValueError, match="context"):
        bank.carry(("step0", "conv1"), 3)
    bank.reset()
    assert bank.nbytes() == 0


def test_resample_lengths_and_stream_equality():
    x = torch.randn(2, 8001)
    y = resample(x, 8000, 16000)
    assert y.shape == (2, 16002)
    r = StreamResampler(8000, 16000, 2)
    got = torch.cat([r.push(x[:, a:b]) for a, b in _chunks(8001, 4, 500)] + [r.flush()], dim=-1)
    torch.testing.assert_close(got, y)
    # a 1 kHz tone keeps its frequency
    t = torch.arange(8000) / 8000
    tone = torch.sin(2 * torch.pi * 1000 * t)[None]
    up = resample(tone, 8000, 48000)[0]
    peak = torch.fft.rfft(up).abs().argmax().item() * 48000 / up.numel()
    assert abs(peak - 1000) < 2


def test_sentences_are_reproducible():
    assert speech.sentences(5, seed=3) == speech.sentences(5, seed=3)
    assert speech.sentences(5, seed=3) != speech.sentences(5, seed=4)


@pytest.mark.skipif(
    not speech.available("espeak"), reason="espeak-ng is not installed (apt-get install espeak-ng)"
)
def test_espeak_corpus(tmp_path):
    clips = speech.corpus(tmp_path, 2, sample_rate=16_000, seed=1)
    assert len(clips) == 2 and all(c.shape[0] == 1 and c.shape[1] > 8000 for c in clips)
    assert all(0.05 < float(c.abs().max()) <= 1.1 for c in clips)
    files = sorted(tmp_path.glob("*.wav"))
    stamps = [f.stat().st_mtime_ns for f in files]
    speech.corpus(tmp_path, 2, sample_rate=16_000, seed=1)  # cached: nothing re-synthesised
    assert [f.stat().st_mtime_ns for f in files] == stamps


def test_stft_emits_a_frame_once_its_window_is_in():
    # AP-BWE framing: a 320-sample window centred in a 1024-sample frame. Frame t (centred on sample t*hop) is complete
    # once sample t*hop + win/2 - 1 is in; the frame's zero tail needs no input.
    n_fft, hop, win = 1024, 80, 320
    x = torch.randn(1, 4000)
    s = StreamingSTFT(n_fft, hop, win)
    emitted = 0
    for n in range(1, 4001):
        emitted += s.push(x[:, n - 1 : n]).shape[-1]
        if n > n_fft // 2:  # the left reflection needs the first n_fft/2 + 1 samples
            assert emitted == (n - win // 2) // hop + 1, n
    torch.testing.assert_close(
        torch.cat([stft(x, n_fft, hop, win)[..., :emitted], s.flush()], -1), stft(x, n_fft, hop, win)
    )
