"""Informer's encoder-decoder forecaster (Zhou et al., AAAI 2021) with any registry attention in each position.

The layout of the official code (zhouhaoyi/Informer2020, ``models/``), written anew:

- ``DataEmbedding``: value embedding (Conv1d, kernel 3, circular padding, Kaiming init) + fixed sinusoidal
  position + time features (Linear on the calendar features ``data.timeseries.time_features``, timeenc=1), dropout.
- Encoder: ``e_layers`` post-norm layers (self-attention, then the FFN of two 1x1 convolutions = two Linear layers,
  GELU), with ``distil``: a distilling layer (Conv1d k3 circular -> BatchNorm -> ELU -> MaxPool(3, 2, 1), which
  halves the length) after every layer but the last; a final LayerNorm.
- Decoder: input = the last ``label_len`` steps of the encoder input (the start tokens) followed by ``pred_len``
  zeros, with the calendar features of that whole window; ``d_layers`` post-norm layers (causal self-attention,
  cross-attention to the encoder output, FFN), a final LayerNorm, Linear to ``c_out``; the last ``pred_len`` steps.

The three attentions (CAB's positions): ``self_attention`` the encoder's (noncausal self, NS),
``decoder_self_attention`` the decoder's (causal self; CAB's LSTF keeps it), ``cross_attention`` (noncausal cross,
NC). ``mix=True`` reproduces the official default for the decoder self-attention (``AttentionLayer(mix=True)``):
its heads' output (B, H, T, D) is read as (B, T, H*D) without moving the head axis (``out.transpose(2, 1).view(B,
L, -1)`` of (B, T, H, D)), which mixes steps across heads, so later decoder steps reach earlier outputs; ``mix=False``
concatenates the heads per step (causal). Informer's ProbSparse attention (the official ``attn='prob'``) is the
registry's ``probsparse`` (``attention/probsparse.py``), for the encoder's self-attention (and the cross-attention);
the causal decoder self-attention refuses it, since its active queries are ranked over the whole window
(Informer2020's masked variant is ``probsparse_attention(causal=True)``, compared in
``scripts/official/compare_probsparse.py``). Difference from the official code: the dropout on the attention
probabilities is the entry's own option (``dropout`` of ``full``), not ``dropout``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from attnbench.attention.registry import get, require
from attnbench.layers.seqblock import SeqDecoderLayer, SeqEncoderLayer


def sinusoid(n: int, d_model: int) -> Tensor:
    """The fixed positional code of the Transformer: (n, d_model), sin on even, cos on odd channels."""
    pos = torch.arange(n, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * -(math.log(10000.0) / d_model))
    pe = torch.zeros(n, d_model)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq)[:, : d_model // 2]
    return pe


class DataEmbedding(nn.Module):
    """Value (Conv1d k3, circular) + position (fixed) + time features (Linear), then dropout.
    x (B, L, C), mark (B, L, F) -> (B, L, E)."""

    def __init__(self, c_in: int, d_model: int, n_time_features: int, max_len: int, dropout: float) -> None:
        super().__init__()
        self.value = nn.Conv1d(c_in, d_model, kernel_size=3, padding=1, padding_mode="circular")
        nn.init.kaiming_normal_(self.value.weight, mode="fan_in", nonlinearity="leaky_relu")
        self.time = nn.Linear(n_time_features, d_model)
        self.register_buffer("pe", sinusoid(max_len, d_model), persistent=False)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, mark: Tensor) -> Tensor:
        L = x.shape[1]
        h = self.value(x.transpose(1, 2)).transpose(1, 2)  # (B, L, E)
        return self.drop(h + self.pe[:L] + self.time(mark))


class DistilLayer(nn.Module):
    """Informer's self-attention distilling: Conv1d(k3, circular) -> BatchNorm -> ELU -> MaxPool(3, stride 2, pad 1).
    (B, L, E) -> (B, ceil(L/2), E)."""

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(d_model, d_model, kernel_size=3, padding=1, padding_mode="circular")
        self.norm = nn.BatchNorm1d(d_model)
        self.act = nn.ELU()
        self.pool = nn.MaxPool1d(kernel_size=3, stride=2, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(self.act(self.norm(self.conv(x.transpose(1, 2))))).transpose(1, 2)


def _mix_heads(n_heads: int):
    """A pre-hook of an output projection: its input (B, T, H*D), heads concatenated per step, becomes the (B, H, T, D)
    heads' output read as (B, T, H*D) (Informer2020's ``mix=True``)."""

    def hook(module: nn.Module, args: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        (y,) = args
        B, T, E = y.shape
        return (y.view(B, T, n_heads, E // n_heads).transpose(1, 2).reshape(B, T, E),)

    return hook


class InformerForecaster(nn.Module):
    """Encoder-decoder forecaster in Informer's layout (module docstring).

    ``forward(x, x_mark, y_mark)``: x (B, seq_len, enc_in), x_mark (B, seq_len, F), y_mark
    (B, label_len + pred_len, F) the calendar features of the decoder window -> (B, pred_len, c_out).
    ``enc_in`` variables in (and into the decoder); ``c_out`` out (null: enc_in).
    """

    def __init__(
        self, seq_len: int, label_len: int, pred_len: int, enc_in: int, n_time_features: int,
        self_attention: Mapping[str, Any], cross_attention: Mapping[str, Any],
        decoder_self_attention: Mapping[str, Any], c_out: int | None = None, d_model: int = 512, n_heads: int = 8,
        e_layers: int = 2, d_layers: int = 1, d_ff: int = 2048, dropout: float = 0.05, distil: bool = True,
        mix: bool = False,
    ) -> None:
        super().__init__()
        if not 0 <= label_len <= seq_len:
            raise ValueError(f"label_len={label_len} must lie in [0, seq_len={seq_len}]")
        if e_layers < 1 or d_layers < 1:
            raise ValueError(f"e_layers={e_layers}, d_layers={d_layers}: both must be >= 1")
        require(get(cross_attention["name"]), cross_attention=True)  # CapabilityError naming the entries that can
        require(get(decoder_self_attention["name"]), causal=True)
        self.seq_len, self.label_len, self.pred_len = seq_len, label_len, pred_len
        self.enc_in, self.n_time_features = enc_in, n_time_features
        c_out = enc_in if c_out is None else c_out
        max_len = max(seq_len, label_len + pred_len)
        self.enc_embedding = DataEmbedding(enc_in, d_model, n_time_features, max_len, dropout)
        self.dec_embedding = DataEmbedding(enc_in, d_model, n_time_features, max_len, dropout)
        post = dict(dropout=dropout, norm="post", mlp="gelu")
        self.encoder = nn.ModuleList(
            SeqEncoderLayer(d_model, n_heads, d_ff, self_attention, **post) for _ in range(e_layers))
        self.distil = nn.ModuleList(DistilLayer(d_model) for _ in range(e_layers - 1)) if distil else None
        self.enc_norm = nn.LayerNorm(d_model)
        self.decoder = nn.ModuleList(
            SeqDecoderLayer(d_model, n_heads, d_ff, decoder_self_attention, cross_attention, **post)
            for _ in range(d_layers))
        self.dec_norm = nn.LayerNorm(d_model)
        self.projection = nn.Linear(d_model, c_out)
        self.mix = mix
        if mix:  # the official mix=True: reorder the decoder self-attention's heads before its output projection
            for layer in self.decoder:
                layer.self_attn.o_proj.register_forward_pre_hook(_mix_heads(n_heads))

    def decoder_input(self, x: Tensor) -> Tensor:
        """The start tokens x[:, -label_len:] followed by pred_len zeros: (B, label_len + pred_len, C)."""
        start = x[:, x.shape[1] - self.label_len:]
        return torch.cat([start, x.new_zeros(x.shape[0], self.pred_len, x.shape[2])], dim=1)

    def encode(self, x: Tensor, x_mark: Tensor) -> Tensor:
        """(B, seq_len, C), (B, seq_len, F) -> memory (B, S, E); with distil S = seq_len halved (rounded up)
        e_layers - 1 times."""
        h = self.enc_embedding(x, x_mark)
        for i, layer in enumerate(self.encoder):
            h = layer(h)
            if self.distil is not None and i < len(self.distil):
                h = self.distil[i](h)
        return self.enc_norm(h)

    def forward(self, x: Tensor, x_mark: Tensor, y_mark: Tensor) -> Tensor:
        B, L, C = x.shape
        T = self.label_len + self.pred_len
        if (self.seq_len, self.enc_in) != (L, C):
            raise ValueError(f"input {tuple(x.shape)}: expected (B, seq_len={self.seq_len}, enc_in={self.enc_in})")
        if x_mark.shape != (B, L, self.n_time_features) or y_mark.shape != (B, T, self.n_time_features):
            raise ValueError(f"x_mark {tuple(x_mark.shape)} / y_mark {tuple(y_mark.shape)}: expected "
                             f"({B}, {L}, {self.n_time_features}) / ({B}, label_len+pred_len={T}, "
                             f"{self.n_time_features})")
        memory = self.encode(x, x_mark)  # (B, S, E)
        h = self.decode(self.dec_embedding(self.decoder_input(x), y_mark), memory)  # (B, T, E)
        return self.projection(h)[:, -self.pred_len:]  # (B, pred_len, c_out)

    def decode(self, h: Tensor, memory: Tensor) -> Tensor:
        """Decoder layers (causal self-attention, cross-attention to memory (B, S, E)) and the final LayerNorm:
        (B, T, E) -> (B, T, E); step t depends on steps <= t of h only."""
        for layer in self.decoder:
            h = layer(h, memory, causal=True)
        return self.dec_norm(h)
