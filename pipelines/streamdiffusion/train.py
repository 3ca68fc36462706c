"""Training recipe of the embedded tiny StreamDiffusion model (``assets/streamdiffusion-tiny``).

Steps: synthesise captioned images (``synthetic``), train a CLIP-style BPE tokenizer on the captions, train the
AutoencoderTiny (reconstruction), pre-encode all images to latents, then train the CLIP text encoder and the UNet
jointly with the DDPM epsilon loss on Stable Diffusion's scaled_linear schedule, and write a diffusers folder
(fp16 safetensors). The default arguments of ``add_arguments`` are the recipe that produced the committed weights.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from . import synthetic, tiny_config

logger = logging.getLogger(__name__)

DEFAULT_OUT = Path(__file__).resolve().parents[2] / "assets" / "streamdiffusion-tiny"
# Timesteps the LCM sampler visits with StreamDiffusion's usual t_index_lists ([32, 45] img2img, [0, 16, 32, 45]
# txt2img, 50 LCM steps): training puts extra weight near them.
LCM_TIMESTEPS = (999, 679, 359, 99)


# --------------------------------------------------------------------------------------------------------- tokenizer
def bytes_to_unicode() -> list[str]:
    """CLIP/GPT-2 byte -> printable character table, in CLIP's vocabulary order."""
    bs = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def build_tokenizer(corpus: list[str], out_dir: Path, vocab_size: int = 1024) -> Any:
    """Train a CLIP-style BPE (``</w>`` end-of-word suffix) and save CLIPTokenizer files into out_dir.

    The vocabulary starts with all 256 byte symbols (with and without ``</w>``), as CLIP's does, so any text
    tokenises: unknown words split into byte pieces instead of failing.
    """
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import CLIPTokenizer

    bpe = Tokenizer(models.BPE(end_of_word_suffix="</w>"))
    bpe.normalizer = normalizers.Lowercase()
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Whitespace(), ByteLevel(add_prefix_space=False, use_regex=False)]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=ByteLevel.alphabet(),
        end_of_word_suffix="</w>",
        show_progress=False,
    )
    bpe.train_from_iterator(corpus, trainer)
    merges = json.loads(bpe.to_str())["model"]["merges"]
    chars = bytes_to_unicode()
    vocab = chars + [c + "</w>" for c in chars]
    seen = set(vocab)
    kept = []
    for a, b in merges:
        if a + b not in seen:  # a merge can re-create an existing symbol; keep the vocabulary unique
            seen.add(a + b)
            vocab.append(a + b)
            kept.append((a, b))
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}, ensure_ascii=False))
    (out_dir / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in kept))
    tok = CLIPTokenizer.from_pretrained(out_dir, model_max_length=tiny_config.MAX_TOKENS)
    tok.save_pretrained(out_dir)
    return tok


def tokenize(tokenizer: Any, captions: list[str]) -> torch.Tensor:
    return tokenizer(
        captions,
        padding="max_length",
        max_length=tiny_config.MAX_TOKENS,
        truncation=True,
        return_tensors="pt",
    ).input_ids


# --------------------------------------------------------------------------------------------------------------- VAE
def _to_tensor(images: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float in [-1, 1]."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1)


def _sobel(x: torch.Tensor) -> torch.Tensor:
    k = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
    w = torch.stack([k, k.t()])[:, None].repeat(3, 1, 1, 1)  # (6, 1, 3, 3): x and y per channel
    return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), w, groups=3)


def train_vae(
    images: np.ndarray,
    *,
    steps: int,
    batch_size: int,
    crop: int,
    lr: float,
    gen: torch.Generator,
    progress: bool,
    color_weight: float = 1.0,
) -> tuple[Any, dict[str, float]]:
    from diffusers import AutoencoderTiny

    vae = AutoencoderTiny(**tiny_config.vae_config())
    # PyTorch's default init. He init looks tempting (the default fades the signal through ~20 ReLU convs), but
    # with the residual blocks it starts at a huge loss and settled at ~13.7 dB in a 1500-step trial, while the
    # default init kept improving (18.4 dB after 900 steps, same data and optimiser).
    opt = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 50) * _cosine(s, steps))
    n, size = images.shape[0], images.shape[1]
    losses: list[float] = []
    bar = tqdm(range(steps), desc="vae", disable=not progress)
    for _ in bar:
        idx = torch.randint(0, n, (batch_size,), generator=gen).numpy()
        # random crops: the VAE is fully convolutional and crops cost a quarter of full frames
        y0, x0 = (int(v) for v in torch.randint(0, size - crop + 1, (2,), generator=gen))
        x = _to_tensor(images[idx, y0 : y0 + crop, x0 : x0 + crop])
        if bool(torch.rand((), generator=gen) < 0.5):
            x = x.flip(-1)
        z = vae.encode(x).latents
        rec = vae.decode(z).sample
        loss_rec = F.l1_loss(rec, x) + F.mse_loss(rec, x)
        loss_edge = F.l1_loss(_sobel(rec), _sobel(x))  # keeps edges crisp (img2img must keep structure)
        # keep latents centred and near unit scale, inside the decoder's tanh clamp at +-3
        loss_lat = z.mean().square() + (z.std() - 1).square()
        # colour at the scale of a latent pixel: the tiny decoder otherwise learns luminance long before colour
        loss_col = F.l1_loss(F.avg_pool2d(rec, 8), F.avg_pool2d(x, 8))
        loss = loss_rec + 0.25 * loss_edge + color_weight * loss_col + 0.01 * loss_lat
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(float(loss_rec.detach()))
        if progress:
            bar.set_postfix(rec=f"{np.mean(losses[-50:]):.4f}")
    vae.eval()
    return vae, {"vae_final_rec_loss": float(np.mean(losses[-50:])) if losses else float("nan")}


