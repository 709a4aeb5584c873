"""Our ``attention.smyrf.SmyrfAttention`` beside the official SMYRF attention (giannisdaras/smyrf) on identical inputs
and hash projections.

    git clone https://github.com/giannisdaras/smyrf /tmp/smyrf
    python scripts/official/compare_smyrf.py --official /tmp/smyrf

Cases (float64, batch 2, 2 heads, head size 8, value size 6, 4 hashing rounds), one line each:

- ``self n=40|65|100|1000``: self-attention with clusters of 32 (no length is a multiple of 32). Ours runs on the n
  tokens as they are; the official code, which needs a multiple of the cluster size, gets them zero-padded to one
  with its additive mask (0 / -10000, the BERT patch's) so that the padding sorts last and gets no weight.
- ``self n=... rows n/m``: batch row 1 holds only m = 3n/5 real tokens. Ours gets garbage in the padding and the
  padding mask for keys and queries; the official code gets zero padding (its M_Q, M_K include padded positions) and
  the mask. Only real positions are compared (official padded queries give garbage or NaN, ours zeros).
- ``cross L=.. S=..``: uneven query / key lengths, C_q = L / n_c queries and C_k = S / n_c keys per cluster. The
  official code cannot pad here (its mask is applied to the query and the key hashes alike), so the lengths are
  multiples of the number of clusters n_c; ours takes one ``cluster_size`` = C_q and cuts the keys proportionally.

Same projections: the official ``lsh_clustering`` builds an ``E2LSH`` on every call, drawing its projection
alpha ~ N(0, 1) (D+2, n_hashes) and shift beta ~ U(0, r) (1, n_hashes) from the global RNG. While the official forward
runs, the official ``E2LSH.__init__`` is wrapped: it runs unchanged and then alpha is replaced by our module's seeded
``proj`` buffer (as float64, as ours uses it) and beta by a seeded uniform draw; the official hash itself
(F(q) alpha + beta) runs unchanged. beta shifts the query and key hashes of a
round alike (ours omits it), so a nonzero draw also checks that it does not change the clusters.

Official masks are passed per (batch, head) row, shape (B*H, N): its own ``repeat`` tiles a (B, N) mask across heads
in the wrong order (shared/papers/smyrf.md, section 6). torch >= 2 rejects the official ``XBOXPLUS``'s
``torch.tensor(0.0).repeat(x.shape[:-1], 1)``, which torch 1.6 read as ``repeat(x.shape[:-1])`` (zeros of shape
(..., 1) after its ``unsqueeze``); while the official forward runs, ``Tensor.repeat`` accepts that call form. No other
change, no dependency beyond torch, numpy and tqdm (the official ``utils`` imports them).

Measured 2026-12-07 (torch 2.13 CPU, official commit bbbc82e): self-attention n=40 / 65 / 100 / 1000 8.9e-16 /
8.9e-16 / 1.0e-15 / 1.3e-15, with uneven rows 6.7e-16 / 1.1e-15 / 8.9e-16 / 7.8e-16, cross attention 1.3e-15 /
5.0e-16 / 8.9e-16 / 2.0e-15 (outputs up to 3.2; another projection in the official code gives about 1).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

import torch
from _shared import check, parser, rand, report, require  # scripts/official/_shared.py
from torch import Tensor

from attnbench.attention.smyrf import SmyrfAttention

B, H, D, DV, N_HASHES, C = 2, 2, 8, 6, 4, 32
MASKED = -10000.0  # the official BERT patch's additive mask value


@contextmanager
def official_call(utils: ModuleType, alpha: Tensor, beta: Tensor) -> Iterator[None]:
    """While the official forward runs: its E2LSH draws replaced by ``alpha`` (D+2, R) and ``beta`` (1, R), and
    ``Tensor.repeat`` accepting torch 1.6's ``repeat(sizes, 1)`` call form of the official ``XBOXPLUS``."""
    e2lsh = utils.E2LSH
    official_init = e2lsh.__init__
    own_repeat = "repeat" in torch.Tensor.__dict__
    tensor_repeat = torch.Tensor.repeat

    def shared_draws(self: object, n_hashes: int, dim: int, r: float, device: torch.device) -> None:
        official_init(self, n_hashes, dim, r, device)  # the official draws (float32, global RNG), replaced below
        if tuple(self.alpha.shape) != tuple(alpha.shape):
            raise ValueError(f"official E2LSH alpha {tuple(self.alpha.shape)} vs ours {tuple(alpha.shape)}")
        self.alpha, self.beta = alpha.to(device), beta.to(device)

    def repeat(self: Tensor, *sizes: object) -> Tensor:
        if len(sizes) > 1 and isinstance(sizes[0], (tuple, list)):
            sizes = sizes[:1]  # torch 1.6: repeat(x.shape[:-1], 1) meant repeat(x.shape[:-1])
        return tensor_repeat(self, *sizes)

    e2lsh.__init__, torch.Tensor.repeat = shared_draws, repeat
    try:
        yield
    finally:
        e2lsh.__init__ = official_init
        if own_repeat:
            torch.Tensor.repeat = tensor_repeat
        else:
            del torch.Tensor.repeat


