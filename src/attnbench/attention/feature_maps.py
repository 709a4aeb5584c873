"""Feature maps phi with phi(q) phi(k)^T ~ a kernel, for linearised attention (pure functions)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def elu_feature_map(x: Tensor) -> Tensor:
    """elu(x) + 1 (Katharopoulos et al., 2020): positive, deterministic. (..., D) -> (..., D)."""
    return F.elu(x) + 1.0


def orthogonal_gaussian(m: int, d: int, generator: torch.Generator | None = None) -> Tensor:
    """(m, d) random matrix with orthogonal rows in blocks of d, row norms chi(d)-distributed (FAVOR+)."""
    blocks = []
    for _ in range(math.ceil(m / d)):
        g = torch.randn(d, d, generator=generator)
        qmat, _ = torch.linalg.qr(g)  # (d, d) orthonormal columns
        blocks.append(qmat.T)
    w = torch.cat(blocks, dim=0)[:m]  # (m, d)
    norms = torch.randn(m, d, generator=generator).norm(dim=1, keepdim=True)  # (m, 1)
    return w * norms


def favor_exponent(x: Tensor, proj: Tensor) -> Tensor:
    """The exponent of FAVOR+ features before stabilising: w^T x' - |x'|^2 / 2, x' = x D^-1/4.
    x: (..., N, D), proj: (m, D) -> (..., N, m)."""
    x = x * x.shape[-1] ** -0.25
    wx = x @ proj.T.to(x.dtype)  # (..., N, m)
    return wx - 0.5 * (x * x).sum(dim=-1, keepdim=True)


def favor_feature_map(x: Tensor, proj: Tensor, is_query: bool, eps: float = 1e-6, keep: Tensor | None = None
                      ) -> Tensor:
    """Positive random features for the softmax kernel exp(q.k / sqrt(D)) (Choromanski et al., 2021).

    phi(x) = exp(w^T x' - |x'|^2 / 2 - c) / sqrt(m) with x' = x D^-1/4; c is a stabiliser: the row max
    for queries (cancels in the normalised attention) and the global max for keys, taken over the whole
    exponent w^T x' - |x'|^2 / 2 (performer-pytorch takes it over w^T x' only, so large-norm inputs
    underflow to 0 there: |x'|^2 / 2 alone can exceed 745).
    x: (..., N, D), proj: (m, D) -> (..., N, m). ``keep`` (bool, broadcastable to (..., N)): the other rows are
    padding: left out of the stabiliser and given zero features.
    """
    expo = favor_exponent(x, proj)  # (..., N, m)
    if keep is None:
        c = expo.amax(dim=-1 if is_query else (-1, -2), keepdim=True).detach()
        return (torch.exp(expo - c) + eps) / math.sqrt(proj.shape[0])
    pad = ~keep[..., None]  # (..., N, 1)
    c = expo.masked_fill(pad, float("-inf")).amax(dim=-1 if is_query else (-1, -2), keepdim=True).detach()
    c = torch.where(torch.isfinite(c), c, torch.zeros_like(c))  # nothing kept: any finite stabiliser
    return ((torch.exp(expo - c) + eps) / math.sqrt(proj.shape[0])).masked_fill(pad, 0.0)
