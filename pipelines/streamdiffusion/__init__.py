"""StreamDiffusion (Kodaira et al.): Stream Batch, RCFG and SSF on diffusers components."""

from pipelines.streamdiffusion.pipeline import StreamDiffusion, StreamDiffusionGenerator

__all__ = ["StreamDiffusion", "StreamDiffusionGenerator"]
