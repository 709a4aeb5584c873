"""A text corpus in a pretrained model's own WordPiece tokens, in fixed-length blocks, for MLM continued pre-training.

The corpora and their document splits are ``data.corpus``'s (``CorpusDataModule``: ``imdb_labelled`` is the
substitute corpus the offline aclImdb copy holds, ``imdb_unsup`` the official archive's unlabelled reviews,
``pg19`` CAB's corpus); only the tokens differ. Tokenisation is the model's tokenizer (``AutoTokenizer`` of
``data.tokenizer``, e.g. ``minilm``), as HF's ``run_mlm.py`` groups texts: every document becomes
``[CLS] tokens [SEP]``, the documents of a split are concatenated and cut into non-overlapping blocks of
``block_len`` tokens (the remainder dropped), so a block may span two documents.

Masking is transformers' ``DataCollatorForLanguageModeling`` (BERT's: ``mlm_probability`` of the non-special
tokens selected; 80 % [MASK], 10 % a random token, 10 % kept; labels -100 except at the selected positions):
drawn per training batch from the global torch RNG (so ``seed`` fixes it), and once for val/test with
``mask_seed`` (the same masked positions every evaluation, so val losses are comparable across epochs).
Batches: ``input_ids`` (B, block_len), ``labels`` (B, block_len); no padding (every block is full).
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from attnbench.data.corpus import SPLITS, BlockDataset, CorpusDataModule
from attnbench.data.download import DataError
from attnbench.pretrained import load_tokenizer

log = logging.getLogger(__name__)


def wordpiece_stream(docs: list[str], tok, batch: int = 1000) -> Tensor:
    """Every document as ``[CLS] tokens [SEP]`` (the tokenizer's own specials), concatenated: (N,) int32."""
    parts = []
    for i in range(0, len(docs), batch):
        enc = tok(docs[i: i + batch], add_special_tokens=True, return_attention_mask=False,
                  return_token_type_ids=False, verbose=False)["input_ids"]
        parts += [np.asarray(ids, dtype=np.int32) for ids in enc]
    return torch.from_numpy(np.concatenate(parts) if parts else np.zeros(0, np.int32))


class WordPieceBlocks(Dataset):
    """Non-overlapping blocks of ``block_len`` tokens of a stream: item i is ``{"input_ids": (block_len,) int64,
    "special_tokens_mask": (block_len,) int64}`` (1 at the tokenizer's specials, which are never masked)."""

    def __init__(self, stream: Tensor, block_len: int, special_ids: list[int]) -> None:
        # BlockDataset's windows are block_len + 1 long (the causal LM's shift); MLM reads window[:-1]
        self.blocks = BlockDataset(stream, block_len)
        self.special = torch.tensor(sorted(set(special_ids)), dtype=torch.long)

    def __len__(self) -> int:
        return len(self.blocks)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        ids = self.blocks[i][:-1]
        return {"input_ids": ids, "special_tokens_mask": torch.isin(ids, self.special).long()}


class MaskedBlocks(Dataset):
    """Blocks masked once (val/test): item i is ``{"input_ids", "labels"}`` of the pre-drawn masking."""

    def __init__(self, input_ids: Tensor, labels: Tensor) -> None:
        self.input_ids, self.labels = input_ids, labels  # (N, block_len) each

    def __len__(self) -> int:
        return len(self.input_ids)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        return {"input_ids": self.input_ids[i], "labels": self.labels[i]}


def mlm_collator(tok, mlm_probability: float, seed: int | None = None):
    """transformers' ``DataCollatorForLanguageModeling`` (BERT masking, module doc); ``seed``: its own generator,
    else the global torch RNG."""
    from transformers import DataCollatorForLanguageModeling

    return DataCollatorForLanguageModeling(tok, mlm=True, mlm_probability=mlm_probability, seed=seed,
                                           return_tensors="pt")


def _stack(examples: list[dict[str, Tensor]]) -> dict[str, Tensor]:
    return {k: torch.stack([e[k] for e in examples]) for k in examples[0]}


class WordPieceCorpusDataModule(CorpusDataModule):
    """``data.corpus``'s corpora in WordPiece blocks with BERT masking (module doc). ``tokenizer``: a pretrained
    name (hub id, folder or ``minilm``), the model's own."""

    def __init__(self, name: str, data_dir: str, block_len: int, tokenizer: str, mlm_probability: float = 0.15,
                 mask_seed: int = 0, batch_size: int = 16, eval_batch_size: int | None = 32, num_workers: int = 0,
                 val_fraction: float | None = 0.01, test_fraction: float | None = 0.01, seed: int = 0,
                 download: bool = True, verify: bool = True, limit_docs: int | None = None) -> None:
        # the corpus, its split checks and its reader are CorpusDataModule's; its byte tokenizer is replaced here
        super().__init__(name, data_dir, block_len, "byte", batch_size, eval_batch_size, num_workers, val_fraction,
                         test_fraction, seed, download, verify, limit_docs)
        if not 0.0 < mlm_probability < 1.0:
            raise ValueError(f"data.mlm_probability={mlm_probability} must lie in (0, 1)")
        self.tokenizer_name, self.mlm_probability, self.mask_seed = tokenizer, mlm_probability, mask_seed
        self.tok = load_tokenizer(tokenizer)
        self.vocab = None  # no byte vocabulary: the ids are the tokenizer's
        self.collate_train = mlm_collator(self.tok, mlm_probability)

    @property
    def label(self) -> str:
        return f"{self.corpus.label}, {self.tokenizer_name} WordPiece"

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        specials = list(self.tok.all_special_ids)
        for i, (split, docs) in enumerate(self.documents().items()):
            stream = wordpiece_stream(docs, self.tok)
            blocks = WordPieceBlocks(stream, self.block_len, specials)
            if len(blocks) == 0:
                raise DataError(f"{self.corpus.name}: the {split} split holds {len(stream)} {self.tokenizer_name} "
                                f"tokens, fewer than one block of data.block_len + 1 = {self.block_len + 1}: lower "
                                "data.block_len or give the split more documents (data.limit_docs, "
                                "data.val_fraction/test_fraction)")
            if split != "train":  # masked once, with the split's own seed
                batch = mlm_collator(self.tok, self.mlm_probability, seed=self.mask_seed * len(SPLITS) + i)(
                    [blocks[j] for j in range(len(blocks))])
                self.datasets[split] = MaskedBlocks(batch["input_ids"], batch["labels"])
            else:
                self.datasets[split] = blocks
            log.info("%s: %s split, %d documents, %d tokens, %d blocks of %d", self.label, split, len(docs),
                     len(stream), len(blocks), self.block_len)

    def _loader(self, split: str) -> DataLoader:
        train = split == "train"
        return DataLoader(self.datasets[split], batch_size=self.batch_size if train else self.eval_batch_size,
                          shuffle=train, num_workers=self.num_workers, persistent_workers=self.num_workers > 0,
                          collate_fn=self.collate_train if train else _stack)
