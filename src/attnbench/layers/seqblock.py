"""Encoder and decoder layers over token sequences (B, L, E) whose attentions are any registry entry.

The shared building blocks of the sequence models (LRA encoder, CAB's encoder-decoders, language models):
``SeqEncoderLayer`` = self-attention + MLP; ``SeqDecoderLayer`` = (causal) self-attention + cross-attention to a
memory + MLP. ``norm="pre"``: x + Drop(f(LN(x))) (GPT-2, LRA); ``norm="post"``: LN(x + Drop(f(x))) (the original
Transformer, Informer, BERT). Attentions go through :class:`~attnbench.layers.attention.MultiAxisAttention`
(one axis), so capability refusals (causal, padding, cross) come from the registry.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from torch import Tensor, nn

from attnbench.attention.registry import State
from attnbench.layers.attention import MultiAxisAttention
from attnbench.layers.mlp import MLPS

NORMS = ("pre", "post")


def _attention(d_model: int, n_heads: int, attention: Mapping[str, Any], dropout: float, qk_norm: bool,
               bias: bool, qkv_dim: int | None = None, max_len: int | None = None) -> MultiAxisAttention:
    return MultiAxisAttention(d_model, n_heads, 1, attention, qk_norm=qk_norm, dropout=dropout, bias=bias,
                              qkv_dim=qkv_dim, max_len=max_len)


class _Residual(nn.Module):
    """One residual branch with its LayerNorm placed by ``norm``."""

    def __init__(self, d_model: int, norm: str, dropout: float) -> None:
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"norm={norm!r}; allowed: {', '.join(NORMS)}")
        self.pre = norm == "pre"
        self.ln = nn.LayerNorm(d_model)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, f) -> Tensor:
        if self.pre:
            return x + self.drop(f(self.ln(x)))
        return self.ln(x + self.drop(f(x)))


class SeqEncoderLayer(nn.Module):
    """Self-attention then MLP. (B, L, E) -> (B, L, E). qkv_dim, max_len: as in MultiAxisAttention (the q/k/v width,
    default d_model; the longest sequence, for fixed-length entries)."""

    def __init__(
        self, d_model: int, n_heads: int, d_mlp: int, attention: Mapping[str, Any], dropout: float = 0.0,
        attn_dropout: float = 0.0, norm: Literal["pre", "post"] = "pre", mlp: Literal["gelu", "swiglu"] = "gelu",
        qk_norm: bool = False, bias: bool = True, qkv_dim: int | None = None, max_len: int | None = None,
    ) -> None:
        super().__init__()
        if mlp not in MLPS:
            raise ValueError(f"mlp={mlp!r}; allowed: {', '.join(MLPS)}")
        self.attn = _attention(d_model, n_heads, attention, attn_dropout, qk_norm, bias, qkv_dim, max_len)
        self.mlp = MLPS[mlp](d_model, d_mlp, dropout)
        self.res1 = _Residual(d_model, norm, dropout)
        self.res2 = _Residual(d_model, norm, dropout)

    def forward(self, x: Tensor, key_padding_mask: Tensor | None = None, causal: bool = False) -> Tensor:
        """x (B, L, E); key_padding_mask (B, L) bool, True = real token; causal: token i sees j <= i."""
        x = self.res1(x, lambda h: self.attn(h, key_padding_mask=key_padding_mask, causal=causal))
        return self.res2(x, self.mlp)

    def step(self, x_t: Tensor, cache: State | None = None) -> tuple[Tensor, State]:
        """Incremental causal decoding, one token: x_t (B, 1, E), ``cache`` from the previous step (None at the
        first) -> (y_t (B, 1, E), cache); y_t equals row t of ``forward(x_1..t, causal=True)``."""
        y, cache = _stepped(self.res1, x_t, lambda h: self.attn.step(h, cache))
        return self.res2(y, self.mlp), cache


class SeqDecoderLayer(nn.Module):
    """Self-attention (``self_attention`` entry, causal by default), cross-attention to ``memory``
    (``cross_attention`` entry), MLP. (B, T, E), memory (B, S, E) -> (B, T, E)."""

    def __init__(
        self, d_model: int, n_heads: int, d_mlp: int, self_attention: Mapping[str, Any],
        cross_attention: Mapping[str, Any], dropout: float = 0.0, attn_dropout: float = 0.0,
        norm: Literal["pre", "post"] = "pre", mlp: Literal["gelu", "swiglu"] = "gelu", qk_norm: bool = False,
        bias: bool = True,
    ) -> None:
        super().__init__()
        if mlp not in MLPS:
            raise ValueError(f"mlp={mlp!r}; allowed: {', '.join(MLPS)}")
        self.self_attn = _attention(d_model, n_heads, self_attention, attn_dropout, qk_norm, bias)
        self.cross_attn = _attention(d_model, n_heads, cross_attention, attn_dropout, qk_norm, bias)
        self.mlp = MLPS[mlp](d_model, d_mlp, dropout)
        self.res1 = _Residual(d_model, norm, dropout)
        self.res2 = _Residual(d_model, norm, dropout)
        self.res3 = _Residual(d_model, norm, dropout)

    def forward(
        self, x: Tensor, memory: Tensor, padding_mask: Tensor | None = None,
        memory_padding_mask: Tensor | None = None, causal: bool = True, causal_cross: bool = False,
    ) -> Tensor:
        """x (B, T, E), memory (B, S, E); padding masks (B, T) / (B, S) bool, True = real token.
        causal: decoder self-attention sees j <= i; causal_cross: ask for CAB's causal cross (CC): the memory stays
        fully visible, and an entry whose queries mix (``caps.causal_cross=False``) is refused."""
        x = self.res1(x, lambda h: self.self_attn(h, key_padding_mask=padding_mask, causal=causal))
        x = self.res2(x, lambda h: self.cross_attn(h, context=memory, key_padding_mask=memory_padding_mask,
                                                   causal=causal_cross))
        return self.res3(x, self.mlp)

    def step(
        self, x_t: Tensor, memory: Tensor, cache: dict[str, State] | None = None,
        memory_padding_mask: Tensor | None = None,
    ) -> tuple[Tensor, dict[str, State]]:
        """Incremental decoding, one token: x_t (B, 1, E), memory (B, S, E) (the same at every step),
        ``cache`` from the previous step (None at the first) -> (y_t (B, 1, E), cache); y_t equals row t of
        ``forward(x_1..t, memory, causal=True)``. The self-attention entry needs ``caps.incremental``, the cross one
        ``caps.causal_cross``."""
        cache = cache or {}
        x, s = _stepped(self.res1, x_t, lambda h: self.self_attn.step(h, cache.get("self")))
        x, c = _stepped(self.res2, x, lambda h: self.cross_attn.step(h, cache.get("cross"), context=memory,
                                                                    key_padding_mask=memory_padding_mask))
        return self.res3(x, self.mlp), {"self": s, "cross": c}


def _stepped(res: _Residual, x: Tensor, f) -> tuple[Tensor, State]:
    """``res(x, f)`` for an ``f`` returning (output, state): the residual branch's output and f's state."""
    out: list[State] = []

    def g(h: Tensor) -> Tensor:
        y, state = f(h)
        out.append(state)
        return y

    return res(x, g), out[0]
