"""Linear forecasters: DLinear and RLinear, one linear map over time per series component.

DLinear (Zeng et al., "Are Transformers Effective for Time Series Forecasting?", AAAI 2023): the input is split by
a moving average into trend ``T = MA_k(x)`` and seasonal remainder ``S = x - T`` (Autoformer's decomposition, the
series padded at both ends with its first / last value), and the forecast is
``W_s S + b_s + W_t T + b_t``, each a linear map seq_len -> pred_len applied to every variable.

RLinear (Li et al., "Revisiting Long-term Time Series Forecasting: An Investigation on Linear Mapping",
arXiv:2305.10721, 2023): RevIN (Kim et al., ICLR 2022) around one linear map over time,
``denorm(W norm(x) + b)``, with ``norm(x) = gamma (x - mu) / sigma + beta`` per instance and variable (learned
gamma, beta per variable).

``individual=True`` gives each variable its own map (weights ``(C, pred_len, seq_len)``); ``False`` shares one.
Shapes: B batch, L = seq_len, P = pred_len, C variables.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# ---------------------------------------------------------------------------------------------------------------
# pure math


def moving_average(x: Tensor, kernel_size: int) -> Tensor:
    """Centred moving average along time, x (B, L, C) -> (B, L, C): each end padded by repeating its first / last
    value (k - 1) / 2 times, then a mean over windows of ``kernel_size`` (odd) steps (Autoformer's ``moving_avg``)."""
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"moving average: kernel_size={kernel_size} must be odd and >= 1 (a centred window)")
    half = (kernel_size - 1) // 2
    padded = torch.cat([x[:, :1].expand(-1, half, -1), x, x[:, -1:].expand(-1, half, -1)], dim=1)  # (B, L+k-1, C)
    return F.avg_pool1d(padded.transpose(1, 2), kernel_size, stride=1).transpose(1, 2)  # (B, L, C)


def series_decomposition(x: Tensor, kernel_size: int) -> tuple[Tensor, Tensor]:
    """(seasonal, trend) of x (B, L, C): trend the moving average, seasonal the remainder; both (B, L, C)."""
    trend = moving_average(x, kernel_size)
    return x - trend, trend


