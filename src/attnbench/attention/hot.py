"""HOT: Kronecker-factorised attention over the axes of a tensor (Omranpour et al., arXiv:2412.02919).

A token tensor X (B, N_1, ..., N_k, E) gets one small attention matrix per axis, A_i (N_i x N_i), computed
from queries/keys pooled over all the other axes. The implied N x N attention (N = prod N_i) is

- product: A_1 (x) ... (x) A_k, applied as V <- A_i x_i V for each axis in turn,   O(N D sum N_i)
- sum:     sum_i I (x) .. A_i .. (x) I, i.e. sum_i A_i x_i V,                     O(N D sum N_i)

and never materialised. ``hot_linear`` replaces each softmax factor by a kernel feature map
phi(q_i) phi(k_i)^T (row-normalised), applied without forming A_i: O(N m D) per axis.
On one axis both reduce to ordinary (full / linearised) attention.

Padding: a key padding mask (B, *axes') that is a product of per-axis masks (padding along an axis, e.g. the
sequence axis of a time-series tensor) drops the padded positions from the pooling and the padded keys from each
factor; a query padding mask (self-attention) drops padded queries from the pooling and zeroes their outputs. The
real tokens then get the output of the unpadded tensor.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from attnbench.attention.feature_maps import elu_feature_map, favor_feature_map, orthogonal_gaussian
from attnbench.attention.registry import AttentionBase, Caps, register

QKHook = Callable[[Tensor, int, str], Tensor]  # (pooled (B,H,N_i,D), axis, "q"|"k") -> same shape


# ----------------------------------------------------------------------------- pure math
class ProjectedTokens:
    """The per-head projection x W^T + b of tokens x (B, *axes, E), i.e. (B, H, *axes, D), left unformed.

    HOT uses its queries and keys only through per-axis pooling (a sum or mean over the other axes), which
    commutes with the projection: pool(x W^T + b) = pool(x) W^T + pool(1) b. :func:`axis_pool` pools x first and
    projects the (B, N_axis, E) result: O(N E) per axis instead of the O(N E H D) projection of every token (a
    fifth of the HOT forecaster's training FLOPs). :meth:`full` forms the projection (the slow reference).

    weight (H*D, E) with rows in (head, feature) order, bias (H*D,) or None.
    """

    def __init__(self, x: Tensor, weight: Tensor, bias: Tensor | None, n_heads: int) -> None:
        if weight.shape[0] % n_heads:
            raise ValueError(f"ProjectedTokens: n_heads={n_heads} must divide the projection size {weight.shape[0]}")
        self.x, self.weight, self.bias, self.n_heads = x, weight, bias, n_heads

    @property
    def shape(self) -> torch.Size:
        """(B, H, *axes, D): the shape of the projection."""
        return torch.Size((self.x.shape[0], self.n_heads, *self.x.shape[1:-1], self.weight.shape[0] // self.n_heads))

    def dim(self) -> int:
        return self.x.dim() + 1

    def to(self, dtype: torch.dtype) -> ProjectedTokens:
        """x, weight and bias in ``dtype`` (an fp32 entry's upcast)."""
        return ProjectedTokens(self.x.to(dtype), self.weight.to(dtype),
                               None if self.bias is None else self.bias.to(dtype), self.n_heads)

    def _split(self, y: Tensor) -> Tensor:
        """(B, *axes, H*D) -> (B, H, *axes, D)."""
        return y.unflatten(-1, (self.n_heads, -1)).movedim(-2, 1)

    def full(self) -> Tensor:
        """The projection of every token, (B, H, *axes, D)."""
        return self._split(nn.functional.linear(self.x, self.weight, self.bias))

    def pool(self, axis: int, how: Literal["sum", "mean"] = "sum", keep: Tensor | None = None) -> Tensor:
        """``axis_pool(self.full(), axis, how, keep)`` without forming ``full``: (B, H, N_axis, D)."""
        x = self.x.unsqueeze(1)  # (B, 1, *axes, E)
        y = nn.functional.linear(axis_pool(x, axis, how, keep), self.weight)  # (B, 1, N_axis, H*D)
        if self.bias is not None:  # each pooled token carries the bias once: times the (kept) count, or 1 (mean)
            ones = x.new_ones(()).expand(*x.shape[:-1], 1)  # (B, 1, *axes, 1), a view
            y = y + axis_pool(ones, axis, how, keep) * self.bias
        return self._split(y.squeeze(1))


def axis_pool(x: Tensor | ProjectedTokens, axis: int, how: Literal["sum", "mean"] = "sum", keep: Tensor | None = None
              ) -> Tensor:
    """Pool (B, H, *axes, D) over every axis but ``axis`` -> (B, H, N_axis, D); ``keep`` (B, *axes) bool: only
    the kept positions are pooled (a mean divides by their number). ``ProjectedTokens`` pool before projecting."""
    if isinstance(x, ProjectedTokens):
        return x.pool(axis, how, keep)
    n_axes = x.dim() - 3
    others = [2 + j for j in range(n_axes) if j != axis]
    if not others:
        return x
    if keep is None:
        return x.sum(dim=others) if how == "sum" else x.mean(dim=others)
    w = keep[:, None, ..., None].to(x.dtype)  # (B, 1, *axes, 1)
    pooled = (x * w).sum(dim=others)
    return pooled if how == "sum" else pooled / w.sum(dim=others).clamp_min(1.0)


def axis_masks(mask: Tensor, n_axes: int) -> list[Tensor]:
    """(B, *axes) bool mask -> one (B, N_i) mask per axis, their product being ``mask``; other masks raise."""
    if mask.dim() != n_axes + 1:
        raise ValueError(f"HOT: expected a (B, *axes) padding mask with {n_axes} axes, got {tuple(mask.shape)}")
    mask = mask.bool()
    per_axis = [mask.any(dim=[1 + j for j in range(n_axes) if j != i]) if n_axes > 1 else mask
                for i in range(n_axes)]
    prod = per_axis[0].reshape(mask.shape[0], -1, *[1] * (n_axes - 1))
    for i, m in enumerate(per_axis[1:], start=1):
        prod = prod & m.reshape(mask.shape[0], *[1] * i, -1, *[1] * (n_axes - 1 - i))
    if not torch.equal(prod, mask):
        raise ValueError("HOT: a padding mask must be a product of per-axis masks (padding along axes, e.g. the "
                         "sequence axis); got one that is not")
    return per_axis


def mode_product(a: Tensor, v: Tensor, axis: int) -> Tensor:
    """A x_axis V: contract axis ``axis`` of v (B, H, *axes, D) with a (B, H, N', N_axis).

    out[b, h, .., n, .., d] = sum_m a[b, h, n, m] v[b, h, .., m, .., d]; the axis becomes length N'.
    One batched matmul against (B, H, M, R*D): a is never expanded over the other axes.
    """
    vt = v.movedim(2 + axis, 2)  # (B, H, M, *others, D)
    rest = vt.shape[3:]
    out = a @ vt.flatten(3)  # (B, H, N', R*D)
    return out.unflatten(3, rest).movedim(2, 2 + axis)


def combine(factors: Sequence[Tensor], v: Tensor, mode: Literal["product", "sum"], sum_normalize: bool = False
            ) -> Tensor:
    """Apply per-axis factors (B, H, N_i', N_i) to v (B, H, *axes, D) in Kronecker product or sum form."""
    if mode == "product":
        y = v
        for i, a in enumerate(factors):
            y = mode_product(a, y, i)
        return y
    y = sum(mode_product(a, v, i) for i, a in enumerate(factors))
    return y / len(factors) if sum_normalize else y


def kronecker_dense(factors: Sequence[Tensor], mode: Literal["product", "sum"]) -> Tensor:
    """Slow reference: the explicit (B, H, N, N) matrix implied by the factors (row-major flattening)."""
    mats = factors[0]
    if mode == "product":
        for a in factors[1:]:
            mats = torch.einsum("bhij,bhkl->bhikjl", mats, a).flatten(2, 3).flatten(-2, -1)
        return mats
    sizes = [a.shape[-1] for a in factors]
    out = 0
    for i, a in enumerate(factors):
        term = a
        for j in range(len(factors)):
            eye = torch.eye(sizes[j], dtype=a.dtype, device=a.device).expand(*a.shape[:2], -1, -1)
            if j < i:
                term = torch.einsum("bhij,bhkl->bhikjl", eye, term).flatten(2, 3).flatten(-2, -1)
            elif j > i:
                term = torch.einsum("bhij,bhkl->bhikjl", term, eye).flatten(2, 3).flatten(-2, -1)
        out = out + term
    return out


def softmax_factor(q: Tensor, k: Tensor, dropout: nn.Module | None = None, key_mask: Tensor | None = None
                   ) -> Tensor:
    """softmax(q k^T / sqrt(D)) for pooled q (B,H,N,D), k (B,H,M,D) -> (B,H,N,M); ``key_mask`` (B, M) bool:
    padded keys get no weight (a row with no key is zeros)."""
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])  # (B, H, N, M)
    if key_mask is not None:
        scores = scores.masked_fill(~key_mask[:, None, None, :], float("-inf"))
        a = torch.softmax(scores, dim=-1).nan_to_num(0.0)
    else:
        a = torch.softmax(scores, dim=-1)
    return dropout(a) if dropout is not None else a


