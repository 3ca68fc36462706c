"""Evaluation of a StreamDiffusion-style diffusers folder (metrics for the model card of ``streamdiffusion-tiny``).

Sampling is implemented here with plain diffusers components, exactly as StreamDiffusion does it: LCMScheduler with
50 steps, sub-timesteps picked by ``t_index_list``, per step ``x0 = c_out * (x - beta * eps) / alpha + c_skip * x``
and re-noising ``alpha_next * x0 + beta_next * noise``.

Metrics:
* prompt following: a small classifier on colour/texture statistics (softmax regression, fitted on fresh synthetic
  data) labels generated images; accuracy against the prompt's class, for txt2img and for img2img on held-out content;
* structure preservation in img2img: Pearson correlation of Sobel edge maps between input and output, next to the
  same correlation with an unrelated input (the baseline);
* VAE reconstruction PSNR on held-out photos and fresh synthetic images;
* speed on this CPU (2 threads, float32).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from . import synthetic
from .pipeline import to_epsilon

logger = logging.getLogger(__name__)

IMG2IMG_T_INDEX = (32, 45)  # StreamDiffusion's img2img default: t = 359, 99
TXT2IMG_T_INDEX = (0, 16, 32, 45)  # t = 999, 679, 359, 99


# ----------------------------------------------------------------------------------------------------------- loading
@dataclass
class Components:
    unet: Any
    vae: Any
    text_encoder: Any
    tokenizer: Any
    scheduler: Any


def load_components(folder: Path | str, dtype: torch.dtype = torch.float32) -> Components:
    """Load a diffusers StableDiffusion-style folder (safetensors only: nothing is unpickled)."""
    from diffusers import AutoencoderTiny, LCMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    folder = Path(folder)
    kw: dict[str, Any] = {"use_safetensors": True}
    unet = UNet2DConditionModel.from_pretrained(folder, subfolder="unet", torch_dtype=dtype, **kw).eval()
    vae = AutoencoderTiny.from_pretrained(folder, subfolder="vae", torch_dtype=dtype, **kw).eval()
    text = CLIPTextModel.from_pretrained(folder, subfolder="text_encoder", dtype=dtype, **kw).eval()
    tok = CLIPTokenizer.from_pretrained(folder, subfolder="tokenizer")
    sch = LCMScheduler.from_pretrained(folder, subfolder="scheduler")
    return Components(unet, vae, text, tok, sch)


# ---------------------------------------------------------------------------------------------------------- sampling
@torch.inference_mode()
def encode_prompts(c: Components, prompts: Sequence[str]) -> torch.Tensor:
    ids = c.tokenizer(
        list(prompts),
        padding="max_length",
        max_length=c.tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    ).input_ids
    return c.text_encoder(ids).last_hidden_state


def _step_coefficients(
    c: Components, t_index_list: Sequence[int]
) -> list[tuple[int, float, float, float, float]]:
    """(t, alpha, beta, c_skip, c_out) per sub-step."""
    c.scheduler.set_timesteps(50)
    out = []
    for i in t_index_list:
        t = int(c.scheduler.timesteps[i])
        abar = float(c.scheduler.alphas_cumprod[t])
        c_skip, c_out = c.scheduler.get_scalings_for_boundary_condition_discrete(t)
        out.append((t, abar**0.5, (1 - abar) ** 0.5, float(c_skip), float(c_out)))
    return out


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float32 in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div(127.5).sub(1)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    return ((x.clamp(-1, 1) + 1) * 127.5 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).numpy()


@torch.inference_mode()
def sample(
    c: Components,
    prompts: Sequence[str],
    *,
    t_index_list: Sequence[int],
    init_images: np.ndarray | None = None,
    seed: int = 0,
    guidance_scale: float = 1.0,
    batch: int = 32,
) -> np.ndarray:
    """txt2img (init_images None) or img2img with StreamDiffusion's LCM sub-steps. Returns (N, H, W, 3) uint8.

    guidance_scale > 1 uses full classifier-free guidance against the empty prompt.
    """
    steps = _step_coefficients(c, t_index_list)
    sf = float(c.vae.config.scaling_factor)
    n = len(prompts)
    gen = torch.Generator().manual_seed(seed)
    size = c.unet.config.sample_size
    noise = torch.randn((len(steps), n, c.unet.config.in_channels, size, size), generator=gen)
    emb = encode_prompts(c, prompts)
    uncond = encode_prompts(c, [""]).expand(n, -1, -1)
    outs = []
    for s in range(0, n, batch):
        sl = slice(s, s + batch)
        _, a0, b0, _, _ = steps[0]
        if init_images is None:
            x = noise[0, sl]
        else:
            z = c.vae.encode(to_tensor(init_images[sl])).latents * sf
            x = a0 * z + b0 * noise[0, sl]
        x0 = x
        for k, (t, a, b, cs, co) in enumerate(steps):
            tt = torch.full((x.shape[0],), t)
            kind = c.scheduler.config.prediction_type
            abar = c.scheduler.alphas_cumprod[t].float()
            if guidance_scale > 1.0:
                both = c.unet(torch.cat([x, x]), torch.cat([tt, tt]), torch.cat([uncond[sl], emb[sl]])).sample
                eu, ec = to_epsilon(kind, both, torch.cat([x, x]), abar).chunk(2)
                eps = eu + guidance_scale * (ec - eu)
            else:
                eps = to_epsilon(kind, c.unet(x, tt, encoder_hidden_states=emb[sl]).sample, x, abar)
            x0 = co * (x - b * eps) / a + cs * x
            if k + 1 < len(steps):
                _, an, bn, _, _ = steps[k + 1]
                x = an * x0 + bn * noise[k + 1, sl]
        outs.append(to_uint8(c.vae.decode(x0 / sf).sample))
    return np.concatenate(outs)


# -------------------------------------------------------------------------------------------------------- classifier
def image_features(images: np.ndarray) -> np.ndarray:
    """Colour and texture statistics, (N, D) float32. Cheap and made to separate the synthetic scenes/styles."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0  # (N, 3, H, W)
    small = F.interpolate(x, size=(64, 64), mode="area")
    rgb_mean = small.mean(dim=(2, 3))
    rgb_std = small.std(dim=(2, 3))
    mx, mn = small.max(dim=1).values, small.min(dim=1).values
    sat = (mx - mn) / mx.clamp_min(1e-3)
    r, g, b = small[:, 0], small[:, 1], small[:, 2]
    hue = torch.atan2((3**0.5) * (g - b), 2 * r - g - b)  # (-pi, pi]
    hbin = ((hue + np.pi) / (2 * np.pi) * 12).long().clamp(0, 11)
    hist = torch.zeros(x.shape[0], 12).scatter_add_(1, hbin.flatten(1), sat.flatten(1)) / (64 * 64)
    lum = 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]  # full resolution
    lum_small = F.interpolate(lum[:, None], size=(64, 64), mode="area")[:, 0]
    lhist = torch.stack(
        [
            ((lum_small >= lo) & (lum_small < lo + 0.125)).float().mean(dim=(1, 2))
            for lo in np.arange(0, 1, 0.125)
        ],
        1,
    )
    dx = (lum[:, :, 1:] - lum[:, :, :-1]).abs()
    dy = (lum[:, 1:, :] - lum[:, :-1, :]).abs()
    grad = torch.stack(
        [
            dx.mean(dim=(1, 2)),
            dy.mean(dim=(1, 2)),
            (dx > 0.1).float().mean(dim=(1, 2)),
            (dx > 0.3).float().mean(dim=(1, 2)),
        ],
        1,
    )
    # mosaic tiles: share of the column/row edge profile at a 16-pixel period (phase-free, via FFT)
    per = []
    for prof in (dx.mean(dim=1), dy.mean(dim=2)):
        spec = torch.fft.rfft(prof - prof.mean(dim=1, keepdim=True), dim=1).abs()
        k = round(prof.shape[1] / 16)
        per.append(spec[:, k - 1 : k + 2].sum(1) / spec.sum(1).clamp_min(1e-6))
    feats = [
        rgb_mean,
        rgb_std,
        hist,
        sat.mean(dim=(1, 2))[:, None],
        sat.std(dim=(1, 2))[:, None],
        lhist,
        grad,
        torch.stack(per, 1),
    ]
    return torch.cat(feats, 1).numpy().astype(np.float32)


