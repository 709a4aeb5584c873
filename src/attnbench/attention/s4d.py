"""S4D, a diagonal state space model (Gu, Gupta, Goel, Re, "On the Parameterization and Initialization of Diagonal
State Space Models", NeurIPS 2022, arXiv:2206.11893) in the self-attention slot; CAB's ``s4d`` (d_state 16), its
one entry that is not attention.

Every feature u of the values (the layer input's per-head slices X_i: ``projections="q"``, as the official S4D reads
the layer input itself) is mixed along the sequence by its own SSM x' = A x + B u, y = C x + D u with a diagonal
complex A of N/2 conjugate pairs (N = ``d_state``), discretised by zero-order hold with a learned step dt. That is a
convolution with the kernel

    K[l] = 2 Re sum_n C_n (exp(dt A_n) - 1) / A_n exp(dt A_n l),   l = 0 .. L - 1     (B folded into C)

computed as a Vandermonde product (:func:`s4d_kernel`: a complex matmul per feature), and y = K * u, by FFT of size
2L, + D u, then GELU (and dropout); the layer's output projection W^O plays the official ``output_linear``. Causal:
y_i = sum_{m<=i} K[m] u_{i-m}. Non-causal with ``bidirectional``: a second kernel K' (its own C) looks ahead,
y_i += sum_{m>=1} K'[m-1] u_{i+m} (S4's and the official ``bidirectional`` option; CAB's library defaults to false, a
causal kernel also in its noncausal runs). The same recurrence, one token at a time, gives
:meth:`S4DAttention.step`.

Parameters as CAB's ``S4DKernel`` (``s4d.py``, from state-spaces/s4): log dt ~ U[log 1e-3, log 1e-1] per feature;
A = -exp(log_a_real) + i a_imag with real part -1/2 and ``init`` "inv" (S4D-Inv, CAB's ``scaling='inverse'``:
imag = N / pi (N / (2n + 1) - 1), C ~ CN(0, 1) times a random B normalised as CAB's ``random_dplr``) or "lin"
(S4D-Lin, the minimal s4d.py: imag = pi n, B = 1); D ~ N(0, 1). ``tie_a``: one A for every feature (CAB's library,
n_ssm = 1) instead of one per feature (the paper; S4's minimal s4d.py). CAB's log(-Re A + 1e-4) offset is left out.

Queries and keys take no part: they join the graph with weight 0 (the registry's contract gives every input a
gradient; Caps has no projections value without W^Q, so the layer's W^Q is learned and unused: its gradient is
zeros). Parameters are per feature, ``head_dim`` per head; values narrower than ``head_dim`` (never from the layer,
whose values are head_dim wide) use the SSMs of the first Dv features, as Linformer's shorter inputs use the first
columns of E and F; wider values raise.

Key padding: padded positions' inputs are zeroed before the convolution, so they reach no output; a row that sees
no real input (causal: none up to it; bidirectional: none at all) gives zeros. Computed in fp32 (complex
exponentials, FFT).

FLOPs: ``torch.utils.flop_counter.FlopCounterMode`` counts the Vandermonde matmul (a complex product counted as a
real one, 2 per multiply-add) and nothing of the FFTs; ``attention.flops`` counts the same as ``matmul`` and the FFTs
in ``other``.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnbench.attention.registry import AttentionBase, Caps, State, register

Init = Literal["inv", "lin"]
DT_MIN, DT_MAX = 1e-3, 1e-1  # the official range of the discretisation step


# ----------------------------------------------------------------------------- pure math
def _cexp(x: Tensor) -> Tensor:
    """exp of a complex tensor as polar(exp(Re x), Im x): the same number, several times faster than torch.exp of a
    complex tensor on CPU."""
    return torch.polar(torch.exp(x.real), x.imag)


def kernel_split(L: int) -> tuple[int, int]:
    """(c, m): positions l = j c + r, r < c, j < m, with c = ceil(sqrt(L)), m = ceil(L / c)."""
    c = max(1, math.isqrt(L - 1) + 1) if L > 1 else 1
    return c, -(-L // c)


def s4d_kernel(log_dt: Tensor, log_a_real: Tensor, a_imag: Tensor, c: Tensor, L: int) -> Tensor:
    """Convolution kernels of the discretised diagonal SSMs: log_dt (H, D), log_a_real / a_imag broadcastable to
    (H, D, N2), c complex (K, H, D, N2) (K kernels per feature) -> (K, H, D, L) real.

    The Vandermonde product sum_n C_n z_n^l (z = exp(dt A)) without its (N2, L) matrix: with l = j c + r (c ~ sqrt(L),
    :func:`kernel_split`), sum_n (C_n z_n^r) (z_n^c)^j is one (c, N2) x (N2, m) complex matmul per feature, so the
    exponentials are O(N2 sqrt(L)) per feature."""
    dt = torch.exp(log_dt)[..., None]  # (H, D, 1)
    a = torch.complex(-torch.exp(log_a_real), a_imag)  # (H|1, D|1, N2)
    dta = a * dt  # (H, D, N2)
    c = c * (torch.exp(dta) - 1.0) / a  # (K, H, D, N2): zero-order hold B_bar folded into C
    n_r, n_j = kernel_split(L)
    r = torch.arange(n_r, device=dt.device, dtype=dt.dtype)
    j = torch.arange(n_j, device=dt.device, dtype=dt.dtype) * n_r
    left = c[..., None, :] * _cexp(dta[..., None, :] * r[:, None])  # (K, H, D, c, N2): C z^r
    right = _cexp(dta[..., None] * j)  # (H, D, N2, m): z^(c j)
    k = 2 * (left @ right).real  # (K, H, D, c, m): position j c + r at [r, j]
    return k.transpose(-1, -2).flatten(-2)[..., :L]  # (K, H, D, L)


def s4d_kernel_reference(log_dt: Tensor, log_a_real: Tensor, a_imag: Tensor, c: Tensor, L: int) -> Tensor:
    """Slow reference: the impulse response of the recurrence x_t = exp(dt A) x_{t-1} + (exp(dt A) - 1) / A u_t,
    y_t = 2 Re(C x_t), run step by step on u = (1, 0, 0, ...)."""
    dt = torch.exp(log_dt)[..., None]
    a = torch.complex(-torch.exp(log_a_real), a_imag).expand(*log_dt.shape, -1)  # (H, D, N2)
    a_bar, b_bar = torch.exp(a * dt), (torch.exp(a * dt) - 1.0) / a
    x, out = b_bar.expand_as(c), []  # the impulse enters at t = 0
    for _ in range(L):
        out.append(2 * (c * x).sum(-1).real)  # (K, H, D)
        x = a_bar * x
    return torch.stack(out, dim=-1)  # (K, H, D, L)


class _CircularConv(torch.autograd.Function):
    """y = irfft(rfft(u, n) rfft(k, n), n)[..., :L]: u (B,H,D,L), k (H,D,<=n) -> (B,H,D,L), with a hand-written
    backward of real FFTs only (autograd's rfft backward runs complex FFTs of zero-padded spectra, ~2x slower):
    grad u = circular correlation of the gradient with k, grad k = sum over the batch of its correlation with u."""

    @staticmethod
    def forward(ctx, u: Tensor, k: Tensor, n: int) -> Tensor:
        u_f, k_f = torch.fft.rfft(u, n=n), torch.fft.rfft(k, n=n)  # (B, H, D, n/2 + 1), (H, D, n/2 + 1)
        ctx.save_for_backward(u_f, k_f)
        ctx.n, ctx.L, ctx.Lk = n, u.shape[-1], k.shape[-1]
        return torch.fft.irfft(u_f * k_f, n=n)[..., :ctx.L]

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None]:
        u_f, k_f = ctx.saved_tensors
        g_f = torch.fft.rfft(grad, n=ctx.n)  # (B, H, D, n/2 + 1)
        grad_u = torch.fft.irfft(g_f * k_f.conj(), n=ctx.n)[..., :ctx.L] if ctx.needs_input_grad[0] else None
        grad_k = None
        if ctx.needs_input_grad[1]:
            grad_k = torch.fft.irfft((g_f * u_f.conj()).sum(0), n=ctx.n)[..., :ctx.Lk]
        return grad_u, grad_k, None


def fft_conv(u: Tensor, kernel: Tensor, backward: Tensor | None = None) -> Tensor:
    """Convolution along the sequence by FFT of size 2L: u (B,H,L,D), kernel (H,D,L) -> (B,H,L,D),
    y_i = sum_{m<=i} kernel[m] u_{i-m} (+ sum_{m>=1} backward[m-1] u_{i+m} given ``backward`` (H,D,L))."""
    L = u.shape[2]
    # circular lags 0 .. L-1, then (bidirectional) -L .. -1; the rest of the 2L circle is 0
    k = kernel if backward is None else torch.cat([kernel, backward.flip(-1)], dim=-1)  # (H, D, L | 2L)
    y = _CircularConv.apply(u.transpose(-1, -2), k, 2 * L)  # (B, H, D, L): transforms along the last axis
    return y.transpose(-1, -2)  # (B, H, L, D)


def conv_reference(u: Tensor, kernel: Tensor, backward: Tensor | None = None) -> Tensor:
    """Slow reference of :func:`fft_conv`: the explicit (L, L) Toeplitz matrix per feature."""
    L = u.shape[2]
    lag = torch.arange(L)[:, None] - torch.arange(L)[None, :]  # (L, L): i - j
    t = torch.where(lag >= 0, kernel[..., lag.clamp(min=0)], 0.0)  # (H, D, L, L)
    if backward is not None:
        t = t + torch.where(lag < 0, backward[..., (-lag - 1).clamp(min=0)], 0.0)
    return torch.einsum("hdij,bhjd->bhid", t, u)


def s4d_mix(u: Tensor, kernels: Tensor, d: Tensor, causal: bool, key_padding_mask: Tensor | None = None) -> Tensor:
    """The SSM layer before its activation: u (B,H,L,D) with padded positions zeroed, convolved with kernels[0]
    (and, non-causal with two kernels, kernels[1] backwards), plus D u; kernels (1|2, H, D, L), d (H, D)."""
    backward = kernels[1] if (len(kernels) > 1 and not causal) else None
    if key_padding_mask is None:
        return fft_conv(u, kernels[0], backward) + u * d[:, None, :]
    real = key_padding_mask.bool()  # (B, L)
    u = u.masked_fill(~real[:, None, :, None], 0.0)
    # rows that see no real input are exactly 0 (the FFT leaves round-off there)
    dead = ~real.any(-1, keepdim=True) if backward is not None else real.cumsum(-1) == 0  # (B, 1 | L)
    return (fft_conv(u, kernels[0], backward) + u * d[:, None, :]).masked_fill(dead[:, None, :, None], 0.0)


# ----------------------------------------------------------------------------- module
@register("s4d")
class S4DAttention(AttentionBase):
    """Diagonal state space sequence mixing (S4D) of the values in place of attention; queries and keys unused."""

    # Self only: one sequence is convolved. projections="q": the values are the layer input's head slices (no W^V, W^K;
    # the W^Q the layer still learns is unused). Parameters per feature (head_dim x n_heads). fp32: complex exp, FFT.
    caps = Caps(cross_attention=False, causal_cross=False, learned_params=True, pretrained_drop_in=False,
                permutation_equivariant=False, projections="q", needs_head_dim=True, needs_n_heads=True, fp32=True,
                incremental=True)

    def __init__(self, head_dim: int, n_heads: int, d_state: int = 16, bidirectional: bool = True,
                 init: Init = "inv", tie_a: bool = False, dropout: float = 0.0) -> None:
        super().__init__()
        if head_dim < 1 or n_heads < 1:
            raise ValueError(f"s4d: head_dim={head_dim} and n_heads={n_heads} must be >= 1")
        if d_state < 2 or d_state % 2:
            raise ValueError(f"s4d: d_state={d_state} must be even and >= 2 (N/2 conjugate pairs)")
        if init not in ("inv", "lin"):
            raise ValueError(f"s4d: init={init!r}; allowed: inv, lin")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"s4d: dropout={dropout} must be in [0, 1)")
        self.head_dim, self.n_heads, self.d_state = head_dim, n_heads, d_state
        self.bidirectional, self.init, self.tie_a = bidirectional, init, tie_a
        H, D, N2 = n_heads, head_dim, d_state // 2
        n = torch.arange(N2, dtype=torch.float32)
        a_imag = N2 * 2 / math.pi * (N2 * 2 / (1 + 2 * n) - 1) if init == "inv" else math.pi * n  # (N2,)
        a_shape = (1, 1, N2) if tie_a else (H, D, N2)
        self.log_dt = nn.Parameter(torch.empty(H, D).uniform_(math.log(DT_MIN), math.log(DT_MAX)))  # (H, D)
        self.log_a_real = nn.Parameter(torch.full(a_shape, math.log(0.5)))  # Re A = -1/2
        self.a_imag = nn.Parameter(a_imag.expand(a_shape).clone())
        c = torch.randn(2 if bidirectional else 1, H, D, N2, dtype=torch.cfloat)  # (K, H, D, N2)
        if init == "inv":  # CAB's random_dplr: a random B, scaled so that the kernel of C ~ CN(0, 1) has unit norm
            b = torch.randn(N2, dtype=torch.cfloat)
            a = torch.complex(torch.full_like(n, -0.5), a_imag)  # (N2,)
            c = c * b / (2 * (b / a).abs().square().sum()).sqrt()
        self.c = nn.Parameter(torch.view_as_real(c))  # (K, H, D, N2, 2)
        self.d = nn.Parameter(torch.randn(H, D))  # skip D u
        self.drop = nn.Dropout(dropout)

    def _features(self, n: int) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """log_dt, log_a_real, a_imag, c (complex), d of the first ``n`` features of every head."""
        if n > self.head_dim:
            raise ValueError(f"s4d: values of {n} features per head; built for head_dim={self.head_dim}")
        a_real, a_imag = self.log_a_real, self.a_imag
        if not self.tie_a:
            a_real, a_imag = a_real[:, :n], a_imag[:, :n]
        return self.log_dt[:, :n], a_real, a_imag, torch.view_as_complex(self.c)[:, :, :n], self.d[:, :n]

    def kernels(self, L: int, causal: bool, n: int | None = None) -> Tensor:
        """(1|2, H, n, L) (n: head_dim): the forward kernel, and the backward one for a bidirectional non-causal
        pass, of the first n features."""
        log_dt, a_real, a_imag, c, _ = self._features(self.head_dim if n is None else n)
        c = c if (self.bidirectional and not causal) else c[:1]
        return s4d_kernel(log_dt, a_real, a_imag, c, L)

    def forward(
        self, q: Tensor, k: Tensor, v: Tensor, *, key_padding_mask: Tensor | None = None,
        causal: bool = False,
    ) -> Tensor:
        B, H, L, Dv = v.shape
        if q.shape[2] != L:
            raise ValueError(f"s4d mixes one sequence (self-attention only), got L={q.shape[2]} queries and S={L} keys")
        if self.n_heads != H:
            raise ValueError(f"s4d: built for n_heads={self.n_heads}, got H={H}")
        y = s4d_mix(v, self.kernels(L, causal, Dv), self._features(Dv)[-1], causal, key_padding_mask)  # (B, H, L, Dv)
        # q and k join with weight 0 (where() selects the 0): the contract gives every input a gradient (zeros here)
        return self.drop(F.gelu(y)) + torch.where(torch.zeros((), dtype=torch.bool, device=v.device),
                                                  q.sum() + k.sum(), 0.0)

    def step(self, q: Tensor, k: Tensor, v: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """One token of the causal recurrence: x_t = exp(dt A) x_{t-1} + (exp(dt A) - 1) / A u_t, y_t = 2 Re(C x_t)
        + D u_t (state x: (B, H, D, N2) complex, kept as its real view (..., 2)), then GELU; equals the causal pass."""
        u = v[:, :, 0]  # (B, H, Dv)
        log_dt, a_real, a_imag, c, d = self._features(u.shape[-1])
        a = torch.complex(-torch.exp(a_real), a_imag)  # (H|1, Dv|1, N2)
        dta = a * torch.exp(log_dt)[..., None]  # (H, Dv, N2)
        x = (torch.exp(dta) - 1.0) / a * u[..., None]  # (B, H, Dv, N2): B_bar u_t
        if state is not None:
            x = x + torch.exp(dta) * torch.view_as_complex(state["x"])
        y = 2 * (c[0] * x).sum(-1).real + d * u  # (B, H, Dv)
        return self.drop(F.gelu(y))[:, :, None], {"x": torch.view_as_real(x)}
