"""The Long Range Arena encoder (Tay et al., ICLR 2021; ``lra_benchmarks/models/transformer/transformer.py``) with
any registry entry as its self-attention.

    tokens (B, L) -> Embed (N(0, 1)) [-> prepend CLS (zeros)] -> + positions (sinusoidal | learned N(0, 0.02))
    -> Dropout -> n_layers x pre-LN block (x + Drop(Attn(LN x)); x + MLP(LN x), MLP = Dense -> GELU -> Drop ->
    Dense) -> LayerNorm -> pool (CLS | MEAN | SUM) -> Dense(d_mlp) -> ReLU -> Dense(n_classes)

Retrieval (``two_tower``): tokens (B, 2, L), one shared encoder per document, pooled e1, e2 combined as
``interaction="nli"`` [e1, e2, e1*e2, e1-e2] (the paper's eq. 1, our default) or ``"concat"`` [e1, e2] (the
released code: its configs never set ``interaction='NLI'``), then Dense(d_mlp) -> ReLU -> Dense(d_mlp/2) -> ReLU ->
Dense(n_classes) (``classifier_head_dual``).

Initialisation as the official code: attention kernels xavier-uniform without biases, MLP kernels xavier-uniform
with N(0, 1e-6) biases, classifier kernels LeCun-normal (Flax's Dense default) with zero biases.

Padding. ``key_padding=True``: the mask ``tokens != PAD_ID`` goes to every block's attention (entries without
``caps.key_padding_mask`` are refused when the model is built), and MEAN/SUM pool over the real tokens only; the
prepended CLS is always a real token. ``key_padding=False``: no mask (every entry; tasks without padding: Image,
Pathfinder). Differences from the official code, on purpose:

- The official mask is ``inputs > 0`` for every task, images included, where the token is the grey level itself, so
  a black pixel is masked as a key, and the CLS position copies the first pixel's mask (an image whose first pixel
  is black also has its CLS masked). Our pixel ids are grey + 1 (``data.catalog.lra``) and Image and Pathfinder have
  no padding, so their experiments set ``key_padding=false`` and attend to every pixel; ``data.options.
  official_zero_pad=true model.net.key_padding=true`` masks black pixels as the official code does (its CLS
  stays unmasked here).
- The official MEAN/SUM pool every position, padding included (its MEAN task, Pathfinder, has none).
- The official dual encoder builds its shared encoder with ``classifier=False``: no CLS token is prepended, and
  "CLS" pooling takes the first byte's output; ours prepends the learned CLS as in the single-tower tasks.
- LayerNorm epsilon is PyTorch's 1e-5 (Flax: 1e-6); attention-probability dropout is the entry's own ``dropout``
  option where it has one (the official ``attention_dropout_rate``); ``dropout`` is the official ``dropout_rate``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

import torch
from torch import Tensor, nn

from attnbench.attention.registry import get, require
from attnbench.data.catalog.lra import PAD_ID
from attnbench.layers.seqblock import SeqEncoderLayer
from attnbench.signatures import check_literals


def sinusoidal_table(max_len: int, d_model: int) -> Tensor:
    """(max_len, E): sin at even, cos at odd features, angle pos / 10000^(2i/E) (``common_layers.sinusoidal_init``)."""
    pos = torch.arange(max_len, dtype=torch.float64)[:, None]  # (L, 1)
    div = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float64) * -(math.log(10000.0) / d_model))  # (E/2,)
    pe = torch.zeros(max_len, d_model, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(pos * div)
    pe[:, 1::2] = torch.cos(pos * div)[:, : d_model // 2]
    return pe.float()


def pool(h: Tensor, mask: Tensor | None, pooling: str) -> Tensor:
    """(B, L, E) -> (B, E): the first position (cls), or the mean / sum over the real tokens (mask (B, L), True =
    real; None: every position)."""
    if pooling == "cls":
        return h[:, 0]
    w = torch.ones(h.shape[:2], dtype=h.dtype, device=h.device) if mask is None else mask.to(h.dtype)  # (B, L)
    total = torch.einsum("ble,bl->be", h, w)
    return total if pooling == "sum" else total / w.sum(1, keepdim=True).clamp_min(1.0)


def _lecun_normal_(w: Tensor) -> None:
    """Flax's Dense default: truncated normal (2 sigma) with variance 1/fan_in."""
    std = math.sqrt(1.0 / w.shape[1]) / 0.87962566103423978  # the std of a unit normal truncated to [-2, 2]
    nn.init.trunc_normal_(w, std=std, a=-2 * std, b=2 * std)


