"""Local (sliding-window) attention: each query sees only nearby keys.

The LRA "Local Attention" baseline (Tay et al., arXiv:2011.04006) and CAB's ``local`` (window size ``wsize``,
after Luong et al., 2015, arXiv:1508.04025): query i attends keys j with |i - j| <= window, or
i - window <= j <= i when causal.

:func:`local_attention` is a blocked sliding-window kernel: the sequence is cut into blocks of
b >= window queries (:func:`block_size`), and each block attends (SDPA, one batched call) to its own key
block and the neighbouring ones (the previous block only when causal), 3b (2b) keys, under a static
(b, 3b) band mask and the key padding: O(L b) time and memory, no (L, L) buffer. Any length (the last
block is padded with masked keys); a window >= the length is one block. :func:`local_attention_banded`
(an explicit banded (L, L) mask into SDPA, O(L^2)) and :func:`local_attention_reference` (explicit
scores) are the references it is tested against.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from attnbench.attention.full import cache_append, full_attention
from attnbench.attention.registry import AttentionBase, Caps, State, register


# ----------------------------------------------------------------------------- pure math
def band_mask(
    L: int, window: int, key_padding_mask: Tensor | None, causal: bool, device: torch.device
) -> Tensor:
    """Boolean mask broadcastable to (B, H, L, L), True = attend: |i - j| <= window (j <= i if causal)."""
    i = torch.arange(L, device=device)[:, None]  # (L, 1)
    j = torch.arange(L, device=device)[None, :]  # (1, L)
    mask = (j >= i - window) & (j <= i if causal else j <= i + window)  # (L, L)
    if key_padding_mask is not None:
        mask = mask & key_padding_mask.bool()[:, None, None, :]  # (B, 1, L, L)
    return mask


MIN_BLOCK = 16  # smallest query block: narrower windows still give SDPA >= 16 queries per block


def block_size(L: int, window: int) -> int:
    """Query block b of the blocked kernel: >= window (so neighbouring blocks hold every visible key),
    at least MIN_BLOCK, at most L (a window >= L makes one block)."""
    return max(1, min(L, max(window, MIN_BLOCK)))


def local_attention(
    q: Tensor, k: Tensor, v: Tensor, window: int, key_padding_mask: Tensor | None = None, causal: bool = False,
    dropout_p: float = 0.0,
) -> Tensor:
    """Blocked sliding-window softmax attention, O(L window) time and memory. (B,H,L,D) -> (B,H,L,Dv).

    Query block n (positions n b .. n b + b - 1) attends to key blocks n - 1, n, n + 1 (n - 1, n when causal)
    with the band |i - j| <= window (i - window <= j <= i when causal) and the key padding. Rows with no
    visible key (all padded) give zeros.
    """
    B, H, L, D = q.shape
    b = block_size(L, window)
    nb = -(-L // b)  # blocks
    pad = nb * b - L
    n_win = 2 if causal else 3  # key blocks per query block
    left, right = b, (0 if causal else b) + pad  # zero key blocks around the sequence (masked)

    def windows(x: Tensor) -> Tensor:  # (B, H, L, E) -> (B nb, H, n_win b, E): the keys of each query block
        x = F.pad(x, (0, 0, left, right)).unfold(2, n_win * b, b)  # (B, H, nb, E, n_win b)
        return x.permute(0, 2, 1, 4, 3).reshape(B * nb, H, n_win * b, x.shape[3])

    # Blocks in the batch axis (B nb, H, ...): a 4-D SDPA call (CPU's fused kernel) with one mask per block.
    qb = F.pad(q, (0, 0, 0, pad)).unflatten(2, (nb, b)).transpose(1, 2).reshape(B * nb, H, b, D)
    # band: query a of block n is position n b + a, key c of its window is position (n - 1) b + c
    a = torch.arange(b, device=q.device)[:, None]  # (b, 1)
    c = torch.arange(n_win * b, device=q.device)[None, :]  # (1, n_win b)
    diff = c - b - a  # (b, n_win b): j - i
    band = (diff >= -window) & (diff <= (0 if causal else window))  # (b, n_win b)
    real = torch.ones(B, L, dtype=torch.bool, device=q.device) if key_padding_mask is None \
        else key_padding_mask.bool()  # (B, L)
    real = F.pad(real, (left, right), value=False).unfold(1, n_win * b, b)  # (B, nb, n_win b)
    mask = (band & real[:, :, None, :]).reshape(B * nb, 1, b, n_win * b)  # (B nb, 1, b, n_win b)
    dead = ~mask.any(dim=-1, keepdim=True)  # (B nb, 1, b, 1)
    # Dead rows attend every slot of their window (finite softmax and gradients), then are zeroed.
    out = F.scaled_dot_product_attention(qb, windows(k), windows(v), attn_mask=mask | dead, dropout_p=dropout_p)
    out = out.masked_fill(dead, 0.0)  # (B nb, H, b, Dv)
    return out.unflatten(0, (B, nb)).transpose(1, 2).flatten(2, 3)[:, :, :L]  # (B, H, L, Dv)


def local_attention_banded(
    q: Tensor, k: Tensor, v: Tensor, window: int, key_padding_mask: Tensor | None = None, causal: bool = False,
    dropout_p: float = 0.0,
) -> Tensor:
    """Sliding-window softmax attention through SDPA with a banded (L, L) mask, O(L^2). (B,H,L,D) -> (B,H,L,Dv).

    Rows with no visible key (all padded) give zeros.
    """
    mask = band_mask(q.shape[-2], window, key_padding_mask, causal, q.device)
    dead = ~mask.any(dim=-1, keepdim=True)  # (B|1, 1, L, 1)
    # Dead rows attend every key (finite softmax and gradients), then are zeroed.
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask | dead, dropout_p=dropout_p)
    return out.masked_fill(dead, 0.0)


def local_attention_reference(
    q: Tensor, k: Tensor, v: Tensor, window: int, key_padding_mask: Tensor | None = None, causal: bool = False
) -> Tensor:
    """Slow reference: explicit scores, band and padding masks, softmax; dead rows give zeros."""
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])  # (B, H, L, L)
    mask = band_mask(q.shape[-2], window, key_padding_mask, causal, q.device)
    attn = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1).nan_to_num(0.0)
    return attn @ v


# ----------------------------------------------------------------------------- module
@register("local")
class LocalAttention(AttentionBase):
    """Softmax attention restricted to a window of +-``window`` positions (self-attention only)."""

    # Positions i and j must index the same sequence: no cross attention.
    caps = Caps(cross_attention=False, causal_cross=False, permutation_equivariant=False, incremental=True)

    def __init__(self, window: int = 16, dropout: float = 0.0) -> None:
        super().__init__()
        if window < 0:
            raise ValueError(f"local: window={window} must be >= 0")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"local: dropout={dropout} must be in [0, 1)")
        self.window, self.dropout = window, dropout

    @classmethod
    def key_slots(cls, options: Mapping[str, Any], length: int, real: int | None = None) -> float:
        """The window: min(real tokens, 2 window + 1)."""
        return min(length if real is None else real, 2 * options["window"] + 1)

    def forward(
        self, q: Tensor, k: Tensor, v: Tensor, *, key_padding_mask: Tensor | None = None,
        causal: bool = False,
    ) -> Tensor:
        L, S = q.shape[-2], k.shape[-2]
        if L != S:
            raise ValueError(f"local attention needs as many queries as keys (self-attention), got L={L}, S={S}")
        p = self.dropout if self.training else 0.0
        return local_attention(q, k, v, self.window, key_padding_mask=key_padding_mask, causal=causal, dropout_p=p)

    def step(self, q: Tensor, k: Tensor, v: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """Incremental decoding with a rolling cache of the last ``window`` + 1 keys/values (the causal band)."""
        k_all, v_all = cache_append(state, k, v)
        k_all, v_all = k_all[:, :, -(self.window + 1):], v_all[:, :, -(self.window + 1):]  # (B, H, <=w+1, D)
        p = self.dropout if self.training else 0.0
        return full_attention(q, k_all, v_all, dropout_p=p), {"k": k_all, "v": v_all}
