"""Our ``attention.long_short`` beside CAB's official Transformer-LS attention (Shark-NLP/CAB,
``efficient-attention/efficient_attention/modules/transformer_ls.py``, ``AttentionLS``: NVIDIA/transformer-ls's
bidirectional attention) on identical weights and inputs.

    git clone https://github.com/Shark-NLP/CAB /tmp/CAB
    python scripts/official/compare_long_short.py --official /tmp/CAB

The official ``AttentionLS`` is a whole layer (W_q, W_k, W_v, W_o, the dynamic projection ``dconv_fc`` from the layer
input, DualLN over d_model); ours is ``MultiAxisAttention`` (``qk_norm=False``) around ``long_short`` with the
official code's options (``norm="model"``, ``compress_normed=True``). The official projections are copied into the
layer; our dynamic projection reads each head's keys k_h = x W_k,h^T + b_k,h, so the official ``dconv_fc`` is set to
the same map of x: weight w_p[h]^T W_k,h and bias b_k,h w_p[h] + b_p[h] for head h (the official code can express
every projection ours can). Its layer norms keep their init (weight 1, bias 0), which is ours (no affine). The
official ``fp32=True`` casts float64 to float32, so it runs with ``fp32=False`` here (float64 throughout).

Cases (float64, batch 2, d_model 64, 4 heads, window 15, 16 landmarks; CAB's defaults), one line each: lengths 60 (a
multiple of the window), 64 and 100 (padded by both to whole segments), each unpadded and with batch row 1 holding
only its first 2/3 tokens (``key_padding_mask``; only real positions compared: the official code zeroes the padded
queries' attention, ours computes them). Each case twice: as the official code runs (its two softmaxes in float32
whatever the input: float32 rounding) and with those softmaxes in float64 (``float64_softmaxes``; float64
rounding). Not compared: the official causal ``CausalLS``, which attends a zero memory of ``mem_len`` tokens and adds
Transformer-XL position terms that ours leaves out (see the module docstring); the causal pass is held to its dense
reference in tests/test_attn_cab_other.py. The ``efficient_attention`` package is
not imported (its ``__init__`` imports every module and their dependencies): a stub package object stands in, with
the checkout's ``abstract_attention`` and ``multihead_attention`` modules imported from it unchanged.

Measured 2026-12-07 (torch 2.13 CPU, CAB commit 0e49696): as the official code runs <= 1.5e-7, with float64 softmaxes
<= 5.6e-16, in all 6 cases (outputs up to 1.2).
"""

from __future__ import annotations

import argparse
import types
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from types import ModuleType

import torch
from _shared import cab_module, rand  # scripts/official/_shared.py

from attnbench.layers.attention import MultiAxisAttention

B, E, H, WINDOW, LANDMARKS = 2, 64, 4, 15, 16
D = E // H


@contextmanager
def float64_softmaxes(module: ModuleType) -> Iterator[None]:
    """While the official forward runs: its two softmaxes in the input's dtype. It computes them in float32 whatever
    the input (``all_attn_.float().softmax(...)``, ``F.softmax(..., dtype=torch.float32)``), its only fp32 steps with
    ``fp32=False``: ``Tensor.float`` returns the tensor unchanged and the module's ``F.softmax`` drops ``dtype``."""
    to_float, softmax = torch.Tensor.float, module.F.softmax
    torch.Tensor.float = lambda self, *a, **kw: self
    module.F = types.SimpleNamespace(**{**vars(torch.nn.functional),
                                        "softmax": lambda x, dim=None, dtype=None: softmax(x, dim=dim)})
    try:
        yield
    finally:
        torch.Tensor.float, module.F = to_float, torch.nn.functional


def pair(official_cls: type, seed: int) -> tuple[torch.nn.Module, MultiAxisAttention]:
    """The official AttentionLS and our layer with the same weights."""
    torch.manual_seed(seed)
    ours = MultiAxisAttention(E, H, 1, {"name": "long_short", "window": WINDOW, "n_landmarks": LANDMARKS,
                                        "norm": "model", "compress_normed": True}, qk_norm=False).double().eval()
    theirs = official_cls(embed_dim=E, num_heads=H, num_landmarks=LANDMARKS, window_size=WINDOW, fp32=False,
                          dropout=0.0).double().eval()
    with torch.no_grad():
        for o, t in (("q_proj", "W_q"), ("k_proj", "W_k"), ("v_proj", "W_v"), ("o_proj", "W_o")):
            getattr(theirs, t).load_state_dict(getattr(ours, o).state_dict())
        w_k = ours.k_proj.weight.view(H, D, E)  # (H, D, E): k_h = x w_k[h]^T + b_k[h]
        b_k = ours.k_proj.bias.view(H, 1, D)
        w_p, b_p = ours.attn.w_p, ours.attn.b_p  # (H, D, r), (H, r)
        theirs.dconv_fc.weight.copy_(torch.einsum("hdr,hde->hre", w_p, w_k).reshape(H * LANDMARKS, E))
        theirs.dconv_fc.bias.copy_((b_k @ w_p).view(H, LANDMARKS).add(b_p).reshape(-1))
    return theirs, ours


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--official", type=Path, required=True, help="a checkout of Shark-NLP/CAB")
    args = ap.parse_args()
    module = cab_module(args.official, "transformer_ls")
    AttentionLS = module.AttentionLS  # noqa: N806 (the official class)
    warnings.filterwarnings("ignore", message=".*make no sense in `AttentionLS`")  # printed on every official call
    for i, L in enumerate((60, 64, 100)):
        theirs, ours = pair(AttentionLS, seed=i)
        x = rand(B, L, E, seed=10 + i)
        real = torch.ones(B, L, dtype=torch.bool)
        real[1, 2 * L // 3:] = False
        with torch.no_grad():
            for mask, label in ((None, ""), (real, f" rows {L}/{2 * L // 3}")):
                b = ours(x, key_padding_mask=mask)
                keep = torch.ones(B, L, dtype=torch.bool) if mask is None else mask
                for exact in (False, True):
                    with float64_softmaxes(module) if exact else nullcontext():
                        a, _ = theirs(x, key_padding_mask=None if mask is None else ~mask, batch_first=True)
                    diff = (a - b).abs()[keep].max().item()
                    print(f"self L={L}{label}{', float64 softmaxes' if exact else ''}: max |ours - official| "
                          f"{diff:.1e} (outputs up to {a.abs().max().item():.2f})")


if __name__ == "__main__":
    main()
