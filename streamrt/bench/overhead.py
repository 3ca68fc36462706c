"""``overhead``: what the runtime itself costs per frame, with the passthrough generator at 512x512.

One timed run is a whole stream through a real ``Session``: a feeder thread turns decoded ``av.VideoFrame``s
(yuv420p, as a decoder hands them over) into streamrt ``VideoFrame``s exactly as the file reader does and submits
them to the lossless input queue; the worker thread pushes them through the generator; the main thread takes them off
the output queue and makes ``av.VideoFrame``s again, as the writer does before encoding. Total wall time / frames,
minus nothing, is ``overhead_us_per_frame``.

Interleaved with it, for the split: the session alone, fed ready-made frames and with no conversion
(``session_us_per_frame``: queues, the worker thread, its hand-offs), and the two conversions alone on one thread
(``conversion_us_per_frame``). The whole costs less than the two parts added: the feeder converts the next frame
while the main thread converts the last output, and PyAV's colour conversion runs without the GIL.
"""

from __future__ import annotations

import argparse
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np
import torch

from streamrt.bench.clips import textured_image
from streamrt.bench.suite import Row, Suite, add_common_arguments
from streamrt.bench.timing import measure_interleaved
from streamrt.errors import ParamError
from streamrt.frames import EndOfStream, ErrorEvent, VideoFrame
from streamrt.passthrough import PassthroughGenerator
from streamrt.session import Session

if TYPE_CHECKING:  # av is imported when the suite runs, not when the CLI builds its parser
    import av

PTS_STEP = 3000  # 30 fps on the 90 kHz video clock


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser, repeats=7, warmup=1)
    parser.add_argument("--frames", type=int, default=300, help="frames per timed stream (default 300)")
    parser.add_argument("--width", type=int, default=512, help="frame width (default 512)")
    parser.add_argument("--height", type=int, default=512, help="frame height (default 512)")


def decoded_frames(count: int, height: int, width: int) -> list[av.VideoFrame]:
    """``count`` distinct yuv420p frames, the format decoders produce."""
    import av

    out = []
    for i in range(count):
        rgb = np.ascontiguousarray(textured_image(height, width, seed=i).numpy())
        out.append(av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p"))
    return out


def from_av(frame: av.VideoFrame, pts: int) -> VideoFrame:
    """As ``transport.files.MediaReader`` does: decoded picture -> RGB uint8 (H, W, 3) tensor."""
    rgb = frame.to_ndarray(format="rgb24")
    return VideoFrame(data=torch.from_numpy(np.ascontiguousarray(rgb)), pts=pts)


def to_av(frame: VideoFrame) -> av.VideoFrame:
    """As ``transport.files.MediaWriter`` does before encoding: tensor -> ``av.VideoFrame``."""
    import av

    return av.VideoFrame.from_ndarray(np.ascontiguousarray(frame.data.cpu().numpy()), format="rgb24")


class SessionStream:
    """One timed stream through a fresh session; keeps the last session's metrics for the report."""

    def __init__(self, inputs: list[av.VideoFrame], frames: int, *, convert: bool = True) -> None:
        self.inputs = inputs
        self.frames = frames
        self.convert = convert
        # Without conversion the session gets these pictures, made once, as it would get them from a reader.
        self.ready = [from_av(f, 0).data for f in inputs]
        self.latency_p50_ms = float("nan")

    def __call__(self) -> None:
        gen = PassthroughGenerator()
        gen.prepare({})
        session = Session(gen, name="bench-overhead")
        session.start()
        feeder = threading.Thread(target=self._feed, args=(session,), name="bench-feeder")
        feeder.start()
        count = 0
        try:
            while True:
                item = session.output.get(timeout=30.0)
                if isinstance(item, EndOfStream):
                    break
                if isinstance(item, ErrorEvent):
                    raise RuntimeError(f"overhead session failed: {item.message}")
                assert isinstance(item, VideoFrame)
                if self.convert:
                    to_av(item)
                count += 1
        finally:
            feeder.join()
            session.join(timeout=30.0)
            session.close()
        if count != self.frames:
            raise RuntimeError(f"the session emitted {count} frames for {self.frames}")
        self.latency_p50_ms = session.metrics.snapshot().latency_p50_ms

    def _feed(self, session: Session) -> None:
        n = len(self.inputs)
        for i in range(self.frames):
            if self.convert:
                frame = from_av(self.inputs[i % n], i * PTS_STEP)
            else:
                frame = VideoFrame(data=self.ready[i % n], pts=i * PTS_STEP)
            session.submit(frame)
        session.end()


def conversions(inputs: list[av.VideoFrame], frames: int) -> None:
    n = len(inputs)
    for i in range(frames):
        to_av(from_av(inputs[i % n], i * PTS_STEP))


def run(args: argparse.Namespace) -> Iterator[Row]:
    if args.frames < 1:
        raise ParamError(f"--frames must be at least 1; got {args.frames}")
    inputs = decoded_frames(4, args.height, args.width)
    stream = SessionStream(inputs, args.frames)
    bare = SessionStream(inputs, args.frames, convert=False)
    t_all, t_session, t_conv = measure_interleaved(
        [stream, bare, lambda: conversions(inputs, args.frames)], args.repeats, args.warmup
    )
    yield {
        "suite": "overhead",
        "overhead_us_per_frame": 1e6 * t_all / args.frames,
        "session_us_per_frame": 1e6 * t_session / args.frames,
        "conversion_us_per_frame": 1e6 * t_conv / args.frames,
        "latency_p50_us": 1000.0 * stream.latency_p50_ms,
        "width": args.width,
        "height": args.height,
        "frames": args.frames,
        "threads": torch.get_num_threads(),
        "repeats": args.repeats,
    }


SUITE = Suite(
    name="overhead",
    help="runtime cost per frame: passthrough generator through a real session with av conversions, 512x512",
    fields=("suite", "overhead_us_per_frame"),
    add_arguments=add_arguments,
    run=run,
)
