"""Every registry entry on CUDA (``gpu``; skipped without a device): the same weights and inputs give the CPU's
values within float tolerance, the contract's masks hold there too, and under bf16 autocast the output stays
finite and close to float32 (entries declared ``fp32`` compute in float32 inside and come back in v's dtype).

    pytest -m gpu tests/test_attention_cuda.py      # on a machine with a GPU: every entry, one command
"""

from __future__ import annotations

import copy

import pytest
import torch

from attnbench import attention
from tests.test_attention_contract import NAMES, make, padding_mask, qkv

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def _both(name: str, device: str, **call) -> tuple[torch.Tensor, torch.Tensor]:
    """(CPU output, ``device`` output) of entry ``name`` on the same weights and inputs, and the padding mask the
    entry takes (keys of batch element 0 partly padded, element 1 wholly)."""
    att = make(name)
    moved = copy.deepcopy(att).to(device)
    q, k, v = qkv(name)
    caps = attention.get(name).caps
    if caps.key_padding_mask and not caps.tensor:
        call["key_padding_mask"] = padding_mask()
    on_dev = {k_: (t.to(device) if isinstance(t, torch.Tensor) else t) for k_, t in call.items()}
    torch.manual_seed(0)
    ref = att(q, k, v, **call)
    torch.manual_seed(0)
    out = moved(q.to(device), k.to(device), v.to(device), **on_dev)
    return ref, out


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("causal", [False, True])
def test_cuda_equals_cpu(name, causal):
    if causal and not attention.get(name).caps.causal:
        pytest.skip("not causal")
    ref, out = _both(name, "cuda", causal=causal)
    assert out.device.type == "cuda" and out.dtype == torch.float32
    assert torch.isfinite(out).all()
    # TF32 matmuls are off by default for float32 in torch; reductions in another order stay within 1e-4
    torch.testing.assert_close(out.cpu(), ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", NAMES)
def test_padded_keys_change_nothing_on_cuda(name):
    caps = attention.get(name).caps
    if caps.tensor or not caps.key_padding_mask:
        pytest.skip("no sequence key padding")
    att = make(name).cuda()
    q, k, v = (t.cuda() for t in qkv(name))
    mask = padding_mask().cuda()
    mask[1] = True  # element 1 real everywhere; element 0: its last third padded
    k2, v2 = k.clone(), v.clone()
    k2[0, :, ~mask[0]] = 100.0  # what the padded keys hold must not matter
    v2[0, :, ~mask[0]] = -100.0
    a = att(q, k, v, key_padding_mask=mask)
    b = att(q, k2, v2, key_padding_mask=mask)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_bf16_autocast_is_finite_and_close(name):
    att = make(name).cuda()
    q, k, v = (t.cuda() for t in qkv(name))
    ref = att(q, k, v)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = att(q, k, v)
    assert torch.isfinite(out).all()
    if attention.get(name).caps.fp32:
        assert out.dtype == v.dtype  # computed in float32 inside, returned in v's dtype
    # bf16 keeps 8 bits of mantissa: relative error ~1e-2 on outputs of order 1
    torch.testing.assert_close(out.float(), ref, rtol=5e-2, atol=5e-2)
