"""Treeformer decision-tree attention (Madaan, Bhojanapalli, Jain, Jain, "Treeformer: Dense Gradient Trees
for Efficient Attention Computation", ICLR 2023, arXiv:2208.09015).

Attention as nearest-neighbour retrieval through a learned oblique decision tree of height h (2^h - 1
internal nodes in heap order: root 0, children 2u+1 / 2u+2; 2^h leaves). Queries and keys are routed by
the same tree, so they share its partition.

Routing (Dense Gradient Trees, DGT, arXiv:2102.07567): z = x W^T + b (one hyperplane per internal node);
s = +1 (go left) where z >= 0 else -1, with a straight-through gradient through hardtanh(z) (passed where
|z| <= 1); leaf scores a = s P^T with the fixed path matrix P (2^h, 2^h - 1): +1 where the leaf is in the
node's left subtree, -1 in its right subtree, 0 off its path; the leaf is argmax a (the only leaf with
a = h), as a one-hot whose backward is the identity on a (DGT's "Sparser1"). DGT scales s by mean|z|; that
only rescales the surrogate gradient and is omitted.

``treeformer_tf`` (TF-Attention, fine): query i attends with a softmax to the keys in its own leaf,
    out_i = sum_{j: leaf(k_j) = leaf(q_i)} softmax_j(q_i.k_j / sqrt(D)) g_i g_j v_j,
  where g = the straight-through one-hot entry of the token's leaf (forward exactly 1): the tree gets
  gradient through these gates. Computed by tiles: queries and keys are sorted by (leaf, position) and cut
  into tiles; a query tile scores the key tiles whose leaves overlap its own (``tf_attention``), so the cost
  is O(sum_leaf (n_q + block)(n_k + block) D) ~ O(N^2 D / 2^h) for balanced leaves, whatever the fullest
  leaf (``capacity_factor`` x balanced size drops the later tokens of overfull leaves).
  A query whose leaf holds no (visible) key gives zeros. Causal: keys j <= i inside the leaf (exact only: with a
  capacity the slots depend on the length, so causal=True refuses capacity_factor).
``treeformer_tc`` (TC-Attention, coarse, dense gradients): every node u on the query's root-to-leaf path
  (depth 0..h) summarises the keys routed through it by their means K_u, V_u, and
    out_i = sum_{d=0..h} softmax_d(q_i.K_{u_d(i)} / sqrt(D)) V_{u_d(i)},
  empty nodes excluded. Every key reaches the root summary, so every key and the routing of every token
  get gradient. O(N 2^h D). Not causal (node summaries pool over all positions).

The paper's body and code are not available (see shared/papers/treeformer.md): the equations above are
the digest's reconstruction of its description. Choices it leaves open and we made: one tree per layer
shared by all heads by default (``trees: per_head``: one per head), routing on the per-head q and k themselves
(``route_on: qk``, the only meaningful input inside the kernel: see _TreeAttention),
mean (not sum) node summaries, zeros for an empty leaf. With height 0 (one leaf) TF is full attention.
Two-level bootstrapping (Algorithm 1) is a training schedule: ``active_height`` routes with only the top
levels of the tree (leaves at that depth), so a trainer can grow the tree during training; ``set_dense(True)``
(the depth axis) makes the layer full softmax attention on the same q, k, v. ``last_stats`` (leaf loads, tokens
dropped by capacity), ``balance_weight`` (our leaf-balance loss, read through ``aux_loss()``) and ``data_init``
are in the last block of this file (lit.treeformer.TreeBootstrap drives and logs them).
"""

from __future__ import annotations

import functools
import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnbench.attention.full import _mask, full_attention
from attnbench.attention.registry import AttentionBase, Caps, register


# ----------------------------------------------------------------------------- pure math
@functools.lru_cache(maxsize=16)
def path_matrix(height: int) -> Tensor:
    """P (2^h, 2^h - 1): +1 if the leaf lies in the node's left subtree, -1 in its right, 0 off its path."""
    n_leaves = 2**height
    P = torch.zeros(n_leaves, n_leaves - 1)
    for leaf in range(n_leaves):
        u = 0
        for d in range(height):
            right = (leaf >> (height - 1 - d)) & 1
            P[leaf, u] = -1.0 if right else 1.0
            u = 2 * u + 1 + right
    return P


def node_scores(x: Tensor, weight: Tensor, bias: Tensor, height: int) -> Tensor:
    """z = x W^T + b (B,H,N,2^height - 1) on the first 2^height - 1 nodes of a shared tree, weight (nodes, D) /
    bias (nodes,), or of one tree per head, weight (H, nodes, D) / bias (H, nodes) (head h routes by its own)."""
    n_nodes = 2**height - 1
    w, b = weight[..., :n_nodes, :].to(x.dtype), bias[..., :n_nodes].to(x.dtype)
    return x @ w.transpose(-1, -2) + b.unsqueeze(-2)  # (B, H, N, D) @ ([H,] D, nodes) -> (B, H, N, nodes)


