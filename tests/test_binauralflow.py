"""BinauralFlow: the invariants of the issue (causality, streaming == offline, solver order, NFE under early skip),
the HRTF reader, poses and trajectories, the simulator, and the generator's parameters and loading."""

from __future__ import annotations

import dataclasses
import math
import random
import struct

import numpy as np
import pytest
import torch
from contract_binauralflow import tiny_generator

from pipelines.binauralflow import hrtf as hrtf_mod
from pipelines.binauralflow.evaluate import interaural
from pipelines.binauralflow.flow import (
    SIGMA,
    Schedule,
    channels_to_complex,
    complex_to_channels,
    compress,
    decompress,
    early_skip_start,
    flow_matching_loss,
    midpoint_solve,
)
from pipelines.binauralflow.generator import BinauralFlowGenerator, read_model
from pipelines.binauralflow.model import (
    FULL,
    CausalUNet,
    count_parameters,
    frame_group_norm,
    source_direction,
)
from pipelines.binauralflow.poses import load_trajectory, parse_numbers, parse_pose, relative_position
from pipelines.binauralflow.simulate import dsp_render, render, room_ir
from pipelines.binauralflow.streaming import (
    BinauralStreamer,
    FrameRenderer,
    frame_noise,
    render_offline,
)
from pipelines.binauralflow.train import TINY, save_model
from streamrt.errors import InputError, ModelLoadError, ParamError
from streamrt.frames import AudioFrame


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def net() -> CausalUNet:
    torch.manual_seed(0)
    net = CausalUNet(TINY).eval()
    torch.nn.init.normal_(net.pose_mlp[-1].weight, std=0.5)  # trained models start it at zero
    return net


def still(position=(1.0, 0.0, 0.0)):
    pose = torch.tensor([*position, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0])
    return lambda frames: pose.expand(len(frames), -1)


