"""StreamingT2V (Picsart): autoregressive text-to-video chunks with CAM, APM and randomized blending."""

from pipelines.streamingt2v.pipeline import StreamingT2V, StreamingT2VGenerator

__all__ = ["StreamingT2V", "StreamingT2VGenerator"]
