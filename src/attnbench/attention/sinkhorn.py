"""Sparse Sinkhorn attention (Tay, Bahri, Yang, Metzler, Juan, "Sparse Sinkhorn Attention", ICML 2020,
arXiv:2002.11296).

The sequence is cut into N_B blocks of b tokens. A sorting network reads one summary per block and scores every
block against every other, R (N_B, N_B); Sinkhorn normalisation turns R into a soft permutation P (a doubly
stochastic matrix), which sorts the key and value blocks: block i of the sorted keys is sum_j P_ij K_j. Each query
block then attends within its own block (the local block) and to the sorted block of its position, so a query sees
2 b keys, but the sorted block may hold any part of the sequence:

    psi_P(K)_i = sum_{t in block i} K_t                       (block sums, (N_B, D))
    R = relu(W_2 relu(W_1 psi_P(K) + b_1) + b_2)             (the SortNet, (N_B, N_B))
    P = S^n(R / tau),  S^0(X) = exp(X),  S^n(X) = F_c(F_r(S^{n-1}(X)))      (n Sinkhorn iterations, log domain)
    Y_i = softmax(Q_i K_i^T / sqrt(D)) V_i + softmax(Q_i psi_S(K)_i^T / sqrt(D)) psi_S(V)_i     (combine="sum")

F_r / F_c normalise rows / columns; ``gumbel_noise`` adds Gumbel noise to R during training (the paper's
Gumbel-Sinkhorn, S((R + eps) / tau)). Choices the attention sees only q, k, v for: the SortNet reads the block sums
of each head's keys (the authors' LRA code, ``lra_benchmarks/models/sinkhorn_transformer``, pools the keys too; the
paper writes psi_P(X) of the layer input) and is shared by the heads (so it needs ``head_dim``); its output width is
the most blocks, ceil(max_len / b), of which a shorter input uses the first N_B (so it needs ``max_len``).

Options where codes differ: ``sort="softmax"`` is what the LRA code ran (its default ``sort_activation``: a row
softmax of R, no column normalisation); ``combine="concat"`` is lucidrains/sinkhorn-transformer's (one softmax over
the sorted and the local block together) where the LRA code adds the two attentions (``x + sorted_x``, the default
here; the paper's own formula for adding the local block was not checked against its text). ``sinkhorn_iters`` 7
and ``temperature`` 0.75 are lucidrains' defaults. Not reproduced: the LRA code's reshape (bs, block_size,
n_blocks), which makes its "blocks" strided (token t in block t mod N_B), and its einsum ``'bskhd,bnhl->bsnhd'``,
which sums over both block indices, so that every "sorted" block is the sum of all blocks; lucidrains'
``b_v_r = b_k_r`` (sorted keys used as values).

Padding: padded keys and values are zeroed before sorting (their content never reaches an output; the SortNet sums
the real keys only), the local block masks them, and a sorted slot is masked when no real key contributes to it
(sum_j P_ij real_j = 0; LRA's rule, its sorted padding mask > 0). A length that is not a multiple of b is padded
with masked keys; an input shorter than b is one block. Rows with no visible key give zeros.

Cost: the block attention is O(L b D); sorting is O(N_B^2 b D) = O(L^2 D / b), small while L < 2 b^2 and quadratic
beyond (``flops.py`` counts both); memory O(L (b + D) + N_B^2). Not causal: the paper's causal Sinkhorn balancing is
not implemented (the column normalisation mixes every block row, and the LRA code's causal branch is unfinished:
"TODO(yitay) Verify causal sinkhorn ops"), and positions index one sequence, so self-attention only.

:func:`sinkhorn_attention` is the kernel (one SDPA call per part over (batch, head, block) rows);
:func:`sinkhorn_attention_reference` recomputes it densely: probability-domain Sinkhorn, a token-level (L, L)
sorting matrix kron(P, I_b) and explicit (L, L) block masks.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnbench.attention.registry import AttentionBase, Caps, register

SORTS = ("sinkhorn", "softmax")
COMBINES = ("sum", "concat")


# ----------------------------------------------------------------------------- pure math
def block_length(L: int, block_size: int) -> int:
    """The block b used at length L: ``block_size``, or L for a shorter input (one block)."""
    return max(1, min(L, block_size))


def sinkhorn_normalize(log_alpha: Tensor, n_iters: int) -> Tensor:
    """S^n(log_alpha) (..., N, N): n iterations of row then column normalisation in the log domain, then exp.
    Rows and columns sum to 1 in the limit (Sinkhorn 1964); after any iteration the columns do exactly."""
    for _ in range(n_iters):
        log_alpha = log_alpha - torch.logsumexp(log_alpha, dim=-1, keepdim=True)  # F_r
        log_alpha = log_alpha - torch.logsumexp(log_alpha, dim=-2, keepdim=True)  # F_c
    return log_alpha.exp()


def gumbel_like(x: Tensor) -> Tensor:
    """Standard Gumbel noise of x's shape: -log(E), E ~ Exp(1) (from the global RNG, as dropout)."""
    e = torch.empty_like(x).exponential_().clamp_min_(torch.finfo(x.dtype).tiny)
    return -e.log()