def linear_mode_product(phi_q: Tensor, phi_k: Tensor, v: Tensor, axis: int, eps: float = 1e-30) -> Tensor:
    """[phi_q (phi_k^T V)] / [phi_q (phi_k^T 1)] along ``axis`` without forming the N x M factor.

    phi_q (B,H,N,F), phi_k (B,H,M,F), v (B,H,*axes,D) with axis length M -> axis length N; O(R (N+M) F D).
    ``eps`` only guards a zero normaliser: FAVOR features of large-norm (e.g. sum-pooled) inputs are tiny but
    their ratio is still meaningful, which an additive 1e-6 would destroy.
    """
    vt = v.movedim(2 + axis, -2)  # (B, H, *others, M, D)
    B, H, M, D = vt.shape[0], vt.shape[1], vt.shape[-2], vt.shape[-1]
    others = vt.shape[2:-2]
    vt = vt.reshape(B, H, -1, M, D)  # (B, H, R, M, D)
    kv = torch.einsum("bhmf,bhrmd->bhrfd", phi_k, vt)  # (B, H, R, F, D)
    num = torch.einsum("bhnf,bhrfd->bhrnd", phi_q, kv)  # (B, H, R, N, D)
    den = phi_q @ phi_k.sum(dim=-2).unsqueeze(-1)  # (B, H, N, 1)
    out = num / den.unsqueeze(2).clamp_min(eps)
    return out.reshape(B, H, *others, phi_q.shape[-2], D).movedim(-2, 2 + axis)


