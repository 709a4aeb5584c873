"""Longformer attention (Beltagy, Peters, Cohan, "Longformer: The Long-Document Transformer", arXiv:2004.05150).

A sliding window plus global tokens. Query i attends key j when

    |i - j| <= window          (the sliding window; i - window <= j <= i when causal)
    or j < n_global            (every token attends the global tokens)
    or i < n_global            (a global token attends every token)

(and j <= i when causal; padded keys never). The global tokens are the first ``n_global`` positions: the
classification usage of the paper (the CLS token global, n_global 1). ``window`` is one-sided, as ``local``'s:
HF's ``attention_window`` is 2 ``window`` (|i - j| <= attention_window / 2). LRA's code (``longformer_attention``,
``sliding_window_size`` 512) takes j in [i - 255, i + 256] (one key fewer on the left than window 256 here)
and passes no global mask, i.e. ``n_global`` 0.

Kept out, as in HF's and LRA's versions: dilated windows, and the separate global projections
(Q_g, K_g, V_g) of the paper, which are the layer's business; here global rows use the layer's q, k, v (HF with its
``*_global`` projections set equal to the local ones: ``scripts/official/compare_longformer.py``).

:func:`longformer_attention` cuts the queries into blocks of b (:func:`query_block`); each block attends, in one
batched SDPA call, the key blocks its window reaches (ceil(window / b) on each side, none on the right when
causal) plus the n_global global keys, the global keys masked inside the window part so each key counts once;
the n_global global query rows then attend every key (one SDPA call over g x S). O(L (window + b + g) + g L) time
and memory, no (L, L) buffer. :func:`longformer_attention_reference` is the dense-mask reference.
"""

from __future__ import annotations

import torch
from torch import Tensor

from attnbench.attention.block_sparse import (
    block_attention,
    blocked,
    dense_rows,
    keep_mask,
    masked_attention_reference,
    neighbour_blocks,
)
from attnbench.attention.registry import AttentionBase, Caps, register

MIN_BLOCK, MAX_BLOCK = 16, 64  # query block: >= 16 queries per SDPA call, <= 64 so a wide window wastes <= b keys


# ----------------------------------------------------------------------------- pure math
def longformer_mask(L: int, window: int, n_global: int, causal: bool, device: torch.device | None = None) -> Tensor:
    """The dense (L, L) pattern, True = attend (padding not included)."""
    i = torch.arange(L, device=device)[:, None]  # (L, 1)
    j = torch.arange(L, device=device)[None, :]  # (1, L)
    allowed = ((i - j).abs() <= window) | (j < n_global) | (i < n_global)
    return allowed & (j <= i) if causal else allowed


def query_block(L: int, window: int) -> int:
    """Query block b of the blocked kernel: the window clipped to [MIN_BLOCK, MAX_BLOCK], at most L."""
    return max(1, min(L, max(MIN_BLOCK, min(window, MAX_BLOCK))))


