"""Linformer (Wang et al., "Linformer: Self-Attention with Linear Complexity", arXiv:2006.04768).

Keys and values are projected along the sequence by learned E, F (k, max_len) before softmax attention:

    out = softmax(Q (E K)^T / sqrt(D)) (F V),   E K: (k, D),  F V: (k, Dv)

O(L k D). The projections fix a maximum key length: an input with S < max_len uses the first S columns
of E and F; S > max_len raises (no silent padding or truncation). Padded keys and values are zeroed
before the projection, so their content never reaches the output; a row whose keys are all padding
gives zeros. The projection still averages over positions, so which positions are padded changes the
result: the mask is honoured, not equivalent to dropping the keys. Not causal: E K mixes all positions.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from attnbench.attention.registry import AttentionBase, Caps, register


# ----------------------------------------------------------------------------- pure math
def linformer_attention(
    q: Tensor, k: Tensor, v: Tensor, e: Tensor, f: Tensor, key_padding_mask: Tensor | None = None,
    dropout: nn.Module | None = None,
) -> Tensor:
    """q (B,H,L,D), k (B,H,S,D), v (B,H,S,Dv), e/f (k, S) -> (B,H,L,Dv)."""
    if key_padding_mask is not None:
        pad = ~key_padding_mask.bool()[:, None, :, None]  # (B, 1, S, 1)
        k, v = k.masked_fill(pad, 0.0), v.masked_fill(pad, 0.0)
    k_proj = e.to(k.dtype) @ k  # (B, H, k, D)
    v_proj = f.to(v.dtype) @ v  # (B, H, k, Dv)
    attn = torch.softmax(q @ k_proj.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1)  # (B, H, L, k)
    if dropout is not None:
        attn = dropout(attn)
    out = attn @ v_proj  # (B, H, L, Dv)
    if key_padding_mask is not None:
        # a batch element with no valid key: v_proj is 0 already; make the zero explicit and exact
        alive = key_padding_mask.bool().any(dim=-1)[:, None, None, None]  # (B, 1, 1, 1)
        out = out.masked_fill(~alive, 0.0)
    return out


def linformer_attention_reference(
    q: Tensor, k: Tensor, v: Tensor, e: Tensor, f: Tensor, key_padding_mask: Tensor | None = None
) -> Tensor:
    """Slow reference with explicit sums: (E K)_r = sum_s E[r, s] keep_s K_s, likewise F V."""
    keep = (torch.ones(k.shape[0], k.shape[-2], dtype=torch.bool, device=k.device)
            if key_padding_mask is None else key_padding_mask.bool())
    w = keep[:, None, None, :].to(k.dtype)  # (B, 1, 1, S)
    k_proj = torch.einsum("rs,bhs,bhsd->bhrd", e, w[:, :, 0].expand(-1, k.shape[1], -1), k)
    v_proj = torch.einsum("rs,bhs,bhsd->bhrd", f, w[:, :, 0].expand(-1, v.shape[1], -1), v)
    scores = torch.einsum("bhld,bhrd->bhlr", q, k_proj) / math.sqrt(q.shape[-1])
    out = torch.softmax(scores, dim=-1) @ v_proj
    return out * keep.any(dim=-1)[:, None, None, None]


# ----------------------------------------------------------------------------- module
@register("linformer")
class LinformerAttention(AttentionBase):
    """Low-rank attention through learned sequence projections E, F (k x max_len)."""

    caps = Caps(causal=False, learned_params=True, pretrained_drop_in=False, fixed_len=True,
                permutation_equivariant=False)

    def __init__(self, max_len: int, k: int, dropout: float = 0.0) -> None:
        super().__init__()
        if max_len < 1 or k < 1:
            raise ValueError(f"linformer: max_len={max_len} and k={k} must be >= 1")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"linformer: dropout={dropout} must be in [0, 1)")
        self.max_len, self.k = max_len, k
        self.E = nn.Parameter(torch.empty(k, max_len))  # (k, max_len)
        self.F = nn.Parameter(torch.empty(k, max_len))  # (k, max_len)
        # as the fairseq Linformer code (compress_k/v = Linear(max_len, k)): xavier-uniform, gain 1/sqrt(2),
        # i.e. variance 1 / (max_len + k) per entry
        nn.init.xavier_uniform_(self.E, gain=1 / math.sqrt(2))
        nn.init.xavier_uniform_(self.F, gain=1 / math.sqrt(2))
        self.drop = nn.Dropout(dropout)

    def forward(
        self, q: Tensor, k: Tensor, v: Tensor, *, key_padding_mask: Tensor | None = None,
        causal: bool = False,
    ) -> Tensor:
        if causal:
            raise ValueError("linformer attention is not causal (E K mixes all positions); use causal=False")
        n_keys = k.shape[-2]  # S
        if n_keys > self.max_len:
            raise ValueError(f"linformer: key length S={n_keys} exceeds max_len={self.max_len}; "
                             f"build it with max_len >= {n_keys}")
        e, f = self.E[:, :n_keys], self.F[:, :n_keys]  # (k, S): the first S columns
        return linformer_attention(q, k, v, e, f, key_padding_mask, self.drop)