def linear_factor(phi_q: Tensor, phi_k: Tensor, eps: float = 1e-30) -> Tensor:
    """Slow reference: the explicit row-normalised kernel factor phi_q phi_k^T / rowsum, (B,H,N,M)."""
    a = phi_q @ phi_k.transpose(-1, -2)
    return a / a.sum(dim=-1, keepdim=True).clamp_min(eps)


# ----------------------------------------------------------------------------- modules
def _per_axis(x: Tensor | ProjectedTokens | Sequence[Tensor | ProjectedTokens], n_axes: int, what: str
              ) -> list[Tensor | ProjectedTokens]:
    if isinstance(x, (Tensor, ProjectedTokens)):
        return [x] * n_axes
    if len(x) != n_axes:
        raise ValueError(f"HOT: got {len(x)} per-axis {what} tensors for a tensor with {n_axes} axes")
    return list(x)


class _HOTBase(AttentionBase):
    """Shared pooling and checks. q, k: (B,H,*axes,D) or one such tensor per axis; v: (B,H,*axes,Dv)."""

    # causal_cross=False: each axis pools the queries over the other axes, so queries mix. projected_tokens: q and k
    # enter only through axis_pool, so a layer may pass them as ProjectedTokens (pooled, then projected).
    caps = Caps(tensor=True, causal=False, causal_cross=False, per_axis_qk=True, pretrained_drop_in=False,
                query_padding_mask=True, projected_tokens=True)

    def __init__(self, mode: Literal["product", "sum"], pool: Literal["sum", "mean"], sum_normalize: bool) -> None:
        super().__init__()
        if mode not in ("product", "sum"):
            raise ValueError(f"HOT: mode={mode!r}; allowed: product, sum")
        if pool not in ("sum", "mean"):
            raise ValueError(f"HOT: pool={pool!r}; allowed: sum, mean")
        self.mode, self.pool, self.sum_normalize = mode, pool, sum_normalize

    def pooled(self, q, k, v: Tensor, qk_hook: QKHook | None, key_padding_mask: Tensor | None = None,
               query_padding_mask: Tensor | None = None) -> tuple[list[Tensor], list[Tensor]]:
        """Per-axis pooled queries and keys, each [(B, H, N_i, D)]; padded positions (masks (B, *axes)) left out."""
        n_axes = v.dim() - 3
        if n_axes < 1:
            raise ValueError(f"HOT expects (B, H, *axes, D) with at least one axis, got shape {tuple(v.shape)}")
        qs, ks = _per_axis(q, n_axes, "query"), _per_axis(k, n_axes, "key")
        if self.mode == "sum" and qs[0].shape[2:-1] != v.shape[2:-1]:
            raise ValueError("HOT mode='sum' needs queries and keys with the same axis sizes (self-attention)")
        pq, pk = [], []
        for i in range(n_axes):
            qi = axis_pool(qs[i], i, self.pool, query_padding_mask)  # (B,H,N_i,D)
            ki = axis_pool(ks[i], i, self.pool, key_padding_mask)
            if qk_hook is not None:
                qi, ki = qk_hook(qi, i, "q"), qk_hook(ki, i, "k")
            pq.append(qi)
            pk.append(ki)
        return pq, pk

    def _masks(self, v: Tensor, causal: bool, key_padding_mask: Tensor | None, query_padding_mask: Tensor | None
               ) -> tuple[list[Tensor] | None, Tensor | None]:
        """Refuse causal; the per-axis key masks (or None) and the (B, *axes) query mask as bool (or None)."""
        if causal:
            raise ValueError(f"{self.name} does not support causal masking (factors mix every position of an axis)")
        n_axes = v.dim() - 3
        keys = None if key_padding_mask is None else axis_masks(key_padding_mask, n_axes)
        if query_padding_mask is not None:
            axis_masks(query_padding_mask, n_axes)  # checks the form
            query_padding_mask = query_padding_mask.bool()
        return keys, query_padding_mask

    @staticmethod
    def _zero_padded_queries(y: Tensor, query_padding_mask: Tensor | None) -> Tensor:
        return y if query_padding_mask is None else y.masked_fill(~query_padding_mask[:, None, ..., None], 0.0)


