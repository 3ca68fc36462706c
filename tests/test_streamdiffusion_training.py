"""The embedded tiny StreamDiffusion model: data generator, training recipe, and the committed weights."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from pipelines.streamdiffusion import evaluate, synthetic, train

ASSET = Path(__file__).resolve().parents[1] / "assets" / "streamdiffusion-tiny"


@pytest.fixture(scope="module")
def classifier() -> evaluate.StyleClassifier:
    return evaluate.StyleClassifier.fit(n=360, seed=123)


def _load_all(folder: Path) -> evaluate.Components:
    from diffusers import AutoencoderTiny, LCMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    return evaluate.Components(
        unet=UNet2DConditionModel.from_pretrained(folder, subfolder="unet"),
        vae=AutoencoderTiny.from_pretrained(folder, subfolder="vae"),
        text_encoder=CLIPTextModel.from_pretrained(folder, subfolder="text_encoder"),
        tokenizer=CLIPTokenizer.from_pretrained(folder, subfolder="tokenizer"),
        scheduler=LCMScheduler.from_pretrained(folder, subfolder="scheduler"),
    )


def _assert_fp16_safetensors(folder: Path) -> None:
    from safetensors import safe_open

    files = sorted(folder.glob("*/*.safetensors"))
    assert {f.parent.name for f in files} == {"unet", "vae", "text_encoder"}
    assert not list(folder.rglob("*.bin")) and not list(folder.rglob("*.pt")), (
        "weights must be safetensors only"
    )
    for f in files:
        with safe_open(f, framework="pt") as st:
            dtypes = {st.get_slice(k).get_dtype() for k in st.keys()}
        assert dtypes <= {"F16", "I64"}, (f, dtypes)


# ---------------------------------------------------------------------------------------------------------- recipe
def test_quick_recipe_writes_a_loadable_diffusers_folder(tmp_path: Path) -> None:
    metrics = train.train(tmp_path, seed=0, progress=False, **train.QUICK)
    assert metrics["unet_steps"] == train.QUICK["unet_steps"]
    assert json.loads((tmp_path / "train_metrics.json").read_text())["seed"] == 0
    index = json.loads((tmp_path / "model_index.json").read_text())
    assert index["unet"] == ["diffusers", "UNet2DConditionModel"]
    assert index["vae"] == ["diffusers", "AutoencoderTiny"]
    assert index["text_encoder"] == ["transformers", "CLIPTextModel"]
    assert index["tokenizer"] == ["transformers", "CLIPTokenizer"]
    assert index["scheduler"] == ["diffusers", "LCMScheduler"]
    _assert_fp16_safetensors(tmp_path)
    c = _load_all(tmp_path)
    assert c.unet.config.cross_attention_dim == c.text_encoder.config.hidden_size
    assert c.scheduler.config.prediction_type == "v_prediction"  # the recipe trains v-prediction
    c.scheduler.set_timesteps(50)
    assert [int(c.scheduler.timesteps[i]) for i in (32, 45)] == [359, 99]
    c.text_encoder.float()
    out = evaluate.sample(c, ["a sunset"], t_index_list=(32, 45), init_images=evaluate.heldout_content()[:1])
    assert out.shape == (1, 256, 256, 3) and out.dtype == np.uint8


def test_quick_recipe_is_deterministic(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    a = train.train(tmp_path / "a", seed=3, progress=False, **train.QUICK)
    b = train.train(tmp_path / "b", seed=3, progress=False, **train.QUICK)
    assert a["unet_final_mse"] == b["unet_final_mse"]
    wa = load_file(tmp_path / "a" / "unet" / "diffusion_pytorch_model.safetensors")
    wb = load_file(tmp_path / "b" / "unet" / "diffusion_pytorch_model.safetensors")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_cli_arguments_default_to_the_recipe() -> None:
    import argparse

    parser = argparse.ArgumentParser()
    train.add_arguments(parser)
    args = parser.parse_args([])
    assert args.vae_steps == train.DEFAULTS["vae_steps"] and args.unet_steps == train.DEFAULTS["unet_steps"]
    assert args.out == train.DEFAULT_OUT and not args.quick
    assert parser.parse_args(["--quick", "--out", "x"]).quick


# ------------------------------------------------------------------------------------------------------------ data
def test_synthetic_data_is_deterministic_and_captions_match_labels() -> None:
    a_img, a_cap, a_lab = synthetic.make_dataset(24, seed=5, size=128)
    b_img, b_cap, b_lab = synthetic.make_dataset(24, seed=5, size=128)
    assert np.array_equal(a_img, b_img) and a_cap == b_cap and np.array_equal(a_lab, b_lab)
    c_img, _, _ = synthetic.make_dataset(24, seed=6, size=128)
    assert not np.array_equal(a_img, c_img)
    assert a_img.shape == (24, 128, 128, 3) and a_img.dtype == np.uint8
    for cap, lab in zip(a_cap, a_lab, strict=True):
        assert synthetic.LABELS[lab] in cap  # the caption always names the class it is labelled with


def test_vocabulary_and_prompts() -> None:
    assert len(synthetic.SCENES) >= 6 and len(synthetic.STYLES) >= 6
    assert len(set(synthetic.LABELS)) == len(synthetic.LABELS)
    prompts = synthetic.example_prompts()
    assert len(prompts) == len(synthetic.LABELS)
    assert all(label in p for label, p in zip(synthetic.LABELS, prompts, strict=True))
    corpus = " ".join(synthetic.caption_corpus(n=100))
    assert all(label in corpus for label in synthetic.LABELS)
    assert not set(synthetic.TRAIN_PHOTOS) & set(synthetic.HELDOUT_PHOTOS)


def test_styles_are_distinguishable_by_the_classifier(classifier: evaluate.StyleClassifier) -> None:
    images, _, labels = synthetic.make_dataset(120, seed=777)
    assert (classifier.predict(images) == labels).mean() > 0.85
    # and the style filters on held-out photos are recognised among the styles
    content = evaluate.heldout_content()[:4]
    styles = [len(synthetic.SCENES) + i for i in range(len(synthetic.STYLES))]
    styled = np.stack(
        [
            synthetic._to_uint8(synthetic.apply_style(synthetic.LABELS[k], im / 255.0))
            for k in styles
            for im in content
        ]
    )
    assert (classifier.predict(styled, among=styles) == np.repeat(styles, len(content))).mean() > 0.8


def test_tokenizer_never_fails_on_arbitrary_text(tmp_path: Path) -> None:
    tok = train.build_tokenizer(synthetic.caption_corpus(n=200), tmp_path)
    for text in ["a sunset in neon style", "Zebra-crossing!! 42", "日本語 😀 \n\t", "", "x" * 1000]:
        ids = train.tokenize(tok, [text])
        assert ids.shape == (1, 32) and int(ids.max()) < len(tok)


# ------------------------------------------------------------------------------------------- the committed weights
@pytest.fixture(scope="module")
def default_model() -> evaluate.Components:
    if not (ASSET / "model_index.json").exists():
        pytest.skip("assets/streamdiffusion-tiny not present")
    return evaluate.load_components(ASSET)


def test_committed_default_files(default_model: evaluate.Components) -> None:
    _assert_fp16_safetensors(ASSET)
    total = sum(f.stat().st_size for f in ASSET.rglob("*.safetensors"))
    assert total <= 30 * 2**20
    assert (ASSET / "README.md").exists() and (ASSET / "grid.png").stat().st_size < 300 * 1024
    tok = default_model.tokenizer
    assert tok.model_max_length == default_model.text_encoder.config.max_position_embeddings
    for text in ["a sunset in neon style", "Ünïcödé 🎥 webcam, frame #3", "", "word " * 200]:
        ids = tok(text, padding="max_length", max_length=tok.model_max_length, truncation=True).input_ids
        assert len(ids) == tok.model_max_length and max(ids) < default_model.text_encoder.config.vocab_size


def test_committed_default_keeps_structure_in_img2img(default_model: evaluate.Components) -> None:
    torch.set_num_threads(2)
    prompts = synthetic.example_prompts()
    styles = [len(synthetic.SCENES) + i for i in range(len(synthetic.STYLES))]
    content = evaluate.heldout_content()[:2]
    inputs = np.concatenate([content] * len(styles))  # (style 0, content 0), (style 0, content 1), ...
    out = evaluate.sample(
        default_model, [prompts[k] for k in styles for _ in content], t_index_list=evaluate.IMG2IMG_T_INDEX,
        init_images=inputs, seed=12,
    )  # fmt: skip
    corr = evaluate.edge_correlation(inputs, out).mean()
    unrelated = evaluate.edge_correlation(inputs[::-1], out).mean()  # pairs each output with the other photo
    assert corr > 0.1 and corr > unrelated + 0.08, (corr, unrelated)


def test_committed_default_follows_prompts(
    default_model: evaluate.Components, classifier: evaluate.StyleClassifier
) -> None:
    torch.set_num_threads(2)
    prompts = synthetic.example_prompts()
    labels = np.arange(len(prompts))
    out = evaluate.sample(default_model, prompts * 2, t_index_list=evaluate.TXT2IMG_T_INDEX, seed=11)
    acc = (classifier.predict(out) == np.tile(labels, 2)).mean()
    assert acc >= 0.4, acc  # chance is 1/12
