"""Sequence encoder/decoder layers: causality, padding and the pre/post norm formulas."""

import pytest
import torch
import torch.nn.functional as F

from attnbench.attention.registry import CapabilityError
from attnbench.layers.seqblock import SeqDecoderLayer, SeqEncoderLayer


@pytest.mark.parametrize("norm", ["pre", "post"])
def test_encoder_layer_is_causal_and_ignores_padded_keys(norm):
    torch.manual_seed(0)
    layer = SeqEncoderLayer(16, 2, 32, {"name": "full"}, norm=norm).eval()
    x = torch.randn(2, 9, 16)
    full = layer(x, causal=True)
    assert torch.allclose(layer(x[:, :5], causal=True), full[:, :5], atol=1e-6)  # prefix <= i only
    mask = torch.ones(2, 9, dtype=torch.bool)
    mask[:, 6:] = False
    y = layer(x, key_padding_mask=mask)
    x2 = x.clone()
    x2[:, 6:] = 100.0  # padded content must not reach real tokens
    assert torch.allclose(layer(x2, key_padding_mask=mask)[:, :6], y[:, :6], atol=1e-5)
    assert torch.allclose(layer(x[:, :6])[:, :6], y[:, :6], atol=1e-5)


def test_pre_and_post_norm_formulas():
    torch.manual_seed(0)
    x = torch.randn(1, 4, 8)
    for norm in ("pre", "post"):
        layer = SeqEncoderLayer(8, 2, 16, {"name": "full"}, norm=norm).eval()
        a = layer.attn
        m = lambda h, mlp=layer.mlp: mlp.w2(F.gelu(mlp.w1(h)))  # noqa: E731
        if norm == "pre":
            h = x + a(layer.res1.ln(x))
            ref = h + m(layer.res2.ln(h))
        else:
            h = layer.res1.ln(x + a(x))
            ref = layer.res2.ln(h + m(h))
        assert torch.allclose(layer(x), ref, atol=1e-6)


def test_decoder_layer_cross_attends_and_refuses_by_capability():
    torch.manual_seed(0)
    layer = SeqDecoderLayer(16, 2, 32, {"name": "full"}, {"name": "full"}).eval()
    x, mem = torch.randn(2, 5, 16), torch.randn(2, 7, 16)
    y = layer(x, mem)
    assert y.shape == (2, 5, 16)
    assert torch.allclose(layer(x[:, :3], mem)[:, :3], y[:, :3], atol=1e-6)  # causal decoder self-attention
    assert not torch.allclose(layer(x, mem.flip(1) * 2), y, atol=1e-3)  # the memory matters
    with pytest.raises(CapabilityError, match="causal"):
        SeqDecoderLayer(16, 2, 32, {"name": "nystrom", "n_landmarks": 2}, {"name": "full"})(x, mem)
    with pytest.raises(ValueError, match="norm='mid'; allowed: pre, post"):
        SeqEncoderLayer(16, 2, 32, {"name": "full"}, norm="mid")