def window_offsets(L: int, window: int, causal: bool) -> range:
    """The key blocks n + o a query block n needs for its window: o in [-s, s] (causal [-s, 0]), s = ceil(w / b)."""
    s = -(-window // query_block(L, window))
    return range(-s, 1 if causal else s + 1)


def longformer_attention(
    q: Tensor, k: Tensor, v: Tensor, window: int, n_global: int, key_padding_mask: Tensor | None = None,
    causal: bool = False, dropout_p: float = 0.0,
) -> Tensor:
    """Sliding-window + global-token softmax attention (self-attention). (B,H,L,D) -> (B,H,L,Dv)."""
    B, H, L, D = q.shape
    b = query_block(L, window)
    offs = window_offsets(L, window, causal)
    g = min(n_global, L)
    qb = blocked(q, b)  # (B, H, nb, b, D)
    nb = qb.shape[2]
    keep = keep_mask(key_padding_mask, B, L, nb * b, q.device)  # (B, Lp)

    # window part: key c of block n's window is position (n + offs[0]) b + c
    i = torch.arange(nb * b, device=q.device).view(nb, b, 1)  # (nb, b, 1) query positions
    j = (torch.arange(nb, device=q.device)[:, None] + offs[0]) * b + torch.arange(len(offs) * b, device=q.device)
    j = j[:, None, :]  # (nb, 1, n_off b) key positions
    band = ((i - j).abs() <= window) & (j >= g) & (j >= 0)  # global keys go to the global part (counted once)
    if causal:
        band = band & (j <= i)
    real = neighbour_blocks(keep[:, None, :, None].unflatten(2, (nb, b)), offs)[:, 0, :, None, :, 0]
    mask = band & real  # (B, nb, b, n_off b); real: (B, nb, 1, n_off b), outside the sequence False
    k_win, v_win = neighbour_blocks(blocked(k, b), offs), neighbour_blocks(blocked(v, b), offs)
    if g > 0:  # the global keys, appended to every block's window
        t = torch.arange(g, device=q.device)
        glob = keep[:, None, None, :g] & ((t <= i) if causal else True)  # (B, nb, b, g)
        mask = torch.cat([mask, glob.expand(B, nb, b, g)], dim=-1)
        k_win = torch.cat([k_win, k[:, :, None, :g].expand(B, H, nb, g, D)], dim=3)
        v_win = torch.cat([v_win, v[:, :, None, :g].expand(B, H, nb, g, v.shape[-1])], dim=3)
    out = block_attention(qb, k_win, v_win, mask[:, None], dropout_p)  # (B, H, nb, b, Dv)
    out = out.flatten(2, 3)[:, :, :L]  # (B, H, L, Dv)
    if g == 0:
        return out
    # the global queries attend every key
    rows = keep[:, None, None, :L]  # (B, 1, 1, L)
    if causal:
        rows = rows & torch.ones(g, L, dtype=torch.bool, device=q.device).tril()
    top = dense_rows(q[:, :, :g], k, v, rows, dropout_p)  # (B, H, g, Dv)
    return torch.cat([top, out[:, :, g:]], dim=2)


def longformer_attention_reference(
    q: Tensor, k: Tensor, v: Tensor, window: int, n_global: int, key_padding_mask: Tensor | None = None,
    causal: bool = False,
) -> Tensor:
    """Slow reference: the dense pattern of :func:`longformer_mask` and the padding on explicit scores."""
    allowed = longformer_mask(q.shape[2], window, n_global, causal, q.device)  # (L, L)
    if key_padding_mask is not None:
        allowed = allowed & key_padding_mask.bool()[:, None, None, :]  # (B, 1, L, L)
    return masked_attention_reference(q, k, v, allowed)


# ----------------------------------------------------------------------------- module
@register("longformer")
class LongformerAttention(AttentionBase):
    """Sliding window of +-``window`` positions plus the first ``n_global`` tokens global (self-attention only)."""

    # Positions i and j index one sequence: no cross attention. Windows make it position-dependent.
    caps = Caps(cross_attention=False, causal_cross=False, permutation_equivariant=False)

    def __init__(self, window: int = 256, n_global: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        if window < 0:
            raise ValueError(f"longformer: window={window} must be >= 0")
        if n_global < 0:
            raise ValueError(f"longformer: n_global={n_global} must be >= 0")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"longformer: dropout={dropout} must be in [0, 1)")
        self.window, self.n_global, self.dropout = window, n_global, dropout

    def forward(
        self, q: Tensor, k: Tensor, v: Tensor, *, key_padding_mask: Tensor | None = None, causal: bool = False,
    ) -> Tensor:
        L, S = q.shape[-2], k.shape[-2]
        if L != S:
            raise ValueError(f"longformer attention needs as many queries as keys (self-attention), got L={L}, S={S}")
        p = self.dropout if self.training else 0.0
        return longformer_attention(q, k, v, self.window, self.n_global, key_padding_mask, causal, p)
