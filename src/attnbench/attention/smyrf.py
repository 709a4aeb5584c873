"""SMYRF (Daras, Kitaev, Odena, Dimakis, "SMYRF: Efficient Attention using Asymmetric Clustering",
NeurIPS 2020, arXiv:2010.05315).

Each query attends only to the keys of "its" cluster. Clusters come from asymmetric LSH:

1. XBOX+ transforms (per (batch, head)), M_Q = max_i |q_i|, M_K = max_j |k_j| over the real queries/keys,
       F(q) = [q; 0; sqrt(M_Q^2 + M_K^2 - |q|^2)],   G(k) = [k; sqrt(M_Q^2 + M_K^2 - |k|^2); 0],
   so |F(q) - G(k)|^2 = 2 (M_Q^2 + M_K^2) - 2 q.k: maximum inner product becomes nearest neighbour.
2. One Gaussian projection a_h (D+2,) per hashing round h, the same for queries and keys; the hash is the
   real-valued projection F(q).a_h, G(k).a_h (the official code's E2LSH: it drops the floor((a.x+b)/r)
   and its uniform shift b only adds a constant, so neither r nor b changes the ordering; we omit both).
3. Clusters of exactly cluster_size C in hash order, as the official code: per row and round the n_q real
   queries (all L without a query padding mask) are sorted by hash and cut into chunks of C, the last chunk
   short (n_q - (n_c - 1) C members, n_c = ceil(n_q / C)); the real keys, sorted the same way, are cut at the
   same fractions of their ranks, floor(c C n_k / n_q): in self-attention (n_k = n_q) exactly the query
   chunks, in cross attention (or with key padding only) proportional chunks. Query chunk c attends densely
   to key chunk c (softmax(q k^T / sqrt(D)) inside the pair).
4. n_hashes rounds merged by log-sum-exp weights: out_i = sum_h softmax_h(lse_h(i)) o_h(i), where lse_h
   is the log normaliser of query i's softmax in round h (a key met in several rounds counts several
   times, as in the paper/official code; no de-duplication).

Cost: O(n_hashes (L + S) log) for the sorts and O(n_hashes L C_k D) for attention (C_k ~ C S / L keys per
cluster). With one cluster (cluster_size >= L) and any n_hashes it is full attention exactly.

Fixes of known bugs of the official code (giannisdaras/smyrf, see shared/papers/smyrf.md §6):
- padding masks are per (batch, head) row (the official `repeat` tiles batch masks across heads);
- lengths need not be multiples of the cluster size (the official reshape mixes batch rows and rounds, or
  fails); the short last cluster is one more cluster slot, its empty slots masked. Run as the official code must be
  (zero-padded to a multiple of C, padding masked so it sorts last), the official clusters and outputs are
  these, measured equal to 2e-15 at n = 40, 65, 100, 1000 (scripts/official/compare_smyrf.py);
- padded keys are excluded from M_K and sorted after all valid keys, so they never get weight; a query whose
  cluster holds no valid key gives zeros (official: uniform weights over padding or NaN). With a query padding
  mask (self-attention) padded queries are left out of M_Q and of the clusters and give zeros, so the real
  tokens' outputs do not depend on the amount of padding (official: padded queries fill the last cluster);
- projections are drawn once from a seeded generator and kept in a buffer (official: redrawn from the
  global RNG at every call, so eval is not deterministic).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from attnbench.attention.registry import AttentionBase, Caps, register

_TINY = 1e-30  # clamps a softmax normaliser that is 0 only for rows without any key


# ----------------------------------------------------------------------------- pure math
def xbox_plus(q: Tensor, k: Tensor, key_padding_mask: Tensor | None = None,
              query_padding_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Asymmetric XBOX+ transforms F(q) (B,H,L,D+2), G(k) (B,H,S,D+2); M_Q, M_K over valid queries / keys only."""
    qn2, kn2 = q.square().sum(-1), k.square().sum(-1)  # (B, H, L), (B, H, S)
    kn2_valid = kn2 if key_padding_mask is None else kn2.masked_fill(~key_padding_mask[:, None].bool(), 0.0)
    qn2_valid = qn2 if query_padding_mask is None else qn2.masked_fill(~query_padding_mask[:, None].bool(), 0.0)
    total = qn2_valid.amax(-1, keepdim=True) + kn2_valid.amax(-1, keepdim=True)  # (B, H, 1): M_Q^2 + M_K^2
    fq_extra = (total - qn2).clamp_min(0.0).sqrt()[..., None]  # (B, H, L, 1)
    gk_extra = (total - kn2).clamp_min(0.0).sqrt()[..., None]  # (B, H, S, 1) (padded keys: clamped, unused)
    fq = torch.cat([q, torch.zeros_like(fq_extra), fq_extra], dim=-1)  # (B, H, L, D+2)
    gk = torch.cat([k, gk_extra, torch.zeros_like(gk_extra)], dim=-1)  # (B, H, S, D+2)
    return fq, gk


