"""The animation recipes' model card (README.md) and figure (samples.png, loss.png), written next to the weights."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from streamrt.animation.training import Condition
from streamrt.puppets import make_puppet_dataset, still


def _where(metrics: dict) -> str:
    if str(metrics.get("device", "cpu")).startswith("cuda"):
        return f"one GPU ({metrics.get('device')}; data and evaluation on {metrics.get('threads', '?')} CPU threads)"
    return f"this machine's CPU ({metrics.get('threads', '?')} threads)"


def write_figure(
    out: Path,
    render: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
    condition: Condition,
    size: int,
    losses: list[float],
    frames: int = 16,
    shown: int = 8,
) -> None:
    """samples.png: a held-out character: reference | driving frames / condition images / output (every other
    frame); loss.png: the training loss."""
    from PIL import Image

    held = make_puppet_dataset(1, frames, size, seed=4321, held_out=True)
    clip, kps = held.clips[0], held.keypoints[0]
    reference = still(held.specs[0], size)
    cond = condition.from_clip(clip, kps)
    output = render(reference, cond, clip)
    step = max(1, frames // shown)
    pick = list(range(0, frames, step))[:shown]
    blank = torch.zeros_like(reference)
    cond_rgb = cond[..., :3] if cond.shape[-1] >= 3 else cond.expand(-1, -1, -1, 3)
    rows = [
        [reference] + [clip[i] for i in pick],
        [blank] + [cond_rgb[i] for i in pick],
        [reference] + [output[i] for i in pick],
    ]
    grid = torch.cat([torch.cat(r, dim=1) for r in rows], dim=0)
    Image.fromarray(grid.numpy()).save(out / "samples.png")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(6, 3))
    k = max(1, len(losses) // 100)
    smooth = [sum(losses[i : i + k]) / len(losses[i : i + k]) for i in range(0, len(losses), k)]
    ax.plot([i * k for i in range(len(smooth))], smooth)
    ax.set_xlabel("step")
    ax.set_ylabel("v-prediction MSE")
    ax.set_yscale("log")
    fig.tight_layout()
    fig.savefig(out / "loss.png", dpi=100)
    plt.close(fig)


def write_card(
    out: Path,
    name: str,
    command: str,
    summary: str,
    metrics: dict,
    condition: Condition,
    frame_size: int = 128,
) -> None:
    size = sum(f.stat().st_size for f in out.glob("*.safetensors"))
    rows = "\n".join(
        f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in metrics.items()
    )
    text = f"""# {out.name}

{summary}

Random weights are never a default: this folder is what `{command.split(" --")[0]}` writes.

## Data

Synthetic articulated 2D puppets from `streamrt.puppets` (random body proportions, skin and hair, shirt and trousers
with colours and textures, shoes, background) in motion (walk, wave, jump, squat, arm swing, turn, lean, random
smooth trajectories), with exact COCO-18 keypoints; the condition images are {condition.name}. Training sample: a
16-frame window (or the 4-12-frame windows of the stream's fill and drain) at the stream's staggered noise levels,
the reference = another frame of the same clip or, a quarter of the time, the character at rest. The evaluation uses held-out characters (clothing combinations
never seen in training) and held-out motion speeds/amplitudes, each animated from its still (rest pose) reference
through the streaming window exactly as the generator runs it.

## Command

```
{command}
```

Training time: {metrics.get("train_seconds", float("nan")) / 60:.1f} min on {_where(metrics)}. Weights: {size / 1e6:.2f} MB (fp16 safetensors).

## Metrics

Pose following: the project's puppet keypoint detector (`streamrt.puppets.detect_keypoints`) reads the pose back
from the generated frames; `keypoint_error_px` is the mean joint distance (pixels of
{frame_size}-pixel square frames) to the driving pose, `baseline_reference_px` the same for the still reference shown unchanged (the
nearest-reference baseline: no animation), `detector_on_truth_px` the detector's own error on the true frames.
Identity: total-variation distance (0..1) between colour histograms of each output frame and the reference
(`identity_distance`), against the true frames (`identity_truth`, a perfect output) and another character's frames
(`identity_other_character`, a lost identity).

| metric | value |
|---|---|
{rows}

![samples](samples.png)

Rows: reference + driving frames; {condition.name}; reference + output (every other frame of a held-out clip).
"""
    (out / "README.md").write_text(text)