@register("hot")
class HOTAttention(_HOTBase):
    """Kronecker product / sum of per-axis softmax attentions (the official code's form)."""

    def __init__(
        self, mode: Literal["product", "sum"] = "product", pool: Literal["sum", "mean"] = "sum",
        sum_normalize: bool = False, dropout: float = 0.0,
    ) -> None:
        # pool="sum" and sum_normalize=False follow the official code; a blog version of HOT pools by
        # mean and divides the Kronecker sum by k: both are options.
        super().__init__(mode, pool, sum_normalize)
        self.drop = nn.Dropout(dropout)

    def factors(self, q, k, v: Tensor, qk_hook: QKHook | None = None, key_padding_mask: Tensor | None = None,
                query_padding_mask: Tensor | None = None) -> list[Tensor]:
        """The per-axis softmax factors [(B, H, N_i', N_i)]; masks (B, *axes) as in ``forward``."""
        key_masks, qmask = self._masks(v, False, key_padding_mask, query_padding_mask)
        kmask = None if key_padding_mask is None else key_padding_mask.bool()
        pq, pk = self.pooled(q, k, v, qk_hook, kmask, qmask)
        return [softmax_factor(qi, ki, self.drop, None if key_masks is None else key_masks[i])
                for i, (qi, ki) in enumerate(zip(pq, pk, strict=True))]

    def forward(self, q, k, v: Tensor, *, key_padding_mask: Tensor | None = None, causal: bool = False,
                qk_hook: QKHook | None = None, query_padding_mask: Tensor | None = None) -> Tensor:
        """key_padding_mask (B, *axes'), query_padding_mask (B, *axes): products of per-axis masks."""
        _, qmask = self._masks(v, causal, key_padding_mask, query_padding_mask)
        y = combine(self.factors(q, k, v, qk_hook, key_padding_mask, qmask), v, self.mode, self.sum_normalize)
        return self._zero_padded_queries(y, qmask)


