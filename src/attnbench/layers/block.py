"""Pre-LN transformer block over a token tensor."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import Tensor, nn

from attnbench.layers.attention import MultiAxisAttention
from attnbench.layers.mlp import SwiGLU


class TensorBlock(nn.Module):
    """h = x + Drop(Attn(LN(x))); y = h + Drop(SwiGLU(LN(h))) (the HOT code's block). (B,*axes,E) -> same."""

    def __init__(
        self, d_model: int, n_heads: int, d_mlp: int, n_axes: int, attention: Mapping[str, Any],
        dropout: float = 0.0, qk_norm: bool = True, rope_axes: Sequence[int] = (), per_axis_qk: bool = False,
    ) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = MultiAxisAttention(d_model, n_heads, n_axes, attention, qk_norm=qk_norm, rope_axes=rope_axes,
                                       per_axis_qk=per_axis_qk, dropout=dropout)
        self.ln2 = nn.LayerNorm(d_model)
        self.mlp = SwiGLU(d_model, d_mlp)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.drop(self.mlp(self.ln2(x)))