def speechlike(samples: int, seed: int = 0) -> torch.Tensor:
    """Noise with a decaying spectrum and a syllable-rate envelope: enough structure for the checks."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, samples, generator=g)
    x = torch.cumsum(x, -1) * 0.02
    x = x - torch.nn.functional.avg_pool1d(x[None], 65, 1, 32, count_include_pad=False)[0]
    env = 0.6 + 0.4 * torch.sin(torch.arange(samples) * 2 * math.pi * 4 / 48_000)
    return (x * env * 0.3).clamp(-1, 1)


# ---------------------------------------------------------------------------------------------------- HRTF
def _mhr_bytes(stereo: bool) -> tuple[bytes, np.ndarray, np.ndarray]:
    """A tiny MinPHR02 file: s16, 2 elevations (1 and 4 azimuths), 8 taps."""
    az = (1, 4)
    n_ir, taps, ears = 5, 8, 2 if stereo else 1
    rng = np.random.default_rng(0)
    coeffs = rng.integers(-20000, 20000, size=(n_ir, taps, ears)).astype("<i2")
    delays = rng.integers(0, 20, size=(n_ir, ears)).astype(np.uint8)
    head = b"MinPHR02" + struct.pack("<IBBBB", 48000, 0, int(stereo), taps, 1) + struct.pack("<HB", 1000, 2)
    return head + bytes(az) + coeffs.tobytes() + delays.tobytes(), coeffs, delays


def test_mhr_parser_reads_values_and_mirrors_left_only_sets():
    data, coeffs, delays = _mhr_bytes(stereo=False)
    h = hrtf_mod.parse_mhr(data)
    assert h.sample_rate == 48000 and h.az_counts == (1, 4) and h.ir_size == 8 and h.distance == 1.0
    np.testing.assert_allclose(h.left, coeffs[..., 0] / 32768.0)
    # right ear of azimuth index a = left ear of index (n - a) % n within the elevation
    assert np.array_equal(h.right[1 + 1], h.left[1 + 3]) and np.array_equal(h.right[1], h.left[1])
    assert h.delay_right[1 + 3] == delays[1 + 1, 0]
    stereo, coeffs2, delays2 = _mhr_bytes(stereo=True)
    h2 = hrtf_mod.parse_mhr(stereo)
    np.testing.assert_allclose(h2.right, coeffs2[..., 1] / 32768.0)
    assert np.array_equal(h2.delay_right, delays2[:, 1])


def test_mhr_parser_rejects_bad_files():
    data, _, _ = _mhr_bytes(stereo=False)
    with pytest.raises(ModelLoadError, match="magic"):
        hrtf_mod.parse_mhr(b"MinPHR03" + data[8:])
    with pytest.raises(ModelLoadError, match="bytes"):
        hrtf_mod.parse_mhr(data[:-3])
    with pytest.raises(ModelLoadError, match="libopenal-data"):
        hrtf_mod.load_mhr("/nonexistent/default-48000.mhr")


def test_openal_default_set_puts_a_left_source_in_the_left_ear():
    h = hrtf_mod.load_mhr()
    assert h.sample_rate == 48000 and h.ir_size == 32 and sum(h.az_counts) == 828
    left = h.index(math.radians(90), 0.0)  # +y: the listener's left
    assert h.delay_left[left] < h.delay_right[left]
    assert (h.left[left] ** 2).sum() > 4 * (h.right[left] ** 2).sum()
    front = h.index(0.0, 0.0)
    assert h.delay_left[front] == h.delay_right[front]


# ---------------------------------------------------------------------------------------------------- poses
def test_pose_parsing_errors_name_the_parameter():
    assert parse_numbers("1, 0,0", 3, "p") == (1.0, 0.0, 0.0)
    with pytest.raises(ParamError, match="source_position"):
        parse_numbers("1,0", 3, "source_position")
    with pytest.raises(ParamError, match="listener_pose"):
        parse_pose("0,0,0,0,0,0,0", "listener_pose")  # zero quaternion
    assert torch.allclose(parse_pose("1,2,3,2,0,0,0", "p"), torch.tensor([1.0, 2, 3, 1, 0, 0, 0]))


def test_trajectory_interpolates_positions_linearly_and_rotations_by_slerp(tmp_path):
    path = tmp_path / "path.csv"
    yaw90 = (math.cos(math.pi / 4), 0.0, 0.0, math.sin(math.pi / 4))
    path.write_text(
        "time_s,sx,sy,sz,sqw,sqx,sqy,sqz,lx,ly,lz,lqw,lqx,lqy,lqz\n"
        "0, 1,0,0, 1,0,0,0, 0,0,0, 1,0,0,0\n"
        f"2, 1,2,0, {yaw90[0]},0,0,{yaw90[3]}, 0,0,0, {yaw90[0]},0,0,{yaw90[3]}\n"
    )
    traj = load_trajectory(path)
    p = traj.at(torch.tensor([-1.0, 1.0, 5.0]))
    assert p.shape == (3, 14)
    assert torch.allclose(p[1, :3], torch.tensor([1.0, 1.0, 0.0]))
    yaw45 = torch.tensor([math.cos(math.pi / 8), 0.0, 0.0, math.sin(math.pi / 8)])
    assert torch.allclose(p[1, 3:7], yaw45, atol=1e-6) and torch.allclose(p[1, 10:14], yaw45, atol=1e-6)
    assert torch.allclose(p[0, :3], torch.tensor([1.0, 0.0, 0.0])) and torch.allclose(
        p[2, :3], torch.tensor([1.0, 2, 0])
    )
    # a listener turned 90 degrees to the left hears a source at +x on its right (-y)
    rel = relative_position(p[2:, :7], p[2:, 7:])
    assert torch.allclose(rel, torch.tensor([[2.0, -1.0, 0.0]]), atol=1e-5)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("0,1,0,0,1,0,0,0\n", "15"),
        ("0,1,0,0,1,0,0,0,0,0,0,1,0,0,x\n", "not a number"),
        ("1," + "1,0,0,1,0,0,0," * 2 + "\n", "15"),
        ("1,1,0,0,1,0,0,0,0,0,0,1,0,0,0\n0,1,0,0,1,0,0,0,0,0,0,1,0,0,0\n", "increase"),
        ("# nothing\n", "no trajectory rows"),
    ],
)
def test_malformed_trajectories_are_clear_errors(tmp_path, text, match):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(InputError, match=match):
        load_trajectory(path)


# ---------------------------------------------------------------------------------------------------- simulator
@pytest.mark.parametrize("with_room", [True, False])
def test_simulated_left_source_is_louder_and_earlier_in_the_left_ear(with_room):
    h = hrtf_mod.load_mhr()
    mono = speechlike(24_000)
    for side in (1.0, -1.0):
        y = (
            render(mono, np.array([0.0, 1.5 * side, 0.0]), h)
            if with_room
            else dsp_render(mono, np.array([0.0, 1.5 * side, 0.0]), h)
        )
        ild, lead = interaural(y)
        assert side * ild > 3 and side * lead > 10, (side, ild, lead)  # the room tail lowers the ILD


def test_room_adds_reflections_and_a_tail_to_the_direct_path():
    h = hrtf_mod.load_mhr()
    p = np.array([1.0, 0.5, 0.0])
    ir = room_ir(p, h)
    direct = render(torch.eye(1, 4000)[:1], p, h, room=None)
    assert ir.shape[1] > 0.25 * 48_000
    np.testing.assert_allclose(ir[:, :8], direct[:, :8].numpy(), atol=1e-7)  # before any reflection arrives
    assert np.abs(ir[:, 2000:]).sum() > 0


# ---------------------------------------------------------------------------------------------------- model
def test_full_size_config_has_about_78m_parameters():
    with torch.device("meta"):
        full = CausalUNet(FULL)
    assert 70e6 < count_parameters(full) < 85e6


def test_group_norm_statistics_are_per_frame(net):
    x = torch.randn(2, 8, 5, 64)
    norm = torch.nn.GroupNorm(4, 8)
    torch.nn.init.normal_(norm.weight)
    out = frame_group_norm(x, norm)
    for t in range(5):
        alone = torch.nn.functional.group_norm(x[:, :, t], 4, norm.weight, norm.bias, norm.eps)
        assert torch.allclose(out[:, :, t], alone, atol=1e-5)


def test_network_is_causal_in_time(net):
    g = torch.Generator().manual_seed(1)
    phi, x = torch.randn(1, 4, 24, 256, generator=g), torch.randn(1, 2, 24, 256, generator=g)
    poses = torch.randn(1, 24, 14, generator=g)
    t = torch.tensor([0.7])
    with torch.no_grad():
        a = net(phi, x, t, poses)
        phi2, x2, poses2 = phi.clone(), x.clone(), poses.clone()
        phi2[:, :, 15:] += 1.0
        x2[:, :, 15:] -= 1.0
        poses2[:, 15:] += 0.5
        b = net(phi2, x2, t, poses2)
    assert torch.equal(a[:, :, :15], b[:, :, :15])
    assert not torch.allclose(a[:, :, 15:], b[:, :, 15:])


# ---------------------------------------------------------------------------------------------------- flow
def test_flow_matching_loss_is_l1_on_y_minus_z():
    g = torch.Generator().manual_seed(3)
    y, x = torch.randn(2, 4, 3, 8, generator=g), torch.randn(2, 2, 3, 8, generator=g)
    seen = {}

    def zero_net(phi, x_, t, poses):
        seen["phi"], seen["t"] = phi, t
        return torch.zeros_like(phi)

    loss = flow_matching_loss(zero_net, y, x, torch.zeros(2, 3, 14), torch.Generator().manual_seed(7))
    gen = torch.Generator().manual_seed(7)
    t = torch.rand(2, generator=gen)
    eps = torch.randn(y.shape, generator=gen)
    z = torch.cat([x, x], 1) + SIGMA * eps
    assert torch.allclose(seen["t"], t)
    assert torch.allclose(seen["phi"], t[:, None, None, None] * y + (1 - t[:, None, None, None]) * z)
    assert torch.isclose(loss, (y - z).abs().mean())


def test_complex_channel_layout_roundtrips():
    spec = torch.randn(1, 2, 3, 5, dtype=torch.complex64)
    ch = complex_to_channels(spec)
    assert torch.equal(ch[0, 0], spec[0, 0].real) and torch.equal(ch[0, 3], spec[0, 1].imag)
    assert torch.equal(channels_to_complex(ch), spec)


def test_target_head_gives_the_velocity_that_reaches_the_filtered_mono():
    # with the network's own head output at zero and the pose gain map holding a filter H, v = (H x - phi) / (1 - t):
    # the flow's exact velocity when y = H x, at every t (1 - t floored at 1 / 12); x is the condition pair (the
    # mono signal warped per ear by the poses' time difference)
    torch.manual_seed(0)
    net = CausalUNet(TINY).eval()
    assert net.config.head == "target"
    g = torch.Generator().manual_seed(1)
    h = torch.randn(4, 256, generator=g)  # left re, left im, right re, right im per bin
    with torch.no_grad():
        net.conv_out.conv.weight.zero_()
        net.conv_out.conv.bias.zero_()
        net.pose_gain.bias.copy_(h.flatten())
    x = torch.randn(2, 2, 5, 256, generator=g)
    phi = torch.randn(2, 4, 5, 256, generator=g)
    poses = torch.randn(2, 5, 14, generator=g)
    hx = complex_to_channels(
        channels_to_complex(h[None, :, None, :]) * channels_to_complex(net.pair(x, poses))
    )
    for t in (0.0, 0.5, 0.9, 1.0):
        tt = torch.full((2,), t)
        expected = (hx - phi) / max(1 - t, 1 / 12)
        assert torch.allclose(net(phi, x, tt, poses), expected, atol=1e-4)


def test_source_direction_is_in_the_listener_s_head_frame():
    c = math.sqrt(0.5)
    turned = [0.0, 0.0, 0.0, c, 0.0, 0.0, c]  # listener yawed 90 degrees: facing +y
    poses = torch.tensor(
        [
            [0.0, 2.0, 0.0, 1, 0, 0, 0, 0.0, 0.0, 0.0, 1, 0, 0, 0],  # 2 m to the left of an unturned listener
            [0.0, 2.0, 0.0, 1, 0, 0, 0, *turned],  # the same point, now in front of the turned listener
            [1.0, 1.0, 0.5, 1, 0, 0, 0, 1.0, 0.0, 0.5, 1, 0, 0, 0],  # listener moved: 1 m to its left
        ]
    )
    out = source_direction(poses)
    assert torch.allclose(out[0], torch.tensor([0.0, 1.0, 0.0, 2.0]), atol=1e-6)
    assert torch.allclose(out[1], torch.tensor([1.0, 0.0, 0.0, 2.0]), atol=1e-6)
    assert torch.allclose(out[2], torch.tensor([0.0, 1.0, 0.0, 1.0]), atol=1e-6)


def test_pose_gain_map_starts_silent_and_carries_the_pose():
    torch.manual_seed(0)
    net = CausalUNet(TINY).eval()
    assert not net.pose_gain.weight.any() and not net.pose_gain.bias.any()
    torch.nn.init.normal_(net.pose_gain.weight, std=0.5)
    x, phi = torch.randn(1, 2, 4, 256), torch.randn(1, 4, 4, 256)
    left, right = (still((0.0, s, 0.0))(torch.arange(4))[None] for s in (1.5, -1.5))
    t = torch.full((1,), 0.5)
    assert not torch.allclose(net(phi, x, t, left), net(phi, x, t, right), atol=1e-3)


def test_compressed_representation_inverts_and_keeps_per_bin_gains():
    g = torch.Generator().manual_seed(0)
    spec = torch.randn(2, 257, 9, dtype=torch.complex64, generator=g)
    spec[0, 3, 4] = 0  # silence stays silence
    for exponent, scale in ((0.5, 1.0), (0.3, 2.5), (1.0, 1.0)):
        c = compress(spec, exponent, scale)
        assert torch.allclose(decompress(c, exponent, scale), spec, rtol=1e-4, atol=1e-5)
        assert c[0, 3, 4] == 0
        assert torch.allclose(c.angle()[spec.abs() > 0], spec.angle()[spec.abs() > 0], atol=1e-5)
    # an HRTF-like complex gain per bin (level and delay) is a complex gain per bin of the compressed spectra too
    gain = torch.polar(torch.rand(257, 1, generator=g) + 0.5, torch.rand(257, 1, generator=g) * 6)
    c_in, c_out = compress(spec[1], 0.5, 2.0), compress(gain * spec[1], 0.5, 2.0)
    assert torch.allclose(
        c_out, gain.abs() ** 0.5 * torch.exp(1j * gain.angle()) * c_in, rtol=1e-4, atol=1e-5
    )
    assert not torch.allclose(c_out, gain * c_in, rtol=1e-2)


def test_early_skip_schedule():
    s = Schedule(steps=12, nfe=6)
    assert s.t0 == 0.5 and len(s.intervals()) == 3
    assert s.eval_times() == pytest.approx([0.5, 7 / 12, 2 / 3, 0.75, 5 / 6, 11 / 12])
    assert Schedule(12, 12).t0 == 0.0
    for bad in ({"steps": 12, "nfe": 5}, {"steps": 12, "nfe": 14}, {"steps": 7, "nfe": 2}):
        with pytest.raises(ParamError):
            Schedule(**bad)
    x2, eps = torch.randn(4), torch.randn(4)
    assert torch.allclose(early_skip_start(x2, eps, 0.5), x2 + 0.25 * eps)  # (1 - t0) * sigma


def test_midpoint_solver_is_second_order():
    # d phi / dt = cos(t) * phi, phi(0) = 1  ->  phi(1) = exp(sin(1))
    exact = math.exp(math.sin(1.0))

    def error(steps: int) -> float:
        phi = midpoint_solve(
            lambda p, t, k: math.cos(t) * p, torch.ones(1, dtype=torch.float64), Schedule(steps, steps)
        )
        return abs(float(phi) - exact)

    ratios = [error(n) / error(2 * n) for n in (64, 128)]  # the asymptotic ratio of a 2nd-order method: 4
    assert all(3.6 < r < 4.4 for r in ratios), ratios
    # and a first-order (Euler) scheme would give 2: the test can tell them apart
    euler = []
    for n in (64, 128):
        phi, dt = 1.0, 1.0 / n
        for i in range(n):
            phi += dt * math.cos(i * dt) * phi
        euler.append(abs(phi - exact))
    assert 1.6 < euler[0] / euler[1] < 2.4


@pytest.mark.parametrize(("steps", "nfe"), [(12, 6), (12, 12), (8, 2)])
def test_nfe_count_under_early_skip(net, steps, nfe):
    calls = []

    class Counting(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = net
            self.config = net.config
            self.condition = net.condition

        def forward(self, phi, x, t, poses, state=None, cond=None):
            calls.append(float(t))
            return self.inner(phi, x, t, poses, state, cond)

    renderer = FrameRenderer(Counting(), Schedule(steps, nfe), 0, still())
    renderer(torch.randn(1, 257, 6, dtype=torch.complex64))
    assert len(calls) == nfe == renderer.evaluations
    assert calls == pytest.approx(Schedule(steps, nfe).eval_times())
    assert min(calls) == pytest.approx(1 - nfe / steps)


# ---------------------------------------------------------------------------------------------------- streaming
def test_frame_noise_does_not_depend_on_chunking():
    whole = frame_noise(5, 0, 10)
    parts = torch.cat([frame_noise(5, 0, 3), frame_noise(5, 3, 7)], dim=2)
    assert torch.equal(whole, parts) and not torch.equal(whole, frame_noise(6, 0, 10))


def test_streaming_equals_offline_with_random_chunks_and_a_moving_source(net, tmp_path):
    path = tmp_path / "orbit.csv"
    rows = [f"{t:.2f},{math.cos(t)},{math.sin(t)},0.1,1,0,0,0,0,0,0,1,0,0,0" for t in np.linspace(0, 1.0, 6)]
    path.write_text("\n".join(rows) + "\n")
    traj = load_trajectory(path)
    from pipelines.binauralflow.streaming import frame_times

    poses = lambda frames: traj.at(frame_times(frames))  # noqa: E731
    mono = speechlike(30_011, seed=4)
    schedule = Schedule(12, 6)
    reference = render_offline(net, mono, schedule, 9, poses)
    rng = random.Random(0)
    for _ in range(2):
        streamer = BinauralStreamer(net, schedule, 9, poses)
        outs, i = [], 0
        while i < mono.shape[1]:
            n = rng.choice([1, 17, 128, 480, 1000, 4800])
            outs.append(streamer.push(mono[:, i : i + n]))
            i += n
        outs.append(streamer.flush())
        streamed = torch.cat(outs, -1)
        assert streamed.shape == reference.shape == (2, mono.shape[1])
        rel = (streamed - reference).abs().max() / reference.abs().max()
        assert rel <= 1e-3, rel
    # the buffer bank holds one state per causal layer per solver evaluation
    assert len(streamer.renderer.bank) == schedule.nfe * len(net.causal_layers())


def test_streaming_equals_offline_on_the_compressed_representation():
    torch.manual_seed(1)
    net = CausalUNet(dataclasses.replace(TINY, spec_exponent=0.5, spec_scale=2.0)).eval()
    torch.nn.init.normal_(net.pose_mlp[-1].weight, std=0.5)
    mono = speechlike(9_600 + 77, seed=8)
    reference = render_offline(net, mono, Schedule(12, 6), 3, still((0.0, 1.0, 0.0)))
    streamer = BinauralStreamer(net, Schedule(12, 6), 3, still((0.0, 1.0, 0.0)))
    streamed = torch.cat([streamer.push(part) for part in mono.split(1234, dim=-1)] + [streamer.flush()], -1)
    assert streamed.shape == reference.shape
    assert (streamed - reference).abs().max() <= 1e-3 * reference.abs().max()


@pytest.mark.parametrize("samples", [9_600, 9_601])
def test_the_last_samples_are_as_well_conditioned_as_the_rest(net, samples):
    # the end of a signal lies under whole windows (zeros after it): no division by a tiny window envelope there
    mono = speechlike(samples, seed=2)
    out = render_offline(net, mono, Schedule(12, 6), 0, still())
    assert out.shape == (2, samples)
    assert out[:, -256:].abs().max() <= 3 * out[:, 1000:-256].abs().max()


def test_future_input_does_not_change_past_output(net):
    mono = speechlike(12_000, seed=5)
    changed = mono.clone()
    k = 7_000
    changed[:, k:] = torch.randn(1, 12_000 - k) * 0.3
    a = render_offline(net, mono, Schedule(12, 6), 0, still())
    b = render_offline(net, changed, Schedule(12, 6), 0, still())
    lookahead = 511  # the STFT window: an output sample's last frame ends 511 samples later
    assert torch.equal(a[:, : k - lookahead], b[:, : k - lookahead])
    assert not torch.allclose(a[:, k:], b[:, k:])


# ---------------------------------------------------------------------------------------------------- generator
def test_generator_output_follows_input_chunks_and_duration():
    gen = tiny_generator({"source_position": "0.5,-1,0.2"})
    mono = speechlike(5_000, seed=6)
    outs = []
    for start, n in ((0, 1000), (1000, 37), (1037, 2963), (4000, 1000)):
        outs += gen.push(AudioFrame(data=mono[:, start : start + n], sample_rate=48_000, pts=1000 + start))
    outs += gen.flush()
    assert [o.pts for o in outs] == [1000, 2000, 2037, 5000]
    assert all(o.channels == 2 for o in outs) and sum(o.samples for o in outs) == 5_000


def test_live_position_update_changes_the_output():
    mono = speechlike(9_600, seed=7)

    def run(update: dict | None) -> torch.Tensor:
        gen = tiny_generator()
        outs = gen.push(AudioFrame(data=mono[:, :4800], sample_rate=48_000, pts=0))
        if update:
            gen.update(update)
        outs += gen.push(AudioFrame(data=mono[:, 4800:], sample_rate=48_000, pts=4800))
        outs += gen.flush()
        return torch.cat([o.data for o in outs], -1)

    a, b = run(None), run({"source_position": "0,2,0"})
    assert torch.equal(a[:, :4000], b[:, :4000]) and not torch.allclose(a[:, 5400:], b[:, 5400:])


def test_bad_parameters_are_clear_errors(tmp_path):
    gen = tiny_generator()
    with pytest.raises(ParamError, match="source_position"):
        gen.update({"source_position": "1,2"})
    with pytest.raises(ParamError, match="same point"):
        gen.update({"source_position": "0,0,0"})
    with pytest.raises(ParamError, match="nfe"):
        gen.prepare({"nfe": 7})
    with pytest.raises(InputError, match="not found"):
        gen.prepare({"trajectory": str(tmp_path / "missing.csv")})
    with pytest.raises(InputError, match="1-channel"):
        tiny_generator().push(AudioFrame(data=torch.zeros(2, 480), sample_rate=48_000))


def test_weights_roundtrip_and_missing_weights(tmp_path):
    torch.manual_seed(0)
    net = CausalUNet(TINY)
    save_model(net, tmp_path / "m", {})
    loaded = read_model(tmp_path / "m")
    for (k, a), (k2, b) in zip(net.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert k == k2 and torch.allclose(a.half().float(), b)
    gen = BinauralFlowGenerator.load(model=str(tmp_path / "m"))
    gen.prepare({})
    outs = gen.push(AudioFrame(data=torch.zeros(1, 4800), sample_rate=48_000)) + gen.flush()
    assert [o.samples for o in outs] == [4800] and outs[0].channels == 2
    with pytest.raises(ModelLoadError, match="streamrt train binauralflow"):
        BinauralFlowGenerator.load(model=str(tmp_path / "empty"))
