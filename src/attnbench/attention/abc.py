"""ABC, attention with bounded-memory control (Peng et al., ACL 2022, arXiv:2110.02488), its learned-control instance
ABC_MLP as CAB runs it (Shark-NLP/CAB ``efficient-attention/efficient_attention/modules/abc.py``).

The S keys and values are written into C memory slots (``n_landmarks``) by control vectors phi_i in R^C, and every
query reads the memory with softmax attention:

    K~ = sum_i phi_i (x) k_i,  V~ = sum_i phi_i (x) v_i  (C x D, C x Dv),   out = softmax(q K~^T / sqrt(D)) V~,
    phi_i = exp(a_i) / sum_j exp(a_j)  (per slot, over the tokens),  a_i = k_i W  (W: D x C, learned).

Cost O((L + S) C D). Causal (the paper's): the memory of step t holds the tokens <= t, normalised over them,
K~_t = sum_{i<=t} exp(a_i) k_i / sum_{j<=t} exp(a_j); computed in chunks of ``chunk`` tokens (:func:`abc_causal`): per
chunk the memory of the earlier chunks (C x D, carried from chunk to chunk with a running-max stabiliser) plus a
lower-triangular term inside the chunk, so nothing per (token, slot, D) is kept. The exponentials of a chunk are
taken against the running max of the logits up to its end (the memory carried over is rescaled when it grows): no
overflow, and the future beyond the chunk never enters; inside a chunk, a slot's logit rising by more than ~80
(float32) underflows the earlier tokens' terms at the positions before the rise. Queries read the memory
independently of each other: causal cross attention (CAB's CC) keeps the memory fully visible. Incremental decoding
(``step``) carries the (unnormalised, stabilised) memory: O(C D) per token, whatever the length.

Paper and code. ``control``: the ABC formulation writes both memories with one control vector phi_i per token
(``"shared"``, default; here from the key, a_i = k_i W, as only q, k, v reach an entry); CAB's code learns two, one
from the keys (k_i W_k) for K~ and one from the values (v_i W_v) for V~ (``"separate"``, needs Dv == head_dim).
``causal_form``: CAB's causal branch computes exp(a_t - logcumsumexp(a)_t) k_t at step t but never sums over i <= t,
so slot r of the memory of step t holds only token t (every output is a multiple of its own v_t); ``"paper"``
(default) sums the prefix as above, ``"cab"`` reproduces the code. Queries are scaled by D^-1/2 (both).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnbench.attention.linear import safe_divide
from attnbench.attention.nystrom import masked_softmax
from attnbench.attention.registry import AttentionBase, Caps, State, register

ABC_CHUNK = 64  # tokens per chunk of the causal kernel


# ----------------------------------------------------------------------------- pure math
def control_logits(x: Tensor, w: Tensor, key_padding_mask: Tensor | None = None) -> Tensor:
    """a_i = x_i W for x (B,H,N,D), W (D,C); padded tokens -inf (they take no slot) -> (B,H,N,C)."""
    a = x @ w.to(x.dtype)  # (B, H, N, C)
    if key_padding_mask is not None:
        a = a.masked_fill(~key_padding_mask.bool()[:, None, :, None], float("-inf"))
    return a


def abc_noncausal(q: Tensor, k: Tensor, v: Tensor, a_k: Tensor, a_v: Tensor) -> Tensor:
    """Every query reads the memory of all keys. q (B,H,L,D), k (B,H,S,D), v (B,H,S,Dv), control logits a_k, a_v
    (B,H,S,C) (-inf: padded) -> (B,H,L,Dv); a batch element with no real key gives zeros (empty memory)."""
    keep = torch.isfinite(a_k[..., :1]).transpose(-1, -2)  # (B, H, 1, S)
    phi_k = masked_softmax(a_k.transpose(-1, -2), keep)  # (B, H, C, S) over the tokens
    phi_v = phi_k if a_v is a_k else masked_softmax(a_v.transpose(-1, -2), keep)  # (B, H, C, S)
    k_mem, v_mem = phi_k @ k, phi_v @ v  # (B, H, C, D), (B, H, C, Dv)
    p = torch.softmax(q @ (k_mem * q.shape[-1] ** -0.5).transpose(-1, -2), dim=-1)  # (B, H, L, C)
    return p @ v_mem  # (B, H, L, Dv)


def _running_max(a: Tensor) -> Tensor:
    """Per chunk, the max of the logits of this and the earlier chunks (finite: 0 before any real token).
    a (B,H,J,c,C) -> (B,H,J,1,C)."""
    m = torch.cummax(a.amax(dim=-2, keepdim=True), dim=2).values  # (B, H, J, 1, C)
    return torch.where(torch.isfinite(m), m, torch.zeros_like(m)).detach()  # cancels exactly; no gradient needed


def _prefix_memory(e: Tensor, x: Tensor, m: Tensor) -> tuple[Tensor, Tensor]:
    """Memory of the earlier chunks for each chunk j, in chunk j's stabiliser: P_j = sum_{i < start_j} exp(a_i - m_j)
    x_i and Z_j = sum exp(a_i - m_j), carried chunk to chunk (P_j = exp(m_{j-1} - m_j) (P_{j-1} + S_{j-1})).
    e = exp(a - m) (B,H,J,c,C), x (B,H,J,c,E), m (B,H,J,1,C) -> P (B,H,J,C,E), Z (B,H,J,1,C)."""
    sums, z = e.transpose(-1, -2) @ x, e.sum(-2, keepdim=True)  # (B, H, J, C, E), (B, H, J, 1, C) chunk sums
    P, Z = [torch.zeros_like(sums[:, :, 0])], [torch.zeros_like(z[:, :, 0])]
    for j in range(1, e.shape[2]):
        r = torch.exp(m[:, :, j - 1] - m[:, :, j])  # (B, H, 1, C) <= 1: rescale to the new stabiliser
        P.append((P[-1] + sums[:, :, j - 1]) * r.transpose(-1, -2))
        Z.append((Z[-1] + z[:, :, j - 1]) * r)
    return torch.stack(P, dim=2), torch.stack(Z, dim=2)


def abc_causal(q: Tensor, k: Tensor, v: Tensor, a_k: Tensor, a_v: Tensor, chunk: int = ABC_CHUNK) -> Tensor:
    """Causal ABC, query i reading the memory of keys j <= i + S - L (full attention's alignment). Shapes as
    :func:`abc_noncausal`. Positions are padded in front to N = max(L, S) (dummy queries, or padded keys: -inf
    logits) and at the end to a multiple of the chunk; within a chunk c: the memory of the earlier chunks (read by
    q_t, with normaliser Z_t) plus tril(q k^T) exp(a - m) for the chunk's own keys."""
    B, H, L, D = q.shape
    S, Dv, C = k.shape[-2], v.shape[-1], a_k.shape[-1]
    shared = a_v is a_k  # one control for both memories: its weights serve twice
    N = max(L, S)
    c = min(chunk, N)
    J = -(-N // c)
    tail = J * c - N
    q = F.pad(q * D ** -0.5, (0, 0, N - L, tail))  # (B, H, Jc, D): dummy queries in front when S > L
    k, v = (F.pad(t, (0, 0, N - S, tail)) for t in (k, v))  # (B, H, Jc, D|Dv): padded keys in front when L > S
    a_k, a_v = (F.pad(a, (0, 0, N - S, tail), value=float("-inf")) for a in (a_k, a_v))  # (B, H, Jc, C)
    qc, kc, vc = (t.view(B, H, J, c, t.shape[-1]) for t in (q, k, v))
    tri = torch.ones(c, c, dtype=torch.bool, device=q.device).tril()  # (c, c) j <= i within a chunk
    # keys: the memory read by each query, as scores s[t, r] = q_t . K~_t[r]
    ak = a_k.view(B, H, J, c, C)
    mk = _running_max(ak)  # (B, H, J, 1, C)
    ek = torch.exp(ak - mk)  # (B, H, J, c, C), 0 at padded keys
    Pk, Zk = _prefix_memory(ek, kc, mk)  # (B, H, J, C, D), (B, H, J, 1, C)
    qk = (qc @ kc.transpose(-1, -2)).masked_fill(~tri, 0.0)  # (B, H, J, c, c)
    num = qc @ Pk.transpose(-1, -2) + qk @ ek  # (B, H, J, c, C)
    den = Zk + ek.cumsum(dim=-2)  # (B, H, J, c, C): sum_{i<=t} exp(a_i - m_j)
    p = torch.softmax(safe_divide(num, den), dim=-1)  # (B, H, J, c, C); rows with no key: uniform, zeroed below
    # values: out_t = sum_r p_tr V~_t[r] = (p / Zv)_t . (P^v + the chunk's own values)
    av = a_v.view(B, H, J, c, C)
    mv = mk if shared else _running_max(av)
    ev = ek if shared else torch.exp(av - mv)  # (B, H, J, c, C)
    Pv, Zv = _prefix_memory(ev, vc, mv)  # (B, H, J, C, Dv), (B, H, J, 1, C)
    g = safe_divide(p, Zv + ev.cumsum(dim=-2))  # (B, H, J, c, C): 0 where no key yet
    gv = (g @ ev.transpose(-1, -2)).masked_fill(~tri, 0.0)  # (B, H, J, c, c)
    out = g @ Pv + gv @ vc  # (B, H, J, c, Dv)
    return out.view(B, H, J * c, Dv)[:, :, N - L:N]  # (B, H, L, Dv)


def abc_causal_cab(q: Tensor, k: Tensor, v: Tensor, a_k: Tensor, a_v: Tensor) -> Tensor:
    """CAB's causal branch (``causal_form="cab"``): at step t slot r holds only token t, weighted by exp(a_t -
    logcumsumexp(a)_t), so out_t = sum_r softmax_r(q_t . k_t w^k_tr / sqrt(D)) w^v_tr v_t. Aligned as
    :func:`abc_causal` (query i with key i + S - L)."""
    L, S, D = q.shape[-2], k.shape[-2], q.shape[-1]
    N = max(L, S)
    q = F.pad(q, (0, 0, N - L, 0))  # (B, H, N, D)
    k, v = (F.pad(t, (0, 0, N - S, 0)) for t in (k, v))
    a_k, a_v = (F.pad(a, (0, 0, N - S, 0), value=float("-inf")) for a in (a_k, a_v))  # (B, H, N, C)

    def weight(a: Tensor) -> Tensor:  # exp(a_t - logcumsumexp(a)_t), 0 at padded keys (no NaN before a real one)
        lse = torch.logcumsumexp(a, dim=-2)
        return torch.exp(a - torch.where(torch.isfinite(lse), lse, torch.zeros_like(lse)))

    wk, wv = weight(a_k), weight(a_v)  # (B, H, N, C)
    p = torch.softmax((q * k).sum(-1, keepdim=True) * D ** -0.5 * wk, dim=-1)  # (B, H, N, C)
    return ((p * wv).sum(-1, keepdim=True) * v)[:, :, N - L:]  # (B, H, L, Dv)


def abc_reference(q: Tensor, k: Tensor, v: Tensor, a_k: Tensor, a_v: Tensor, causal: bool = False) -> Tensor:
    """Slow reference: for every query the memory K~_i, V~_i (B,H,L,C,D) of the keys it sees, written out from the
    (L, S) visibility (full attention's alignment) and explicit per-slot softmax weights over the tokens."""
    L, S, D = q.shape[-2], k.shape[-2], q.shape[-1]
    vis = torch.ones(L, S, dtype=torch.bool).tril(S - L) if causal else torch.ones(L, S, dtype=torch.bool)
    vis = vis[None, None, :, :, None] & torch.isfinite(a_k)[:, :, None, :, :1]  # (B, H, L, S, 1)

    def memory(a: Tensor, x: Tensor) -> Tensor:  # per query: sum_j softmax_j(a_j over visible j) x_j
        logits = a[:, :, None].expand(-1, -1, L, -1, -1).masked_fill(~vis, float("-inf"))  # (B, H, L, S, C)
        wts = torch.softmax(logits, dim=-2).nan_to_num(0.0)  # no visible key: 0
        return torch.einsum("bhlsc,bhsd->bhlcd", wts, x)  # (B, H, L, C, D)

    k_mem, v_mem = memory(a_k, k), memory(a_v, v)
    p = torch.softmax(torch.einsum("bhld,bhlcd->bhlc", q, k_mem) / math.sqrt(D), dim=-1)  # (B, H, L, C)
    return torch.einsum("bhlc,bhlcd->bhld", p, v_mem)


# ----------------------------------------------------------------------------- module
@register("abc")
class ABCAttention(AttentionBase):
    """ABC_MLP: ``n_landmarks`` memory slots written by a learned softmax control (W: head_dim x n_landmarks, CAB's
    xavier-uniform init with gain 2^-1/2), read by softmax attention. Linear in the length; causal and incremental."""

    # Learned control (not a softmax drop-in); non-causal it is a sum over keys: permutation equivariant. Queries do
    # not mix: causal cross (CC) holds. Exponentials and prefix sums: (at least) fp32 under autocast.
    caps = Caps(learned_params=True, pretrained_drop_in=False, needs_head_dim=True, fp32=True, incremental=True)

    def __init__(self, head_dim: int, n_landmarks: int = 16, control: Literal["shared", "separate"] = "shared",
                 causal_form: Literal["paper", "cab"] = "paper") -> None:
        super().__init__()
        if head_dim < 1 or n_landmarks < 1:
            raise ValueError(f"abc: head_dim={head_dim} and n_landmarks={n_landmarks} must be >= 1")
        if control not in ("shared", "separate"):
            raise ValueError(f"abc: control={control!r}; allowed: 'shared' (one control per token, the paper's), "
                             "'separate' (keys' and values' own, CAB's code)")
        if causal_form not in ("paper", "cab"):
            raise ValueError(f"abc: causal_form={causal_form!r}; allowed: 'paper' (prefix memory), 'cab' (its code)")
        self.head_dim, self.n_landmarks, self.control, self.causal_form = head_dim, n_landmarks, control, causal_form
        self.compress_k = nn.Parameter(nn.init.xavier_uniform_(torch.empty(head_dim, n_landmarks), gain=2 ** -0.5))
        self.compress_v = None
        if control == "separate":
            self.compress_v = nn.Parameter(nn.init.xavier_uniform_(torch.empty(head_dim, n_landmarks), gain=2 ** -0.5))

    def _logits(self, k: Tensor, v: Tensor, key_padding_mask: Tensor | None) -> tuple[Tensor, Tensor]:
        if k.shape[-1] != self.head_dim:
            raise ValueError(f"abc: built for head_dim={self.head_dim}, got key head size {k.shape[-1]}")
        a_k = control_logits(k, self.compress_k, key_padding_mask)  # (B, H, S, C)
        if self.compress_v is None:
            return a_k, a_k
        if v.shape[-1] != self.head_dim:
            raise ValueError(f"abc: control='separate' computes the value control from v with a head_dim x "
                             f"n_landmarks matrix: needs v's head size {v.shape[-1]} == head_dim={self.head_dim}; "
                             "use control='shared'")
        return a_k, control_logits(v, self.compress_v, key_padding_mask)

    def forward(
        self, q: Tensor, k: Tensor, v: Tensor, *, key_padding_mask: Tensor | None = None,
        causal: bool = False,
    ) -> Tensor:
        a_k, a_v = self._logits(k, v, key_padding_mask)  # (B, H, S, C) each (the same tensor when shared)
        if not causal:
            return abc_noncausal(q, k, v, a_k, a_v)
        if self.causal_form == "cab":
            return abc_causal_cab(q, k, v, a_k, a_v)
        return abc_causal(q, k, v, a_k, a_v)

    def step(self, q: Tensor, k: Tensor, v: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """One token: the memory sums of the tokens so far in a running-max stabiliser, {"K": (B,H,C,D), "V":
        (B,H,C,Dv), "zk"|"zv": (B,H,C,1), "mk"|"mv": (B,H,C,1)} (``causal_form="cab"``: the running logsumexp
        "lk", "lv" only); O(C D) per token."""
        if k.shape[-2] != 1 or v.shape[-2] != 1:
            raise ValueError(f"abc: step takes one token: k, v (B, H, 1, D), got {tuple(k.shape)}, {tuple(v.shape)}")
        a_k, a_v = (a.transpose(-1, -2) for a in self._logits(k, v, None))  # (B, H, C, 1) each
        s = q.shape[-1] ** -0.5
        if self.causal_form == "cab":
            lk = a_k if state is None else torch.logaddexp(state["lk"], a_k)
            lv = a_v if state is None else torch.logaddexp(state["lv"], a_v)
            p = torch.softmax((q * k).sum(-1, keepdim=True) * s * torch.exp(a_k - lk).transpose(-1, -2), dim=-1)
            y = (p * torch.exp(a_v - lv).transpose(-1, -2)).sum(-1, keepdim=True) * v  # (B, H, 1, Dv)
            return y, {"lk": lk, "lv": lv}
        new = {}
        for name, a, x in (("k", a_k, k), ("v", a_v, v)):
            if state is None:
                m, mem, z = a, x.expand(*a.shape[:-1], x.shape[-1]), torch.ones_like(a)  # exp(a - a) = 1
            else:
                m = torch.maximum(state["m" + name], a)  # (B, H, C, 1)
                r, e = torch.exp(state["m" + name] - m), torch.exp(a - m)
                mem = state[name.upper()] * r + e * x  # (B, H, C, D|Dv)
                z = state["z" + name] * r + e
            new.update({"m" + name: m, name.upper(): mem, "z" + name: z})
        p = torch.softmax(q @ (new["K"] / new["zk"] * s).transpose(-1, -2), dim=-1)  # (B, H, 1, C)
        return p @ (new["V"] / new["zv"]), new  # (B, H, 1, Dv)
