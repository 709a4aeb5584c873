"""HOT time-series forecaster (Omranpour et al., arXiv:2412.02919) with any attention of the registry.

x (B, L, C) -> instance norm per variable -> patches (B, C, L/P, P) -> tokens (B, C, L/P, E), a 2-axis
tensor (variables x patches) -> n_layers pre-LN blocks -> head -> (B, pred_len, C), de-normalised.
The official code's forecaster (``HOTForTimeseriesForecasting``) is ``head="mean"`` with
``dropout_layout="official"`` and attention-probability dropout (``attention={"name": "hot", "dropout": p}``).
With ``attention.name=hot`` the blocks attend per axis (Kronecker factors); with ``full`` over the
C * L/P flattened tokens (the baseline of the same backbone).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import torch
from torch import Tensor, nn

from attnbench.layers.block import TensorBlock
from attnbench.signatures import check_literals


class PatchForecaster(nn.Module):
    """Per-variable patch embedding into a (variables x patches x E) tensor, factorised or full attention.

    head="mean": Linear(Drop(LN(mean over patches))), E -> pred_len (the official code: average first, then
    the final LayerNorm); "flatten": Linear(Drop(LN per token, concatenated)), L/P * E -> pred_len
    (PatchTST-style). RoPE runs along the patch axis.

    dropout_layout="ours": patch embedding ReLU -> Dropout -> LayerNorm, and per block one dropout on the
    attention output and one on the MLP output. "official" (the HOT code): ReLU -> LayerNorm -> Dropout,
    and per block a second dropout on the attention branch (the code's ``proj_dropout`` then ``drop1``).
    Dropout on the attention probabilities is the attention's own option (``attention["dropout"]``). The
    two layouts hold the same parameters and agree exactly in eval mode.
    """

    def __init__(
        self, seq_len: int, pred_len: int, attention: Mapping[str, Any], patch_len: int = 4, d_model: int = 128,
        n_heads: int = 8, n_layers: int = 4, d_mlp: int = 512, dropout: float = 0.1, qk_norm: bool = True,
        rope: bool = True, per_axis_qk: bool = True, revin: bool = True, head: Literal["mean", "flatten"] = "flatten",
        dropout_layout: Literal["ours", "official"] = "ours",
    ) -> None:
        super().__init__()
        if seq_len % patch_len:
            raise ValueError(f"patch_len={patch_len} must divide seq_len={seq_len}")
        check_literals(PatchForecaster.__init__, head=head, dropout_layout=dropout_layout)
        self.seq_len, self.pred_len, self.patch_len, self.revin, self.head_kind = (
            seq_len, pred_len, patch_len, revin, head)
        self.dropout_layout = dropout_layout
        n_patches = seq_len // patch_len
        # Conv1d(1 -> E, kernel=P, stride=P) on each variable == Linear(P -> E) on its patches.
        self.embed = nn.Linear(patch_len, d_model)
        # one module list for both layouts (same state-dict keys); "official" calls it as ReLU, LN, Dropout
        self.embed_post = nn.Sequential(nn.ReLU(), nn.Dropout(dropout), nn.LayerNorm(d_model))
        self.blocks = nn.ModuleList(
            TensorBlock(d_model, n_heads, d_mlp, n_axes=2, attention=attention, dropout=dropout, qk_norm=qk_norm,
                        rope_axes=(1,) if rope else (), per_axis_qk=per_axis_qk, dropout_layout=dropout_layout)
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
        h = self.embed(h)  # (B, C, Np, E)
        if self.dropout_layout == "official":
            relu, drop, norm = self.embed_post
            h = drop(norm(relu(h)))
        else:
            h = self.embed_post(h)
        for blk in self.blocks:
            h = blk(h)
        # mean: average over patches, then LayerNorm (the official head) -> (B, C, E); flatten: (B, C, Np*E)
        h = self.ln_f(h.mean(dim=2)) if self.head_kind == "mean" else self.ln_f(h).flatten(2)
        y = self.head(self.head_drop(h))  # (B, C, pred_len)
        if self.revin:
            y = y * sd + mu
        return y.transpose(1, 2)  # (B, pred_len, C)
