"""BigBird block-sparse attention (Zaheer et al., "Big Bird: Transformers for Longer Sequences", NeurIPS 2020,
arXiv:2007.14062), the ITC layout of its official code, HF's ``BigBirdBlockSparseAttention`` and LRA's
``bigbird_attention``.

The sequence is cut into nb blocks of ``block_size`` b (the last one padded). Query block n attends key block m when

    |n - m| <= 1                    (window: 3 blocks)
    or m in {0, nb - 1}             (global blocks: every block attends them)
    or n in {0, nb - 1}             (global blocks attend every block)
    or m in R[h, n]                 (``n_random`` random blocks per query block and head)

(and padded keys never). R[h, n] holds blocks outside the window and the global blocks, distinct, drawn from a
seeded hash of (seed, head, n, m) (:func:`random_blocks`): a fixed pattern per (seed, head), as the official code's
seeded draws (LRA seeds ``connectivity_seed`` on every call; HF ``np.random.seed(layer index)`` in training).
Differences from the official draws, none of them in the layout above: they are not the same numbers (numpy's
permutations); LRA and HF at lengths 1024 / 3072 / 4096 pick random blocks among the first 1024 tokens only
(``last_idx=1024``); HF in eval mode sets every random block to block 0, which its kernel then counts once more per
random slot (block 0 is also global), so HF eval is not a sparsity pattern. ``scripts/official/compare_bigbird.py``
runs HF's kernel beside ours with HF's own random blocks passed to ours.

The last block is global, so the non-causal pattern depends on the (padded) length: a row padded at the end does not
give its real tokens the output of the unpadded row (nor does HF's, which pads to whole blocks).

Causal (our extension: the official kernels fall back to dense causal attention): the last block is not global,
the window is blocks n - 1 and n, random blocks are drawn among 1 .. n - 2, and j <= i within the blocks, so the
pattern of query i does not depend on later positions (CAB's causal-self check).

:func:`bigbird_attention` gathers, per query block and head, its 3 window, 2 global and ``n_random`` random key
blocks (each once: a window block that is global is not gathered twice) and runs batched SDPA calls over them,
chunked over (batch, head) rows (:func:`_block_rows`); the global query blocks attend every key (2 b rows, one dense
SDPA call). The masks stay at the block level (no per-query mask unless causal) and are left out where nothing
is masked. O(L b (5 + r) + 2 b L) time and memory, no (L, L) buffer. :func:`bigbird_attention_reference` is the
dense-mask reference, :func:`bigbird_block_mask` the layout.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from attnbench.attention.block_sparse import (
    blocked,
    dense_rows,
    gather_blocks,
    masked_attention_reference,
    n_blocks,
)
from attnbench.attention.registry import AttentionBase, Caps, register

_MASK31 = 0x7FFFFFFF
_CHUNK_BYTES = 2 << 20  # the gathered keys of one chunk of :func:`_block_rows` (bytes)


# ----------------------------------------------------------------------------- pure math
def _mix(x: Tensor) -> Tensor:
    """An integer hash on [0, 2^31) (xorshift-multiply rounds; every product stays below 2^62 in int64)."""
    for mult in (0x2C1B3C6D, 0x297A2D39, 0x3A8F05C5):
        x = ((x ^ (x >> 15)) * mult) & _MASK31
    return x ^ (x >> 16)


def random_blocks(nb: int, n_random: int, n_heads: int, seed: int, causal: bool,
                  device: torch.device | None = None) -> Tensor:
    """The random key blocks R (n_heads, nb, n_random) long of each query block, -1 where none is left.

    A row takes the n_random legal blocks of highest hash(seed, head, n, m): legal are the blocks outside the window
    and the global blocks (non-causal: 1 <= m <= nb - 2, |m - n| > 1, none for the global rows 0 and nb - 1;
    causal: 1 <= m <= n - 2). The hash of a (head, n, m) does not depend on nb, so a causal row is the same at every
    length (prefix runs give the same pattern).
    """
    h = torch.arange(n_heads, device=device)[:, None, None]  # (H, 1, 1)
    n = torch.arange(nb, device=device)[None, :, None]  # (1, nb, 1)
    m = torch.arange(nb, device=device)[None, None, :]  # (1, 1, nb)
    score = _mix(_mix(_mix(_mix(torch.tensor(seed & _MASK31, device=device)) ^ h) ^ n) ^ m)  # (H, nb, nb)
    if causal:
        legal = (m >= 1) & (m <= n - 2)
    else:
        legal = (m >= 1) & (m <= nb - 2) & ((m - n).abs() > 1) & (n >= 1) & (n <= nb - 2)
    score = score.masked_fill(~legal, -1)
    r = min(n_random, nb)
    top, idx = score.topk(r, dim=-1) if r > 0 else (score[..., :0], score[..., :0])
    idx = idx.masked_fill(top < 0, -1)  # fewer legal blocks than n_random
    return torch.cat([idx, idx.new_full((n_heads, nb, n_random - r), -1)], dim=-1)


def bigbird_block_mask(nb: int, rand: Tensor, causal: bool) -> Tensor:
    """The block layout (H, nb, nb), True = query block n attends key block m, from the random blocks ``rand``
    (H, nb, r) (-1: none)."""
    n = torch.arange(nb, device=rand.device)[:, None]  # (nb, 1)
    m = torch.arange(nb, device=rand.device)[None, :]  # (1, nb)
    if causal:
        layout = (m == 0) | (n == 0) | ((n - m >= 0) & (n - m <= 1))
    else:
        glob = torch.tensor([0, nb - 1], device=rand.device)
        layout = torch.isin(m, glob) | torch.isin(n, glob) | ((n - m).abs() <= 1)
    picked = torch.zeros(rand.shape[0], nb, nb + 1, dtype=torch.bool, device=rand.device)
    picked.scatter_(2, rand.clamp(min=-1) % (nb + 1), True)  # -1 -> column nb, dropped
    return layout | picked[..., :nb]


def bigbird_mask(L: int, block_size: int, rand: Tensor, causal: bool) -> Tensor:
    """The dense token pattern (H, L, L) of the layout on blocks of ``block_size`` (padding not included)."""
    pos = torch.arange(L, device=rand.device) // block_size
    layout = bigbird_block_mask(n_blocks(L, block_size), rand, causal)  # (H, nb, nb)
    allowed = layout[:, pos][:, :, pos]  # (H, L, L)
    return allowed & torch.ones(L, L, dtype=torch.bool, device=rand.device).tril() if causal else allowed


def bigbird_attention(
    q: Tensor, k: Tensor, v: Tensor, block_size: int, rand: Tensor, key_padding_mask: Tensor | None = None,
    causal: bool = False, dropout_p: float = 0.0,
) -> Tensor:
    """BigBird's window + global + random block attention (self-attention). (B,H,L,D) -> (B,H,L,Dv).

    ``rand`` (H or 1, nb, r) long: the random key blocks of each query block (-1: none), nb = ceil(L / block_size);
    entries must be legal (outside the window and the global blocks, distinct: :func:`random_blocks`), else a
    block would be gathered twice.
    """
    B, H, L, D = q.shape
    b = block_size
    nb = n_blocks(L, b)
    if rand.shape[-2] != nb:
        raise ValueError(f"bigbird: rand has {rand.shape[-2]} rows, the length {L} has {nb} blocks of {b}")
    keep = None if key_padding_mask is None else key_padding_mask.bool()  # (B, L), None: every key real
    if not causal and nb <= 2:  # every block global: dense attention
        return dense_rows(q, k, v, None if keep is None else keep[:, None, None, :], dropout_p)

    # key blocks of each query block n: window, global blocks, random; invalid or duplicate slots point at 0, masked
    first = 0 if causal else 1  # the blocks computed here: causal every block (block 0 sees only itself)
    nq = nb if causal else nb - 2
    n = torch.arange(first, first + nq, device=q.device)[:, None]  # (nq, 1)
    win = n + torch.tensor([-1, 0] if causal else [-1, 0, 1], device=q.device)  # (nq, 2|3)
    win_ok = win >= 0
    glob = torch.tensor([0] if causal else [0, nb - 1], device=q.device).expand(nq, -1)  # (nq, 1|2)
    glob_ok = (glob - n).abs() > 1  # a global block inside the window is gathered there
    rnd = rand[..., first:first + nq, :]  # (H|1, nq, r)
    idx = torch.cat([torch.cat([win, glob], dim=1).expand(rnd.shape[0], -1, -1), rnd], dim=-1)  # (H|1, nq, n)
    ok = torch.cat([torch.cat([win_ok, glob_ok], dim=1).expand(rnd.shape[0], -1, -1), rnd >= 0], dim=-1)
    idx = idx.masked_fill(~ok, 0)
    pos = (idx[..., None] * b + torch.arange(b, device=q.device)).flatten(-2)  # (H|1, nq, n b) key positions
    mask = (ok.repeat_interleave(b, dim=-1) & (pos < L))[None]  # (1, H|1, nq, n b): used slots, block padding out
    if keep is not None:
        mask = mask & F.pad(keep, (0, nb * b - L))[:, pos]  # (B, H|1, nq, n b)
    mask = mask[..., None, :]  # (B|1, H|1, nq, 1, n b)
    if causal:
        i = (n * b + torch.arange(b, device=q.device))[:, :, None]  # (nq, b, 1) query positions
        mask = mask & (pos[:, :, None, :] <= i)  # (B|1, H|1, nq, b, n b)
    qb = blocked(q, b)  # (B, H, nb, b, D)
    out = _block_rows(qb[:, :, first:first + nq], blocked(k, b), blocked(v, b), idx, mask, dropout_p)  # (B,H,nq b,Dv)
    if causal:
        return out[:, :, :L]
    # the global query blocks 0 and nb - 1 attend every key
    rows = torch.cat([qb[:, :, 0], qb[:, :, -1]], dim=2)  # (B, H, 2b, D)
    top = dense_rows(rows, k, v, None if keep is None else keep[:, None, None, :], dropout_p)  # (B, H, 2b, Dv)
    return torch.cat([top[:, :, :b], out, top[:, :, b:]], dim=2)[:, :, :L]


def _block_rows(qb: Tensor, kb: Tensor, vb: Tensor, idx: Tensor, mask: Tensor, dropout_p: float) -> Tensor:
    """Each query block against its own key blocks: qb (B, H, nq, b, D), kb / vb (B, H, nb, b, D|Dv), ``idx``
    (H|1, nq, n) the key blocks of each query block (:func:`gather_blocks`), ``mask`` (B|1, H|1, nq, b|1, n b),
    True = attend -> (B, H, nq b, Dv); rows with no key give zeros.

    The (batch, head) rows go in chunks whose gathered keys take at most ``_CHUNK_BYTES``, so that the buffers of a
    chunk stay small: freshly allocated large buffers come as fresh pages from the OS, whose first touch costs more
    than the gather itself. Without autograd, one k / v buffer and the output serve every chunk; with it, SDPA keeps
    each chunk's gathered keys for the backward, and the gradient buffers of its backward are per chunk too.
    Per chunk, one ``index_select`` per k / v and one SDPA call with every (row, query block) in its batch axis
    and one head, (rows nq, 1, ., .): CPU's fused kernel lays its output and gradients out as (batch, sequence,
    head, E), with one head the layout of the gathered keys, so no gradient is copied into place. The mask keeps
    its (b|1) rows (the kernel broadcasts it over the queries of a block) and is left out when it holds no False.
    """
    B, H, nq, b, D = qb.shape
    Dv = vb.shape[-1]
    K = idx.shape[-1] * b
    dead = ~mask.any(dim=-1, keepdim=True)  # (B|1, H|1, nq, b|1, 1)
    has_dead = bool(dead.any())
    if has_dead:
        mask = mask | dead  # dead rows attend every slot (a finite softmax and gradient), then are zeroed
    full = bool(mask.all())
    mask = mask.expand(B, H, -1, -1, -1)
    idx = idx.expand(H, -1, -1).repeat(B, 1, 1)  # (B H, nq, n): row r = batch r // H, head r % H
    c = max(1, _CHUNK_BYTES // (nq * K * max(D, Dv) * kb.element_size()))  # (batch, head) rows a chunk
    # without autograd, one buffer per k / v and the output serve every chunk (no fresh pages per chunk)
    grad = torch.is_grad_enabled() and (qb.requires_grad or kb.requires_grad or vb.requires_grad)
    if grad:
        kbuf = vbuf = None
        outs = []
    else:
        kbuf, vbuf = kb.new_empty(c * nq * K * D), vb.new_empty(c * nq * K * Dv)
        out = vb.new_empty(B * H, nq, b, Dv)
    for i, (qc, kc, vc) in enumerate(zip(qb.flatten(0, 1).split(c), kb.flatten(0, 1).split(c),
                                         vb.flatten(0, 1).split(c), strict=True)):
        r = torch.arange(i * c, i * c + qc.shape[0], device=qb.device)  # (rows,)
        ic, n = idx[r], qc.shape[0] * nq
        attn = None if full else mask[r // H, r % H].reshape(n, 1, mask.shape[3], K)  # (rows nq, 1, b|1, K)
        oc = F.scaled_dot_product_attention(qc.reshape(n, 1, b, D), gather_blocks(kc[None], ic, kbuf).view(n, 1, K, D),
                                            gather_blocks(vc[None], ic, vbuf).view(n, 1, K, Dv), attn_mask=attn,
                                            dropout_p=dropout_p).view(-1, nq, b, Dv)  # (rows, nq, b, Dv)
        if grad:
            outs.append(oc)
        else:
            out[i * c:i * c + qc.shape[0]] = oc
    if grad:
        out = torch.cat(outs) if len(outs) > 1 else outs[0]
    out = out.view(B, H, nq, b, Dv)
    if has_dead:
        out = out.masked_fill(dead, 0.0)
    return out.flatten(2, 3)


def bigbird_attention_reference(
    q: Tensor, k: Tensor, v: Tensor, block_size: int, rand: Tensor, key_padding_mask: Tensor | None = None,
    causal: bool = False,
) -> Tensor:
    """Slow reference: the dense pattern of :func:`bigbird_mask` and the padding on explicit scores."""
    allowed = bigbird_mask(q.shape[2], block_size, rand, causal)[None]  # (1, H|1, L, L)
    if key_padding_mask is not None:
        allowed = allowed & key_padding_mask.bool()[:, None, None, :]
    return masked_attention_reference(q, k, v, allowed)


# ----------------------------------------------------------------------------- module
@register("bigbird")
class BigBirdAttention(AttentionBase):
    """BigBird ITC: 3 window blocks, first and last blocks global, ``n_random`` seeded random blocks per query
    block and head (self-attention only)."""

    # Blocks index one sequence: no cross attention (HF and LRA pad queries and keys to one length instead).
    caps = Caps(cross_attention=False, causal_cross=False, permutation_equivariant=False)

    def __init__(self, block_size: int = 64, n_random: int = 3, seed: int = 0, dropout: float = 0.0) -> None:
        super().__init__()
        if block_size < 1:
            raise ValueError(f"bigbird: block_size={block_size} must be >= 1")
        if n_random < 0:
            raise ValueError(f"bigbird: n_random={n_random} must be >= 0")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"bigbird: dropout={dropout} must be in [0, 1)")
        self.block_size, self.n_random, self.seed, self.dropout = block_size, n_random, seed, dropout

    def random_blocks(self, L: int, n_heads: int, causal: bool, device: torch.device | None = None) -> Tensor:
        """This module's random key blocks at length L: (n_heads, nb, n_random), -1 where none."""
        return random_blocks(n_blocks(L, self.block_size), self.n_random, n_heads, self.seed, causal, device)

    def forward(
        self, q: Tensor, k: Tensor, v: Tensor, *, key_padding_mask: Tensor | None = None, causal: bool = False,
    ) -> Tensor:
        B, H, L, _ = q.shape
        if k.shape[-2] != L:
            raise ValueError(f"bigbird attention needs as many queries as keys (self-attention), got L={L}, "
                             f"S={k.shape[-2]}")
        p = self.dropout if self.training else 0.0
        rand = self.random_blocks(L, H, causal, q.device)
        return bigbird_attention(q, k, v, self.block_size, rand, key_padding_mask, causal, p)
