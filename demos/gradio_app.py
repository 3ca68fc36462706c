"""The webcam demo as a gradio 6 app, for people who prefer gradio to the WebRTC page (``streamrt serve``).

gradio 6 has no WebRTC component; what works (see the transport reference page) is streaming webcam frames through a
Python function: ``gr.Image(sources=["webcam"], streaming=True)`` with ``.stream(fn, stream_every=0.05,
concurrency_limit=1)`` gives ~20 calls/s. Each browser session gets its own streamrt ``Session`` (the generator
on its worker thread, newest-only input), so a slow generator never makes the calls queue up: each call hands over
the newest camera frame and returns the newest generated one.

Run: ``pip install 'streamrt[gradio]'`` then ``python -m demos.gradio_app [--pipeline streamdiffusion] [--model DIR]``.
"""

import argparse
import contextlib
import logging
import threading
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from buffers.queues import QueueClosed, QueuePolicy
from streamrt.errors import StreamrtError, require
from streamrt.frames import ErrorEvent, VideoFrame
from streamrt.loading import open_generator
from streamrt.session import Session

log = logging.getLogger(__name__)

# gradio calls the stream function this often; 0.05 s is what gives ~20 fps (the default 0.5 s gives 2 fps).
STREAM_EVERY = 0.05


class LiveRunner:
    """One generator session fed with numpy webcam frames; returns the newest output without waiting for it."""

    def __init__(
        self, pipeline: str, *, model: str | None = None, params: Mapping[str, Any] | None = None
    ) -> None:
        gen = open_generator(pipeline, model=model, params=params)
        self.spec = gen.spec
        self.session = Session(
            gen, input_policy=QueuePolicy.NEWEST_ONLY, output_policy=QueuePolicy.DROP_OLDEST, output_size=2,
            name=f"gradio-{pipeline}",
        )  # fmt: skip
        self.session.start()
        self.last: np.ndarray | None = None
        self.error: str | None = None
        self._pts = 0

    def step(self, frame: np.ndarray | None, wait: float = 0.0) -> np.ndarray | None:
        """Submit ``frame`` (H, W, 3 uint8) and return the newest generated picture (or the last one, or None).

        Never blocks unless asked to ``wait`` for a new picture: a generator with algorithmic latency (Stream Batch
        emits frame i when frame i + steps - 1 arrives) gives nothing for the first calls, and gradio simply calls
        again ``STREAM_EVERY`` later.
        """
        if self.error:
            raise StreamrtError(self.error)
        if frame is not None:
            m = self.spec.size_multiple
            h, w = frame.shape[0] - frame.shape[0] % m, frame.shape[1] - frame.shape[1] % m
            pixels = frame[:h, :w, :3]
            if not (pixels.flags.writeable and pixels.flags.c_contiguous):
                pixels = np.array(pixels)  # gradio's arrays are read-only; torch wants memory it may own
            data = torch.from_numpy(pixels)
            self._pts += 3000  # the session clock runs on the 90 kHz video clock; gradio gives no timestamps
            with contextlib.suppress(QueueClosed):
                self.session.submit(VideoFrame(data=data, pts=self._pts))
        timeout = wait
        while True:
            try:
                item = (
                    self.session.output.get(timeout=timeout)
                    if timeout > 0
                    else self.session.output.get_nowait()
                )
            except (TimeoutError, QueueClosed):
                break
            if item is None:
                break
            timeout = 0.0  # drain what is ready without waiting again: the newest picture wins
            if isinstance(item, ErrorEvent):
                self.error = item.message
                raise StreamrtError(item.message)
            if isinstance(item, VideoFrame):
                self.last = item.data.numpy()
        return self.last

    def update(self, params: Mapping[str, Any]) -> None:
        values = self.spec.params.validate(params, live_only=True)
        self.session.update(values)

    def close(self) -> None:
        self.session.close()


