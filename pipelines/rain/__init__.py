"""RAIN: real-time animation of a reference image from a live pose stream (the shared animation backbone)."""

from pipelines.rain.pipeline import RainGenerator

__all__ = ["RainGenerator"]
