"""Performer / FAVOR+ (Choromanski et al., "Rethinking Attention with Performers", ICLR 2021, arXiv:2009.14794).

exp(q.k / sqrt(D)) is estimated without bias by positive orthogonal random features,
phi(x) = exp(W x' - |x'|^2 / 2) / sqrt(m) with x' = x D^-1/4 and W (m, D) orthogonal Gaussian rows
(:func:`~attnbench.attention.feature_maps.favor_feature_map`), and attention is computed in linear form
(:func:`~attnbench.attention.linear.linear_attention`, prefix sums when causal): O(N m Dv).

Kernels (issue 14). :func:`favor_attention` runs non-causal and causal attention through
blocked kernels with hand-written backwards (:class:`_FavorNonCausal`, :class:`_FavorCausal`): per block of
(batch, head) pairs of about a megabyte of features, one matmul per feature map, the stabiliser and one
in-place exponential (base 2: log2 e is folded into the projection), then the products that read the block
while it is in cache. No (B, H, N, m) map is kept: the backward recomputes the features block by block
(memory O(N D) as SDPA's), then matmuls and one in-place product per map. Causal cross-attention (L != S)
runs the causal kernel over max(L, S) positions (dummy queries or padded keys in front). The slow
reference is :func:`favor_attention_reference`; the tests hold the kernels to it (values and gradients).

Stabilisers. Query features are divided by their own row max (a per-row factor, cancels in the
normalisation). Key features are divided by one max over the valid keys of each (batch, head), with
eps=0, so that factor cancels exactly between numerator and denominator: future keys (causal) and
padded keys do not leak into an output through it. Padded keys are replaced by a valid key before the
feature map (so their content cannot move the max) and then get zero features.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from attnbench.attention.feature_maps import favor_exponent, favor_feature_map, orthogonal_gaussian
from attnbench.attention.linear import linear_attention_reference, linear_step
from attnbench.attention.registry import AttentionBase, Caps, State, register


# ----------------------------------------------------------------------------- pure math
def _stand_in_padded_keys(k: Tensor, key_padding_mask: Tensor | None) -> Tensor:
    """Padded keys become a copy of the first valid key: the key stabiliser (a max over keys) then depends on
    valid keys only. Their features are zeroed later by linear_attention. k (B,H,S,D) -> (B,H,S,D)."""
    if key_padding_mask is None:
        return k
    keep = key_padding_mask.bool()  # (B, S)
    first = keep.float().argmax(dim=-1)  # (B,) index of the first valid key (0 if none)
    idx = first[:, None, None, None].expand(-1, k.shape[1], 1, k.shape[-1])  # (B, H, 1, D)
    return torch.where(keep[:, None, :, None], k, k.gather(2, idx))  # (B, H, S, D)


def favor_features(
    q: Tensor, k: Tensor, proj: Tensor, key_padding_mask: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """FAVOR+ features of q (B,H,L,D) and k (B,H,S,D) for proj (m, D) -> (B,H,L,m), (B,H,S,m).

    The features of :func:`favor_features_reference` (``favor_feature_map``) in fewer passes over the
    (N, m) maps: D^-1/4 and the 1/sqrt(m) factor go into the projection and the exponent, and a query's
    |q'|^2 / 2 cancels against its row-max stabiliser (in value: exp(w q' - max_m w q')), so each map is one
    matmul, one subtraction of an (N, 1) column and one exponential (plus eps for queries).
    """
    k = _stand_in_padded_keys(k, key_padding_mask)
    m, D = proj.shape
    w = proj.to(q.dtype) * D ** -0.25  # (m, D): x' W^T = x (W D^-1/4)^T
    half_log_m = 0.5 * math.log(m)  # exp(e - ln sqrt(m)) = exp(e) / sqrt(m)
    wq = q @ w.T  # (B, H, L, m)
    # The stabiliser of the definition is the detached row max of w q' - |q'|^2 / 2: |q'|^2 / 2 cancels in
    # value, not in the gradient (nor exactly in the output, through eps), so sq_q - sg(sq_q) keeps it.
    sq_q = 0.5 * (q * q).sum(-1, keepdim=True) * D ** -0.5  # (B, H, L, 1): |q'|^2 / 2
    shift = (sq_q - sq_q.detach()) + (wq.detach().amax(-1, keepdim=True) + half_log_m)  # (B, H, L, 1)
    phi_q = torch.exp(wq + -shift) + 1e-6 / math.sqrt(m)  # (B, H, L, m); + -x: no (L, m) negation in backward
    wk = k @ w.T  # (B, H, S, m)
    sq = 0.5 * (k * k).sum(-1, keepdim=True) * D ** -0.5  # (B, H, S, 1): |k'|^2 / 2
    with torch.no_grad():  # global stabiliser over (S, m), cancels exactly (eps = 0 for keys)
        c = (wk - sq).amax(dim=(-1, -2), keepdim=True)  # (B, H, 1, 1)
    phi_k = torch.exp(wk + -(sq + (c + half_log_m)))  # (B, H, S, m)
    return phi_q, phi_k


def favor_features_reference(
    q: Tensor, k: Tensor, proj: Tensor, key_padding_mask: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """The features as defined (:func:`~attnbench.attention.feature_maps.favor_feature_map`, eps 1e-6 for
    queries, 0 for keys) -> (B,H,L,m), (B,H,S,m)."""
    k = _stand_in_padded_keys(k, key_padding_mask)
    phi_q = favor_feature_map(q, proj, is_query=True)  # (B, H, L, m)
    phi_k = favor_feature_map(k, proj, is_query=False, eps=0.0)  # (B, H, S, m)
    return phi_q, phi_k


# Rows of the (bh, N, m) feature maps processed together by the kernels: a block of about this many elements
# (1 MiB in float32) stays in cache through the projection, its exponential and the products that read it. No
# (bh, N, m) map is ever kept: the backward recomputes each block's features. Saving the maps instead is no
# faster on CPU (their first touch, page faults of freshly mapped memory, costs about what the projection and
# the exponential cost again) and keeps 2 N m floats per (batch, head) alive (2.6x the peak memory at L=1,024).
_BLOCK_ELEMS = 1 << 18
_LOG2E = 1.0 / math.log(2.0)  # exp(x) = exp2(x log2 e): exp2 is several times faster than exp on CPU


def _blocks(bh: int, n: int, m: int, device: torch.device) -> list[slice]:
    """Slices of the flattened (batch * head) axis with about _BLOCK_ELEMS feature-map elements each on CPU
    (cache-sized blocks); one slice elsewhere (an accelerator wants few, large kernels)."""
    g = max(1, _BLOCK_ELEMS // max(1, n * m)) if device.type == "cpu" else bh
    return [slice(i, min(i + g, bh)) for i in range(0, bh, g)]


def _block_features(q: Tensor, k: Tensor, w: Tensor, keep: Tensor | None, pq: Tensor, pk: Tensor) -> None:
    """FAVOR+ features of one block into ``pq`` (g, L, m) (phi_q0: without the query eps) and ``pk`` (g, S, m),
    as :func:`favor_features` defines them, with exponentials in base 2. q (g,L,D), k (g,S,D), w (m,D) scaled by
    D^-1/4, keep (g,S,1) bool or None (padded keys: out of the key max, zero features)."""
    m, D = w.shape
    hlm2 = 0.5 * math.log2(m)  # exp(e - ln sqrt(m)) = exp2(e log2 e - log2 sqrt(m)) = exp(e) / sqrt(m)
    w2t = (w * _LOG2E).T  # (D, m): exponents in base 2 straight out of the matmul
    torch.matmul(q, w2t, out=pq)  # (g, L, m): w q' (base 2)
    pq.sub_(pq.amax(-1, keepdim=True) + hlm2).exp2_()  # row max stabiliser; |q'|^2 / 2 cancels in value
    torch.matmul(k, w2t, out=pk)  # (g, S, m): w k' (base 2)
    pk.sub_(k.square().sum(-1, keepdim=True).mul_(0.5 * D ** -0.5 * _LOG2E))  # - |k'|^2 / 2 (base 2)
    if keep is not None:
        pk.masked_fill_(~keep, float("-inf"))
    c = pk.amax(dim=(-1, -2), keepdim=True)  # (g, 1, 1) over the valid keys, cancels exactly
    c = torch.where(torch.isfinite(c), c, torch.zeros_like(c))  # no valid key: any finite value
    pk.sub_(c + hlm2).exp2_()


def _scratch(q: Tensor, blocks: list[slice], L: int, S: int, m: int) -> tuple[Tensor, Tensor]:
    """One pair of feature-map buffers (g, L, m), (g, S, m) for every block (the first is the largest)."""
    return q.new_empty(blocks[0].stop, L, m), q.new_empty(blocks[0].stop, S, m)


def _favor_noncausal_forward(
    q: Tensor, k: Tensor, v: Tensor, w: Tensor, keep: Tensor | None
) -> tuple[Tensor, Tensor, Tensor]:
    """The forward of :class:`_FavorNonCausal`, per block of (batch, head) pairs.
    -> out (bh,L,Dv), inv (bh,L,1) 1/den (0 where no key), kvz (bh,m,Dv+1)."""
    bh, L, D = q.shape
    S, Dv, m = k.shape[1], v.shape[-1], w.shape[0]
    eps = 1e-6 / math.sqrt(m)
    kvz = v.new_empty(bh, m, Dv + 1)  # [phi_k^T v, phi_k^T 1]
    num, den = v.new_empty(bh, L, Dv), v.new_empty(bh, L, 1)
    blocks = _blocks(bh, max(L, S), m, q.device)
    scratch_q, scratch_k = _scratch(q, blocks, L, S, m)
    for sl in blocks:
        g = sl.stop - sl.start
        pq, pk = scratch_q[:g], scratch_k[:g]  # phi_q0 (without the query eps), phi_k
        _block_features(q[sl], k[sl], w, None if keep is None else keep[sl], pq, pk)
        kv, z = kvz[sl, :, :Dv], kvz[sl, :, Dv:]  # (g, m, Dv), (g, m, 1)
        kv.copy_(pk.transpose(-1, -2) @ v[sl])
        z.copy_(pk.sum(-2).unsqueeze(-1))
        # (phi_q0 + eps) [kv, z]: the query eps is a rank-one term
        torch.baddbmm(kv.sum(-2, keepdim=True), pq, kv, beta=eps, out=num[sl])
        torch.baddbmm(z.sum(-2, keepdim=True), pq, z, beta=eps, out=den[sl])
    pos = den > 0
    inv = torch.where(pos, 1.0 / torch.where(pos, den, torch.ones_like(den)), torch.zeros_like(den))  # (bh,L,1)
    return num.mul_(inv), inv, kvz  # rows that see no key: 0


class _FavorNonCausal(torch.autograd.Function):
    """Non-causal FAVOR+ attention with a hand-written backward (the math of :func:`favor_features` and
    :func:`~attnbench.attention.linear.linear_attention`).

    Forward (:func:`_favor_noncausal_forward`), per block of (batch, head) pairs: one matmul per feature map,
    the stabiliser, one in-place exponential; [phi_k^T v, phi_k^T 1] (m, Dv + 1) and phi_q times it. The
    query eps is kept out of the map (phi_q = phi_q0 + eps): its products are rank-one terms. Saved: q, k, v,
    out, 1/den and kvz; the backward recomputes each block's maps, then six matmuls and one in-place product
    per map.
    q (bh,L,D), k (bh,S,D), v (bh,S,Dv), w (m,D) scaled by D^-1/4, keep (bh,S,1) bool or None -> (bh,L,Dv).
    """

    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, v: Tensor, w: Tensor, keep: Tensor | None) -> Tensor:  # type: ignore[override]
        out, inv, kvz = _favor_noncausal_forward(q, k, v, w, keep)
        ctx.save_for_backward(q, k, v, w, kvz, inv, out)
        ctx.keep = keep
        ctx.eps = 1e-6 / math.sqrt(w.shape[0])
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, g_out: Tensor) -> tuple[Tensor, Tensor, Tensor, None, None]:  # type: ignore[override]
        q, k, v, w, kvz, inv, out = ctx.saved_tensors
        keep = ctx.keep
        bh, L, D = q.shape
        S, Dv, m = k.shape[1], v.shape[-1], w.shape[0]
        s = D ** -0.5  # d(|x'|^2 / 2)/dx = x D^-1/2
        dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
        blocks = _blocks(bh, max(L, S), m, q.device)
        scratch_q, scratch_k = _scratch(q, blocks, L, S, m)
        for sl in blocks:
            g = sl.stop - sl.start
            pq, pk, go = scratch_q[:g], scratch_k[:g], g_out[sl]
            _block_features(q[sl], k[sl], w, None if keep is None else keep[sl], pq, pk)  # recomputed
            # out = num / den: d num = g / den, d den = -(g . out) / den -> G = [d num, d den] (g, L, Dv + 1)
            G = torch.cat([go * inv[sl], (go * out[sl]).sum(-1, keepdim=True).mul_(inv[sl]).neg_()], dim=-1)
            # [num, den] = (phi_q0 + eps) kvz -> d kvz = phi_q0^T G + eps 1 G.sum
            dkvz = torch.baddbmm(G.sum(-2, keepdim=True), pq.transpose(-1, -2), G, beta=ctx.eps)  # (g, m, Dv+1)
            dwq = torch.matmul(G, kvz[sl].transpose(-1, -2)).mul_(pq)  # (g, L, m): d phi_q * phi_q0 = d(w q')
            # q' enters through w q' and, in the gradient only, through -|q'|^2 / 2 (the detached row max)
            torch.matmul(dwq, w, out=dq[sl])
            dq[sl].sub_(dwq.sum(-1, keepdim=True).mul_(s) * q[sl])
            # [v, 1] dkvz^T = v dkv^T + 1 dz^T: d phi_k (g, S, m), times phi_k: d(w k' - |k'|^2 / 2)
            dkv, dz = dkvz[..., :Dv], dkvz[..., Dv:]
            dwk = torch.baddbmm(dz.transpose(-1, -2), v[sl], dkv.transpose(-1, -2)).mul_(pk)
            torch.matmul(dwk, w, out=dk[sl])
            dk[sl].sub_(dwk.sum(-1, keepdim=True).mul_(s) * k[sl])
            torch.matmul(pk, dkv, out=dv[sl])  # padded keys: zero features, zero gradient
        return dq, dk, dv, None, None


def favor_attention_noncausal(
    q: Tensor, k: Tensor, v: Tensor, proj: Tensor, key_padding_mask: Tensor | None = None
) -> Tensor:
    """Non-causal FAVOR+ attention through the blocked kernel (:class:`_FavorNonCausal`; ``proj`` gets no
    gradient). (B,H,L,D), (B,H,S,D), (B,H,S,Dv) -> (B,H,L,Dv)."""
    B, H, L, D = q.shape
    S, Dv = k.shape[-2], v.shape[-1]
    w = (proj.to(q.dtype) * D ** -0.25).detach().contiguous()  # (m, D): x' W^T = x (W D^-1/4)^T
    keep = None
    if key_padding_mask is not None:
        keep = key_padding_mask.bool()[:, None, :, None].expand(B, H, S, 1).reshape(B * H, S, 1)
    q3, k3, v3 = (t.reshape(B * H, t.shape[-2], t.shape[-1]).contiguous() for t in (q, k, v))
    if torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad):
        out = _FavorNonCausal.apply(q3, k3, v3, w, keep)
    else:
        out = _favor_noncausal_forward(q3, k3, v3, w, keep)[0]
    return out.view(B, H, L, Dv)


def _exclusive_prefix(x: Tensor, reverse: bool = False) -> Tensor:
    """Sum over the earlier (``reverse``: later) chunks of axis 1, a zero state at the first (last) one.
    (g, C, ...) -> (g, C, ...). A running sum, one add per chunk: several times faster here than cumsum over a
    non-innermost axis (and than flip + cumsum + cat)."""
    out = torch.empty_like(x)
    order = range(x.shape[1] - 1, -1, -1) if reverse else range(x.shape[1])
    prev = None
    for c in order:
        if prev is None:
            out[:, c].zero_()
        else:
            torch.add(out[:, prev], x[:, prev], out=out[:, c])
        prev = c
    return out


def _favor_causal_forward(
    q: Tensor, k: Tensor, v1: Tensor, w: Tensor, keep: Tensor | None, chunk: int
) -> tuple[Tensor, Tensor]:
    """The forward of :class:`_FavorCausal` (query i sees keys j <= i; N a multiple of ``chunk``), per block of
    (batch, head) pairs: the features (:func:`_block_features`), per chunk of keys [phi_k^T v, phi_k^T 1], their
    exclusive prefix sums over chunks, and the masked quadratic term inside each chunk (the prefix sums of
    :func:`~attnbench.attention.linear.linear_attention`). v1 = [v, 1] (bh, N, Dv + 1).
    -> out (bh,N,Dv), inv (bh,N,1) 1/den (0 where no key)."""
    bh, N, _ = q.shape
    m, E = w.shape[0], v1.shape[-1]
    C = N // chunk
    eps = 1e-6 / math.sqrt(m)
    nd = v1.new_empty(bh, N, E)  # [numerator, denominator]
    blocks = _blocks(bh, N, m, q.device)
    scratch_q, scratch_k = _scratch(q, blocks, N, N, m)
    for sl in blocks:
        g = sl.stop - sl.start
        pq, pk = scratch_q[:g], scratch_k[:g]
        _block_features(q[sl], k[sl], w, None if keep is None else keep[sl], pq, pk)
        qc = (pq + eps).view(g, C, chunk, m)  # phi_q with its eps
        kc, vc = pk.view(g, C, chunk, m), v1[sl].view(g, C, chunk, E)
        kv_prev = _exclusive_prefix(kc.transpose(-1, -2) @ vc)  # (g, C, m, E): the earlier chunks' sums
        a = (qc @ kc.transpose(-1, -2)).tril_()  # (g, C, c, c) within-chunk kernel, j <= i
        torch.baddbmm(a.flatten(0, 1) @ vc.flatten(0, 1), qc.flatten(0, 1), kv_prev.flatten(0, 1),
                      out=nd[sl].view(g * C, chunk, E))
    den = nd[..., -1:]
    pos = den > 0
    inv = torch.where(pos, 1.0 / torch.where(pos, den, torch.ones_like(den)), torch.zeros_like(den))  # (bh,N,1)
    return nd[..., :-1] * inv, inv


class _FavorCausal(torch.autograd.Function):
    """Causal FAVOR+ attention (L == S) with a hand-written backward: :func:`_favor_causal_forward`; saved are
    q, k, [v, 1], out and 1/den; the features and the chunk sums are recomputed per block. With A = tril(G [v, 1]^T) and
    P = tril(phi_q phi_k^T) inside a chunk, and the exclusive prefix (suffix) sums K (R) of phi_k^T [v, 1]
    (phi_q^T G) over chunks: d phi_q = G K^T + A phi_k, d phi_k = A^T phi_q + [v, 1] R^T, d[v, 1] = P^T G + phi_k R.
    q, k (bh,N,D), v1 (bh,N,Dv+1), w (m,D) scaled by D^-1/4, keep (bh,N,1) bool or None -> (bh,N,Dv)."""

    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, v1: Tensor, w: Tensor, keep: Tensor | None, chunk: int) -> Tensor:  # type: ignore[override]
        out, inv = _favor_causal_forward(q, k, v1, w, keep, chunk)
        ctx.save_for_backward(q, k, v1, w, inv, out)
        ctx.chunk, ctx.keep = chunk, keep
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, g_out: Tensor) -> tuple[Tensor, Tensor, Tensor, None, None, None]:  # type: ignore[override]
        q, k, v1, w, inv, out = ctx.saved_tensors
        keep = ctx.keep
        bh, N, D = q.shape
        m, E, c = w.shape[0], v1.shape[-1], ctx.chunk
        C, s, eps = N // c, D ** -0.5, 1e-6 / math.sqrt(m)
        dq, dk, dv1 = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v1)
        blocks = _blocks(bh, N, m, q.device)
        scratch_q, scratch_k = _scratch(q, blocks, N, N, m)
        for sl in blocks:
            g = sl.stop - sl.start
            pq, pk, go = scratch_q[:g], scratch_k[:g], g_out[sl]
            _block_features(q[sl], k[sl], w, None if keep is None else keep[sl], pq, pk)  # recomputed
            G = torch.cat([go * inv[sl], (go * out[sl]).sum(-1, keepdim=True).mul_(inv[sl]).neg_()], dim=-1)
            Gc, vc = G.view(g, C, c, E), v1[sl].view(g, C, c, E)
            qc, kc = (pq + eps).view(g, C, c, m), pk.view(g, C, c, m)
            kv_prev = _exclusive_prefix(kc.transpose(-1, -2) @ vc)  # (g, C, m, E)
            r_next = _exclusive_prefix(qc.transpose(-1, -2) @ Gc, reverse=True)  # (g, C, m, E): later chunks
            A = (Gc @ vc.transpose(-1, -2)).tril_()  # (g, C, c, c): G_i . [v, 1]_j, j <= i
            P = (qc @ kc.transpose(-1, -2)).tril_()  # (g, C, c, c): phi_q_i . phi_k_j, j <= i
            dwq = torch.matmul(Gc, kv_prev.transpose(-1, -2)).add_(A @ kc).view(g, N, m).mul_(pq)  # d(w q')
            torch.matmul(dwq, w, out=dq[sl])
            dq[sl].sub_(dwq.sum(-1, keepdim=True).mul_(s) * q[sl])
            dwk = torch.matmul(vc, r_next.transpose(-1, -2)).add_(A.transpose(-1, -2) @ qc).view(g, N, m).mul_(pk)
            torch.matmul(dwk, w, out=dk[sl])
            dk[sl].sub_(dwk.sum(-1, keepdim=True).mul_(s) * k[sl])
            dv1[sl] = (torch.matmul(kc, r_next).add_(P.transpose(-1, -2) @ Gc)).view(g, N, E)
        return dq, dk, dv1, None, None, None


def favor_attention_causal(
    q: Tensor, k: Tensor, v: Tensor, proj: Tensor, key_padding_mask: Tensor | None = None, chunk: int = 64
) -> Tensor:
    """Causal self-attention (L == S) through the blocked kernel (:class:`_FavorCausal`; ``proj`` gets no
    gradient; without autograd, no (B, H, N, m) map is kept). N is padded to a multiple of ``chunk`` with
    padded keys. (B,H,N,D), (B,H,N,D), (B,H,N,Dv) -> (B,H,N,Dv)."""
    B, H, N, D = q.shape
    if k.shape[-2] != N:
        raise ValueError(f"favor_attention_causal: needs L == S, got L={N}, S={k.shape[-2]}")
    Dv = v.shape[-1]
    w = (proj.to(q.dtype) * D ** -0.25).detach().contiguous()  # (m, D)
    chunk = min(chunk, N)
    pad = -N % chunk
    keep = None
    if key_padding_mask is not None or pad:
        kpm = key_padding_mask.bool() if key_padding_mask is not None else q.new_ones(B, N, dtype=torch.bool)
        kpm = F.pad(kpm, (0, pad), value=False)  # (B, N + pad)
        keep = kpm[:, None, :, None].expand(B, H, N + pad, 1).reshape(B * H, N + pad, 1)
    v1 = torch.cat([v, v.new_ones(*v.shape[:-1], 1)], dim=-1)  # (B, H, N, Dv + 1): the last column gives den
    q3, k3, v3 = ((F.pad(t, (0, 0, 0, pad)) if pad else t).reshape(B * H, N + pad, t.shape[-1]).contiguous()
                  for t in (q, k, v1))
    if torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad):
        out = _FavorCausal.apply(q3, k3, v3, w, keep, chunk)
    else:
        out = _favor_causal_forward(q3, k3, v3, w, keep, chunk)[0]
    return out.view(B, H, N + pad, Dv)[:, :, :N]


def favor_attention(
    q: Tensor, k: Tensor, v: Tensor, proj: Tensor, key_padding_mask: Tensor | None = None, causal: bool = False
) -> Tensor:
    """FAVOR+ attention, linear in the sequence length. (B,H,L,D), (B,H,S,D), (B,H,S,Dv) -> (B,H,L,Dv).
    Non-causal: the blocked kernel (:func:`favor_attention_noncausal`); causal: the blocked causal kernel
    (:func:`favor_attention_causal`), cross-attention included: full attention's alignment (query i sees keys
    j <= i + S - L) is causal self-attention over max(L, S) positions, with S - L dummy queries in front (S > L;
    their outputs are dropped, and a query's output depends on no other query) or L - S padded keys in front
    (L > S; zero features, so the first L - S queries see no key and give zeros, as in the reference)."""
    if not causal:
        return favor_attention_noncausal(q, k, v, proj, key_padding_mask)
    B, L, S = q.shape[0], q.shape[-2], k.shape[-2]
    if L == S:
        return favor_attention_causal(q, k, v, proj, key_padding_mask)
    if S > L:
        return favor_attention_causal(F.pad(q, (0, 0, S - L, 0)), k, v, proj, key_padding_mask)[:, :, S - L:]
    kpm = key_padding_mask.bool() if key_padding_mask is not None else q.new_ones(B, S, dtype=torch.bool)
    k, v = F.pad(k, (0, 0, L - S, 0)), F.pad(v, (0, 0, L - S, 0))  # (B, H, L, D), (B, H, L, Dv)
    return favor_attention_causal(q, k, v, proj, F.pad(kpm, (L - S, 0), value=False))


def favor_attention_reference(
    q: Tensor, k: Tensor, v: Tensor, proj: Tensor, key_padding_mask: Tensor | None = None, causal: bool = False
) -> Tensor:
    """Slow reference: the features as defined (:func:`favor_features_reference`), the explicit (B,H,L,S)
    kernel matrix."""
    phi_q, phi_k = favor_features_reference(q, k, proj, key_padding_mask)
    return linear_attention_reference(phi_q, phi_k, v, key_padding_mask=key_padding_mask, causal=causal)


def default_n_features(head_dim: int) -> int:
    """m = D ln D (the Performer paper's Theta(D log D); performer-pytorch's default), at least 1."""
    return max(1, int(head_dim * math.log(head_dim)))


# ----------------------------------------------------------------------------- module
@register("performer")
class PerformerAttention(AttentionBase):
    """FAVOR+ softmax attention with a fixed buffer of m orthogonal random features.

    ``redraw()`` draws new features from the module's seeded generator; ``redraw_every=n`` does so
    automatically before every n-th training forward call after the first n (eval calls do not count).
    """

    # An unbiased estimator of softmax attention: usable in place of a pretrained dense layer, with an
    # error that shrinks as n_features grows. Exponentials and prefix sums: (at least) fp32 under autocast.
    caps = Caps(needs_head_dim=True, fp32=True, incremental=True)

    def __init__(self, head_dim: int, n_features: int | None = None, redraw_every: int | None = None,
                 seed: int = 0) -> None:
        super().__init__()
        if head_dim < 1:
            raise ValueError(f"performer: head_dim={head_dim} must be >= 1")
        self.head_dim = head_dim
        self.n_features = default_n_features(head_dim) if n_features is None else n_features
        if self.n_features < 1:
            raise ValueError(f"performer: n_features={n_features} must be >= 1 (or null for D ln D)")
        if redraw_every is not None and redraw_every < 1:
            raise ValueError(f"performer: redraw_every={redraw_every} must be >= 1 (or null: never redraw)")
        self.redraw_every = redraw_every
        self.calls_since_redraw = 0  # training forward calls with the current features
        self._gen = torch.Generator().manual_seed(seed)
        self.register_buffer("proj", orthogonal_gaussian(self.n_features, head_dim, self._gen))  # (m, D)

    @torch.no_grad()
    def redraw(self) -> None:
        """Draw new random features (FAVOR+ redraw)."""
        self.proj.copy_(orthogonal_gaussian(self.n_features, self.head_dim, self._gen))
        self.calls_since_redraw = 0

    def forward(
        self, q: Tensor, k: Tensor, v: Tensor, *, key_padding_mask: Tensor | None = None,
        causal: bool = False,
    ) -> Tensor:
        if q.shape[-1] != self.head_dim or k.shape[-1] != self.head_dim:
            raise ValueError(f"performer: built for head_dim={self.head_dim}, got q/k head sizes "
                             f"{q.shape[-1]}/{k.shape[-1]}")
        if self.training and self.redraw_every is not None:
            if self.calls_since_redraw >= self.redraw_every:
                self.redraw()
            self.calls_since_redraw += 1
        return favor_attention(q, k, v, self.proj, key_padding_mask, causal)

    def step(self, q: Tensor, k: Tensor, v: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """Incremental decoding in the recurrent form (:func:`~attnbench.attention.linear.linear_step`). The key
        stabiliser is the running max ``c`` (B, H, 1, 1) of the keys so far: when it grows, the sums S, z are
        rescaled by exp(c_old - c_new), so it cancels as the global max of the full pass does."""
        phi_q = favor_feature_map(q, self.proj, is_query=True)  # (B, H, 1, m)
        e = favor_exponent(k, self.proj)  # (B, H, 1, m)
        c = e.amax(dim=(-1, -2), keepdim=True).detach()  # (B, H, 1, 1)
        if state is not None:
            c = torch.maximum(c, state["c"])
            scale = torch.exp(state["c"] - c)  # (B, H, 1, 1) <= 1
            state = {"S": state["S"] * scale, "z": state["z"] * scale}
        phi_k = torch.exp(e - c) / math.sqrt(self.n_features)  # (B, H, 1, m)
        y, new = linear_step(phi_q, phi_k, v, state)
        return y, {**new, "c": c}