class LRAEncoder(nn.Module):
    """Token classifier (module docstring). tokens int64 (B, L), or (B, 2, L) when ``two_tower`` -> logits
    (B, n_classes).

    vocab_size: embedding rows (padding id 0 included); max_len: the longest input (the positional table; the
    CLS adds one); d_mlp: the blocks' MLP width and the classifier's hidden width (the official ``mlp_dim``);
    qkv_dim: the attention's q/k/v width (null: d_model); attention: ``{"name": <registry key>, **options}``
    (fixed-length entries left with ``max_len: null`` get the encoder's length). Defaults: the released ListOps
    configuration.
    """

    def __init__(
        self, vocab_size: int, n_classes: int, max_len: int, attention: Mapping[str, Any], d_model: int = 512,
        n_heads: int = 8, n_layers: int = 4, d_mlp: int = 1024, qkv_dim: int | None = None, dropout: float = 0.1,
        pos_emb: Literal["sinusoidal", "learned"] = "sinusoidal", pooling: Literal["cls", "mean", "sum"] = "cls",
        key_padding: bool = True, two_tower: bool = False, interaction: Literal["nli", "concat"] = "nli",
    ) -> None:
        super().__init__()
        check_literals(LRAEncoder.__init__, pos_emb=pos_emb, pooling=pooling, interaction=interaction)
        if key_padding:  # refused here, before any data: the tasks that pad need the mask in every block
            require(get(attention["name"]), key_padding_mask=True)
        self.pooling, self.key_padding, self.two_tower, self.interaction = pooling, key_padding, two_tower, interaction
        self.max_len = max_len
        n_pos = max_len + (pooling == "cls")  # the CLS takes position 0
        self.embed = nn.Embedding(vocab_size, d_model)
        self.cls = nn.Parameter(torch.zeros(1, 1, d_model)) if pooling == "cls" else None
        if pos_emb == "learned":
            self.pos = nn.Parameter(torch.empty(1, n_pos, d_model))
        else:
            self.register_buffer("pos", sinusoidal_table(n_pos, d_model)[None], persistent=False)  # (1, n_pos, E)
        self.drop = nn.Dropout(dropout)
        self.layers = nn.ModuleList(
            SeqEncoderLayer(d_model, n_heads, d_mlp, attention, dropout=dropout, norm="pre", mlp="gelu", bias=False,
                            qkv_dim=qkv_dim, max_len=n_pos)
            for _ in range(n_layers))
        self.norm = nn.LayerNorm(d_model)
        if two_tower:
            d_in = d_model * (4 if interaction == "nli" else 2)
            self.head = nn.Sequential(nn.Linear(d_in, d_mlp), nn.ReLU(), nn.Linear(d_mlp, d_mlp // 2), nn.ReLU(),
                                      nn.Linear(d_mlp // 2, n_classes))
        else:
            self.head = nn.Sequential(nn.Linear(d_model, d_mlp), nn.ReLU(), nn.Linear(d_mlp, n_classes))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The official initialisation (module docstring)."""
        nn.init.normal_(self.embed.weight, std=1.0)
        if isinstance(self.pos, nn.Parameter):
            nn.init.normal_(self.pos, std=0.02)
        for layer in self.layers:
            for proj in (layer.attn.q_proj, layer.attn.k_proj, layer.attn.v_proj, layer.attn.o_proj):
                if proj is not None:
                    nn.init.xavier_uniform_(proj.weight)
            for dense in (layer.mlp.w1, layer.mlp.w2):
                nn.init.xavier_uniform_(dense.weight)
                nn.init.normal_(dense.bias, std=1e-6)
        for m in self.head:
            if isinstance(m, nn.Linear):
                _lecun_normal_(m.weight)
                nn.init.zeros_(m.bias)

    def encode(self, tokens: Tensor) -> Tensor:
        """tokens (B, L) -> pooled (B, E)."""
        B, length = tokens.shape
        if length > self.max_len:
            raise ValueError(f"input length {length} > max_len={self.max_len} (model.net.max_len)")
        mask = tokens != PAD_ID if self.key_padding else None  # (B, L), True = real token
        h = self.embed(tokens)  # (B, L, E)
        if self.cls is not None:
            h = torch.cat([self.cls.expand(B, -1, -1).to(h.dtype), h], 1)  # (B, 1 + L, E)
            if mask is not None:
                mask = torch.cat([mask.new_ones(B, 1), mask], 1)  # the CLS is always real
        h = self.drop(h + self.pos[:, : h.shape[1]].to(h.dtype))
        for layer in self.layers:
            h = layer(h, key_padding_mask=mask)
        return pool(self.norm(h), mask, self.pooling)  # (B, E)

    def forward(self, tokens: Tensor) -> Tensor:
        """tokens (B, L) (two-tower: (B, 2, L)) -> logits (B, n_classes)."""
        if self.two_tower:
            if tokens.dim() != 3 or tokens.shape[1] != 2:
                raise ValueError(f"a two-tower model takes tokens (B, 2, L); got {tuple(tokens.shape)}")
            B = tokens.shape[0]
            e1, e2 = self.encode(tokens.flatten(0, 1)).unflatten(0, (B, 2)).unbind(1)  # 2 x (B, E), one encoder
            feats = [e1, e2, e1 * e2, e1 - e2] if self.interaction == "nli" else [e1, e2]
            return self.head(torch.cat(feats, -1))
        if tokens.dim() != 2:
            raise ValueError(f"tokens must be (B, L); got {tuple(tokens.shape)} (two-tower data needs "
                             "model.net.two_tower=true)")
        return self.head(self.encode(tokens))
