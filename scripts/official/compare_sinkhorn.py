"""Our ``attention.sinkhorn`` beside lucidrains/sinkhorn-transformer (the widely used PyTorch Sinkhorn Transformer;
the authors' own code is JAX, in google-research/long-range-arena) on identical inputs, for the parts meant to agree.

    git clone https://github.com/lucidrains/sinkhorn-transformer /tmp/sinkhorn-transformer
    python scripts/official/compare_sinkhorn.py --official /tmp/sinkhorn-transformer

Cases (float64), one line each:

- ``sinkhorn n=.. iters=..``: the official ``sinkhorn_sorting_operator(r, n_iters)`` (log-domain row then column
  normalisation, then exp) against our ``sinkhorn_normalize`` on the same (B*H, n, n) logits.
- ``gumbel_sinkhorn n=..``: the official ``gumbel_sinkhorn(r, n_iters, temperature)``, which takes log(r + 1e-6) of
  a non-negative r, adds Gumbel noise and divides by the temperature, against our ``sort_matrix`` given the same
  log(r + 1e-6) as logits and the official noise draw (recorded from its ``sample_gumbel``).
- ``attention L=.. b=..``: the official non-causal ``SinkhornAttention`` (``non_permutative=False``, no SortCut,
  dropout 0) with its sort net's output replaced by our soft permutation P (our SortNet and Sinkhorn on the same
  keys), against our ``sorted_block_attention(..., combine="concat")``: one softmax over the sorted and the local
  block, as the official code does. Values are the keys here (see below).

What is not compared, because the two differ by design or by a bug: the official sort nets (``AttentionSortNet``:
relu of the block-mean query/key products; ``SimpleSortNet``: one linear layer on concatenated block sums) against
ours (the paper's two-layer ReLU SortNet on the key block sums); the official default ``non_permutative=True``
(a differentiable top-k, not Sinkhorn); the official noise, drawn in eval mode too (ours: training only, with
``gumbel_noise``); the official causal attention (a masked top-k over past buckets, not causal Sinkhorn balancing;
ours is not causal); the paper's / LRA code's sum of two attentions (our default ``combine="sum"``). And the official
non-SortCut path sorts the keys into the values (``b_v_r = b_k_r.reshape(...)``): with values other than the keys
its output is attention over sorted keys as values, printed as a last, informational line (not a comparison).

Third-party imports of the official package that the compared code never uses (``local_attention``,
``axial_positional_embedding``, ``product_key_memory``) are stubbed when they are not installed. No other change.

Measured 2026-12-08 (torch 2.13 CPU, official commit 531bdbe): Sinkhorn 0 (bit-identical) in 4 cases,
Gumbel-Sinkhorn 0 in 2, attention 1.1e-15 / 2.7e-15 (outputs up to 2.6); with values other than the keys the
outputs differ by 0.41, all of it the official b_v_r = b_k_r (ours with the sorted keys as sorted values gives the
official output to 3e-16, checked by hand).
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import sys
import types
from pathlib import Path

import torch
from _shared import rand  # scripts/official/_shared.py
from torch import Tensor

from attnbench.attention import build
from attnbench.attention.sinkhorn import sinkhorn_normalize, sort_logits, sort_matrix, sorted_block_attention

B, H, D = 2, 2, 8
STUBS = {"local_attention": ["LocalAttention"], "axial_positional_embedding": ["AxialPositionalEmbedding"],
         "product_key_memory": ["PKM"]}


def load_official(checkout: Path) -> types.ModuleType:
    """``sinkhorn_transformer.sinkhorn_transformer`` from the checkout; its unused third-party imports stubbed."""
    for mod, names in STUBS.items():
        if importlib.util.find_spec(mod) is None:
            stub = types.ModuleType(mod)
            for n in names:
                setattr(stub, n, type(n, (torch.nn.Module,), {}))  # never instantiated by the compared code
            sys.modules[mod] = stub
    sys.path.insert(0, str(checkout))
    import sinkhorn_transformer.sinkhorn_transformer as official

    return official


def report(name: str, got: Tensor, want: Tensor) -> float:
    diff = (got - want).abs().max().item()
    print(f"{name}: max |ours - official| {diff:.1e} (values up to {want.abs().max().item():.2f})")
    return diff


def compare_sinkhorn(official: types.ModuleType, n: int, iters: int, seed: int) -> float:
    r = rand(B * H, n, n, seed=seed) * 2
    return report(f"sinkhorn n={n} iters={iters}", sinkhorn_normalize(r, iters),
                  official.sinkhorn_sorting_operator(r.clone(), iters))


def compare_gumbel(official: types.ModuleType, n: int, seed: int, iters: int = 7, temperature: float = 0.75) -> float:
    r = rand(B * H, n, n, seed=seed).relu()  # the official sort nets give relu'd scores
    draws = []
    sample = official.sample_gumbel

    def recorded(*args, **kwargs) -> Tensor:
        draws.append(sample(*args, **kwargs))
        return draws[-1]

    official.sample_gumbel = recorded  # looked up by gumbel_sinkhorn at call time
    try:
        torch.manual_seed(seed)
        want = official.gumbel_sinkhorn(r.clone(), iters, temperature)
    finally:
        official.sample_gumbel = sample
    got = sort_matrix(torch.log(r + 1e-6), "sinkhorn", iters, temperature, noise=draws[0])
    return report(f"gumbel_sinkhorn n={n} iters={iters} temperature={temperature}", got, want)


def our_permutation(q: Tensor, k: Tensor, b: int, seed: int) -> Tensor:
    """Our SortNet and Sinkhorn (a built ``sinkhorn`` entry's weights) on the key block sums -> P (B, H, N_B, N_B)."""
    torch.manual_seed(seed)
    m = build("sinkhorn", {"head_dim": D, "max_len": q.shape[2]}, block_size=b).double()
    pooled = k.unflatten(2, (-1, b)).sum(dim=3)  # (B, H, N_B, D)
    R = sort_logits(pooled, m.sort_hidden.weight, m.sort_hidden.bias, m.sort_out.weight, m.sort_out.bias)
    return sort_matrix(R, "sinkhorn", m.sinkhorn_iters, m.temperature).detach()


def official_attention(official: types.ModuleType, q: Tensor, k: Tensor, v: Tensor, P: Tensor, b: int) -> Tensor:
    """The official non-causal SinkhornAttention on (B, H, L, D) inputs with its sort net answering P."""
    L = q.shape[2]
    att = official.SinkhornAttention(b, H * D, D, H, L, non_permutative=False, dropout=0.0).double().eval()
    att.sort_net.forward = lambda q_, k_, topk=1: P.flatten(0, 1)  # (B*H, N_B, N_B), as its sort net returns
    with torch.no_grad():
        return att(q, k, v)


def compare_attention(official: types.ModuleType, L: int, b: int, seed: int) -> float:
    q, k = rand(B, H, L, D, seed=seed), rand(B, H, L, D, seed=seed + 1)
    P = our_permutation(q, k, b, seed)
    got = sorted_block_attention(q, k, k, P, b, combine="concat")
    return report(f"attention L={L} b={b} (values = keys)", got, official_attention(official, q, k, k, P, b))


def show_value_bug(official: types.ModuleType, L: int = 64, b: int = 16, seed: int = 7) -> None:
    q, k, v = rand(B, H, L, D, seed=seed), rand(B, H, L, D, seed=seed + 1), rand(B, H, L, D, seed=seed + 2)
    P = our_permutation(q, k, b, seed)
    gap = (sorted_block_attention(q, k, v, P, b, combine="concat")
           - official_attention(official, q, k, v, P, b)).abs().max().item()
    print(f"informational, values != keys: ours and the official output differ by {gap:.2f} (its b_v_r = b_k_r "
          "attends to sorted keys in place of sorted values)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--official", type=Path, required=True, help="a checkout of lucidrains/sinkhorn-transformer")
    ap.add_argument("--tol", type=float, default=1e-12, help="largest accepted difference (default 1e-12)")
    args = ap.parse_args()
    if not (args.official / "sinkhorn_transformer" / "sinkhorn_transformer.py").is_file():
        raise SystemExit(f"--official {args.official}: no sinkhorn_transformer/sinkhorn_transformer.py; get it with "
                         "git clone https://github.com/lucidrains/sinkhorn-transformer /tmp/sinkhorn-transformer")
    official = load_official(args.official)
    diffs = [compare_sinkhorn(official, n, iters, seed=10 * i)
             for i, (n, iters) in enumerate(((4, 1), (4, 7), (16, 7), (16, 20)))]
    diffs += [compare_gumbel(official, n, seed=100 + n) for n in (4, 16)]
    diffs += [compare_attention(official, L, b, seed=200 + L) for L, b in ((64, 16), (256, 32))]
    show_value_bug(official)
    bad = [d for d in diffs if not d <= args.tol]  # NaN counts as bad
    if bad or not all(math.isfinite(d) for d in diffs):
        raise SystemExit(f"{len(bad)} of {len(diffs)} comparisons differ by more than {args.tol:g}")


if __name__ == "__main__":
    main()
