"""Train RAIN's default (assets/rain-tiny): the shared animation backbone on synthetic puppets, conditioned on pose maps.

Data: procedurally drawn puppet characters (``streamrt.puppets``) in motion with their exact COCO-18 keypoints,
rendered as OpenPose-style pose maps. Reference = one frame of the clip, targets = the clip's other poses. Then the
frame codec, then the backbone (ReferenceNet + motion denoiser + pose guider) with v-prediction over 16-frame windows
at the staggered levels the stream uses (``streamrt.animation.training``). The card evaluates held-out characters
and motions: keypoint error of the output vs the driving pose (against the still reference), identity distance.
"""

from __future__ import annotations

import argparse

from pipelines.rain.pipeline import pose_maps_of_clip
from streamrt.animation.recipe import add_arguments as add_recipe_arguments
from streamrt.animation.recipe import run_recipe
from streamrt.animation.training import Condition

NAME = "rain"
CONDITION = Condition(name="pose maps", channels=3, from_clip=pose_maps_of_clip)
SUMMARY = (
    "RAIN's tiny default: a ReferenceNet + AnimateDiff-style motion UNet + pose guider (diffusers UNet2DConditionModel "
    "/ UNetMotionModel blocks), animating a reference puppet from OpenPose-style pose maps; 4 groups of 4 frames at "
    "t = 999, 749, 499, 249, one UNet pass per 4 emitted frames."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_recipe_arguments(parser, name=NAME)


def run(args: argparse.Namespace) -> int:
    return run_recipe(args, name=NAME, condition=CONDITION, summary=SUMMARY)
