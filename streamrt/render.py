"""``streamrt render``: run a generator over a file (or a number of ticks) and write the result, losslessly.

Three things run at once so that the generator never waits on I/O: a feeder thread decodes the input (or makes
ticks) into the session's input queue, the session's worker thread runs the generator, and the calling thread encodes
the output queue into the file. All queues are lossless: every input video frame yields exactly one output frame with
the same pts, or the render fails and leaves no output file.

Audio: a generator that declares audio input gets the input's audio through the session (and what it emits is
encoded); for any other generator the input's audio stream is copied into the output directly (remuxed when the
container allows its codec).
"""

from __future__ import annotations

import argparse
import logging
import re
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from tqdm import tqdm

from buffers.queues import QueueClosed, QueuePolicy
from streamrt import registry
from streamrt.errors import InputError, ParamError, StreamrtError
from streamrt.frames import AudioFrame, EndOfStream, ErrorEvent, VideoFrame
from streamrt.generator import GeneratorSpec, MediaKind
from streamrt.loading import with_runtime_features
from streamrt.params import parse_assignments
from streamrt.render_audio import AudioRenderResult, check_chunk_ms, render_audio
from streamrt.session import Session, next_output, ticks
from streamrt.threads import preferred_cpu_threads
from transport.files import AudioSpec, MediaReader, MediaWriter, check_output_path, open_input

log = logging.getLogger(__name__)

DEFAULT_FPS = 30.0
_DEVICE = re.compile(r"^(cpu|cuda(:\d+)?|mps)$")


@dataclass(frozen=True)
class RenderResult:
    output: Path
    frames: int
    seconds: float  # duration of the rendered video
    elapsed: float  # wall-clock time of the render

    @property
    def fps(self) -> float:
        """Rendering speed in frames per second of wall time."""
        return self.frames / self.elapsed if self.elapsed > 0 else 0.0

    def summary(self) -> str:
        return (
            f"wrote {self.output} ({self.frames} frames, {self.seconds:.2f} s of video) "
            f"in {self.elapsed:.1f} s ({self.fps:.1f} frames/s)"
        )


class _Feed:
    """State shared between the feeder thread and the encoding thread."""

    def __init__(self) -> None:
        self.video_frames = 0
        self.error: BaseException | None = None


def render(
    pipeline: str,
    output: str | Path,
    *,
    input: str | Path | None = None,  # noqa: A002 - mirrors the -i flag
    prompt: str | None = None,
    files: Mapping[str, str | Path | None] | None = None,
    frames: int | None = None,
    seed: int | None = None,
    model: str | None = None,
    checkpoint: str | None = None,
    device: str = "cpu",
    settings: Iterable[str] | Mapping[str, Any] = (),
    fps: float | None = None,
    chunk_ms: float | None = None,
    script: str | Path | None = None,
    progress: bool = False,
) -> RenderResult | AudioRenderResult:
    """Render ``input`` (or ``frames`` ticks when there is none) through ``pipeline`` into ``output``.

    Everything that can be checked up front (pipeline, parameters, input file, output path) is checked before the
    weights load and before the output is opened. Raises a ``StreamrtError`` with a message for people on failure;
    the output file then does not exist (a previous file of that name is left untouched).
    """
    started = time.perf_counter()
    output = Path(output)
    cls = registry.get(pipeline)
    spec = cls.spec
    audio_only = spec.inputs == (MediaKind.AUDIO,) and spec.outputs == (MediaKind.AUDIO,)
    check_output_path(output, missing_folders_ok=True, audio_only=audio_only)
    if chunk_ms is not None:
        if not audio_only:
            raise ParamError(f"--chunk-ms applies to audio pipelines; {pipeline!r} is not one")
        check_chunk_ms(chunk_ms)
    params = _params(spec, settings, prompt=prompt, seed=seed, files=files)
    if not _DEVICE.match(device):
        raise ParamError(f"unknown device {device!r}; use cpu or cuda (cuda:N for another GPU)")
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ParamError(f"--device {device}: CUDA is not available on this machine (use --device cpu)")
    if frames is not None and frames < 1:
        raise ParamError(f"--frames must be at least 1, got {frames}")
    if script is not None:
        return _run_script(
            cls, params, script, output, started, input, frames, model, checkpoint, device, progress
        )

    reader: MediaReader | None = None
    if input is not None:
        if not spec.inputs:
            raise ParamError(f"pipeline {pipeline!r} takes no input; drop -i")
        if fps is not None:
            raise ParamError(
                "--fps applies only without -i: with an input the output keeps the input's timing"
            )
        reader = open_input(input, need_video=MediaKind.VIDEO in spec.inputs)
        if audio_only:
            with preferred_cpu_threads(spec, device):
                return _run_audio(
                    cls, params, reader, output, started, model, checkpoint, device, chunk_ms, progress
                )
    else:
        if spec.inputs and not spec.input_optional:
            kinds = "/".join(k.value for k in spec.inputs)
            raise ParamError(f"pipeline {pipeline!r} needs {kinds} input; give it with -i INPUT")
        if frames is None:
            raise ParamError(
                f"pipeline {pipeline!r} without -i needs --frames N (how many frames to generate)"
            )
    # _run owns the reader from here on: it closes it once nothing decodes from it any more.
    return _run(
        cls,
        spec,
        params,
        reader,
        output,
        started,
        frames=frames,
        fps=fps,
        model=model,
        checkpoint=checkpoint,
        device=device,
        progress=progress,
    )


