"""HOT time-series forecaster (Omranpour et al., arXiv:2412.02919) with any attention of the registry.

x (B, L, C) -> instance norm per variable -> patches (B, C, L/P, P) -> tokens (B, C, L/P, E), a 2-axis
tensor (variables x patches) -> n_layers pre-LN blocks -> head -> (B, pred_len, C), de-normalised.
With ``attention.name=hot`` the blocks attend per axis (Kronecker factors); with ``full`` over the
C * L/P flattened tokens (the baseline of the same backbone).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import torch
from torch import Tensor, nn

from attnbench.layers.block import TensorBlock


class PatchForecaster(nn.Module):
    """Per-variable patch embedding into a (variables x patches x E) tensor, factorised or full attention.

    head="mean" averages over patches then maps E -> pred_len (the official code); "flatten" maps the
    concatenated patch tokens (L/P * E) -> pred_len (PatchTST-style). RoPE runs along the patch axis.
    """

    def __init__(
        self, seq_len: int, pred_len: int, attention: Mapping[str, Any], patch_len: int = 4, d_model: int = 128,
        n_heads: int = 8, n_layers: int = 4, d_mlp: int = 512, dropout: float = 0.1, qk_norm: bool = True,
        rope: bool = True, per_axis_qk: bool = True, revin: bool = True, head: Literal["mean", "flatten"] = "mean",
    ) -> None:
        super().__init__()
        if seq_len % patch_len:
            raise ValueError(f"patch_len={patch_len} must divide seq_len={seq_len}")
        if head not in ("mean", "flatten"):
            raise ValueError(f"head={head!r}; allowed: mean, flatten")
        self.seq_len, self.pred_len, self.patch_len, self.revin, self.head_kind = (
            seq_len, pred_len, patch_len, revin, head)
        n_patches = seq_len // patch_len
        # Conv1d(1 -> E, kernel=P, stride=P) on each variable == Linear(P -> E) on its patches.
        self.embed = nn.Linear(patch_len, d_model)
        self.embed_post = nn.Sequential(nn.ReLU(), nn.Dropout(dropout), nn.LayerNorm(d_model))
        self.blocks = nn.ModuleList(
            TensorBlock(d_model, n_heads, d_mlp, n_axes=2, attention=attention, dropout=dropout, qk_norm=qk_norm,
                        rope_axes=(1,) if rope else (), per_axis_qk=per_axis_qk)
            for _ in range(n_layers)
        )
        self.ln_f = nn.LayerNorm(d_model)
        self.head_drop = nn.Dropout(dropout)
        self.head = nn.Linear(d_model if head == "mean" else n_patches * d_model, pred_len)

    def forward(self, x: Tensor) -> Tensor:
        B, L, C = x.shape
        if self.seq_len != L:
            raise ValueError(f"input length {L} != seq_len={self.seq_len}")
        x = x.transpose(1, 2)  # (B, C, L)
        if self.revin:  # non-affine instance normalisation per variable (biased var + 1e-5, as the code)
            mu = x.mean(dim=-1, keepdim=True).detach()  # (B, C, 1)
            sd = torch.sqrt(x.var(dim=-1, keepdim=True, unbiased=False) + 1e-5).detach()
            x = (x - mu) / sd
        h = x.unflatten(-1, (L // self.patch_len, self.patch_len))  # (B, C, Np, P)
        h = self.embed_post(self.embed(h))  # (B, C, Np, E)
        for blk in self.blocks:
            h = blk(h)
        h = self.ln_f(h)
        h = h.mean(dim=2) if self.head_kind == "mean" else h.flatten(2)  # (B, C, E) or (B, C, Np*E)
        y = self.head(self.head_drop(h))  # (B, C, pred_len)
        if self.revin:
            y = y * sd + mu
        return y.transpose(1, 2)  # (B, pred_len, C)
