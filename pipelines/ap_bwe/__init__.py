"""AP-BWE (Lu et al., 2024): speech bandwidth extension with parallel amplitude and phase prediction, streamed exactly."""

from pipelines.ap_bwe.generator import APBWEGenerator
from pipelines.ap_bwe.model import APBWE, FULL_SIZE, APBWEConfig

__all__ = ["APBWE", "FULL_SIZE", "APBWEConfig", "APBWEGenerator"]
