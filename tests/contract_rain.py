"""Contract cases of the RAIN generator: a tiny random backbone folder, driven by puppet frames (the pose comes from
the project's puppet keypoint detector, so changing an input frame changes its pose and its output)."""

from __future__ import annotations

from contract import VIDEO_STEP, VIDEO_TB, Case, Workspace

from streamrt.frames import Frame, VideoFrame
from streamrt.generator import Generator, MediaKind

SIZE = 32


def _build(ws: Workspace) -> Generator:
    from _animation import tiny_model_folder

    from pipelines.rain import RainGenerator

    gen = RainGenerator.load(model=str(tiny_model_folder(ws.root)))
    gen.prepare({})
    return gen


_CLIPS: dict[int, object] = {}


def puppet_video(case: Case, index: int, variant: int) -> Frame:
    """Frame ``index`` of a waving puppet; variant v > 0 is another character in another motion."""
    from _animation import puppet_clip_frames

    if variant not in _CLIPS:
        _CLIPS[variant] = puppet_clip_frames(
            64, SIZE, seed=variant, motion="wave" if variant == 0 else "jump"
        )[0]
    frames = _CLIPS[variant]
    data = frames[index % frames.shape[0]]
    return VideoFrame(data=data, pts=index * VIDEO_STEP, time_base=VIDEO_TB)


def cases() -> list[Case]:
    return [
        Case(
            "rain-video",
            "rain",
            _build,
            MediaKind.VIDEO,
            out_size=(SIZE, SIZE),
            frames=40,  # the lookahead check changes input 20: outputs before 20 - 15 must exist
            long_frames=120,
            make_input=puppet_video,
        ),
    ]
