"""Linear attention (Katharopoulos et al., "Transformers are RNNs", ICML 2020, arXiv:2006.16236).

softmax(q k^T) is replaced by a kernel phi(q) phi(k)^T with phi(x) = elu(x) + 1, so that

    out_i = phi(q_i)^T (sum_j phi(k_j) v_j^T) / phi(q_i)^T (sum_j phi(k_j))

costs O(N F Dv) instead of O(L S D). Causal masking restricts the sums to j <= i: prefix sums (cumsum)
over chunks of keys plus a masked quadratic term inside each chunk. Padded keys get zero features.
The pure functions below take features, so the Performer (``performer.py``) reuses them with FAVOR+
features; :func:`linear_attention_reference` is the explicit quadratic form, the test oracle.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from attnbench.attention.feature_maps import elu_feature_map
from attnbench.attention.full import _mask
from attnbench.attention.registry import AttentionBase, Caps, State, register


# ----------------------------------------------------------------------------- pure math
def safe_divide(num: Tensor, den: Tensor) -> Tensor:
    """num / den where den > 0, else 0 (a row that sees no key); gradients stay finite in both branches."""
    pos = den > 0
    return torch.where(pos, num / torch.where(pos, den, torch.ones_like(den)), torch.zeros_like(num))


def _zero_padded(phi_k: Tensor, v: Tensor, key_padding_mask: Tensor | None) -> tuple[Tensor, Tensor]:
    """Padded keys get zero features and zero values: they add nothing to any sum."""
    if key_padding_mask is None:
        return phi_k, v
    pad = ~key_padding_mask.bool()[:, None, :, None]  # (B, 1, S, 1)
    return phi_k.masked_fill(pad, 0.0), v.masked_fill(pad, 0.0)


def _causal_aligned(phi_q: Tensor, phi_k: Tensor, v: Tensor, chunk: int) -> tuple[Tensor, Tensor]:
    """Numerator and denominator of causal linear attention with L == S (query i sees keys j <= i).

    Keys are cut into chunks of ``chunk``: each chunk sees the prefix sum (exclusive cumsum) of the
    earlier chunks' phi(k) v^T and phi(k), plus its own keys through a lower-triangular quadratic term.
    chunk=1 is the textbook cumsum; larger chunks bound the memory of the prefix states to
    O(N/chunk F Dv). Zero features pad N to a multiple of ``chunk`` (they add nothing).
    """
    B, H, N, Fd = phi_q.shape
    v = torch.cat([v, v.new_ones(*v.shape[:-1], 1)], dim=-1)  # (B, H, N, Dv + 1): the last column gives den
    Dv = v.shape[-1]
    n_chunks = -(-N // chunk)
    pad = n_chunks * chunk - N
    if pad:
        phi_q, phi_k, v = (F.pad(t, (0, 0, 0, pad)) for t in (phi_q, phi_k, v))
    qc = phi_q.unflatten(2, (n_chunks, chunk))  # (B, H, C, c, F)
    kc = phi_k.unflatten(2, (n_chunks, chunk))  # (B, H, C, c, F)
    vc = v.unflatten(2, (n_chunks, chunk))  # (B, H, C, c, Dv)
    kv = kc.transpose(-1, -2) @ vc  # (B, H, C, F, Dv + 1) per-chunk sum of phi(k) [v, 1]^T
    # exclusive prefix sums: chunk c sees chunks < c (a zero state prepended, not cumsum - self)
    kv_prev = torch.cat([kv.new_zeros(B, H, 1, Fd, Dv), kv.cumsum(dim=2)[:, :, :-1]], dim=2)  # (B, H, C, F, Dv+1)
    a = (qc @ kc.transpose(-1, -2)).tril()  # (B, H, C, c, c) within-chunk kernel, j <= i
    nd = (qc @ kv_prev + a @ vc).flatten(2, 3)[:, :, :N]  # (B, H, N, Dv + 1)
    return nd[..., :-1], nd[..., -1:]  # (B, H, N, Dv), (B, H, N, 1)


def linear_attention(
    phi_q: Tensor, phi_k: Tensor, v: Tensor, key_padding_mask: Tensor | None = None, causal: bool = False,
    chunk: int = 64,
) -> Tensor:
    """Kernelised attention from non-negative features. phi_q (B,H,L,F), phi_k (B,H,S,F), v (B,H,S,Dv).

    Causal uses full attention's alignment: query i sees keys j <= i + (S - L). Rows that see no key
    (all padded) give zeros. -> (B, H, L, Dv).
    """
    phi_k, v = _zero_padded(phi_k, v, key_padding_mask)
    if not causal:
        # a column of ones after v: the same products give the normaliser (no separate passes over phi)
        v1 = torch.cat([v, v.new_ones(*v.shape[:-1], 1)], dim=-1)  # (B, H, S, Dv + 1)
        nd = phi_q @ (phi_k.transpose(-1, -2) @ v1)  # (B, H, L, Dv + 1)
        return safe_divide(nd[..., :-1], nd[..., -1:])  # (B, H, L, Dv)
    L, S = phi_q.shape[-2], phi_k.shape[-2]
    # Align query i with key i + (S - L) by prepending zero features (they contribute nothing):
    # S > L: S - L zero queries (outputs dropped); L > S: L - S zero keys (early queries see none).
    if S > L:
        phi_q = F.pad(phi_q, (0, 0, S - L, 0))  # (B, H, S, F)
    elif L > S:
        phi_k, v = F.pad(phi_k, (0, 0, L - S, 0)), F.pad(v, (0, 0, L - S, 0))  # (B, H, L, F), (B, H, L, Dv)
    num, den = _causal_aligned(phi_q, phi_k, v, chunk)
    return safe_divide(num, den)[:, :, -L:]  # (B, H, L, Dv)


def linear_attention_reference(
    phi_q: Tensor, phi_k: Tensor, v: Tensor, key_padding_mask: Tensor | None = None, causal: bool = False
) -> Tensor:
    """Slow reference: the explicit (B,H,L,S) matrix phi_q phi_k^T, masked, row-normalised, times v."""
    L, S = phi_q.shape[-2], phi_k.shape[-2]
    a = phi_q @ phi_k.transpose(-1, -2)  # (B, H, L, S)
    mask = _mask(key_padding_mask, causal, L, S, phi_q.device)
    if mask is not None:
        a = a.masked_fill(~mask, 0.0)
    return safe_divide(a @ v, a.sum(dim=-1, keepdim=True))


def linear_step(phi_q: Tensor, phi_k: Tensor, v: Tensor, state: State | None) -> tuple[Tensor, State]:
    """The recurrent form of causal linear attention (one token): S += phi(k) v^T, z += phi(k), then
    y = phi(q)^T S / phi(q)^T z. phi_q, phi_k (B, H, 1, F), v (B, H, 1, Dv); state {"S": (B, H, F, Dv), "z":
    (B, H, F, 1)} (None: zeros) -> (y (B, H, 1, Dv), new state)."""
    if phi_k.shape[-2] != 1 or v.shape[-2] != 1:
        raise ValueError(f"step takes one token: k, v (B, H, 1, D), got {tuple(phi_k.shape)}, {tuple(v.shape)}")
    s, z = phi_k.transpose(-1, -2) @ v, phi_k.transpose(-1, -2)  # (B, H, F, Dv), (B, H, F, 1)
    if state is not None:
        s, z = state["S"] + s, state["z"] + z
    return safe_divide(phi_q @ s, phi_q @ z), {"S": s, "z": z}


# ----------------------------------------------------------------------------- module
@register("linear")
class LinearAttention(AttentionBase):
    """elu+1 linear attention: O(N F Dv) time, no parameters; not an approximation of softmax."""

    # A different kernel from softmax: a pretrained softmax layer does not keep its function.
    # Prefix sums lose precision in half precision: (at least) fp32 under autocast.
    caps = Caps(pretrained_drop_in=False, fp32=True, incremental=True)

    def __init__(self) -> None:
        super().__init__()

    def forward(
        self, q: Tensor, k: Tensor, v: Tensor, *, key_padding_mask: Tensor | None = None,
        causal: bool = False,
    ) -> Tensor:
        phi_q, phi_k = elu_feature_map(q), elu_feature_map(k)  # (B,H,L,D), (B,H,S,D)
        return linear_attention(phi_q, phi_k, v, key_padding_mask=key_padding_mask, causal=causal)

    def step(self, q: Tensor, k: Tensor, v: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """Incremental decoding in the recurrent form (:func:`linear_step`): O(F Dv) per token, no cache."""
        return linear_step(elu_feature_map(q), elu_feature_map(k), v, state)
