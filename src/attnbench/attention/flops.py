"""Attention FLOPs: an analytic count per registry entry, as ``matmul + other``.

    from attnbench.attention import build
    from attnbench.attention.flops import attention_flops
    f = attention_flops(build("full"), B=1, H=8, q_axes=(512,), k_axes=(512,), D=64)
    f.matmul, f.other, f.total                     # FLOPs of one forward call of the entry
    rec = FlopRecorder(model); ...; rec.summary()  # a model's attention GFLOPs per example (train.py: results.json)

Home. One module keyed by registry name (``@formula("name")``), not a method on each entry: the counting
conventions below are defined once and shared by the entries that share kernels (linear attention's prefix sums
serve ``linear`` and ``performer``, SDPA serves ``full``/``local``/``optimised``/``efficient``/``super``), and the
entry files stay untouched. Coverage is enforced from the registry side: ``tests/test_attention_flops.py``
iterates :func:`~attnbench.attention.registry.available` and fails for an entry without a formula here.
A formula reads the *built module* (its attributes are the truth: Treeformer's ``active_height`` during
bootstrapping, Nyström's convolution, Performer's feature count), so constructor defaults are never repeated.

Scope. The attention core only: scores, softmax / normalisation, the weighted sum, feature maps, hashing and
routing, landmarks and pseudo-inverse iterations, entry-owned mixing (Super's W^A, Nyström's convolution); not the
q/k/v/o projections, norms or RoPE of the layer.

Convention. 2 FLOPs per multiply-add. ``matmul``: every matrix product the implementation executes (mm, bmm,
einsum, convolution), exactly as written, including work a mask then discards (SDPA computes the full square for
``causal``; local's window blocks; Treeformer's score tiles; Reformer's padded chunks): it equals what
``torch.utils.flop_counter.FlopCounterMode`` counts on a forward call (SDPA through its MATH backend), which the
test checks per entry. ``other``: elementwise work, approximate (not checked exactly): a softmax over n entries
costs ``SOFTMAX_FLOPS`` x n (max, subtract, exp, sum, divide; exp counts as one FLOP), a score scaling 1 per
score, a feature map ``FEATURE_FLOPS`` per feature, a normalising division 1 per output element; masks, sorts,
gathers, argmax and other index work count 0. Inputs are counted unpadded: a padding mask adds at most the small
products that count kept tokens (Nyström's landmark counts) and shrinks SMYRF's clusters to the real tokens.

Data-dependent cost. ``treeformer_tf`` (score tiles of overlapping leaf ranges) and causal ``reformer`` (per-bucket
chunks) are counted at *balanced* occupancy by default (every leaf / bucket holds its share, rounded up; TF capped
by ``capacity_factor``); :func:`occupancy` measures the implementation's actual slot counts on given q, k, and
:func:`attention_flops` takes them as keyword arguments (``pairs``/``rows``, ``slots``). Every other entry's
cost depends on shapes only (SMYRF's clusters have exactly ``cluster_size`` queries by construction).
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from attnbench.attention import linear as _linear
from attnbench.attention import performer as _performer_mod
from attnbench.attention.registry import AttentionBase, available

SOFTMAX_FLOPS = 5  # per softmax input element: max, subtract, exp, sum, divide
FEATURE_FLOPS = 2  # per feature-map output element (elu + 1; exp - stabiliser for FAVOR+)
log = logging.getLogger(__name__)

# the chunk of causal prefix sums (linear_attention's default, which the entries use)
LINEAR_CHUNK = inspect.signature(_linear.linear_attention).parameters["chunk"].default
FAVOR_CHUNK = inspect.signature(_performer_mod.favor_attention_causal).parameters["chunk"].default  # causal self


@dataclass(frozen=True)
class Flops:
    """FLOPs of one forward call: ``matmul`` (exact, as executed) + ``other`` (elementwise, approximate)."""

    matmul: int
    other: int

    @property
    def total(self) -> int:
        return self.matmul + self.other

    def __add__(self, o: Flops) -> Flops:
        return Flops(self.matmul + o.matmul, self.other + o.other)


@dataclass(frozen=True)
class Shape:
    """One call's sizes: batch, heads, query axes, key axes (one each for sequence entries: (L,), (S,); a tensor
    entry's (B, H, *axes, D) axes), head sizes D (queries/keys) and Dv (values), causal."""

    B: int
    H: int
    q_axes: tuple[int, ...]
    k_axes: tuple[int, ...]
    D: int
    Dv: int
    causal: bool = False

    @property
    def L(self) -> int:
        return math.prod(self.q_axes)

    @property
    def S(self) -> int:
        return math.prod(self.k_axes)

    @property
    def BH(self) -> int:
        return self.B * self.H


@dataclass(frozen=True)
class Formula:
    """``count(module, shape, **occupancy) -> Flops``; ``power``: the exponent of the total in the side length n
    when every axis is n (sequence: length; HOT's 2-axis tests: n x n), for the scaling sanity test."""

    count: Callable[..., Flops]
    power: float


FORMULAS: dict[str, Formula] = {}
OCCUPANCY: dict[str, Callable[..., dict[str, int]]] = {}