def _run_audio(
    cls: Any,
    params: dict[str, Any],
    reader: MediaReader,
    output: Path,
    started: float,
    model: str | None,
    checkpoint: str | None,
    device: str,
    chunk_ms: float | None,
    progress: bool,
) -> AudioRenderResult:
    try:
        if reader.info.audio is None:
            raise InputError(f"{reader.path} has no audio stream; {cls.spec.name} needs audio input")
        gen = with_runtime_features(cls.load(model=model, checkpoint=checkpoint, device=device))
        try:
            gen.prepare(params)
            return render_audio(gen, reader, output, chunk_ms=chunk_ms, started=started, progress=progress)
        finally:
            gen.close()
    finally:
        reader.close()


def _run_script(
    cls: Any,
    params: dict[str, Any],
    script: str | Path,
    output: Path,
    started: float,
    input: str | Path | None,  # noqa: A002 - mirrors the -i flag
    frames: int | None,
    model: str | None,
    checkpoint: str | None,
    device: str,
    progress: bool,
) -> RenderResult:
    from streamrt.dialogue import read_script
    from streamrt.render_dialogue import render_dialogue

    if MediaKind.TEXT not in cls.spec.inputs:
        raise ParamError(f"--script gives text turns; pipeline {cls.spec.name!r} takes no text")
    if input is not None or frames is not None:
        raise ParamError("--script renders the whole conversation; drop -i and --frames")
    if checkpoint is not None:
        raise ParamError("--checkpoint does not apply to --script renders; pass a model folder with --model")
    turns = read_script(script)
    return render_dialogue(
        cls, params, turns, output, model=model, device=device, progress=progress, started=started
    )


def _params(
    spec: GeneratorSpec,
    settings: Iterable[str] | Mapping[str, Any],
    *,
    prompt: str | None,
    seed: int | None,
    files: Mapping[str, str | Path | None] | None = None,
) -> dict[str, Any]:
    raw: dict[str, Any] = dict(settings) if isinstance(settings, Mapping) else parse_assignments(settings)
    # file flags (--reference, --poses, --events) set the parameter of the same name
    file_flags = [(k, None if v is None else str(v), "--" + k) for k, v in (files or {}).items()]
    for name, value, flag in (("prompt", prompt, "--prompt"), ("seed", seed, "--seed"), *file_flags):
        if value is None:
            continue
        if name not in spec.params:
            raise ParamError(f"pipeline {spec.name!r} has no {name!r} parameter; drop {flag}")
        if name in raw:
            raise ParamError(f"{name!r} is given twice (by {flag} and by --set); keep one")
        raw[name] = value
    spec.params.resolve(raw)  # validate now: loading weights can take a while
    return raw


