"""cosFormer (Qin et al., "cosFormer: Rethinking Softmax in Attention", ICLR 2022, arXiv:2202.08791).

Softmax is replaced by a non-negative similarity with a cos-based re-weighting of the distance between positions,

    s(q_i, k_j) = relu(q_i) . relu(k_j) cos(pi/2 (i - j) / M),   out_i = sum_j s(q_i, k_j) v_j / sum_j s(q_i, k_j),

with positions i, j = 1, 2, ... and M >= every position (the paper's M >= N), so that the weight lies in [0, 1] and
decays with the distance. Ptolemy's identity cos(a - b) = cos a cos b + sin a sin b makes it a kernel of 2D features,

    phi(x_i) = [relu(x_i) sin(pi i / 2M), relu(x_i) cos(pi i / 2M)]   (:func:`cosformer_features`),

so attention runs in linear form, O(N D Dv): non-causal as phi_q (phi_k^T [v, 1]), causal through the chunked prefix
sums of :func:`~attnbench.attention.linear.linear_attention` (padded keys: zero features). The slow reference
:func:`cosformer_attention_reference` writes the (L, S) weight matrix out with the cosine of the distance itself.

The horizon M. The authors' code (OpenNLPLab/cosFormer) and CAB's copy of it (Shark-NLP/CAB
``efficient-attention/efficient_attention/modules/cosformer.py``) take M = max(L, S) of each call, queries at
positions 1..L and keys at 1..S; ``horizon=None`` does the same for non-causal calls. A causal output i must not
depend on how many tokens follow it (CAB's causal-self check: output i equals the run on the prefix <= i), so causal
calls take a fixed M, ``causal_horizon``, and place queries and keys on one timeline aligned at their ends (full
attention's causal alignment: query i sees keys j <= i + S - L); CAB's library runs cosFormer non-causal only.
A call longer than its M is refused: beyond M the cosine turns negative. Denominators: a row whose weights sum to 0
(no visible key, or relu(q) = 0) gives 0 (:func:`~attnbench.attention.linear.safe_divide`); the official code divides
by max(sum, 1e-6), which differs only where 0 < sum < 1e-6. The official code ignores key padding; here padded keys
get zero features. Its ``act_fun`` option ``elu`` (``1 + F.elu``) is not a working function there and is not offered.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from attnbench.attention.full import _mask
from attnbench.attention.linear import linear_attention, safe_divide
from attnbench.attention.registry import AttentionBase, Caps, register


# ----------------------------------------------------------------------------- pure math
def cos_reweighting(positions: Tensor, horizon: int) -> tuple[Tensor, Tensor]:
    """sin and cos of pi/2 * positions / M (positions 1-based, (N,)) -> (N, 1), (N, 1)."""
    angle = (math.pi / 2) * positions / horizon  # (N,)
    return torch.sin(angle)[:, None], torch.cos(angle)[:, None]


def cosformer_features(x: Tensor, positions: Tensor, horizon: int) -> Tensor:
    """phi(x_i) = [relu(x_i) sin(pi i / 2M), relu(x_i) cos(pi i / 2M)]: x (B,H,N,D), positions (N,) -> (B,H,N,2D).
    phi(q_i) . phi(k_j) = relu(q_i) . relu(k_j) cos(pi/2 (i - j) / M) (Ptolemy)."""
    sin, cos = cos_reweighting(positions.to(x.dtype), horizon)  # (N, 1) each
    r = torch.relu(x)  # (B, H, N, D)
    return torch.cat([r * sin, r * cos], dim=-1)  # (B, H, N, 2D)


def cosformer_positions(L: int, S: int, causal: bool, device: torch.device) -> tuple[Tensor, Tensor]:
    """1-based positions of the queries (L,) and keys (S,): non-causal 1..L and 1..S (the official code); causal on
    one timeline of max(L, S) positions aligned at the end (query i pairs with key i + S - L)."""
    n = max(L, S) if causal else 0
    q_pos = torch.arange(1, L + 1, device=device) + (n - L if causal else 0)  # (L,)
    k_pos = torch.arange(1, S + 1, device=device) + (n - S if causal else 0)  # (S,)
    return q_pos, k_pos


def cosformer_attention(
    q: Tensor, k: Tensor, v: Tensor, horizon: int, key_padding_mask: Tensor | None = None, causal: bool = False,
) -> Tensor:
    """cosFormer attention in linear form with re-weighting horizon M = ``horizon`` (>= every position).
    q (B,H,L,D), k (B,H,S,D), v (B,H,S,Dv) -> (B,H,L,Dv)."""
    L, S = q.shape[-2], k.shape[-2]
    q_pos, k_pos = cosformer_positions(L, S, causal, q.device)
    phi_q = cosformer_features(q, q_pos, horizon)  # (B, H, L, 2D)
    phi_k = cosformer_features(k, k_pos, horizon)  # (B, H, S, 2D)
    return linear_attention(phi_q, phi_k, v, key_padding_mask=key_padding_mask, causal=causal)


def cosformer_attention_reference(
    q: Tensor, k: Tensor, v: Tensor, horizon: int, key_padding_mask: Tensor | None = None, causal: bool = False,
) -> Tensor:
    """Slow reference: the (B,H,L,S) weights relu(q) relu(k)^T cos(pi/2 (i - j) / M) written out (the cosine of the
    distance, not the Ptolemy features), masked, row-normalised (rows summing to 0 give 0), times v."""
    L, S = q.shape[-2], k.shape[-2]
    q_pos, k_pos = cosformer_positions(L, S, causal, q.device)
    dist = (q_pos[:, None] - k_pos[None, :]).to(q.dtype)  # (L, S) i - j
    a = (torch.relu(q) @ torch.relu(k).transpose(-1, -2)) * torch.cos((math.pi / 2) * dist / horizon)  # (B,H,L,S)
    mask = _mask(key_padding_mask, causal, L, S, q.device)
    if mask is not None:
        a = a.masked_fill(~mask, 0.0)
    return safe_divide(a @ v, a.sum(dim=-1, keepdim=True))


# ----------------------------------------------------------------------------- module
@register("cosformer")
class CosformerAttention(AttentionBase):
    """cosFormer: ReLU features re-weighted by cos(pi/2 (i - j) / M), linear time; not an approximation of softmax.

    ``horizon``: M of non-causal calls (None: max(L, S) of the call, the authors' and CAB's code).
    ``causal_horizon``: M of causal calls, fixed so that output i does not depend on the tokens after it; causal
    inputs longer than it are refused.
    """

    # A different similarity from softmax (no pretrained drop-in); the re-weighting depends on positions (not
    # permutation equivariant). Causal cross (CC) is not claimed: with horizon=None the M of a non-causal cross call
    # is max(L, S), so with more queries than keys a query's output depends on how many queries there are (CAB's
    # library: cosFormer NS / NC). Prefix sums: (at least) fp32 under autocast.
    caps = Caps(pretrained_drop_in=False, permutation_equivariant=False, causal_cross=False, fp32=True)

    def __init__(self, horizon: int | None = None, causal_horizon: int = 1024) -> None:
        super().__init__()
        if horizon is not None and horizon < 1:
            raise ValueError(f"cosformer: horizon={horizon} must be >= 1 (or null: max(L, S) of each call)")
        if causal_horizon < 1:
            raise ValueError(f"cosformer: causal_horizon={causal_horizon} must be >= 1")
        self.horizon, self.causal_horizon = horizon, causal_horizon

    def forward(
        self, q: Tensor, k: Tensor, v: Tensor, *, key_padding_mask: Tensor | None = None,
        causal: bool = False,
    ) -> Tensor:
        L, S = q.shape[-2], k.shape[-2]
        n = max(L, S)
        if causal:
            m, key = self.causal_horizon, "causal_horizon"
        else:
            m, key = (n, "horizon") if self.horizon is None else (self.horizon, "horizon")
        if n > m:
            raise ValueError(f"cosformer: {'causal ' if causal else ''}input of {n} positions (L={L}, S={S}) exceeds "
                             f"{key}={m}: the re-weighting cos(pi/2 (i - j) / M) needs M >= every position; "
                             f"set {key}={n} or more")
        return cosformer_attention(q, k, v, m, key_padding_mask=key_padding_mask, causal=causal)