def gather_rows(x: Tensor, idx: Tensor) -> Tensor:
    """Rows of x by index, per leading batch row: x (*G, N, E), idx (*G, *K) long in [0, N) -> (*G, *K, E).

    One ``index_select`` over a flat (G N, E) view: no (..., E) int64 index as ``gather`` needs, and a
    row-wise ``index_add`` as backward (not an element-wise scatter into a zero tensor).
    """
    g, (N, E) = x.dim() - 2, x.shape[-2:]
    G = math.prod(x.shape[:g])
    base = (torch.arange(G, device=x.device) * N).view(*x.shape[:g], *[1] * (idx.dim() - g))
    return x.reshape(G * N, E).index_select(0, (idx + base).flatten()).view(*idx.shape, E)


def chunk_slots(start: Tensor, cap: int) -> tuple[Tensor, Tensor]:
    """Slots of consecutive rank chunks: chunk c holds ranks start[..., c] .. start[..., c+1] - 1.

    start (B|1, n_c + 1) long, non-decreasing; cap >= the largest chunk. Returns rank (B|1, n_c * cap) long and
    valid (B|1, n_c * cap) bool (slot s of chunk c holds rank start[c] + s if that is < start[c+1]).
    """
    rank = start[:, :-1, None] + torch.arange(cap, device=start.device)  # (B|1, n_c, cap)
    valid = rank < start[:, 1:, None]  # (B|1, n_c, cap)
    return rank.flatten(1), valid.flatten(1)


def cluster_starts(n_q: Tensor, n_k: Tensor, cluster_size: int, n_c: int) -> tuple[Tensor, Tensor]:
    """First query / key rank of each of n_c clusters (and the end): (B|1, n_c + 1) each.

    n_q, n_k (B|1,) real queries / keys per row. Queries: chunks of exactly ``cluster_size`` in hash order,
    the last one short (start min(c C, n_q)); clusters past the row's ceil(n_q / C) are empty. Keys: the
    same fraction of the key ranks, floor(start_q * n_k / n_q), i.e. the very same chunks when n_k = n_q
    (self-attention) and proportional chunks otherwise (cross attention, key padding only).
    """
    c = torch.arange(n_c + 1, device=n_q.device)  # (n_c + 1,)
    nq, nk = n_q.reshape(-1, 1), n_k.reshape(-1, 1)  # (B|1, 1)
    q_start = torch.minimum(c * cluster_size, nq)  # (B|1, n_c + 1)
    k_start = q_start * nk // nq.clamp_min(1)  # (B|1, n_c + 1); n_q = 0: all 0 (no cluster)
    return q_start, k_start


