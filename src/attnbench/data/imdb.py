"""IMDB movie reviews (Maas et al., ACL 2011), tokenized by the model (``data.hf_text``: cached).

Rows: the Stanford archive read in place, ``<data_dir>/imdb/aclImdb_v1.tar.gz`` (``scripts/prepare_data.py imdb``),
which holds ``aclImdb/{train,test}/{pos,neg}/<id>_<rating>.txt`` (25k training and 25k test reviews, half positive;
rows in file-name order), else the Hub's ``stanfordnlp/imdb`` at the revision pinned in ``data.catalog.imdb`` (the
same reviews in the Hub's order, so a seed draws other validation reviews). Splits: a seeded ``val_fraction`` of
the training reviews for validation (checkpoint selection), the rest for training, the official test set for
test. Texts are kept as written (with their ``<br />``), truncated to ``max_length`` tokens (SMYRF's IMDB example:
512).
"""

from __future__ import annotations

import random
import re
import tarfile
from pathlib import Path
from typing import TYPE_CHECKING

from attnbench.data.catalog import Source
from attnbench.data.catalog.imdb import IMDB, IMDB_HUB, IMDB_SOURCE
from attnbench.data.hf_text import LABEL, TEXT, TokenizedDataModule, text_dataset
from attnbench.errors import DataError

if TYPE_CHECKING:
    from datasets import Dataset

_MEMBER = re.compile(r"^aclImdb/(train|test)/(pos|neg|unsup)/(\d+)_(\d+)\.txt$")


def read_imdb(path: Path, unsup: bool = False) -> dict[str, tuple[list[tuple[str]], list[int]]]:
    """``{"train": (texts, labels), "test": ...}`` from the archive, in file-name order; label 1 = pos.

    ``unsup=True`` adds ``"unsup": (texts, [])``: the 50k unlabelled reviews of ``aclImdb/train/unsup`` (the
    language-modelling substitute corpus, ``data.corpus``), which the official archive holds and the offline copy
    in ../shared/data leaves out.
    """
    out: dict[str, list] = {"train": [], "test": [], **({"unsup": []} if unsup else {})}
    try:
        with tarfile.open(path, "r:gz") as tar:
            for m in tar:
                hit = _MEMBER.match(m.name)
                if hit and m.isfile() and (hit[2] != "unsup" or unsup):
                    text = tar.extractfile(m).read().decode("utf-8")
                    out["unsup" if hit[2] == "unsup" else hit[1]].append((hit[2], int(hit[3]), text))
    except (tarfile.TarError, OSError, EOFError) as e:
        raise DataError(f"imdb: {path} is not a readable aclImdb archive ({e}); fetch it again with\n"
                        "  python scripts/prepare_data.py imdb [--from DIR]") from e
    for split, rows in out.items():
        if not rows:
            folder = "train/unsup" if split == "unsup" else f"{split}/{{pos,neg}}"
            raise DataError(f"imdb: {path} holds no aclImdb/{folder}/*.txt reviews" + (
                " (the official archive has 50k; the offline copy in ../shared/data leaves them out): fetch the "
                "official one with\n  python scripts/prepare_data.py imdb --data-dir <another data directory>"
                if split == "unsup" else ""))
        rows.sort(key=lambda r: (r[0], r[1]))
    return {s: ([(r[2],) for r in rows], [] if s == "unsup" else [IMDB.labels.index(r[0]) for r in rows])
            for s, rows in out.items()}


class ImdbDataModule(TokenizedDataModule):
    """IMDB sentiment (binary): train / seeded val from train / official test (see the module doc)."""

    def __init__(self, data_dir: str, tokenizer: str, task: str = "imdb", max_length: int = 512,
                 batch_size: int = 8, eval_batch_size: int | None = 32, num_workers: int = 0,
                 val_fraction: float = 0.1, seed: int = 0, download: bool = True, verify: bool = True,
                 limit_examples: int | None = None, cache_dir: str | None = None) -> None:
        super().__init__()
        if task != "imdb":
            raise ValueError(f"data.task={task!r}: the IMDB datamodule has the one task 'imdb'")
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"val_fraction={val_fraction} must lie in (0, 1)")
        self.task, self.n_labels, self.name, self.hub = IMDB, IMDB.n_labels, "imdb", IMDB_HUB
        self.data_dir, self.tokenizer_name, self.max_length = Path(data_dir), tokenizer, max_length
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or batch_size
        self.num_workers, self.val_fraction, self.seed = num_workers, val_fraction, seed
        self.download, self.verify, self.limit_examples = download, verify, limit_examples
        self.cache_dir = cache_dir
        self._archive: dict[str, tuple[list[tuple[str]], list[int]]] | None = None

    def files(self) -> dict[str, tuple[str, Source]]:
        return {"train": ("imdb", IMDB_SOURCE), "test": ("imdb", IMDB_SOURCE)}

    def read_local(self, split: str, path: Path) -> Dataset:
        if self._archive is None:
            self._archive = read_imdb(path)  # both splits at once: one pass over the archive
        return text_dataset(*self._archive.pop(split))

    def hub_columns(self) -> dict[str, str]:
        return {"text": TEXT, "label": LABEL}

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        enc = self.encode(self.sources())
        self._archive = None
        rng = random.Random(self.seed)
        order = list(range(len(enc["train"])))
        rng.shuffle(order)
        n_val = round(self.val_fraction * len(order))
        test_order = list(range(len(enc["test"])))
        rng.shuffle(test_order)  # so that limit_examples keeps both classes
        for split, (source, idx) in {"train": ("train", order[n_val:]), "val": ("train", order[:n_val]),
                                     "test": ("test", test_order)}.items():
            self.datasets[split] = enc[source].select(idx[: self.limit_examples] if self.limit_examples else idx)
