"""Train EvAnimate's default (assets/evanimate-tiny): the shared animation backbone on synthetic puppets, conditioned
on event slices simulated from the clips.

Data: procedurally drawn puppet characters (``streamrt.puppets``) in motion; their frames go through the ESIM-style
event simulator (``streamrt.events``; contrast threshold, threshold noise) and are cut into one time-count balanced
3-channel slice per frame (positive counts, negative counts, time surface). Reference = one frame of the clip,
targets = its other frames. Then the shared recipe (``streamrt.animation``): frame codec, backbone (ReferenceNet +
motion denoiser + guider reading event slices) with v-prediction over 16-frame windows at the stream's staggered
levels. The card evaluates held-out characters and motions: keypoint error of the output vs the driving pose (against
the still reference), identity distance.
"""

from __future__ import annotations

import argparse
import json
from functools import partial

from pipelines.evanimate.conditioning import EventSettings, event_slices_of_clip
from streamrt.animation.recipe import add_arguments as add_recipe_arguments
from streamrt.animation.recipe import run_recipe
from streamrt.animation.training import Condition

NAME = "evanimate"
SUMMARY = (
    "EvAnimate's tiny default: the shared ReferenceNet + AnimateDiff-style motion UNet + condition guider (diffusers "
    "UNet2DConditionModel / motion blocks), animating a reference puppet from event slices (ESIM-style simulated "
    "events, time-count balanced 3-channel slices); 4 groups of 4 frames at t = 999, 749, 499, 249."
)


# Sized to the CPU time this default had: one thread of a 2-core machine shared with other training runs (where two
# threads were several times slower than one); fewer codec and backbone steps than the shared recipe's defaults.
RECIPE = {"codec_steps": 1000, "steps": 3000, "threads": 1}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_recipe_arguments(parser, name=NAME)
    parser.set_defaults(**RECIPE)
    d = EventSettings()
    parser.add_argument(
        "--contrast", type=float, default=d.contrast, help="simulator contrast threshold C+ = C-"
    )
    parser.add_argument(
        "--threshold-noise", type=float, default=d.threshold_noise, help="per-pixel sigma of C"
    )
    parser.add_argument("--refractory", type=float, default=d.refractory, help="refractory period, seconds")
    parser.add_argument("--slice-mode", choices=("counts", "balanced"), default=d.mode, help="event slicing")
    parser.add_argument("--density", type=int, default=d.density, help="events per balanced slice")
    parser.add_argument("--saturation", type=float, default=d.saturation, help="count at full intensity")


def settings_of(args: argparse.Namespace) -> EventSettings:
    return EventSettings(
        contrast=args.contrast,
        threshold_noise=args.threshold_noise,
        refractory=args.refractory,
        mode=args.slice_mode,
        density=args.density,
        saturation=args.saturation,
    )


def condition_of(settings: EventSettings) -> Condition:
    def from_clip(frames, keypoints):  # events see only the frames, never the keypoints
        return event_slices_of_clip(frames, settings)

    return Condition(name="event slices", channels=3, from_clip=partial(from_clip))


def run(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    code = run_recipe(args, name=NAME, condition=condition_of(settings), summary=SUMMARY)
    # The generator simulates and slices events exactly as training did: the settings travel with the weights.
    config_path = args.out / "config.json"
    config = json.loads(config_path.read_text())
    config["events"] = settings.to_dict()
    config_path.write_text(json.dumps(config, indent=2) + "\n")
    rows = "\n".join(f"| {k} | {v} |" for k, v in settings.to_dict().items())
    with (args.out / "README.md").open("a") as card:
        card.write(
            "\n## Event condition\n\nEvents are simulated from each clip at 24 fps by `streamrt.events.EventSimulator` "
            "(ESIM-style) and cut into one slice per frame by `streamrt.events.FrameSlicer` (channels: positive "
            "counts, negative counts, time surface; docs/events.md). The generator reads these settings from "
            f"config.json, so inference slices events as training did.\n\n| setting | value |\n|---|---|\n{rows}\n"
        )
    return code
