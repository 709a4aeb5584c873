"""Our ``attention.sparse_transformer`` beside the Sparse Transformer patterns of Long Range Arena's official code
(google-research/long-range-arena, ``lra_benchmarks/models/sparse_transformer/sparse_attention.py``) and, with
``--deepspeed``, DeepSpeed's ``FixedSparsityConfig`` layout (``deepspeed/ops/sparse_attention/sparsity_config.py``).

    git clone https://github.com/google-research/long-range-arena /tmp/long-range-arena
    git clone https://github.com/microsoft/DeepSpeed /tmp/DeepSpeed            # optional
    python scripts/official/compare_sparse_transformer.py --official /tmp/long-range-arena [--deepspeed /tmp/DeepSpeed]

LRA's ``_build_mask`` / ``build_mask`` (numpy; its module's JAX / Flax imports are stubbed, nothing of them runs)
build the dense patterns LRA trains with, always causal: ``Fixed1Pattern(l)`` + ``Fixed2Pattern(l, c)`` (LRA's
configuration: l 50, c 10) and ``LocalPattern(l)`` + ``StridedPattern(l)`` (the paper's strided pattern). Cases, one
line each (``max |ours - official|``):

- ``mask ...``: our ``sparse_transformer_mask(causal=True)`` against LRA's mask, as 0/1 (the count of differing
  entries beside it), at lengths that are and are not multiples of l.
- ``attention ...``: our fast kernel (float64; batch 2, 2 heads, head size 8, value size 6; a padded batch row)
  against dense attention under LRA's mask applied as LRA applies it: scores q k^T / sqrt(d) plus a bias of -1e10
  where the pattern or the key padding masks (``lax.select(mask, 0, -1e10)`` before ``softmax``), rows compared
  where the query is real (LRA masks padded queries too).

DeepSpeed (``--deepspeed``; its block-sparse kernels need Triton on a GPU, so the layout only): its
``FixedSparsityConfig(block, num_local_blocks, num_global_blocks, attention)`` layout expanded to tokens (and
j <= i inside the diagonal blocks for ``unidirectional``, as its kernel's causal mask) against our fixed pattern with
l = block x num_local_blocks, c = block x num_global_blocks. DeepSpeed's summaries are the last c positions of each
window; ours (LRA's) add the first position of each block, so the script prints two lines per case: ``as is`` (the
first-position columns differ) and ``last c only`` (our mask without them: equal where the length is a multiple of
l; DeepSpeed moves a short last window's summary onto its last blocks, ours keeps positions l - c .. l - 1).

Measured 2026-12-07 (torch 2.13 CPU; LRA cd31e5c, DeepSpeed 38327e0): all 12 LRA masks equal (0 differing entries),
attention <= 9.4e-16 in 4 cases (outputs up to 2.8); DeepSpeed ``last c only`` equal in 13 of 14 cases (the other:
L 288, a short last window, bidirectional, 4,096 of 82,944 entries, where DeepSpeed moves its summary), ``as is``
differing in the first-position columns only (e.g. 384 of 65,536 entries at L 256 unidirectional).
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import sys
import types
from pathlib import Path

import numpy as np
import torch
from _shared import rand  # scripts/official/_shared.py
from torch import Tensor

from attnbench.attention.sparse_transformer import sparse_transformer_attention, sparse_transformer_mask

B, H, D, DV = 2, 2, 8, 6
LRA_FILE = "lra_benchmarks/models/sparse_transformer/sparse_attention.py"
DS_FILE = "deepspeed/ops/sparse_attention/sparsity_config.py"


def stub_jax_flax() -> None:
    """``flax.deprecated.nn`` (a ``Module`` with ``partial``, the initialisers its signatures name) and ``jax``
    (``jax.numpy`` = numpy): what ``sparse_attention.py`` imports; ``build_mask`` only calls numpy and
    ``jnp.array(...).astype(jnp.bool_)``."""

    class Module:
        @classmethod
        def partial(cls, **kwargs: object) -> type:
            return cls

    nn = types.SimpleNamespace(Module=Module, linear=types.SimpleNamespace(default_kernel_init=None),
                               initializers=types.SimpleNamespace(zeros=None))
    flax, deprecated = types.ModuleType("flax"), types.ModuleType("flax.deprecated")
    deprecated.nn, flax.deprecated = nn, deprecated
    jax = types.ModuleType("jax")
    jax.lax, jax.numpy = types.ModuleType("jax.lax"), np
    sys.modules.update({"flax": flax, "flax.deprecated": deprecated, "flax.deprecated.nn": nn, "jax": jax,
                        "jax.lax": jax.lax, "jax.numpy": np})


def load(path: Path, name: str, hint: str) -> types.ModuleType:
    """The module at ``path`` (a file of a checkout), imported on its own."""
    if not path.is_file():
        raise SystemExit(f"error: {path} not found; {hint}")
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def report(name: str, ours: Tensor, official: Tensor) -> float:
    """Print and return max |ours - official| of two masks (0/1), with the count of differing entries."""
    diff = (ours.double() - official.double()).abs()
    print(f"{name}: max |ours - official| {diff.max().item():.1e} ({int((diff > 0).sum())} of {diff.numel()} "
          "entries differ)")
    return diff.max().item()


def lra_patterns(lra: types.ModuleType, pattern: str, l: int, c: int) -> list:  # noqa: E741
    """LRA's pattern objects for our ``pattern`` (its EnWik8 / LRA fixed pair; the paper's strided pair)."""
    if pattern == "fixed":
        return [lra.Fixed1Pattern(block_size=l), lra.Fixed2Pattern(block_size=l, c=c)]
    return [lra.LocalPattern(bandwidth=l), lra.StridedPattern(stride=l)]


def compare_lra(lra: types.ModuleType) -> list[float]:
    """Masks at LRA's and smaller settings, then our kernel against dense attention under LRA's mask."""
    diffs = []
    for pattern, l, c, lengths in (("fixed", 50, 10, (50, 137, 500)), ("fixed", 8, 2, (8, 29, 64)),
                                   ("strided", 50, 0, (50, 137, 500)), ("strided", 8, 0, (8, 29, 64))):
        for L in lengths:
            official = torch.from_numpy(np.asarray(lra.build_mask(L, lra_patterns(lra, pattern, l, c))))[0, 0]
            ours = sparse_transformer_mask(L, pattern, l, c, causal=True)
            diffs.append(report(f"mask {pattern} l={l} c={c} L={L} causal", ours, official))
    for i, (pattern, l, c, L) in enumerate((("fixed", 50, 10, 137), ("fixed", 8, 2, 29), ("strided", 50, 0, 137),
                                            ("strided", 8, 0, 29))):
        q, k, v = rand(B, H, L, D, seed=3 * i), rand(B, H, L, D, seed=3 * i + 1), rand(B, H, L, DV, seed=3 * i + 2)
        real = torch.arange(L)[None] < torch.tensor([L, 2 * L // 3])[:, None]  # (B, L): row 1 padded
        pattern_mask = torch.from_numpy(np.asarray(lra.build_mask(L, lra_patterns(lra, pattern, l, c))))  # (1,1,L,L)
        allowed = pattern_mask & real[:, None, None, :] & real[:, None, :, None]  # LRA masks queries and keys
        bias = torch.where(allowed, 0.0, -1e10).to(torch.float64)  # lax.select(mask > 0, 0, -1e10)
        official = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(D) + bias, dim=-1) @ v
        ours = sparse_transformer_attention(q, k, v, pattern, l, c, key_padding_mask=real, causal=True)
        sel = real[:, None, :, None].expand_as(ours)
        diff = (ours - official).abs()[sel].max().item()
        print(f"attention {pattern} l={l} c={c} L={L} causal, row 1 padded to {2 * L // 3}: max |ours - official| "
              f"{diff:.1e} (outputs up to {official[sel].abs().max().item():.2f})")
        diffs.append(diff)
    return diffs


def deepspeed_tokens(ds: types.ModuleType, L: int, block: int, n_local: int, n_global: int, causal: bool) -> Tensor:
    """DeepSpeed's fixed layout (one head) expanded to an (L, L) token mask; j <= i when unidirectional."""
    cfg = ds.FixedSparsityConfig(num_heads=1, block=block, num_local_blocks=n_local, num_global_blocks=n_global,
                                 attention="unidirectional" if causal else "bidirectional")
    layout = cfg.make_layout(L)[0].bool()  # (nb, nb)
    tokens = layout.repeat_interleave(block, 0).repeat_interleave(block, 1)[:L, :L]
    return tokens & torch.ones(L, L, dtype=torch.bool).tril() if causal else tokens


