"""Our ``attention.lara.LaraAttention`` beside CAB's LARA (Shark-NLP/CAB, ``efficient-attention/efficient_attention/
modules/lara.py``: ``Lara`` and its ``LinearRA``) on identical inputs and random draws.

    git clone https://github.com/Shark-NLP/CAB /tmp/CAB
    python scripts/official/compare_lara.py --official /tmp/CAB

The official attention core is called directly (``Lara._apply_attention`` on the per-head q, k, v, heads flattened
into its batch axis; its q/k/v/out projections are not run). Float64, batch 2, 4 heads, head size 16, 16 proposals
(CAB's default). Cases, one line each (outputs, then gradients of sum(out^2) for q, k, v):

- ``eval n=...``: evaluation, w = mu (deterministic), at n = 64 (a multiple of 16), 50 and 203 (segments of n // 16
  and n // 16 + 1 tokens) and 10 (fewer tokens than proposals: each token is its own).
- ``train n=... noise=cab``: training, one sample per proposal; the official ``torch.randn_like`` draw is replaced by
  a seeded eps while its forward runs, and ours gets the same eps with ``noise="cab"`` (w = mu + eps in the space of
  q, k: the code's draw).
- ``train n=... noise=unit``: ours with ``noise="unit"`` (w' = mu' + eps in the x' = x D^-1/4 space, the proposals
  N(mu', I) that the importance ratios assume) against the official code fed D^1/4 eps: the same sample, so the
  two settings differ only in the scale of the noise.

No padding: the official code averages padded tokens into its segment means and leaves them in the keys' log-sum of
its importance ratios, so padded keys change its outputs (ours leave them out; tests/test_attn_cab_linear.py).
CAB's ``efficient_attention`` package imports its S4D module, which imports ``opt_einsum`` and ``einops``; a missing
one is stubbed while the package is imported (S4D is not run).

Measured 2026-12-07 (torch 2.13 CPU, CAB 0e49696): outputs <= 1.6e-15 in all 8 cases (evaluation at 64 / 50 / 203 /
10 tokens, training with either noise at 64 and 203), gradients <= 4.6e-14 (outputs up to 2.7).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

import torch
from _shared import cab_args, check, rand, report_with_grads  # scripts/official/_shared.py
from torch import Tensor

from attnbench.attention.lara import LaraAttention

B, H, D, C = 2, 4, 16, 16
E = H * D


@contextmanager
def drawing(eps: Tensor | None) -> Iterator[None]:
    """While a forward runs, ``torch.randn_like`` returns ``eps`` (the one draw per call of either module: the noise
    of the proposals' samples)."""
    randn_like = torch.randn_like
    if eps is not None:
        torch.randn_like = lambda x, *a, **kw: eps.to(x.dtype).view_as(x)
    try:
        yield
    finally:
        torch.randn_like = randn_like


def compare(name: str, cab: ModuleType, n: int, train: bool, noise: str, seed: int) -> list[float]:
    """Outputs and input gradients of one case; prints one line each and returns the differences."""
    xs = [rand(B, H, n, D, seed=seed + i).requires_grad_() for i in range(3)]
    C_eff = min(C, n)
    eps = rand(B, H, C_eff, D, seed=seed + 3) if train else None
    ours = LaraAttention(n_landmarks=C, noise=noise).double().train(train)

    def run_ours(xs: list[Tensor]) -> Tensor:
        with drawing(eps):  # our module's draw (torch.randn_like of the proposal means): the same eps
            return ours(*xs)

    def run_official(ys: list[Tensor]) -> Tensor:
        official = cab.Lara(embed_dim=E, num_heads=H, num_landmarks=C).double().train(train)
        scale = D ** 0.25 if noise == "unit" else 1.0  # the same sample w: eps in x' space is D^1/4 eps in x space
        with drawing(None if eps is None else (eps * scale).flatten(0, 1)):
            want, _ = official._apply_attention(*(y.flatten(0, 1) for y in ys), B)  # (B*H, n, D)
        return want.view(B, H, n, D)

    return report_with_grads(name, run_ours, run_official, xs)[0]


def main() -> None:
    args, cab = cab_args(__doc__, "lara")
    diffs = []
    for i, n in enumerate((64, 50, 203, 10)):
        diffs += compare(f"eval n={n}", cab, n, False, "unit", seed=10 * i)
    for i, n in enumerate((64, 203)):
        for noise in ("cab", "unit"):
            diffs += compare(f"train n={n} noise={noise}", cab, n, True, noise, seed=100 + 10 * i)
    check(diffs, args.tol)


if __name__ == "__main__":
    main()
