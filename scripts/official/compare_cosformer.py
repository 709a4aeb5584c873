"""Our ``attention.cosformer.CosformerAttention`` beside CAB's cosFormer (Shark-NLP/CAB, ``efficient-attention/
efficient_attention/modules/cosformer.py``, a copy of OpenNLPLab/cosFormer) and, optionally, the authors' own
``cosformer.py`` (OpenNLPLab/cosFormer, which also runs causal), on identical inputs.

    git clone https://github.com/Shark-NLP/CAB /tmp/CAB
    git clone https://github.com/OpenNLPLab/cosFormer /tmp/cosFormer      # optional: --official-authors
    python scripts/official/compare_cosformer.py --official /tmp/CAB [--official-authors /tmp/cosFormer]

The official modules take (L, B, E) inputs and project them; their q, k, v and output projections are set to the
identity (zero bias), so that they compute the attention of the per-head q, k, v we give ours ((B, H, L, D) ->
(L, B, H D), heads split as the official reshape does). Float64, batch 2, 4 heads, head size 16. Cases, one line
each (outputs, then gradients of sum(out^2) for q, k, v):

- ``self n=...``: non-causal self-attention; ours with ``horizon=None`` (M = n, the official M = max(L, S)).
- ``cross L=.. S=..``: non-causal cross attention at uneven lengths (M = max(L, S), queries at 1..L, keys 1..S).
- ``self n=257 float32 angles``: the same with the official angle table as it is, pi / 2 * i computed in float32
  and cast (accepted up to 1e-6); every other case builds that table in float64 (the official ``get_index`` replaced
  on the instance by the same formula in float64), so that the differences are float64 rounding.
- ``causal n=...`` (with ``--official-authors``; CAB's copy asserts non-causal): the authors' causal prefix sums,
  M = n, against ours with ``causal_horizon=n`` on the full sequence.

CAB's ``efficient_attention`` package imports its S4D module, which imports ``opt_einsum`` and ``einops``; a missing
one is stubbed while the package is imported (S4D is not run). Official denominators are max(sum, 1e-6), ours 0 for a
zero sum; no row here has 0 < sum < 1e-6.

Measured 2026-12-07 (torch 2.13 CPU, CAB 0e49696, cosFormer 8e12da1): outputs <= 3.3e-16 non-causal (self n = 50 /
257, cross 40 / 100 and 100 / 40) and <= 6.7e-16 causal, gradients <= 8.9e-16 and <= 2.5e-13 (outputs up to 3.3);
with the official float32 angle table 1.4e-8 (gradients 2.6e-8).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import math
import sys
from pathlib import Path

import torch
from _shared import CAB_CLONE, import_cab, rand, report_with_grads, require  # scripts/official/_shared.py
from torch import Tensor

from attnbench.attention.cosformer import CosformerAttention

B, H, D = 2, 4, 16
E = H * D


def identity_projections(att: torch.nn.Module, float64_angles: bool = True) -> torch.nn.Module:
    """Set q/k/v/out projections to the identity with zero bias (float64, eval). ``float64_angles``: the official
    ``get_index`` (pi / 2 * arange(1, n + 1), built in float32 and then cast) is built in float64 instead."""
    att = att.double().eval()
    with torch.no_grad():
        for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
            lin = getattr(att, name)
            lin.weight.copy_(torch.eye(E, dtype=torch.float64))
            lin.bias.zero_()
    if float64_angles:
        def get_index(seq_len: int) -> torch.nn.Parameter:
            index = math.pi / 2 * torch.arange(1, seq_len + 1, dtype=torch.float64).reshape(1, -1, 1)
            return torch.nn.Parameter(index, requires_grad=False)

        att.get_index = get_index
    return att


def to_seq(x: Tensor) -> Tensor:
    """(B, H, N, D) -> (N, B, H D): the official layout, heads split by its view(N, B H, D)."""
    return x.permute(2, 0, 1, 3).reshape(x.shape[2], x.shape[0], -1)


def from_seq(y: Tensor) -> Tensor:
    """(N, B, H D) -> (B, H, N, D)."""
    return y.view(y.shape[0], B, H, D).permute(1, 2, 0, 3)


def compare(name: str, ours: CosformerAttention, official: torch.nn.Module, L: int, S: int, causal: bool,
            seed: int, authors: bool = False) -> list[float]:
    """Outputs and input gradients of one case; prints one line each and returns the differences."""
    xs = [rand(B, H, n, D, seed=seed + i).requires_grad_() for i, n in enumerate((L, S, S))]

    def run_official(ys: list[Tensor]) -> Tensor:
        got = official(*(to_seq(y) for y in ys))  # the authors' module returns the output, CAB's (output, None)
        return from_seq(got if authors else got[0])

    return report_with_grads(name, lambda xs: ours(*xs, causal=causal), run_official, xs)[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--official", type=Path, required=True, help="a checkout of the official Shark-NLP/CAB")
    ap.add_argument("--official-authors", type=Path, default=None,
                    help="optional: a checkout of the official OpenNLPLab/cosFormer (adds the causal cases)")
    ap.add_argument("--tol", type=float, default=1e-10, help="largest accepted difference (default 1e-10)")
    args = ap.parse_args()
    require(args.official, "efficient-attention/efficient_attention/modules/cosformer.py", CAB_CLONE)
    cab = import_cab(args.official)
    diffs = []
    for i, (L, S) in enumerate(((50, 50), (257, 257), (40, 100), (100, 40))):
        official = identity_projections(cab.CosformerAttention(embed_dim=E, num_heads=H, cross=L != S))
        name = f"self n={L}" if L == S else f"cross L={L} S={S}"
        diffs += compare(name, CosformerAttention().double(), official, L, S, False, seed=10 * i)
    # unchanged official angle table (float32 pi / 2 * i): its rounding, ~1e-8 here, not the algorithm
    official = identity_projections(cab.CosformerAttention(embed_dim=E, num_heads=H), float64_angles=False)
    angles32 = compare("self n=257 float32 angles", CosformerAttention().double(), official, 257, 257, False, seed=10)
    if args.official_authors is not None:
        require(args.official_authors, "cosformer.py", "https://github.com/OpenNLPLab/cosFormer /tmp/cosFormer",
                "--official-authors")
        sys.path.insert(0, str(args.official_authors))
        authors = importlib.import_module("cosformer")
        for i, n in enumerate((50, 257)):
            official = identity_projections(authors.CosformerAttention(embed_dim=E, num_heads=H, causal=True))
            diffs += compare(f"causal n={n}", CosformerAttention(causal_horizon=n).double(), official, n, n, True,
                             seed=100 + 10 * i, authors=True)
    bad = [d for d in diffs if not d <= args.tol] + [d for d in angles32 if not d <= 1e-6]  # NaN counts as bad
    if bad:
        raise SystemExit(f"{len(bad)} of {len(diffs) + len(angles32)} comparisons differ by more than {args.tol:g} "
                         "(1e-6 with float32 angles)")


if __name__ == "__main__":
    main()