@register("hot_linear")
class HOTLinearAttention(_HOTBase):
    """HOT with kernelised per-axis factors (HOT v1): linear in each axis length.

    feature_map="favor" uses positive orthogonal random features (m = ceil(D (1 + log2 D)) by default, as
    the authors' precursor code); "elu" uses elu+1. Random features are a fixed buffer; ``redraw()`` draws new.
    """

    # Fragile exponentials: (at least) fp32 under autocast (pooling and the layer's q/k hook included).
    caps = Caps(tensor=True, causal=False, causal_cross=False, per_axis_qk=True, pretrained_drop_in=False,
                query_padding_mask=True, projected_tokens=True, needs_head_dim=True, fp32=True)

    def __init__(
        self, head_dim: int, mode: Literal["product", "sum"] = "product", pool: Literal["sum", "mean"] = "sum",
        sum_normalize: bool = False, feature_map: Literal["favor", "elu"] = "favor", n_features: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(mode, pool, sum_normalize)
        if feature_map not in ("favor", "elu"):
            raise ValueError(f"hot_linear: feature_map={feature_map!r}; allowed: favor, elu")
        self.feature_map, self.head_dim = feature_map, head_dim
        self.n_features = n_features or math.ceil(head_dim * (1 + math.log2(max(head_dim, 2))))
        if self.n_features < 1:
            raise ValueError(f"hot_linear: n_features={n_features} must be >= 1")
        self._gen = torch.Generator().manual_seed(seed)
        self.register_buffer("proj", orthogonal_gaussian(self.n_features, head_dim, self._gen))

    @torch.no_grad()
    def redraw(self) -> None:
        """Draw new random features (FAVOR+ redraw)."""
        self.proj.copy_(orthogonal_gaussian(self.n_features, self.head_dim, self._gen))

    def features(self, x: Tensor, is_query: bool, keep: Tensor | None = None) -> Tensor:
        """phi(x) for pooled (B, H, N, D) -> (B, H, N, m); ``keep`` (B, N) bool: padded rows get zero features
        (and stay out of FAVOR's key stabiliser)."""
        if self.feature_map == "elu":
            f = elu_feature_map(x)
            return f if keep is None else f.masked_fill(~keep[:, None, :, None], 0.0)
        # keys: eps=0, so their global stabiliser cancels exactly in each row's normalisation (as Performer)
        return favor_feature_map(x, self.proj, is_query, eps=1e-6 if is_query else 0.0,
                                 keep=None if keep is None else keep[:, None, :])

    def forward(self, q, k, v: Tensor, *, key_padding_mask: Tensor | None = None, causal: bool = False,
                qk_hook: QKHook | None = None, query_padding_mask: Tensor | None = None) -> Tensor:
        """key_padding_mask (B, *axes'), query_padding_mask (B, *axes): products of per-axis masks."""
        key_masks, qmask = self._masks(v, causal, key_padding_mask, query_padding_mask)
        kmask = None if key_padding_mask is None else key_padding_mask.bool()
        pq, pk = self.pooled(q, k, v, qk_hook, kmask, qmask)
        fq = [self.features(x, True) for x in pq]
        fk = [self.features(x, False, None if key_masks is None else key_masks[i]) for i, x in enumerate(pk)]
        if self.mode == "product":
            y = v
            for i in range(len(fq)):
                y = linear_mode_product(fq[i], fk[i], y, i)
        else:
            y = sum(linear_mode_product(fq[i], fk[i], v, i) for i in range(len(fq)))
            y = y / len(fq) if self.sum_normalize else y
        return self._zero_padded_queries(y, qmask)
