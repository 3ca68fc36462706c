"""One animation recipe run, end to end: data, codec, backbone, model folder, held-out evaluation, card.

``pipelines/rain/train.py`` and EvAnimate's recipe call ``run_recipe`` with their ``Condition``.
"""

from __future__ import annotations

import argparse
import logging
import time

import torch

from streamrt.animation.backbone import GROUP_FRAMES, AnimationBackbone
from streamrt.animation.folder import save_model
from streamrt.animation.stream import AnimationStream
from streamrt.animation.training import (
    Condition,
    add_arguments,
    apply_quick,
    backbone_config,
    check_args,
    evaluate,
    prepare_data,
    train_backbone,
    training_device,
    write_metrics,
)
from streamrt.puppets import make_puppet_dataset, still
from streamrt.video.training import command_line

log = logging.getLogger(__name__)

__all__ = ["add_arguments", "run_recipe", "stream_render"]


def stream_render(backbone: AnimationBackbone, seed: int = 0):
    """``render(reference, conditions, frames)`` for ``evaluate``: the streaming window, exactly as the generator
    runs it (groups of 4 condition frames, one pass per group, drained at the end)."""

    def render(reference: torch.Tensor, conditions: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        stream = AnimationStream(backbone, seed=seed)
        stream.set_reference(reference.permute(2, 0, 1).float() / 255)
        cond = conditions.permute(0, 3, 1, 2).float() / 255
        out: list[torch.Tensor] = []
        for group in cond.split(GROUP_FRAMES):
            out += [img for img, _ in stream.step(group, [None] * group.shape[0])]
        out += [img for img, _ in stream.drain()]
        return torch.stack(out).mul(255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)

    return render


def run_recipe(args: argparse.Namespace, *, name: str, condition: Condition, summary: str) -> int:
    apply_quick(args)
    check_args(args)
    device = training_device(args)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    cfg = backbone_config(args, condition)
    data, backbone, metrics = prepare_data(args, cfg, condition, device)
    t0 = time.perf_counter()
    losses = train_backbone(backbone, data, args, device)
    train_s = time.perf_counter() - t0
    backbone.cpu().eval().requires_grad_(False)
    reference = still(
        make_puppet_dataset(1, 1, args.size, seed=args.seed + 77, held_out=True).specs[0], args.size
    )
    save_model(args.out, name, backbone, reference, {"condition": condition.name})
    t0 = time.perf_counter()
    render = stream_render(backbone)
    evaluation = evaluate(render, condition, args.eval_clips, args.eval_frames, args.size)
    tail = losses[-100:]
    metrics.update({
        "backbone_steps": args.steps,
        "backbone_seconds_per_step": train_s / max(1, args.steps),
        "loss_last100": sum(tail) / max(1, len(tail)),
        **evaluation,
        "eval_seconds": time.perf_counter() - t0,
        "train_seconds": time.perf_counter() - started,
        "threads": args.threads,
    })  # fmt: skip
    write_metrics(args.out, metrics)
    from streamrt.animation.card import write_card, write_figure

    write_figure(args.out, render, condition, args.size, losses)
    write_card(
        args.out,
        name,
        command_line(name, args, add_arguments_for(name)),
        summary,
        metrics,
        condition,
        args.size,
    )
    log.info("wrote %s", args.out)
    return 0


def add_arguments_for(name: str):
    def add(parser: argparse.ArgumentParser) -> None:
        add_arguments(parser, name=name)

    return add
