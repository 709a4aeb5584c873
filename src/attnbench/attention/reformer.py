"""Reformer LSH attention (Kitaev, Kaiser, Levskaya, "Reformer: The Efficient Transformer", ICLR 2020,
arXiv:2001.04451).

Shared-QK attention: keys are the unit-normalised queries, k_j = q_j / |q_j|, logits q_i.k_j / sqrt(D).
The caller passes the same tensor as q and k (``shared_qk=True``; a different k raises): the layer or
model must then compute one query/key projection. Angular LSH with a random rotation R (D, n_buckets/2)
per round: h(x) = argmax([x R; -x R]) in n_buckets buckets. Per round the tokens are sorted by
(bucket, position), cut into chunks of ``chunk_size``, and each chunk attends to itself and the chunk
before (the first wraps to the last, as trax/HF). A token never attends to itself unless it has no other
candidate (its logit is set to -1e5, trax/HF's value). ``n_hashes`` rounds are merged by log-sum-exp
weights (:func:`~attnbench.attention.smyrf.merge_rounds`); as in trax/HF, a key met in several rounds is
not de-duplicated (the paper's N_ij correction is omitted). Any length: the sorted sequence is padded to
a multiple of chunk_size with empty, masked slots. Padded keys (key_padding_mask) go to an extra last
bucket, so they cannot move valid tokens between chunks, and are masked; the outputs at padded
positions (which are queries too, and their own keys under shared QK) are zeros.

Causal. Masking positions j > i inside the paper's global chunks is *not* causal: where a token falls in
the sorted order depends on how many later tokens hash to smaller buckets, so future tokens move chunk
boundaries. With ``causal=True`` chunks are therefore formed per bucket: the tokens of each bucket, in
position order, are cut into chunks of chunk_size (a bucket's last chunk may be short); a token attends
to keys j <= i of its own bucket in its chunk and the previous chunk of that bucket (no wrap). Membership
then depends only on tokens <= i. (A deviation from the paper's implementation, needed for causality.)
Two layouts compute exactly this (``lsh_attention(causal_layout=...)``): each bucket padded to whole chunks
(2 chunks of keys per query, up to n_buckets chunks of padding), or, with shared QK, the unpadded global
order with 3 chunks of keys masked to the same bucket chunks; "auto" takes the one with fewer scores (packed
at short lengths, where the padding would double the work).

``shared_qk=False`` (not the paper): q and k are hashed separately with the same rotations, keys are not
normalised and there is no self-exclusion, i.e. LSH-chunked ordinary attention; still L == S.

With n_buckets=1 and chunk_size >= length this is full attention with the self-exclusion rule
(:func:`reformer_full_reference`), exactly.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from attnbench.attention.registry import AttentionBase, Caps, register
from attnbench.attention.smyrf import attend, gather_rows, merge_rounds

SELF_VALUE = -1e5  # logit of a token for itself (trax / HF self_mask_value for fp32)


# ----------------------------------------------------------------------------- pure math
def lsh_buckets(x: Tensor, rot: Tensor, n_buckets: int) -> Tensor:
    """Angular LSH: x (B,H,N,D), rot (R, D, n_buckets/2) -> buckets (B,H,R,N) in [0, n_buckets)."""
    if n_buckets == 1:
        return torch.zeros(*x.shape[:2], rot.shape[0], x.shape[2], dtype=torch.long, device=x.device)
    xr = torch.einsum("bhnd,rdk->bhrnk", x, rot)  # (B, H, R, N, n_buckets/2)
    return torch.cat([xr, -xr], dim=-1).argmax(dim=-1)  # (B, H, R, N)


def global_layout(bq: Tensor, bk: Tensor, chunk: int) -> tuple[Tensor, Tensor]:
    """Paper layout: sort by (bucket, position), pad to a multiple of chunk with N (empty). -> (B,H,R,T) x2."""
    N = bq.shape[-1]
    pos = torch.arange(N, device=bq.device)
    T = math.ceil(N / chunk) * chunk
    q_pos = F.pad((bq * N + pos).argsort(dim=-1), (0, T - N), value=N)  # (B, H, R, T)
    k_pos = F.pad((bk * N + pos).argsort(dim=-1), (0, T - N), value=N)  # (B, H, R, T)
    return q_pos, k_pos


def bucket_layout(bq: Tensor, bk: Tensor, n_b: int, chunk: int) -> tuple[Tensor, Tensor]:
    """Causal layout: each bucket's tokens in position order from a chunk boundary, so that chunk c of a
    bucket holds its tokens of rank c*chunk .. (c+1)*chunk - 1. Empty slots hold N. -> (B,H,R,T) x2."""
    N = bq.shape[-1]
    pos = torch.arange(N, device=bq.device)
    ones = torch.ones_like(bq)
    cq = torch.zeros(*bq.shape[:-1], n_b, dtype=torch.long, device=bq.device).scatter_add_(-1, bq, ones)
    ck = torch.zeros_like(cq).scatter_add_(-1, bk, ones)  # (B, H, R, n_b) tokens per bucket
    size = (torch.maximum(cq, ck) + chunk - 1) // chunk * chunk  # slots per bucket, a multiple of chunk
    offset = size.cumsum(-1) - size  # (B, H, R, n_b) first slot of each bucket
    T = int(size.sum(-1).max())

    def place(b: Tensor, count: Tensor) -> Tensor:
        order = (b * N + pos).argsort(dim=-1)  # (B, H, R, N) positions sorted by (bucket, position)
        sb = b.gather(-1, order)  # bucket of each sorted token
        rank = pos - (count.cumsum(-1) - count).gather(-1, sb)  # rank inside its bucket
        slot = offset.gather(-1, sb) + rank  # (B, H, R, N)
        out = torch.full((*b.shape[:-1], T), N, dtype=torch.long, device=b.device)
        return out.scatter_(-1, slot, order)  # (B, H, R, T)

    return place(bq, cq), place(bk, ck)


def bucket_counts(b: Tensor, n_b: int) -> Tensor:
    """Tokens per bucket: b (B,H,R,N) in [0, n_b) -> (B,H,R,n_b) long."""
    return torch.zeros(*b.shape[:-1], n_b, dtype=torch.long, device=b.device).scatter_add_(-1, b, torch.ones_like(b))


def packed_ranks(b: Tensor, pos: Tensor, n_b: int) -> Tensor:
    """Rank inside its bucket of the token in each slot of the global (bucket, position) layout.

    b (B,H,R,N) buckets in [0, n_b), pos (B,H,R,T) the layout (:func:`global_layout`; empty slots hold N)
    -> (B,H,R,T) long (empty slots: meaningless, they are masked)."""
    count = bucket_counts(b, n_b)  # (B, H, R, n_b)
    first = count.cumsum(-1) - count  # (B, H, R, n_b): first slot of each bucket
    sb = F.pad(b, (0, 1), value=0).gather(-1, pos)  # (B, H, R, T) bucket of each slot
    return torch.arange(pos.shape[-1], device=b.device) - first.gather(-1, sb)


CAUSAL_LAYOUTS = ("auto", "padded", "packed")


def lsh_attention(q: Tensor, k: Tensor, v: Tensor, rot: Tensor, n_buckets: int, chunk: int,
                  key_padding_mask: Tensor | None = None, causal: bool = False, shared_qk: bool = True,
                  dropout_p: float = 0.0, causal_layout: str = "auto") -> Tensor:
    """Reformer LSH attention. q, k (B,H,N,D) (shared_qk: k is ignored, keys = q/|q|), v (B,H,N,Dv),
    rot (R, D, n_buckets/2) -> (B,H,N,Dv).

    ``causal_layout`` (causal only; the same outputs): "padded" lays each bucket out from a chunk boundary
    (:func:`bucket_layout`, 2 chunks of keys per query, but every bucket's last chunk padded to ``chunk``:
    up to n_buckets * chunk empty slots); "packed" (shared_qk only) keeps the global (bucket, position)
    order without padding and gives each query chunk 3 chunks of keys, masked to the same bucket chunks;
    "auto" takes the one with fewer score entries (3 x packed slots vs 2 x padded slots)."""
    if causal_layout not in CAUSAL_LAYOUTS:
        raise ValueError(f"reformer: causal_layout={causal_layout!r}; allowed: {', '.join(CAUSAL_LAYOUTS)}")
    if causal_layout == "packed" and not shared_qk:
        raise ValueError("reformer: causal_layout='packed' needs shared_qk=True (queries and keys in one order)")
    B, H, N, D = q.shape
    R = rot.shape[0]
    if shared_qk:
        k = F.normalize(q, dim=-1)  # (B, H, N, D) unit keys
    keep = torch.ones(B, N, dtype=torch.bool, device=q.device) if key_padding_mask is None \
        else key_padding_mask.bool()  # (B, N)
    with torch.no_grad():
        bq = lsh_buckets(q, rot, n_buckets)  # (B, H, R, N)
        bk = bq if shared_qk else lsh_buckets(k, rot, n_buckets)
        pad = ~keep[:, None, None]  # (B, 1, 1, N): padded positions go to the extra bucket n_buckets
        bq, bk = bq.masked_fill(pad, n_buckets), bk.masked_fill(pad, n_buckets)
        packed = False
        if causal and shared_qk and causal_layout != "padded":
            size = (bucket_counts(bq, n_buckets + 1) + chunk - 1) // chunk * chunk  # padded slots per bucket
            packed = causal_layout == "packed" or 3 * math.ceil(N / chunk) * chunk < 2 * int(size.sum(-1).max())
        if causal and not packed:
            q_pos, k_pos = bucket_layout(bq, bk, n_buckets + 1, chunk)
        else:
            q_pos, k_pos = global_layout(bq, bk, chunk)
    T = q_pos.shape[-1]
    nc = T // chunk
    n_win = min(nc, 3 if packed else 2)  # key chunks per query chunk: own, then previous ones

    def gather(x: Tensor, idx: Tensor) -> Tensor:  # x (B,H,N,E), idx (B,H,R,T) -> (B,H,R,nc,chunk,E)
        x = torch.cat([x, x.new_zeros(B, H, 1, x.shape[-1])], dim=2)  # (B, H, N+1, E): slot N is empty
        return gather_rows(x, idx).unflatten(3, (nc, chunk))

    def window(x: Tensor) -> Tensor:  # (..., nc, chunk, *) -> (..., nc, W, *): own chunk, then previous
        return x if n_win == 1 else torch.cat([x.roll(d, dims=3) for d in range(n_win)], dim=4)

    qs = gather(q, q_pos)  # (B, H, R, nc, chunk, D)
    ks, vs = window(gather(k, k_pos)), window(gather(v, k_pos))  # (B, H, R, nc, W, D|Dv)
    qp = q_pos.unflatten(-1, (nc, chunk))[..., :, None]  # (B, H, R, nc, chunk, 1)
    kp = window(k_pos.unflatten(-1, (nc, chunk)))[..., None, :]  # (B, H, R, nc, 1, W)
    keep_ext = F.pad(keep, (0, 1), value=False)  # (B, N+1): empty slots are not keys
    key_ok = keep_ext.gather(1, kp.flatten(1)).view(kp.shape)  # (B, H, R, nc, 1, W)
    if causal:
        b_ext = F.pad(bk, (0, 1), value=-1)  # (B, H, R, N+1)
        same_bucket = b_ext.gather(-1, kp.flatten(3)).view(kp.shape) == \
            F.pad(bq, (0, 1), value=-2).gather(-1, qp.flatten(3)).view(qp.shape)
        key_ok = key_ok & (kp <= qp) & same_bucket  # (B, H, R, nc, chunk, W)
        # no wrap: chunk g has no chunk g - d < 0
        src = torch.arange(nc, device=q.device)[:, None] - torch.arange(n_win, device=q.device)  # (nc, n_win)
        key_ok = key_ok & (src >= 0).repeat_interleave(chunk, dim=1)[:, None, :]  # (nc, 1, W)
        if packed:  # the bucket chunk of query rank r is r // chunk: keys of ranks from (r // chunk - 1) chunk
            rank = packed_ranks(bq, q_pos, n_buckets + 1).unflatten(-1, (nc, chunk))  # (B, H, R, nc, chunk)
            key_ok = key_ok & (window(rank)[..., None, :] >= (rank[..., None] // chunk - 1) * chunk)
    scores_fn = None
    if shared_qk:
        is_self = kp == qp  # (B, H, R, nc, chunk, W)
        scores_fn = lambda s: s.masked_fill(is_self, SELF_VALUE)  # noqa: E731
    out, lse, has = attend(qs, ks, vs, key_ok, scores_fn, dropout_p)  # (B,H,R,nc,chunk,Dv), (B,H,R,nc,chunk)
    # undo the sort: slot of each position
    slots = torch.arange(T, device=q.device).expand_as(q_pos)
    slot = torch.zeros(B, H, R, N + 1, dtype=torch.long, device=q.device).scatter_(-1, q_pos, slots)[..., :N]
    out = gather_rows(out.flatten(3, 4), slot)  # (B, H, R, N, Dv)
    lse, has = lse.flatten(3).gather(3, slot), has.flatten(3).gather(3, slot)  # (B, H, R, N)
    # Padded positions are queries too (their keys are themselves under shared QK): they give zeros.
    return merge_rounds(out, lse, has).masked_fill(~keep[:, None, :, None], 0.0)


def reformer_full_reference(q: Tensor, k: Tensor, v: Tensor, key_padding_mask: Tensor | None = None,
                            causal: bool = False, shared_qk: bool = True) -> Tensor:
    """The one-bucket, one-chunk limit written out: full attention with keys q/|q| (shared_qk) and the
    self-exclusion rule (a token sees itself only when it sees no other key); rows with no key give 0."""
    N = q.shape[2]
    if shared_qk:
        k = F.normalize(q, dim=-1)
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])  # (B, H, N, N)
    vis = torch.ones(N, N, dtype=torch.bool)
    if causal:
        vis = vis.tril()
    if key_padding_mask is not None:
        vis = vis & key_padding_mask.bool()[:, None, None, :]  # (B, 1, N, N)
    if shared_qk:
        other = vis & ~torch.eye(N, dtype=torch.bool)
        vis = torch.where(other.any(-1, keepdim=True), other, vis)
    attn = torch.softmax(scores.masked_fill(~vis, float("-inf")), dim=-1).nan_to_num(0.0)
    out = attn @ v  # (B, H, N, Dv)
    if key_padding_mask is not None:  # padded positions give zeros as queries too
        out = out.masked_fill(~key_padding_mask.bool()[:, None, :, None], 0.0)
    return out


# ----------------------------------------------------------------------------- module
@register("reformer")
class ReformerAttention(AttentionBase):
    """Reformer shared-QK LSH attention; self-attention only (L == S, and k is q when shared_qk).

    No learned parameters (random rotations in the buffer ``rot``, drawn from ``seed``). Not a drop-in
    for a pretrained dense layer: shared QK and unit keys change the attention function.
    """

    caps = Caps(cross_attention=False, causal_cross=False, pretrained_drop_in=False, permutation_equivariant=False,
                needs_head_dim=True, shared_qk=True, fp32=True)

    def __init__(self, head_dim: int, shared_qk: bool, n_buckets: int = 32, chunk_size: int = 64,
                 n_hashes: int = 1, dropout: float = 0.0, seed: int = 0) -> None:
        super().__init__()
        if head_dim < 1 or n_hashes < 1 or chunk_size < 1:
            raise ValueError(f"reformer: head_dim={head_dim}, n_hashes={n_hashes}, chunk_size={chunk_size} "
                             "must all be >= 1")
        if n_buckets != 1 and (n_buckets < 2 or n_buckets % 2):
            raise ValueError(f"reformer: n_buckets={n_buckets} must be 1 or even (argmax over [xR; -xR])")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"reformer: dropout={dropout} must be in [0, 1)")
        self.head_dim, self.shared_qk, self.n_buckets = head_dim, bool(shared_qk), n_buckets
        self.chunk_size, self.n_hashes, self.dropout = chunk_size, n_hashes, dropout
        gen = torch.Generator().manual_seed(seed)
        rot = torch.randn(n_hashes, head_dim, max(n_buckets // 2, 1), generator=gen)  # (R, D, n_buckets/2)
        self.register_buffer("rot", rot)

    def forward(self, q: Tensor, k: Tensor, v: Tensor, *, key_padding_mask: Tensor | None = None,
                causal: bool = False) -> Tensor:
        same = k is q or (k.data_ptr() == q.data_ptr() and k.shape == q.shape and k.stride() == q.stride())
        if self.shared_qk and not same:  # k must be q itself (or a view of the same memory)
            raise ValueError("reformer: shared_qk=True needs the same tensor as q and k (one shared query/key "
                             "projection); got a different k. Pass k=q, or set shared_qk=false to hash q and "
                             "k separately")
        if q.shape[2] != k.shape[2] or k.shape[2] != v.shape[2]:
            raise ValueError(f"reformer: self-attention only, got L={q.shape[2]} queries and S={k.shape[2]} "
                             f"keys ({v.shape[2]} values)")
        if q.shape[-1] != self.head_dim or k.shape[-1] != self.head_dim:
            raise ValueError(f"reformer: built for head_dim={self.head_dim}, got q/k head sizes "
                             f"{q.shape[-1]}/{k.shape[-1]}")
        p = self.dropout if self.training else 0.0
        return lsh_attention(q, k, v, self.rot.to(v.dtype), self.n_buckets, self.chunk_size, key_padding_mask,
                             causal, self.shared_qk, p)
