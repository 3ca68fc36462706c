"""RAIN's invariants on the staggered window (tiny random backbone): group levels, 4 passes per frame, emission from
group 0 only, the reference cache, pose/latent alignment, lookahead; the keypoint-file path and its errors."""

from __future__ import annotations

from fractions import Fraction

import pytest
import torch
from _animation import SIZE, puppet_clip_frames, tiny_model_folder

from pipelines.rain import RainGenerator
from pipelines.rain.pipeline import pose_map
from streamrt.animation.stream import CONDITION
from streamrt.errors import InputError
from streamrt.frames import VideoFrame
from streamrt.poses import save_keypoints

torch.set_num_threads(1)
TB = Fraction(1, 30)
N = 28  # 7 groups


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tiny_model_folder(tmp_path_factory.mktemp("rain"))


@pytest.fixture(scope="module")
def clip():
    return puppet_clip_frames(N)


@pytest.fixture(scope="module")
def poses_file(tmp_path_factory, clip):
    path = tmp_path_factory.mktemp("poses") / "poses.json"
    save_keypoints(path, clip[1])
    return path


def _gen(folder, **params) -> RainGenerator:
    gen = RainGenerator.load(model=str(folder))
    gen.prepare(params)
    return gen


def _frames(clip, n: int = N) -> list[VideoFrame]:
    return [VideoFrame(data=clip[0][i], pts=i, time_base=TB) for i in range(n)]


class PassLog:
    """Records every window pass: the frames (pts) of each group with its timestep, the time-ordered timesteps the
    UNet saw, its condition features, and the x0 the pass predicted for each group."""

    def __init__(self, gen: RainGenerator) -> None:
        self.passes: list[dict] = []
        stream = gen.stream
        inner_denoiser = stream.window.denoiser
        inner_predict = gen.backbone.predict

        def denoiser(batch):
            record = {
                "groups": [([f.pts for f in s.payload], batch.timesteps[r].tolist()) for s, r in
                           zip(batch.slots, batch.slot_rows(), strict=True)],
                "features": [s.state[CONDITION].clone() for s in batch.slots],
            }  # fmt: skip
            self.passes.append(record)
            x0 = inner_denoiser(batch)
            record["x0"] = [x0[r].clone() for r in batch.slot_rows()]
            return x0

        def predict(x_t, timesteps, features, cache, num_frames):
            self.passes[-1]["unet_t"] = timesteps.tolist()
            self.passes[-1]["unet_features"] = features.clone()
            return inner_predict(x_t, timesteps, features, cache, num_frames)

        inner_step = stream.window.step

        def step(entering=None):
            left = inner_step(entering)
            self.passes[-1]["left"] = [f.pts for s in left for f in s.payload]
            return left

        stream.window.denoiser = denoiser
        stream.window.step = step  # type: ignore[method-assign]
        gen.backbone.predict = predict  # type: ignore[method-assign]


def _run(gen, frames, log=None):
    emitted = []  # (pass index at emission, frame)
    for f in frames:
        for o in gen.push(f):
            emitted.append((len(log.passes) - 1 if log else -1, o))
    for o in gen.flush():
        emitted.append((len(log.passes) - 1 if log else -1, o))
    return emitted


def test_group_levels_exact(folder, clip) -> None:
    gen = _gen(folder)
    log = PassLog(gen)
    _run(gen, _frames(clip))
    steady = 0
    for p in log.passes:
        levels = [t for _, ts in p["groups"] for t in ts]
        assert set(levels) <= {999, 749, 499, 249}
        for _, ts in p["groups"]:
            assert len(set(ts)) == 1, "a group's frames share one level"
        per_group = [ts[0] for _, ts in p["groups"]]  # newest first
        if len(per_group) == 4:
            steady += 1
            assert per_group == [999, 749, 499, 249]
            # the UNet sees the 16 frames in time order: oldest group (t = 249) first
            assert p["unet_t"] == [249] * 4 + [499] * 4 + [749] * 4 + [999] * 4
    assert steady >= 3


def test_each_frame_gets_exactly_4_passes_in_decreasing_noise(folder, clip) -> None:
    gen = _gen(folder)
    log = PassLog(gen)
    out = _run(gen, _frames(clip, 26))  # 6 full groups and a partial one, drained by flush
    seen: dict[int, list[int]] = {}
    for p in log.passes:
        for pts, ts in p["groups"]:
            for x, t in zip(pts, ts, strict=True):
                seen.setdefault(x, []).append(t)
    assert sorted(seen) == list(range(26))
    for x, ts in seen.items():
        assert ts == [999, 749, 499, 249], f"frame {x}: {ts}"
    assert [o.pts for _, o in out] == list(range(26))


def test_emission_only_from_group_0(folder, clip) -> None:
    gen = _gen(folder)
    log = PassLog(gen)
    out = {o.pts: o for _, o in _run(gen, _frames(clip, 26))}
    codec = gen.backbone.codec
    emitted = 0
    for p in log.passes:
        oldest_pts, oldest_t = p["groups"][-1]  # the window orders groups newest first
        assert p["left"] == (oldest_pts if oldest_t[0] == 249 else []), "only the group at t = 249 leaves"
        # decoded as one batch and without gradients, as the stream does (a conv over 1 row and over 4 may differ in
        # the last bit, and so may the inference decoder's fused upsampling from the plain one)
        with torch.inference_mode():
            images = codec.decode(p["x0"][-1]) if p["left"] else None
        for row, x in enumerate(p["left"]):
            expect = images[row].mul(255).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0)
            assert torch.equal(out[x].data, expect), "the emitted frame is not group 0's x0 of its last pass"
            emitted += 1
    assert emitted == len(out) == 26