def sort_matrix(R: Tensor, sort: str, n_iters: int, temperature: float, noise: Tensor | None = None) -> Tensor:
    """The soft permutation P (..., N_B, N_B) from the sorting logits R: Sinkhorn(``(R + noise) / temperature``)
    with ``n_iters`` iterations, or a row softmax (``sort="softmax"``, the LRA code's default)."""
    x = (R if noise is None else R + noise) / temperature
    if sort == "sinkhorn":
        return sinkhorn_normalize(x, n_iters)
    if sort == "softmax":
        return torch.softmax(x, dim=-1)
    raise ValueError(f"sinkhorn: sort={sort!r}; allowed: {', '.join(SORTS)}")


def _padded_blocks(q: Tensor, k: Tensor, v: Tensor, key_padding_mask: Tensor | None, block_size: int):
    """q, k, v padded to N_B b tokens, padded keys/values zeroed, as blocks (B, H, N_B, b, D|Dv); the real keys
    (B, N_B, b) bool."""
    B, H, L, _ = q.shape
    b = block_length(L, block_size)
    nb = -(-L // b)  # blocks
    pad = nb * b - L
    real = torch.ones(B, L, dtype=torch.bool, device=q.device) if key_padding_mask is None \
        else key_padding_mask.bool()  # (B, L)
    real = F.pad(real, (0, pad), value=False)  # (B, N)
    pad_ = real.logical_not()[:, None, :, None]  # (B, 1, N, 1)
    k = F.pad(k, (0, 0, 0, pad)).masked_fill(pad_, 0.0)  # (B, H, N, D): padded keys are zeros
    v = F.pad(v, (0, 0, 0, pad)).masked_fill(pad_, 0.0)  # (B, H, N, Dv)
    q = F.pad(q, (0, 0, 0, pad))  # (B, H, N, D)
    return (q.unflatten(2, (nb, b)), k.unflatten(2, (nb, b)), v.unflatten(2, (nb, b)),
            real.unflatten(1, (nb, b)))  # (B, H, N_B, b, D|Dv), (B, N_B, b)


def sort_logits(pooled: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor) -> Tensor:
    """The SortNet: relu(W_2 relu(W_1 x + b_1) + b_2) on the block summaries (B, H, N_B, D) -> R (B, H, N_B, N_B);
    w2 (>= N_B, D), b2: the first N_B rows are used."""
    nb = pooled.shape[-2]
    h = F.relu(F.linear(pooled, w1, b1))  # (B, H, N_B, D)
    return F.relu(F.linear(h, w2[:nb], b2[:nb]))  # (B, H, N_B, N_B)


def _block_sdpa(q: Tensor, k: Tensor, v: Tensor, mask: Tensor, dropout_p: float) -> Tensor:
    """SDPA of query blocks q (X, b, D) on key blocks k (X, n, D), v (X, n, Dv) under a key mask (X, n) shared by
    a block's queries; blocks with no visible key give zeros. -> (X, b, Dv)."""
    mask = mask[:, None, None, :]  # (X, 1, 1, n)
    dead = ~mask.any(dim=-1, keepdim=True)  # (X, 1, 1, 1)
    # Dead blocks attend every slot (finite softmax and gradients), then are zeroed.
    out = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None], attn_mask=mask | dead,
                                         dropout_p=dropout_p)  # (X, 1, b, Dv)
    return out.masked_fill(dead, 0.0)[:, 0]


