"""EvAnimate behind the generator contract: driving video (or a recorded event file) in, the animated reference out.

Each input frame's events come from the ESIM-style simulator run on the driving video (live webcam frames or a
file), or from ``events`` (a recorded .npz/.csv file, docs/events.md; then the video only gives the timing and the
sensor size, and without input the file drives ``pull``). Events become one 3-channel slice per frame (positive
counts, negative counts, time surface) for the shared backbone's guider; the stream is the shared
``streamrt.animation`` window (4 groups of 4 frames at t = 999/749/499/249).
"""

from __future__ import annotations

import json
from fractions import Fraction

import numpy as np
import torch

from pipelines.evanimate.conditioning import EventCondition, EventSettings, scale_events
from streamrt.animation.generator import LATENCY_FRAMES, LOOKAHEAD_FRAMES, AnimationGenerator, common_params
from streamrt.errors import InputError
from streamrt.events import Events, load_events
from streamrt.frames import DataFrame, VideoFrame
from streamrt.generator import Generator, GeneratorSpec, MediaKind
from streamrt.params import Param, ParamSet


class EvAnimateGenerator(AnimationGenerator, Generator):
    pipeline = "evanimate"
    spec = GeneratorSpec(
        name="evanimate",
        description="EvAnimate: animate a reference image from an event stream (simulated from the driving video, "
        "or a recorded t,x,y,p file) sliced into 3-channel images; 4 groups of 4 frames at t = 999/749/499/249.",
        inputs=(MediaKind.VIDEO,),
        outputs=(MediaKind.VIDEO,),
        params=ParamSet(
            (
                *common_params(),
                Param(
                    "events",
                    str,
                    None,
                    "Recorded event file (.npz with t, x, y, p or CSV t,x,y,p; see "
                    "docs/events.md) driving the animation instead of events simulated from the input video.",
                    live=False,
                    optional=True,
                ),
                Param(
                    "sensor",
                    str,
                    None,
                    "WIDTHxHEIGHT of the recording's sensor (events file); default: the "
                    "driving video's size, else the events' extent.",
                    live=False,
                    optional=True,
                ),
                Param(
                    "contrast",
                    float,
                    None,
                    "Simulator contrast threshold C+ = C- (log intensity); default: the "
                    "model's training setting.",
                    live=False,
                    optional=True,
                    minimum=0.01,
                    maximum=2.0,
                ),
            )
        ),  # fmt: skip
        input_optional=True,  # an event file can drive it alone
        latency=LATENCY_FRAMES,
        lookahead=LOOKAHEAD_FRAMES,
    )

    def _settings(self) -> EventSettings:
        config = json.loads((self.folder / "config.json").read_text())
        settings = EventSettings.from_dict(config.get("events"))
        if self.params["contrast"] is not None:
            settings = EventSettings(**{**settings.to_dict(), "contrast": self.params["contrast"]})
        return settings

    def on_stream_start(self) -> None:
        settings = self._settings()
        self._condition = EventCondition(self.size, settings, seed=self.params["seed"])
        self._recorded: Events | None = load_events(self.params["events"]) if self.params["events"] else None
        self._scaled: Events | None = None
        self._next_event = 0
        self._pull_time = 0.0

    def generate(self, pts: int, time_base: Fraction) -> list[DataFrame]:
        self._pull_time = float(pts * time_base)
        return super().generate(pts, time_base)

    def condition_at(self, index: int) -> torch.Tensor:
        if self._recorded is None:
            raise InputError(
                "evanimate needs driving video input (-i) or a recorded event file (events=FILE)"
            )
        return self._recorded_slice(self._pull_time, None)

    def condition_of(self, frame: VideoFrame, index: int) -> torch.Tensor:
        if self._recorded is not None:
            return self._recorded_slice(frame.time, (frame.width, frame.height))
        return self._condition.from_frame(frame.data, frame.time)

    def _recorded_slice(self, t: float, video_size: tuple[int, int] | None) -> torch.Tensor:
        assert self._recorded is not None
        if self._scaled is None:
            self._scaled = scale_events(self._recorded, self._sensor(video_size), self.size)
        # The events that arrived by this frame's time, and not before the previous frame's.
        end = int(np.searchsorted(self._scaled.t, t, side="right"))
        new = self._scaled[self._next_event : end]
        self._next_event = end
        return self._condition.from_events(new, t)

    def _sensor(self, video_size: tuple[int, int] | None) -> tuple[int, int]:
        text = self.params["sensor"]
        if text:
            try:
                w, h = (int(v) for v in text.lower().split("x"))
            except ValueError as exc:
                raise InputError(f"sensor={text!r}: give it as WIDTHxHEIGHT, e.g. 346x260") from exc
            return w, h
        if video_size is not None:
            return video_size
        ev = self._recorded
        assert ev is not None
        if not len(ev):
            return self.size, self.size
        return int(ev.x.max()) + 1, int(ev.y.max()) + 1
