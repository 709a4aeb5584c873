"""Long ListOps (LRA; Nangia & Bowman 2018's ListOps at length 500-2000): a seeded generator and a reader of the
official files.

Generator (``lra_benchmarks/data/listops.py``, followed call for call): a tree is drawn from depth 1; below
``max_depth`` a node is a leaf (a uniform digit 0-9) with probability 1 - VALUE_P = 0.75, else an operator node
with ``randint(2, max_args)`` children drawn first, then its operator uniform from MIN, MAX, MED, SM. Its length
counts operators, digits and closing ``]`` tokens; a tree is kept when ``min_length < length < max_length``
(strictly: 501-1999 by default) and was not drawn before, until train + val + test unique trees exist.
Semantics: MIN, MAX; MED = ``int(np.median)`` (even count: the two middle values' mean, truncated); SM = sum mod 10.
Serialisation puts every (left, right) pair of the left-nested tree in parentheses: ``[MAX 2 9 ]`` is written
``( ( ( [MAX 2 ) 9 ) ] )``. Files: ``basic_{train,val,test}.tsv``, header ``Source<TAB>Target``.

Differences from the official script, none in the distribution: it never seeds ``random`` and splits the trees in
``set`` iteration order (hash order), so its files cannot be regenerated; here ``random.Random(seed)`` draws the
same call sequence as the official script after ``random.seed(seed)`` and the splits are taken in drawing order
(first ``n_train`` unique trees -> train, next ``n_val`` -> val, last ``n_test`` -> test); checked against the official
script by ``scripts/official/compare_listops.py``.

Reader (``lra_benchmarks/listops/input_pipeline.py`` since the March 2021 fix): parentheses dropped, ``]`` kept as a
token (the official renames it ``X`` because its tokenizer drops punctuation), whitespace tokens mapped to ids,
truncated and padded to ``max_len`` (2000). The official ids come from ``list(set(...))`` of the tokens seen in
the validation file, so their order is arbitrary; here the map is fixed: padding 0, digits ``0``-``9`` -> 1-10,
``[MIN`` 11, ``[MAX`` 12, ``[MED`` 13, ``[SM`` 14, ``]`` 15 (``VOCAB``). A token outside the 15 is an error (the
official sends it to an out-of-vocabulary id; the official files hold none).
"""

from __future__ import annotations

import csv
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from attnbench.data.catalog.lra import LRA_TASKS
from attnbench.data.download import DataError
from attnbench.data.lra.common import PAD_ID, SPLITS

INFO = LRA_TASKS["listops"]  # the facts live in data.catalog.lra

OPERATORS = ("[MIN", "[MAX", "[MED", "[SM")  # the official order (FIRST and LAST are disabled there)
END = "]"
VALUE_P = 0.25  # probability that a node above max_depth is an operator
VOCAB = (*map(str, range(10)), *OPERATORS, END)  # ids 1..15 in this order; 0 = PAD_ID
TOKEN_ID = {t: i + 1 for i, t in enumerate(VOCAB)}
HEADER = ("Source", "Target")
FILES = {split: f"basic_{split}.tsv" for split in SPLITS}
COMMAND = "python scripts/prepare_data.py listops --generate --data-dir <data_dir>"


@dataclass(frozen=True)
class ListOpsSpec:
    """The generator's options; the defaults are the official flags."""

    n_train: int = 96_000
    n_val: int = 2_000
    n_test: int = 2_000
    max_depth: int = 10
    max_args: int = 10
    min_length: int = 500  # exclusive
    max_length: int = 2_000  # exclusive

    def __post_init__(self) -> None:
        for k in ("n_train", "n_val", "n_test"):
            if getattr(self, k) < 0:
                raise ValueError(f"listops: {k}={getattr(self, k)} must be >= 0")
        if self.max_depth < 1 or self.max_args < 2:
            raise ValueError(f"listops: max_depth={self.max_depth} must be >= 1 and max_args={self.max_args} >= 2")
        if not 0 <= self.min_length < self.max_length - 1:
            raise ValueError(f"listops: no length lies strictly between min_length={self.min_length} and "
                             f"max_length={self.max_length}")


# ----------------------------------------------------------------------------- generator
def _apply(op: str, args: list[int]) -> int:
    """The official ``to_value`` of a saturated operator."""
    if op == "[MIN":
        return min(args)
    if op == "[MAX":
        return max(args)
    if op == "[MED":  # int(np.median(args)): the middle value, or the two middle values' mean truncated
        s, n = sorted(args), len(args)
        return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) // 2  # digits >= 0: // truncates
    if op == "[SM":
        return sum(args) % 10
    raise ValueError(f"listops: unknown operator {op!r}; allowed: {', '.join(OPERATORS)}")


def _tree(rng: random.Random, depth: int, spec: ListOpsSpec) -> tuple[str, int, int]:
    """One (sub)tree as the official ``generate_tree`` draws it: (serialised string, value, length)."""
    r = rng.random() if depth < spec.max_depth else 1.0
    if r > VALUE_P:
        v = rng.choice(range(10))  # the official random.choice(VALUES), VALUES = range(10)
        return str(v), v, 1
    n_args = rng.randint(2, spec.max_args)
    children = [_tree(rng, depth + 1, spec) for _ in range(n_args)]  # children before the operator, as official
    op = rng.choice(OPERATORS)
    s = f"( {op} {children[0][0]} )"  # left-nested pairs: ((((op, c1), c2), ..., ck), END)
    for c in children[1:]:
        s = f"( {s} {c[0]} )"
    return f"( {s} {END} )", _apply(op, [c[1] for c in children]), 2 + sum(c[2] for c in children)