def formula(*names: str, power: float) -> Callable:
    """Register ``fn(module, shape, **occupancy) -> Flops`` as the FLOP formula of the entries ``names``."""

    def deco(fn: Callable[..., Flops]) -> Callable[..., Flops]:
        for n in names:
            if n in FORMULAS:
                raise ValueError(f"FLOP formula for {n!r} is already registered")
            FORMULAS[n] = Formula(fn, power)
        return fn

    return deco


def formula_for(name: str) -> Formula:
    """The formula of entry ``name``; an entry without one raises naming this module."""
    if name not in FORMULAS:
        missing = sorted(set(available()) - set(FORMULAS))
        raise KeyError(f"attention {name!r} has no FLOP formula; add one to attnbench/attention/flops.py "
                       f"(entries without one: {', '.join(missing) or 'none'})")
    return FORMULAS[name]


def attention_flops(module: AttentionBase, *, B: int, H: int, q_axes: tuple[int, ...] | int,
                    k_axes: tuple[int, ...] | int | None = None, D: int, Dv: int | None = None,
                    causal: bool = False, **occupancy: int) -> Flops:
    """FLOPs of one forward call of the built entry ``module`` on q (B, H, *q_axes, D), k (B, H, *k_axes, D),
    v (B, H, *k_axes, Dv) (sequence entries: one axis each; ``k_axes`` None: self-attention). ``occupancy``:
    measured slot counts of a data-dependent entry (:func:`occupancy`); default balanced."""
    q_axes = (q_axes,) if isinstance(q_axes, int) else tuple(q_axes)
    k_axes = q_axes if k_axes is None else ((k_axes,) if isinstance(k_axes, int) else tuple(k_axes))
    shape = Shape(B, H, q_axes, k_axes, D, D if Dv is None else Dv, bool(causal))
    return formula_for(module.name).count(module, shape, **occupancy)


def occupancy(module: AttentionBase, q: Tensor, k: Tensor, key_padding_mask: Tensor | None = None,
              causal: bool = False) -> dict[str, int]:
    """The slot counts the implementation of a data-dependent entry would use on q, k (what
    :func:`attention_flops` takes as ``**occupancy``); {} for entries whose cost depends on shapes only."""
    fn = OCCUPANCY.get(module.name)
    if fn is None:
        return {}
    with torch.no_grad():
        return fn(module, q, k, key_padding_mask, causal)


# ----------------------------------------------------------------------------- shared kernels
def _dense(s: Shape, L: int, S: int) -> Flops:
    """softmax(q k^T / sqrt(D)) v over L x S: SDPA (MATH backend: two bmm), scale + softmax per score."""
    return Flops(2 * s.BH * L * S * (s.D + s.Dv), s.BH * L * S * (1 + SOFTMAX_FLOPS))


