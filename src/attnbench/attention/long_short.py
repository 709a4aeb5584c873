"""Long-Short Transformer attention (Zhu et al., "Long-Short Transformer: Efficient Transformers for Language and
Vision", NeurIPS 2021, arXiv:2107.02192); CAB's ``long_short`` (window 15, 16 landmarks).

Each query attends, in one softmax, to two sets of keys and values:

- short-term, a segment-wise sliding window: the sequence is cut into segments of w = ``window`` tokens and a
  segment's queries see the keys of their segment and of e = max(w // 2, 1) tokens on either side (w + 2e keys, those
  outside the sequence masked). Causal: query i sees keys i - w < j <= i (the official autoregressive code's window).
- long-range, a dynamic projection: P = softmax over the positions of K W^P (per head, W^P: D x r, r =
  ``n_landmarks``) compresses the keys and values to r rows, K_bar = P^T K, V_bar = P^T V (O(L r D)). Causal: the
  sequence is cut into chunks of l = ``chunk_size`` tokens, each compressed on its own (softmax within the chunk, the
  first ``chunk_rank`` columns of W^P), and query i sees the compressed rows of the chunks before its own (which end
  before i); O(L^2 r / l), as the official code.

DualLN: the window's and the compressed keys/values go through two layer norms, K_win = LN_S(K), K_bar = LN_L(P^T K)
(likewise V), so that the two sets have comparable scales in the joint softmax.

Where the paper and the official code (NVIDIA/transformer-ls, copied into CAB's ``transformer_ls.py``) differ, the
paper is the default and the code an option:

- ``norm``: "head" (paper: each head's keys/values normalised over its D features) | "model" (code: one LayerNorm over
  the H x D features of a position, all heads together).
- ``compress_normed``: False (paper: P^T K of the keys before the norm) | True (the bidirectional ``AttentionLS``:
  P^T LN_S(K), the window's normalised keys, then LN_L; its causal ``CausalLS`` compresses the raw keys).

Differences from both: P = softmax(k_h W^P_h + b_h) is computed from each head's projected keys (the layer's k),
where the paper has softmax(X W_i^P) from the layer's input: an entry sees per-head q, k, v only. The norms have no
elementwise affine (nn.LayerNorm at its init, weight 1 and bias 0): per-channel value parameters would fix the value
width, which entries leave free. The causal pass has no Transformer-XL memory and no relative positions (the official
``CausalLS`` attends a zero memory of ``mem_len`` tokens and adds r_net position terms): the first tokens see only
real keys, and positions are the layer's. Padded keys are masked in both branches (left out of P); a row with no
visible key gives zeros. :func:`long_short_attention_reference` writes the same attention out densely, O(L^2).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnbench.attention.local import block_size
from attnbench.attention.registry import AttentionBase, Caps, register

Norm = Literal["head", "model"]


# ----------------------------------------------------------------------------- pure math
def dual_norm(x: Tensor, norm: Norm) -> Tensor:
    """Layer norm without affine of (B, H, N, E): over E per head ("head") or over (H, E) per position ("model")."""
    if norm == "head":
        return F.layer_norm(x, x.shape[-1:])
    xt = x.transpose(1, 2)  # (B, N, H, E)
    return F.layer_norm(xt, xt.shape[-2:]).transpose(1, 2)


def segment_reach(window: int) -> int:
    """e: the tokens a segment of ``window`` queries sees on either side (the official ``max(window // 2, 1)``)."""
    return max(window // 2, 1)


def _real(key_padding_mask: Tensor | None, B: int, L: int, device: torch.device) -> Tensor:
    """(B, L) bool, True = real token."""
    return torch.ones(B, L, dtype=torch.bool, device=device) if key_padding_mask is None else key_padding_mask.bool()


def _project(logits: Tensor, real: Tensor, k: Tensor, v: Tensor, norm: Norm) -> tuple[Tensor, Tensor, Tensor]:
    """Dynamic projection over the positions axis (-2) of groups of tokens: logits (B,H,G,n,r), real (B,G,n), k
    (B,H,G,n,D), v (B,H,G,n,Dv) -> LN_L(P^T k) (B,H,G r,D), LN_L(P^T v) (B,H,G r,Dv), alive (B,G r): compressed rows of
    groups holding a real token. P = softmax over the group's real positions."""
    B, H, G, n, r = logits.shape
    alive = real.any(-1)  # (B, G)
    keep = real[:, None, :, :, None] | ~alive[:, None, :, None, None]  # a dead group: every position (then masked)
    p = torch.softmax(logits.masked_fill(~keep, float("-inf")), dim=3)  # (B, H, G, n, r)
    k_bar = torch.einsum("bhgnr,bhgnd->bhgrd", p, k).flatten(2, 3)  # (B, H, G r, D)
    v_bar = torch.einsum("bhgnr,bhgne->bhgre", p, v).flatten(2, 3)  # (B, H, G r, Dv)
    return dual_norm(k_bar, norm), dual_norm(v_bar, norm), alive.repeat_interleave(r, dim=1)


def _joint(s_long: Tensor, s_win: Tensor, vis_long: Tensor, vis_win: Tensor, v_bar: Tensor, v_win: Tensor,
           dropout: nn.Module | None) -> Tensor:
    """One softmax over the compressed and the window keys of each query block: s_long (B,H,nb,b,C), s_win
    (B,H,nb,b,W) scores, vis_* bool masks broadcastable to them, v_bar (B,H,C,Dv), v_win (B,H,nb,W,Dv)
    -> (B,H,nb b,Dv); rows with no visible key give zeros."""
    B, H, nb, b, C = s_long.shape
    rows = torch.broadcast_shapes(vis_long.shape[:-1], vis_win.shape[:-1], (1, 1, nb, b))  # (B|1, 1, nb, b)
    vis = torch.cat([vis_long.expand(*rows, C), vis_win.expand(*rows, vis_win.shape[-1])], dim=-1)  # (.., C + W)
    dead = ~vis.any(dim=-1, keepdim=True)  # (.., nb, b, 1)
    scores = torch.cat([s_long, s_win], dim=-1)  # (B, H, nb, b, C + W)
    # dead rows attend every slot (finite softmax and gradients), then are zeroed
    attn = torch.softmax(scores.masked_fill(~(vis | dead), float("-inf")), dim=-1)
    if dropout is not None:
        attn = dropout(attn)
    y = attn[..., :C].reshape(B, H, nb * b, C) @ v_bar  # (B, H, nb b, Dv)
    y = y + (attn[..., C:] @ v_win).flatten(2, 3)  # (B, H, nb b, Dv)
    return y.masked_fill(dead.flatten(2, 3), 0.0)


def long_short_attention(
    q: Tensor, k: Tensor, v: Tensor, w_p: Tensor, b_p: Tensor, window: int, key_padding_mask: Tensor | None = None,
    norm: Norm = "head", compress_normed: bool = False, dropout: nn.Module | None = None,
) -> Tensor:
    """Non-causal long-short attention: q, k (B,H,L,D), v (B,H,L,Dv), w_p (H,D,r), b_p (H,r) -> (B,H,L,Dv).
    O(L (w + 2e + r) (D + Dv)) time and memory."""
    B, H, L, D = q.shape
    w, e = window, segment_reach(window)
    n = -(-L // w)  # segments
    pad = n * w - L
    real = _real(key_padding_mask, B, L, q.device)  # (B, L)
    k_win, v_win = dual_norm(k, norm), dual_norm(v, norm)  # LN_S
    # long-range: one group of all L positions
    logits = torch.einsum("bhld,hdr->bhlr", k, w_p.to(k.dtype)) + b_p.to(k.dtype)[:, None, :]  # (B, H, L, r)
    src_k, src_v = (k_win, v_win) if compress_normed else (k, v)
    k_bar, v_bar, alive = _project(logits[:, :, None], real[:, None], src_k[:, :, None], src_v[:, :, None], norm)
    qp = F.pad(q, (0, 0, 0, pad)) / math.sqrt(D)  # (B, H, n w, D), scaled
    s_long = (qp @ k_bar.transpose(-1, -2)).unflatten(2, (n, w))  # (B, H, n, w, r)
    # short-term: segment s sees positions s w - e .. s w + w + e - 1

    def windows(x: Tensor) -> Tensor:  # (B, H, L, E) -> (B, H, n, w + 2e, E)
        return F.pad(x, (0, 0, e, e + pad)).unfold(2, w + 2 * e, w).transpose(-1, -2)

    s_win = qp.unflatten(2, (n, w)) @ windows(k_win).transpose(-1, -2)  # (B, H, n, w, w + 2e)
    vis_win = F.pad(real, (e, e + pad), value=False).unfold(1, w + 2 * e, w)[:, None, :, None, :]  # (B,1,n,1,w+2e)
    vis_long = alive[:, None, None, None, :]  # (B, 1, 1, 1, r)
    y = _joint(s_long, s_win, vis_long, vis_win, v_bar, windows(v_win), dropout)
    return y[:, :, :L]


def long_short_attention_causal(
    q: Tensor, k: Tensor, v: Tensor, w_p: Tensor, b_p: Tensor, window: int, chunk_size: int, chunk_rank: int,
    key_padding_mask: Tensor | None = None, norm: Norm = "head", compress_normed: bool = False,
    dropout: nn.Module | None = None,
) -> Tensor:
    """Causal long-short attention: query i sees keys i - w < j <= i and the compressed rows of the chunks of
    ``chunk_size`` tokens before its own (each chunk compressed by the first ``chunk_rank`` columns of w_p).
    q, k (B,H,L,D), v (B,H,L,Dv), w_p (H,D,>=chunk_rank), b_p (H,>=chunk_rank) -> (B,H,L,Dv)."""
    B, H, L, D = q.shape
    real = _real(key_padding_mask, B, L, q.device)  # (B, L)
    k_win, v_win = dual_norm(k, norm), dual_norm(v, norm)  # LN_S
    # long-range: nc chunks of l positions, chunk_rank rows each
    l, rc = chunk_size, chunk_rank
    nc = -(-L // l)
    cpad = nc * l - L
    logits = torch.einsum("bhld,hdr->bhlr", k, w_p[:, :, :rc].to(k.dtype)) + b_p[:, :rc].to(k.dtype)[:, None, :]
    src_k, src_v = (k_win, v_win) if compress_normed else (k, v)

    def chunks(x: Tensor) -> Tensor:  # (B, H, L, E) -> (B, H, nc, l, E)
        return F.pad(x, (0, 0, 0, cpad)).unflatten(2, (nc, l))

    real_c = F.pad(real, (0, cpad), value=False).unflatten(1, (nc, l))  # (B, nc, l)
    k_bar, v_bar, alive = _project(chunks(logits), real_c, chunks(src_k), chunks(src_v), norm)  # (B,H,nc rc,D) ..
    # short-term: query blocks of b >= window (local.block_size) see their own and the previous block
    b = block_size(L, window)
    nb = -(-L // b)
    pad = nb * b - L
    qp = F.pad(q, (0, 0, 0, pad)) / math.sqrt(D)  # (B, H, nb b, D), scaled
    s_long = (qp @ k_bar.transpose(-1, -2)).unflatten(2, (nb, b))  # (B, H, nb, b, nc rc)
    pos = torch.arange(nb * b, device=q.device)  # query positions
    seen = torch.arange(nc, device=q.device).repeat_interleave(rc) < (pos // l)[:, None]  # (nb b, nc rc)
    vis_long = (seen[None] & alive[:, None, :])[:, None].unflatten(2, (nb, b))  # (B, 1, nb, b, nc rc)

    def windows(x: Tensor) -> Tensor:  # (B, H, L, E) -> (B, H, nb, 2b, E): block n's keys (n - 1) b .. n b + b - 1
        return F.pad(x, (0, 0, b, pad)).unfold(2, 2 * b, b).transpose(-1, -2)

    s_win = qp.unflatten(2, (nb, b)) @ windows(k_win).transpose(-1, -2)  # (B, H, nb, b, 2b)
    diff = torch.arange(2 * b, device=q.device)[None, :] - b - torch.arange(b, device=q.device)[:, None]  # j - i
    band = (diff > -window) & (diff <= 0)  # (b, 2b)
    vis_win = band & F.pad(real, (b, pad), value=False).unfold(1, 2 * b, b)[:, :, None, :]  # (B, nb, b, 2b)
    y = _joint(s_long, s_win, vis_long, vis_win[:, None], v_bar, windows(v_win), dropout)
    return y[:, :, :L]


def long_short_attention_reference(
    q: Tensor, k: Tensor, v: Tensor, w_p: Tensor, b_p: Tensor, window: int, key_padding_mask: Tensor | None = None,
    causal: bool = False, chunk_size: int = 32, chunk_rank: int = 1, norm: Norm = "head",
    compress_normed: bool = False,
) -> Tensor:
    """Slow reference: the compressed rows built one group at a time, then one dense softmax over [compressed rows;
    all L keys] with explicit masks (the window band, the chunks seen, the padding); rows with no key give zeros."""
    B, H, L, D = q.shape
    real = _real(key_padding_mask, B, L, q.device)  # (B, L)
    k_win, v_win = dual_norm(k, norm), dual_norm(v, norm)
    src_k, src_v = (k_win, v_win) if compress_normed else (k, v)
    i = torch.arange(L, device=q.device)[:, None]  # query positions (L, 1)
    j = torch.arange(L, device=q.device)[None, :]  # key positions (1, L)
    if causal:
        groups = [range(s, min(s + chunk_size, L)) for s in range(0, L, chunk_size)]
        rank, band = chunk_rank, (j > i - window) & (j <= i)
    else:
        groups, rank = [range(L)], w_p.shape[-1]
        e, seg = segment_reach(window), (i // window) * window  # first position of the query's segment
        band = (j >= seg - e) & (j < seg + window + e)
    k_rows, v_rows, row_ok, row_seen = [], [], [], []
    for g, pos in enumerate(groups):
        idx = torch.tensor(list(pos), device=q.device)
        logits = torch.einsum("bhnd,hdr->bhnr", k[:, :, idx], w_p[:, :, :rank]) + b_p[:, :rank][:, None]
        logits = logits.masked_fill(~real[:, None, idx, None], float("-inf"))
        p = torch.softmax(logits, dim=2).nan_to_num(0.0)  # (B, H, n, rank); a group of padding: zeros
        k_rows.append(torch.einsum("bhnr,bhnd->bhrd", p, src_k[:, :, idx]))
        v_rows.append(torch.einsum("bhnr,bhnd->bhrd", p, src_v[:, :, idx]))
        row_ok.append(real[:, idx].any(-1, keepdim=True).expand(-1, rank))  # (B, rank)
        # a query sees the group's rows when causal only if the group ends before the query's chunk starts
        row_seen.append(((i // chunk_size) > g if causal else torch.ones_like(i, dtype=torch.bool)).expand(-1, rank))
    k_bar, v_bar = dual_norm(torch.cat(k_rows, 2), norm), dual_norm(torch.cat(v_rows, 2), norm)  # (B, H, C, *)
    keys, values = torch.cat([k_bar, k_win], 2), torch.cat([v_bar, v_win], 2)  # (B, H, C + L, *)
    vis = torch.cat([torch.cat(row_seen, 1)[None] & torch.cat(row_ok, 1)[:, None],  # (B, L, C)
                     band[None] & real[:, None, :]], dim=-1)[:, None]  # (B, 1, L, C + L)
    scores = (q @ keys.transpose(-1, -2) / math.sqrt(D)).masked_fill(~vis, float("-inf"))
    return torch.softmax(scores, dim=-1).nan_to_num(0.0) @ values


# ----------------------------------------------------------------------------- module
@register("long_short")
class LongShortAttention(AttentionBase):
    """Transformer-LS: a sliding window plus a learned dynamic projection of the keys/values, one softmax."""

    # Self-attention only: positions index one sequence (windows, chunks). learned W^P per head (needs head_dim,
    # n_heads); fp32 as the official AttentionLS (fp32=True): softmax over the whole sequence, layer norms.
    caps = Caps(cross_attention=False, causal_cross=False, learned_params=True, pretrained_drop_in=False,
                permutation_equivariant=False, needs_head_dim=True, needs_n_heads=True, fp32=True)

    def __init__(self, head_dim: int, n_heads: int, window: int = 15, n_landmarks: int = 16, chunk_size: int = 32,
                 chunk_rank: int = 1, norm: Norm = "head", compress_normed: bool = False,
                 dropout: float = 0.0) -> None:
        super().__init__()
        for key, val in (("head_dim", head_dim), ("n_heads", n_heads), ("window", window),
                         ("n_landmarks", n_landmarks), ("chunk_size", chunk_size), ("chunk_rank", chunk_rank)):
            if val < 1:
                raise ValueError(f"long_short: {key}={val} must be >= 1")
        if chunk_rank > n_landmarks:
            raise ValueError(f"long_short: chunk_rank={chunk_rank} must be <= n_landmarks={n_landmarks} (the causal "
                             "pass uses the first chunk_rank columns of the dynamic projection)")
        if norm not in ("head", "model"):
            raise ValueError(f"long_short: norm={norm!r}; allowed: head, model")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"long_short: dropout={dropout} must be in [0, 1)")
        self.head_dim, self.n_heads, self.window, self.n_landmarks = head_dim, n_heads, window, n_landmarks
        self.chunk_size, self.chunk_rank = chunk_size, chunk_rank
        self.norm, self.compress_normed = norm, compress_normed
        # W^P per head, as nn.Linear(head_dim, n_landmarks) initialises it: U(-1/sqrt(D), 1/sqrt(D))
        bound = 1 / math.sqrt(head_dim)
        self.w_p = nn.Parameter(torch.empty(n_heads, head_dim, n_landmarks).uniform_(-bound, bound))  # (H, D, r)
        self.b_p = nn.Parameter(torch.empty(n_heads, n_landmarks).uniform_(-bound, bound))  # (H, r)
        self.drop = nn.Dropout(dropout)

    def forward(
        self, q: Tensor, k: Tensor, v: Tensor, *, key_padding_mask: Tensor | None = None,
        causal: bool = False,
    ) -> Tensor:
        B, H, L, D = q.shape
        if k.shape[2] != L:
            raise ValueError(f"long_short attention needs as many queries as keys (self-attention), got L={L}, "
                             f"S={k.shape[2]}")
        if (self.n_heads, self.head_dim) != (H, D):
            raise ValueError(f"long_short: built for n_heads={self.n_heads}, head_dim={self.head_dim}; "
                             f"got H={H}, D={D}")
        drop = self.drop if self.training else None
        if causal:
            return long_short_attention_causal(q, k, v, self.w_p, self.b_p, self.window, self.chunk_size,
                                               self.chunk_rank, key_padding_mask, self.norm, self.compress_normed,
                                               drop)
        return long_short_attention(q, k, v, self.w_p, self.b_p, self.window, key_padding_mask, self.norm,
                                    self.compress_normed, drop)
