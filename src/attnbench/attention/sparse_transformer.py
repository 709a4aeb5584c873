"""Sparse Transformer attention (Child, Gray, Radford, Sutskever, "Generating Long Sequences with Sparse
Transformers", arXiv:1904.10509): the two factorized patterns merged into one head, as LRA ran it.

With stride l (``stride``) and c (``c``), query i attends key j when (and j <= i when causal; padded keys never)

    strided:  |i - j| < l  or  (i - j) mod l = 0          A(1): the previous l positions, A(2): every l-th
    fixed:    floor(j / l) = floor(i / l)                  A(1): its own block of l
              or j mod l in {0} u [l - c, l - 1]           A(2): the summary positions of every block

The paper writes A(2) of fixed as j mod l in {t, ..., l}, t = l - c; LRA's code (``sparse_attention.Fixed2Pattern``)
reads l mod l as 0, so each block has c + 1 summary positions: its first and its last c; we follow LRA (its
``Fixed1Pattern(50)`` + ``Fixed2Pattern(50, c=10)`` are the LRA defaults here). DeepSpeed's ``FixedSparsityConfig``
takes the last c only (``scripts/official/compare_sparse_transformer.py`` measures both). The paper and LRA define
the patterns causally (LRA applies them causally even in its classifier encoder, where its CLS token, prepended, also
attends and is attended by every token: not modelled here); without ``causal`` the windows and strides reach both
ways, as written above.

Cost: strided O(L (3 l + L / l)), fixed O(L (l + (c + 1) L / l)): quadratic in L at a fixed l, by a factor
(c + 1) / l for fixed (11/50 at LRA's) and 1 / l for strided; the paper takes l ~ sqrt(L) for O(L sqrt(L)).

:func:`strided_attention` scores each query block of l against its neighbouring key blocks (the window) and, in the
residue layout (positions a, a + l, a + 2 l, ...), against every key of its residue class (the stride); the two score
sets are concatenated per query into one masked softmax (the key j = i, in both, is kept in the window only).
:func:`fixed_attention` scores each block against itself and every query against the summary keys (gathered once,
the query's own block left to the first set). Memory: the scores, L (3 l + L / l) resp. L (l + (c + 1) L / l),
never (L, L). :func:`sparse_transformer_attention_reference` is the dense-mask reference.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from attnbench.attention.block_sparse import (
    blocked,
    keep_mask,
    masked_attention_reference,
    masked_softmax,
    neighbour_blocks,
)
from attnbench.attention.registry import AttentionBase, Caps, register

Pattern = Literal["fixed", "strided"]


# ----------------------------------------------------------------------------- pure math
def summary_positions(stride: int, c: int) -> list[int]:
    """The summary offsets of a block in the fixed pattern: 0 and the last c, sorted (LRA's Fixed2Pattern)."""
    return sorted({0, *range(stride - c, stride)})


def sparse_transformer_mask(L: int, pattern: Pattern, stride: int, c: int, causal: bool,
                            device: torch.device | None = None) -> Tensor:
    """The dense (L, L) pattern, True = attend (padding not included)."""
    i = torch.arange(L, device=device)[:, None]  # (L, 1)
    j = torch.arange(L, device=device)[None, :]  # (1, L)
    if pattern == "strided":
        allowed = ((i - j).abs() < stride) | ((i - j) % stride == 0)
    elif pattern == "fixed":
        allowed = (i // stride == j // stride) | (j % stride == 0) | (j % stride >= stride - c)
    else:
        raise ValueError(f"sparse_transformer: pattern={pattern!r}; allowed: 'fixed', 'strided'")
    return allowed & (j <= i) if causal else allowed


def strided_attention(
    q: Tensor, k: Tensor, v: Tensor, stride: int, key_padding_mask: Tensor | None = None, causal: bool = False,
    dropout_p: float = 0.0,
) -> Tensor:
    """The strided pattern (window |i - j| < l, or (i - j) mod l = 0). (B,H,L,D) -> (B,H,L,Dv)."""
    B, H, L, D = q.shape
    l = stride  # noqa: E741 (the paper's notation)
    qb = blocked(q * D**-0.5, l)  # (B, H, m, l, D): query n l + a is qb[:, :, n, a]
    kb, vb = blocked(k, l), blocked(v, l)
    m = qb.shape[2]
    keep = keep_mask(key_padding_mask, B, L, m * l, q.device).view(B, m, l)  # (B, m, l)
    offs = range(-1, 1 if causal else 2)  # key blocks n - 1, n (, n + 1) hold the window

    # window: key c of block n's window is position (n - 1) l + c
    i = torch.arange(m * l, device=q.device).view(m, l, 1)  # (m, l, 1)
    j = (torch.arange(m, device=q.device)[:, None] - 1) * l + torch.arange(len(offs) * l, device=q.device)
    j = j[:, None, :]  # (m, 1, n_off l)
    band = ((i - j).abs() < l) & ((j <= i) if causal else True)
    real_win = neighbour_blocks(keep[:, None, :, :, None], offs)[:, 0, :, None, :, 0]  # (B, m, 1, n_off l)
    s_win = qb @ neighbour_blocks(kb, offs).transpose(-1, -2)  # (B, H, m, l, n_off l)

    # stride: in the residue layout (B, H, l, m, .) query n l + a meets the keys t l + a of its residue class a
    s_str = qb.transpose(2, 3) @ kb.transpose(2, 3).transpose(-1, -2)  # (B, H, l, m, m): [a, n, t]
    s_str = s_str.transpose(2, 3)  # (B, H, m, l, m): [n, a, t]
    n, t = torch.arange(m, device=q.device)[:, None, None], torch.arange(m, device=q.device)[None, None, :]
    other = (t < n) if causal else (t != n)  # (m, 1, m): t = n is j = i, already in the window
    real_str = keep.transpose(1, 2)[:, None]  # (B, 1, l, m): [., a, t]

    mask = torch.cat([(band & real_win).expand(B, m, l, -1), (other & real_str).expand(B, m, l, m)], dim=-1)
    w = masked_softmax(torch.cat([s_win, s_str], dim=-1), mask[:, None], dropout_p)  # (B, H, m, l, n_off l + m)
    w_win, w_str = w.split([len(offs) * l, m], dim=-1)
    out = w_win @ neighbour_blocks(vb, offs)  # (B, H, m, l, Dv)
    out = out + (w_str.transpose(2, 3) @ vb.transpose(2, 3)).transpose(2, 3)  # [a, n, t] @ [a, t, Dv]
    dead = ~mask.any(dim=-1)[:, None, :, :, None]  # (B, 1, m, l, 1) rows with no key
    return out.masked_fill(dead, 0.0).flatten(2, 3)[:, :, :L]


def fixed_attention(
    q: Tensor, k: Tensor, v: Tensor, stride: int, c: int, key_padding_mask: Tensor | None = None,
    causal: bool = False, dropout_p: float = 0.0,
) -> Tensor:
    """The fixed pattern (own block of l, or a summary position of any block). (B,H,L,D) -> (B,H,L,Dv)."""
    B, H, L, D = q.shape
    l = stride  # noqa: E741 (the paper's notation)
    qb = blocked(q * D**-0.5, l)  # (B, H, m, l, D)
    kb, vb = blocked(k, l), blocked(v, l)
    m = qb.shape[2]
    keep = keep_mask(key_padding_mask, B, L, m * l, q.device).view(B, m, l)  # (B, m, l)
    summ = torch.tensor(summary_positions(l, c), device=q.device)  # (ns,)
    ns = summ.numel()

    # own block
    s_own = qb @ kb.transpose(-1, -2)  # (B, H, m, l, l)
    own = keep[:, :, None, :]  # (B, m, 1, l)
    if causal:
        own = own & torch.ones(l, l, dtype=torch.bool, device=q.device).tril()  # (B, m, l, l)
    # summary keys of every block, gathered once: key (t, s) is position t l + summ[s]
    k_sum, v_sum = kb[:, :, :, summ].flatten(2, 3), vb[:, :, :, summ].flatten(2, 3)  # (B, H, m ns, D|Dv)
    s_sum = (qb.flatten(2, 3) @ k_sum.transpose(-1, -2)).unflatten(2, (m, l))  # (B, H, m, l, m ns)
    n = torch.arange(m, device=q.device)[:, None]  # (m, 1)
    t = torch.arange(m, device=q.device).repeat_interleave(ns)[None, :]  # (1, m ns)
    other = (t < n) if causal else (t != n)  # (m, m ns): summaries of the own block are in the first set
    real_sum = keep[:, :, summ].flatten(1, 2)[:, None, None, :]  # (B, 1, 1, m ns)

    mask = torch.cat([own.expand(B, m, l, l), (other[:, None, :] & real_sum).expand(B, m, l, m * ns)], dim=-1)
    w = masked_softmax(torch.cat([s_own, s_sum], dim=-1), mask[:, None], dropout_p)  # (B, H, m, l, l + m ns)
    w_own, w_sum = w.split([l, m * ns], dim=-1)
    out = w_own @ vb + (w_sum.flatten(2, 3) @ v_sum).unflatten(2, (m, l))  # (B, H, m, l, Dv)
    dead = ~mask.any(dim=-1)[:, None, :, :, None]  # (B, 1, m, l, 1) rows with no key
    return out.masked_fill(dead, 0.0).flatten(2, 3)[:, :, :L]


def sparse_transformer_attention(
    q: Tensor, k: Tensor, v: Tensor, pattern: Pattern, stride: int, c: int, key_padding_mask: Tensor | None = None,
    causal: bool = False, dropout_p: float = 0.0,
) -> Tensor:
    """The ``pattern`` kernel (self-attention). (B,H,L,D) -> (B,H,L,Dv)."""
    if pattern == "strided":
        return strided_attention(q, k, v, stride, key_padding_mask, causal, dropout_p)
    if pattern == "fixed":
        return fixed_attention(q, k, v, stride, c, key_padding_mask, causal, dropout_p)
    raise ValueError(f"sparse_transformer: pattern={pattern!r}; allowed: 'fixed', 'strided'")


def sparse_transformer_attention_reference(
    q: Tensor, k: Tensor, v: Tensor, pattern: Pattern, stride: int, c: int, key_padding_mask: Tensor | None = None,
    causal: bool = False,
) -> Tensor:
    """Slow reference: the dense pattern of :func:`sparse_transformer_mask` and the padding on explicit scores."""
    allowed = sparse_transformer_mask(q.shape[2], pattern, stride, c, causal, q.device)  # (L, L)
    if key_padding_mask is not None:
        allowed = allowed & key_padding_mask.bool()[:, None, None, :]  # (B, 1, L, L)
    return masked_attention_reference(q, k, v, allowed)


# ----------------------------------------------------------------------------- module
@register("sparse_transformer")
class SparseTransformerAttention(AttentionBase):
    """Sparse Transformer's ``fixed`` or ``strided`` pattern, both heads' sets merged (self-attention only)."""

    # Positions i and j index one sequence: no cross attention. Blocks and strides make it position-dependent.
    caps = Caps(cross_attention=False, causal_cross=False, permutation_equivariant=False)

    def __init__(self, pattern: Pattern = "fixed", stride: int = 50, c: int = 10, dropout: float = 0.0) -> None:
        super().__init__()
        if pattern not in ("fixed", "strided"):
            raise ValueError(f"sparse_transformer: pattern={pattern!r}; allowed: 'fixed', 'strided'")
        if stride < 1:
            raise ValueError(f"sparse_transformer: stride={stride} must be >= 1")
        if pattern == "fixed" and not 0 <= c < stride:  # c is the fixed pattern's (strided has no summaries)
            raise ValueError(f"sparse_transformer: c={c} must be in [0, stride={stride}) (summary positions per "
                             "block of the fixed pattern)")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"sparse_transformer: dropout={dropout} must be in [0, 1)")
        self.pattern, self.stride, self.c, self.dropout = pattern, stride, c, dropout

    def forward(
        self, q: Tensor, k: Tensor, v: Tensor, *, key_padding_mask: Tensor | None = None, causal: bool = False,
    ) -> Tensor:
        L, S = q.shape[-2], k.shape[-2]
        if L != S:
            raise ValueError(f"sparse_transformer attention needs as many queries as keys (self-attention), got "
                             f"L={L}, S={S}")
        p = self.dropout if self.training else 0.0
        return sparse_transformer_attention(q, k, v, self.pattern, self.stride, self.c, key_padding_mask, causal, p)