def _attend_blocks(qb: Tensor, kb: Tensor, vb: Tensor, real: Tensor, P: Tensor, L: int, combine: str,
                   dropout_p: float) -> Tensor:
    """Blocks qb, kb (B, H, N_B, b, D), vb (.., Dv) with padding zeroed and real keys (B, N_B, b): each query block
    attends to its own block and to block i of the sorted keys P K -> (B, H, L, Dv)."""
    B, H, nb, b, D = qb.shape
    Dv = vb.shape[-1]
    if P.shape[-2:] != (nb, nb):
        raise ValueError(f"sinkhorn: P has shape {tuple(P.shape)}, expected (..., {nb}, {nb}) blocks of {b}")
    # sorted blocks: block i = sum_j P_ij block_j, as one product over the flattened blocks
    ks = (P @ kb.flatten(3)).unflatten(3, (b, D))  # (B, H, N_B, b, D)
    vs = (P @ vb.flatten(3)).unflatten(3, (b, Dv))  # (B, H, N_B, b, Dv)
    sorted_real = (P @ real[:, None].to(P.dtype)) > 0  # (B, H, N_B, b): a real key contributes to the slot
    local_real = real[:, None].expand(B, H, nb, b)  # (B, H, N_B, b)
    X = B * H * nb  # (batch, head, block) rows
    q3 = qb.reshape(X, b, D)
    if combine == "sum":
        local = _block_sdpa(q3, kb.reshape(X, b, D), vb.reshape(X, b, Dv), local_real.reshape(X, b), dropout_p)
        srt = _block_sdpa(q3, ks.reshape(X, b, D), vs.reshape(X, b, Dv), sorted_real.reshape(X, b), dropout_p)
        out = local + srt  # (X, b, Dv)
    elif combine == "concat":
        k2 = torch.cat([ks, kb], dim=3).reshape(X, 2 * b, D)  # sorted block, then local block
        v2 = torch.cat([vs, vb], dim=3).reshape(X, 2 * b, Dv)
        m2 = torch.cat([sorted_real, local_real], dim=3).reshape(X, 2 * b)
        out = _block_sdpa(q3, k2, v2, m2, dropout_p)  # (X, b, Dv)
    else:
        raise ValueError(f"sinkhorn: combine={combine!r}; allowed: {', '.join(COMBINES)}")
    return out.reshape(B, H, nb * b, Dv)[:, :, :L]  # (B, H, L, Dv)


def sorted_block_attention(
    q: Tensor, k: Tensor, v: Tensor, P: Tensor, block_size: int, key_padding_mask: Tensor | None = None,
    combine: str = "sum", dropout_p: float = 0.0,
) -> Tensor:
    """Block-local attention plus attention to the sorted block, given the soft permutation P (B, H, N_B, N_B):
    q, k (B, H, L, D), v (B, H, L, Dv) -> (B, H, L, Dv), O(L b D + N_B^2 b D)."""
    qb, kb, vb, real = _padded_blocks(q, k, v, key_padding_mask, block_size)  # (B, H, N_B, b, .), (B, N_B, b)
    return _attend_blocks(qb, kb, vb, real, P, q.shape[-2], combine, dropout_p)


def sinkhorn_attention(
    q: Tensor, k: Tensor, v: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor, block_size: int,
    key_padding_mask: Tensor | None = None, sort: str = "sinkhorn", n_iters: int = 7, temperature: float = 0.75,
    combine: str = "sum", gumbel: bool = False, dropout_p: float = 0.0,
) -> Tensor:
    """Sparse Sinkhorn attention, self-attention, non-causal. q, k (B, H, L, D), v (B, H, L, Dv) -> (B, H, L, Dv);
    SortNet weights w1 (D, D), b1 (D,), w2 (>= N_B, D), b2 (>= N_B,). ``gumbel``: add Gumbel noise to R."""
    qb, kb, vb, real = _padded_blocks(q, k, v, key_padding_mask, block_size)  # (B, H, N_B, b, .), (B, N_B, b)
    R = sort_logits(kb.sum(dim=3), w1, b1, w2, b2)  # (B, H, N_B, N_B) from the block sums (B, H, N_B, D)
    P = sort_matrix(R, sort, n_iters, temperature, gumbel_like(R) if gumbel else None)  # (B, H, N_B, N_B)
    return _attend_blocks(qb, kb, vb, real, P, q.shape[-2], combine, dropout_p)


