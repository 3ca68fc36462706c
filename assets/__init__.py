"""Small default weights (safetensors, each with a card) and sample media, shipped with streamrt."""

from pathlib import Path

ASSETS_DIR = Path(__file__).resolve().parent
SAMPLE_CLIP = ASSETS_DIR / "sample.mp4"
