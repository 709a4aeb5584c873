"""GLUE (Wang et al., 2018) from the original tsv release: tokenized with the model's own tokenizer.

Files: ``<data_dir>/glue/<Task>/{train,dev}.tsv`` (``scripts/prepare_data.py glue``). GLUE's test labels are
private, so results are reported on dev, as in the papers (SMYRF's GLUE table is dev): ``val`` and ``test``
are both the dev set (``test`` evaluates the checkpoint that ``val`` selected). Batches are padded per batch
(transformers' ``DataCollatorWithPadding``); sequences are truncated to ``max_length`` (128 in the papers).
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from attnbench.data.base import SplitDataModule
from attnbench.data.catalog.glue import GLUE, GlueTask
from attnbench.data.download import DataError, fetch, locate
from attnbench.pretrained import load_tokenizer


def read_glue_tsv(path: Path, task: GlueTask) -> tuple[list[tuple[str, ...]], list[float | int]]:
    """(texts, labels) of a GLUE tsv: quotes are literal (csv.QUOTE_NONE), a leading BOM is dropped."""
    csv.field_size_limit(sys.maxsize)
    with open(path, encoding="utf-8-sig", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    if task.header:
        head, rows = rows[0], rows[1:]
        try:
            cols = [head.index(c) for c in (*task.text, task.label)]
        except ValueError as e:
            raise DataError(f"{path}: not a GLUE {task.folder} file (header {head}; {e})") from None
    else:
        cols = [int(c) for c in (*task.text, task.label)]
    texts, labels = [], []
    for i, row in enumerate(rows):
        if len(row) <= max(cols):
            raise DataError(f"{path}: row {i + 1 + task.header} has {len(row)} columns, expected > {max(cols)}")
        texts.append(tuple(row[c] for c in cols[:-1]))
        raw = row[cols[-1]]
        if task.labels:
            if raw not in task.labels:
                raise DataError(f"{path}: row {i + 1 + task.header} has label {raw!r}; allowed: {task.labels}")
            labels.append(task.labels.index(raw))
        else:
            labels.append(float(raw))
    return texts, labels


class EncodedDataset(torch.utils.data.Dataset):
    """Tokenized examples: dicts of input_ids / attention_mask (/ token_type_ids) and ``labels``."""

    def __init__(self, encodings: dict[str, list], labels: list) -> None:
        self.encodings, self.labels = encodings, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        return {**{k: v[i] for k, v in self.encodings.items()}, "labels": self.labels[i]}


class TokenizedDataModule(SplitDataModule):
    """Text datamodules: ``encode`` tokenizes (text, label) lists with the model's tokenizer; batches are padded
    per batch."""

    tokenizer_name: str
    max_length: int

    def encode(self, tok, texts: list[tuple[str, ...]], labels: list) -> EncodedDataset:
        columns = list(zip(*texts, strict=True))  # one list per text column (one, or a sentence pair)
        return EncodedDataset(dict(tok(*columns, truncation=True, max_length=self.max_length)), labels)

    def _loader(self, split: str) -> DataLoader:
        train = split == "train"
        return DataLoader(self.datasets[split], batch_size=self.batch_size if train else self.eval_batch_size,
                          shuffle=train, num_workers=self.num_workers, collate_fn=self.collate,
                          persistent_workers=self.num_workers > 0)

    def _tokenizer(self):
        tok = load_tokenizer(self.tokenizer_name)
        self.collate = _collator(tok)
        return tok


class GlueDataModule(TokenizedDataModule):
    """One GLUE task: train.tsv for training, dev.tsv for validation and test (see the module doc)."""

    def __init__(self, task: str, data_dir: str, tokenizer: str, max_length: int = 128, batch_size: int = 32,
                 eval_batch_size: int | None = 128, num_workers: int = 0, download: bool = True,
                 verify: bool = True, limit_examples: int | None = None) -> None:
        super().__init__()
        if task not in GLUE:
            raise ValueError(f"data.task={task!r}; allowed: {', '.join(GLUE)}")
        self.task, self.data_dir, self.tokenizer_name = GLUE[task], Path(data_dir), tokenizer
        self.max_length, self.batch_size = max_length, batch_size
        self.eval_batch_size, self.num_workers = eval_batch_size or batch_size, num_workers
        self.download, self.verify, self.limit_examples = download, verify, limit_examples
        self.n_labels = self.task.n_labels

    def _file(self, split: str) -> Path:
        name, src = f"glue_{self.task.name}_{split}", self.task.source(split)
        if self.download:
            return fetch(name, src, self.data_dir)
        return locate(name, src, self.data_dir, check=self.verify)

    def prepare_data(self) -> None:
        for split in ("train", "dev"):
            self._file(split)

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        tok = self._tokenizer()
        for split in ("train", "dev"):
            texts, labels = read_glue_tsv(self._file(split), self.task)
            if self.limit_examples:
                texts, labels = texts[: self.limit_examples], labels[: self.limit_examples]
            ds = self.encode(tok, texts, labels)
            if split == "train":
                self.datasets["train"] = ds
            else:
                self.datasets["val"] = self.datasets["test"] = ds


def _collator(tok):
    from transformers import DataCollatorWithPadding

    return DataCollatorWithPadding(tok, return_tensors="pt")
