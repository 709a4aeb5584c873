"""Optimised, Efficient and Super Attention (Hosseini & Hosseini, "You Need to Pay Better Attention:
Rethinking the Mathematics of Attention Mechanism", arXiv:2403.01643).

The three variants remove learned projections of multi-head SDPA, so most of each lives in the layer:
the entry declares ``Caps.projections`` and :class:`~attnbench.layers.attention.MultiAxisAttention` learns
only those; the others are the input's per-head slices X_i = X[:, i d_k:(i+1) d_k] (d_k = d_model / h):

- ``optimised`` (projections "qk"): V_i = X_i.  H_i = softmax(Q_i K_i^T / sqrt(d_k)) X_i.  3 d^2 weights.
- ``efficient`` (projections "q"): K_i = V_i = X_i.  H_i = softmax(X W^Q_i X_i^T / sqrt(d_k)) X_i.  2 d^2.
- ``super`` (projections "q"): Efficient plus a learned left transform of the values along the sequence,
  W^A (l x l) shared by all heads: H_i = softmax(X W^Q_i X_i^T / sqrt(d_k)) W^A X_i.  2 d^2 + l^2.

Outputs are recombined by the layer's W^O as in SDPA. The kernel of optimised/efficient is SDPA itself.

Super, as the paper's digest (shared/papers/better_attention.md §4) requires and one public
implementation gets wrong: causal use applies tril(W^A) (a dense W^A leaks the future through the values);
padded key rows of X are zeroed before W^A (the attention mask alone does not stop W^A from mixing them in).
W^A needs a fixed length: sequences up to ``max_len`` use its top-left (S x S) block, which equals
zero-padding to ``max_len``. No bias on W^A (the authors' Keras kernel; one PyTorch port adds one) and a
Glorot-uniform init (Keras Dense default); ``init: identity`` starts from Efficient Attention instead.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from attnbench.attention.full import FullAttention, cache_append, full_attention
from attnbench.attention.registry import AttentionBase, Caps, State, register


@register("optimised")
class OptimisedAttention(FullAttention):
    """SDPA whose values are the input's head slices (the layer learns no W^V)."""

    caps = Caps(pretrained_drop_in=False, projections="qk", incremental=True)


@register("efficient")
class EfficientAttention(FullAttention):
    """SDPA whose keys and values are the input's head slices (the layer learns no W^K, W^V)."""

    caps = Caps(pretrained_drop_in=False, projections="q", incremental=True)


def super_values(v: Tensor, w_a: Tensor, key_padding_mask: Tensor | None = None, causal: bool = False) -> Tensor:
    """W^A applied along the sequence of v (B,H,S,Dv) with w_a (>=S, >=S): its (S, S) block, lower-triangular
    when causal; padded rows of v zeroed first. -> (B,H,S,Dv)."""
    S = v.shape[2]
    w = w_a[:S, :S].to(v.dtype)
    if causal:
        w = w.tril()
    if key_padding_mask is not None:
        v = v * key_padding_mask[:, None, :, None].to(v.dtype)
    return torch.einsum("ts,bhsd->bhtd", w, v)


@register("super")
class SuperAttention(AttentionBase):
    """Efficient Attention with W^A (max_len x max_len, shared by heads) on the values."""

    caps = Caps(learned_params=True, pretrained_drop_in=False, fixed_len=True, projections="q",
                permutation_equivariant=False, incremental=True)

    def __init__(self, max_len: int, init: str = "xavier", dropout: float = 0.0) -> None:
        super().__init__()
        if max_len < 1:
            raise ValueError(f"super: max_len={max_len} must be >= 1")
        if init not in ("xavier", "identity"):
            raise ValueError(f"super: init={init!r}; allowed: 'xavier', 'identity'")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"super: dropout={dropout} must be in [0, 1)")
        self.max_len, self.dropout = max_len, dropout
        w = torch.eye(max_len) if init == "identity" else nn.init.xavier_uniform_(torch.empty(max_len, max_len))
        self.w_a = nn.Parameter(w)  # (l, l): row t mixes the value rows s (s <= t when causal)

    def forward(self, q: Tensor, k: Tensor, v: Tensor, *, key_padding_mask: Tensor | None = None,
                causal: bool = False) -> Tensor:
        n_keys = k.shape[2]
        if n_keys > self.max_len:
            raise ValueError(f"super: key length {n_keys} exceeds max_len={self.max_len} (W^A is fixed-size); "
                             f"raise model.net.attention.max_len")
        v = super_values(v, self.w_a, key_padding_mask, causal)
        p = self.dropout if self.training else 0.0
        return full_attention(q, k, v, key_padding_mask=key_padding_mask, causal=causal, dropout_p=p)

    def step(self, q: Tensor, k: Tensor, v: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """Incremental decoding: a key cache, the raw values and the mixed ones (causal W^A: the new token's mixed
        value is row t of W^A over the raw values so far; earlier mixed values do not change)."""
        k_all, v_raw = cache_append(None if state is None else {"k": state["k"], "v": state["v_raw"]}, k, v)
        t = k_all.shape[2]
        if t > self.max_len:
            raise ValueError(f"super: key length {t} exceeds max_len={self.max_len} (W^A is fixed-size); "
                             f"raise model.net.attention.max_len")
        v_t = torch.einsum("s,bhsd->bhd", self.w_a[t - 1, :t].to(v.dtype), v_raw)[:, :, None]  # (B, H, 1, Dv)
        v_mix = v_t if state is None else torch.cat([state["v_mix"], v_t], dim=2)  # (B, H, t, Dv)
        p = self.dropout if self.training else 0.0
        return full_attention(q, k_all, v_mix, dropout_p=p), {"k": k_all, "v_raw": v_raw, "v_mix": v_mix}

    def extra_repr(self) -> str:
        return f"max_len={self.max_len}, dropout={self.dropout}"


def super_attention_reference(x_q: Tensor, x_kv: Tensor, w_q: Tensor, w_a: Tensor, n_heads: int,
                              causal: bool = False) -> Tensor:
    """Super Attention of the paper before W^O, written per head: x_q (L, d), x_kv (S, d), w_q (d, d)
    -> [H_1 ... H_h] (L, d). Efficient Attention when w_a is the identity."""
    d = x_q.shape[-1]
    dk = d // n_heads
    heads = []
    for i in range(n_heads):
        xi = x_kv[:, i * dk:(i + 1) * dk]  # (S, dk)
        qi = x_q @ w_q[:, i * dk:(i + 1) * dk]  # (L, dk)
        s = qi @ xi.T / math.sqrt(dk)  # (L, S)
        wa = w_a[: x_kv.shape[0], : x_kv.shape[0]]
        if causal:
            s = s.masked_fill(torch.ones_like(s, dtype=torch.bool).triu(1), float("-inf"))
            wa = wa.tril()
        heads.append(torch.softmax(s, -1) @ (wa @ xi))
    return torch.cat(heads, -1)