def generate(spec: ListOpsSpec = ListOpsSpec(), seed: int = 0) -> dict[str, list[tuple[str, int]]]:
    """``{"train"|"val"|"test": [(source, target), ...]}``: unique trees of the accepted lengths, split in
    drawing order (see the module doc). CPython draws the official 100k in about 5 minutes."""
    rng, kept = random.Random(seed), {}
    total = spec.n_train + spec.n_val + spec.n_test
    while len(kept) < total:
        s, value, length = _tree(rng, 1, spec)
        if spec.min_length < length < spec.max_length and s not in kept:
            kept[s] = value
    rows = list(kept.items())
    return {"train": rows[:spec.n_train], "val": rows[spec.n_train:spec.n_train + spec.n_val],
            "test": rows[spec.n_train + spec.n_val:]}


def write_tsv(path: Path, rows: list[tuple[str, int]]) -> None:
    """The official layout: ``csv.writer`` with tab delimiter (so ``\r\n`` line ends), header ``Source<TAB>Target``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f, delimiter="\t")
        w.writerow(HEADER)
        w.writerows(rows)


def write_splits(root: Path, spec: ListOpsSpec = ListOpsSpec(), seed: int = 0) -> dict[str, Path]:
    """Generate and write ``root/basic_{train,val,test}.tsv``; returns the paths by split."""
    data = generate(spec, seed)
    paths = {split: Path(root) / FILES[split] for split in SPLITS}
    for split, rows in data.items():
        write_tsv(paths[split], rows)
    return paths


# ----------------------------------------------------------------------------- reader
def _rows(path: Path) -> Iterator[tuple[int, str, str]]:
    """(line number, source, target) of an official TSV, the header checked."""
    with open(path, newline="") as f:
        header = f.readline().rstrip("\r\n")
        if tuple(header.split("\t")) != HEADER:
            raise DataError(f"listops: {path} starts with {header[:60]!r}; the official files start with the "
                            f"header 'Source\\tTarget'")
        for n, line in enumerate(f, start=2):
            line = line.rstrip("\r\n")
            if not line:
                continue
            parts = line.split("\t")
            if len(parts) != 2:
                raise DataError(f"listops: {path} line {n} has {len(parts)} tab-separated fields, expected 2")
            yield n, parts[0], parts[1]


def tokenize(source: str) -> list[int]:
    """Ids of one official source string: parentheses dropped, ``]`` kept, ``VOCAB`` order (see the module doc)."""
    tokens = source.replace("(", " ").replace(")", " ").split()
    try:
        return list(map(TOKEN_ID.__getitem__, tokens))
    except KeyError as e:
        bad = e.args[0]
        raise ValueError(f"listops: token {bad!r} is not one of the 15 ListOps tokens {' '.join(VOCAB)}") from None


def read_split(path: Path, max_len: int, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(N, max_len) uint8 ids (truncated, padded with PAD_ID) and (N,) int64 targets of one official TSV (its first
    ``limit`` rows; None: all)."""
    ids, targets = [], []
    for n, source, target in _rows(path):
        if limit is not None and len(ids) >= limit:
            break
        try:
            ids.append(tokenize(source)[:max_len])
            targets.append(int(target))
        except ValueError as e:
            raise DataError(f"listops: {path} line {n}: {e}") from None
    tokens = np.full((len(ids), max_len), PAD_ID, dtype=np.uint8)
    for i, row in enumerate(ids):
        tokens[i, :len(row)] = row
    labels = np.asarray(targets, dtype=np.int64)
    if labels.size and not 0 <= labels.min() <= labels.max() < INFO.num_classes:
        raise DataError(f"listops: {path} targets span [{labels.min()}, {labels.max()}], outside 0-9")
    return tokens, labels


def load_split(root: Path, split: str, max_len: int, limit: int | None = None) -> tuple[Tensor, Tensor]:
    """Tokens int64 (N, max_len) and labels int64 (N,) of ``root/basic_<split>.tsv`` (the LRA contract)."""
    if split not in SPLITS:
        raise ValueError(f"listops: split={split!r}; allowed: {', '.join(SPLITS)}")
    if max_len < 1:
        raise ValueError(f"listops: max_len={max_len} must be >= 1")
    path = Path(root) / FILES[split]
    if not path.is_file():
        data_dir = Path(root).parent.parent  # root = <data_dir>/lra/listops
        raise DataError(f"listops: {path} not found. ListOps is generated, not downloaded: write the official "
                        f"basic_{{train,val,test}}.tsv files (96k/2k/2k; about 5 minutes) with\n"
                        f"  {COMMAND.replace('<data_dir>', str(data_dir))}\n"
                        f"  (or copy the official lra_release/listops-1000/basic_*.tsv into {Path(root)})")
    tokens, labels = read_split(path, max_len, limit)
    return torch.from_numpy(tokens).long(), torch.from_numpy(labels)