def attend(qs: Tensor, ks: Tensor, vs: Tensor, key_ok: Tensor, scores_fn=None, dropout_p: float = 0.0
           ) -> tuple[Tensor, Tensor, Tensor]:
    """Masked softmax attention per block, returning (out, lse, has_key).

    qs (..., M, D), ks (..., C, D), vs (..., C, Dv), key_ok broadcastable to (..., M, C).
    ``scores_fn(scores) -> scores`` may edit the logits (e.g. the Reformer self-penalty) before masking.
    Rows with no key: out 0, has_key False, lse finite but meaningless (finite gradients everywhere).
    """
    # 1/sqrt(D) on the (M, D) queries, not on the (M, C) scores
    scores = (qs * qs.shape[-1] ** -0.5) @ ks.transpose(-1, -2)  # (..., M, C)
    if scores_fn is not None:
        scores = scores_fn(scores)
    scores = scores.masked_fill(~key_ok, float("-inf"))
    m = scores.amax(-1, keepdim=True).detach()  # (..., M, 1): stabiliser, cancels exactly
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    p = torch.exp(scores - m)  # masked -> exp(-inf) = 0
    denom = p.sum(-1, keepdim=True)  # (..., M, 1)
    if dropout_p > 0.0:
        out = F.dropout(p / denom.clamp_min(_TINY), dropout_p, training=True) @ vs  # (..., M, Dv)
    elif ks.shape[-2] > vs.shape[-1]:  # normalise the (M, Dv) output rather than the (M, C) weights
        out = (p @ vs) / denom.clamp_min(_TINY)
    else:
        out = (p / denom.clamp_min(_TINY)) @ vs
    lse = (denom.clamp_min(_TINY).log() + m).squeeze(-1)  # (..., M)
    return out, lse, (denom > 0).squeeze(-1)


def merge_rounds(out: Tensor, lse: Tensor, has: Tensor) -> Tensor:
    """Log-sum-exp merge of hashing rounds (axis 2): out (B,H,R,L,Dv), lse/has (B,H,R,L) -> (B,H,L,Dv).

    Weight of round h = exp(lse_h) / sum_h' exp(lse_h') over the rounds where the query met a key;
    a query that met no valid key in any round gives zeros.
    """
    top = lse.masked_fill(~has, float("-inf")).amax(2, keepdim=True).detach()  # (B, H, 1, L)
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    e = torch.where(has, torch.exp(lse - top), torch.zeros_like(lse))  # (B, H, R, L)
    w = e / e.sum(2, keepdim=True).clamp_min(_TINY)  # (B, H, R, L)
    return (w[..., None] * out).sum(2)  # (B, H, L, Dv)


