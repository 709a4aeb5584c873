"""Train/val/test loaders shared by the datamodules that hold one Dataset per split."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

import lightning as L
from torch.utils.data import DataLoader, Dataset


@runtime_checkable
class ClassCounted(Protocol):
    """A classification datamodule: after ``setup``, the train examples per class (``None`` before); the
    class-weighted loss (``lit.classification``, ``class_weights=inverse``) reads it."""

    class_counts: list[int] | None


class SplitDataModule(L.LightningDataModule):
    """``self.datasets[split]`` for train/val/test; shuffled (and optionally last-batch-dropping) training."""

    batch_size: int
    eval_batch_size: int
    num_workers: int
    drop_last_train: bool = False
    worker_init_fn: Callable[[int], None] | None = None

    def __init__(self) -> None:
        super().__init__()
        self.datasets: dict[str, Dataset] = {}

    def _loader(self, split: str) -> DataLoader:
        train = split == "train"
        return DataLoader(self.datasets[split], batch_size=self.batch_size if train else self.eval_batch_size,
                          shuffle=train, drop_last=train and self.drop_last_train, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0,
                          worker_init_fn=self.worker_init_fn if self.num_workers > 0 else None)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")
