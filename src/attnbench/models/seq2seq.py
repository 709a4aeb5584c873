"""An encoder-decoder Transformer whose three attention positions are each any registry entry: CAB's patterns.

encoder self-attention = noncausal self (NS), decoder self-attention = causal self (CS), cross-attention =
causal cross (CC). CAB's CC is what an autoregressive decoder needs of its cross-attention: the output at query
i must not depend on queries after i, the memory (keys, values) fully visible; CAB's check
(``scripts/attention_pattern/test_available_pattern_for_attention.py::test_cross_causal``, src_len 100, tgt_len
50) compares query i's output with a run on queries <= i against the same memory. This decoder is autoregressive
(teacher forcing, greedy decoding), so its cross position is always CC: the layers ask for it
(``causal_cross=True``) and an entry whose queries mix (``caps.causal_cross=False``: Nyström's query landmarks,
SMYRF's query clusters) is refused, since teacher-forced training would read future target tokens through it.
CAB's noncausal cross (NC) belongs to non-autoregressive decoders (Informer's one-shot decoder on LSTF, PoinTr
on PCC), not to this model.

Token embeddings are shared by encoder, decoder and output layer; positions are sinusoidal (Vaswani et al.).
Ids: PAD 0 (masked as keys), BOS, EOS and the symbols (``data.seq2seq``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

import torch
from torch import Tensor, nn

from attnbench.attention.registry import get, require
from attnbench.data.catalog.seq2seq import BOS_ID, EOS_ID, PAD_ID, vocab_size
from attnbench.layers.seqblock import SeqDecoderLayer, SeqEncoderLayer


def sinusoidal_positions(n: int, d: int, device: torch.device) -> Tensor:
    """(n, d) sin/cos position codes (even d)."""
    pos = torch.arange(n, device=device, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, d, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / d))
    out = torch.zeros(n, d, device=device)
    out[:, 0::2], out[:, 1::2] = torch.sin(pos * freq), torch.cos(pos * freq)
    return out


class Seq2SeqTransformer(nn.Module):
    """(src (B, S), tgt_in (B, T)) int64 -> logits (B, T, vocab). ``greedy(src, steps)`` decodes."""

    def __init__(
        self, n_symbols: int, encoder_attention: Mapping[str, Any], decoder_attention: Mapping[str, Any],
        cross_attention: Mapping[str, Any], d_model: int = 64, n_heads: int = 4,
        n_encoder_layers: int = 2, n_decoder_layers: int = 2, d_mlp: int = 256, dropout: float = 0.1,
        attn_dropout: float = 0.0, norm: Literal["pre", "post"] = "pre", mlp: Literal["gelu", "swiglu"] = "gelu",
    ) -> None:
        super().__init__()
        if d_model % 2:
            raise ValueError(f"d_model={d_model} must be even (sinusoidal positions)")
        require(get(cross_attention["name"]), cross_attention=True, causal_cross=True)  # refused now, not at forward
        self.d_model, self.vocab = d_model, vocab_size(n_symbols)
        self.embed = nn.Embedding(self.vocab, d_model, padding_idx=PAD_ID)
        nn.init.normal_(self.embed.weight, std=d_model ** -0.5)  # tied: unit-scale inputs (x sqrt(d)), O(1) logits
        with torch.no_grad():
            self.embed.weight[PAD_ID].zero_()
        self.drop = nn.Dropout(dropout)
        opts = {"dropout": dropout, "attn_dropout": attn_dropout, "norm": norm, "mlp": mlp}
        self.encoder = nn.ModuleList(SeqEncoderLayer(d_model, n_heads, d_mlp, encoder_attention, **opts)
                                     for _ in range(n_encoder_layers))
        self.decoder = nn.ModuleList(SeqDecoderLayer(d_model, n_heads, d_mlp, decoder_attention, cross_attention,
                                                     **opts) for _ in range(n_decoder_layers))
        # pre-norm stacks end with a LayerNorm (GPT-2); post-norm outputs are normalised already
        self.enc_norm = nn.LayerNorm(d_model) if norm == "pre" else nn.Identity()
        self.dec_norm = nn.LayerNorm(d_model) if norm == "pre" else nn.Identity()

    def _embed(self, ids: Tensor) -> Tensor:
        x = self.embed(ids) * math.sqrt(self.d_model)  # (B, L, E)
        return self.drop(x + sinusoidal_positions(ids.shape[1], self.d_model, ids.device).to(x.dtype))

    def encode(self, src: Tensor) -> tuple[Tensor, Tensor]:
        """src (B, S) -> memory (B, S, E) and its padding mask (B, S), True = real token."""
        mask = src != PAD_ID
        x = self._embed(src)
        for layer in self.encoder:
            x = layer(x, key_padding_mask=mask)
        return self.enc_norm(x), mask

    def decode(self, tgt_in: Tensor, memory: Tensor, memory_mask: Tensor) -> Tensor:
        """tgt_in (B, T), memory (B, S, E), memory_mask (B, S) -> logits (B, T, vocab). Position i depends on
        tgt_in[:, :i+1] (and the whole memory) only."""
        x = self._embed(tgt_in)
        mask = tgt_in != PAD_ID
        for layer in self.decoder:
            x = layer(x, memory, padding_mask=mask, memory_padding_mask=memory_mask, causal=True,
                      causal_cross=True)
        return self.dec_norm(x) @ self.embed.weight.T  # tied output layer

    def forward(self, src: Tensor, tgt_in: Tensor) -> Tensor:
        memory, mask = self.encode(src)
        return self.decode(tgt_in, memory, mask)

    @torch.no_grad()
    def greedy(self, src: Tensor, steps: int) -> Tensor:
        """Greedy decoding: (B, S) -> predicted labels (B, steps), PAD after the first EOS. Step i recomputes the
        decoder on the prefix of i + 1 inputs (no state cache) and reads its last position: by causality (causal
        self, causal cross) the same as position i of the full pass."""
        memory, mask = self.encode(src)
        b = src.shape[0]
        tgt_in = torch.full((b, steps), PAD_ID, dtype=torch.long, device=src.device)
        tgt_in[:, 0] = BOS_ID
        out = torch.full_like(tgt_in, PAD_ID)
        done = torch.zeros(b, dtype=torch.bool, device=src.device)
        for i in range(steps):
            tok = self.decode(tgt_in[:, : i + 1], memory, mask)[:, -1].argmax(-1)  # (B,)
            tok = torch.where(done, PAD_ID, tok)
            out[:, i] = tok
            done |= tok == EOS_ID
            if i + 1 < steps:
                tgt_in[:, i + 1] = torch.where(done, PAD_ID, tok)
            if bool(done.all()):
                break
        return out