def route(x: Tensor, weight: Tensor, bias: Tensor, height: int) -> tuple[Tensor, Tensor]:
    """Leaves of tokens x (B,H,N,D) in a tree of ``height`` (shared or per head: :func:`node_scores`). Returns
    leaf (B,H,N) long and the straight-through one-hot (B,H,N,2^height): forward exactly one_hot(leaf), backward
    the identity on the leaf scores."""
    if height == 0:
        return x.new_zeros(x.shape[:-1], dtype=torch.long), x.new_ones(*x.shape[:-1], 1)
    z = node_scores(x, weight, bias, height)  # (B, H, N, nodes)
    soft = F.hardtanh(z)
    s = soft + (torch.where(z >= 0, 1.0, -1.0).to(z.dtype) - soft).detach()  # +-1, hardtanh gradient
    a = s @ path_matrix(height).to(x).T  # (B, H, N, 2^h) leaf scores, h at the reached leaf
    leaf = a.argmax(dim=-1)  # (B, H, N)
    hard = F.one_hot(leaf, 2**height).to(a.dtype)
    return leaf, hard + a - a.detach()


def leaf_slots(leaf: Tensor, keep: Tensor | None, n_leaves: int, capacity: int | None
               ) -> tuple[Tensor, Tensor]:
    """Sort tokens by (leaf, position) into n_leaves blocks of C slots.

    leaf (B,H,N) long; keep (B,N) bool or None (dropped tokens take no slot). C = the fullest leaf, or
    ``capacity`` if smaller (the later tokens of a fuller leaf are dropped). Returns idx (B,H,n_leaves,C),
    the token index of each slot (0 for empty slots), and valid (B,H,n_leaves,C).
    """
    N = leaf.shape[-1]
    if keep is not None:
        leaf = leaf.masked_fill(~keep[:, None, :].bool(), n_leaves)  # sentinel leaf after the real ones
    pos = torch.arange(N, device=leaf.device)
    order = torch.argsort(leaf * N + pos, dim=-1)  # (B, H, N) token indices sorted by (leaf, position)
    counts = torch.zeros(*leaf.shape[:-1], n_leaves + 1, dtype=torch.long, device=leaf.device)
    counts.scatter_add_(-1, leaf, torch.ones_like(leaf))  # (B, H, n_leaves + 1)
    start = counts.cumsum(-1) - counts  # first sorted position of each leaf
    counts, start = counts[..., :n_leaves], start[..., :n_leaves]
    C = max(int(counts.max()) if counts.numel() else 0, 1)
    if capacity is not None:
        C = min(C, capacity)
    c = torch.arange(C, device=leaf.device)
    valid = c < counts[..., None]  # (B, H, n_leaves, C)
    sorted_pos = (start[..., None] + c).clamp(max=N - 1).flatten(-2)  # (B, H, n_leaves * C)
    idx = order.gather(-1, sorted_pos).view(valid.shape).masked_fill(~valid, 0)
    return idx, valid


def _gather(x: Tensor, idx: Tensor) -> Tensor:
    """x (B,H,N,D), idx (B,H,L,C) -> (B,H,L,C,D)."""
    flat = idx.flatten(-2)[..., None].expand(-1, -1, -1, x.shape[-1])  # (B, H, L*C, D)
    return x.gather(2, flat).view(*idx.shape, x.shape[-1])


def tf_block(S: int, n_leaves: int) -> int:
    """The default tile size of :func:`tf_attention` for S keys in n_leaves leaves: 64 where a balanced leaf holds
    >= 64 keys (larger matmuls; measured 1.3-1.6x faster than 32 on CPU at 128-256 keys a leaf), else 32 (a tile of
    64 over leaves of 32 computes ~2x the scores; measured 2x slower at N 256, 8 leaves)."""
    return 64 if 64 * n_leaves <= S else 32


def _sort_by_leaf(leaf: Tensor, keep: Tensor | None, n_leaves: int, capacity: int | None) -> tuple[Tensor, Tensor]:
    """Tokens of each row sorted by (leaf, position): leaf (R,N) long, keep (R,N) bool or None -> order (R,N) token
    indices, sleaf (R,N) their leaves; not kept tokens and, with ``capacity``, the later tokens of an overfull leaf
    (the ones ``leaf_slots`` drops) take the sentinel leaf n_leaves, sorted after the real ones."""
    N = leaf.shape[-1]
    if keep is not None:
        leaf = leaf.masked_fill(~keep.bool(), n_leaves)
    pos = torch.arange(N, device=leaf.device)
    order = torch.argsort(leaf * N + pos, dim=-1)  # (R, N)
    sleaf = leaf.gather(-1, order)
    if capacity is not None:
        counts = torch.zeros(leaf.shape[0], n_leaves + 1, dtype=torch.long, device=leaf.device)
        counts.scatter_add_(-1, leaf, torch.ones_like(leaf))  # (R, n_leaves + 1)
        start = counts.cumsum(-1) - counts
        rank = pos - start.gather(-1, sleaf)  # (R, N) rank inside the leaf, by position
        sleaf = sleaf.masked_fill(rank >= capacity, n_leaves)
        again = torch.argsort(sleaf * N + order, dim=-1)
        order, sleaf = order.gather(-1, again), sleaf.gather(-1, again)
    return order, sleaf


def _tiles(sleaf: Tensor, n_leaves: int, block: int) -> tuple[Tensor, Tensor, Tensor]:
    """Cut sorted leaves (R,N) into ceil(N / block) tiles: -> tiled leaves (R,T,block) (sentinel padding), and the
    first and last real leaf of each tile (R,T): (n_leaves, -1) for a tile without a real token."""
    tl = _tile_sorted(sleaf, block, n_leaves).view(sleaf.shape[0], -1, block)
    real = tl < n_leaves
    lo = torch.where(real[..., 0], tl[..., 0], n_leaves)
    hi = torch.where(real, tl, -1).amax(-1)
    return tl, lo, hi


