"""Performer / FAVOR+ (Choromanski et al., "Rethinking Attention with Performers", ICLR 2021, arXiv:2009.14794).

exp(q.k / sqrt(D)) is estimated without bias by positive orthogonal random features,
phi(x) = exp(W x' - |x'|^2 / 2) / sqrt(m) with x' = x D^-1/4 and W (m, D) orthogonal Gaussian rows
(:func:`~attnbench.attention.feature_maps.favor_feature_map`), and attention is computed in linear form
(:func:`~attnbench.attention.linear.linear_attention`, prefix sums when causal): O(N m Dv).

Stabilisers. Query features are divided by their own row max (a per-row factor, cancels in the
normalisation). Key features are divided by one max over the valid keys of each (batch, head), with
eps=0, so that factor cancels exactly between numerator and denominator: future keys (causal) and
padded keys do not leak into an output through it. Padded keys are replaced by a valid key before the
feature map (so their content cannot move the max) and then get zero features.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from attnbench.attention.feature_maps import favor_exponent, favor_feature_map, orthogonal_gaussian
from attnbench.attention.linear import linear_attention, linear_attention_reference, linear_step
from attnbench.attention.registry import AttentionBase, Caps, State, register


# ----------------------------------------------------------------------------- pure math
def _stand_in_padded_keys(k: Tensor, key_padding_mask: Tensor | None) -> Tensor:
    """Padded keys become a copy of the first valid key: the key stabiliser (a max over keys) then depends on
    valid keys only. Their features are zeroed later by linear_attention. k (B,H,S,D) -> (B,H,S,D)."""
    if key_padding_mask is None:
        return k
    keep = key_padding_mask.bool()  # (B, S)
    first = keep.float().argmax(dim=-1)  # (B,) index of the first valid key (0 if none)
    idx = first[:, None, None, None].expand(-1, k.shape[1], 1, k.shape[-1])  # (B, H, 1, D)
    return torch.where(keep[:, None, :, None], k, k.gather(2, idx))  # (B, H, S, D)


def favor_features(
    q: Tensor, k: Tensor, proj: Tensor, key_padding_mask: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """FAVOR+ features of q (B,H,L,D) and k (B,H,S,D) for proj (m, D) -> (B,H,L,m), (B,H,S,m).

    The features of :func:`favor_features_reference` (``favor_feature_map``) in fewer passes over the
    (N, m) maps: D^-1/4 and the 1/sqrt(m) factor go into the projection and the exponent, and a query's
    |q'|^2 / 2 cancels against its row-max stabiliser (in value: exp(w q' - max_m w q')), so each map is one
    matmul, one subtraction of an (N, 1) column and one exponential (plus eps for queries).
    """
    k = _stand_in_padded_keys(k, key_padding_mask)
    m, D = proj.shape
    w = proj.to(q.dtype) * D ** -0.25  # (m, D): x' W^T = x (W D^-1/4)^T
    half_log_m = 0.5 * math.log(m)  # exp(e - ln sqrt(m)) = exp(e) / sqrt(m)
    wq = q @ w.T  # (B, H, L, m)
    # The stabiliser of the definition is the detached row max of w q' - |q'|^2 / 2: |q'|^2 / 2 cancels in
    # value, not in the gradient (nor exactly in the output, through eps), so sq_q - sg(sq_q) keeps it.
    sq_q = 0.5 * (q * q).sum(-1, keepdim=True) * D ** -0.5  # (B, H, L, 1): |q'|^2 / 2
    shift = (sq_q - sq_q.detach()) + (wq.detach().amax(-1, keepdim=True) + half_log_m)  # (B, H, L, 1)
    phi_q = torch.exp(wq + -shift) + 1e-6 / math.sqrt(m)  # (B, H, L, m); + -x: no (L, m) negation in backward
    wk = k @ w.T  # (B, H, S, m)
    sq = 0.5 * (k * k).sum(-1, keepdim=True) * D ** -0.5  # (B, H, S, 1): |k'|^2 / 2
    with torch.no_grad():  # global stabiliser over (S, m), cancels exactly (eps = 0 for keys)
        c = (wk - sq).amax(dim=(-1, -2), keepdim=True)  # (B, H, 1, 1)
    phi_k = torch.exp(wk + -(sq + (c + half_log_m)))  # (B, H, S, m)
    return phi_q, phi_k


def favor_features_reference(
    q: Tensor, k: Tensor, proj: Tensor, key_padding_mask: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """The features as defined (:func:`~attnbench.attention.feature_maps.favor_feature_map`, eps 1e-6 for
    queries, 0 for keys) -> (B,H,L,m), (B,H,S,m)."""
    k = _stand_in_padded_keys(k, key_padding_mask)
    phi_q = favor_feature_map(q, proj, is_query=True)  # (B, H, L, m)
    phi_k = favor_feature_map(k, proj, is_query=False, eps=0.0)  # (B, H, S, m)
    return phi_q, phi_k


def favor_attention(
    q: Tensor, k: Tensor, v: Tensor, proj: Tensor, key_padding_mask: Tensor | None = None, causal: bool = False
) -> Tensor:
    """FAVOR+ attention, linear in the sequence length. (B,H,L,D), (B,H,S,D), (B,H,S,Dv) -> (B,H,L,Dv)."""
    phi_q, phi_k = favor_features(q, k, proj, key_padding_mask)
    return linear_attention(phi_q, phi_k, v, key_padding_mask=key_padding_mask, causal=causal)


def favor_attention_reference(
    q: Tensor, k: Tensor, v: Tensor, proj: Tensor, key_padding_mask: Tensor | None = None, causal: bool = False
) -> Tensor:
    """Slow reference: the features as defined (:func:`favor_features_reference`), the explicit (B,H,L,S)
    kernel matrix."""
    phi_q, phi_k = favor_features_reference(q, k, proj, key_padding_mask)
    return linear_attention_reference(phi_q, phi_k, v, key_padding_mask=key_padding_mask, causal=causal)


def default_n_features(head_dim: int) -> int:
    """m = D ln D (the Performer paper's Theta(D log D); performer-pytorch's default), at least 1."""
    return max(1, int(head_dim * math.log(head_dim)))


# ----------------------------------------------------------------------------- module
@register("performer")
class PerformerAttention(AttentionBase):
    """FAVOR+ softmax attention with a fixed buffer of m orthogonal random features.

    ``redraw()`` draws new features from the module's seeded generator; ``redraw_every=n`` does so
    automatically before every n-th training forward call after the first n (eval calls do not count).
    """

    # An unbiased estimator of softmax attention: usable in place of a pretrained dense layer, with an
    # error that shrinks as n_features grows. Exponentials and prefix sums: (at least) fp32 under autocast.
    caps = Caps(needs_head_dim=True, fp32=True, incremental=True)

    def __init__(self, head_dim: int, n_features: int | None = None, redraw_every: int | None = None,
                 seed: int = 0) -> None:
        super().__init__()
        if head_dim < 1:
            raise ValueError(f"performer: head_dim={head_dim} must be >= 1")
        self.head_dim = head_dim
        self.n_features = default_n_features(head_dim) if n_features is None else n_features
        if self.n_features < 1:
            raise ValueError(f"performer: n_features={n_features} must be >= 1 (or null for D ln D)")
        if redraw_every is not None and redraw_every < 1:
            raise ValueError(f"performer: redraw_every={redraw_every} must be >= 1 (or null: never redraw)")
        self.redraw_every = redraw_every
        self.calls_since_redraw = 0  # training forward calls with the current features
        self._gen = torch.Generator().manual_seed(seed)
        self.register_buffer("proj", orthogonal_gaussian(self.n_features, head_dim, self._gen))  # (m, D)

    @torch.no_grad()
    def redraw(self) -> None:
        """Draw new random features (FAVOR+ redraw)."""
        self.proj.copy_(orthogonal_gaussian(self.n_features, self.head_dim, self._gen))
        self.calls_since_redraw = 0

    def forward(
        self, q: Tensor, k: Tensor, v: Tensor, *, key_padding_mask: Tensor | None = None,
        causal: bool = False,
    ) -> Tensor:
        if q.shape[-1] != self.head_dim or k.shape[-1] != self.head_dim:
            raise ValueError(f"performer: built for head_dim={self.head_dim}, got q/k head sizes "
                             f"{q.shape[-1]}/{k.shape[-1]}")
        if self.training and self.redraw_every is not None:
            if self.calls_since_redraw >= self.redraw_every:
                self.redraw()
            self.calls_since_redraw += 1
        return favor_attention(q, k, v, self.proj, key_padding_mask, causal)

    def step(self, q: Tensor, k: Tensor, v: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """Incremental decoding in the recurrent form (:func:`~attnbench.attention.linear.linear_step`). The key
        stabiliser is the running max ``c`` (B, H, 1, 1) of the keys so far: when it grows, the sums S, z are
        rescaled by exp(c_old - c_new), so it cancels as the global max of the full pass does."""
        phi_q = favor_feature_map(q, self.proj, is_query=True)  # (B, H, 1, m)
        e = favor_exponent(k, self.proj)  # (B, H, 1, m)
        c = e.amax(dim=(-1, -2), keepdim=True).detach()  # (B, H, 1, 1)
        if state is not None:
            c = torch.maximum(c, state["c"])
            scale = torch.exp(state["c"] - c)  # (B, H, 1, 1) <= 1
            state = {"S": state["S"] * scale, "z": state["z"] * scale}
        phi_k = torch.exp(e - c) / math.sqrt(self.n_features)  # (B, H, 1, m)
        y, new = linear_step(phi_q, phi_k, v, state)
        return y, {**new, "c": c}