def _run(
    cls: Any,
    spec: GeneratorSpec,
    params: dict[str, Any],
    reader: MediaReader | None,
    output: Path,
    started: float,
    *,
    frames: int | None,
    fps: float | None,
    model: str | None,
    checkpoint: str | None,
    device: str,
    progress: bool,
) -> RenderResult:
    try:
        gen = with_runtime_features(cls.load(model=model, checkpoint=checkpoint, device=device))
    except BaseException:
        if reader is not None:
            reader.close()
        raise
    try:
        gen.prepare(params)
    except BaseException:
        gen.close()
        if reader is not None:
            reader.close()
        raise
    info = reader.info if reader is not None else None
    has_audio = info is not None and info.audio is not None
    feed_audio = has_audio and MediaKind.AUDIO in spec.inputs
    if info is not None and info.rate:
        rate = Fraction(info.rate)
    else:
        rate = Fraction(fps or getattr(gen, "fps", None) or _default_fps(spec)).limit_denominator(1001)
    audio: Any = None
    audio_end: float | None = None
    if feed_audio and MediaKind.AUDIO in spec.outputs:
        assert info is not None and info.audio is not None
        audio = AudioSpec(info.audio.sample_rate, info.audio.channels)
    elif MediaKind.AUDIO in spec.outputs and MediaKind.AUDIO not in spec.inputs:
        # a generator that makes its own sound (xstreamer): its audio is encoded next to its video
        audio = AudioSpec(int(getattr(gen, "sample_rate", None) or spec.sample_rate or 48_000), 1)
    elif has_audio and not feed_audio:
        assert reader is not None
        audio = reader.path  # copied into the output by the writer, interleaved with the video
        if frames is not None:
            audio_end = frames / rate
    if info is not None:
        expected = (
            min(frames, info.frame_count) if frames and info.frame_count else (frames or info.frame_count)
        )
    else:
        expected = frames

    session = Session(
        gen, input_policy=QueuePolicy.LOSSLESS, output_policy=QueuePolicy.LOSSLESS, name=spec.name
    )
    feed = _Feed()
    feeder = threading.Thread(
        target=_feed,
        args=(session, reader, feed),
        kwargs={"limit": frames, "audio": feed_audio, "rate": rate},
        name="streamrt-render-feed",
        daemon=True,
    )
    writer: MediaWriter | None = None
    bar = tqdm(total=expected, unit="frame", desc=spec.name, disable=None if progress else True, leave=False)
    try:
        session.start()
        feeder.start()
        pending: list[AudioFrame] = []
        while True:
            item = next_output(session)
            if isinstance(item, EndOfStream):
                break
            if isinstance(item, ErrorEvent):
                if item.exception_type == "KeyboardInterrupt":
                    raise KeyboardInterrupt
                raise StreamrtError(f"pipeline {spec.name!r} failed: {item.message}")
            if isinstance(item, VideoFrame):
                if writer is None:
                    output.parent.mkdir(parents=True, exist_ok=True)
                    writer = MediaWriter(
                        output,
                        width=item.width,
                        height=item.height,
                        rate=rate,
                        time_base=item.time_base,
                        audio=audio,
                        audio_end=audio_end,
                    )
                    for frame in pending:
                        writer.write(frame)
                    pending.clear()
                writer.write(item)
                bar.update(1)
            elif isinstance(item, AudioFrame):
                if writer is None:
                    pending.append(item)  # the file opens with the first video frame (its size decides)
                else:
                    writer.write(item)
            else:
                log.debug("render: ignoring %s from %s", type(item).__name__, spec.name)
        feeder.join()
        if feed.error is not None:
            raise feed.error
        if writer is None:
            raise StreamrtError(f"pipeline {spec.name!r} produced no video frames; {output} not written")
        if writer.frames_written != feed.video_frames:
            raise StreamrtError(
                f"pipeline {spec.name!r} produced {writer.frames_written} frames for {feed.video_frames} input "
                f"frames; {output} not written"
            )
        writer.close()
        count = writer.frames_written
        return RenderResult(output, count, float(count / rate), time.perf_counter() - started)
    finally:
        bar.close()
        if writer is not None:
            writer.abort()  # no-op after a successful close
        session.close()  # closes the queues: a feeder blocked on a full input queue returns at once
        if feeder.is_alive():
            feeder.join(timeout=5.0)
        if reader is not None and not feeder.is_alive():
            reader.close()  # never while the feeder may still be decoding from it


def _default_fps(spec: GeneratorSpec) -> float:
    if "fps" in spec.params:
        value = spec.params.get("fps").default
        if value:
            return float(value)
    return DEFAULT_FPS