def _kernelised(s: Shape, F: int) -> Flops:
    """``linear.linear_attention`` on features of size F (phi_q (L, F), phi_k (S, F)); causal: chunked prefix sums
    of ``LINEAR_CHUNK`` over the aligned length max(L, S), padded to a multiple of the chunk."""
    BH, L, S, Dv = s.BH, s.L, s.S, s.Dv
    E = Dv + 1  # v with a column of ones: the normaliser rides along in the same products
    if not s.causal:
        mm = 2 * BH * (S * F * E + L * F * E)  # phi_k^T [v, 1], phi_q (kv, z)
        return Flops(mm, BH * 2 * L * Dv)  # safe division
    c = LINEAR_CHUNK
    n_chunks = -(-max(L, S) // c)
    N = n_chunks * c  # padded aligned length
    mm = 2 * BH * (N * F * E + n_chunks * c * c * F + N * F * E + n_chunks * c * c * E)
    # kv per chunk, within-chunk kernel, qc kv_prev, a vc
    return Flops(mm, BH * (n_chunks * F * E + n_chunks * c * c + 2 * N * Dv))  # cumsum, tril, div


def _favor_features(BH: int, n: int, D: int, m: int) -> Flops:
    """FAVOR+ features of n vectors: x W^T (a matmul) and exp(w.x' - |x'|^2/2 - c) / sqrt(m) elementwise."""
    return Flops(2 * BH * n * D * m, BH * n * (3 * D + FEATURE_FLOPS * m))


# ----------------------------------------------------------------------------- sequence entries
@formula("full", "optimised", "efficient", power=2)
def _full(m: AttentionBase, s: Shape) -> Flops:
    """SDPA over every key; causal computes the full square too (the mask discards half)."""
    return _dense(s, s.L, s.S)


@formula("local", power=1)
def _local(m: AttentionBase, s: Shape) -> Flops:
    """The blocked kernel (``local.local_attention``): ceil(L / b) query blocks of b = ``local.block_size`` (>=
    window), each through SDPA against 3 key blocks (2 when causal), padding included."""
    from attnbench.attention.local import block_size

    b = block_size(s.L, m.window)
    n_b = -(-s.L // b)
    return _dense(s, n_b * b, (2 if s.causal else 3) * b)


@formula("super", power=2)
def _super(m: AttentionBase, s: Shape) -> Flops:
    """W^A (S x S) mixing the values along the sequence, then SDPA."""
    return Flops(2 * s.BH * s.S * s.S * s.Dv, 0) + _dense(s, s.L, s.S)


@formula("linear", power=1)
def _linear_f(m: AttentionBase, s: Shape) -> Flops:
    """elu + 1 features (F = D), then kernelised attention."""
    return Flops(0, FEATURE_FLOPS * s.BH * (s.L + s.S) * s.D) + _kernelised(s, s.D)


@formula("performer", power=1)
def _performer(m: AttentionBase, s: Shape) -> Flops:
    """FAVOR+ features (m = ``n_features``) of queries and keys, then kernelised attention, as the kernels of
    ``attention/performer.py`` run it. Non-causal (the blocked kernel): phi_k^T v, the normaliser phi_k^T 1 as a
    sum (not a product), phi_q [kv, z]. Causal (the blocked causal kernel, over N = max(L, S) positions: cross
    attention puts dummy queries or padded keys in front): q and k padded to a multiple of the chunk
    min(``FAVOR_CHUNK``, N) before the features, then the chunked products of ``_kernelised``."""
    n, BH = m.n_features, s.BH
    if not s.causal:
        mm = 2 * BH * (s.S * n * s.Dv + s.L * n * (s.Dv + 1))
        return _favor_features(BH, s.L + s.S, s.D, n) + Flops(mm, BH * (s.S * n + 2 * s.L * s.Dv))
    N0 = max(s.L, s.S)
    c = min(FAVOR_CHUNK, N0)
    N, C, E = -(-N0 // c) * c, -(-N0 // c), s.Dv + 1
    mm = 2 * BH * (2 * N * n * E + C * c * c * (n + E))  # chunk sums, phi_q kv_prev; within-chunk kernel, a vc
    return _favor_features(BH, 2 * N, s.D, n) + Flops(mm, BH * (C * n * E + C * c * c + 2 * N * s.Dv))


@formula("linformer", power=1)
def _linformer(m: AttentionBase, s: Shape) -> Flops:
    """E K, F V (k x S projections), then softmax attention over the k projected keys."""
    r = m.k
    proj = Flops(2 * s.BH * r * s.S * (s.D + s.Dv), 0)
    return proj + _dense(s, s.L, r)


@formula("nystrom", power=1)
def _nystrom(m: AttentionBase, s: Shape) -> Flops:
    """Segment-mean landmarks (one-hot matmuls), three softmax kernels, ``pinv_iters`` Newton-Schulz steps (four
    products each), the right-to-left product F (Z (B V)), and the optional depthwise value convolution."""
    BH, L, S, D, Dv = s.BH, s.L, s.S, s.D, s.Dv
    mq, mk = min(m.n_landmarks, L), min(m.n_landmarks, S)
    mm = 2 * BH * (mq * L * D + mk * S * D)  # landmark means
    mm += 2 * BH * (L * mk * D + mq * mk * D + mq * S * D)  # F~, A~, B~ scores
    mm += 2 * BH * m.pinv_iters * (2 * mq * mq * mk + 2 * mq**3)  # a z, two az products, z (...)
    mm += 2 * BH * (mq * S * Dv + mk * mq * Dv + L * mk * Dv)  # B V, Z (B V), F (Z B V)
    other = BH * (1 + SOFTMAX_FLOPS) * (L * mk + mq * mk + mq * S) + BH * m.pinv_iters * 4 * mq * mq
    if m.conv is not None:
        mm += 2 * BH * S * Dv * m.conv.kernel_size[0]  # depthwise Conv1d over the sequence
        other += BH * L * Dv  # the residual add
    return Flops(mm, other)


def _reformer_slots(n_tokens: int, n_buckets: int, chunk: int) -> int:
    """Causal layout at balanced buckets: each bucket's share (rounded up) padded to a multiple of the chunk."""
    counts = [n_tokens // n_buckets + (1 if b < n_tokens % n_buckets else 0) for b in range(n_buckets)]
    return sum(-(-c // chunk) * chunk for c in counts)


@formula("reformer", power=1)
def _reformer(m: AttentionBase, s: Shape, slots: int | None = None) -> Flops:
    """Angular LSH (x R, per round; keys hashed too unless shared_qk), then per round softmax attention of each
    chunk of ``chunk_size`` sorted queries to its chunk and the previous one (one chunk: itself). Non-causal: the
    sorted sequence padded to a multiple of the chunk; causal: per-bucket chunks, ``slots`` measured or balanced
    (or, shared_qk, the packed layout with 3 chunks of keys where that is fewer scores, as ``lsh_attention``)."""
    BH, N, D, Dv = s.BH, s.L, s.D, s.Dv
    R, nb, c = m.n_hashes, m.n_buckets, m.chunk_size
    mm = 0 if nb == 1 else 2 * BH * N * D * R * (nb // 2) * (1 if m.shared_qk else 2)
    if slots is None:
        slots = _reformer_slots(N, nb, c) if s.causal else -(-N // c) * c
    window = c * min(slots // c, 2)
    packed = -(-N // c) * c  # causal "auto" layout (shared_qk): unpadded (bucket, position) order, 3 chunks of keys
    if s.causal and m.shared_qk and 3 * packed < 2 * slots:
        slots, window = packed, c * min(packed // c, 3)
    mm += 2 * BH * R * slots * window * (D + Dv)
    other = BH * R * slots * window * (1 + SOFTMAX_FLOPS) + BH * (R * N * 2 * Dv + (2 * N * D if m.shared_qk else 0))
    return Flops(mm, other)


@formula("smyrf", power=1)
def _smyrf(m: AttentionBase, s: Shape) -> Flops:
    """XBOX+ and one projection per round for queries and keys, then per round n_c = ceil(L / C) clusters:
    C queries (the last short) against the proportional key chunk (``smyrf.cluster_starts``)."""
    BH, L, S, D, Dv = s.BH, s.L, s.S, s.D, s.Dv
    R, C = m.n_hashes, m.cluster_size
    n_c = max(1, -(-L // C))
    cq = max(1, min(C, L))
    q_start = [min(c * C, L) for c in range(n_c + 1)]
    ck = max(1, max(b * S // L - a * S // L for a, b in zip(q_start, q_start[1:], strict=False)))
    mm = 2 * BH * (L + S) * (D + 2) * R + 2 * BH * R * n_c * cq * ck * (D + Dv)
    other = BH * R * n_c * cq * ck * (1 + SOFTMAX_FLOPS) + BH * (3 * (L + S) * D + R * L * 2 * Dv)
    return Flops(mm, other)


def _route(BH: int, n: int, D: int, height: int) -> Flops:
    """Oblique tree routing of n tokens: hyperplanes x W^T (2^h - 1 nodes), leaf scores s P^T (2^h leaves)."""
    if height == 0:
        return Flops(0, 0)
    nodes = 2**height - 1
    return Flops(2 * BH * n * nodes * (D + 2**height), BH * n * 3 * nodes)


def _tf_capacity(m: AttentionBase, S: int, n_leaves: int) -> int | None:
    return None if m.capacity_factor is None else math.ceil(m.capacity_factor * S / n_leaves)


@formula("treeformer_tf", power=2)
def _treeformer_tf(m: AttentionBase, s: Shape, pairs: int | None = None, rows: int | None = None) -> Flops:
    """Routing of queries and keys, then the (query tile, key tile) pairs of ``tf_attention`` (block x block scores
    each, ``treeformer.tf_pair_count``): balanced leaves by default (leaves of ceil(N / 2^h) tokens, capped by
    ``capacity_factor``), else the measured ``pairs`` over ``rows`` (batch x head) rows."""
    from attnbench.attention.treeformer import tf_block, tf_pair_count

    if m.dense:  # switched to full attention by bootstrapping (lit.treeformer): counted as full
        return _dense(s, s.L, s.S)
    BH, L, S, D, Dv, h = s.BH, s.L, s.S, s.D, s.Dv, m.active_height
    n = 2**h
    if pairs is None:  # balanced: consecutive tokens share a leaf
        def leaves(N: int) -> Tensor:
            return (torch.arange(N) // -(-N // n))[None, None]

        pairs, rows = tf_pair_count(leaves(L), leaves(S), n, capacity=_tf_capacity(m, S, n)), 1
    rows = rows or 1
    tile = tf_block(S, n) ** 2
    blocks = Flops(2 * BH * pairs * tile * (D + Dv) // rows, BH * pairs * tile * (3 + SOFTMAX_FLOPS) // rows)
    return _route(BH, L, D, h) + _route(BH, S, D, h) + blocks


@formula("treeformer_tc", power=1)
def _treeformer_tc(m: AttentionBase, s: Shape) -> Flops:
    """Routing, then for each depth d = 0..h: node means of k and v (2^d nodes, one-hot matmuls), the query's node
    picked by one-hot matmuls (k, v and the key count), one score per query; softmax over the h + 1 depths."""
    if m.dense:  # switched to full attention by bootstrapping (lit.treeformer): counted as full
        return _dense(s, s.L, s.S)
    BH, L, S, D, Dv, h = s.BH, s.L, s.S, s.D, s.Dv, m.active_height
    mm = sum(2 * BH * 2**d * (S * D + S * Dv + L * D + L * Dv + L) for d in range(h + 1))
    other = BH * L * (h + 1) * (2 * D + SOFTMAX_FLOPS + 2 * Dv) + BH * 2 ** (h + 1) * (D + Dv)
    return _route(BH, L, D, h) + _route(BH, S, D, h) + Flops(mm, other)


@formula("sinkhorn", power=1.5)
def _sinkhorn(m: AttentionBase, s: Shape) -> Flops:
    """``sinkhorn.sinkhorn_attention`` over N_B = ceil(L / b) blocks of b = ``sinkhorn.block_length`` (the length
    padded to N = N_B b): the SortNet on the block sums (D -> D -> N_B), the soft sort P (N_B x N_B) of the key
    blocks, the value blocks and the real-key mask, then SDPA of every query block on its own block and on its
    sorted block (``sum``: two b x b calls; ``concat``: one b x 2b call; the same products). O(L b D) for the blocks
    plus O(N_B^2 b D) = O(L^2 D / b) for the sort: at b = 64, D = 64 the total's exponent from L to 2 L is 1.15 at
    1,024, 1.41 at 4,096 and 1.73 at 16,384 tokens (L^2 only beyond L ~ 2 b^2); power 1.5 is that middle, not an
    asymptote."""
    from attnbench.attention.sinkhorn import block_length

    BH, D, Dv = s.BH, s.D, s.Dv
    b = block_length(s.L, m.block_size)
    nb = -(-s.L // b)
    N = nb * b
    mm = 2 * BH * nb * D * (D + nb)  # SortNet: two linear layers
    mm += 2 * BH * nb * nb * b * (D + Dv + 1)  # P K, P V, P real
    mm += 4 * BH * N * b * (D + Dv)  # block attention: scores and weighted sums over 2 b keys per query
    sort = (2 * m.sinkhorn_iters if m.sort == "sinkhorn" else 1) * SOFTMAX_FLOPS * BH * nb * nb
    other = BH * N * D + 4 * BH * nb * (D + nb) + sort  # block sums, bias + relu, Sinkhorn's log-sum-exps
    other += BH * N * 2 * b * (1 + SOFTMAX_FLOPS) + (BH * N * Dv if m.combine == "sum" else 0)
    return Flops(mm, other)


@formula("synthesizer", power=2)
def _synthesizer(m: AttentionBase, s: Shape) -> Flops:
    """The synthesized (L, S) weights (``dense``: the per-head MLP D -> D -> S on every query; ``random``: read from
    R), a softmax over them and their product with the values (explicit, no SDPA)."""
    BH, L, S, D = s.BH, s.L, s.S, s.D
    mm = 2 * BH * L * S * s.Dv
    other = BH * L * S * SOFTMAX_FLOPS
    if m.variant == "dense":
        mm += 2 * BH * L * D * (D + S)  # q W_1, h W_2
        other += BH * L * (2 * D + S)  # biases, relu
    return Flops(mm, other)


@formula("sparse_transformer", power=2)
def _sparse_transformer(m: AttentionBase, s: Shape) -> Flops:
    """``sparse_transformer``'s kernels on the length padded to m blocks of the stride l. Fixed: each block against
    itself (l x l) and every query against the m ns summary keys (ns = ``summary_positions``); strided: each block
    against its 3 neighbouring key blocks (2 when causal) and, per residue class, m queries against m keys.
    Quadratic at a fixed stride (the summary / stride keys grow as L / l)."""
    from attnbench.attention.sparse_transformer import summary_positions

    BH, L, D, Dv, l = s.BH, s.L, s.D, s.Dv, m.stride
    n = -(-L // l)
    # keys per query: own block + summaries (fixed), or window blocks + the residue class (strided)
    keys = l + n * len(summary_positions(l, m.c)) if m.pattern == "fixed" else (2 if s.causal else 3) * l + n
    scores = BH * n * l * keys
    return Flops(2 * scores * (D + Dv), scores * SOFTMAX_FLOPS + BH * L * (D + Dv))  # q scaling, two sums added


@formula("longformer", power=1)
def _longformer(m: AttentionBase, s: Shape) -> Flops:
    """SDPA of each query block of b (``longformer.query_block``) against the key blocks of its window
    (``window_offsets``) and the n_global global keys, then the global query rows against every key."""
    from attnbench.attention.longformer import query_block, window_offsets

    L, g = s.L, min(m.n_global, s.L)
    b = query_block(L, m.window)
    keys = len(window_offsets(L, m.window, s.causal)) * b + g
    f = _dense(s, -(-L // b) * b, keys)
    return f + _dense(s, g, L) if g > 0 else f


@formula("bigbird", power=1)
def _bigbird(m: AttentionBase, s: Shape) -> Flops:
    """SDPA of each non-global query block of b against its gathered key blocks (3 window + 2 global + r random;
    causal: 2 + 1 + r, every block), then the 2 global query blocks against every key; nb <= 2 blocks (not
    causal): dense attention."""
    L, b, r = s.L, m.block_size, m.n_random
    nb = -(-L // b)
    if not s.causal and nb <= 2:
        return _dense(s, L, L)
    if s.causal:
        return _dense(s, nb * b, (3 + r) * b)
    return _dense(s, (nb - 2) * b, (5 + r) * b) + _dense(s, 2 * b, L)


@formula("probsparse", power=1)
def _probsparse(m: AttentionBase, s: Shape) -> Flops:
    """Softmax attention of the n_top = factor ceil(ln L) active queries over all S keys (two matmuls). Each query's
    U = factor ceil(ln S) sampled scores are a sparse sampled product (``torch.sparse.sampled_addmm``), which
    FlopCounterMode does not count: 2 L U D in ``other``, with the max and sum over the sample and the lazy queries'
    mean of V. n_top = 0 (L = 1): no sampling, every query lazy."""
    from attnbench.attention.probsparse import n_active, sample_size

    BH, L, S, D, Dv = s.BH, s.L, s.S, s.D, s.Dv
    u = n_active(L, m.factor)
    U = sample_size(S, m.factor) if u else 0
    mm = 2 * BH * u * S * (D + Dv)
    return Flops(mm, BH * (2 * L * U * D + 2 * L * U + u * S * (1 + SOFTMAX_FLOPS) + S * Dv))


@formula("long_short", power=1)
def _long_short(m: AttentionBase, s: Shape) -> Flops:
    """``long_short``'s kernels: the dynamic projection's logits k W^P (r = ``n_landmarks``; causal: the first
    ``chunk_rank`` columns), P^T k and P^T v (causal: per chunk of ``chunk_size``, padded to whole chunks), then one
    softmax per query over the compressed rows and its window keys: non-causal, segments of w = ``window`` queries
    (padded to whole segments) against w + 2 max(w // 2, 1) keys and the r rows; causal, query blocks of b =
    ``local.block_size`` against 2b keys and every chunk's rows (the mask discards those not yet seen).
    ``other``: layer norms (5 per element), the two softmaxes, the logits' bias."""
    from attnbench.attention.local import block_size
    from attnbench.attention.long_short import segment_reach

    BH, L, D, Dv = s.BH, s.L, s.D, s.Dv
    if not s.causal:
        r, w = m.n_landmarks, m.window
        Lq, W = -(-L // w) * w, w + 2 * segment_reach(w)  # padded queries, window keys
        mm = 2 * BH * (L * r * (2 * D + Dv) + Lq * (r + W) * (D + Dv))
        norms, proj = (L + r) * (D + Dv), L * r
    else:
        rc, lc = m.chunk_rank, m.chunk_size
        Lc = -(-L // lc) * lc  # padded to whole chunks
        C = Lc // lc * rc  # compressed rows
        b = block_size(L, m.window)
        Lq, W = -(-L // b) * b, C + 2 * b  # padded queries; keys: every compressed row and two blocks
        r = 0  # (C counted in W)
        mm = 2 * BH * (L * D * rc + Lc * rc * (D + Dv) + Lq * W * (D + Dv))
        norms, proj = (L + C) * (D + Dv), Lc * rc
    other = BH * (5 * norms + proj * (1 + SOFTMAX_FLOPS) + Lq * (r + W) * (1 + SOFTMAX_FLOPS))
    return Flops(mm, other)


FFT_FLOPS = 2.5  # per point and log2(size) of a real FFT (half a complex FFT's 5 n log2 n)
GELU_FLOPS = 8  # per element (tanh form)


@formula("s4d", power=1)
def _s4d(m: AttentionBase, s: Shape) -> Flops:
    """The kernels (K = 2 for a bidirectional non-causal pass, else 1) as a Vandermonde product over the d_state / 2
    modes, split as positions j c + r (``s4d.kernel_split``: c ~ sqrt(L), m = ceil(L / c)): one (K c, N/2) x (N/2, m)
    complex matmul per feature (FlopCounterMode counts its complex products as real ones). Then per feature an FFT
    convolution of size 2L: FFTs of the inputs and kernels, the product, the inverse FFT, which FlopCounterMode does
    not count; they are in ``other`` (``FFT_FLOPS`` n log2 n per transform), with the complex exponentials (8 per mode
    and power), the skip D u and the GELU."""
    from attnbench.attention.s4d import kernel_split

    BH, L, D = s.BH, s.L, s.Dv  # the values are mixed, one SSM per value feature
    K = 2 if (m.bidirectional and not s.causal) else 1
    (c, j), n2, n = kernel_split(L), m.d_state // 2, 2 * L
    fft = FFT_FLOPS * n * math.log2(n)
    mm = 2 * K * m.n_heads * D * c * n2 * j
    other = m.n_heads * D * (8 * n2 * (c + j) + 2 * K * c * j + fft) + BH * D * (2 * fft + 6 * (L + 1)
                                                                                  + (2 + GELU_FLOPS) * L)
    return Flops(mm, int(other))


@formula("cosformer", power=1)
def _cosformer(m: AttentionBase, s: Shape) -> Flops:
    """ReLU features re-weighted by sin / cos of the position (F = 2D, elementwise), then kernelised attention
    (``linear.linear_attention``: causal through its chunked prefix sums)."""
    return Flops(0, 3 * s.BH * (s.L + s.S) * s.D) + _kernelised(s, 2 * s.D)


@formula("lara", power=1)
def _lara(m: AttentionBase, s: Shape) -> Flops:
    """C = min(``n_landmarks``, L) proposals (self-attention): segment means of q and k (one-hot matmuls), the log
    features of the keys w K^T and of the queries q (mu + w)^T, the per-proposal value means softmax(.) V and the
    read-out softmax(.) f; two softmaxes, the norms and the proposals' own ratios elementwise."""
    BH, L, S, D, Dv = s.BH, s.L, s.S, s.D, s.Dv
    C = min(m.n_landmarks, L)
    mm = 2 * BH * C * (L * D + S * D + L * D + S * D + S * Dv + L * Dv)
    other = BH * C * (S + L) * (1 + SOFTMAX_FLOPS) + BH * (L + S) * 2 * D + BH * C * 4 * D
    return Flops(mm, other)


@formula("abc", power=1)
def _abc(m: AttentionBase, s: Shape) -> Flops:
    """Control logits k W (and v W_v with ``control="separate"``), then non-causal: the memories phi^T K, phi^T V
    (C = ``n_landmarks`` slots) and softmax(q K~^T) V~. Causal (``causal_form="paper"``, ``abc.abc_causal``) over
    N = max(L, S) positions padded to a multiple of the chunk min(``ABC_CHUNK``, N): per chunk the chunk's key and
    value memories, q P^T and the masked q k^T exp(a) for the scores, (p / Z) P_v and the masked (p / Z) exp(a)^T V
    for the output. ``causal_form="cab"``: the logits only (the rest is elementwise)."""
    from attnbench.attention.abc import ABC_CHUNK

    BH, L, S, D, Dv, C = s.BH, s.L, s.S, s.D, s.Dv, m.n_landmarks
    sep = m.control == "separate"
    mm = 2 * BH * S * C * (D + (Dv if sep else 0))  # control logits
    other = BH * S * C * (2 if sep else 1) * (1 + SOFTMAX_FLOPS)  # the controls' softmax / exponentials
    if not s.causal:
        mm += 2 * BH * C * (S * D + S * Dv + L * D + L * Dv)
        return Flops(mm, other + BH * L * C * (1 + SOFTMAX_FLOPS))
    if m.causal_form == "cab":
        return Flops(mm, other + BH * max(L, S) * (C * (3 + SOFTMAX_FLOPS) + 2 * D + Dv))
    N = max(L, S)
    c = min(ABC_CHUNK, N)
    Np = -(-N // c) * c
    mm += 2 * BH * Np * (2 * C * D + c * D + 2 * c * C + 2 * C * Dv + c * Dv)
    return Flops(mm, other + BH * Np * (C * (4 + SOFTMAX_FLOPS) + c * 2))

# ----------------------------------------------------------------------------- tensor entries
def _mode_rest(s: Shape, i: int, product: bool) -> int:
    """Rows R of axis i's mode product: the other axes of the tensor it is applied to (product form: axes < i are
    already query-sized; sum form: all key-sized)."""
    before = s.q_axes[:i] if product else s.k_axes[:i]
    return math.prod(before) * math.prod(s.k_axes[i + 1:])


def _hot_pooling(s: Shape) -> int:
    """Sum/mean pooling over the other axes, per axis, of queries and keys (none on one axis)."""
    n = len(s.q_axes)
    return 0 if n == 1 else s.BH * s.D * n * (s.L + s.S)


@formula("hot", power=3)
def _hot(m: AttentionBase, s: Shape) -> Flops:
    """Per axis: a softmax factor N_i x M_i from pooled q, k, applied to the values as a mode product (Kronecker
    product: one after another; sum: each to the input, then added)."""
    BH, D, Dv = s.BH, s.D, s.Dv
    prod = m.mode == "product"
    mm, other = 0, _hot_pooling(s)
    for i, (n, k) in enumerate(zip(s.q_axes, s.k_axes, strict=True)):
        mm += 2 * BH * n * k * D + 2 * BH * n * k * _mode_rest(s, i, prod) * Dv
        other += BH * n * k * (1 + SOFTMAX_FLOPS)
    if not prod:
        other += BH * s.L * Dv * len(s.q_axes)  # adding the terms (and the optional normalisation)
    return Flops(mm, other)


@formula("hot_linear", power=2)
def _hot_linear(m: AttentionBase, s: Shape) -> Flops:
    """Per axis: features of the pooled q, k (FAVOR+: m random features, a matmul; elu+1: F = D), then
    phi_q (phi_k^T V) / phi_q (phi_k^T 1) along the axis without forming the factor."""
    BH, D, Dv = s.BH, s.D, s.Dv
    favor = m.feature_map == "favor"
    F = m.n_features if favor else D
    prod = m.mode == "product"
    total = Flops(0, _hot_pooling(s))
    for i, (n, k) in enumerate(zip(s.q_axes, s.k_axes, strict=True)):
        feats = _favor_features(BH, n + k, D, F) if favor else Flops(0, FEATURE_FLOPS * BH * (n + k) * D)
        R = _mode_rest(s, i, prod)
        mm = 2 * BH * R * (k * F * Dv + n * F * Dv) + 2 * BH * n * F
        total = total + feats + Flops(mm, BH * (k * F + R * n * Dv))
    if not prod:
        total = total + Flops(0, BH * s.L * Dv * len(s.q_axes))
    return total


# ----------------------------------------------------------------------------- measured occupancy
def _bincount(ids: Tensor, n: int) -> Tensor:
    """Counts of each id in [0, n) along the last axis: (..., N) long -> (..., n) (no (..., N, n) one-hot)."""
    return torch.zeros(*ids.shape[:-1], n, dtype=torch.long, device=ids.device).scatter_add_(
        -1, ids, torch.ones_like(ids))


def _tf_occupancy(m: AttentionBase, q: Tensor, k: Tensor, key_padding_mask: Tensor | None, causal: bool
                  ) -> dict[str, int]:
    """The (query tile, key tile) pairs ``tf_attention`` computes on q, k over their batch x head rows."""
    from attnbench.attention.treeformer import route, tf_pair_count

    h = m.active_height
    n = 2**h
    leaf_q, _ = route(q, m.weight, m.bias, h)  # (B, H, L)
    leaf_k, _ = route(k, m.weight, m.bias, h)  # (B, H, S)
    pairs = tf_pair_count(leaf_q, leaf_k, n, key_padding_mask, _tf_capacity(m, k.shape[2], n))
    return {"pairs": pairs, "rows": leaf_q.shape[0] * leaf_q.shape[1]}


def _reformer_occupancy(m: AttentionBase, q: Tensor, k: Tensor, key_padding_mask: Tensor | None, causal: bool
                        ) -> dict[str, int]:
    """Causal: the per-bucket slot count of ``reformer.bucket_layout`` (the largest over rows and rounds)."""
    if not causal:
        return {}
    from attnbench.attention.reformer import lsh_buckets

    nb, c = m.n_buckets, m.chunk_size
    keys = torch.nn.functional.normalize(q, dim=-1) if m.shared_qk else k
    bq = lsh_buckets(q, m.rot.to(q.dtype), nb)  # (B, H, R, N)
    bk = bq if m.shared_qk else lsh_buckets(keys, m.rot.to(q.dtype), nb)
    if key_padding_mask is not None:
        pad = ~key_padding_mask.bool()[:, None, None]
        bq, bk = bq.masked_fill(pad, nb), bk.masked_fill(pad, nb)
    cq, ck = _bincount(bq, nb + 1), _bincount(bk, nb + 1)  # (B, H, R, nb + 1) tokens per bucket
    size = (torch.maximum(cq, ck) + c - 1) // c * c
    return {"slots": int(size.sum(-1).max())}


OCCUPANCY.update({"treeformer_tf": _tf_occupancy, "reformer": _reformer_occupancy})


# ----------------------------------------------------------------------------- a model's attention FLOPs
class FlopRecorder:
    """The attention FLOPs of a model per example forward, from the calls its registry entries actually get.

    A forward pre-hook on every :class:`AttentionBase` inside ``model`` (any layer that calls one: the
    ``MultiAxisAttention`` of the sequence/tensor models, ``models.hf_swap``'s swapped encoders) counts each call at
    batch 1 (:func:`attention_flops` with the module's state at that moment, e.g. Treeformer's active height while
    bootstrapping) and keeps, per entry, the count of its latest largest call (by query x key tokens: the run's
    sequence length, whatever the padding of a batch); :meth:`flops` sums them over the entries. Data-dependent
    entries (:data:`OCCUPANCY`) are also counted at the slots they used on eval calls (the latest eval batch, slots
    as the implementation sized them for the whole batch): ``flops(measured=True)``. Cost per call: one formula
    (microseconds), plus one routing / hashing pass on the eval calls of data-dependent entries.
    """

    def __init__(self, model: torch.nn.Module) -> None:
        self.calls: dict[AttentionBase, tuple[int, Flops]] = {}  # entry -> (query x key tokens, FLOPs at batch 1)
        self.measured: dict[AttentionBase, Flops] = {}
        self.missing: set[str] = set()
        # eager even inside a torch.compile'd model (a graph break per entry call), so that every call is counted
        hook = torch.compiler.disable(self._hook)
        self._handles = [m.register_forward_pre_hook(hook, with_kwargs=True)
                         for m in model.modules() if isinstance(m, AttentionBase)]

    def _hook(self, module: AttentionBase, args: tuple, kwargs: dict) -> None:
        if module.name not in FORMULAS:
            self.missing.add(module.name)
            return
        q, k, v = (*args, *(kwargs[n] for n in ("q", "k", "v") if n in kwargs))[:3]
        q1, k1 = (x[0] if isinstance(x, (tuple, list)) else x for x in (q, k))  # per-axis q, k: one per axis
        causal = bool(kwargs.get("causal", False))
        shape = {"B": 1, "H": v.shape[1], "q_axes": tuple(q1.shape[2:-1]), "k_axes": tuple(v.shape[2:-1]),
                 "D": q1.shape[-1], "Dv": v.shape[-1], "causal": causal}
        size = math.prod(shape["q_axes"]) * math.prod(shape["k_axes"])
        if module not in self.calls or size >= self.calls[module][0]:
            self.calls[module] = (size, attention_flops(module, **shape))
        if module.name in OCCUPANCY and not module.training and not isinstance(q, (tuple, list)):
            occ = occupancy(module, q1, k1, kwargs.get("key_padding_mask"), causal)
            self.measured[module] = attention_flops(module, **shape, **occ)

    def flops(self, measured: bool = False) -> Flops:
        """The summed FLOPs per example (``measured``: data-dependent entries at their measured slots)."""
        total = Flops(0, 0)
        for m, (_, f) in self.calls.items():
            total = total + (self.measured.get(m, f) if measured else f)
        return total

    def summary(self) -> dict[str, float]:
        """``attention_gflops`` (total per example forward), ``attention_gflops_matmul`` and, when a data-dependent
        entry measured its slots, ``attention_gflops_measured``; {} when no entry was called. Entries without a
        formula are left out with a warning (and counted in ``attention_flops_missing``)."""
        out: dict[str, float] = {}
        if self.missing:
            log.warning("attention FLOPs: no formula for %s (left out of attention_gflops; add one to "
                        "attnbench/attention/flops.py)", ", ".join(sorted(self.missing)))
            out["attention_flops_missing"] = float(len(self.missing))
        if self.calls:
            f = self.flops()
            out.update(attention_gflops=f.total / 1e9, attention_gflops_matmul=f.matmul / 1e9)
        if self.measured:
            out["attention_gflops_measured"] = self.flops(measured=True).total / 1e9
        return out

    def remove(self) -> None:
        """Take the hooks off the model."""
        for h in self._handles:
            h.remove()
        self._handles = []
