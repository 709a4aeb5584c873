"""Our ``attention.abc.ABCAttention`` beside CAB's ABC (Shark-NLP/CAB, ``efficient-attention/efficient_attention/
modules/abc.py``) on identical inputs and control weights.

    git clone https://github.com/Shark-NLP/CAB /tmp/CAB
    python scripts/official/compare_abc.py --official /tmp/CAB

The official attention core is called directly (``ABC._apply_attention`` on the per-head q, k, v, heads flattened
into its batch axis; its q/k/v/out projections are not run). Its control matrices ``compress_k`` and
``compress_v`` (head size x slots) are copied into ours, built with ``control="separate"`` (the official code's two
controls, from the keys and from the values). Float64, batch 2, 4 heads, head size 16, 16 slots (CAB's default).
Cases, one line each (outputs, then gradients of sum(out^2) for q, k, v and the two control matrices):

- ``self n=...``: non-causal self-attention (CAB's NS), n = 50 and 300; ``padded``: batch row 1 with its last 40 %
  padded (official mask: True = pad; ours True = keep; garbage in the padded keys and values of both).
- ``cross L=.. S=..``: non-causal cross attention (NC); ``causal cross``: the official ``cross=True, causal=True``
  (CC), which keeps the memory fully visible, against ours non-causal (the layer does the same for CC).
- ``causal n=... form=cab``: the official causal self branch (CS) against ours with ``causal_form="cab"``. That
  branch keeps only token t in the memory of step t (no sum over i <= t), unlike the paper's prefix memory
  (``causal_form="paper"``, our default); the difference between the two is printed on a line of its own.

CAB's ``efficient_attention`` package imports its S4D module, which imports ``opt_einsum`` and ``einops``; a missing
one is stubbed while the package is imported (S4D is not run).

Measured 2026-12-07 (torch 2.13 CPU, CAB 0e49696): 0 (bit-identical) in the 7 non-causal cases, outputs and
gradients; CAB's causal branch against causal_form="cab" <= 8.9e-16 (gradients <= 3.4e-15); the paper's causal memory
differs from that branch by 1.58 / 1.64 (n = 50 / 300, outputs up to 2.9).
"""

from __future__ import annotations

from types import ModuleType

import torch
from _shared import cab_args, check, rand, report_with_grads  # scripts/official/_shared.py
from torch import Tensor

from attnbench.attention.abc import ABCAttention

B, H, D, C = 2, 4, 16, 16
E = H * D


def pair(cab: ModuleType, causal: bool, cross: bool, form: str, seed: int) -> tuple[ABCAttention, torch.nn.Module]:
    """The official module (float64, eval; its own xavier init, seeded) and ours with its control matrices."""
    torch.manual_seed(seed)
    official = cab.ABC(embed_dim=E, num_heads=H, num_landmarks=C, causal=causal, cross=cross).double().eval()
    ours = ABCAttention(D, n_landmarks=C, control="separate", causal_form=form).double().eval()
    with torch.no_grad():
        ours.compress_k.copy_(official.compress_k)
        ours.compress_v.copy_(official.compress_v)
    return ours, official


def compare(name: str, cab: ModuleType, L: int, S: int, causal: bool, cross: bool, padded: bool, form: str,
            seed: int) -> list[float]:
    """Outputs and gradients of one case; prints one line each and returns the differences."""
    ours, official = pair(cab, causal, cross, form, seed)
    xs = [rand(B, H, n, D, seed=seed + i) for i, n in enumerate((L, S, S))]
    keep = None
    if padded:
        keep = torch.ones(B, S, dtype=torch.bool)
        keep[1, S - 2 * S // 5:] = False
        xs[1:] = [x.masked_fill(~keep[:, None, :, None], 30.0) for x in xs[1:]]  # garbage in the padded keys
    xs = [x.requires_grad_() for x in xs]
    pad = None if keep is None else ~keep  # official: True = padding

    def official_core(ys: list[Tensor]) -> Tensor:
        want, _ = official._apply_attention(*(y.flatten(0, 1) for y in ys), B, key_padding_mask=pad)  # (B*H, L, D)
        return want.view(B, H, -1, D)

    diffs, want = report_with_grads(name, lambda xs: ours(*xs, key_padding_mask=keep, causal=causal and not cross),
                                    official_core, xs, ("q", "k", "v", "compress_k", "compress_v"),
                                    (ours.compress_k, ours.compress_v), (official.compress_k, official.compress_v))
    if causal and not cross:  # the paper's causal memory against the official branch: how far apart they are
        paper = ABCAttention(D, n_landmarks=C, control="separate").double()
        paper.load_state_dict(ours.state_dict())
        with torch.no_grad():
            gap = (paper(*xs, causal=True) - want).abs().max().item()
        print(f"{name}: causal_form='paper' differs from the official causal branch by {gap:.2f}")
    return diffs


def main() -> None:
    args, cab = cab_args(__doc__, "abc")
    diffs = []
    for i, n in enumerate((50, 300)):
        diffs += compare(f"self n={n}", cab, n, n, False, False, False, "paper", seed=10 * i)
        diffs += compare(f"self n={n} padded", cab, n, n, False, False, True, "paper", seed=10 * i + 5)
    diffs += compare("cross L=30 S=70", cab, 30, 70, False, True, False, "paper", seed=50)
    diffs += compare("cross L=70 S=30 padded", cab, 70, 30, False, True, True, "paper", seed=60)
    diffs += compare("causal cross L=30 S=70", cab, 30, 70, True, True, False, "paper", seed=70)
    for i, n in enumerate((50, 300)):
        diffs += compare(f"causal n={n} form=cab", cab, n, n, True, False, False, "cab", seed=100 + 10 * i)
    check(diffs, args.tol)


if __name__ == "__main__":
    main()
