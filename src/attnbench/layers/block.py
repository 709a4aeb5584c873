"""Pre-LN transformer block over a token tensor."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from torch import Tensor, nn

from attnbench.layers.attention import MultiAxisAttention
from attnbench.layers.mlp import SwiGLU

# "ours": one dropout on the attention output (inside the layer) and one on the MLP output;
# "official": the HOT code's TransformerBlock, which drops the attention output twice (proj_dropout, drop1).
DROPOUT_LAYOUTS = ("ours", "official")


class TensorBlock(nn.Module):
    """h = x + Drop(Attn(LN(x))); y = h + Drop(SwiGLU(LN(h))) (the HOT code's block). (B,*axes,E) -> same.

    Attn ends with its own dropout; ``dropout_layout="official"`` adds the HOT code's second one on the
    attention branch (``drop_attn``). Both layouts hold the same parameters.
    """

    def __init__(
        self, d_model: int, n_heads: int, d_mlp: int, n_axes: int, attention: Mapping[str, Any],
        dropout: float = 0.0, qk_norm: bool = True, rope_axes: Sequence[int] = (), per_axis_qk: bool = False,
        dropout_layout: Literal["ours", "official"] = "ours",
    ) -> None:
        super().__init__()
        if dropout_layout not in DROPOUT_LAYOUTS:
            raise ValueError(f"dropout_layout={dropout_layout!r}; allowed: {', '.join(DROPOUT_LAYOUTS)}")
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = MultiAxisAttention(d_model, n_heads, n_axes, attention, qk_norm=qk_norm, rope_axes=rope_axes,
                                       per_axis_qk=per_axis_qk, dropout=dropout)
        self.drop_attn = nn.Dropout(dropout) if dropout_layout == "official" else nn.Identity()
        self.ln2 = nn.LayerNorm(d_model)
        self.mlp = SwiGLU(d_model, d_mlp)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.drop_attn(self.attn(self.ln1(x)))
        return x + self.drop(self.mlp(self.ln2(x)))
