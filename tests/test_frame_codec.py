"""The frame codec's inference path: each nearest-x2 upsampling and the 3x3 conv after it run fused."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from streamrt.video.codec import CodecConfig, FrameCodec, upsample2x_conv3x3


@pytest.mark.parametrize("shape", [(2, 5, 4, 4), (1, 3, 7, 5)])
def test_fused_upsample_conv_equals_upsample_then_conv(shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(shape[1], 6, 3, padding=1)
    x = torch.randn(shape)
    ref = conv(F.interpolate(x, scale_factor=2, mode="nearest"))
    out = upsample2x_conv3x3(x, conv)
    assert out.shape == ref.shape
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_fused_path_rejects_other_convs() -> None:
    with pytest.raises(ValueError, match="3x3 conv with padding 1"):
        upsample2x_conv3x3(torch.zeros(1, 2, 4, 4), nn.Conv2d(2, 2, 3, padding=0))


def test_inference_decode_equals_the_sequential_decoder() -> None:
    torch.manual_seed(0)
    codec = FrameCodec(CodecConfig(width=8, levels=3, latent_scale=0.7)).eval()
    z = torch.randn(3, 4, 6, 5)
    with torch.no_grad():
        fast = codec.decode_unclamped(z)
        plain = codec.decoder(z * codec.cfg.latent_scale)
    torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-5)
    # with gradients (training) the decoder runs as built, so its backward is the plain one
    assert torch.equal(codec.decode_unclamped(z).detach(), plain)
