"""EvAnimate's motion condition: events -> one 3-channel slice image per video frame (the guider's input).

Events come from the ESIM-style simulator (``streamrt.events``) run on the driving frames resized to the model's size,
or from a recorded event file whose pixel coordinates are scaled from the sensor's size to the model's. Either way a
``FrameSlicer`` turns them into one slice per frame (docs/events.md: positive counts, negative counts, time surface),
quantised to 8-bit levels exactly as the training recipe stores them, so inference sees what training saw.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from streamrt.errors import InputError
from streamrt.events import Events, EventSimulator, FrameSlicer

# Frame rate at which training clips are simulated (puppet clips are indexed by frame; the rate only scales time).
TRAINING_FPS = 24.0


@dataclass(frozen=True)
class EventSettings:
    """Simulator and slicing settings; the recipe stores them in the model folder and the generator reuses them."""

    contrast: float = 0.15  # C+ = C- (log intensity)
    threshold_noise: float = 0.03  # sigma of the per-pixel threshold (real sensors vary)
    refractory: float = 0.0  # seconds
    mode: str = "balanced"  # time-count balanced slices: about one frame of fast motion, more of slow motion
    density: int = 2000  # events per slice (128-px frames)
    saturation: float = 3.0  # count that maps to full intensity

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict | None) -> EventSettings:
        return EventSettings(**(d or {}))


def resize_frame(image: torch.Tensor, size: int) -> torch.Tensor:
    """(H, W, 3) uint8 -> (size, size, 3) uint8 (antialiased bilinear); unchanged when already that size."""
    if image.shape[0] == size and image.shape[1] == size:
        return image
    x = image.permute(2, 0, 1)[None].float()
    x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x[0].round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0)


def scale_events(events: Events, sensor: tuple[int, int], size: int) -> Events:
    """Map events of a (width, height) sensor onto a size x size frame (pixel coordinates scaled)."""
    w, h = sensor
    if len(events) and (events.x.max() >= w or events.y.max() >= h):
        raise InputError(
            f"events reach x={events.x.max()}, y={events.y.max()}, outside the {w}x{h} sensor; give the driving "
            f"video of the recording (its size is the sensor's) or events recorded at that size"
        )
    x = np.minimum((events.x.astype(np.int64) * size) // w, size - 1).astype(np.int32)
    y = np.minimum((events.y.astype(np.int64) * size) // h, size - 1).astype(np.int32)
    return Events(events.t, x, y, events.p)


class EventCondition:
    """One condition image (3, S, S) float per frame, from frames (simulated events) or recorded events."""

    def __init__(self, size: int, settings: EventSettings, seed: int = 0) -> None:
        self.size = size
        self.settings = settings
        self.simulator = EventSimulator(
            settings.contrast, settings.contrast, sigma=settings.threshold_noise, refractory=settings.refractory,
            seed=seed,
        )  # fmt: skip
        self.slicer = FrameSlicer(
            size, size, mode=settings.mode, density=settings.density, saturation=settings.saturation
        )

    def reset(self) -> None:
        self.simulator.reset()
        self.slicer.reset()

    def from_frame(self, image: torch.Tensor, t: float) -> torch.Tensor:
        """A driving frame (H, W, 3) uint8 at time t (seconds) -> its slice of the simulated events."""
        events = self.simulator.push(resize_frame(image, self.size), t)
        return self.from_events(events, t)

    def from_events(self, events: Events, t: float) -> torch.Tensor:
        """Events (already in model pixels) up to frame time t -> the frame's slice, quantised to 8 bits."""
        return quantise(self.slicer.push(events, t))


def quantise(image: torch.Tensor) -> torch.Tensor:
    """[0, 1] float -> the nearest of 256 levels (what a uint8 training condition holds)."""
    return image.mul(255).round().div(255)


def event_slices_of_clip(frames: torch.Tensor, settings: EventSettings, seed: int = 0) -> torch.Tensor:
    """A training clip's condition images: (T, S, S, 3) uint8 event slices of its frames at TRAINING_FPS."""
    cond = EventCondition(frames.shape[1], settings, seed)
    slices = [cond.from_frame(f, i / TRAINING_FPS) for i, f in enumerate(frames)]
    return torch.stack(slices).mul(255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous()
