"""Nyströmformer (Xiong et al., AAAI 2021, arXiv:2102.03902).

With landmarks Q~ (m_q, D), K~ (m_k, D) (segment means of the queries and keys), softmax attention is
approximated by the Nyström form

    softmax(Q K^T / sqrt(D)) V ~ F~ A~^+ B~ V,
    F~ = softmax(Q K~^T / sqrt(D)) (L, m_k),  A~ = softmax(Q~ K~^T / sqrt(D)) (m_q, m_k),
    B~ = softmax(Q~ K^T / sqrt(D)) (m_q, S),

at O((L + S) m D) cost; A~^+ is the Moore-Penrose pseudo-inverse by the paper's iteration
Z <- Z (13 I - A Z (15 I - A Z (7 I - A Z))) / 4 from Z_0 = A^T / (||A||_1 ||A||_inf) (``pinv_iters`` steps).
When ``n_landmarks`` >= a length, each token is its own landmark; with Q~ = Q and K~ = K the form is
A A^+ A V = A V, i.e. full attention up to the accuracy of the pseudo-inverse.
Segments: token t of N goes to segment floor(t m / N), so N need not be a multiple of m (the paper pads).
Padding: padded keys are left out of the key landmark means (counts are of valid keys only), landmarks
of all-padded segments are masked, and B~ masks padded keys. ``query_padding_mask`` (the layer passes the
padding mask in self-attention) does the same for the query landmarks (a query landmark of padded queries
only drops out of A~ and B~) and gives zeros for padded queries, so what padded positions hold cannot reach
the real outputs. The official code zeroes padded queries but still divides each landmark by its full segment
size; we average the real queries only. Without the mask, every query enters the landmarks.
Optional ``conv_kernel``: the paper's
residual depthwise convolution of V along the sequence (needs L == S); here its kernel is per head
channel (D kernels shared by the heads) because the layer gives the attention head_dim, not n_heads
(the official code has one kernel per head, shared over D).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from attnbench.attention.registry import AttentionBase, Caps, register


# ----------------------------------------------------------------------------- pure math
def masked_softmax(scores: Tensor, mask: Tensor | None) -> Tensor:
    """softmax over the last axis where mask is True; rows with no True give zeros (finite gradients)."""
    if mask is None:
        return torch.softmax(scores, dim=-1)
    dead = ~mask.any(dim=-1, keepdim=True)
    scores = scores.masked_fill(~mask, float("-inf")).masked_fill(dead, 0.0)  # dead rows: finite
    return torch.softmax(scores, dim=-1).masked_fill(dead, 0.0)


def segment_means(x: Tensor, m: int, keep: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Means of x (B,H,N,D) over m contiguous segments (token t -> segment floor(t m / N)).

    keep (B, N) bool leaves tokens out of the means (counts are of kept tokens). Returns means (B,H,m,D)
    and valid (B|1, 1, m) bool: False for a segment with no kept token (its mean is set to 0).
    """
    N = x.shape[-2]
    seg = torch.arange(N, device=x.device) * m // N  # (N,) segment of each token
    onehot = (seg[None, :] == torch.arange(m, device=x.device)[:, None]).to(x.dtype)  # (m, N)
    if keep is None:
        counts = onehot.sum(dim=-1)[None, None, :]  # (1, 1, m)
        sums = onehot @ x  # (B, H, m, D)
    else:
        w = keep.to(x.dtype)  # (B, N)
        counts = (w @ onehot.T)[:, None, :]  # (B, 1, m)
        sums = onehot @ x.masked_fill(~keep.bool()[:, None, :, None], 0.0)  # (B, H, m, D)
    valid = counts > 0
    return sums / counts.clamp_min(1.0).unsqueeze(-1), valid


def iterative_pinv(a: Tensor, n_iter: int = 6) -> Tensor:
    """Moore-Penrose pseudo-inverse of a (..., m, n) by the Nyströmformer iteration (Razavi et al., 2014).

    Z_0 = a^T / (||a||_1 ||a||_inf) per matrix (max column sum x max row sum; a zero matrix gives 0).
    """
    eye = torch.eye(a.shape[-2], dtype=a.dtype, device=a.device)  # (m, m)
    norm1 = a.abs().sum(dim=-2).amax(dim=-1)  # (...,) max column sum
    norm_inf = a.abs().sum(dim=-1).amax(dim=-1)  # (...,) max row sum (1 for a row-stochastic a)
    scale = (norm1 * norm_inf).clamp_min(torch.finfo(a.dtype).tiny)
    z = a.transpose(-1, -2) / scale[..., None, None]  # (..., n, m)
    for _ in range(n_iter):
        az = a @ z  # (..., m, m)
        z = 0.25 * z @ (13 * eye - az @ (15 * eye - az @ (7 * eye - az)))
    return z


