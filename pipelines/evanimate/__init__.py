"""EvAnimate: animate a reference image from an event stream (simulated from video, or recorded), on the shared
animation backbone."""

from pipelines.evanimate.pipeline import EvAnimateGenerator

__all__ = ["EvAnimateGenerator"]