def test_reference_cache_unchanged_and_reference_unet_runs_once(folder, clip, tmp_path) -> None:
    gen = RainGenerator.load(model=str(folder))
    calls = []
    gen.backbone.reference_unet.register_forward_hook(lambda *a: calls.append(1))
    gen.prepare({})
    assert len(calls) == 1
    cache = gen.stream.cache
    snapshot = {k: (a.clone(), b.clone()) for k, (a, b) in cache.kv.items()}
    embeds = cache.image_embeds.clone()
    _run(gen, _frames(clip))
    gen.reset()
    _run(gen, _frames(clip, 8))
    gen.prepare({"noise": "fresh"})
    _run(gen, _frames(clip, 8))
    gen.prepare({})
    assert len(calls) == 1, "the ReferenceNet ran again while the reference stayed"
    assert gen.stream.cache is cache
    for k, (a, b) in cache.kv.items():
        assert torch.equal(a, snapshot[k][0]) and torch.equal(b, snapshot[k][1]), k
    assert torch.equal(cache.image_embeds, embeds)
    # a new reference image: computed once more
    from streamrt.animation.folder import write_image

    other = tmp_path / "other.png"
    write_image(other, clip[0][5])
    gen.prepare({"reference": str(other)})
    assert len(calls) == 2
    assert not torch.equal(gen.stream.cache.image_embeds, embeds)


def test_pose_and_latent_windows_aligned(folder, clip, poses_file) -> None:
    """Every frame's condition features travel with its latent: in every pass, UNet row i (time order) carries
    the guider features of exactly the pose of the frame in row i."""
    gen = _gen(folder, poses=str(poses_file))
    log = PassLog(gen)
    _run(gen, _frames(clip))
    kps = clip[1]
    for p in log.passes:
        time_order = [x for pts, _ in reversed(p["groups"]) for x in pts]
        expect = gen.backbone.guide(torch.stack([pose_map(kps[x], SIZE) for x in time_order]))
        assert torch.allclose(p["unet_features"], expect, atol=1e-6)
        assert len(time_order) == p["unet_features"].shape[0] <= 16


def test_lookahead_is_3_groups(folder, clip, poses_file, tmp_path) -> None:
    assert RainGenerator.spec.lookahead == 15 and RainGenerator.spec.latency == 15
    kps = clip[1]
    base = [o for _, o in _run(_gen(folder, poses=str(poses_file)), _frames(clip))]

    def with_group_changed(g: int):
        changed = kps.clone()
        changed[4 * g : 4 * g + 4] = kps[0:4].flip(0) * torch.tensor([0.5, 0.9, 1.0])
        path = tmp_path / f"poses{g}.json"
        save_keypoints(path, changed)
        return [o for _, o in _run(_gen(folder, poses=str(path)), _frames(clip))]

    # group 1 (frames 4-7) is in the window with groups 2, 3, 4 during its passes, never with group 5
    far = with_group_changed(5)
    assert all(torch.equal(a.data, b.data) for a, b in zip(base[4:8], far[4:8], strict=True))
    near = with_group_changed(4)
    assert not all(torch.equal(a.data, b.data) for a, b in zip(base[4:8], near[4:8], strict=True)), (
        "a group 3 groups ahead must reach the output (temporal attention across the window)"
    )


def test_keypoint_file_drives_without_video(folder, poses_file) -> None:
    gen = _gen(folder, poses=str(poses_file))
    outs = []
    for i in range(10):
        outs += gen.pull(i, TB)
    outs += gen.flush()
    assert [o.pts for o in outs] == list(range(10))
    assert all(o.data.shape == (SIZE, SIZE, 3) for o in outs)
    with pytest.raises(InputError, match="frames"):
        for i in range(10, 40):
            gen.pull(i, TB)
    gen = _gen(folder)
    with pytest.raises(InputError, match="poses"):
        gen.pull(0, TB)


def test_bad_reference_and_poses_files_give_clear_errors(folder, tmp_path) -> None:
    gen = RainGenerator.load(model=str(folder))
    with pytest.raises(InputError, match="reference"):
        gen.prepare({"reference": str(tmp_path / "missing.png")})
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    with pytest.raises(InputError, match="png"):
        gen.prepare({"reference": str(bad)})
    with pytest.raises(InputError):
        gen.prepare({"poses": str(tmp_path / "missing.json")})


def test_mediapipe_estimator_drives_the_pose(folder, clip) -> None:
    """The live path's estimator: MediaPipe's offline pose model (optional extra ``pose``) runs on every frame."""
    pytest.importorskip("mediapipe")
    gen = _gen(folder, estimator="mediapipe")
    calls = []
    inner = gen._estimator.estimate
    gen._estimator.estimate = lambda image: calls.append(image.shape) or inner(image)
    outs = _run(gen, _frames(clip, 6))
    assert len(outs) == 6 and len(calls) == 6
