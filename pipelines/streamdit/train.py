"""Training recipe of the default StreamDiT model (``assets/streamdit-tiny``): buffered flow matching, then the
per-segment multistep distillation.

1. Data: synthetic captioned clips; the frame codec; latents.
2. Teacher (buffered flow matching): a buffer of K clean reference frames + N chunks of c frames cut from a clip;
   chunk i (counted from the noisy end, i = 1..N) gets tau_i ~ U[(i-1)/N, i/N]; chunk sizes are mixed (every c in
   {1, 2, 4, 8, 16} that divides the buffer); loss ||u - (X1 - (1 - sigma_min) X0)||^2 on the chunk frames. The DiT
   runs with the inference attention (3D windows shifted every other layer). Single-chunk samples also train the
   start-up case (the whole buffer, reference slots included, at one tau: a plain text-to-video generation).
3. Distillation per segment: the student starts from the teacher (its trajectory guided by CFG, as the paper's
   teacher; the caption is dropped 10% of the time in step 2 so the teacher knows the unconditional velocity). A buffer at the segment boundaries of inference
   (chunk j of N at tau = j/N) is moved by the teacher with s_teacher Euler micro-steps of 1/(N s_teacher) (all
   chunks together, as the buffer moves between shifts); the student learns to make the same move in ONE step of
   1/N: every segment of the trajectory distilled from s_teacher steps to 1, so inference runs s = 1 (1 NFE per
   emitted chunk).
"""

from __future__ import annotations

import argparse
import copy
import logging
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from pipelines.streamdit.pipeline import (
    NAME,
    ShiftedWindowAttention,
    StreamDiTConfig,
    StreamDiTGenerator,
    folder_config,
)
from streamrt.video.codec import CodecConfig
from streamrt.video.dit import DiTConfig, VideoDiT
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
SUMMARY = "The default model of streamrt's StreamDiT pipeline: a small windowed adaLN DiT (per-frame time embedding), a word-level text encoder and an 8x frame codec, trained from scratch on CPU by buffered flow matching and distilled per segment to one step per buffer position."
CHUNK_SIZES = (1, 2, 4, 8, 16)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser, name=NAME, size=128, clips=600, frames=24)
    parser.add_argument(
        "--steps", type=int, default=2000, help="teacher training steps (buffered flow matching)"
    )
    parser.add_argument("--distill-steps", type=int, default=500, help="per-segment distillation steps")
    parser.add_argument(
        "--teacher-guidance", type=float, default=2.0, help="CFG scale of the teacher's trajectory"
    )
    # Sized for the 60-minute 2-core budget from a measured ~0.1-0.3 s per buffer sample (fwd+bwd) at these sizes.
    parser.set_defaults(batch=4)
    parser.add_argument(
        "--teacher-micro-steps", type=int, default=4, help="s of the teacher (distilled to s = 1)"
    )
    parser.add_argument("--ref-frames", type=int, default=2, help="K")
    parser.add_argument("--chunks", type=int, default=4, help="N")
    parser.add_argument("--chunk-frames", type=int, default=2, help="c at inference")
    parser.add_argument(
        "--window", type=int, nargs=3, default=[4, 4, 4], help="3D attention window (frames, h, w)"
    )
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--text-dim", type=int, default=64)
    parser.add_argument("--eval-prompts", type=int, default=20)


def buffer_sample(latents: torch.Tensor, k: int, frames: int, gen: torch.Generator) -> torch.Tensor:
    start = int(torch.randint(0, latents.shape[0] - (k + frames) + 1, (1,), generator=gen))
    return latents[start : start + k + frames]


