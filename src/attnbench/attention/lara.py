"""LARA, linear randomized attention (Zheng, Wang, Kong, "Linear Complexity Randomized Self-attention Mechanism",
ICML 2022, arXiv:2204.04667), as CAB runs it (Shark-NLP/CAB ``efficient-attention/efficient_attention/modules/
lara.py``: segment-mean proposals, one sample per proposal, no antithetic samples).

Softmax attention is an expectation over random features: with x' = x D^-1/4 and xi(w, x) = exp(w.x' - |x'|^2 / 2),
E_{w ~ N(0, I)}[xi(w, q) xi(w, k)] = exp(q.k / sqrt(D)). LARA estimates every query's softmax attention by multiple
importance sampling with C proposals N(w; mu_c, I) shared by all queries, mu_c = q~_c + k~_c (means of the queries and
keys of segment c, in the x' space), one sample w_c per proposal (training; evaluation takes w_c = mu_c):

    out_n = sum_c r_nc f_c / sum_c r_nc,
    f_c = sum_m xi(w_c, k_m) v_m / sum_m xi(w_c, k_m)                       (an RFA estimate with one feature)
    r_nc = exp(mu_c.q_n') xi(w_c, q_n) sum_m xi(w_c, k_m) / xi(w_c, mu_c)   (self-normalised importance weight)

exp(mu_c.q_n') is the query-specific weighting of the proposals, and xi(w, q) sum_m xi(w, k_m) / xi(w, mu_c) is the
density ratio of the query's target to the proposal (N(w; 0, I) cancels). Per proposal the ratio is unbiased:
E_{w ~ N(mu, I)}[xi(w, q) xi(w, k) / xi(w, mu)] = exp(q.k / sqrt(D)), and as the samples grow LARA tends to softmax
attention (tests/test_attn_cab_linear.py checks both). Cost O(C (L + S) D): every product is with the C proposals.

:func:`lara_attention` computes it in log space (logsumexp over keys, softmax over proposals; |q'|^2 / 2 is constant
over the proposals and cancels); :func:`lara_attention_reference` writes the (L, C, S) weights r_nc xi(w_c, k_m)
out with explicit exponentials.

Paper and code. Both write the estimator in the x' space. The official code draws w = mu + eps with eps ~ N(0, I) in
the space of the unscaled q, k (x = x' D^1/4), i.e. w' = mu' + D^-1/4 eps, a proposal of variance D^-1/2 while its
density ratio xi(w, mu) is that of N(mu', I). ``noise="unit"`` (default) samples the proposals the ratio assumes
(the paper's N(w; mu_c, I)); ``noise="cab"`` the code's. Evaluation (w = mu) is the same in both. Padding: the code
masks padded keys in f_c but not in the sum over keys inside r_nc, and its segment means include padded tokens;
here padded tokens enter neither (segments count real tokens; a segment with none drops its proposal). Segments:
the code's layout, n // C tokens in the first segments and one more in the last n mod C; with fewer tokens than C
each token is its own proposal (C = n). Self-attention only, non-causal (the proposals are means over the whole
sequence), as in CAB's library (LARA: NS).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from attnbench.attention.registry import AttentionBase, Caps, register


# ----------------------------------------------------------------------------- pure math
def segment_ids(n: int, c: int, device: torch.device | None = None) -> Tensor:
    """Segment of each of n tokens, the official code's layout: with s = n // c, the first (s + 1) c - n segments
    hold s tokens and the rest s + 1 (n a multiple of c: c segments of s); n <= c: one token each. -> (n,) long."""
    t = torch.arange(n, device=device)
    if n <= c:
        return t
    s = n // c
    short = (s + 1) * c - n if n % c else c  # segments of s tokens, then segments of s + 1
    return torch.where(t < short * s, t // s, short + (t - short * s) // (s + 1))


def segment_means(x: Tensor, ids: Tensor, keep: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Means of x (B,H,N,D) over the segments ``ids`` (N,) (one-hot matmul), of the kept tokens only when ``keep``
    (B, N) is given -> means (B,H,C,D) (0 for a segment with no kept token), valid (B|1, 1, C) bool."""
    C = int(ids.max()) + 1
    onehot = (ids[None, :] == torch.arange(C, device=x.device)[:, None]).to(x.dtype)  # (C, N)
    if keep is not None:
        onehot = onehot * keep.to(x.dtype)[:, None, :]  # (B, C, N)
    counts = onehot.sum(-1, keepdim=True)  # (B, C, 1) or (C, 1)
    avg = (onehot / counts.clamp_min(1.0)).unsqueeze(-3)  # (B|1, 1, C, N)
    valid = (counts > 0).transpose(-1, -2)  # (B, 1, C) or (1, C)
    return avg @ x, valid.reshape(-1, 1, C)  # (B, H, C, D), (B|1, 1, C)


