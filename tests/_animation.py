"""Tiny animation backbones for the tests (random weights: tests of mechanisms, never of quality)."""

from __future__ import annotations

import torch

from streamrt.animation.backbone import AnimationBackbone, BackboneConfig
from streamrt.animation.unet import UNetConfig
from streamrt.video.codec import CodecConfig

SIZE = 32


def tiny_config(condition_channels: int = 3) -> BackboneConfig:
    return BackboneConfig(
        size=SIZE,
        condition_channels=condition_channels,
        guider_channels=(4, 8, 8, 16),
        image_encoder_width=8,
        unet=UNetConfig(
            block_out_channels=(16, 32),
            attention_head_dim=8,
            cross_attention_dim=16,
            norm_num_groups=4,
            motion_heads=2,
        ),
        codec=CodecConfig(latent_channels=4, width=8, levels=3),
    )


def tiny_backbone(seed: int = 0, *, live_guider: bool = True) -> AnimationBackbone:
    """Random weights; ``live_guider`` gives the zero-initialised guider output and the motion modules' zero
    output projections random values, so conditions and neighbouring frames actually reach the output."""
    torch.manual_seed(seed)
    b = AnimationBackbone(tiny_config())
    if live_guider:
        with torch.no_grad():
            b.pose_guider.conv_out.weight.normal_(0, 0.3)
            for name, p in b.denoising_unet.named_parameters():
                if ".motion_modules." in name and "proj_out" in name:
                    p.normal_(0, 0.3)
            # PyTorch's default init shrinks the signal through the random decoder's 8 layers to a near-constant
            # picture, so outputs would hardly depend on latents: He-initialised convs keep it alive.
            for m in b.codec.decoder:
                if isinstance(m, torch.nn.Conv2d):
                    torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    return b.eval().requires_grad_(False)


def puppet_clip_frames(frames: int, size: int = SIZE, seed: int = 0, motion: str = "wave"):
    """(T, S, S, 3) uint8 frames and (T, 18, 3) keypoints of one training-split puppet."""
    from streamrt.puppets import puppet_clip, sample_spec

    spec = sample_spec(torch.Generator().manual_seed(seed))
    return puppet_clip(spec, motion, frames, size, seed=seed)


def tiny_model_folder(root, pipeline: str = "rain", condition_channels: int = 3):
    """A model folder (random weights, live guider) as the recipe writes it, with a puppet still as reference."""
    from pathlib import Path

    from streamrt.animation.folder import save_model
    from streamrt.puppets import sample_spec, still

    folder = Path(root) / f"tiny-{pipeline}"
    if (folder / "config.json").is_file():
        return folder
    b = tiny_backbone()
    if condition_channels != 3:
        torch.manual_seed(0)
        b = AnimationBackbone(tiny_config(condition_channels))
    reference = still(sample_spec(torch.Generator().manual_seed(5)), SIZE)
    save_model(folder, pipeline, b, reference, {"condition": "test"})
    return folder


def write_video(path, frames: torch.Tensor, rate: int = 24):
    """(T, H, W, 3) uint8 -> an h264 .mp4 (near-lossless, so a static clip stays static)."""
    from fractions import Fraction

    import av

    with av.open(str(path), "w") as c:
        v = c.add_stream("libx264", rate=rate, options={"crf": "1"})
        v.width, v.height, v.pix_fmt = frames.shape[2], frames.shape[1], "yuv444p"
        v.codec_context.time_base = Fraction(1, rate)
        for i, img in enumerate(frames):
            f = av.VideoFrame.from_ndarray(img.numpy(), format="rgb24")
            f.pts, f.time_base = i, Fraction(1, rate)
            for p in v.encode(f):
                c.mux(p)
        for p in v.encode(None):
            c.mux(p)
    return path


def read_video(path) -> torch.Tensor:
    import av
    import numpy as np

    with av.open(str(path)) as c:
        return torch.from_numpy(np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)]))