@torch.inference_mode()
def encode_images(vae: Any, images: np.ndarray, batch: int = 32) -> torch.Tensor:
    """Raw (unscaled) latents of all images."""
    out = [vae.encode(_to_tensor(images[i : i + batch])).latents for i in range(0, len(images), batch)]
    return torch.cat(out)


@torch.inference_mode()
def vae_psnr(vae: Any, images: np.ndarray) -> float:
    x = _to_tensor(images)
    rec = vae.decode(vae.encode(x).latents).sample.clamp(-1, 1)
    mse = ((rec - x) / 2).square().mean(dim=(1, 2, 3))
    return float((10 * torch.log10(1 / mse.clamp_min(1e-10))).mean())


# -------------------------------------------------------------------------------------------------------- diffusion
def _cosine(step: int, total: int, floor: float = 0.1) -> float:
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(step, total) / max(total, 1)))


def sample_timesteps(
    batch: int, gen: torch.Generator, lcm_fraction: float = 0.5, jitter: int = 30
) -> torch.Tensor:
    """Uniform timesteps, with lcm_fraction of them drawn near the timesteps the LCM sampler visits."""
    t = torch.randint(0, 1000, (batch,), generator=gen)
    near = torch.tensor(LCM_TIMESTEPS)[torch.randint(0, len(LCM_TIMESTEPS), (batch,), generator=gen)]
    near = (near + torch.randint(-jitter, jitter + 1, (batch,), generator=gen)).clamp(0, 999)
    pick = torch.rand(batch, generator=gen) < lcm_fraction
    return torch.where(pick, near, t)