def official_forward(official: ModuleType, utils: ModuleType, q: Tensor, k: Tensor, v: Tensor, proj: Tensor,
                     n_c: int, cluster_size: int, real: Tensor | None, beta: Tensor) -> Tensor:
    """The official SmyrfAttention on (B, H, L, D) inputs, zero-padded to n_c clusters of ``cluster_size`` when
    ``real`` (B, L) is given (self-attention), heads flattened into its batch axis; returns (B, H, L_pad, Dv)."""
    L, S = q.shape[2], k.shape[2]
    mask = None
    if real is not None:  # self-attention: zero padding to n_c clusters, padded positions masked
        n = n_c * cluster_size
        keep = torch.zeros(B, n, dtype=torch.bool)
        keep[:, :L] = real
        pad = [x.new_zeros(B, H, n, x.shape[-1]) for x in (q, k, v)]  # (B, H, n, D|Dv)
        for p, x in zip(pad, (q, k, v), strict=True):
            p[:, :, :L] = x * real[:, None, :, None]  # zeros in the padding: the official M_Q, M_K include it
        q, k, v = pad
        L = S = n
        # per (batch, head) row, as the flattened queries are ordered (the official repeat would tile batches)
        mask = torch.zeros(B, n, dtype=q.dtype).masked_fill(~keep, MASKED).repeat_interleave(H, 0)  # (B*H, n)
    att = official.SmyrfAttention(N_HASHES, L // n_c, S // n_c).eval()  # C_q, C_k: n_c clusters each
    with torch.no_grad(), official_call(utils, proj.to(q.dtype), beta):
        out = att(q.flatten(0, 1), k.flatten(0, 1), v.flatten(0, 1), attn_mask=mask,
                  norm_factor=math.sqrt(q.shape[-1]))  # (B*H, L, Dv)
    return out.view(B, H, L, -1)


def compare(name: str, official: ModuleType, utils: ModuleType, L: int, S: int, cluster_size: int,
            rows: tuple[int, int] | None, seed: int) -> float:
    """Print and return the largest difference over the real query positions of one case."""
    q, k, v = rand(B, H, L, D, seed=seed), rand(B, H, S, D, seed=seed + 1), rand(B, H, S, DV, seed=seed + 2)
    ours = SmyrfAttention(D, n_hashes=N_HASHES, cluster_size=cluster_size, seed=seed).eval()
    beta = torch.rand(1, N_HASHES, generator=torch.Generator().manual_seed(seed + 3), dtype=torch.float64)  # r = 1
    if rows is None and L != S:  # cross attention: no padding anywhere
        real, n_c, mask = None, L // cluster_size, None
    else:  # self-attention: official padded to a multiple of C
        real = torch.arange(L)[None] < torch.tensor(rows or (L, L))[:, None]  # (B, L)
        n_c, mask = -(-L // cluster_size), (None if rows is None else real)
        q, k, v = (x.masked_fill(~real[:, None, :, None], 40.0) for x in (q, k, v))  # garbage in our padding
    with torch.no_grad():
        got = ours(q, k, v, key_padding_mask=mask, query_padding_mask=mask)  # (B, H, L, Dv)
    want = official_forward(official, utils, q, k, v, ours.proj, n_c, cluster_size, real,
                            beta)[:, :, :L]  # (B, H, L, Dv)
    keep = torch.ones(B, L, dtype=torch.bool) if real is None else real
    return report(name, got, want, keep[:, None, :, None].expand_as(got))


def main() -> None:
    args = parser(__doc__, "a checkout of the official giannisdaras/smyrf", 1e-10).parse_args()
    require(args.official, "smyrf/torch/attn.py", "https://github.com/giannisdaras/smyrf /tmp/smyrf")
    sys.path.insert(0, str(args.official))
    import smyrf.torch.attn as official  # the official SmyrfAttention
    import smyrf.torch.utils as utils  # its E2LSH, looked up by lsh_clustering at each call

    diffs = []
    for i, n in enumerate((40, 65, 100, 1000)):
        diffs.append(compare(f"self n={n} C={C}", official, utils, n, n, C, None, seed=10 * i))
        m = 3 * n // 5
        diffs.append(compare(f"self n={n} C={C} rows {n}/{m}", official, utils, n, n, C, (n, m), seed=10 * i + 5))
    for i, (L, S, c) in enumerate(((40, 100, 4), (65, 1000, 13), (100, 65, 20), (1000, 40, 25))):
        diffs.append(compare(f"cross L={L} S={S} C_q={c} C_k={S * c // L}", official, utils, L, S, c, None,
                             seed=100 + 10 * i))
    check(diffs, args.tol)


if __name__ == "__main__":
    main()
