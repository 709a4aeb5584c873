"""Synthesizer (Tay, Bahri, Metzler, Juan, Zhao, Zheng, "Synthesizer: Rethinking Self-Attention for Transformer
Models", ICML 2021, arXiv:2005.00743).

The attention weights are synthesized without query-key dot products; the values are attended as usual:

    dense:   B_i = W_2 relu(W_1 q_i + b_1) + b_2      (a per-token MLP, D -> D -> max_len; row i from token i alone)
    random:  B = R                                   (a learned (max_len, max_len) matrix, independent of the input)
    Y = softmax(B[:, :S]) V

one MLP / one R per head (the LRA code's R is per head; its dense MLP shares the second layer). ``fixed_random`` is
the paper's Fixed Random Synthesizer: R drawn once and kept (a buffer, not trained). R is drawn N(0, 1), so that a
fixed R mixes the values at random rather than almost uniformly. Keys are ignored; the dense MLP reads the head's
query q_i = W^Q_h x_i (the layer's projection), so the paper's W_1 (d -> d) is here W_1 W^Q_h (d -> D per head). A
key length S < max_len uses the first S logits of each row (the first S columns of R), a longer one raises;
``random`` also takes row i for query i (at most max_len queries). Causal: query i sees keys j <= i + S - L (full
attention's alignment; ``random`` then takes row i + S - L, its position), and its output depends on q_i and
v_{<=i} only, so it also decodes incrementally (a cache of the values). Cross attention: the weights index the memory's
positions. Padded keys are masked, rows with no visible key give zeros. Quadratic: the (L, S) weights are materialised.

Variants of the paper not built: factorized dense / random (low rank) and mixtures with dot-product attention (the
LRA code's ``synthesizer_mode`` and ``ignore_dot_product=False``). :func:`synthesizer_attention_reference` is the
slow reference (explicit sums, ``-inf`` masks) that the tests hold the kernels to.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnbench.attention.full import _mask
from attnbench.attention.nystrom import masked_softmax
from attnbench.attention.registry import AttentionBase, Caps, State, register

VARIANTS = ("dense", "random", "fixed_random")


# ----------------------------------------------------------------------------- pure math
def dense_logits(q: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor, S: int) -> Tensor:
    """Dense synthesizer logits: q (B, H, L, D), per-head MLP w1 (H, D, D), b1 (H, 1, D), w2 (H, D, >= S),
    b2 (H, 1, >= S) -> (B, H, L, S): relu(q W_1 + b_1) W_2 + b_2, the first S outputs of W_2."""
    h = F.relu(torch.matmul(q, w1) + b1)  # (B, H, L, D)
    return torch.matmul(h, w2[..., :S]) + b2[..., :S]  # (B, H, L, S)


def random_logits(r: Tensor, L: int, S: int, causal: bool = False) -> Tensor:
    """Random synthesizer logits: the rows of query positions and the first S columns of r (H, M, M) ->
    (1, H, L, S). Query i is row i; causal: row i + S - L (suffix alignment; rows < 0, which see no key, read
    row 0)."""
    off = S - L if causal else 0
    if off == 0:
        return r[None, :, :L, :S]
    rows = (torch.arange(L, device=r.device) + off).clamp_min(0)  # (L,)
    return r[None, :, rows, :S]


def synthesized_attention(
    logits: Tensor, v: Tensor, key_padding_mask: Tensor | None = None, causal: bool = False, dropout_p: float = 0.0,
) -> Tensor:
    """softmax(logits) v with key padding and causal masks: logits (B|1, H, L, S), v (B, H, S, Dv) ->
    (B, H, L, Dv); rows with no visible key give zeros."""
    L, S = logits.shape[-2:]
    mask = _mask(key_padding_mask, causal, L, S, logits.device)  # (B|1, 1, L|1, S) or None
    attn = masked_softmax(logits, mask)  # (B|1, H, L, S)
    if dropout_p > 0:
        attn = F.dropout(attn, dropout_p)
    return torch.matmul(attn, v)  # (B, H, L, Dv)


def synthesizer_attention_reference(
    logits: Tensor, v: Tensor, key_padding_mask: Tensor | None = None, causal: bool = False,
) -> Tensor:
    """Slow reference: y_i = sum_j w_ij v_j, w_ij = exp(B_ij) / sum_j' exp(B_ij') over the visible keys j, as
    explicit sums; rows with no visible key give zeros."""
    L, S = logits.shape[-2:]
    visible = torch.ones(L, S, dtype=torch.bool)
    if causal:
        visible = torch.arange(S)[None, :] <= torch.arange(L)[:, None] + (S - L)  # (L, S)
    if key_padding_mask is not None:
        visible = visible & key_padding_mask.bool()[:, None, None, :]  # (B, 1, L, S)
    e = torch.where(visible, (logits - logits.amax(dim=-1, keepdim=True)).exp(), torch.zeros(()))
    den = e.sum(dim=-1, keepdim=True)  # (B, H, L, 1)
    w = torch.where(den > 0, e / den.clamp_min(torch.finfo(e.dtype).tiny), torch.zeros(()))
    return torch.einsum("bhls,bhsd->bhld", w.expand(v.shape[0], -1, -1, -1), v)


def dense_logits_reference(q: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor, S: int) -> Tensor:
    """Slow reference of :func:`dense_logits` as explicit per-head sums."""
    h = torch.clamp(torch.einsum("bhld,hde->bhle", q, w1) + b1[None], min=0.0)
    return torch.einsum("bhle,hes->bhls", h, w2[..., :S]) + b2[None, ..., :S]


# ----------------------------------------------------------------------------- module
@register("synthesizer")
class SynthesizerAttention(AttentionBase):
    """Attention weights synthesized per token (dense) or learned / fixed per position pair (random)."""

    # Weights over key positions: fixed_len; per-head parameters (n_heads); the output at i reads q_i and the values
    # only, so causal self / causal cross hold and decoding caches the values.
    caps = Caps(learned_params=True, pretrained_drop_in=False, fixed_len=True, permutation_equivariant=False,
                needs_head_dim=True, needs_n_heads=True, incremental=True)

    def __init__(self, head_dim: int, n_heads: int, max_len: int,
                 variant: Literal["dense", "random", "fixed_random"] = "dense", dropout: float = 0.0) -> None:
        super().__init__()
        if head_dim < 1 or n_heads < 1 or max_len < 1:
            raise ValueError(f"synthesizer: head_dim={head_dim}, n_heads={n_heads} and max_len={max_len} must be >= 1")
        if variant not in VARIANTS:
            raise ValueError(f"synthesizer: variant={variant!r}; allowed: {', '.join(VARIANTS)}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"synthesizer: dropout={dropout} must be in [0, 1)")
        self.head_dim, self.n_heads, self.max_len = head_dim, n_heads, max_len
        self.variant, self.dropout = variant, dropout
        H, D, M = n_heads, head_dim, max_len
        if variant == "dense":
            # per head, as nn.Linear(D, D) and nn.Linear(D, max_len) initialise: U(-1/sqrt(D), 1/sqrt(D))
            bound = 1 / math.sqrt(D)
            self.w1 = nn.Parameter(torch.empty(H, D, D).uniform_(-bound, bound))  # (H, D, D)
            self.b1 = nn.Parameter(torch.empty(H, 1, D).uniform_(-bound, bound))  # (H, 1, D)
            self.w2 = nn.Parameter(torch.empty(H, D, M).uniform_(-bound, bound))  # (H, D, max_len)
            self.b2 = nn.Parameter(torch.empty(H, 1, M).uniform_(-bound, bound))  # (H, 1, max_len)
        elif variant == "random":
            self.R = nn.Parameter(torch.randn(H, M, M))  # (H, max_len, max_len)
        else:
            self.register_buffer("R", torch.randn(H, M, M))  # (H, max_len, max_len), never trained

    def _check(self, L: int, S: int, causal: bool, head: int) -> None:
        if head != self.n_heads:
            raise ValueError(f"synthesizer: built for n_heads={self.n_heads}, got {head} heads")
        if self.max_len < S:
            raise ValueError(f"synthesizer: key length S={S} exceeds max_len={self.max_len}; "
                             f"build it with max_len >= {S}")
        if self.variant != "dense" and not causal and self.max_len < L:
            raise ValueError(f"synthesizer: query length L={L} exceeds max_len={self.max_len} (variant "
                             f"{self.variant!r} has a row per query position); build it with max_len >= {L}")

    def logits(self, q: Tensor, S: int, causal: bool = False) -> Tensor:
        """The synthesized (B|1, H, L, S) logits for queries q (B, H, L, D) over S keys."""
        if self.variant == "dense":
            if q.shape[-1] != self.head_dim:
                raise ValueError(f"synthesizer: built for head_dim={self.head_dim}, got q head size {q.shape[-1]}")
            return dense_logits(q, self.w1, self.b1, self.w2, self.b2, S)
        return random_logits(self.R, q.shape[-2], S, causal).to(q.dtype)

    def forward(
        self, q: Tensor, k: Tensor, v: Tensor, *, key_padding_mask: Tensor | None = None,
        causal: bool = False,
    ) -> Tensor:
        L, S = q.shape[-2], v.shape[-2]
        self._check(L, S, causal, q.shape[1])
        p = self.dropout if self.training else 0.0
        out = synthesized_attention(self.logits(q, S, causal), v, key_padding_mask, causal, p)  # (B, H, L, Dv)
        # The keys take no part. They join the graph with weight 0 (where() selects the 0: their values, padding
        # garbage included, cannot reach the output) because the registry's contract gives every input a gradient;
        # their gradient is zeros. Caps has no flag for an entry without keys (projections "qkv" | "qk" | "q").
        return out + torch.where(torch.zeros((), dtype=torch.bool, device=k.device), k.sum(), 0.0)

    def step(self, q: Tensor, k: Tensor, v: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """Incremental decoding with a cache of the values: state {"v": (B, H, t, Dv)}; token t attends with row t
        of the synthesized weights (the causal pass's last row)."""
        if q.shape[-2] != 1 or v.shape[-2] != 1:
            raise ValueError(f"step takes one token: q, v (B, H, 1, D), got {tuple(q.shape)}, {tuple(v.shape)}")
        v_all = v if state is None else torch.cat([state["v"], v], dim=-2)  # (B, H, t, Dv)
        return self.forward(q, k, v_all, causal=True), {"v": v_all}
