"""BinauralFlow (Liang et al., ICML 2025): binaural speech from mono audio and positions, by conditional flow
matching with a causal U-Net on the complex STFT, streamed with a buffer bank and an early-skip midpoint solver."""

from pipelines.binauralflow.generator import BinauralFlowGenerator

__all__ = ["BinauralFlowGenerator"]