def tf_tile_pairs(sleaf_q: Tensor, sleaf_k: Tensor, n_leaves: int, block: int) -> tuple[Tensor, Tensor, Tensor]:
    """The (query tile, key tile) pairs whose leaf ranges overlap, as one flat list over the rows.

    sleaf_q (R,L), sleaf_k (R,S) leaves sorted per row (sentinel n_leaves last). Both are sorted by leaf, so the
    key tiles a query tile of leaves [a, b] needs are contiguous: from the first whose last real leaf is >= a to
    the last whose first real leaf is <= b (two searchsorted). -> qtile (P,) index into the R*Tq query tiles,
    ktile (P,) index into the R*Tk key tiles, count (R,Tq) pairs per query tile."""
    R = sleaf_q.shape[0]
    _, a, b = _tiles(sleaf_q, n_leaves, block)  # (R, Tq)
    _, c, d = _tiles(sleaf_k, n_leaves, block)  # (R, Tk)
    d = torch.where(d < 0, n_leaves, d)  # key tiles without a real key: (n, n), after the real ones (sorted)
    first = torch.searchsorted(d.contiguous(), a.contiguous())  # first key tile with d >= a
    stop = torch.searchsorted(c.contiguous(), b.contiguous(), right=True)  # key tiles with c <= b
    count = torch.where(b >= 0, (stop - first).clamp_min(0), 0)  # (R, Tq)
    Tq, Tk = a.shape[-1], c.shape[-1]
    flat = count.flatten()
    qtile = torch.repeat_interleave(torch.arange(R * Tq, device=flat.device), flat)  # (P,)
    offset = (flat.cumsum(0) - flat)[qtile]
    ktile = (qtile // Tq) * Tk + first.flatten()[qtile] + torch.arange(qtile.shape[0], device=flat.device) - offset
    return qtile, ktile, count


def tf_pair_count(leaf_q: Tensor, leaf_k: Tensor, n_leaves: int, key_padding_mask: Tensor | None = None,
                  capacity: int | None = None, block: int | None = None) -> int:
    """The number of (query tile, key tile) pairs :func:`tf_attention` computes (block x block scores each, default
    :func:`tf_block`) over all (b, h) rows of leaf_q (B,H,L), leaf_k (B,H,S)."""
    B, H, L = leaf_q.shape
    S = leaf_k.shape[-1]
    block = block or tf_block(S, n_leaves)
    keep = None if key_padding_mask is None else key_padding_mask[:, None, :].expand(B, H, S).reshape(B * H, S)
    _, sleaf_q = _sort_by_leaf(leaf_q.reshape(B * H, L), None, n_leaves, capacity)
    _, sleaf_k = _sort_by_leaf(leaf_k.reshape(B * H, S), keep, n_leaves, capacity)
    return int(tf_tile_pairs(sleaf_q, sleaf_k, n_leaves, block)[2].sum())


def _tile_sorted(xs: Tensor, block: int, fill: float = 0) -> Tensor:
    """Sorted rows xs (R,N,...) cut into ceil(N / block) tiles: -> (R*T, block, ...), padded with ``fill``."""
    R, N = xs.shape[:2]
    T = -(-N // block)
    pad = [0, 0] * (xs.dim() - 2) + [0, T * block - N]
    return F.pad(xs, pad, value=fill).view(R * T, block, *xs.shape[2:])


def _pair_rows(x: Tensor, tokens: Tensor) -> Tensor:
    """Rows of x (R,N,E) at flat token indices (P,block) into R*N (R*N: a zero row, for the tiles' tails) ->
    (P,block,E): one index_select (its backward one index_add)."""
    flat = torch.cat([x.reshape(-1, x.shape[-1]), x.new_zeros(1, x.shape[-1])])  # (R*N + 1, E)
    return flat.index_select(0, tokens.flatten()).view(*tokens.shape, x.shape[-1])


def tf_attention(q: Tensor, k: Tensor, v: Tensor, leaf_q: Tensor, leaf_k: Tensor, gate_q: Tensor,
                 gate_k: Tensor, n_leaves: int, key_padding_mask: Tensor | None = None, causal: bool = False,
                 capacity: int | None = None, dropout_p: float = 0.0, block: int | None = None) -> Tensor:
    """TF-Attention by (query tile, key tile) pairs. q (B,H,L,D), k (B,H,S,D), v (B,H,S,Dv); leaf_q (B,H,L),
    leaf_k (B,H,S) long; gate_q (B,H,L), gate_k (B,H,S) the straight-through one-hot entries of their own leaves
    (forward 1) -> (B,H,L,Dv).

    Queries and keys are sorted by (leaf, position) (padded keys and, with ``capacity``, the later tokens of an
    overfull leaf go to a sentinel leaf after the real ones: such queries give zeros, such keys are invisible) and
    cut into tiles of ``block`` rows (default :func:`tf_block`). A query tile scores only the key tiles whose
    leaf range overlaps its own (:func:`tf_tile_pairs`); the pairs of all (b, h) rows form one flat list and one
    batched matmul (P, block, block), masked where leaf(q) != leaf(k) (and causal). The partial softmaxes of a
    query tile's pairs are combined flash-attention style: a segment max (scatter_reduce), then sums of exp and
    of exp @ v (index_add).

    Work: about sum over leaves of (n_q + block)(n_k + block) scores per row, where padded leaf blocks
    (:func:`tf_attention_padded`) cost n_leaves x (fullest leaf)^2, up to 2^h x full attention on unbalanced
    trees. Tiles follow the sorted order, not leaf boundaries: a tile holding several small leaves serves them
    all (leaf-aligned tiles would cost a tile per leaf, n_leaves x block^2 at least). No Python loop over leaves
    or tiles; one device sync (the pair count). out_i = g_i sum_j p_ij g_j v_j as in the padded kernel (the
    same gradients w.r.t. q, k, v and the gates); dropout on the normalised p_ij (the numerator only)."""
    B, H, L, D = q.shape
    S, Dv = k.shape[2], v.shape[-1]
    R, block = B * H, block or tf_block(S, n_leaves)
    keep = None if key_padding_mask is None else key_padding_mask[:, None, :].expand(B, H, S).reshape(R, S)
    order_q, sleaf_q = _sort_by_leaf(leaf_q.reshape(R, L), None, n_leaves, capacity)
    order_k, sleaf_k = _sort_by_leaf(leaf_k.reshape(R, S), keep, n_leaves, capacity)
    qtile, ktile, _ = tf_tile_pairs(sleaf_q, sleaf_k, n_leaves, block)  # (P,)
    Tq = -(-L // block)
    lq = _tile_sorted(sleaf_q, block, n_leaves)[qtile]  # (P, block) leaves, tails: sentinel
    lk = _tile_sorted(sleaf_k, block, n_leaves)[ktile]
    hide = (lq[:, :, None] != lk[:, None, :]) | (lk >= n_leaves)[:, None, :]  # (P, block, block)
    if causal:  # suffix alignment as full attention: query i sees keys j <= i + S - L
        pos_q = _tile_sorted(order_q, block)[qtile]  # (P, block) positions
        pos_k = _tile_sorted(order_k, block)[ktile]
        hide = hide | (pos_k[:, None, :] > pos_q[:, :, None] + (S - L))
    # the gates are per row / per column of a tile: g_i (sum_j e_ij g_j v_j) needs no (P, block, block) product
    row = torch.arange(R, device=q.device)[:, None]
    tok_q = _tile_sorted(order_q + row * L, block, R * L)[qtile]  # (P, block) flat token indices, tails: R*L
    tok_k = _tile_sorted(order_k + row * S, block, R * S)[ktile]
    qp = _pair_rows(q / math.sqrt(D), tok_q)  # (P, block, D)
    kp = _pair_rows(k, tok_k)
    vp = _pair_rows(v * gate_k[..., None].to(v.dtype), tok_k)  # (P, block, Dv)
    acc = torch.promote_types(q.dtype, torch.float32)  # softmax sums in at least float32
    scores = (qp @ kp.transpose(-1, -2)).to(acc)  # (P, block, block)
    scores = scores.masked_fill(hide, float("-inf"))
    G = R * Tq
    m = torch.full((G, block), float("-inf"), dtype=acc, device=q.device)
    m = m.scatter_reduce(0, qtile[:, None].expand(-1, block), scores.detach().amax(-1), "amax")  # (G, block)
    m = torch.where(torch.isfinite(m), m, 0.0)
    e = torch.exp(scores - m[qtile][..., None])  # (P, block, block), 0 where masked
    den = e.new_zeros(G, block).index_add(0, qtile, e.sum(-1))  # (G, block)
    if dropout_p > 0.0:
        e = F.dropout(e, dropout_p)
    num = (e.to(v.dtype) @ vp).to(acc)  # (P, block, Dv)
    num = num.new_zeros(G, block, Dv).index_add(0, qtile, num)
    out = (num / torch.where(den > 0, den, 1.0)[..., None]).to(v.dtype)  # (G, block, Dv); no key: 0
    out = out.view(R, Tq * block, Dv)[:, :L] * gate_q.reshape(R, L).gather(1, order_q)[..., None].to(v.dtype)
    index = order_q[..., None].expand(-1, -1, Dv)
    return torch.zeros_like(out).scatter(1, index, out).view(B, H, L, Dv)


def tf_attention_padded(q: Tensor, k: Tensor, v: Tensor, leaf_q: Tensor, leaf_k: Tensor, gate_q: Tensor,
                        gate_k: Tensor, n_leaves: int, key_padding_mask: Tensor | None = None, causal: bool = False,
                        capacity: int | None = None, dropout_p: float = 0.0) -> Tensor:
    """Slow reference of :func:`tf_attention` (its former kernel), same arguments: every leaf is a block padded to
    the fullest leaf's C slots (:func:`leaf_slots`), n_leaves x C^2 scores per row."""
    L, S, D = q.shape[2], k.shape[2], q.shape[-1]
    iq, vq = leaf_slots(leaf_q, None, n_leaves, capacity)  # (B, H, n, Cq)
    ik, vk = leaf_slots(leaf_k, key_padding_mask, n_leaves, capacity)  # (B, H, n, Ck)
    qb, kb, vb = _gather(q, iq), _gather(k, ik), _gather(v, ik)  # (B, H, n, C, D)
    scores = qb @ kb.transpose(-1, -2) / math.sqrt(D)  # (B, H, n, Cq, Ck)
    ok = vk[..., None, :]  # (B, H, n, 1, Ck)
    if causal:  # suffix alignment as full attention: query i sees keys j <= i + S - L
        ok = ok & (ik[..., None, :] <= iq[..., :, None] + (S - L))
    dead = ~ok.any(-1, keepdim=True)  # (B, H, n, Cq, 1) no visible key in the leaf
    probs = torch.softmax(scores.masked_fill(~ok, float("-inf")).masked_fill(dead, 0.0), dim=-1)
    probs = probs * ok  # dead rows: 0
    if dropout_p > 0.0:
        probs = F.dropout(probs, dropout_p)
    gq = gate_q.gather(-1, iq.flatten(-2)).view(iq.shape)  # (B, H, n, Cq)
    gk = gate_k.gather(-1, ik.flatten(-2)).view(ik.shape)  # (B, H, n, Ck)
    out_b = (probs * gq[..., None] * gk[..., None, :]) @ vb  # (B, H, n, Cq, Dv)
    out_b = out_b * vq[..., None]  # empty query slots contribute nothing
    index = iq.flatten(-2)[..., None].expand(-1, -1, -1, v.shape[-1])  # (B, H, n*Cq, Dv)
    return v.new_zeros(*q.shape[:-1], v.shape[-1]).scatter_add(2, index, out_b.flatten(2, 3))


def tf_attention_reference(q: Tensor, k: Tensor, v: Tensor, leaf_q: Tensor, leaf_k: Tensor,
                           key_padding_mask: Tensor | None = None, causal: bool = False) -> Tensor:
    """Slow reference: full attention with the mask leaf(q_i) == leaf(k_j); rows with no key give zeros."""
    L, S = q.shape[2], k.shape[2]
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])  # (B, H, L, S)
    ok = leaf_q[..., :, None] == leaf_k[..., None, :]  # (B, H, L, S)
    m = _mask(key_padding_mask, causal, L, S, q.device)
    if m is not None:
        ok = ok & m
    attn = torch.softmax(scores.masked_fill(~ok, float("-inf")), dim=-1).nan_to_num(0.0)
    return attn @ v


def tc_attention(q: Tensor, k: Tensor, v: Tensor, onehot_q: Tensor, onehot_k: Tensor, height: int,
                 key_padding_mask: Tensor | None = None, dropout_p: float = 0.0) -> Tensor:
    """TC-Attention. onehot_q (B,H,L,2^h), onehot_k (B,H,S,2^h) straight-through leaf one-hots.

    For each depth d the keys are pooled into the 2^d nodes of that depth (mean of k and v over the keys
    routed through the node); query i scores the node of each depth on its path, softmax over the h + 1
    depths (empty nodes excluded) -> (B,H,L,Dv)."""
    D = q.shape[-1]
    mk = onehot_k
    if key_padding_mask is not None:
        mk = mk * key_padding_mask[:, None, :, None].to(mk.dtype)  # padded keys belong nowhere
    scores, values, present = [], [], []
    for d in range(height + 1):
        group = 2 ** (height - d)  # leaves under one node of depth d
        m_k = mk.unflatten(-1, (2**d, group)).sum(-1)  # (B, H, S, 2^d) key membership
        m_q = onehot_q.unflatten(-1, (2**d, group)).sum(-1)  # (B, H, L, 2^d) query's node (one-hot)
        count = m_k.sum(2)  # (B, H, 2^d)
        denom = count.detach().clamp_min(1.0)[..., None]
        k_bar = m_k.transpose(-1, -2) @ k / denom  # (B, H, 2^d, D) node means
        v_bar = m_k.transpose(-1, -2) @ v / denom  # (B, H, 2^d, Dv)
        k_sel, v_sel = m_q @ k_bar, m_q @ v_bar  # (B, H, L, D), (B, H, L, Dv): the query's node
        scores.append((q * k_sel).sum(-1) / math.sqrt(D))  # (B, H, L)
        values.append(v_sel)
        present.append((m_q.detach() @ count.detach()[..., None]).squeeze(-1) > 0.5)  # node has keys
    s = torch.stack(scores, -1)  # (B, H, L, h+1)
    ok = torch.stack(present, -1)
    dead = ~ok.any(-1, keepdim=True)
    w = torch.softmax(s.masked_fill(~ok, float("-inf")).masked_fill(dead, 0.0), dim=-1) * ok
    if dropout_p > 0.0:
        w = F.dropout(w, dropout_p)
    return (w[..., None] * torch.stack(values, -2)).sum(-2)  # (B, H, L, Dv)


def tc_attention_reference(q: Tensor, k: Tensor, v: Tensor, leaf_q: Tensor, leaf_k: Tensor, height: int,
                           key_padding_mask: Tensor | None = None) -> Tensor:
    """Slow reference of TC-Attention: explicit loops over batch, head, query and depth."""
    B, H, L, D = q.shape
    out = v.new_zeros(B, H, L, v.shape[-1])
    keep = torch.ones(B, k.shape[2], dtype=torch.bool) if key_padding_mask is None else key_padding_mask
    for b in range(B):
        for h in range(H):
            for i in range(L):
                s, vals = [], []
                for d in range(height + 1):
                    node = leaf_q[b, h, i] >> (height - d)
                    members = ((leaf_k[b, h] >> (height - d)) == node) & keep[b]
                    if members.any():
                        s.append(q[b, h, i] @ k[b, h, members].mean(0) / math.sqrt(D))
                        vals.append(v[b, h, members].mean(0))
                if s:
                    out[b, h, i] = torch.softmax(torch.stack(s), 0) @ torch.stack(vals)
    return out


# ----------------------------------------------------------------------------- modules
TREES = ("shared", "per_head")  # one tree per layer for all heads, or one per head
ROUTE_ON = ("qk",)  # what the tree routes: queries by q, keys by k (_TreeAttention's docstring says why no other)


class _TreeAttention(AttentionBase):
    """Shared parts: the oblique tree(s) and option checks.

    trees: ``shared`` (one tree per layer for every head: weight (nodes, D), bias (nodes,)) or ``per_head`` (one
    tree per head: weight (H, nodes, D), bias (H, nodes); head h routes its q and k by its own tree, so it needs
    ``n_heads``, filled in by the layer). The digest leaves the paper's choice open ("per head or shared: unknown").
    route_on: what the tree routes. ``qk`` (the only value): each query by its q, each key by its k, one tree for
    both, so they share its partition (the digest's reading of the paper: the tree retrieves, for a query, the
    keys of its leaf, an approximate nearest-neighbour search). Not offered, because not meaningful inside a kernel
    given q, k, v: routing a query by its own token's key (or a key by its query) exists only in self-attention
    (cross-attention queries have no key, and the kernel cannot tell self from cross when L == S) and says nothing
    about which keys q_i scores highly; a separate linear routing projection R of q and k changes no partition the
    tree can make (w.(R x) + b = (R^T w).x + b: the hyperplanes absorb it); routing on the token representation
    itself (the digest's "separate projection") needs the layer's input, which the kernel does not see.
    """

    def __init__(self, head_dim: int, n_heads: int, height: int = 4, trees: Literal["shared", "per_head"] = "shared",
                 route_on: Literal["qk"] = "qk", dropout: float = 0.0, balance_weight: float = 0.0,
                 data_init: bool = False) -> None:
        super().__init__()
        if height < 0 or height > 12:
            raise ValueError(f"{self.name}: height={height} must be in [0, 12] (2^height leaves)")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"{self.name}: dropout={dropout} must be in [0, 1)")
        for key, value, allowed in (("trees", trees, TREES), ("route_on", route_on, ROUTE_ON)):
            if value not in allowed:
                raise ValueError(f"{self.name}: {key}={value!r} is invalid; allowed: {', '.join(allowed)}")
        if n_heads < 1:
            raise ValueError(f"{self.name}: n_heads={n_heads} must be >= 1")
        n_nodes = 2**height - 1
        self.height, self.active_height, self.dropout = height, height, dropout
        self.n_heads, self.trees, self.route_on = n_heads, trees, route_on
        shape = (n_nodes,) if trees == "shared" else (n_heads, n_nodes)
        self.weight = nn.Parameter(torch.randn(*shape, head_dim) / math.sqrt(head_dim))  # ([H,] nodes, D)
        self.bias = nn.Parameter(torch.zeros(shape))  # ([H,] nodes)
        self._init_bootstrap(balance_weight, data_init)

    def set_active_height(self, h: int) -> None:
        """Route with the top ``h`` levels only (2^h leaves): the tree-height axis of bootstrapping."""
        if not 0 <= h <= self.height:
            raise ValueError(f"{self.name}: active height {h} must be in [0, {self.height}]")
        self.active_height = h

    def extra_repr(self) -> str:
        return (f"height={self.height}, active_height={self.active_height}, trees={self.trees}, "
                f"dropout={self.dropout}, dense={self.dense}")

    # ------------------------------------------------------------------ bootstrapping, statistics, balance loss
    # (read by attnbench.lit.treeformer.TreeBootstrap and the task modules' aux-loss hook; not part of the paper's
    # equations, see the functions at the end of this file)
    def _init_bootstrap(self, balance_weight: float, data_init: bool) -> None:
        if balance_weight < 0:
            raise ValueError(f"{self.name}: balance_weight={balance_weight} must be >= 0 (0 = no balance loss)")
        # dense=True: the layer computes full softmax attention with the same q, k, v (the depth axis of
        # bootstrapping switches it to False); the tree's parameters then get no gradient
        self.dense, self.balance_weight, self.data_init = False, balance_weight, data_init
        self.last_stats: dict[str, Tensor] | None = None  # routing statistics of the last tree forward
        self._aux: Tensor | None = None
        self._init_seen = False
        if data_init:  # persistent: a resumed or loaded model is not re-initialised
            self.register_buffer("data_init_done", torch.zeros((), dtype=torch.bool))

    def set_dense(self, dense: bool) -> None:
        """Full softmax attention (True) or tree attention (False): the depth axis of bootstrapping."""
        self.dense = bool(dense)

    def _dense_forward(self, q: Tensor, k: Tensor, v: Tensor, key_padding_mask: Tensor | None,
                       causal: bool) -> Tensor:
        self.last_stats, self._aux = None, None
        return full_attention(q, k, v, key_padding_mask=key_padding_mask, causal=causal,
                              dropout_p=self.dropout if self.training else 0.0)

    def _before_routing(self, k: Tensor, key_padding_mask: Tensor | None) -> None:
        """``data_init``: at the first training forward that routes, every node's hyperplane (random direction
        kept) is moved through the median of the keys reaching it, top level first (balanced leaves)."""
        if self.trees == "per_head" and k.shape[1] != self.n_heads:
            raise ValueError(f"{self.name}: built with per-head trees for n_heads={self.n_heads}, got {k.shape[1]} "
                             "heads")
        if not (self.data_init and self.training) or self._init_seen:
            return
        if not bool(self.data_init_done):  # one device sync, until the buffer says done (also when loaded)
            median_split_init(k, self.weight, self.bias, self.height, key_padding_mask)
            self.data_init_done.fill_(True)
        self._init_seen = True

    def _route(self, q: Tensor, k: Tensor, key_padding_mask: Tensor | None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Queries' and keys' leaves and one-hot paths at the active height (:func:`route`), after
        :meth:`_before_routing`: (leaf_q, onehot_q, leaf_k, onehot_k)."""
        self._before_routing(k, key_padding_mask)
        h = self.active_height
        leaf_q, oh_q = route(q, self.weight, self.bias, h)
        leaf_k, oh_k = route(k, self.weight, self.bias, h)
        return leaf_q, oh_q, leaf_k, oh_k

    def _after_routing(self, q: Tensor, k: Tensor, leaf_q: Tensor, leaf_k: Tensor,
                       key_padding_mask: Tensor | None, capacity: int | None) -> None:
        h = self.active_height
        self.last_stats = routing_stats(leaf_q, leaf_k, key_padding_mask, 2**h, capacity)
        self._aux = None
        if self.training and self.balance_weight > 0 and h > 0:
            self._aux = self.balance_weight * balance_loss(q, k, self.weight, self.bias, h, key_padding_mask)

    def aux_loss(self) -> Tensor | None:
        """The weighted balance loss of the last training forward (then cleared), or None."""
        aux, self._aux = self._aux, None
        return aux


@register("treeformer_tf")
class TreeformerTF(_TreeAttention):
    """TF-Attention: softmax over the keys of the query's leaf. Permutation-equivariant only while no
    leaf overflows ``capacity_factor``."""

    caps = Caps(learned_params=True, pretrained_drop_in=False, needs_head_dim=True, needs_n_heads=True)

    def __init__(self, head_dim: int, n_heads: int, height: int = 4, trees: Literal["shared", "per_head"] = "shared",
                 route_on: Literal["qk"] = "qk", capacity_factor: float | None = None, dropout: float = 0.0,
                 balance_weight: float = 0.0, data_init: bool = False) -> None:
        super().__init__(head_dim, n_heads, height, trees, route_on, dropout, balance_weight, data_init)
        if capacity_factor is not None and capacity_factor <= 0:
            raise ValueError(f"treeformer_tf: capacity_factor={capacity_factor} must be > 0 or null (exact)")
        self.capacity_factor = capacity_factor

    def forward(self, q: Tensor, k: Tensor, v: Tensor, *, key_padding_mask: Tensor | None = None,
                causal: bool = False) -> Tensor:
        if causal and self.capacity_factor is not None:
            raise ValueError(f"treeformer_tf: causal=True with capacity_factor={self.capacity_factor} is refused: the "
                             "capacity grows with the length, so output i would change with the tokens after i "
                             "(CAB's prefix check); set capacity_factor: null")
        if self.dense:
            return self._dense_forward(q, k, v, key_padding_mask, causal)
        leaf_q, oh_q, leaf_k, oh_k = self._route(q, k, key_padding_mask)
        h = self.active_height
        gate_q = oh_q.gather(-1, leaf_q[..., None]).squeeze(-1)  # (B, H, L) forward 1
        gate_k = oh_k.gather(-1, leaf_k[..., None]).squeeze(-1)  # (B, H, S)
        cap = None
        if self.capacity_factor is not None:
            # from the memory's length S only (L == S in self-attention): a fixed memory keeps the query slots fixed,
            # so cross attention stays causal (CC) whatever the number of queries
            cap = math.ceil(self.capacity_factor * k.shape[2] / 2**h)
        self._after_routing(q, k, leaf_q, leaf_k, key_padding_mask, cap)
        p = self.dropout if self.training else 0.0
        return tf_attention(q, k, v, leaf_q, leaf_k, gate_q, gate_k, 2**h, key_padding_mask, causal, cap, p)


@register("treeformer_tc")
class TreeformerTC(_TreeAttention):
    """TC-Attention: softmax over the mean key/value summaries of the nodes on the query's path."""

    caps = Caps(causal=False, learned_params=True, pretrained_drop_in=False, needs_head_dim=True, needs_n_heads=True)

    def forward(self, q: Tensor, k: Tensor, v: Tensor, *, key_padding_mask: Tensor | None = None,
                causal: bool = False) -> Tensor:
        if causal:
            raise ValueError("treeformer_tc does not support causal=True (node summaries pool all positions); "
                             "use treeformer_tf")
        if self.dense:
            return self._dense_forward(q, k, v, key_padding_mask, causal)
        leaf_q, oh_q, leaf_k, oh_k = self._route(q, k, key_padding_mask)
        self._after_routing(q, k, leaf_q, leaf_k, key_padding_mask, None)
        p = self.dropout if self.training else 0.0
        return tc_attention(q, k, v, oh_q, oh_k, self.active_height, key_padding_mask, p)


# ----------------------------------------------------------------------------- bootstrapping helpers (ours)
# Routing statistics, the balance loss and the data-dependent initialisation. None of them is from the paper (the
# digest names no balancing method): the balance loss is the Switch Transformer's (Fedus et al., 2021, eq. 4) with
# a tree's leaves as the experts.
def leaf_probs(x: Tensor, weight: Tensor, bias: Tensor, height: int) -> Tensor:
    """Soft leaf probabilities (B,H,N,2^height): the product over the path of sigmoid(+-z) (left where z >= 0,
    the side the hard routing takes), so the argmax leaf is the hard one."""
    z = node_scores(x.float(), weight.float(), bias.float(), height)  # (B, H, N, nodes)
    P = path_matrix(height).to(z)
    log_p = F.logsigmoid(z) @ (P > 0).to(z).T + F.logsigmoid(-z) @ (P < 0).to(z).T  # (B, H, N, 2^h)
    return log_p.exp()


def switch_balance(fraction: Tensor, prob: Tensor) -> Tensor:
    """n * sum_l fraction_l * prob_l over the last axis (n leaves), mean over the rest. fraction: the share of
    tokens routed to each leaf (no gradient), prob: the mean soft probability of each leaf. Both uniform: 1, its
    minimum when fraction = prob; all tokens in one leaf with certainty: n."""
    return (fraction.shape[-1] * (fraction * prob).sum(-1)).mean()


def balance_loss(q: Tensor, k: Tensor, weight: Tensor, bias: Tensor, height: int,
                 key_padding_mask: Tensor | None = None) -> Tensor:
    """Switch-style load balance of one tree over the queries and keys of each (batch row, head); padded tokens
    excluded (the padding mask is the queries' too in self-attention, when q and k have the same length)."""
    x = torch.cat([q, k], 2)  # (B, H, L + S, D)
    keep = torch.ones(x.shape[:-1], dtype=torch.bool, device=x.device)  # (B, H, L + S)
    if key_padding_mask is not None:
        keep[..., q.shape[2]:] = key_padding_mask[:, None, :]
        if q.shape[2] == k.shape[2]:
            keep[..., :q.shape[2]] = key_padding_mask[:, None, :]
    w = keep.to(torch.float32)[..., None]  # (B, H, N, 1)
    p = leaf_probs(x, weight, bias, height) * w  # (B, H, N, 2^h)
    hard = F.one_hot(p.argmax(-1), 2**height).to(p) * w
    n = w.sum(2).clamp_min(1.0)  # (B, H, 1)
    return switch_balance((hard.sum(2) / n).detach(), p.sum(2) / n)


@torch.no_grad()
def routing_stats(leaf_q: Tensor, leaf_k: Tensor, key_padding_mask: Tensor | None, n_leaves: int,
                  capacity: int | None) -> dict[str, Tensor]:
    """Per (batch row, head) key counts of every leaf, ``key_counts`` (B,H,n_leaves), and the tokens (queries and
    keys) a leaf capacity dropped, ``dropped``, out of ``tokens`` (0-d tensors; no device sync here)."""
    ones_k = torch.ones_like(leaf_k) if key_padding_mask is None else \
        key_padding_mask[:, None, :].expand_as(leaf_k).long()
    counts_k = torch.zeros(*leaf_k.shape[:-1], n_leaves, dtype=torch.long, device=leaf_k.device)
    counts_k.scatter_add_(-1, leaf_k, ones_k)  # (B, H, n_leaves)
    counts_q = torch.zeros_like(counts_k).scatter_add_(-1, leaf_q, torch.ones_like(leaf_q))
    tokens = counts_k.sum() + counts_q.sum()
    dropped = torch.zeros((), dtype=torch.long, device=leaf_k.device)
    if capacity is not None:
        dropped = (counts_k - capacity).clamp_min(0).sum() + (counts_q - capacity).clamp_min(0).sum()
    return {"key_counts": counts_k, "dropped": dropped, "tokens": tokens}


@torch.no_grad()
def median_split_init(k: Tensor, weight: Tensor, bias: Tensor, height: int,
                      key_padding_mask: Tensor | None = None) -> None:
    """Set ``bias`` in place, depth by depth, so that every node's hyperplane w_u.x + b_u = 0 passes through the
    median of w_u.k over the (real) keys of all heads that reach node u: each split halves its keys. Nodes no key
    reaches take the median over all keys. Per-head trees (weight (H, nodes, D)): each over its own head's keys."""
    if weight.dim() == 3:
        for h in range(weight.shape[0]):
            median_split_init(k[:, h:h + 1], weight[h], bias[h], height, key_padding_mask)
        return
    keys = k.float()
    if key_padding_mask is not None:
        keys = keys[key_padding_mask[:, None, :].expand(keys.shape[:-1])]  # (n, D) real keys
    keys = keys.reshape(-1, k.shape[-1])
    for d in range(height):
        leaf, _ = route(keys[None, None], weight, bias, d)  # (1, 1, n) node index within depth d
        first = 2**d - 1  # heap index of the depth's first node
        z = keys @ weight[first:first + 2**d].float().T  # (n, 2^d)
        for j in range(2**d):
            sel = z[leaf[0, 0] == j, j]
            bias[first + j] = -torch.quantile(sel if sel.numel() else z[:, j], 0.5).to(bias.dtype)
