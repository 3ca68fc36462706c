"""LCM-LoRA: a LoRA file given with --checkpoint is fused into the UNet (read from safetensors only)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from tiny_sd import make_tiny_sd

from pipelines.streamdiffusion.components import load_components
from streamrt.errors import ModelLoadError


def test_lora_is_fused_into_the_unet(tmp_path: Path) -> None:
    from diffusers import UNet2DConditionModel
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    model = make_tiny_sd(tmp_path / "model")
    unet = UNet2DConditionModel.from_pretrained(str(model), subfolder="unet")
    unet.add_adapter(LoraConfig(r=2, lora_alpha=2, target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    torch.manual_seed(0)
    for name, p in unet.named_parameters():
        if "lora_B" in name:
            p.data.normal_(0, 0.5)  # peft starts B at zero: make the adapter do something
    lora = {f"unet.{k}": v.contiguous() for k, v in get_peft_model_state_dict(unet).items()}
    save_file(lora, str(tmp_path / "lcm_lora.safetensors"))

    x, t = torch.randn(1, 4, 8, 8), torch.tensor([500])
    emb = torch.randn(1, 16, 16)
    with torch.no_grad():
        want = unet(x, t, encoder_hidden_states=emb).sample
        base = load_components(model).unet(x, t, encoder_hidden_states=emb).sample
        fused = (
            load_components(model, lcm_lora=tmp_path / "lcm_lora.safetensors")
            .unet(x, t, encoder_hidden_states=emb)
            .sample
        )
    assert not torch.allclose(base, want, atol=1e-4), "the adapter must matter for this test to mean anything"
    torch.testing.assert_close(fused, want, rtol=1e-4, atol=1e-4)


def test_lora_must_be_safetensors(tmp_path: Path) -> None:
    model = make_tiny_sd(tmp_path / "model")
    (tmp_path / "lora.bin").write_bytes(b"not a pickle you should load")
    with pytest.raises(ModelLoadError, match="safetensors"):
        load_components(model, lcm_lora=tmp_path / "lora.bin")
