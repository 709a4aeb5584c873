"""Multi-head attention over a token tensor (B, *axes, E) calling any registry entry."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from attnbench.attention.hot import ProjectedTokens
from attnbench.attention.registry import State, build, get, require
from attnbench.layers.rope import apply_rope

# Sizes the layer fills in itself (``build``'s sizes); an attention config may not set them.
LAYER_PROVIDED = ("head_dim", "n_heads")


class MultiAxisAttention(nn.Module):
    """Project, call an attention, recombine heads.

    Sequence attentions see the axes flattened to one (B, H, N, D) sequence, N = prod(axes); tensor
    attentions (``caps.tensor``) see (B, H, *axes, D). The layer owns the learned q/k LayerNorm and RoPE:
    per token for sequence attentions, on the pooled per-axis queries/keys for tensor attentions (the
    HOT code's order: pool, LayerNorm, RoPE).

    Projections follow the entry's ``caps.projections``: "qkv" learns W^Q, W^K, W^V; "qk" uses the input's
    per-head slices X_i as values, "q" as keys and values ("You need to pay better attention"; X_i is not
    LayerNormed here, RoPE still applies). An entry built with ``shared_qk=True`` (Reformer) gets one
    shared query/key projection: k is the very tensor q (self-attention only).

    qkv_dim: width of the queries, keys and values (all heads; default d_model), as LRA's ``qkv_dim`` (e.g. width
    128 with qkv 64); max_len: the longest sequence, passed to entries that need it (``caps.fixed_len``: Linformer)
    when their config leaves ``max_len`` null.

    ``forward`` takes a key padding mask and a causal flag; an entry lacking the capability is refused with
    :class:`~attnbench.attention.registry.CapabilityError` naming the entries that have it.

    attention: ``{"name": <registry key>, **options}``.
    """

    def __init__(
        self, d_model: int, n_heads: int, n_axes: int, attention: Mapping[str, Any], qk_norm: bool = True,
        rope_axes: Sequence[int] = (), rope_base: float = 10000.0, per_axis_qk: bool = False,
        dropout: float = 0.0, bias: bool = True, qkv_dim: int | None = None, max_len: int | None = None,
    ) -> None:
        super().__init__()
        inner = d_model if qkv_dim is None else qkv_dim  # the width of q, k, v (all heads)
        if inner % n_heads:
            raise ValueError(f"n_heads={n_heads} must divide {'qkv_dim' if qkv_dim else 'd_model'}={inner}")
        opts = dict(attention)
        if "name" not in opts:
            raise ValueError("attention config needs a 'name' (a registry key)")
        name = opts.pop("name")
        cls = get(name)
        for key in LAYER_PROVIDED:
            if key in opts:
                raise ValueError(f"attention option {key!r} is set by the layer; remove it from the config")
        if per_axis_qk and not cls.caps.per_axis_qk:
            raise ValueError(f"per_axis_qk=True but attention {name!r} takes one query/key tensor; set it false")
        bad = [a for a in rope_axes if not 0 <= a < n_axes]
        if bad:
            raise ValueError(f"rope_axes={list(rope_axes)} out of range for a tensor with {n_axes} axes")
        proj = cls.caps.projections
        if proj != "qkv" and inner != d_model:
            raise ValueError(f"qkv_dim={qkv_dim} != d_model={d_model}, but attention {name!r} takes the input's "
                             f"per-head slices as values (projections={proj!r}): leave qkv_dim unset")
        sizes = {"head_dim": inner // n_heads, "n_heads": n_heads} | ({} if max_len is None else {"max_len": max_len})
        self.attn = build(name, sizes, **opts)
        self.tensor = cls.caps.tensor
        self.shared_qk = self.attn.shared_qk
        self.n_heads, self.head_dim, self.n_axes = n_heads, inner // n_heads, n_axes
        self.n_qk = n_axes if per_axis_qk else 1
        learn_k = "k" in proj and not self.shared_qk
        self.q_proj = nn.Linear(d_model, inner * self.n_qk, bias=bias)
        self.k_proj = nn.Linear(d_model, inner * self.n_qk, bias=bias) if learn_k else None
        self.v_proj = nn.Linear(d_model, inner, bias=bias) if "v" in proj else None
        self.o_proj = nn.Linear(inner, d_model, bias=bias)
        self.q_norm = nn.LayerNorm(self.head_dim) if qk_norm else nn.Identity()
        self.k_norm = nn.LayerNorm(self.head_dim) if qk_norm and learn_k else nn.Identity()
        self.rope_axes, self.rope_base = tuple(rope_axes), rope_base
        self.drop = nn.Dropout(dropout)
        # an entry that pools q and k (HOT) gets the tokens to pool before projecting (ProjectedTokens); False: the
        # slow reference, every token projected (set_fast_paths)
        self.pool_first = True

    def _heads(self, t: Tensor, n: int) -> list[Tensor]:
        """(B, *axes, n*H*D) -> n tensors (B, H, *axes, D)."""
        t = t.unflatten(-1, (n, self.n_heads, self.head_dim))  # (B, *axes, n, H, D)
        return [t.select(-3, i).movedim(-2, 1) for i in range(n)]

    def _projected(self, proj: nn.Linear, t: Tensor, n: int) -> list[ProjectedTokens]:
        """``_heads(proj(t), n)`` left unformed: n lazy (B, H, *axes, D) projections (one slice of proj each)."""
        E = self.n_heads * self.head_dim
        return [ProjectedTokens(t, proj.weight[i * E:(i + 1) * E],
                                None if proj.bias is None else proj.bias[i * E:(i + 1) * E], self.n_heads)
                for i in range(n)]

    def _qk_hook(self, t: Tensor, axis: int, which: str) -> Tensor:
        """LayerNorm and RoPE on a pooled per-axis (B, H, N_axis, D) query or key, in the layer's dtype (an
        fp32 entry calls it on fp32 tensors; a bf16-true model's norms are bf16), returned in the caller's."""
        dt, t = t.dtype, t.to(self.q_proj.weight.dtype)
        t = self.q_norm(t) if which == "q" else self.k_norm(t)
        return (apply_rope(t, -2, self.rope_base) if axis in self.rope_axes else t).to(dt)

    def forward(
        self, x: Tensor, context: Tensor | None = None, key_padding_mask: Tensor | None = None,
        causal: bool = False,
    ) -> Tensor:
        """x (B, *axes, E); context (B, *axes', E) for cross attention -> (B, *axes, E).

        key_padding_mask (B, N') bool, True = real key, N' = prod(axes') (prod(axes) in self-attention), over the
        flattened tokens (tensor entries get it as (B, *axes'); HOT takes padding along axes, e.g. the sequence
        axis: masks that are products of per-axis masks). In self-attention it is the queries' padding too: entries with
        ``caps.query_padding_mask`` (SMYRF) get it, so padded queries take no cluster slot and the real tokens'
        outputs do not depend on the amount of padding. Other entries compute every query (padded rows are
        garbage to be ignored downstream). causal: query i sees keys j <= i (flattened order); with a context it asks
        for CAB's causal cross (CC): the memory stays fully visible and the entry must process queries independently
        (``caps.causal_cross``), so query i's output equals the run on the queries <= i. Entries without
        ``caps.key_padding_mask`` / ``caps.causal`` / ``caps.causal_cross`` / ``caps.self_attention`` /
        ``caps.cross_attention`` raise CapabilityError when asked.
        """
        if x.dim() - 2 != self.n_axes:
            raise ValueError(f"expected (B, {self.n_axes} axes, E), got shape {tuple(x.shape)}")
        if self.shared_qk and context is not None:
            raise ValueError("a shared query/key projection (shared_qk=True) is self-attention only")
        ctx = x if context is None else context
        cross = context is not None
        require(type(self.attn), key_padding_mask=key_padding_mask is not None, self_attention=not cross,
                cross_attention=cross, causal=causal and not cross, causal_cross=causal and cross)
        causal = causal and not cross  # causal cross (CAB's CC): the memory stays fully visible
        extra = {}  # self-attention: the padding mask is the query mask too
        if key_padding_mask is not None:
            n_keys = ctx.shape[1:-1].numel()
            if key_padding_mask.shape != (ctx.shape[0], n_keys) or key_padding_mask.dtype != torch.bool:
                raise ValueError(f"key_padding_mask must be a (B, N') = ({ctx.shape[0]}, {n_keys}) bool tensor "
                                 f"(True = real token, over the flattened tokens); got {key_padding_mask.dtype} "
                                 f"{tuple(key_padding_mask.shape)}")
            if context is None and type(self.attn).caps.query_padding_mask:
                extra["query_padding_mask"] = key_padding_mask
        if self.pool_first and type(self.attn).caps.projected_tokens:  # HOT: pool, then project
            qs = self._projected(self.q_proj, x, self.n_qk)
            ks = (self._projected(self.k_proj, ctx, self.n_qk) if self.k_proj is not None
                  else self._heads(ctx, self.n_qk))
        else:
            qs = self._heads(self.q_proj(x), self.n_qk)  # n_qk x (B, H, *axes, D)
            ks = self._heads(self.k_proj(ctx) if self.k_proj is not None else ctx, self.n_qk)  # X_i if unprojected
        (v,) = self._heads(self.v_proj(ctx) if self.v_proj is not None else ctx, 1)  # (B, H, *axes', D)
        if self.tensor:  # masks over the token grid: (B, *axes') (HOT: products of per-axis masks)
            q = qs[0] if self.n_qk == 1 else tuple(qs)
            k = ks[0] if self.n_qk == 1 else tuple(ks)
            kpm = None if key_padding_mask is None else key_padding_mask.unflatten(1, ctx.shape[1:-1])
            extra = {key: m.unflatten(1, x.shape[1:-1]) for key, m in extra.items()}
            y = self.attn(q, k, v, key_padding_mask=kpm, causal=causal, qk_hook=self._qk_hook, **extra)
        else:
            q, k = self.q_norm(qs[0]), self.k_norm(ks[0])
            for a in self.rope_axes:
                q, k = apply_rope(q, 2 + a, self.rope_base), apply_rope(k, 2 + a, self.rope_base)
            if self.shared_qk:
                k = q  # the same tensor: one projection, one norm, one rotation
            axes = q.shape[2:-1]
            y = self.attn(q.flatten(2, -2), k.flatten(2, -2), v.flatten(2, -2),  # (B, H, N, D)
                          key_padding_mask=key_padding_mask, causal=causal, **extra)
            y = y.unflatten(2, axes)  # (B, H, *axes, D)
        y = y.movedim(1, -2).flatten(-2)  # (B, *axes, E)
        return self.drop(self.o_proj(y))

    def step(
        self, x_t: Tensor, cache: State | None = None, context: Tensor | None = None,
        key_padding_mask: Tensor | None = None,
    ) -> tuple[Tensor, State]:
        """Incremental decoding, one token: x_t (B, 1, E), ``cache`` from the previous step (None at the first)
        -> (y_t (B, 1, E), new cache); y_t equals row t of ``forward`` on the tokens so far.

        Without ``context``: causal self-attention through the entry's state cache (``caps.incremental``). With
        ``context`` (B, S, E), the fixed memory, and its ``key_padding_mask`` (B, S): causal cross attention (CAB's
        CC, ``caps.causal_cross``); the memory's keys and values are projected at the first step and cached.
        Sequence layers (one axis) without RoPE only.
        """
        cross = context is not None
        require(type(self.attn), self_attention=not cross, incremental=not cross, cross_attention=cross,
                causal_cross=cross)
        if self.n_axes != 1 or self.tensor or self.rope_axes:
            raise ValueError("step: sequence layers only (n_axes=1, a sequence entry, no rope_axes)")
        if x_t.dim() != 3 or x_t.shape[1] != 1:
            raise ValueError(f"step takes one token x_t (B, 1, E), got shape {tuple(x_t.shape)}")
        if key_padding_mask is not None and not cross:
            raise ValueError("step: key_padding_mask is the memory's (cross); self-attention steps are real tokens")
        (q,) = self._heads(self.q_proj(x_t), 1)  # (B, H, 1, D)
        q = self.q_norm(q)
        if cross:
            if cache is None:  # project the memory once: (B, H, S, D), (B, H, S, Dv)
                (k,) = self._heads(self.k_proj(context) if self.k_proj is not None else context, 1)
                (v,) = self._heads(self.v_proj(context) if self.v_proj is not None else context, 1)
                cache = {"k": self.k_norm(k), "v": v}
            y = self.attn(q, cache["k"], cache["v"], key_padding_mask=key_padding_mask)  # (B, H, 1, Dv)
        else:
            (k,) = self._heads(self.k_proj(x_t) if self.k_proj is not None else x_t, 1)  # (B, H, 1, D)
            (v,) = self._heads(self.v_proj(x_t) if self.v_proj is not None else x_t, 1)
            y, cache = self.attn.step(q, self.k_norm(k), v, cache)  # (B, H, 1, Dv)
        return self.drop(self.o_proj(y.movedim(1, -2).flatten(-2))), cache  # (B, 1, E)


def set_fast_paths(model: nn.Module, enabled: bool) -> nn.Module:
    """Switch the fast paths of every :class:`MultiAxisAttention` in ``model`` on, or off to their slow references
    (the same function to float rounding: ``tests/test_hot_speed.py``); returns ``model``."""
    for m in model.modules():
        if isinstance(m, MultiAxisAttention):
            m.pool_first = enabled
    return model