def time_linear(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """A linear map over time per variable, x (B, L, C) -> (B, P, C). ``weight`` (P, L) and ``bias`` (P,): one map
    shared by the variables; (C, P, L) and (C, P): one map per variable."""
    if weight.dim() == 2:
        return F.linear(x.transpose(1, 2), weight, bias).transpose(1, 2)  # (B, C, L) -> (B, C, P) -> (B, P, C)
    return torch.einsum("blc,cpl->bpc", x, weight) + bias.T  # (B, P, C) + (P, C)


# ---------------------------------------------------------------------------------------------------------------
# modules


class TimeLinear(nn.Module):
    """``time_linear`` with its parameters: seq_len -> pred_len, one map shared by the variables or one per variable
    (``individual``; ``n_vars`` of them). Initialised as ``nn.Linear(seq_len, pred_len)`` (uniform in
    +-1/sqrt(seq_len)), each variable's map drawn on its own."""

    def __init__(self, seq_len: int, pred_len: int, n_vars: int, individual: bool) -> None:
        super().__init__()
        lead = (n_vars,) if individual else ()
        self.weight = nn.Parameter(torch.empty(*lead, pred_len, seq_len))  # (P, L) or (C, P, L)
        self.bias = nn.Parameter(torch.empty(*lead, pred_len))  # (P,) or (C, P)
        bound = 1 / math.sqrt(seq_len)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        return time_linear(x, self.weight, self.bias)  # (B, L, C) -> (B, P, C)


class RevIN(nn.Module):
    """Reversible instance normalisation (Kim et al., ICLR 2022) per variable over time: ``normalize`` keeps the
    instance's mean and std (biased variance + eps, not back-propagated through) for ``denormalize``; ``affine``:
    learned gamma, beta per variable (ones, zeros at first). Denormalising divides by gamma + eps^2, as RLinear's
    code."""

    def __init__(self, n_vars: int, affine: bool = True, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.affine_weight = nn.Parameter(torch.ones(n_vars)) if affine else None  # gamma (C,)
        self.affine_bias = nn.Parameter(torch.zeros(n_vars)) if affine else None  # beta (C,)

    def normalize(self, x: Tensor) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """x (B, L, C) -> (normalised (B, L, C), (mean, std) each (B, 1, C))."""
        mu = x.mean(dim=1, keepdim=True).detach()
        sd = torch.sqrt(x.var(dim=1, keepdim=True, unbiased=False) + self.eps).detach()
        y = (x - mu) / sd
        if self.affine_weight is not None:
            y = y * self.affine_weight + self.affine_bias
        return y, (mu, sd)

    def denormalize(self, y: Tensor, stats: tuple[Tensor, Tensor]) -> Tensor:
        """y (B, P, C) back to the instance's scale with the ``stats`` of ``normalize``."""
        mu, sd = stats
        if self.affine_weight is not None:
            y = (y - self.affine_bias) / (self.affine_weight + self.eps**2)
        return y * sd + mu


class DLinear(nn.Module):
    """DLinear: moving-average decomposition, a linear map over time on the seasonal part and one on the trend,
    summed. x (B, seq_len, enc_in) -> (B, pred_len, enc_in).

    moving_avg: the trend's window (odd; the paper's and Time-Series-Library's 25). individual: a map per variable
    (``enc_in`` of them) instead of one shared. Both maps' weights start at 1/seq_len (the mean of the window, as
    Time-Series-Library's DLinear), their biases as ``nn.Linear``'s."""

    def __init__(self, seq_len: int, pred_len: int, enc_in: int, moving_avg: int = 25,
                 individual: bool = False) -> None:
        super().__init__()
        if min(seq_len, pred_len, enc_in) < 1:
            raise ValueError(f"DLinear: seq_len={seq_len}, pred_len={pred_len}, enc_in={enc_in} must be >= 1")
        if moving_avg < 1 or moving_avg % 2 == 0:
            raise ValueError(f"DLinear: moving_avg={moving_avg} must be odd and >= 1 (a centred window)")
        self.seq_len, self.pred_len, self.enc_in, self.moving_avg = seq_len, pred_len, enc_in, moving_avg
        self.seasonal = TimeLinear(seq_len, pred_len, enc_in, individual)
        self.trend = TimeLinear(seq_len, pred_len, enc_in, individual)
        with torch.no_grad():
            self.seasonal.weight.fill_(1 / seq_len)
            self.trend.weight.fill_(1 / seq_len)

    def forward(self, x: Tensor) -> Tensor:
        B, L, C = x.shape
        if self.seq_len != L or self.enc_in != C:
            raise ValueError(f"DLinear: input (B, {L}, {C}) != (B, seq_len={self.seq_len}, enc_in={self.enc_in})")
        seasonal, trend = series_decomposition(x, self.moving_avg)  # (B, L, C) each
        return self.seasonal(seasonal) + self.trend(trend)  # (B, P, C)


class RLinear(nn.Module):
    """RLinear: RevIN, dropout, one linear map over time, RevIN inverted. x (B, seq_len, enc_in) ->
    (B, pred_len, enc_in).

    dropout: on the normalised input (RLinear's code, ``--drop`` 0.1). revin: false leaves the input as it is (the
    code's ``Linear`` without ``--rev``). individual: a map per variable instead of one shared."""

    def __init__(self, seq_len: int, pred_len: int, enc_in: int, individual: bool = False, dropout: float = 0.1,
                 revin: bool = True) -> None:
        super().__init__()
        if min(seq_len, pred_len, enc_in) < 1:
            raise ValueError(f"RLinear: seq_len={seq_len}, pred_len={pred_len}, enc_in={enc_in} must be >= 1")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"RLinear: dropout={dropout} must lie in [0, 1)")
        self.seq_len, self.pred_len, self.enc_in = seq_len, pred_len, enc_in
        self.revin = RevIN(enc_in) if revin else None
        self.drop = nn.Dropout(dropout)
        self.linear = TimeLinear(seq_len, pred_len, enc_in, individual)

    def forward(self, x: Tensor) -> Tensor:
        B, L, C = x.shape
        if self.seq_len != L or self.enc_in != C:
            raise ValueError(f"RLinear: input (B, {L}, {C}) != (B, seq_len={self.seq_len}, enc_in={self.enc_in})")
        if self.revin is None:
            return self.linear(self.drop(x))  # (B, P, C)
        z, stats = self.revin.normalize(x)  # (B, L, C); mean, std (B, 1, C)
        return self.revin.denormalize(self.linear(self.drop(z)), stats)  # (B, P, C)
