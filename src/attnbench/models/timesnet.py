"""TimesNet (Wu et al., ICLR 2023, "TimesNet: Temporal 2D-Variation Modeling for General Time Series Analysis"),
its long-term forecasting variant.

A series of length T is a mix of periods. Each ``TimesBlock`` finds the k strongest (section 3.1, eq. 1-2):

- ``A = Avg(Amp(FFT(X)))``: the amplitude of every frequency of the real FFT along time, averaged over the
  channels (and, as the official code does, over the batch: one set of periods per batch), DC set to 0;
  ``f_1..f_k = argTopk(A)``, periods ``p_i = T // f_i`` (``fft_periods``);
- fold the 1-D series into 2-D for each period: (T, E) -> (ceil(T / p_i), p_i, E), zero-padded at the end, rows
  = cycles, columns = the phase within a cycle (``fold``; ``unfold`` reverses it and drops the padding);
- the same 2-D "Inception" block on each fold (eq. 4: Inception(d_model -> d_ff) -> GELU -> Inception(d_ff ->
  d_model); an Inception block averages ``num_kernels`` convolutions of kernels 1, 3, 5, ... 2n-1, "same" padding);
- aggregate the k results weighted by the softmax of their amplitudes ``A_{f_i}`` per sample (eq. 5), and add the
  block's input (residual). Blocks share one LayerNorm, applied after each.

The forecaster (``TimesNet``), as in the official forecasting task:

- normalise each series of the input window by its own mean and std (Non-stationary Transformer; the std is
  population-style with 1e-5 under the root), and undo it on the output;
- embed: token (Conv1d k3, circular padding, no bias) + fixed sinusoidal position + calendar features (Linear, no
  bias; TSLib ``embed=timeF``: the marks of ``data.timeseries.time_features``), then dropout;
- extend the sequence along time with one Linear ``seq_len -> seq_len + pred_len`` (the "predict" layer);
- ``e_layers`` TimesBlocks on the T = seq_len + pred_len steps, each followed by the shared LayerNorm;
- project each step to the variables (Linear d_model -> enc_in) and keep the last ``pred_len`` steps.

Fast path: an Inception block's mean of centred, zero-padded convolutions equals one convolution with the mean
of the kernels zero-padded to the largest size (``merged_kernel``); ``InceptionBlock`` runs that one convolution
and keeps the ``num_kernels`` separate weights (the official parameters), ``inception_reference`` the plain mean
of the separate convolutions (the test oracle).

Official side by side: ``scripts/official/compare_timesnet.py`` (Time-Series-Library, ``models/TimesNet.py``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnbench.models.informer import sinusoid  # the fixed position code (TSLib's PositionalEmbedding)
from attnbench.models.itransformer import denormalise_series, normalise_series  # the series normalisation


# ----------------------------------------------------------------------------- pure functions
def fft_periods(x: Tensor, k: int) -> tuple[list[int], Tensor]:
    """The k dominant periods of ``x`` (B, T, E) and their per-sample weights (B, k).

    Amplitudes |rfft| along time (B, T//2 + 1, E); the selection score is their mean over the batch, then the
    channels, with frequency 0 (the mean level) set to 0; the top-k frequencies f_i give periods T // f_i. The
    weights are each sample's channel-mean amplitude at f_i (not detached: they are trained through)."""
    T = x.shape[1]
    amp = torch.fft.rfft(x, dim=1).abs()  # (B, T//2 + 1, E)
    score = amp.detach().mean(0).mean(-1)  # (T//2 + 1,): batch, then channel mean (the official order)
    score[0] = 0  # no DC
    top = torch.topk(score, k).indices.tolist()  # k frequencies, strongest first
    if 0 in top:
        raise ValueError(f"fft_periods: fewer than k={k} of the {T // 2} frequencies of {T} steps have a non-zero "
                         "amplitude (frequency 0 would give no period)")
    return [T // f for f in top], amp.mean(-1)[:, top]  # periods, (B, k)


def fold(x: Tensor, period: int) -> Tensor:
    """(B, T, E) -> (B, E, ceil(T / period), period): the series cut into cycles of ``period`` steps (rows), zeros
    appended to complete the last one."""
    B, T, E = x.shape
    rows = -(-T // period)
    x = F.pad(x, (0, 0, 0, rows * period - T))  # (B, rows * period, E), zeros at the end of time
    return x.reshape(B, rows, period, E).permute(0, 3, 1, 2)  # (B, E, rows, period)


def unfold(y: Tensor, length: int) -> Tensor:
    """(B, E, rows, period) -> (B, length, E): the cycles laid end to end again, padding dropped."""
    B, E = y.shape[:2]
    return y.permute(0, 2, 3, 1).reshape(B, -1, E)[:, :length]  # (B, rows * period, E) -> (B, length, E)


def merged_kernel(weights: list[Tensor], biases: list[Tensor]) -> tuple[Tensor, Tensor]:
    """The mean of centred odd kernels (out, in, 2i+1, 2i+1) as one kernel of the largest size (zero-padded
    around the smaller ones) and the mean bias: conv(x, mean) = mean of the "same"-padded convolutions."""
    size = max(w.shape[-1] for w in weights)
    padded = [F.pad(w, [(size - w.shape[-1]) // 2] * 4) for w in weights]  # each (out, in, size, size)
    return torch.stack(padded).mean(0), torch.stack(biases).mean(0)


def inception_reference(x: Tensor, convs: nn.ModuleList) -> Tensor:
    """The Inception block as written in the paper: the mean of each convolution's output (the slow reference
    of ``InceptionBlock.forward``)."""
    return torch.stack([conv(x) for conv in convs], dim=-1).mean(-1)


# ----------------------------------------------------------------------------- modules
class InceptionBlock(nn.Module):
    """``num_kernels`` 2-D convolutions c_in -> c_out with kernels 1, 3, ..., 2n-1 and "same" zero padding,
    averaged (Kaiming-normal fan-out init, zero biases). (B, c_in, H, W) -> (B, c_out, H, W), run as one
    convolution with the merged kernel (``merged_kernel``)."""

    def __init__(self, c_in: int, c_out: int, num_kernels: int) -> None:
        super().__init__()
        self.kernels = nn.ModuleList(nn.Conv2d(c_in, c_out, 2 * i + 1, padding=i) for i in range(num_kernels))
        for conv in self.kernels:
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(conv.bias)
        self.pad = num_kernels - 1

    def forward(self, x: Tensor) -> Tensor:
        w, b = merged_kernel([c.weight for c in self.kernels], [c.bias for c in self.kernels])
        return F.conv2d(x, w, b, padding=self.pad)


class TimesBlock(nn.Module):
    """Top-k periods, a 2-D Inception pair per fold, amplitude-softmax aggregation, residual (module docstring).
    (B, T, E) -> (B, T, E)."""

    def __init__(self, d_model: int, d_ff: int, top_k: int, num_kernels: int) -> None:
        super().__init__()
        self.top_k = top_k
        self.conv = nn.Sequential(InceptionBlock(d_model, d_ff, num_kernels), nn.GELU(),
                                  InceptionBlock(d_ff, d_model, num_kernels))

    def forward(self, x: Tensor) -> Tensor:
        T = x.shape[1]
        periods, amp = fft_periods(x, self.top_k)  # k ints, (B, k)
        res = torch.stack([unfold(self.conv(fold(x, p)), T) for p in periods], dim=-1)  # (B, T, E, k)
        w = F.softmax(amp, dim=1)[:, None, None, :]  # (B, 1, 1, k)
        return (res * w).sum(-1) + x


class DataEmbedding(nn.Module):
    """Token (Conv1d k3, circular, no bias) + position (fixed sinusoid) + calendar (Linear, no bias), then
    dropout: x (B, L, C), mark (B, L, F) -> (B, L, E)."""

    def __init__(self, c_in: int, d_model: int, n_time_features: int, max_len: int, dropout: float) -> None:
        super().__init__()
        self.token = nn.Conv1d(c_in, d_model, kernel_size=3, padding=1, padding_mode="circular", bias=False)
        nn.init.kaiming_normal_(self.token.weight, mode="fan_in", nonlinearity="leaky_relu")
        self.time = nn.Linear(n_time_features, d_model, bias=False)
        self.register_buffer("pe", sinusoid(max_len, d_model), persistent=False)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, mark: Tensor) -> Tensor:
        L = x.shape[1]
        h = self.token(x.transpose(1, 2)).transpose(1, 2)  # (B, L, E)
        return self.drop(h + self.time(mark) + self.pe[:L])


class TimesNet(nn.Module):
    """TimesNet's forecaster (module docstring).

    ``forward(x, x_mark, y_mark=None)``: x (B, seq_len, enc_in), x_mark (B, seq_len, n_time_features) ->
    (B, pred_len, enc_in). ``y_mark`` (the decoder window's calendar, ``label_len + pred_len`` steps) is accepted
    as every calendar forecaster is called and not read; ``label_len`` is kept for that interface only.
    ``top_k`` periods per block (at most (seq_len + pred_len) // 2), ``num_kernels`` kernels per Inception block.
    """

    def __init__(
        self, seq_len: int, label_len: int, pred_len: int, enc_in: int, n_time_features: int, d_model: int = 32,
        d_ff: int = 32, e_layers: int = 2, top_k: int = 5, num_kernels: int = 6, dropout: float = 0.1,
    ) -> None:
        super().__init__()
        T = seq_len + pred_len
        if not 1 <= top_k <= T // 2:
            raise ValueError(f"top_k={top_k} must lie in [1, (seq_len + pred_len) // 2 = {T // 2}]: the periods "
                             f"come from the non-zero frequencies of {T} steps")
        if min(e_layers, num_kernels) < 1:
            raise ValueError(f"e_layers={e_layers}, num_kernels={num_kernels}: both must be >= 1")
        self.seq_len, self.label_len, self.pred_len = seq_len, label_len, pred_len
        self.enc_in, self.n_time_features = enc_in, n_time_features
        self.embedding = DataEmbedding(enc_in, d_model, n_time_features, seq_len, dropout)
        self.predict = nn.Linear(seq_len, T)  # along time: seq_len steps -> seq_len + pred_len
        self.blocks = nn.ModuleList(TimesBlock(d_model, d_ff, top_k, num_kernels) for _ in range(e_layers))
        self.norm = nn.LayerNorm(d_model)  # one LayerNorm after every block (shared, as the official code)
        self.projection = nn.Linear(d_model, enc_in)

    def forward(self, x: Tensor, x_mark: Tensor, y_mark: Tensor | None = None) -> Tensor:
        B, L, C = x.shape
        if (self.seq_len, self.enc_in) != (L, C):
            raise ValueError(f"input {tuple(x.shape)}: expected (B, seq_len={self.seq_len}, enc_in={self.enc_in})")
        if x_mark.shape != (B, L, self.n_time_features):
            raise ValueError(f"x_mark {tuple(x_mark.shape)}: expected ({B}, {L}, n_time_features="
                             f"{self.n_time_features})")
        x, mean, std = normalise_series(x)  # (B, L, C), (B, 1, C) twice
        h = self.embedding(x, x_mark)  # (B, L, E)
        h = self.predict(h.transpose(1, 2)).transpose(1, 2)  # (B, T, E), T = seq_len + pred_len
        for block in self.blocks:
            h = self.norm(block(h))  # (B, T, E)
        out = self.projection(h[:, -self.pred_len:])  # (B, pred_len, C)
        return denormalise_series(out, mean, std)
