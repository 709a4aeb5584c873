"""LRA Retrieval: do two ACL Anthology Network papers have a citation link? Byte-level, two towers.

Files (LRA's release; not on these machines): ``<data_dir>/lra/retrieval/new_aan_pairs.{train,eval,test}.tsv``
(splits train / val / test), copied from ``lra_release/tsv_data/`` inside
https://storage.googleapis.com/long-range-arena/lra_release.gz (``gs://long-range-arena/lra_release``; the member
path is the one third-party loaders use, not checked here). Format, as the official ``matching/input_pipeline.py``
reads it: one pair per line, five tab-separated fields ``label, id1, id2, text1, text2``, no header, no quoting
(``use_quote_delim=False``: quote characters are text). The label column is read as a float and cast to int
(``"1"`` and ``"1.0"`` both give 1); we accept only values equal to 0 or 1.

Encoding, as the official pipeline: each document's first 10,000 bytes through ``ByteTextEncoder`` (byte b ->
b + 1, see :func:`attnbench.data.lra.text.byte_ids`), truncated to ``max_len`` (official 4000 per document) and
right-padded with 0. Tokens (N, 2, max_len): [:, 0] = text1, [:, 1] = text2. Measured: equal to TF 2.21's
``make_csv_dataset`` with the official arguments + ``ByteTextEncoder`` on a file with quotes, CRLF, non-UTF-8
bytes, ``0.0``/``1.0`` labels and a 12,000-byte document.

Memory: the contract's int64 makes the training split 147k x 2 x 4000 x 8 B ~ 9.4 GB at the official length.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from attnbench.data.catalog.lra import LRA_TASKS
from attnbench.data.download import DataError
from attnbench.data.lra.common import SPLITS
from attnbench.data.lra.text import byte_ids

INFO = LRA_TASKS["retrieval"]  # the facts live in data.catalog.lra
FILES = {"train": "new_aan_pairs.train.tsv", "val": "new_aan_pairs.eval.tsv", "test": "new_aan_pairs.test.tsv"}
RELEASE_URL = "https://storage.googleapis.com/long-range-arena/lra_release.gz"
RELEASE_MEMBER_DIR = "lra_release/tsv_data"  # where the three files lie inside the release archive
DOC_BYTES = 10_000  # the official pipeline encodes s[:10000] before truncating to max_len


def missing_message(root: Path, split: str) -> str:
    """What is missing, where to put it and where it comes from."""
    names = ", ".join(FILES.values())
    return (f"retrieval: {root / FILES[split]} not found (split {split!r}). The AAN pairs come only with LRA's "
            f"release, which is not on these machines:\n"
            f"  1. download {RELEASE_URL} (gs://long-range-arena/lra_release; a gzipped tar)\n"
            f"  2. copy {names} from {RELEASE_MEMBER_DIR}/ inside it into {root}/, e.g.\n"
            f"     tar -xzf lra_release.gz {RELEASE_MEMBER_DIR} && cp {RELEASE_MEMBER_DIR}/new_aan_pairs.*.tsv "
            f"{root}/\n"
            f"  or point paths.data_dir (env DATA_DIR) at a folder holding lra/{INFO.dir}/{FILES[split]}")


def _label(field: bytes, path: Path, line_no: int) -> int:
    try:
        value = float(field)
    except ValueError:
        value = float("nan")
    if value not in (0.0, 1.0):
        raise DataError(f"retrieval: {path}:{line_no}: label {field[:20]!r} is not 0 or 1")
    return int(value)


def read_pairs(path: Path, keep: int, limit: int | None = None) -> tuple[list[bytes], list[bytes], list[int]]:
    """(text1 prefixes, text2 prefixes, labels) of an AAN pairs TSV (its first ``limit`` pairs; None: all), each
    document cut to its first ``keep`` bytes."""
    first, second, labels = [], [], []
    with open(path, "rb") as f:
        for line_no, line in enumerate(f, 1):
            if limit is not None and len(labels) >= limit:
                break
            line = line.rstrip(b"\r\n")
            if not line:
                continue
            fields = line.split(b"\t")
            if len(fields) != 5:
                raise DataError(f"retrieval: {path}:{line_no} has {len(fields)} tab-separated fields; expected 5 "
                                "(label, id1, id2, text1, text2)")
            labels.append(_label(fields[0], path, line_no))
            first.append(fields[3][:keep])
            second.append(fields[4][:keep])
    if not labels:
        raise DataError(f"retrieval: {path} holds no pairs")
    return first, second, labels


def load_split(root: Path, split: str, max_len: int, limit: int | None = None) -> tuple[Tensor, Tensor]:
    """Byte ids int64 (N, 2, max_len) and labels int64 (N,) (1 = citation link) of ``split``."""
    if split not in SPLITS:
        raise ValueError(f"split={split!r}; allowed: {', '.join(SPLITS)}")
    path = Path(root) / FILES[split]
    if not path.is_file():
        raise DataError(missing_message(Path(root), split))
    first, second, labels = read_pairs(path, min(DOC_BYTES, max_len), limit)
    tokens = torch.stack([byte_ids(first, max_len), byte_ids(second, max_len)], dim=1)  # (N, 2, L)
    return tokens, torch.tensor(labels, dtype=torch.int64)