def smyrf_attention(q: Tensor, k: Tensor, v: Tensor, proj: Tensor, cluster_size: int,
                    key_padding_mask: Tensor | None = None, dropout_p: float = 0.0,
                    query_padding_mask: Tensor | None = None) -> Tensor:
    """SMYRF attention. q (B,H,L,D), k (B,H,S,D), v (B,H,S,Dv), proj (D+2, R) -> (B,H,L,Dv).

    Per row and round: the n_q real queries (all L without ``query_padding_mask``) sorted by hash are cut into
    chunks of exactly ``cluster_size`` with one short last chunk; the keys as :func:`cluster_starts` says.
    Padded queries are left out: output 0.
    """
    B, H, L, D = q.shape
    S, R = k.shape[2], proj.shape[1]
    keep = None if key_padding_mask is None else key_padding_mask.bool()  # (B, S)
    qkeep = None if query_padding_mask is None else query_padding_mask.bool()  # (B, L)
    with torch.no_grad():  # the clustering is not differentiable (as in the paper)
        fq, gk = xbox_plus(q, k, keep, qkeep)
        hq = (fq @ proj).transpose(-1, -2)  # (B, H, R, L)
        hk = (gk @ proj).transpose(-1, -2)  # (B, H, R, S)
        if keep is not None:
            hk = hk.masked_fill(~keep[:, None, None], float("inf"))  # padded keys sort last
        if qkeep is not None:
            hq = hq.masked_fill(~qkeep[:, None, None], float("inf"))  # padded queries sort last
        q_perm = hq.argsort(dim=-1)  # (B, H, R, L): position of the query with hash rank r
        k_perm = hk.argsort(dim=-1)  # (B, H, R, S)
    dev, C = q.device, cluster_size
    n_q = torch.full((1,), L, device=dev) if qkeep is None else qkeep.sum(-1)  # (B|1,) real queries
    n_k = torch.full((1,), S, device=dev) if keep is None else keep.sum(-1)  # (B|1,) real keys
    n_c = max(1, -(-int(n_q.max()) // C))  # cluster slots per row and round
    q_start, k_start = cluster_starts(n_q, n_k, C, n_c)  # (B|1, n_c + 1)
    cq = max(1, min(C, int(n_q.max())))  # slots per query cluster
    ck = max(1, int(k_start.diff(dim=1).max()))  # slots per key cluster
    q_rank, q_valid = chunk_slots(q_start, cq)  # (B|1, n_c*cq)
    k_rank, k_valid = chunk_slots(k_start, ck)  # (B|1, n_c*ck)
    # slot -> original position (empty slots point at rank 0; they are masked / dropped)
    q_idx = q_perm.gather(-1, q_rank.masked_fill(~q_valid, 0)[:, None, None].expand(B, H, R, -1))
    k_idx = k_perm.gather(-1, k_rank.masked_fill(~k_valid, 0)[:, None, None].expand(B, H, R, -1))
    qs, ks, vs = gather_rows(q, q_idx), gather_rows(k, k_idx), gather_rows(v, k_idx)  # (B, H, R, T, D|Dv)
    qs = qs.unflatten(3, (n_c, cq))  # (B, H, R, n_c, cq, D)
    ks, vs = ks.unflatten(3, (n_c, ck)), vs.unflatten(3, (n_c, ck))  # (B, H, R, n_c, ck, D|Dv)
    key_ok = k_valid.view(-1, 1, 1, n_c, 1, ck)  # (B|1, 1, 1, n_c, 1, ck)
    out, lse, has = attend(qs, ks, vs, key_ok, dropout_p=dropout_p)  # (B,H,R,n_c,cq,Dv), (B,H,R,n_c,cq)
    # undo the sort: the query of rank r < n_q sits in cluster r // C, slot r % C (cq < C only if n_c = 1)
    inv = q_perm.argsort(dim=-1)  # (B, H, R, L): hash rank of each query
    slot = (inv // C) * cq + inv % C  # (B, H, R, L)
    placed = inv < n_q.view(-1, 1, 1, 1)  # (B, H, R, L): padded queries (rank >= n_q) have no slot
    slot = slot.masked_fill(~placed, 0)
    out = gather_rows(out.flatten(3, 4), slot)  # (B, H, R, L, Dv)
    lse, has = lse.flatten(3).gather(3, slot), has.flatten(3).gather(3, slot) & placed  # (B, H, R, L)
    return merge_rounds(out, lse, has)


def smyrf_reference(q: Tensor, k: Tensor, v: Tensor, proj: Tensor, cluster_size: int,
                    key_padding_mask: Tensor | None = None, query_padding_mask: Tensor | None = None) -> Tensor:
    """Slow reference: per (batch, head, round) a loop over the clusters, then per query an explicit LSE merge.

    Cluster c of a row: real queries of hash ranks cC .. (c+1)C - 1 (the last cluster short), real keys of
    ranks floor(cC n_k / n_q) .. floor(min((c+1)C, n_q) n_k / n_q) - 1 (the same ranks when n_k = n_q).
    """
    B, H, L, D = q.shape
    S, R, C = k.shape[2], proj.shape[1], cluster_size
    keep = torch.ones(B, S, dtype=torch.bool) if key_padding_mask is None else key_padding_mask.bool()
    qkeep = torch.ones(B, L, dtype=torch.bool) if query_padding_mask is None else query_padding_mask.bool()
    fq, gk = xbox_plus(q, k, keep, qkeep)
    out = torch.zeros(B, H, L, v.shape[-1], dtype=q.dtype)
    for b in range(B):
        kvalid = torch.nonzero(keep[b]).squeeze(-1)  # real key positions
        qvalid = torch.nonzero(qkeep[b]).squeeze(-1)  # real query positions
        nk, nq = len(kvalid), len(qvalid)
        for h in range(H):
            outs, lses = torch.zeros(R, L, v.shape[-1], dtype=q.dtype), torch.full((R, L), -math.inf, dtype=q.dtype)
            for r in range(R):
                q_order = qvalid[(fq[b, h, qvalid] @ proj[:, r]).argsort()]
                k_order = kvalid[(gk[b, h, kvalid] @ proj[:, r]).argsort()]
                for c in range(math.ceil(nq / C)):
                    qi = q_order[c * C:(c + 1) * C]
                    kj = k_order[c * C * nk // nq:min((c + 1) * C, nq) * nk // nq]
                    if len(kj) == 0:
                        continue
                    s = q[b, h, qi] @ k[b, h, kj].T / math.sqrt(D)
                    lses[r, qi] = torch.logsumexp(s, -1)
                    outs[r, qi] = torch.softmax(s, -1) @ v[b, h, kj]
            for i in range(L):
                if torch.isfinite(lses[:, i]).any():
                    out[b, h, i] = (torch.softmax(lses[:, i], 0)[:, None] * outs[:, i]).sum(0)
    return out


# ----------------------------------------------------------------------------- module
@register("smyrf")
class SmyrfAttention(AttentionBase):
    """SMYRF: asymmetric-LSH balanced clustering, dense attention inside clusters, rounds merged by LSE.

    No learned parameters: it can replace a pretrained dense layer (the paper's BERT/BigGAN swap).
    The Gaussian projections (D+2, n_hashes) live in the buffer ``proj``, drawn from ``seed``.
    """

    # Hashes and exponentials in (at least) fp32 under autocast.
    # causal_cross=False: queries and keys are clustered together (a query's cluster depends on the others).
    caps = Caps(causal=False, causal_cross=False, needs_head_dim=True, query_padding_mask=True, fp32=True)

    def __init__(self, head_dim: int, n_hashes: int = 2, cluster_size: int = 32, dropout: float = 0.0,
                 seed: int = 0) -> None:
        super().__init__()
        if head_dim < 1 or n_hashes < 1 or cluster_size < 1:
            raise ValueError(f"smyrf: head_dim={head_dim}, n_hashes={n_hashes}, cluster_size={cluster_size} "
                             "must all be >= 1")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"smyrf: dropout={dropout} must be in [0, 1)")
        self.head_dim, self.n_hashes, self.cluster_size, self.dropout = head_dim, n_hashes, cluster_size, dropout
        gen = torch.Generator().manual_seed(seed)
        self.register_buffer("proj", torch.randn(head_dim + 2, n_hashes, generator=gen))  # (D+2, R)

    @classmethod
    def key_slots(cls, options: Mapping[str, Any], length: int, real: int | None = None) -> float:
        """n_hashes x min(C, length) slots. With the padding mask for queries too (self-attention), the real
        tokens fill clusters of exactly C with one short last cluster of real % C: n_hashes x (sum of squared
        cluster sizes) / real real keys."""
        h, c = options["n_hashes"], options["cluster_size"]
        if real is None:
            return h * min(c, length)
        return h * ((real // c) * c * c + (real % c) ** 2) / max(real, 1)

    def forward(self, q: Tensor, k: Tensor, v: Tensor, *, key_padding_mask: Tensor | None = None,
                causal: bool = False, query_padding_mask: Tensor | None = None) -> Tensor:
        """``query_padding_mask`` (B, L), True = real query: padded queries are left out of the clusters and give
        zeros, so a row's clusters hold ``cluster_size`` real tokens whatever its padding (the official code's
        effect of sorting padding last). Self-attention passes its padding mask for both (``models.hf_swap`` and
        ``layers.attention.MultiAxisAttention`` do); with the key mask only, every query position (padded ones
        too) takes a cluster slot and the real keys are spread proportionally."""
        if causal:
            raise ValueError("smyrf: causal attention is not supported (clusters mix past and future)")
        if q.shape[-1] != self.head_dim or k.shape[-1] != self.head_dim:
            raise ValueError(f"smyrf: built for head_dim={self.head_dim}, got q/k head sizes "
                             f"{q.shape[-1]}/{k.shape[-1]}")
        p = self.dropout if self.training else 0.0
        return smyrf_attention(q, k, v, self.proj.to(v.dtype), self.cluster_size, key_padding_mask, p,
                               query_padding_mask)
