"""Our ``attention.probsparse`` beside Informer2020's official ``ProbAttention`` (zhouhaoyi/Informer2020,
``models/attn.py``; CAB's ``probsparse.py`` is a copy of it) on identical inputs, weights and key samples.

    git clone https://github.com/zhouhaoyi/Informer2020 /tmp/Informer2020
    python scripts/official/compare_probsparse.py --official /tmp/Informer2020

Cases (float64, batch 2, 4 heads, head size 16, factor 5), one line each:

- ``self L=..``: noncausal self-attention (``ProbAttention(mask_flag=False)``) against our ``ProbSparseAttention``
  in training mode: both draw the key sample from torch's global generator, seeded alike before each call
  (``torch.randint(L_K, (L_Q, U))``), so the very same sample is used (ours sorts each row, which changes nothing).
- ``cross L=.. S=..``: uneven query / key lengths, the same way.
- ``causal L=..``: Informer2020's masked variant (``mask_flag=True``, its decoder self-attention: the lazy queries
  get cumsum(V)) against :func:`probsparse_attention` with ``causal=True`` on the sample the official call drew.
  The registry entry refuses causal=True (the active queries are ranked over the whole sequence; see the module).
- ``layer L=..``: the official ``AttentionLayer`` (projections, ``mix=False``) around ``ProbAttention`` against our
  ``MultiAxisAttention`` (``qk_norm=False``) around ``probsparse`` with the official weights copied.

Only torch and numpy are needed (the official ``utils.masking`` imports torch alone); dropout 0 (the official module
builds a dropout it never applies).

Measured 2026-12-07 (torch 2.13 CPU, Informer2020 commit 29f2a73): 0 (bit-identical) in all 7 cases (outputs up to
1.6; the causal variant's cumulative sums up to 26).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from _shared import rand  # scripts/official/_shared.py
from torch import Tensor

from attnbench.attention.probsparse import ProbSparseAttention, n_active, probsparse_attention
from attnbench.layers.attention import MultiAxisAttention

B, H, D, FACTOR = 2, 4, 16, 5


def heads_last(x: Tensor) -> Tensor:
    """(B, H, L, D) -> (B, L, H, D), the official layout."""
    return x.transpose(1, 2)


def report(case: str, ours: Tensor, theirs: Tensor) -> None:
    print(f"{case}: max |ours - official| {(ours - theirs).abs().max().item():.1e} "
          f"(outputs up to {theirs.abs().max().item():.2f})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--official", type=Path, required=True, help="a checkout of zhouhaoyi/Informer2020")
    args = ap.parse_args()
    sys.path.insert(0, str(args.official))
    from models.attn import AttentionLayer, ProbAttention  # the official modules

    ours = ProbSparseAttention(factor=FACTOR).train()  # training mode: the sample from torch's global generator
    for case, L, S, seed in (("self L=96", 96, 96, 1), ("self L=720", 720, 720, 2), ("cross L=48 S=96", 48, 96, 3),
                             ("cross L=96 S=36", 96, 36, 4)):
        q, k, v = rand(B, H, L, D, seed=seed), rand(B, H, S, D, seed=seed + 10), rand(B, H, S, D, seed=seed + 20)
        official = ProbAttention(mask_flag=False, factor=FACTOR, attention_dropout=0.0)
        torch.manual_seed(seed)
        theirs, _ = official(heads_last(q), heads_last(k), heads_last(v), None)  # (B, L, H, D)
        torch.manual_seed(seed)
        report(case, heads_last(ours(q, k, v)), theirs)

    L = 96
    q, k, v = rand(B, H, L, D, seed=5), rand(B, H, L, D, seed=6), rand(B, H, L, D, seed=7)
    drawn: list[Tensor] = []
    randint = torch.randint

    def recording_randint(*a, **kw) -> Tensor:  # the official draw, kept to hand it to ours
        drawn.append(randint(*a, **kw))
        return drawn[-1]

    torch.randint = recording_randint
    try:
        theirs, _ = ProbAttention(mask_flag=True, factor=FACTOR, attention_dropout=0.0)(
            heads_last(q), heads_last(k), heads_last(v), None)
    finally:
        torch.randint = randint
    mine = probsparse_attention(q, k, v, drawn[0], n_active(L, FACTOR), causal=True)
    report(f"causal L={L}", heads_last(mine), theirs)

    E = H * D
    for L, seed in ((96, 8), (200, 9)):
        torch.manual_seed(0)
        official = AttentionLayer(ProbAttention(mask_flag=False, factor=FACTOR, attention_dropout=0.0), E, H,
                                  mix=False).double()
        layer = MultiAxisAttention(E, H, 1, {"name": "probsparse", "factor": FACTOR}, qk_norm=False).double()
        for o, t in (("q_proj", "query_projection"), ("k_proj", "key_projection"), ("v_proj", "value_projection"),
                     ("o_proj", "out_projection")):
            getattr(layer, o).load_state_dict(getattr(official, t).state_dict())
        x = rand(B, L, E, seed=seed)
        with torch.no_grad():
            torch.manual_seed(seed)
            theirs, _ = official(x, x, x, None)
            torch.manual_seed(seed)
            report(f"layer L={L}", layer(x), theirs)


if __name__ == "__main__":
    main()
