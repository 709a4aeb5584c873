"""ProbSparse attention (Zhou et al., "Informer: Beyond Efficient Transformer for Long Sequence Time-Series
Forecasting", AAAI 2021, arXiv:2012.07436); CAB's ``probsparse`` (factor 5).

Each query's sparsity measurement (paper eq. 4: max minus mean of its scores over the keys) is estimated on
U = c ceil(ln L_K) keys drawn at random for it, as the official code estimates it (the paper samples "U = L_K ln L_Q
dot-product pairs" without spelling out the estimator); s = q k^T, unscaled (the scale does not change the ranking):

    M(q_i) = max_u s_{i, j_u} - (1 / L_K) sum_u s_{i, j_u},    j_u ~ Uniform{0 .. L_K - 1}, u = 1 .. U

The n_top = c ceil(ln L_Q) queries with the largest M ("active") get softmax(q K^T / sqrt(D)) V; the others
("lazy") get mean(V) (the paper's Algorithm 1: S_0 = mean(V)). Exactly as Informer2020's ``ProbAttention``
(``models/attn.py``; CAB's ``probsparse.py`` is a copy): the sample is drawn per query position and shared by the
batch and the heads (``torch.randint(L_K, (L_Q, U))``), the sampled sum is divided by L_K (not by U), and U, n_top are
capped at L_K, L_Q. U is at least 1 here (the official code fails on L_K = 1, where ln 1 = 0); n_top may be 0
(L_Q = 1: every query lazy, as the official code).

O(L U D + n_top S D) time, O(L U + n_top S) memory beyond the inputs: the sampled scores are a sampled sparse product
(:func:`sampled_scores`) without gradient (they only rank the queries), where the official code gathers an (L_Q, U, D)
copy of the keys. ``FlopCounterMode`` does not count that sparse product (``attention.flops`` puts it in ``other``).

Key padding (not in the official code): padded keys are left out of the sampled max and sum (the sum divided by the
number of real keys instead of L_K), of the active queries' softmax and of the lazy mean; a row with no real key
gives zeros. The sample still draws from every position, so a padded batch element ranks its queries on fewer keys.

Causal (Informer2020's decoder self-attention, ``mask_flag=True``): active queries see keys j <= i, lazy queries get
cumsum(V) (the official ``_get_initial_context``; a sum, not a mean, and not in the paper, whose Algorithm 1 is
non-causal). :func:`probsparse_attention` computes it (``causal=True``) for the side-by-side with the official code,
but the registry entry refuses ``causal=True``: which queries are active is decided over the whole sequence (query
i's M against the later queries', M from keys sampled anywhere), so output i changes with tokens after i (CAB's
library also declares ProbSparse non-causal). Not permutation-equivariant: the sample is tied to positions.

Sampling (``ProbSparseAttention``): training calls draw from torch's global generator (the official code's draw, so a
seeded run is reproducible and resumes with the checkpointed RNG state); eval calls draw from a generator seeded with
``seed`` on every call, so the same inputs give the same output. The official ``ProbAttention`` builds a dropout it
never applies; ``dropout`` here drops the active queries' attention probabilities (0 = the official behaviour).
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import Tensor, nn

from attnbench.attention.registry import AttentionBase, Caps, register


# ----------------------------------------------------------------------------- pure math
def sample_size(n_keys: int, factor: int) -> int:
    """U = factor ceil(ln L_K), capped at L_K, at least 1 (Informer2020's ``U_part``)."""
    return max(1, min(factor * math.ceil(math.log(n_keys)), n_keys))


def n_active(n_queries: int, factor: int) -> int:
    """n_top = factor ceil(ln L_Q), capped at L_Q (Informer2020's ``u``; 0 at L_Q = 1)."""
    return min(factor * math.ceil(math.log(n_queries)), n_queries)


def sample_keys(n_queries: int, n_keys: int, n_sample: int, generator: torch.Generator | None = None,
                device: torch.device | None = None) -> Tensor:
    """(L_Q, U) key positions, uniform with replacement over [0, L_K), one row per query position, shared by the batch
    and heads; drawn on the CPU (``generator`` None: torch's global one, as Informer2020's ``torch.randint``). Each
    row is sorted (the CSR order of :func:`sampled_scores`; M does not depend on it)."""
    return torch.randint(n_keys, (n_queries, n_sample), generator=generator).sort(dim=1).values.to(device)


def _real_keys(key_padding_mask: Tensor | None, B: int, S: int, device: torch.device) -> Tensor:
    """(B, S) bool, True = real key (all True without a mask)."""
    if key_padding_mask is None:
        return torch.ones(B, S, dtype=torch.bool, device=device)
    return key_padding_mask.bool()


def sampled_scores(q: Tensor, k: Tensor, index_sample: Tensor) -> Tensor:
    """q_i k_j^T for the sampled pairs (i, index_sample[i, u]): q (B,H,L,D), k (B,H,S,D), index_sample (L, U) ->
    (B,H,L,U), in at least fp32 (they only rank the queries). A sampled dense-dense product
    (``torch.sparse.sampled_addmm`` on the CSR pattern of the sample, one call per batch x head row): no (L, U, D)
    gather of the keys, which costs several times more on CPU."""
    B, H, L, D = q.shape
    S, U = k.shape[2], index_sample.shape[1]
    dt = torch.promote_types(q.dtype, torch.float32)
    rows = torch.arange(0, L * U + 1, U, device=q.device)  # CSR row pointers: U entries per query
    with warnings.catch_warnings():  # torch's "sparse CSR support is in beta" notice
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        pattern = torch.sparse_csr_tensor(rows, index_sample.reshape(-1), torch.zeros(L * U, dtype=dt, device=q.device),
                                          size=(L, S), check_invariants=False)
    qf, kf = q.reshape(B * H, L, D).to(dt), k.reshape(B * H, S, D).to(dt)
    out = [torch.sparse.sampled_addmm(pattern, qf[i], kf[i].T).values() for i in range(B * H)]  # each (L U,)
    return torch.stack(out).view(B, H, L, U)


@torch.no_grad()
def sparsity(q: Tensor, k: Tensor, index_sample: Tensor, key_padding_mask: Tensor | None = None) -> Tensor:
    """M = max - sum / L_K of each query's sampled scores q k_j^T (padded keys left out, the sum divided by the real
    keys' count): q (B,H,L,D), k (B,H,S,D), index_sample (L, U) -> (B,H,L) in at least fp32; -inf where no sampled
    key is real."""
    S = k.shape[2]
    scores = sampled_scores(q, k, index_sample)  # (B, H, L, U)
    if key_padding_mask is None:
        return scores.amax(-1) - scores.sum(-1) / S
    real = key_padding_mask.bool()  # (B, S)
    keep = real[:, index_sample][:, None]  # (B, 1, L, U)
    n_real = real.sum(-1).clamp(min=1).to(scores.dtype)[:, None, None]  # (B, 1, 1)
    return scores.masked_fill(~keep, float("-inf")).amax(-1) - scores.masked_fill(~keep, 0.0).sum(-1) / n_real


def lazy_context(v: Tensor, real: Tensor, causal: bool, n_queries: int) -> Tensor:
    """What lazy queries get: the mean of the real values (B,H,L,Dv), or when causal their cumulative sum
    (Informer2020's ``V.cumsum``); zeros where no value is real."""
    w = real[:, None, :, None].to(v.dtype)  # (B, 1, S, 1)
    if causal:
        return (v * w).cumsum(dim=2)  # (B, H, S = L, Dv)
    mean = (v * w).sum(2, keepdim=True) / w.sum(2, keepdim=True).clamp(min=1)  # (B, H, 1, Dv)
    return mean.expand(-1, -1, n_queries, -1)  # (B, H, L, Dv)


def probsparse_attention(
    q: Tensor, k: Tensor, v: Tensor, index_sample: Tensor, n_top: int, key_padding_mask: Tensor | None = None,
    causal: bool = False, dropout: nn.Module | None = None,
) -> Tensor:
    """ProbSparse attention with a given sample: q (B,H,L,D), k (B,H,S,D), v (B,H,S,Dv), index_sample (L, U) key
    positions per query -> (B,H,L,Dv). The n_top queries with the largest :func:`sparsity` attend every (real) key
    (j <= i when causal); the rest get :func:`lazy_context`. Rows with no visible real key give zeros."""
    B, H, L, D = q.shape
    S, Dv = k.shape[2], v.shape[-1]
    if causal and L != S:
        raise ValueError(f"probsparse: causal needs as many queries as keys (self-attention), got L={L}, S={S}")
    real = _real_keys(key_padding_mask, B, S, q.device)  # (B, S)
    context = lazy_context(v, real, causal, L)  # (B, H, L, Dv)
    if n_top == 0:
        return context.contiguous()
    top = sparsity(q, k, index_sample, key_padding_mask).topk(n_top, dim=-1, sorted=False).indices  # (B, H, u)
    q_top = q.gather(2, top[..., None].expand(-1, -1, -1, D))  # (B, H, u, D)
    scores = q_top @ k.transpose(-1, -2) / math.sqrt(D)  # (B, H, u, S)
    visible = real[:, None, None, :]  # (B, 1, 1, S)
    if causal:
        visible = visible & (torch.arange(S, device=q.device) <= top[..., None])  # (B, H, u, S)
    dead = ~visible.any(dim=-1, keepdim=True)  # rows with no visible key
    # dead rows attend every key (finite softmax and gradients), then are zeroed
    attn = torch.softmax(scores.masked_fill(~(visible | dead), float("-inf")), dim=-1)
    if dropout is not None:
        attn = dropout(attn)
    y_top = (attn @ v).masked_fill(dead, 0.0)  # (B, H, u, Dv)
    return context.scatter(2, top[..., None].expand(-1, -1, -1, Dv), y_top)  # (B, H, L, Dv)


def probsparse_attention_reference(
    q: Tensor, k: Tensor, v: Tensor, index_sample: Tensor, n_top: int, key_padding_mask: Tensor | None = None,
    causal: bool = False,
) -> Tensor:
    """Slow reference: the full score matrix, M from its sampled entries, every query's full attention computed and
    kept for the n_top most active, the mean (causal: cumulative sum) of the real values for the rest."""
    B, H, L, D = q.shape
    S = k.shape[2]
    real = _real_keys(key_padding_mask, B, S, q.device)  # (B, S)
    scores = q @ k.transpose(-1, -2)  # (B, H, L, S), unscaled
    rows = torch.arange(L, device=q.device)[:, None]  # (L, 1)
    sampled = scores[:, :, rows, index_sample]  # (B, H, L, U)
    keep = real[:, index_sample][:, None]  # (B, 1, L, U)
    n_real = real.sum(-1).clamp(min=1)[:, None, None]  # (B, 1, 1)
    m = sampled.masked_fill(~keep, float("-inf")).max(-1).values - (sampled * keep).sum(-1) / n_real  # (B, H, L)
    active = torch.zeros(B, H, L, dtype=torch.bool, device=q.device)
    if n_top > 0:
        active.scatter_(2, m.topk(n_top, dim=-1).indices, True)
    visible = real[:, None, None, :] & (torch.ones(L, S, dtype=torch.bool, device=q.device).tril() if causal
                                          else torch.ones(L, S, dtype=torch.bool, device=q.device))
    attn = torch.softmax((scores / math.sqrt(D)).masked_fill(~visible, float("-inf")), dim=-1).nan_to_num(0.0)
    full = attn @ v  # (B, H, L, Dv)
    w = real[:, None, :, None].to(v.dtype)
    lazy = (v * w).cumsum(2) if causal else ((v * w).sum(2, keepdim=True) / w.sum(2, keepdim=True).clamp(min=1))
    return torch.where(active[..., None], full, lazy.expand_as(full))


# ----------------------------------------------------------------------------- module
@register("probsparse")
class ProbSparseAttention(AttentionBase):
    """Informer's ProbSparse attention: the n_top most "active" queries attend every key, the rest get mean(V)."""

    # causal=False: the active queries are chosen over the whole sequence (see the module docstring);
    # causal_cross=False: the queries compete for the n_top slots. permutation_equivariant=False: the sample is tied
    # to positions.
    caps = Caps(causal=False, causal_cross=False, permutation_equivariant=False)

    def __init__(self, factor: int = 5, seed: int = 0, dropout: float = 0.0) -> None:
        super().__init__()
        if factor < 1:
            raise ValueError(f"probsparse: factor={factor} must be >= 1")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"probsparse: dropout={dropout} must be in [0, 1)")
        self.factor, self.seed = factor, seed
        self.drop = nn.Dropout(dropout)

    def forward(
        self, q: Tensor, k: Tensor, v: Tensor, *, key_padding_mask: Tensor | None = None,
        causal: bool = False,
    ) -> Tensor:
        if causal:
            raise ValueError("probsparse: causal=True is refused: the active queries are ranked over the whole "
                             "sequence, so output i depends on later tokens; use causal=False")
        L, S = q.shape[2], k.shape[2]
        gen = None if self.training else torch.Generator().manual_seed(self.seed)
        index = sample_keys(L, S, sample_size(S, self.factor), gen, q.device)  # (L, U)
        return probsparse_attention(q, k, v, index, n_active(L, self.factor), key_padding_mask,
                                    dropout=self.drop if self.training else None)
