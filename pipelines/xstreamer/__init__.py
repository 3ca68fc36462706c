"""X-Streamer: a real-time talking digital human from one portrait (Thinker + Actor, audio codec, frame codec)."""

from pipelines.xstreamer.pipeline import XStreamerGenerator

__all__ = ["XStreamerGenerator"]
