"""Our ``attention.synthesizer`` beside 10-zin/Synthesizer (a widely used PyTorch Synthesizer; the authors' own code
is JAX, in google-research/long-range-arena) on identical weights and inputs.

    git clone https://github.com/10-zin/Synthesizer /tmp/Synthesizer
    python scripts/official/compare_synthesizer.py --official /tmp/Synthesizer

Cases (float64, batch 2, 3 heads, head size 8, value size 5, max_seq_len 40), one line each: the official
``DenseAttention`` and ``RandomAttention`` (``synth/synthesizer/modules.py``, attn_dropout 0) against our
``synthesizer`` entry with ``variant`` dense / random, at lengths 40 (= max_seq_len) and 23 (the first 23 weights of
each row), each with no mask, a key padding mask (the official (B, 1, 1, S) mask, padded keys filled with -1e9) and
a causal mask (the official (B, 1, L, L) lower triangle). No row has every key masked (there ours gives zeros, the
official code a uniform softmax over -1e9 logits); the official code is self-attention only (it cuts the key axis
at the query length).

Same weights: the official ``DenseAttention`` is one MLP (w_1: d_k -> d_hid, w_2: d_hid -> max_seq_len) shared by
the heads, built here with d_hid = head size; ours holds one per head, and every head gets the official weights
(transposed: ours computes q W). The official ``RandomAttention`` draws a (batch_size, n_head, max_seq_len,
max_seq_len) ``torch.randn`` tensor: one matrix per batch slot and head, a plain tensor (not a registered parameter,
so never trained or saved); ours holds one per head, copied from batch slot 0, and slot 1 gets the same copy.

The official package's ``__init__`` imports modules by capitalised names that are not in the repository
(``synthesizer.Constants``, ...), so ``modules.py`` is loaded from its file; it needs torch only. No other change.

Measured 2026-12-08 (torch 2.13 CPU, official commit 1414f45): dense ≤ 3.3e-16, random 0 (bit-identical) in all 12 cases
(outputs up to about 2.8).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import torch
from _shared import check, parser, rand, report, require  # scripts/official/_shared.py
from torch import Tensor

from attnbench.attention import build

B, H, D, DV, M = 2, 3, 8, 5, 40
MASKS = ("none", "padding", "causal")


def load_official(checkout: Path) -> ModuleType:
    """``synth/synthesizer/modules.py`` as a module of its own (the package ``__init__`` cannot import)."""
    spec = importlib.util.spec_from_file_location("official_synthesizer_modules",
                                                  checkout / "synth" / "synthesizer" / "modules.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def masks(kind: str, L: int) -> tuple[Tensor | None, bool, Tensor]:
    """Ours (key_padding_mask, causal) and the official mask (0 = masked)."""
    if kind == "none":
        return None, False, torch.ones(B, 1, 1, L)
    if kind == "padding":
        real = torch.ones(B, L, dtype=torch.bool)
        real[0, 2 * L // 3:], real[1, :3] = False, False  # row 0: its last third, row 1: its first 3 keys
        return real, False, real[:, None, None, :].double()
    return None, True, torch.ones(L, L).tril().expand(B, 1, L, L)


def compare(official: ModuleType, variant: str, L: int, kind: str, seed: int) -> float:
    """Print and return the largest difference of one case."""
    q, k, v = rand(B, H, L, D, seed=seed), rand(B, H, L, D, seed=seed + 1), rand(B, H, L, DV, seed=seed + 2)
    torch.manual_seed(seed)
    ours = build("synthesizer", {"head_dim": D, "n_heads": H, "max_len": M}, variant=variant).double().eval()
    if variant == "dense":
        theirs = official.DenseAttention(M, D, d_hid=D, attn_dropout=0.0).double().eval()
        with torch.no_grad():  # one official MLP, given to every head of ours (ours: q W + b)
            ours.w1.copy_(theirs.w_1.weight.T.expand(H, D, D))
            ours.b1.copy_(theirs.w_1.bias.expand(H, 1, D))
            ours.w2.copy_(theirs.w_2.weight.T.expand(H, D, M))
            ours.b2.copy_(theirs.w_2.bias.expand(H, 1, M))
    else:
        theirs = official.RandomAttention(B, H, M, attn_dropout=0.0).eval()
        with torch.no_grad():
            theirs.random_attn = theirs.random_attn[:1].expand(B, H, M, M).double()  # slot 0 for every slot
            ours.R.copy_(theirs.random_attn[0])
    kpm, causal, mask = masks(kind, L)
    with torch.no_grad():
        got = ours(q, k, v, key_padding_mask=kpm, causal=causal)  # (B, H, L, Dv)
        want = theirs(q, v, L, mask=mask)[0] if variant == "dense" else theirs(v, L, mask=mask)[0]
    return report(f"{variant} L={L} mask={kind}", got, want)


def main() -> None:
    args = parser(__doc__, "a checkout of the official 10-zin/Synthesizer", 1e-12).parse_args()
    require(args.official, "synth/synthesizer/modules.py", "https://github.com/10-zin/Synthesizer /tmp/Synthesizer")
    official = load_official(args.official)
    diffs = [compare(official, variant, L, kind, seed=100 * i + 10 * j + m)
             for i, variant in enumerate(("dense", "random")) for j, L in enumerate((M, 23))
             for m, kind in enumerate(MASKS)]
    check(diffs, args.tol)  # NaN and inf count as bad


if __name__ == "__main__":
    main()