def lara_proposals(q: Tensor, k: Tensor, n_landmarks: int, keep: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Proposal means mu_c = q~_c + k~_c (segment means of the real tokens; self-attention, L == S) in the space of
    q, k, and which proposals exist. q, k (B,H,N,D), keep (B, N) -> mu (B,H,C,D), valid (B|1, 1, C), C = min(N, n)."""
    ids = segment_ids(q.shape[-2], n_landmarks, q.device)  # (N,)
    q_bar, valid = segment_means(q, ids, keep)  # (B, H, C, D)
    k_bar, _ = segment_means(k, ids, keep)  # (B, H, C, D)
    return q_bar + k_bar, valid


def lara_samples(mu: Tensor, eps: Tensor | None, noise: str = "unit") -> Tensor:
    """The proposals' samples w in the space of q, k: mu (eps None: evaluation), or mu + D^1/4 eps (``noise="unit"``:
    w' = mu' + eps in the x' space, the proposal N(mu', I)) or mu + eps (``"cab"``: the official code's draw).
    mu, eps (B,H,C,D) -> (B,H,C,D)."""
    if eps is None:
        return mu
    if noise not in ("unit", "cab"):
        raise ValueError(f"lara: noise={noise!r}; allowed: 'unit', 'cab'")
    return mu + (eps * mu.shape[-1] ** 0.25 if noise == "unit" else eps)


def log_features(w: Tensor, x: Tensor) -> Tensor:
    """log xi(w_c, x_n) = w'.x' - |x'|^2 / 2 for w (B,H,C,D), x (B,H,N,D) in the space of q, k -> (B,H,C,N)."""
    s = x.shape[-1] ** -0.5  # x'.y' = x.y / sqrt(D)
    return (w * s) @ x.transpose(-1, -2) - (0.5 * s) * (x * x).sum(-1).unsqueeze(-2)


def lara_attention(
    q: Tensor, k: Tensor, v: Tensor, mu: Tensor, w: Tensor, valid: Tensor | None = None,
    key_padding_mask: Tensor | None = None,
) -> Tensor:
    """The LARA estimate for proposal means ``mu`` and samples ``w`` (B,H,C,D) (space of q, k), ``valid``
    (B|1, 1, C) proposals; q (B,H,L,D), k (B,H,S,D), v (B,H,S,Dv) -> (B,H,L,Dv). Rows of a batch element with no
    real key give zeros."""
    s = q.shape[-1] ** -0.5
    dead = None
    if key_padding_mask is not None:
        keep = key_padding_mask.bool()  # (B, S)
        dead = ~keep.any(-1)  # (B,) no real key: computed as unpadded, zeroed below
        keep = keep | dead[:, None]
    log_k = log_features(w, k)  # (B, H, C, S)
    if key_padding_mask is not None:
        log_k = log_k.masked_fill(~keep[:, None, None, :], float("-inf"))
    f = torch.softmax(log_k, dim=-1) @ v  # (B, H, C, Dv): f_c
    log_mu = s * (w * mu).sum(-1) - (0.5 * s) * (mu * mu).sum(-1)  # (B, H, C): log xi(w_c, mu_c)
    # log r_nc + const_n: (mu_c + w_c).q_n' (weighting + query feature; -|q'|^2 / 2 cancels over c), then the keys'
    # log-sum and the proposal's density ratio
    log_r = q @ ((mu + w) * s).transpose(-1, -2)  # (B, H, L, C)
    log_r = log_r + (torch.logsumexp(log_k, dim=-1) - log_mu).unsqueeze(-2)  # (B, H, L, C)
    if valid is not None:
        if dead is not None:
            valid = valid | dead[:, None, None]
        log_r = log_r.masked_fill(~valid.unsqueeze(-2), float("-inf"))  # (B|1, 1, 1, C) proposals without tokens
    out = torch.softmax(log_r, dim=-1) @ f  # (B, H, L, Dv)
    return out if dead is None else out.masked_fill(dead[:, None, None, None], 0.0)


def lara_attention_reference(
    q: Tensor, k: Tensor, v: Tensor, mu: Tensor, w: Tensor, valid: Tensor | None = None,
    key_padding_mask: Tensor | None = None,
) -> Tensor:
    """Slow reference: the (B,H,L,C,S) weights r_nc xi(w_c, k_m) / sum_m xi(w_c, k_m) with explicit exponentials
    (float64, moderate inputs), summed over proposals and keys, normalised over proposals."""
    s = q.shape[-1] ** -0.5

    def xi(w_: Tensor, x: Tensor) -> Tensor:  # (B,H,C,D), (B,H,N,D) -> (B,H,C,N)
        return torch.exp(s * torch.einsum("bhcd,bhnd->bhcn", w_, x) - 0.5 * s * (x * x).sum(-1)[:, :, None, :])

    xk = xi(w, k)  # (B, H, C, S)
    if key_padding_mask is not None:
        xk = xk * key_padding_mask[:, None, None, :].to(xk.dtype)
    xq = xi(w, q)  # (B, H, C, L)
    x_mu = torch.exp(s * (w * mu).sum(-1) - 0.5 * s * (mu * mu).sum(-1))  # (B, H, C)
    alpha = torch.exp(s * torch.einsum("bhcd,bhnd->bhcn", mu, q))  # (B, H, C, L): exp(mu_c . q_n')
    r = alpha * xq * xk.sum(-1, keepdim=True) / x_mu[..., None]  # (B, H, C, L)
    if valid is not None:
        r = r * valid[..., None].to(r.dtype)  # (B|1, 1, C, 1)
    zk = xk.sum(-1, keepdim=True)  # (B, H, C, 1)
    weights = r[..., None] * xk[:, :, :, None, :] / torch.where(zk > 0, zk, 1.0)[..., None]  # (B, H, C, L, S)
    num = torch.einsum("bhcls,bhsd->bhld", weights, v)  # (B, H, L, Dv)
    den = r.sum(2)[..., None]  # (B, H, L, 1)
    return torch.where(den > 0, num / torch.where(den > 0, den, 1.0), 0.0)


# ----------------------------------------------------------------------------- module
@register("lara")
class LaraAttention(AttentionBase):
    """LARA with ``n_landmarks`` segment-mean proposals: random samples in training, w = mu in evaluation.
    Training draws from torch's global generator (seed it as for dropout)."""

    # An estimator of softmax attention (usable in place of a pretrained dense layer). Self-attention only, not causal
    # (proposals are means over the whole sequence; CAB: NS); segment means depend on positions. Exponentials: fp32.
    caps = Caps(cross_attention=False, causal=False, causal_cross=False, permutation_equivariant=False, fp32=True)

    def __init__(self, n_landmarks: int = 16, noise: Literal["unit", "cab"] = "unit") -> None:
        super().__init__()
        if n_landmarks < 1:
            raise ValueError(f"lara: n_landmarks={n_landmarks} must be >= 1")
        if noise not in ("unit", "cab"):
            raise ValueError(f"lara: noise={noise!r}; allowed: 'unit' (the paper's N(mu, I)), 'cab' (its code's)")
        self.n_landmarks, self.noise = n_landmarks, noise

    def forward(
        self, q: Tensor, k: Tensor, v: Tensor, *, key_padding_mask: Tensor | None = None,
        causal: bool = False,
    ) -> Tensor:
        if causal:
            raise ValueError("lara: causal=True is not supported (proposals are means over the whole sequence)")
        if q.shape[-2] != k.shape[-2]:
            raise ValueError(f"lara: self-attention only (its proposals pair query and key segments), got "
                             f"L={q.shape[-2]}, S={k.shape[-2]}")
        keep = None if key_padding_mask is None else key_padding_mask.bool()
        mu, valid = lara_proposals(q, k, self.n_landmarks, keep)  # (B, H, C, D), (B|1, 1, C)
        eps = torch.randn_like(mu) if self.training else None
        w = lara_samples(mu, eps, self.noise)  # (B, H, C, D)
        return lara_attention(q, k, v, mu, w, valid, keep)
