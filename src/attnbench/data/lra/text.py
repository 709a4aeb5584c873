"""LRA Text: IMDB sentiment at byte level, read from the aclImdb archive the project already fetches.

Where: the archive is the IMDB data set's own file, ``<data_dir>/imdb/aclImdb_v1.tar.gz``
(``python scripts/prepare_data.py imdb``), not a copy under ``lra/``: ``INFO.folder = "../imdb"``, so the
contract's root ``<data_dir>/lra/../imdb`` is the IMDB folder. It is read with :func:`attnbench.data.imdb.read_imdb`.

Encoding, as the official pipeline (TFDS ``imdb_reviews`` + ``tfds.deprecated.text.ByteTextEncoder()`` without
additional tokens): the review's UTF-8 bytes, stripped of leading and trailing ASCII whitespace (the TFDS builder
does ``f.read().strip()``), byte ``b`` -> id ``b + 1`` (``pad_incr``; id 0 = padding, no EOS or other reserved id),
vocabulary 257; truncated to ``max_len`` (official config 1000; the paper's 4K: ``data.max_len=4000``) and
right-padded with 0. Measured: at length 1000 all 50,000 rows equal those of TFDS 4.9.10's own ``imdb_reviews``
example generator + ``ByteTextEncoder`` run on the same archive (rows matched by file name).

Splits: official by default (``val_fraction=None``): train = the 25k training reviews, **val = test = the 25k test
reviews** (IMDB has no validation split; LRA validates on test). ``val_fraction=f`` instead holds out a seeded
fraction of the training reviews for validation, drawn as :class:`attnbench.data.imdb.ImdbDataModule` draws it (same
seed -> same reviews); test stays the official test set. Rows are in ``read_imdb``'s order (neg then pos, by file id).
"""

from __future__ import annotations

import functools
import os
import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from attnbench.data.catalog.imdb import IMDB_SOURCE
from attnbench.data.catalog.lra import LRA_TASKS
from attnbench.data.download import locate
from attnbench.data.imdb import read_imdb
from attnbench.data.lra.common import PAD_ID, SPLITS

INFO = LRA_TASKS["text"]  # the facts live in data.catalog.lra
BYTE_OFFSET = 1  # ByteTextEncoder: byte b -> id b + 1, so that id 0 stays free for padding


def byte_ids(docs: Sequence[bytes], max_len: int) -> Tensor:
    """ByteTextEncoder ids of each document, truncated to ``max_len`` and right-padded with PAD_ID.

    -> int64 (len(docs), max_len); ids in [1, 256], padding 0.
    """
    if max_len < 1:
        raise ValueError(f"max_len={max_len} must be >= 1")
    out = np.full((len(docs), max_len), PAD_ID, dtype=np.int64)  # (N, L)
    for i, doc in enumerate(docs):
        ids = np.frombuffer(doc[:max_len], dtype=np.uint8)
        out[i, : ids.size] = ids.astype(np.int64) + BYTE_OFFSET  # widen first: 255 + 1 must not wrap
    return torch.from_numpy(out)


@functools.lru_cache(maxsize=1)
def _reviews(path: str, mtime_ns: int, size: int) -> dict[str, tuple[list[bytes], list[int]]]:
    """The archive's reviews as the official bytes (UTF-8, stripped), read once per process and file version."""
    data = read_imdb(Path(path))
    return {s: ([t[0].encode("utf-8").strip() for t in texts], labels) for s, (texts, labels) in data.items()}


def _val_split(n: int, val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(train rows, val rows) of the training reviews: ImdbDataModule's seeded draw."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction={val_fraction} must lie in (0, 1), or be None for the official protocol "
                         "(val = the test split)")
    order = list(range(n))
    random.Random(seed).shuffle(order)
    n_val = round(val_fraction * n)
    return order[n_val:], order[:n_val]


def load_split(root: Path, split: str, max_len: int, limit: int | None = None, val_fraction: float | None = None,
               seed: int = 0, verify: bool = True) -> tuple[Tensor, Tensor]:
    """Byte ids int64 (N, max_len) and labels int64 (N,) (0 = neg, 1 = pos) of ``split`` (see the module doc).

    ``root`` is ``<data_dir>/lra/../imdb`` (or ``<data_dir>/imdb``); ``verify`` checks the archive's digest.
    """
    if split not in SPLITS:
        raise ValueError(f"split={split!r}; allowed: {', '.join(SPLITS)}")
    data_dir = Path(os.path.normpath(root)).parent  # <data_dir>/lra/../imdb -> <data_dir>
    path = locate("imdb", IMDB_SOURCE, data_dir, check=verify)
    st = path.stat()
    reviews = _reviews(str(path), st.st_mtime_ns, st.st_size)
    if split == "test" or (split == "val" and val_fraction is None):
        docs, labels = reviews["test"]
    else:
        docs, labels = reviews["train"]
        if val_fraction is not None:
            rows = _val_split(len(labels), val_fraction, seed)[split == "val"]
            docs, labels = [docs[i] for i in rows], [labels[i] for i in rows]
    docs, labels = docs[:limit], labels[:limit]  # limit None: all
    return byte_ids(docs, max_len), torch.tensor(labels, dtype=torch.int64)
