"""GLUE (Wang et al., 2018), nine tasks, tokenized with the model's own tokenizer (``data.hf_text``: cached).

Rows: the original tsv release, ``<data_dir>/glue/<Task>/{train,dev}.tsv`` (``scripts/prepare_data.py glue``), else
the Hub's ``nyu-mll/glue`` at the revision pinned in ``data.catalog.glue``. GLUE's test labels are private (the
Hub's test split has label -1), so results are reported on dev, as in the papers (SMYRF's GLUE table is dev):
``val`` and ``test`` are both the dev set (``test`` evaluates the checkpoint that ``val`` selected). MNLI has two
dev sets, so two tasks: ``mnli_m`` (matched) and ``mnli_mm`` (mismatched), one metric per run, the same training
set. Sequences are truncated to ``max_length`` (128 in the papers); ``limit_examples`` keeps the first N of each
split (after tokenizing the whole split once).
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from attnbench.data.catalog import Source
from attnbench.data.catalog.glue import GLUE, SPLITS, GlueTask
from attnbench.data.hf_text import LABEL, PAIR, TEXT, TokenizedDataModule, text_dataset
from attnbench.errors import DataError

if TYPE_CHECKING:
    from datasets import Dataset


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


class GlueDataModule(TokenizedDataModule):
    """One GLUE task: train for training, dev for validation and test (see the module doc)."""

    def __init__(self, task: str, data_dir: str, tokenizer: str, max_length: int = 128, batch_size: int = 32,
                 eval_batch_size: int | None = 128, num_workers: int = 0, download: bool = True,
                 verify: bool = True, limit_examples: int | None = None, cache_dir: str | None = None) -> None:
        super().__init__()
        if task not in GLUE:
            raise ValueError(f"data.task={task!r}; allowed: {', '.join(GLUE)}")
        self.task, self.data_dir, self.tokenizer_name = GLUE[task], Path(data_dir), tokenizer
        self.name, self.hub = f"glue_{task}", self.task.hub()
        self.max_length, self.batch_size = max_length, batch_size
        self.eval_batch_size, self.num_workers = eval_batch_size or batch_size, num_workers
        self.download, self.verify, self.limit_examples = download, verify, limit_examples
        self.cache_dir, self.n_labels = cache_dir, self.task.n_labels

    def files(self) -> dict[str, tuple[str, Source]]:
        return {split: (self.task.file_key(split), self.task.source(split)) for split in SPLITS}

    def read_local(self, split: str, path: Path) -> Dataset:
        return text_dataset(*read_glue_tsv(path, self.task))

    def hub_split(self, split: str) -> str:
        return self.task.hub_split(split)

    def hub_columns(self) -> dict[str, str]:
        return {**dict(zip(self.task.hub_text, (TEXT, PAIR), strict=False)), LABEL: LABEL}

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        enc = self.encode(self.sources())
        if self.limit_examples:
            enc = {split: ds.select(range(min(self.limit_examples, len(ds)))) for split, ds in enc.items()}
        self.datasets["train"] = enc["train"]
        self.datasets["val"] = self.datasets["test"] = enc["dev"]
