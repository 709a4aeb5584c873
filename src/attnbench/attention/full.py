"""Full softmax attention (Vaswani et al., 2017) through PyTorch SDPA, with a slow reference."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from attnbench.attention.registry import AttentionBase, Caps, State, register


def _mask(
    key_padding_mask: Tensor | None, causal: bool, L: int, S: int, device: torch.device
) -> Tensor | None:
    """Boolean mask broadcastable to (B, H, L, S), True = attend; None when nothing is masked."""
    mask = None
    if key_padding_mask is not None:
        mask = key_padding_mask[:, None, None, :].bool()  # (B, 1, 1, S)
    if causal:
        # Query i sees keys j <= i + (S - L): the last query sees every key (suffix alignment).
        tri = torch.ones(L, S, dtype=torch.bool, device=device).tril(diagonal=S - L)  # (L, S)
        mask = tri if mask is None else mask & tri
    return mask


def full_attention_reference(
    q: Tensor, k: Tensor, v: Tensor, key_padding_mask: Tensor | None = None, causal: bool = False
) -> Tensor:
    """softmax(q k^T / sqrt(D)) v written out; rows with no visible key give zeros. (B,H,L,D) -> (B,H,L,Dv)."""
    L, S = q.shape[-2], k.shape[-2]
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])  # (B, H, L, S)
    mask = _mask(key_padding_mask, causal, L, S, q.device)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    attn = torch.softmax(scores, dim=-1).nan_to_num(0.0)  # all -inf row -> NaN -> 0
    return attn @ v


def full_attention(
    q: Tensor, k: Tensor, v: Tensor, key_padding_mask: Tensor | None = None, causal: bool = False,
    dropout_p: float = 0.0,
) -> Tensor:
    """SDPA fast path with the semantics of :func:`full_attention_reference`."""
    L, S = q.shape[-2], k.shape[-2]
    if key_padding_mask is None and (not causal or L == S):
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=causal)
    mask = _mask(key_padding_mask, causal, L, S, q.device)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)
    # Rows whose keys are all masked come out NaN from the softmax: they give zeros instead.
    dead = ~mask.any(dim=-1, keepdim=True)  # (B|1, 1|H, L, 1)
    return out.masked_fill(dead, 0.0)


@register("full")
class FullAttention(AttentionBase):
    """Exact softmax attention over all keys, O(L S D) time, SDPA memory."""

    caps = Caps(incremental=True)

    def __init__(self, dropout: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"full attention: dropout={dropout} must be in [0, 1)")
        self.dropout = dropout

    def forward(
        self, q: Tensor, k: Tensor, v: Tensor, *, key_padding_mask: Tensor | None = None,
        causal: bool = False,
    ) -> Tensor:
        p = self.dropout if self.training else 0.0
        return full_attention(q, k, v, key_padding_mask=key_padding_mask, causal=causal, dropout_p=p)

    def step(self, q: Tensor, k: Tensor, v: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """Incremental decoding with a key/value cache: state {"k": (B, H, t, D), "v": (B, H, t, Dv)}."""
        k_all, v_all = cache_append(state, k, v)
        p = self.dropout if self.training else 0.0
        return full_attention(q, k_all, v_all, dropout_p=p), {"k": k_all, "v": v_all}


def cache_append(state: State | None, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
    """The cached keys/values of ``state`` (None: empty) with the new token's k (B, H, 1, D), v (B, H, 1, Dv)
    appended along the sequence -> (B, H, t+1, D), (B, H, t+1, Dv)."""
    if k.shape[-2] != 1 or v.shape[-2] != 1:
        raise ValueError(f"step takes one token: k, v (B, H, 1, D), got {tuple(k.shape)}, {tuple(v.shape)}")
    if state is None:
        return k, v
    return torch.cat([state["k"], k], dim=-2), torch.cat([state["v"], v], dim=-2)