def velocity(dit: VideoDiT, plan, x: torch.Tensor, taus: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
    return dit(x.transpose(0, 1)[None], ((1 - taus) * 1000)[None], ctx, plan=plan)[0].transpose(0, 1)


def run(args: argparse.Namespace) -> int:
    apply_quick(args, steps=3, distill_steps=2, teacher_micro_steps=2, dim=24, layers=2, heads=2, text_dim=16,
                eval_prompts=1, ref_frames=1, chunks=2, chunk_frames=2, window=[3, 2, 2])  # fmt: skip
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    codec_cfg = CodecConfig(latent_channels=4, width=16 if args.quick else 32, levels=3)
    data, metrics = prepare_data(args, args.text_dim, codec_cfg)
    cfg = StreamDiTConfig(ref_frames=args.ref_frames, num_chunks=args.chunks, chunk_frames=args.chunk_frames,
                          micro_steps=1, window=list(args.window))  # fmt: skip
    body = cfg.num_chunks * cfg.chunk_frames
    if data.latents.shape[1] < cfg.ref_frames + body:
        raise ValueError(f"--frames must be at least K + N*c = {cfg.ref_frames + body}")
    dc = DiTConfig(in_dim=4, out_dim=4, dim=args.dim, ffn_dim=2 * args.dim, num_heads=args.heads, num_layers=args.layers,
                   text_dim=args.text_dim, freq_dim=64 if args.dim >= 64 else 32)  # fmt: skip
    torch.manual_seed(args.seed)
    dev = training_device(args)
    teacher = VideoDiT(dc).to(dev)
    plan = ShiftedWindowAttention(tuple(cfg.window))
    gen = torch.Generator().manual_seed(args.seed + 1)
    n_clips = len(data.train.captions)
    sizes = [c for c in CHUNK_SIZES if body % c == 0]

    # ---------------------------------------------------------------- teacher: buffered flow matching
    params = list(teacher.parameters()) + list(data.text.parameters())
    opt = torch.optim.AdamW(params, lr=args.lr * 0.5, weight_decay=0.01)
    losses = []
    for _ in tqdm(range(args.steps), desc="streamdit teacher", leave=False):
        loss = torch.zeros((), device=dev)
        for _b in range(args.batch):
            i = int(torch.randint(n_clips, (1,), generator=gen))
            x1 = buffer_sample(data.latents[i], cfg.ref_frames, body, gen)
            c = sizes[int(torch.randint(len(sizes), (1,), generator=gen))]
            n = body // c
            # chunk j in time order (0 = oldest) is chunk i = n - j from the noisy end: tau ~ U[(i-1)/n, i/n]
            taus = torch.cat(
                [((n - 1 - j) + torch.rand(1, generator=gen)) / n * torch.ones(c) for j in range(n)]
            )
            # start-up is a plain text-to-video generation: every frame of the buffer (the reference slots too) at one
            # tau; half of the single-chunk samples train that case, the others keep clean references
            startup = n == 1 and torch.rand(1, generator=gen) < 0.5
            k = 0 if startup else cfg.ref_frames
            taus = torch.cat(
                [taus[:1].expand(cfg.ref_frames) if startup else torch.ones(cfg.ref_frames), taus]
            )
            x0 = torch.randn(x1.shape, generator=gen)
            tt = taus.view(-1, 1, 1, 1)
            x_tau = tt * x1 + (1 - (1 - cfg.sigma_min) * tt) * x0
            x_tau[:k] = x1[:k]
            # the caption is dropped 10% of the time: the teacher also learns the unconditional velocity (CFG)
            caption = data.train.captions[i] if torch.rand(1, generator=gen) > 0.1 else ""
            ctx = data.text.encode([caption], word_dropout=0.1, generator=gen)
            u = velocity(teacher, plan, x_tau.to(dev), taus.to(dev), ctx)
            target = (x1 - (1 - cfg.sigma_min) * x0).to(dev)
            loss = loss + F.mse_loss(u[k:], target[k:]) / args.batch
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        losses.append(float(loss.detach()))
    metrics["teacher_loss_last100"] = sum(losses[-100:]) / max(1, len(losses[-100:]))

    # ---------------------------------------------------------------- per-segment multistep distillation
    student = copy.deepcopy(teacher)
    teacher.requires_grad_(False)
    data.text.requires_grad_(False)
    opt = torch.optim.AdamW(student.parameters(), lr=args.lr * 0.25, weight_decay=0.01)
    s_t, n = args.teacher_micro_steps, cfg.num_chunks
    seg = torch.cat(
        [
            torch.ones(cfg.ref_frames),
            torch.cat([torch.full((cfg.chunk_frames,), (n - 1 - j) / n) for j in range(n)]),
        ]
    ).to(dev)
    dlosses = []
    for _ in tqdm(range(args.distill_steps), desc="streamdit distill", leave=False):
        loss = torch.zeros((), device=dev)
        for _b in range(args.batch):
            i = int(torch.randint(n_clips, (1,), generator=gen))
            x1 = buffer_sample(data.latents[i], cfg.ref_frames, body, gen).to(dev)
            x0 = torch.randn(x1.shape, generator=gen).to(dev)
            tt = seg.view(-1, 1, 1, 1)
            x = tt * x1 + (1 - (1 - cfg.sigma_min) * tt) * x0
            x[: cfg.ref_frames] = x1[: cfg.ref_frames]
            with torch.no_grad():
                ctx = data.text.encode([data.train.captions[i]])
                unc = data.text.encode([""])
                y, taus = x.clone(), seg.clone()
                for _m in range(s_t):  # the teacher's s micro-steps across one segment
                    u = velocity(teacher, plan, y, taus, ctx)
                    if (
                        args.teacher_guidance != 1.0
                    ):  # the teacher's trajectory is guided; the student learns it
                        u_unc = velocity(teacher, plan, y, taus, unc)
                        u = u_unc + args.teacher_guidance * (u - u_unc)
                    y[cfg.ref_frames :] += u[cfg.ref_frames :] / (n * s_t)
                    taus[cfg.ref_frames :] += 1 / (n * s_t)
            u_s = velocity(student, plan, x, seg, ctx)
            target = (y - x) * n  # the one-step velocity that lands where the teacher's s steps land
            loss = loss + F.mse_loss(u_s[cfg.ref_frames :], target[cfg.ref_frames :]) / args.batch
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        opt.step()
        dlosses.append(float(loss.detach()))
    metrics["distill_loss_last100"] = sum(dlosses[-100:]) / max(1, len(dlosses[-100:]))
    metrics["train_seconds"] = time.perf_counter() - started

    out: Path = args.out
    student.cpu(), data.text.cpu()
    save_folder(out, NAME, folder_config(dc, data.text.cfg, data.codec.cfg, cfg, args.size),
                {"transformer": student, "text": data.text, "codec": data.codec})  # fmt: skip
    gen_ = StreamDiTGenerator.load(model=str(out))

    metrics.update(evaluate_following(prompt_renderer(gen_), args.eval_prompts, 16, args.size))
    metrics.update({"steps": args.steps, "distill_steps": args.distill_steps, "teacher_micro_steps": s_t,
                    "teacher_guidance": args.teacher_guidance,
                    "params_transformer": sum(p.numel() for p in student.parameters()), "quick": args.quick})  # fmt: skip
    metrics["threads"] = args.threads
    write_metrics(out, metrics)
    write_card(out, NAME, command_line(NAME, args, add_arguments), SUMMARY, metrics)
    log.info("wrote %s: %s", out, metrics)
    return 0
