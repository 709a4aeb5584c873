"""iTransformer (Liu et al., ICLR 2024, "iTransformer: Inverted Transformers Are Effective for Time Series
Forecasting"): the Transformer applied to the inverted dimensions.

Instead of one token per time step, each variable's whole lookback window is one token (section 3.1, eq. 1):

- normalise each series of the window by its own mean and std and undo it on the forecast (the Non-stationary
  Transformer's series normalisation, the paper's ``use_norm``; the std is population-style with 1e-5 under the
  root: ``normalise_series``);
- ``Embedding``: one Linear ``seq_len -> d_model`` shared by the variables maps each series (N tokens of length L)
  to a token, then dropout. As in the official code (``embed=timeF``), each calendar feature of the window
  (``data.timeseries.time_features``) is a further token through the same Linear (``calendar_tokens``), so the
  encoder sees N + F tokens;
- ``e_layers`` encoder layers over the tokens (attention across variables, the FFN per token), in the official
  layout: post-norm, LN(x + Drop(Attn(x))) then LN(x + Drop(FFN(x))), the FFN two 1x1 convolutions (= Linear
  d_model -> d_ff -> d_model) with GELU and dropout between (``layers.seqblock.SeqEncoderLayer``, norm="post"),
  and a final LayerNorm;
- ``Projection``: one Linear ``d_model -> pred_len`` per variable token; the calendar tokens' outputs are dropped.

No position code: the tokens are a set, and the model is equivariant to permuting the variables (a test checks it).
The attention is any registry entry (``attention``: ``{"name": ..., **options}``); the official one is ``full``
with dropout on its probabilities (the entry's ``dropout``).

Official side by side: ``scripts/official/compare_itransformer_patchtst.py`` (Time-Series-Library 4e938a1,
``models/iTransformer.py``): same parameter count and forecast on copied weights.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from attnbench.layers.seqblock import SeqEncoderLayer


def normalise_series(x: Tensor, eps: float = 1e-5) -> tuple[Tensor, Tensor, Tensor]:
    """Each series of x (B, L, C) to zero mean and unit variance over time: (x_n, mean, std), (B, 1, C) each;
    std = sqrt(population variance + eps), the mean detached (the Non-stationary Transformer's, non-affine RevIN)."""
    mean = x.mean(dim=1, keepdim=True).detach()  # (B, 1, C)
    x = x - mean
    std = torch.sqrt(x.var(dim=1, keepdim=True, unbiased=False) + eps)  # (B, 1, C)
    return x / std, mean, std


def denormalise_series(y: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """The inverse of :func:`normalise_series` on a forecast y (B, T, C) with the window's (B, 1, C) statistics."""
    return y * std + mean


def post_norm_encoder(d_model: int, n_heads: int, d_ff: int, e_layers: int, attention: Mapping[str, Any],
                      dropout: float, max_len: int | None = None) -> nn.ModuleList:
    """Time-Series-Library's ``EncoderLayer`` stack: post-norm self-attention + GELU FFN, dropout on both branches
    and inside the FFN; the attention's own dropout (on its probabilities) is the entry's option. max_len: the token
    count, for entries built for a fixed length (``caps.fixed_len``)."""
    return nn.ModuleList(SeqEncoderLayer(d_model, n_heads, d_ff, attention, dropout=dropout, norm="post", mlp="gelu",
                                         max_len=max_len) for _ in range(e_layers))


class ITransformer(nn.Module):
    """iTransformer's forecaster (module docstring).

    ``forward(x, x_mark=None, y_mark=None)``: x (B, seq_len, C) -> (B, pred_len, C), any number C of variables;
    x_mark (B, seq_len, n_time_features), the window's calendar features, become tokens when ``calendar_tokens``
    (then required). ``y_mark`` (the decoder window's calendar, ``label_len + pred_len`` steps, as every calendar
    forecaster is called) is not read; ``label_len`` is kept for that interface only.
    """

    def __init__(
        self, seq_len: int, label_len: int, pred_len: int, n_time_features: int, attention: Mapping[str, Any],
        d_model: int = 512, n_heads: int = 8, e_layers: int = 2, d_ff: int = 2048, dropout: float = 0.1,
        calendar_tokens: bool = True, revin: bool = True,
    ) -> None:
        super().__init__()
        if e_layers < 1:
            raise ValueError(f"e_layers={e_layers} must be >= 1")
        if calendar_tokens and n_time_features < 1:
            raise ValueError(f"calendar_tokens=True needs calendar features, got n_time_features={n_time_features}")
        self.seq_len, self.label_len, self.pred_len = seq_len, label_len, pred_len
        self.n_time_features, self.calendar_tokens, self.revin = n_time_features, calendar_tokens, revin
        self.embed = nn.Linear(seq_len, d_model)  # a whole series -> one token (shared by variables and marks)
        self.embed_drop = nn.Dropout(dropout)
        self.encoder = post_norm_encoder(d_model, n_heads, d_ff, e_layers, attention, dropout)
        self.norm = nn.LayerNorm(d_model)
        self.projection = nn.Linear(d_model, pred_len)  # a variable token -> its forecast

    def forward(self, x: Tensor, x_mark: Tensor | None = None, y_mark: Tensor | None = None) -> Tensor:
        B, L, C = x.shape
        if self.seq_len != L:
            raise ValueError(f"input length {L} != seq_len={self.seq_len}")
        if self.revin:
            x, mean, std = normalise_series(x)  # (B, L, C), (B, 1, C) twice
        tokens = x.transpose(1, 2)  # (B, C, L): one row per variable
        if self.calendar_tokens:
            if x_mark is None or x_mark.shape != (B, L, self.n_time_features):
                got = None if x_mark is None else tuple(x_mark.shape)
                raise ValueError(f"x_mark {got}: expected ({B}, {L}, n_time_features={self.n_time_features}) "
                                 "(calendar_tokens=True)")
            tokens = torch.cat([tokens, x_mark.transpose(1, 2)], dim=1)  # (B, C + F, L)
        h = self.embed_drop(self.embed(tokens))  # (B, C + F, E)
        for layer in self.encoder:
            h = layer(h)  # (B, C + F, E)
        h = self.norm(h)
        y = self.projection(h[:, :C]).transpose(1, 2)  # variable tokens only: (B, C, pred_len) -> (B, pred_len, C)
        return denormalise_series(y, mean, std) if self.revin else y
