"""StreamDiT: streaming text-to-video with moving-buffer flow matching and a windowed adaLN DiT."""

from pipelines.streamdit.pipeline import StreamDiT, StreamDiTGenerator

__all__ = ["StreamDiT", "StreamDiTGenerator"]