@dataclass
class StyleClassifier:
    """Softmax regression on standardised ``image_features``; classes are ``synthetic.LABELS``."""

    mean: np.ndarray
    std: np.ndarray
    weight: torch.Tensor
    bias: torch.Tensor

    @classmethod
    def fit(cls, n: int = 600, seed: int = 10_000, size: int = 256) -> StyleClassifier:
        images, _, labels = synthetic.make_dataset(n, seed, size)
        f = image_features(images)
        mean, std = f.mean(0), f.std(0) + 1e-6
        x = torch.from_numpy((f - mean) / std)
        y = torch.from_numpy(labels)
        torch.manual_seed(seed)
        w = torch.zeros(x.shape[1], len(synthetic.LABELS), requires_grad=True)
        b = torch.zeros(len(synthetic.LABELS), requires_grad=True)
        opt = torch.optim.LBFGS([w, b], max_iter=200, line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = F.cross_entropy(x @ w + b, y) + 1e-3 * w.square().sum()
            loss.backward()
            return loss

        opt.step(closure)
        return cls(mean, std, w.detach(), b.detach())

    def logits(self, images: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy((image_features(images) - self.mean) / self.std)
        return x @ self.weight + self.bias

    def predict(self, images: np.ndarray, among: Sequence[int] | None = None) -> np.ndarray:
        lg = self.logits(images)
        if among is not None:  # restrict to a subset of classes (e.g. styles only for styled photos)
            mask = torch.full((lg.shape[1],), float("-inf"))
            mask[list(among)] = 0
            lg = lg + mask
        return lg.argmax(1).numpy()


# ----------------------------------------------------------------------------------------------------------- metrics
def edge_map(images: np.ndarray, size: int = 128) -> np.ndarray:
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0
    x = F.interpolate(x, size=(size, size), mode="area").permute(0, 2, 3, 1).numpy()
    return np.stack([synthetic.sobel_magnitude(synthetic.luminance(im)) for im in x])


def edge_correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-pair Pearson correlation of Sobel edge maps, (N,)."""
    ea, eb = edge_map(a).reshape(len(a), -1), edge_map(b).reshape(len(b), -1)
    ea = ea - ea.mean(1, keepdims=True)
    eb = eb - eb.mean(1, keepdims=True)
    return (ea * eb).sum(1) / (np.linalg.norm(ea, axis=1) * np.linalg.norm(eb, axis=1) + 1e-8)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = ((a.astype(np.float64) - b.astype(np.float64)) / 255.0) ** 2
    return float(np.mean(10 * np.log10(1.0 / np.maximum(mse.mean(axis=(1, 2, 3)), 1e-10))))


@torch.inference_mode()
def vae_roundtrip(c: Components, images: np.ndarray) -> np.ndarray:
    return np.concatenate(
        [
            to_uint8(c.vae.decode(c.vae.encode(to_tensor(images[i : i + 16])).latents).sample)
            for i in range(0, len(images), 16)
        ]
    )


def heldout_content(size: int = 256, seed: int = 7) -> np.ndarray:
    """Held-out img2img inputs: centre and random crops of photos never used in training, plus unseen shapes."""
    rng = np.random.default_rng(seed)
    out = [synthetic.photo_center(p, size) for p in synthetic.HELDOUT_PHOTOS]
    out += [
        synthetic.photo_crop(p, rng, size, jitter=False) for p in synthetic.HELDOUT_PHOTOS for _ in range(2)
    ]
    out += [synthetic.random_shapes(rng, size) for _ in range(2)]
    return np.stack([synthetic._to_uint8(im) for im in out])


@torch.inference_mode()
def measure_speed(c: Components, repeats: int = 20) -> dict[str, float]:
    """Milliseconds on this machine (2 threads, float32): UNet batch 2, VAE encode+decode, whole img2img frame."""
    torch.set_num_threads(2)
    size = c.unet.config.sample_size
    x = torch.randn(2, c.unet.config.in_channels, size, size)
    t = torch.tensor([359, 99])
    emb = encode_prompts(c, ["a sunset", "a sunset"])
    img = torch.rand(1, 3, size * 8, size * 8) * 2 - 1

    def bench(fn: Any) -> float:
        for _ in range(3):
            fn()
        t0 = time.perf_counter()
        for _ in range(repeats):
            fn()
        return (time.perf_counter() - t0) / repeats * 1000

    def frame() -> torch.Tensor:
        # one Stream Batch call with 2 slots: encode, ONE batched UNet pass, decode
        z = c.vae.encode(img).latents
        eps = c.unet(torch.cat([z, x[1:]]), t, encoder_hidden_states=emb).sample
        return c.vae.decode(eps[-1:]).sample

    return {
        "unet_batch2_ms": bench(lambda: c.unet(x, t, encoder_hidden_states=emb).sample),
        "vae_encode_decode_ms": bench(lambda: c.vae.decode(c.vae.encode(img).latents).sample),
        "text_encode_ms": bench(lambda: encode_prompts(c, ["a sunset in neon style"])),
        "img2img_frame_ms": bench(frame),
    }


def evaluate(
    folder: Path | str,
    *,
    seeds: int = 8,
    guidance_scales: Sequence[float] = (1.0, 2.0),
    classifier: StyleClassifier | None = None,
    speed: bool = True,
) -> dict[str, Any]:
    """All card metrics for a diffusers folder."""
    torch.set_num_threads(2)
    c = load_components(folder)
    clf = classifier or StyleClassifier.fit()
    prompts = synthetic.example_prompts()
    labels = np.arange(len(prompts))
    res: dict[str, Any] = {}

    # classifier sanity on fresh synthetic data (upper bound for the accuracies below)
    imgs, _, lab = synthetic.make_dataset(240, 20_000)
    res["classifier_acc_synthetic"] = float((clf.predict(imgs) == lab).mean())

    styles = [len(synthetic.SCENES) + i for i in range(len(synthetic.STYLES))]
    for g in guidance_scales:
        p = [pr for pr in prompts for _ in range(seeds)]
        y = np.repeat(labels, seeds)
        out = sample(c, p, t_index_list=TXT2IMG_T_INDEX, seed=1, guidance_scale=g)
        pred = clf.predict(out)
        res[f"txt2img_acc_cfg{g:g}"] = float((pred == y).mean())
        res[f"txt2img_acc_per_class_cfg{g:g}"] = {
            synthetic.LABELS[k]: float((pred[y == k] == k).mean()) for k in labels
        }

    content = heldout_content()
    style_prompts = [prompts[k] for k in styles]
    p = [pr for pr in style_prompts for _ in range(len(content))]
    inputs = np.concatenate([content] * len(style_prompts))
    y = np.repeat(styles, len(content))
    for g in guidance_scales:
        out = sample(c, p, t_index_list=IMG2IMG_T_INDEX, init_images=inputs, seed=2, guidance_scale=g)
        res[f"img2img_style_acc_cfg{g:g}"] = float((clf.predict(out, among=styles) == y).mean())
        corr = edge_correlation(inputs, out)
        # baseline: the same outputs against a different input (shifted by one content image)
        other = np.concatenate([np.roll(content, 1, axis=0)] * len(style_prompts))
        res[f"img2img_edge_corr_cfg{g:g}"] = float(corr.mean())
        res[f"img2img_edge_corr_unrelated_cfg{g:g}"] = float(edge_correlation(other, out).mean())
    # the target style filters themselves on the same inputs: the ceiling for structure preservation
    target = np.stack(
        [
            synthetic._to_uint8(synthetic.apply_style(synthetic.LABELS[k], im / 255.0))
            for k, im in zip(y, inputs, strict=True)
        ]
    )
    res["style_filter_edge_corr"] = float(edge_correlation(inputs, target).mean())

    synth, _, _ = synthetic.make_dataset(64, 30_000)
    res["vae_psnr_synthetic"] = psnr(synth, vae_roundtrip(c, synth))
    res["vae_psnr_heldout_photos"] = psnr(content[:2], vae_roundtrip(c, content[:2]))
    if speed:
        res["speed"] = measure_speed(c)
    return res


def make_grid(
    folder: Path | str, out_path: Path | str, *, seeds: int = 3, tile: int = 80, guidance_scale: float = 1.0
) -> None:
    """Rows = prompts; columns = txt2img samples, then img2img of the held-out coffee photo (shown in the first row)."""
    from PIL import Image

    c = load_components(folder)
    prompts = synthetic.example_prompts()
    txt = sample(
        c,
        [p for p in prompts for _ in range(seeds)],
        t_index_list=TXT2IMG_T_INDEX,
        seed=3,
        guidance_scale=guidance_scale,
    )
    content = heldout_content()[:2]
    i2i = sample(
        c, [p for p in prompts for _ in range(2)], t_index_list=IMG2IMG_T_INDEX,
        init_images=np.concatenate([content] * len(prompts)), seed=4, guidance_scale=guidance_scale,
    )  # fmt: skip
    cols = seeds + 2
    grid = Image.new("RGB", (cols * tile, (len(prompts) + 1) * tile), (255, 255, 255))

    def put(img: np.ndarray, r: int, col: int) -> None:
        grid.paste(
            Image.fromarray(img).resize((tile, tile), Image.Resampling.LANCZOS), (col * tile, r * tile)
        )

    for j, im in enumerate(content):
        put(im, 0, seeds + j)
    for i in range(len(prompts)):
        for j in range(seeds):
            put(txt[i * seeds + j], i + 1, j)
        for j in range(2):
            put(i2i[i * 2 + j], i + 1, seeds + j)
    grid.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(out_path, optimize=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Evaluate a tiny StreamDiffusion diffusers folder")
    parser.add_argument("folder", type=Path)
    parser.add_argument("--json", type=Path, help="write metrics here")
    parser.add_argument("--grid", type=Path, help="write an example grid PNG here")
    parser.add_argument("--seeds", type=int, default=8)
    args = parser.parse_args(argv)
    res = evaluate(args.folder, seeds=args.seeds)
    text = json.dumps(res, indent=2)
    if args.json:
        args.json.write_text(text + "\n")
    logger.info("%s", text)
    if args.grid:
        make_grid(args.folder, args.grid)
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    raise SystemExit(main())
