"""Rolling Forcing (TencentARC): streaming text-to-video with a rolling window, fresh re-noising and an attention sink."""

from pipelines.rolling_forcing.pipeline import RollingForcing, RollingForcingGenerator

__all__ = ["RollingForcing", "RollingForcingGenerator"]