# ----------------------------------------------------------------------------- slow references
def sinkhorn_normalize_reference(log_alpha: Tensor, n_iters: int) -> Tensor:
    """Sinkhorn in the probability domain: exp, then divide by row sums and column sums, ``n_iters`` times."""
    s = log_alpha.exp()
    for _ in range(n_iters):
        s = s / s.sum(dim=-1, keepdim=True)
        s = s / s.sum(dim=-2, keepdim=True)
    return s


def sorted_block_attention_reference(
    q: Tensor, k: Tensor, v: Tensor, P: Tensor, block_size: int, key_padding_mask: Tensor | None = None,
    combine: str = "sum",
) -> Tensor:
    """Dense (N, N) form of :func:`sorted_block_attention`: sorted keys kron(P, I_b) K, explicit block masks."""
    B, H, L, D = q.shape
    b = block_length(L, block_size)
    nb = -(-L // b)
    N = nb * b
    real = torch.ones(B, L, dtype=torch.bool) if key_padding_mask is None else key_padding_mask.bool()
    real = torch.cat([real, real.new_zeros(B, N - L)], dim=1)  # (B, N)
    q, k, v = (torch.cat([t, t.new_zeros(B, H, N - L, t.shape[-1])], dim=2) for t in (q, k, v))
    k, v = (torch.where(real[:, None, :, None], t, torch.zeros_like(t)) for t in (k, v))
    pi = torch.kron(P, torch.eye(b, dtype=P.dtype))  # (B, H, N, N): token t of block i <- token t of block j
    ks, vs = pi @ k, pi @ v  # (B, H, N, D|Dv)
    sorted_real = (pi @ real[:, None, :, None].to(P.dtype))[..., 0] > 0  # (B, H, N)
    blk = torch.arange(N) // b
    same = blk[:, None] == blk[None, :]  # (N, N)
    m_local = same & real[:, None, None, :]  # (B, 1, N, N)
    m_sorted = same & sorted_real[:, :, None, :]  # (B, H, N, N)
    s_local = q @ k.transpose(-1, -2) / math.sqrt(D)  # (B, H, N, N)
    s_sorted = q @ ks.transpose(-1, -2) / math.sqrt(D)

    def attend(s: Tensor, m: Tensor) -> Tensor:
        return torch.softmax(s.masked_fill(~m, float("-inf")), dim=-1).nan_to_num(0.0)  # all -inf: zeros

    if combine == "sum":
        out = attend(s_local, m_local) @ v + attend(s_sorted, m_sorted) @ vs
    else:
        a = attend(torch.cat([s_sorted, s_local], dim=-1), torch.cat([m_sorted, m_local.expand_as(m_sorted)], -1))
        out = a @ torch.cat([vs, v], dim=-2)
    return out[:, :, :L]


def sinkhorn_attention_reference(
    q: Tensor, k: Tensor, v: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor, block_size: int,
    key_padding_mask: Tensor | None = None, sort: str = "sinkhorn", n_iters: int = 7, temperature: float = 0.75,
    combine: str = "sum",
) -> Tensor:
    """Slow reference of :func:`sinkhorn_attention` (no noise): block sums through a one-hot (N_B, L) matrix,
    the SortNet as explicit products, probability-domain Sinkhorn, :func:`sorted_block_attention_reference`."""
    B, H, L, D = q.shape
    b = block_length(L, block_size)
    nb = -(-L // b)
    real = torch.ones(B, L, dtype=torch.bool) if key_padding_mask is None else key_padding_mask.bool()
    member = (torch.arange(L)[None, :] // b == torch.arange(nb)[:, None]).to(k.dtype)  # (N_B, L)
    pooled = member @ (k * real[:, None, :, None].to(k.dtype))  # (B, H, N_B, D)
    h = torch.clamp(pooled @ w1.T + b1, min=0.0)
    R = torch.clamp(h @ w2[:nb].T + b2[:nb], min=0.0)  # (B, H, N_B, N_B)
    P = sinkhorn_normalize_reference(R / temperature, n_iters) if sort == "sinkhorn" \
        else (R / temperature).exp() / (R / temperature).exp().sum(dim=-1, keepdim=True)
    return sorted_block_attention_reference(q, k, v, P, block_size, key_padding_mask, combine)


# ----------------------------------------------------------------------------- module
@register("sinkhorn")
class SinkhornAttention(AttentionBase):
    """Block-local attention plus attention to the block a learned Sinkhorn sort brings to each block."""

    # Blocks index one sequence (self-attention only); no causal Sinkhorn balancing; a SortNet of its own, with an
    # output per block of max_len; exponentials and log-sum-exps: (at least) fp32 under autocast.
    caps = Caps(cross_attention=False, causal=False, causal_cross=False, learned_params=True,
                pretrained_drop_in=False, fixed_len=True, permutation_equivariant=False, needs_head_dim=True,
                fp32=True)

    def __init__(self, head_dim: int, max_len: int, block_size: int = 64,
                 sort: Literal["sinkhorn", "softmax"] = "sinkhorn", sinkhorn_iters: int = 7,
                 temperature: float = 0.75, gumbel_noise: bool = False,
                 combine: Literal["sum", "concat"] = "sum", dropout: float = 0.0) -> None:
        super().__init__()
        if head_dim < 1 or max_len < 1 or block_size < 1:
            raise ValueError(f"sinkhorn: head_dim={head_dim}, max_len={max_len} and block_size={block_size} "
                             "must be >= 1")
        if sort not in SORTS:
            raise ValueError(f"sinkhorn: sort={sort!r}; allowed: {', '.join(SORTS)}")
        if combine not in COMBINES:
            raise ValueError(f"sinkhorn: combine={combine!r}; allowed: {', '.join(COMBINES)}")
        if sinkhorn_iters < 1:
            raise ValueError(f"sinkhorn: sinkhorn_iters={sinkhorn_iters} must be >= 1")
        if not temperature > 0:
            raise ValueError(f"sinkhorn: temperature={temperature} must be > 0")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"sinkhorn: dropout={dropout} must be in [0, 1)")
        self.head_dim, self.max_len, self.block_size = head_dim, max_len, block_size
        self.sort, self.sinkhorn_iters, self.temperature = sort, sinkhorn_iters, temperature
        self.gumbel_noise, self.combine, self.dropout = gumbel_noise, combine, dropout
        self.max_blocks = -(-max_len // block_size)  # the SortNet's output width
        self.sort_hidden = nn.Linear(head_dim, head_dim)  # W_1, b_1
        self.sort_out = nn.Linear(head_dim, self.max_blocks)  # W_2, b_2 (a shorter input uses the first rows)

    @classmethod
    def key_slots(cls, options: Mapping[str, Any], length: int, real: int | None = None) -> float:
        """The local block and the sorted block: min(real tokens, 2 block_size)."""
        block = options.get("block_size", inspect.signature(cls.__init__).parameters["block_size"].default)
        return min(length if real is None else real, 2 * block)

    def forward(
        self, q: Tensor, k: Tensor, v: Tensor, *, key_padding_mask: Tensor | None = None,
        causal: bool = False,
    ) -> Tensor:
        if causal:
            raise ValueError("sinkhorn attention is not causal (its Sinkhorn balancing mixes all blocks); "
                             "use causal=False")
        L, S = q.shape[-2], k.shape[-2]
        if L != S:
            raise ValueError(f"sinkhorn attention needs as many queries as keys (self-attention), got L={L}, S={S}")
        if self.max_len < L:
            raise ValueError(f"sinkhorn: length L={L} exceeds max_len={self.max_len}; build it with max_len >= {L}")
        if q.shape[-1] != self.head_dim or k.shape[-1] != self.head_dim:
            raise ValueError(f"sinkhorn: built for head_dim={self.head_dim}, got q/k head sizes "
                             f"{q.shape[-1]}/{k.shape[-1]}")
        p = self.dropout if self.training else 0.0
        return sinkhorn_attention(q, k, v, self.sort_hidden.weight, self.sort_hidden.bias, self.sort_out.weight,
                                  self.sort_out.bias, self.block_size, key_padding_mask, self.sort,
                                  self.sinkhorn_iters, self.temperature, self.combine,
                                  gumbel=self.gumbel_noise and self.training, dropout_p=p)