def compare_deepspeed(ds: types.ModuleType) -> None:
    """DeepSpeed's fixed layouts against ours (as is, and without the first-position summaries)."""
    for block, n_local, n_global, lengths in ((16, 4, 1, (256, 320, 288)), (8, 4, 2, (128, 160))):
        l, c = block * n_local, block * n_global  # noqa: E741
        for L in lengths:
            for causal in (True, False):
                official = deepspeed_tokens(ds, L, block, n_local, n_global, causal)
                ours = sparse_transformer_mask(L, "fixed", l, c, causal)
                i, j = torch.arange(L)[:, None], torch.arange(L)[None, :]
                first = (j % l == 0) & (i // l != j // l) & (j % l < l - c)  # our extra first-position summaries
                name = f"deepspeed fixed block={block} local={n_local} global={n_global} (l={l} c={c}) L={L} " + \
                       ("unidirectional" if causal else "bidirectional")
                report(f"{name} as is", ours, official)
                report(f"{name} last c only", ours & ~first, official)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--official", type=Path, required=True, help="a checkout of the official "
                    "google-research/long-range-arena")
    ap.add_argument("--deepspeed", type=Path, default=None, help="optional: a checkout of microsoft/DeepSpeed")
    ap.add_argument("--tol", type=float, default=1e-12, help="largest accepted LRA difference (default 1e-12)")
    args = ap.parse_args()
    stub_jax_flax()
    lra = load(args.official / LRA_FILE, "lra_official_sparse_attention",
               "--official must be a checkout of github.com/google-research/long-range-arena")
    diffs = compare_lra(lra)
    if args.deepspeed is not None:
        compare_deepspeed(load(args.deepspeed / DS_FILE, "deepspeed_sparsity_config",
                               "--deepspeed must be a checkout of github.com/microsoft/DeepSpeed"))
    bad = [d for d in diffs if not d <= args.tol]  # NaN counts as bad
    if bad:
        raise SystemExit(f"{len(bad)} of {len(diffs)} LRA comparisons differ by more than {args.tol:g}")


if __name__ == "__main__":
    main()
