"""Block-sparse building blocks shared by ``sparse_transformer``, ``longformer`` and ``bigbird``.

Each of these entries restricts softmax attention to a fixed pattern of positions: query i may attend key j when
``allowed(i, j)`` holds (and j is a real key, and j <= i when causal). Its slow reference
(:func:`masked_attention_reference`) forms the dense (L, L) pattern and applies it to the explicit scores; its fast
path cuts the sequence into blocks of b positions and gathers, for every query block, the key blocks that can
hold allowed keys (each key once), so time and memory grow with L times the keys per query block, and no (L, L)
buffer is formed:

- :func:`blocked` pads (B, H, L, E) to whole blocks: (B, H, nb, b, E);
- :func:`neighbour_blocks` / :func:`gather_blocks` collect key blocks per query block: (B, H, nb, n b, E);
- :func:`block_attention` runs SDPA over the gathered keys with a boolean mask (True = attend), batched over the
  blocks (one 4-D call: CPU's fused kernel), rows that see no key giving zeros;
- :func:`masked_softmax` is the masked softmax written out, for kernels that merge scores gathered in two layouts
  (Sparse Transformer's block and summary columns) into one softmax.

The convention of the registry holds throughout: a row whose pattern holds no real key gives zeros.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


# ----------------------------------------------------------------------------- layouts
def n_blocks(L: int, b: int) -> int:
    """Blocks of b positions covering L positions (the last one padded): ceil(L / b)."""
    return -(-L // b)


def blocked(x: Tensor, b: int) -> Tensor:
    """(B, H, L, E) -> (B, H, nb, b, E), zero-padded at the end to nb b positions (a view when b divides L)."""
    nb = n_blocks(x.shape[2], b)
    pad = nb * b - x.shape[2]
    return (F.pad(x, (0, 0, 0, pad)) if pad else x).unflatten(2, (nb, b))


def keep_mask(key_padding_mask: Tensor | None, B: int, L: int, Lp: int, device: torch.device) -> Tensor:
    """(B, Lp) bool, True = a real key: the padding mask (all True if None), False beyond L (block padding)."""
    keep = torch.zeros(B, Lp, dtype=torch.bool, device=device)
    keep[:, :L] = True if key_padding_mask is None else key_padding_mask.bool()
    return keep


def neighbour_blocks(xb: Tensor, offsets: range) -> Tensor:
    """Key block n + o for each offset o, next to each other, per block n (blocks outside [0, nb) are zeros):
    (B, H, nb, b, E) -> (B, H, nb, len(offsets) b, E), a copy of len(offsets) x the input (unfold, no index)."""
    b = xb.shape[3]
    lo, hi = -offsets[0], offsets[-1]  # blocks of zeros in front of and behind the sequence
    x = F.pad(xb.flatten(2, 3), (0, 0, lo * b, hi * b))  # (B, H, (lo + nb + hi) b, E)
    x = x.unfold(2, len(offsets) * b, b)  # (B, H, nb, E, n_off b)
    return x.transpose(-1, -2)  # (B, H, nb, n_off b, E)


def gather_blocks(xb: Tensor, idx: Tensor, out: Tensor | None = None) -> Tensor:
    """Key blocks ``idx`` (H or 1, nq, n) long of xb (B, H, nb, b, E) -> (B, H, nq, n b, E), contiguous: per head
    and query block, the n listed blocks next to each other (indices must lie in [0, nb); mask unused slots).
    One ``index_select`` over the (head, block) rows of xb (its backward one ``index_add``; along the first axis
    when B = 1, CPU's fastest), written into ``out`` when given (a contiguous buffer of at least the result's
    size, not differentiable: buffers reused without autograd)."""
    B, H, nb, b, E = xb.shape
    rows = (torch.arange(H, device=xb.device)[:, None, None] * nb + idx).flatten()  # (H nq n): row h nb + m
    src, dim = (xb.reshape(H * nb, b * E), 0) if B == 1 else (xb.reshape(B, H * nb, b * E), 1)
    if out is None:
        res = src.index_select(dim, rows)  # ([B,] H nq n, b E)
    else:
        shape = (rows.numel(), b * E) if B == 1 else (B, rows.numel(), b * E)
        res = torch.index_select(src, dim, rows, out=out.view(-1)[:math.prod(shape)].view(shape))
    return res.view(B, H, idx.shape[1], idx.shape[2] * b, E)


# ----------------------------------------------------------------------------- attention over gathered keys
def block_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor, dropout_p: float = 0.0) -> Tensor:
    """Softmax attention of each query block to its own gathered keys.

    q (B, H, nq, b, D), k (B, H, nq, K, D), v (B, H, nq, K, Dv), mask broadcastable to (B, H, nq, b, K), True =
    attend -> (B, H, nq, b, Dv). One SDPA call with the blocks in the batch axis, (B nq, H, ...); rows with no
    key give zeros.
    """
    B, H, nq, b, D = q.shape
    K = k.shape[3]
    mask = mask.expand(B, mask.shape[1], nq, b, K)
    dead = ~mask.any(dim=-1, keepdim=True)  # (B, H|1, nq, b, 1)

    def fold(x: Tensor) -> Tensor:  # (B, H', nq, n, E) -> (B nq, H', n, E)
        return x.transpose(1, 2).flatten(0, 1)

    # Dead rows attend every slot (a finite softmax and gradient), then are zeroed.
    out = F.scaled_dot_product_attention(fold(q), fold(k), fold(v), attn_mask=fold(mask | dead),
                                         dropout_p=dropout_p)  # (B nq, H, b, Dv)
    out = out.unflatten(0, (B, nq)).transpose(1, 2)  # (B, H, nq, b, Dv)
    return out.masked_fill(dead, 0.0)


def masked_softmax(scores: Tensor, mask: Tensor, dropout_p: float = 0.0) -> Tensor:
    """softmax over the last axis of ``scores`` where ``mask`` (broadcastable, True = attend) holds: the mask enters
    as an additive bias (0 / the dtype's minimum, built at the mask's shape), so a masked entry weighs exactly 0 and
    the backward is the softmax's alone. A row with no key comes out uniform, not zero: the caller zeroes those
    rows of its output (cheaper than zeroing weights; their gradient is then zero)."""
    bias = torch.zeros(mask.shape, dtype=scores.dtype, device=scores.device)
    bias = bias.masked_fill_(~mask, torch.finfo(scores.dtype).min)  # exp(min - row max) underflows to 0
    w = torch.softmax(scores + bias, dim=-1)
    return F.dropout(w, dropout_p) if dropout_p > 0 else w


def dense_rows(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, dropout_p: float = 0.0) -> Tensor:
    """Rows of plain masked attention (global queries attending every key): q (B, H, G, D), k (B, H, S, D),
    mask broadcastable to (B, H, G, S) (None: every key) -> (B, H, G, Dv); rows with no key give zeros."""
    if mask is None:
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)
    dead = ~mask.any(dim=-1, keepdim=True)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask | dead, dropout_p=dropout_p)
    return out.masked_fill(dead, 0.0)


# ----------------------------------------------------------------------------- reference
def masked_attention_reference(q: Tensor, k: Tensor, v: Tensor, allowed: Tensor) -> Tensor:
    """Slow reference: explicit scores q k^T / sqrt(D), the dense pattern ``allowed`` (broadcastable to
    (B, H, L, S), True = attend), softmax, weighted sum; rows with no allowed key give zeros."""
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])  # (B, H, L, S)
    attn = torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1).nan_to_num(0.0)
    return attn @ v
