"""The one datamodule of the Long Range Arena tasks: ``data=lra data.task=listops|text|retrieval|image|pathfinder``.

``data.task`` (a key of ``data.catalog.lra.LRA_TASKS``) names the module ``attnbench.data.lra.<task>`` (imported
here; the contract is in :mod:`attnbench.data.lra.common`); its ``load_split`` reads ``<data_dir>/lra/<INFO.dir>``
at ``data.max_len`` (null: the task's official length) with the task's own ``data.options``. Nothing is generated
or fetched here: a missing file stops the run with the task's DataError (what, where, which command makes it).

Batches are ``(tokens, labels)``, what ``lit.classification.ClassificationModule`` consumes (``x, y = batch``;
``net(x)``): tokens int64 (B, max_len), or (B, 2, max_len) for the two-tower retrieval, and labels int64 (B,).
No mask travels with them: padding is ``PAD_ID`` (0) and the model takes ``tokens != PAD_ID`` as its key-padding
mask, as the official models take ``inputs > 0``. Tokens are held in the smallest integer type of the vocabulary
(ListOps' 96k x 2000 in 192 MB rather than 1.5 GB) and cast to int64 per example.
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from attnbench.data.base import SplitDataModule
from attnbench.data.catalog.lra import LRA_TASKS
from attnbench.data.download import DataError
from attnbench.data.lra.common import PAD_ID, SPLITS, LRATask

_FIXED = ("root", "split", "max_len", "limit")  # load_split's contract arguments; anything else is a task option


def task_module(task: str) -> ModuleType:
    """``attnbench.data.lra.<task>`` (the task's ``INFO`` and ``load_split``); its ``INFO`` must be the catalogue's
    entry (``data.catalog.lra.LRA_TASKS``, which the model's sizes come from)."""
    if task not in LRA_TASKS:
        raise ValueError(f"data.task={task!r}; allowed: {', '.join(LRA_TASKS)}")
    module = importlib.import_module(f"attnbench.data.lra.{task}")
    if LRA_TASKS[task] != module.INFO:
        raise ValueError(f"attnbench.data.lra.{task}.INFO = {module.INFO} differs from data.catalog.lra's "
                         f"{LRA_TASKS[task]}, which the model is built from")
    return module


def task_options(module: ModuleType) -> list[str] | None:
    """The options ``module.load_split`` takes beyond the contract's (None: any, it takes ``**options``)."""
    params = inspect.signature(module.load_split).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return [p.name for p in params if p.name not in _FIXED]


class TokenDataset(Dataset):
    """(N, ...) integer tokens in any integer dtype and (N,) labels -> (int64 tokens, int64 label)."""

    def __init__(self, tokens: Tensor, labels: Tensor) -> None:
        if len(tokens) != len(labels):
            raise ValueError(f"{len(tokens)} token rows but {len(labels)} labels")
        self.tokens, self.labels = tokens, labels.long()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        return self.tokens[i].long(), self.labels[i]


def compact(tokens: Tensor, vocab_size: int) -> Tensor:
    """``tokens`` in the smallest integer dtype holding ids < ``vocab_size``."""
    dtype = torch.uint8 if vocab_size <= 256 else torch.int16 if vocab_size <= 2**15 else torch.int32
    return tokens.to(dtype)


def check_split(info: LRATask, split: str, tokens: Tensor, labels: Tensor, max_len: int) -> None:
    """Raise DataError unless a task module's output keeps the contract (shape, dtype, id and label ranges)."""
    shape = (len(labels), 2, max_len) if info.two_tower else (len(labels), max_len)
    where = f"{info.name} {split}"
    if tokens.dtype.is_floating_point or tokens.dtype == torch.bool or tuple(tokens.shape) != shape:
        raise DataError(f"{where}: tokens are {tokens.dtype} {tuple(tokens.shape)}; expected integer {shape}")
    if labels.dtype.is_floating_point or labels.dim() != 1:
        raise DataError(f"{where}: labels are {labels.dtype} {tuple(labels.shape)}; expected integer (N,)")
    if len(labels) == 0:
        raise DataError(f"{where}: the split is empty")
    lo, hi = int(tokens.min()), int(tokens.max())
    if lo < PAD_ID or hi >= info.vocab_size:
        raise DataError(f"{where}: token ids span [{lo}, {hi}], outside [0, vocab_size={info.vocab_size})")
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0 or hi >= info.num_classes:
        raise DataError(f"{where}: labels span [{lo}, {hi}], outside [0, num_classes={info.num_classes})")


class LRADataModule(SplitDataModule):
    """One LRA task's train/val/test from ``attnbench.data.lra.<task>`` (see the module doc).

    After construction ``info`` (the task's ``LRATask``), ``n_classes`` and ``max_len``; after ``setup`` also
    ``class_counts`` (train examples per class, for ``class_weights=inverse``).
    """

    def __init__(self, task: str, data_dir: str, max_len: int | None = None, batch_size: int = 32,
                 eval_batch_size: int | None = None, num_workers: int = 0, drop_last_train: bool = False,
                 limit_examples: int | None = None, options: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.module = task_module(task)
        self.info: LRATask = self.module.INFO
        options = dict(options or {})
        allowed = task_options(self.module)
        unknown = [k for k in options if allowed is not None and k not in allowed]
        if unknown:
            raise ValueError(f"data.options.{unknown[0]}: task {task!r} takes "
                             f"{'the options ' + ', '.join(allowed) if allowed else 'no options'}")
        if max_len is not None and max_len < 1:
            raise ValueError(f"data.max_len={max_len} must be >= 1 (or null: the task's {self.info.max_len})")
        if limit_examples is not None and limit_examples < 1:
            raise ValueError(f"data.limit_examples={limit_examples} must be >= 1 or null")
        self.task, self.options, self.limit_examples = task, options, limit_examples
        self.root = Path(data_dir) / "lra" / self.info.dir
        self.max_len = max_len or self.info.max_len
        self.n_classes = self.info.num_classes
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or batch_size
        self.num_workers, self.drop_last_train = num_workers, drop_last_train
        self.class_counts: list[int] | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        for split in SPLITS:
            # only the first limit_examples are read (a debug run need not tokenize 96k ListOps expressions)
            tokens, labels = self.module.load_split(self.root, split, self.max_len, limit=self.limit_examples,
                                                    **self.options)
            check_split(self.info, split, tokens, labels, self.max_len)
            self.datasets[split] = TokenDataset(compact(tokens, self.info.vocab_size), labels)
        train = self.datasets["train"].labels
        self.class_counts = torch.bincount(train, minlength=self.n_classes).tolist()
