"""Language models over token ids whose attention is any registry entry (CAB's LM and MLM backbones).

``GPTDecoder`` (GPT-2's layout, Radford et al. 2019; CAB's LM backbone, causal self-attention): token + learned
position embeddings, pre-LN blocks run causally, a final LayerNorm, the output projection tied to the token
embedding (no bias). ``RobertaEncoder`` (RoBERTa, Liu et al. 2019; CAB's MLM backbone, non-causal self-attention):
token + learned position embeddings, LayerNorm, post-LN blocks, and the MLM head dense -> GELU -> LayerNorm ->
decoder tied to the token embedding (with a bias). Both map ids (B, L) to logits (B, L, V); blocks are
:class:`~attnbench.layers.seqblock.SeqEncoderLayer`. An attention that cannot run causally is refused by
``GPTDecoder`` with the registry's CapabilityError (naming the entries that can).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from attnbench.attention.registry import get, require
from attnbench.layers.seqblock import SeqEncoderLayer


class _TokenModel(nn.Module):
    """Embeddings, a stack of ``SeqEncoderLayer`` and the length check both models share."""

    causal: bool
    norm: str

    def __init__(self, vocab_size: int, max_len: int, attention: Mapping[str, Any], d_model: int, n_heads: int,
                 n_layers: int, d_mlp: int, dropout: float, attn_dropout: float) -> None:
        super().__init__()
        if "name" not in attention:
            raise ValueError("attention config needs a 'name' (a registry key)")
        if self.causal:
            require(get(attention["name"]), causal=True)
        self.vocab_size, self.max_len = vocab_size, max_len
        self.tok_emb = nn.Embedding(vocab_size, d_model)
        self.pos_emb = nn.Embedding(max_len, d_model)
        self.drop = nn.Dropout(dropout)
        self.layers = nn.ModuleList(
            SeqEncoderLayer(d_model, n_heads, d_mlp, attention, dropout=dropout, attn_dropout=attn_dropout,
                            norm=self.norm, mlp="gelu") for _ in range(n_layers))
        for emb in (self.tok_emb, self.pos_emb):
            nn.init.normal_(emb.weight, std=0.02)  # GPT-2 / BERT initialiser range

    def embed(self, ids: Tensor) -> Tensor:
        """ids (B, L) -> (B, L, E)."""
        length = ids.shape[1]
        if length > self.max_len:
            raise ValueError(f"sequence length {length} exceeds max_len={self.max_len} (model.net.max_len)")
        pos = torch.arange(length, device=ids.device)  # (L,)
        return self.tok_emb(ids) + self.pos_emb(pos)  # (B, L, E)

    def encode(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x, causal=self.causal)  # (B, L, E)
        return x


class GPTDecoder(_TokenModel):
    """GPT-2-style causal LM: ids (B, L) -> next-token logits (B, L, V) (see the module doc)."""

    causal, norm = True, "pre"

    def __init__(self, vocab_size: int, max_len: int, attention: Mapping[str, Any], d_model: int = 128,
                 n_heads: int = 4, n_layers: int = 2, d_mlp: int = 512, dropout: float = 0.1,
                 attn_dropout: float = 0.0) -> None:
        super().__init__(vocab_size, max_len, attention, d_model, n_heads, n_layers, d_mlp, dropout, attn_dropout)
        self.ln_f = nn.LayerNorm(d_model)

    def forward(self, ids: Tensor) -> Tensor:
        h = self.ln_f(self.encode(self.drop(self.embed(ids))))  # (B, L, E)
        return h @ self.tok_emb.weight.T  # tied output embedding: (B, L, V)


class RobertaEncoder(_TokenModel):
    """RoBERTa-style masked LM: ids (B, L) -> token logits (B, L, V) (see the module doc)."""

    causal, norm = False, "post"

    def __init__(self, vocab_size: int, max_len: int, attention: Mapping[str, Any], d_model: int = 128,
                 n_heads: int = 4, n_layers: int = 2, d_mlp: int = 512, dropout: float = 0.1,
                 attn_dropout: float = 0.0) -> None:
        super().__init__(vocab_size, max_len, attention, d_model, n_heads, n_layers, d_mlp, dropout, attn_dropout)
        self.ln_emb = nn.LayerNorm(d_model)
        self.head_dense = nn.Linear(d_model, d_model)  # RobertaLMHead: dense -> gelu -> LayerNorm -> decoder
        self.head_ln = nn.LayerNorm(d_model)
        self.head_bias = nn.Parameter(torch.zeros(vocab_size))

    def forward(self, ids: Tensor) -> Tensor:
        h = self.encode(self.drop(self.ln_emb(self.embed(ids))))  # (B, L, E)
        h = self.head_ln(nn.functional.gelu(self.head_dense(h)))
        return h @ self.tok_emb.weight.T + self.head_bias  # tied decoder: (B, L, V)