def _feed(
    session: Session,
    reader: MediaReader | None,
    feed: _Feed,
    *,
    limit: int | None,
    audio: bool,
    rate: Fraction,
) -> None:
    """Feeder thread: decoded input (or ticks) into the session, then end of stream."""
    try:
        if reader is not None:
            for frame in reader.frames(audio=audio):
                if isinstance(frame, VideoFrame):
                    if limit is not None and feed.video_frames >= limit:
                        break
                    feed.video_frames += 1
                session.submit(frame)
        else:
            assert limit is not None
            for tick in ticks(limit, float(rate), time_base=1 / rate):
                feed.video_frames += 1
                session.submit(tick)
        session.end()
    except QueueClosed:
        return  # the render is being torn down
    except BaseException as exc:  # noqa: BLE001 - handed to the encoding thread, which raises it
        feed.error = exc
        try:
            session.end()
        except QueueClosed:
            pass


# ---------------------------------------------------------------------------------------------------- command line
# Flags naming a file that a pipeline takes as the parameter of the same name (animation generators).
FILE_FLAGS: dict[str, str] = {
    "reference": "reference image (pipelines with a 'reference' parameter: rain, evanimate; xstreamer's portrait)",
    "poses": "keypoint file (JSON/CSV, COCO-18) driving the pose (rain); without -i give --frames N",
    "events": "event file (npz/CSV: t, x, y, p) driving the motion (evanimate)",
}


def register(subparsers: Any) -> None:
    """Add ``streamrt render`` to the command line."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "render",
        help="render a file (or N generated frames) through a pipeline",
        description="Run PIPELINE over INPUT (or over --frames N ticks) and write OUTPUT losslessly: every input "
        "frame gives one output frame with the same timestamp, and the input's audio is kept. The container "
        "follows OUTPUT's extension: .mp4 (h264 + aac), .webm (vp9 + opus), .mkv (h264 + the input's audio). "
        "Audio pipelines read the audio of any file and write .wav, .flac or .ogg with the input's duration.",
    )
    p.add_argument("pipeline", metavar="PIPELINE", help="a registered pipeline (see `streamrt pipelines`)")
    p.add_argument(
        "-i", "--input", metavar="INPUT", help="input media file (omit for generators that need none)"
    )
    p.add_argument(
        "-o",
        "--output",
        metavar="OUTPUT",
        required=True,
        help="output file: .mp4, .webm or .mkv (audio pipelines: .wav, .flac or .ogg)",
    )
    p.add_argument("--prompt", metavar="TEXT", help="the prompt (for pipelines with a 'prompt' parameter)")
    p.add_argument(
        "--frames", metavar="N", type=int, help="frames to generate without -i; with -i, the first N"
    )
    p.add_argument("--fps", type=float, help="frame rate without -i (default: the pipeline's, else 30)")
    for flag, what in FILE_FLAGS.items():
        p.add_argument(f"--{flag}", metavar="FILE", help=what)
    p.add_argument(
        "--script",
        metavar="FILE",
        help="a dialogue: one user turn per line (xstreamer); each reply is rendered as audio + video",
    )
    p.add_argument(
        "--seed", metavar="N", type=int, help="random seed (for pipelines with a 'seed' parameter)"
    )
    p.add_argument("--model", metavar="PATH", help="model folder or hub id instead of the embedded default")
    p.add_argument("--checkpoint", metavar="PATH", help="weights file (safetensors) to load over the model")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    p.add_argument(
        "--chunk-ms",
        type=float,
        metavar="N",
        help="audio pipelines: stream the input in chunks of N ms (default 1000); the result is the same",
    )
    p.add_argument(
        "--set",
        dest="settings",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="a pipeline parameter (repeatable; see `streamrt pipelines`)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=run_command)


def run_command(args: argparse.Namespace) -> str:
    """The ``render`` handler: returns the line the command line prints."""
    result = render(
        args.pipeline,
        args.output,
        input=args.input,
        prompt=args.prompt,
        files={flag: getattr(args, flag) for flag in FILE_FLAGS},
        frames=args.frames,
        seed=args.seed,
        model=args.model,
        checkpoint=args.checkpoint,
        device=args.device,
        settings=args.settings,
        fps=args.fps,
        chunk_ms=args.chunk_ms,
        script=args.script,
        progress=not args.no_progress,
    )
    return result.summary()