class Runners:
    """One LiveRunner per browser session, at most ``max_sessions`` at once."""

    def __init__(
        self, pipeline: str, *, model: str | None, params: Mapping[str, Any], max_sessions: int
    ) -> None:
        self.pipeline, self.model, self.params, self.max_sessions = (
            pipeline,
            model,
            dict(params),
            max_sessions,
        )
        self._runners: dict[str, LiveRunner] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> LiveRunner:
        with self._lock:
            runner = self._runners.get(key)
            if runner is None:
                if len(self._runners) >= self.max_sessions:
                    raise StreamrtError(f"the demo is at its limit of {self.max_sessions} sessions")
                runner = LiveRunner(self.pipeline, model=self.model, params=self.params)
                self._runners[key] = runner
            return runner

    def close(self, key: str) -> None:
        with self._lock:
            runner = self._runners.pop(key, None)
        if runner is not None:
            runner.close()

    def __len__(self) -> int:
        return len(self._runners)


def build_app(
    pipeline: str = "streamdiffusion",
    *,
    model: str | None = None,
    params: Mapping[str, Any] | None = None,
    max_sessions: int = 4,
) -> Any:
    """The gradio Blocks app (not launched)."""
    gr = require("gradio", "gradio")
    from streamrt import registry

    spec = registry.get(pipeline).spec
    runners = Runners(pipeline, model=model, params=params or {}, max_sessions=max_sessions)

    def key_of(request: Any) -> str:
        return getattr(request, "session_hash", None) or "default"

    # gradio injects the request by this annotation (gr is imported lazily, hence the ignores for type checkers).
    def stream(frame: np.ndarray | None, request: gr.Request) -> np.ndarray | None:  # type: ignore[name-defined]
        try:
            return runners.get(key_of(request)).step(frame)
        except StreamrtError as exc:
            raise gr.Error(str(exc)) from exc

    with gr.Blocks(title=f"streamrt · {pipeline}") as app:
        gr.Markdown(f"## streamrt · {pipeline}\n{spec.description}")
        with gr.Row():
            cam = gr.Image(
                sources=["webcam"], streaming=True, type="numpy", label="camera",
                webcam_options=gr.WebcamOptions(mirror=False),
            )  # fmt: skip
            out = gr.Image(type="numpy", label="generated", streaming=True)
        controls = []
        with gr.Accordion("live parameters", open=True):
            for param in spec.params:
                if not param.live:
                    continue
                comp = _component(gr, param.json_schema(), param.name)
                if comp is None:
                    continue
                controls.append(comp)

                def changed(value: Any, request: gr.Request, _name: str = param.name) -> None:  # type: ignore[name-defined]
                    try:
                        runners.get(key_of(request)).update({_name: value})
                    except StreamrtError as exc:
                        raise gr.Error(str(exc)) from exc

                comp.change(changed, inputs=[comp], outputs=None)
        cam.stream(stream, inputs=[cam], outputs=[out], stream_every=STREAM_EVERY, concurrency_limit=1)

        def on_unload(request: gr.Request) -> None:  # type: ignore[name-defined]
            runners.close(key_of(request))

        app.unload(on_unload)
    app.streamrt_runners = runners  # for tests and embedding applications
    return app


def _component(gr: Any, schema: dict[str, Any], name: str) -> Any:
    """A gradio input for one parameter's JSON schema (the same mapping as the WebRTC page's controls)."""
    base = next((s for s in schema.get("anyOf", []) if s.get("type") != "null"), schema)
    kind, default, info = base.get("type"), schema.get("default"), schema.get("description") or None
    if "enum" in schema:
        return gr.Dropdown(choices=list(schema["enum"]), value=default, label=name, info=info)
    if kind == "boolean":
        return gr.Checkbox(value=bool(default), label=name, info=info)
    if kind in ("number", "integer"):
        lo, hi = schema.get("minimum"), schema.get("maximum")
        if lo is not None and hi is not None and hi - lo <= 100:
            step = 1 if kind == "integer" else (hi - lo) / 100
            return gr.Slider(minimum=lo, maximum=hi, value=default, step=step, label=name, info=info)
        return gr.Number(value=default, precision=0 if kind == "integer" else None, label=name, info=info)
    if kind == "string":
        return gr.Textbox(value=default or "", label=name, info=info)
    return None  # lists and other shapes stay at their defaults here


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m demos.gradio_app", description=__doc__.split("\n")[0])
    parser.add_argument("--pipeline", default="streamdiffusion")
    parser.add_argument("--model", default=None, help="weights folder (default: the embedded model)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7860)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    build_app(args.pipeline, model=args.model).launch(server_name=args.host, server_port=args.port)


if __name__ == "__main__":
    main()
