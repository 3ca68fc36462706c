"""Training recipe of the default StreamingT2V model (``assets/streamingt2v-tiny``).

1. Data: synthetic captioned clips; the frame codec; latents.
2. Base: a small diffusers ``UNet3DConditionModel`` trained on ``chunk_frames``-frame clips with the DDPM epsilon loss
   (scaled-linear betas, as ModelScope), the caption dropped 10% of the time (classifier-free guidance).
3. CAM + APM, base frozen (as the paper trains them): from clips of ``2*chunk - cond`` frames, the conditioning is
   frames [chunk - cond, chunk), the target chunk starts at the conditioning's first frame (inference drops that
   part and keeps the new frames), the anchor is frame 0; same epsilon loss. CAM's output projections and APM's gates
   start at zero, so training starts from the base model's behaviour.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from pipelines.streamingt2v.model import StreamingT2VConfig, StreamingT2VModel
from pipelines.streamingt2v.pipeline import NAME, StreamingT2VGenerator, folder_config
from streamrt.video.codec import CodecConfig
from streamrt.video.folder import save_folder
from streamrt.video.training import (
    add_common_arguments,
    apply_quick,
    command_line,
    evaluate_following,
    prepare_data,
    prompt_renderer,
    training_device,
    write_card,
    write_metrics,
)

log = logging.getLogger(__name__)
SUMMARY = "The default model of streamrt's StreamingT2V pipeline: a small diffusers UNet3DConditionModel base with CAM and APM, a word-level text encoder and an 8x frame codec, trained from scratch by the project on synthetic captioned video."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser, name=NAME, size=128, clips=500, frames=24)
    # Sized for the 60-minute 2-core budget from a measured ~0.7-1.9 s per 16-frame sample (fwd+bwd) at these sizes.
    parser.set_defaults(batch=2)
    parser.add_argument("--steps", type=int, default=1500, help="base UNet training steps")
    parser.add_argument("--cond-steps", type=int, default=600, help="CAM + APM training steps")
    parser.add_argument("--chunk-frames", type=int, default=16)
    parser.add_argument("--cond-frames", type=int, default=8)
    parser.add_argument("--channels", type=int, nargs="+", default=[32, 64], help="UNet block_out_channels")
    parser.add_argument("--text-dim", type=int, default=64)
    parser.add_argument(
        "--sample-steps", type=int, default=2, help="DDIM steps at inference (written to the config)"
    )
    parser.add_argument("--guidance", type=float, default=1.0, help="CFG scale at inference (1 = off)")
    parser.add_argument(
        "--prediction-type",
        choices=["epsilon", "v_prediction"],
        default="v_prediction",
        help="UNet target (ModelScope's is epsilon; see StreamingT2VConfig.prediction_type)",
    )
    parser.add_argument("--eval-prompts", type=int, default=20)


def make_unet(channels: list[int], text_dim: int, sample: int):
    from diffusers import UNet3DConditionModel

    n = len(channels)
    return UNet3DConditionModel(
        sample_size=sample, in_channels=4, out_channels=4,
        down_block_types=("CrossAttnDownBlock3D",) * (n - 1) + ("DownBlock3D",),
        up_block_types=("UpBlock3D",) + ("CrossAttnUpBlock3D",) * (n - 1),
        block_out_channels=tuple(channels), layers_per_block=1, norm_num_groups=min(16, channels[0]),
        cross_attention_dim=text_dim, attention_head_dim=min(32, channels[0]),
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    apply_quick(args, steps=2, cond_steps=2, chunk_frames=4, cond_frames=2, channels=[16, 16], text_dim=16,
                eval_prompts=1, frames=8, sample_steps=2)  # fmt: skip
    from diffusers import DDPMScheduler

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    codec_cfg = CodecConfig(latent_channels=4, width=16 if args.quick else 32, levels=3)
    data, metrics = prepare_data(args, args.text_dim, codec_cfg)
    need = 2 * args.chunk_frames - args.cond_frames
    if data.latents.shape[1] < need:
        raise ValueError(f"--frames must be at least 2*chunk - cond = {need}")
    cfg = StreamingT2VConfig(chunk_frames=args.chunk_frames, cond_frames=args.cond_frames, apm_tokens=16 if not args.quick else 2,
                             cam_heads=4 if not args.quick else 2, steps=args.sample_steps, guidance_scale=args.guidance,
                             text_tokens=data.text.cfg.max_words, prediction_type=args.prediction_type)  # fmt: skip
    torch.manual_seed(args.seed)
    dev = training_device(args)
    unet = make_unet(args.channels, args.text_dim, data.latents.shape[-1]).to(dev)
    sched = DDPMScheduler(
        num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012
    )
    gen = torch.Generator().manual_seed(args.seed + 1)
    n_clips = len(data.train.captions)
    lat = data.latents.transpose(1, 2)  # (N, C, T, h, w)

    def sample_batch(frames: int):
        idx = torch.randint(n_clips, (args.batch,), generator=gen)
        start = torch.randint(0, lat.shape[2] - frames + 1, (1,), generator=gen).item()
        caps = [data.train.captions[i] if torch.rand(1, generator=gen) > 0.1 else "" for i in idx.tolist()]
        return lat[idx, :, start : start + frames], caps

    def eps_loss(model_fn, x0, caps):
        noise = torch.randn(x0.shape, generator=gen)
        t = torch.randint(0, 1000, (1,), generator=gen)
        x_t = sched.add_noise(x0, noise, t)
        text = data.text.encode(caps, word_dropout=0.1, generator=gen)
        target = noise if args.prediction_type == "epsilon" else sched.get_velocity(x0, noise, t)
        return F.mse_loss(model_fn(x_t.to(dev), t.to(dev), text), target.to(dev))

    params = list(unet.parameters()) + list(data.text.parameters())
    opt = torch.optim.AdamW(params, lr=args.lr * 0.5, weight_decay=0.01)
    losses = []
    for _ in tqdm(range(args.steps), desc="streamingt2v base", leave=False):
        x0, caps = sample_batch(args.chunk_frames)
        loss = eps_loss(lambda x, t, c: unet(x, t, encoder_hidden_states=c, return_dict=False)[0], x0, caps)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        losses.append(float(loss.detach()))
    metrics["base_loss_last100"] = sum(losses[-100:]) / max(1, len(losses[-100:]))

    model = StreamingT2VModel(unet, cfg).to(
        dev
    )  # CAM copies the trained encoder; zero-initialised merges and gates
    unet.requires_grad_(False)
    data.text.requires_grad_(False)
    cparams = list(model.cam.parameters()) + list(model.apm.parameters())
    opt = torch.optim.AdamW(cparams, lr=args.lr * 0.5, weight_decay=0.01)
    closses = []
    for _ in tqdm(range(args.cond_steps), desc="streamingt2v cam+apm", leave=False):
        clip, caps = sample_batch(need)
        cond = clip[:, :, args.chunk_frames - args.cond_frames : args.chunk_frames]
        target = clip[:, :, args.chunk_frames - args.cond_frames :]
        anchor = clip[:, :, 0]
        cond, anchor = cond.to(dev), anchor.to(dev)
        loss = eps_loss(lambda x, t, c, cond=cond, anchor=anchor: model(x, t, c, cond, anchor), target, caps)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(cparams, 1.0)
        opt.step()
        closses.append(float(loss.detach()))
    metrics["cond_loss_last100"] = sum(closses[-100:]) / max(1, len(closses[-100:]))
    metrics["train_seconds"] = time.perf_counter() - started

    out: Path = args.out
    model.cpu(), data.text.cpu()
    save_folder(out, NAME, folder_config(unet.config, data.text.cfg, data.codec.cfg, cfg, args.size),
                {"unet": unet, "cam": model.cam, "apm": model.apm, "text": data.text, "codec": data.codec})  # fmt: skip
    gen_ = StreamingT2VGenerator.load(model=str(out))

    metrics.update(evaluate_following(prompt_renderer(gen_), args.eval_prompts, 16, args.size))
    metrics.update({"steps": args.steps, "cond_steps": args.cond_steps, "quick": args.quick,
                    "params_unet": sum(p.numel() for p in unet.parameters()),
                    "params_cam_apm": sum(p.numel() for p in cparams)})  # fmt: skip
    metrics["threads"] = args.threads
    write_metrics(out, metrics)
    write_card(out, NAME, command_line(NAME, args, add_arguments), SUMMARY, metrics)
    log.info("wrote %s: %s", out, metrics)
    return 0
