"""PatchTST (Nie et al., ICLR 2023, "A Time Series is Worth 64 Words: Long-term Forecasting with Transformers"),
in Time-Series-Library's layout.

Channel independence: every variable is its own sequence through the same weights (section 3.1):

- normalise each series of the window by its own mean and std and undo it on the forecast (RevIN without the
  affine part, as the official scripts run it: ``itransformer.normalise_series``);
- patching (``patches``): pad the end of each series with ``stride`` copies of its last value, then cut windows of
  ``patch_len`` every ``stride`` steps: N = (seq_len - patch_len) // stride + 2 patches;
- embed each patch with a Linear ``patch_len -> d_model`` (no bias), add the fixed sinusoidal position code of its
  index, dropout;
- ``e_layers`` encoder layers over the N patches of a series, in Time-Series-Library's layout: post-norm
  LN(x + Drop(Attn(x))) then LN(x + Drop(FFN(x))), GELU FFN (two 1x1 convolutions = Linear d_model -> d_ff ->
  d_model) (``itransformer.post_norm_encoder``), then one BatchNorm over d_model (TSLib's encoder norm; the paper's
  code puts a BatchNorm in every layer instead of the LayerNorms);
- flatten head: the N tokens of a series concatenated d_model-major (feature d of patch p at d * N + p, the
  official ``Flatten`` of a (d_model, N) array) -> Linear -> pred_len, then dropout (after the Linear, as TSLib).

The attention is any registry entry (``attention``); the official one is ``full`` with dropout on its
probabilities (the entry's ``dropout``).

Official side by side: ``scripts/official/compare_itransformer_patchtst.py`` (Time-Series-Library 4e938a1,
``models/PatchTST.py``): same parameter count and forecast on copied weights.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from attnbench.models.informer import sinusoid  # the fixed position code (TSLib's PositionalEmbedding)
from attnbench.models.itransformer import denormalise_series, normalise_series, post_norm_encoder


def n_patches(seq_len: int, patch_len: int, stride: int) -> int:
    """Patches of a series of seq_len steps padded by ``stride`` at the end: (seq_len - patch_len) // stride + 2."""
    return (seq_len + stride - patch_len) // stride + 1


def patches(x: Tensor, patch_len: int, stride: int) -> Tensor:
    """x (..., L) -> (..., N, patch_len): the series padded at the end with ``stride`` copies of its last value,
    then windows of ``patch_len`` starting every ``stride`` steps (N = ``n_patches(L, patch_len, stride)``)."""
    lead = x.shape[:-1]
    padded = F.pad(x.reshape(-1, 1, x.shape[-1]), (0, stride), mode="replicate")  # (prod(...), 1, L + stride)
    return padded.reshape(*lead, -1).unfold(-1, patch_len, stride)  # (..., N, P)


class PatchTST(nn.Module):
    """PatchTST's forecaster (module docstring). ``forward(x)``: x (B, seq_len, C) -> (B, pred_len, C), any number
    C of variables (each one a sequence of patch tokens)."""

    def __init__(
        self, seq_len: int, pred_len: int, attention: Mapping[str, Any], patch_len: int = 16, stride: int = 8,
        d_model: int = 512, n_heads: int = 8, e_layers: int = 2, d_ff: int = 2048, dropout: float = 0.1,
        revin: bool = True,
    ) -> None:
        super().__init__()
        if not 1 <= patch_len <= seq_len or stride < 1:
            raise ValueError(f"patch_len={patch_len} must lie in [1, seq_len={seq_len}] and stride={stride} be >= 1")
        if e_layers < 1:
            raise ValueError(f"e_layers={e_layers} must be >= 1")
        self.seq_len, self.pred_len, self.revin = seq_len, pred_len, revin
        self.patch_len, self.stride = patch_len, stride
        self.n_patches = n = n_patches(seq_len, patch_len, stride)
        self.embed = nn.Linear(patch_len, d_model, bias=False)
        self.register_buffer("pe", sinusoid(n, d_model), persistent=False)  # (N, E)
        self.embed_drop = nn.Dropout(dropout)
        self.encoder = post_norm_encoder(d_model, n_heads, d_ff, e_layers, attention, dropout, max_len=n)
        self.norm = nn.BatchNorm1d(d_model)  # over (B * C, E, N): statistics per feature across series and patches
        self.head = nn.Linear(d_model * n, pred_len)
        self.head_drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        B, L, C = x.shape
        if self.seq_len != L:
            raise ValueError(f"input length {L} != seq_len={self.seq_len}")
        if self.revin:
            x, mean, std = normalise_series(x)  # (B, L, C), (B, 1, C) twice
        p = patches(x.transpose(1, 2), self.patch_len, self.stride)  # (B, C, N, P)
        h = self.embed_drop(self.embed(p.flatten(0, 1)) + self.pe)  # (B * C, N, E): one sequence per variable
        for layer in self.encoder:
            h = layer(h)  # (B * C, N, E)
        h = self.norm(h.transpose(1, 2))  # (B * C, E, N)
        y = self.head_drop(self.head(h.flatten(1)))  # d_model-major flatten (B * C, E * N) -> (B * C, pred_len)
        y = y.unflatten(0, (B, C)).transpose(1, 2)  # (B, pred_len, C)
        return denormalise_series(y, mean, std) if self.revin else y