def _kernels(
    q: Tensor, k: Tensor, n_landmarks: int, key_padding_mask: Tensor | None,
    query_padding_mask: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """The three softmax factors F~ (B,H,L,m_k), A~ (B,H,m_q,m_k), B~ (B,H,m_q,S); rows of A~ and B~ for a
    query landmark with no real query are zero."""
    L, S = q.shape[-2], k.shape[-2]
    scale = 1.0 / math.sqrt(q.shape[-1])
    q_l, q_valid = segment_means(q, min(n_landmarks, L), query_padding_mask)  # (B, H, m_q, D), (B|1, 1, m_q)
    k_l, k_valid = segment_means(k, min(n_landmarks, S), key_padding_mask)  # (B, H, m_k, D), (B|1, 1, m_k)
    lm_mask = k_valid[:, None, :, :]  # (B|1, 1, 1, m_k)
    q_dead = ~q_valid[..., None]  # (B|1, 1, m_q, 1)
    f = masked_softmax(q @ k_l.transpose(-1, -2) * scale, lm_mask)  # (B, H, L, m_k)
    a = masked_softmax(q_l @ k_l.transpose(-1, -2) * scale, lm_mask).masked_fill(q_dead, 0.0)  # (B, H, m_q, m_k)
    kpm = None if key_padding_mask is None else key_padding_mask.bool()[:, None, None, :]  # (B, 1, 1, S)
    b = masked_softmax(q_l @ k.transpose(-1, -2) * scale, kpm).masked_fill(q_dead, 0.0)  # (B, H, m_q, S)
    return f, a, b


def _zero_padded(out: Tensor, query_padding_mask: Tensor | None) -> Tensor:
    return out if query_padding_mask is None else out.masked_fill(~query_padding_mask.bool()[:, None, :, None], 0.0)


def nystrom_attention(
    q: Tensor, k: Tensor, v: Tensor, n_landmarks: int, pinv_iters: int = 6, key_padding_mask: Tensor | None = None,
    query_padding_mask: Tensor | None = None,
) -> Tensor:
    """Nyström approximation of softmax attention. (B,H,L,D), (B,H,S,D), (B,H,S,Dv) -> (B,H,L,Dv).
    query_padding_mask (B, L), True = real query: padded queries leave the landmarks and give zeros."""
    f, a, b = _kernels(q, k, n_landmarks, key_padding_mask, query_padding_mask)
    out = f @ (iterative_pinv(a, pinv_iters) @ (b @ v))  # (B, H, L, Dv), right to left: never L x S
    return _zero_padded(out, query_padding_mask)


def nystrom_attention_reference(
    q: Tensor, k: Tensor, v: Tensor, n_landmarks: int, key_padding_mask: Tensor | None = None,
    query_padding_mask: Tensor | None = None,
) -> Tensor:
    """Slow reference: the same factors with the exact pseudo-inverse (torch.linalg.pinv)."""
    f, a, b = _kernels(q, k, n_landmarks, key_padding_mask, query_padding_mask)
    return _zero_padded(f @ torch.linalg.pinv(a) @ b @ v, query_padding_mask)


# ----------------------------------------------------------------------------- module
@register("nystrom")
class NystromAttention(AttentionBase):
    """Nyström-approximated softmax attention with segment-mean landmarks (not causal)."""

    # No parameters unless conv_kernel is set (then a learned residual convolution: not a drop-in).
    # The pseudo-inverse iteration is fragile in half precision: (at least) fp32 under autocast.
    # causal_cross=False: the query landmarks are segment means over all queries.
    caps = Caps(causal=False, causal_cross=False, permutation_equivariant=False, needs_head_dim=True, fp32=True,
                query_padding_mask=True)

    def __init__(self, head_dim: int, n_landmarks: int = 64, pinv_iters: int = 6, conv_kernel: int | None = None
                 ) -> None:
        super().__init__()
        if n_landmarks < 1:
            raise ValueError(f"nystrom: n_landmarks={n_landmarks} must be >= 1")
        if pinv_iters < 0:
            raise ValueError(f"nystrom: pinv_iters={pinv_iters} must be >= 0")
        if conv_kernel is not None and (conv_kernel < 1 or conv_kernel % 2 == 0):
            raise ValueError(f"nystrom: conv_kernel={conv_kernel} must be odd and >= 1 (or null: no convolution)")
        self.head_dim, self.n_landmarks, self.pinv_iters = head_dim, n_landmarks, pinv_iters
        self.conv = None
        if conv_kernel is not None:
            # depthwise over the D channels of a head, along the sequence; same-length output
            self.conv = nn.Conv1d(head_dim, head_dim, conv_kernel, padding=conv_kernel // 2, groups=head_dim,
                                  bias=False)

    def forward(
        self, q: Tensor, k: Tensor, v: Tensor, *, key_padding_mask: Tensor | None = None,
        causal: bool = False, query_padding_mask: Tensor | None = None,
    ) -> Tensor:
        if causal:
            raise ValueError("nystrom attention is not causal (landmarks mix all positions); use causal=False")
        out = nystrom_attention(q, k, v, self.n_landmarks, self.pinv_iters, key_padding_mask, query_padding_mask)
        if self.conv is not None:
            B, H, S, Dv = v.shape
            if q.shape[-2] != S or Dv != self.head_dim:
                raise ValueError(f"nystrom conv_kernel needs L == S and value size {self.head_dim}, got "
                                 f"L={q.shape[-2]}, S={S}, Dv={Dv}")
            vz = v if key_padding_mask is None else v.masked_fill(~key_padding_mask.bool()[:, None, :, None], 0.0)
            w = self.conv.weight.dtype  # v is fp32 here (caps.fp32); the weights may be half (bf16-true)
            res = self.conv(vz.flatten(0, 1).transpose(1, 2).to(w))  # (B*H, Dv, S)
            out = out + res.transpose(1, 2).unflatten(0, (B, H)).to(out.dtype)  # (B, H, L, Dv)
        return _zero_padded(out, query_padding_mask)