def train_diffusion(
    latents: torch.Tensor,
    ids: torch.Tensor,
    empty_ids: torch.Tensor,
    vocab_size: int,
    bos: int,
    eos: int,
    *,
    steps: int,
    batch_size: int,
    lr: float,
    gen: torch.Generator,
    progress: bool,
    uncond_prob: float = 0.1,
    snr_gamma: float = 5.0,
    ema_decay: float = 0.998,
    prediction_type: str = "v_prediction",
) -> tuple[Any, Any, dict[str, float]]:
    from diffusers import LCMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    unet = UNet2DConditionModel(**tiny_config.unet_config())
    text = CLIPTextModel(CLIPTextConfig(**tiny_config.text_config(vocab_size, bos, eos)))
    sch = LCMScheduler(**tiny_config.scheduler_config(prediction_type))  # same betas as sampling uses
    abar = sch.alphas_cumprod.float()
    snr = abar / (1 - abar)
    # min-SNR-gamma weighting (Hang et al. 2023): min(snr, gamma) / snr for epsilon, min(snr, gamma) / (snr + 1)
    # for v-prediction: both give every timestep the x0-space weight min(snr, gamma)
    if prediction_type == "epsilon":
        weight = snr.clamp(max=snr_gamma) / snr
    elif prediction_type == "v_prediction":
        weight = snr.clamp(max=snr_gamma) / (snr + 1)
    else:
        raise ValueError(f"prediction_type must be epsilon or v_prediction; got {prediction_type!r}")

    params = list(unet.parameters()) + list(text.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-2, betas=(0.9, 0.99))
    warm = max(1, min(200, steps // 10))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warm) * _cosine(s, steps))
    ema_unet, ema_text = copy.deepcopy(unet).eval(), copy.deepcopy(text).eval()
    ema_unet.requires_grad_(False)
    ema_text.requires_grad_(False)
    ema_pairs = list(zip(list(ema_unet.parameters()) + list(ema_text.parameters()), params, strict=True))

    n = latents.shape[0]
    losses: list[float] = []
    bar = tqdm(range(steps), desc="unet", disable=not progress)
    for step in bar:
        idx = torch.randint(0, n, (batch_size,), generator=gen)
        x0 = latents[idx]
        flip = torch.rand(batch_size, generator=gen) < 0.5
        x0 = torch.where(flip[:, None, None, None], x0.flip(-1), x0)
        tok = ids[idx].clone()
        drop = torch.rand(batch_size, generator=gen) < uncond_prob  # empty prompt, so CFG / RCFG can work
        tok[drop] = empty_ids
        t = sample_timesteps(batch_size, gen)
        noise = torch.randn(x0.shape, generator=gen)
        a = abar[t].sqrt()[:, None, None, None]
        b = (1 - abar[t]).sqrt()[:, None, None, None]
        xt = a * x0 + b * noise
        cond = text(tok).last_hidden_state
        pred = unet(xt, t, encoder_hidden_states=cond).sample
        target = noise if prediction_type == "epsilon" else a * noise - b * x0
        per = (pred - target).square().mean(dim=(1, 2, 3))
        loss = (per * weight[t]).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        d = min(
            ema_decay, (1 + step) / (10 + step)
        )  # EMA warm-up: early averages track the fast-moving weights
        with torch.no_grad():
            for pe, p in ema_pairs:
                pe.lerp_(p, 1 - d)
        losses.append(float(per.detach().mean()))
        if progress:
            bar.set_postfix(mse=f"{np.mean(losses[-50:]):.4f}")
    return (
        ema_unet,
        ema_text,
        {"unet_final_mse": float(np.mean(losses[-100:])) if losses else float("nan")},
    )


# ------------------------------------------------------------------------------------------------------------ saving
def save_folder(
    out_dir: Path, unet: Any, vae: Any, text: Any, tokenizer_dir: Path, prediction_type: str = "v_prediction"
) -> None:
    """Write a diffusers StableDiffusion-style folder with fp16 safetensors weights."""
    import diffusers
    from diffusers import LCMScheduler

    out_dir.mkdir(parents=True, exist_ok=True)
    for name in ("unet", "vae", "text_encoder", "scheduler", "tokenizer"):
        if (out_dir / name).exists():
            shutil.rmtree(out_dir / name)
    # fp16 halves the files; loaders upcast to float32 on CPU
    copy.deepcopy(unet).half().save_pretrained(out_dir / "unet", safe_serialization=True)
    copy.deepcopy(vae).half().save_pretrained(out_dir / "vae", safe_serialization=True)
    copy.deepcopy(text).half().save_pretrained(out_dir / "text_encoder", safe_serialization=True)
    LCMScheduler(**tiny_config.scheduler_config(prediction_type)).save_pretrained(out_dir / "scheduler")
    shutil.copytree(tokenizer_dir, out_dir / "tokenizer")
    index = {
        "_class_name": "StableDiffusionPipeline",
        "_diffusers_version": diffusers.__version__,
        "feature_extractor": [None, None],
        "image_encoder": [None, None],
        "requires_safety_checker": False,
        "safety_checker": [None, None],
        "scheduler": ["diffusers", "LCMScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderTiny"],
    }
    (out_dir / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")


def _nparams(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


# ------------------------------------------------------------------------------------------------------------ recipe
def train(
    out_dir: Path,
    *,
    vae_steps: int,
    unet_steps: int,
    batch_size: int,
    seed: int,
    image_size: int = 256,
    num_images: int = 2000,
    vae_batch_size: int = 16,
    vae_crop: int = 128,
    vae_lr: float = 1e-3,
    vae_color_weight: float = 1.0,
    unet_lr: float = 1e-3,
    prediction_type: str = "v_prediction",
    vae_from: Path | None = None,
    threads: int = 2,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the whole recipe and write a diffusers folder to out_dir. Returns metrics (also saved as train_metrics.json)."""
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    metrics: dict[str, Any] = {
        "seed": seed,
        "num_images": num_images,
        "vae_steps": vae_steps,
        "unet_steps": unet_steps,
        "prediction_type": prediction_type,
    }

    images, captions, _ = synthetic.make_dataset(num_images, seed, image_size)
    metrics["data_s"] = round(time.perf_counter() - t0, 1)
    logger.info("synthesised %d images in %.1fs", num_images, metrics["data_s"])

    with tempfile.TemporaryDirectory() as tmp:
        tok_dir = Path(tmp) / "tokenizer"
        tokenizer = build_tokenizer(synthetic.caption_corpus(seed), tok_dir)
        metrics["vocab_size"] = len(tokenizer)

        t1 = time.perf_counter()
        crop = min(vae_crop, image_size)
        if vae_from is not None:
            # Keep an already trained VAE (e.g. the committed one) and train only the text encoder and UNet.
            from diffusers import AutoencoderTiny

            vae = AutoencoderTiny.from_pretrained(vae_from, subfolder="vae", torch_dtype=torch.float32).eval()
            metrics["vae_from"] = str(vae_from)
        else:
            vae, m = train_vae(
                images,
                steps=vae_steps,
                batch_size=vae_batch_size,
                crop=crop,
                lr=vae_lr,
                gen=gen,
                progress=progress,
                color_weight=vae_color_weight,
            )
            metrics.update(m)
        metrics["vae_s"] = round(time.perf_counter() - t1, 1)

        raw = encode_images(vae, images)
        std = float(raw.std())
        # diffusers multiplies encoder latents by scaling_factor: unit-variance latents for the UNet
        vae.register_to_config(scaling_factor=round(1.0 / max(std, 1e-3), 5))
        latents = raw * vae.config.scaling_factor
        metrics["latent_mean"], metrics["latent_std_raw"] = float(raw.mean()), std
        metrics["vae_psnr_train_subset"] = vae_psnr(vae, images[: min(64, num_images)])
        heldout = np.stack(
            [synthetic._to_uint8(synthetic.photo_center(p, image_size)) for p in synthetic.HELDOUT_PHOTOS]
        )
        metrics["vae_psnr_heldout_photos"] = vae_psnr(vae, heldout)

        ids = tokenize(tokenizer, captions)
        empty = tokenize(tokenizer, [""])[0]
        t2 = time.perf_counter()
        unet, text, m = train_diffusion(
            latents,
            ids,
            empty,
            len(tokenizer),
            int(tokenizer.bos_token_id),
            int(tokenizer.eos_token_id),
            steps=unet_steps,
            batch_size=batch_size,
            lr=unet_lr,
            gen=gen,
            progress=progress,
            prediction_type=prediction_type,
        )
        metrics.update(m)
        metrics["unet_s"] = round(time.perf_counter() - t2, 1)
        save_folder(out_dir, unet, vae, text, tok_dir, prediction_type)

    metrics["params"] = {"unet": _nparams(unet), "vae": _nparams(vae), "text_encoder": _nparams(text)}
    metrics["total_s"] = round(time.perf_counter() - t0, 1)
    (out_dir / "train_metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    logger.info("trained tiny StreamDiffusion in %.0fs -> %s", metrics["total_s"], out_dir)
    return metrics


# --------------------------------------------------------------------------------------------------------------- CLI
# The defaults are the recipe of the committed assets/streamdiffusion-tiny weights.
DEFAULTS: dict[str, Any] = {
    "vae_steps": 1500,
    "unet_steps": 1500,
    "batch_size": 16,
    "num_images": 2000,
    "seed": 0,
    "vae_lr": 1e-3,
    # 1.0: what trained the committed VAE (its first card said 4, but a bug passed the function default)
    "vae_color_weight": 1.0,
    "prediction_type": "v_prediction",
}
QUICK: dict[str, Any] = {"vae_steps": 3, "unet_steps": 3, "batch_size": 4, "num_images": 8}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output diffusers folder")
    parser.add_argument("--vae-steps", type=int, default=DEFAULTS["vae_steps"])
    parser.add_argument("--unet-steps", type=int, default=DEFAULTS["unet_steps"])
    parser.add_argument("--batch-size", type=int, default=DEFAULTS["batch_size"], help="UNet batch size")
    parser.add_argument("--num-images", type=int, default=DEFAULTS["num_images"], help="synthetic images")
    parser.add_argument("--seed", type=int, default=DEFAULTS["seed"])
    parser.add_argument("--vae-lr", type=float, default=DEFAULTS["vae_lr"])
    parser.add_argument("--vae-color-weight", type=float, default=DEFAULTS["vae_color_weight"])
    parser.add_argument(
        "--prediction-type", choices=("v_prediction", "epsilon"), default=DEFAULTS["prediction_type"]
    )
    parser.add_argument(
        "--vae-from", type=Path, default=None, metavar="DIR", help="reuse DIR's VAE instead of training one"
    )
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--quick", action="store_true", help="a few steps on tiny data (smoke test, CI)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def run(args: argparse.Namespace) -> int:
    kw = {
        k: getattr(args, k)
        for k in (
            "vae_steps",
            "unet_steps",
            "batch_size",
            "num_images",
            "vae_lr",
            "vae_color_weight",
            "prediction_type",
        )
    }
    if args.quick:
        kw = dict(QUICK, prediction_type=args.prediction_type)
    metrics = train(
        Path(args.out),
        seed=args.seed,
        progress=not args.no_progress,
        vae_from=args.vae_from,
        threads=args.threads,
        **kw,
    )
    logger.info("metrics: %s", json.dumps(metrics))
    return 0


if (
    __name__ == "__main__"
):  # `python -m pipelines.streamdiffusion.train` mirrors `streamrt train streamdiffusion`
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    _parser = argparse.ArgumentParser(description=__doc__)
    add_arguments(_parser)
    raise SystemExit(run(_parser.parse_args()))
