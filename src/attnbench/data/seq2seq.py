"""A seeded algorithmic sequence-to-sequence task that trains on a CPU in minutes and exercises every attention
position of an autoregressive encoder-decoder: encoder self (NS), decoder self (CS) and cross (CAB's causal cross,
CC, see ``models.seq2seq``).

CAB's real encoder-decoder tasks (TTS on LJSpeech with Transformer-TTS, Multi-News summarisation with a 4,096 /
400-token Transformer) need data and GPU time these machines do not have, and no corpus on disk gives honest
source/target pairs (GLUE and IMDB are classification sets). So the task is a transduction whose target can
only be produced by reading the source through cross-attention (the decoder sees nothing else of it):

- ``reverse``: target = the source reversed. Target token i needs source token n-1-i: the whole memory.
- ``sort``: target = the source sorted ascending. Every target token depends on the whole source.
- ``pairsum``: target_i = (source_i + source_{i-1}) mod V (source_{-1} = 0). A monotone, length-preserving
  transduction: target token i needs source tokens i-1 and i only (a local read of the memory).

Sequences: ``n`` uniform in [min_len, max_len] symbols drawn uniformly from V = ``n_symbols``; sources are
distinct across all splits (no test source is seen in training). Files (simple TSV, one pair a line, symbols as
space-separated integers 0..V-1, header ``Source<TAB>Target``)::

    <data_dir>/seq2seq/<folder>/{train,val,test}.tsv   + meta.json (the generator's parameters)

where ``<folder>`` names the parameters (``folder_name``: ``reverse`` for the defaults, else e.g.
``reverse-max_len12-n_train4000``), so data sets generated with other parameters sit side by side and README
commands run in any order. The files are written by ``python scripts/prepare_data.py seq2seq --generate --task
reverse`` or, with ``data.generate=true``, by the data module itself on first use. Token ids: PAD 0, BOS 1, EOS 2,
symbol s -> s + 3. Every example is padded to one length L = max_len + 1 on both sides (source + EOS; decoder input
BOS + target; labels target + EOS), so every batch has one shape.
"""

from __future__ import annotations

import csv
import inspect
import json
import logging
import os
import random
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import TensorDataset

from attnbench.data.base import SplitDataModule
from attnbench.data.catalog.seq2seq import ALIGNED, BOS_ID, EOS_ID, N_SPECIAL, PAD_ID, TASKS, vocab_size
from attnbench.data.download import DataError
from attnbench.data.lra.common import SPLITS

log = logging.getLogger(__name__)

__all__ = ["ALIGNED", "BOS_ID", "EOS_ID", "N_SPECIAL", "PAD_ID", "TASKS", "vocab_size"]  # the catalogue's facts
HEADER = ("Source", "Target")
GENERATOR_VERSION = 1


def target_of(task: str, src: list[int], n_symbols: int) -> list[int]:
    """The target of ``src`` (symbols 0..n_symbols-1) under ``task``."""
    if task == "reverse":
        return src[::-1]
    if task == "sort":
        return sorted(src)
    if task == "pairsum":
        return [(s + (src[i - 1] if i else 0)) % n_symbols for i, s in enumerate(src)]
    raise ValueError(f"task={task!r}; allowed: {', '.join(TASKS)}")


def generate(task: str, sizes: dict[str, int], n_symbols: int, min_len: int, max_len: int, seed: int
             ) -> dict[str, list[tuple[list[int], list[int]]]]:
    """Pairs per split (``sizes``: split -> count), sources distinct across splits; deterministic in ``seed``."""
    if task not in TASKS:
        raise ValueError(f"task={task!r}; allowed: {', '.join(TASKS)}")
    if not 1 <= min_len <= max_len or n_symbols < 2:
        raise ValueError(f"need 1 <= min_len <= max_len and n_symbols >= 2; got min_len={min_len}, "
                         f"max_len={max_len}, n_symbols={n_symbols}")
    space = sum(n_symbols ** n for n in range(min_len, max_len + 1))
    total = sum(sizes.values())
    if total > space // 2:
        raise ValueError(f"{total} distinct sources asked of a space of {space} (n_symbols={n_symbols}, lengths "
                         f"{min_len}..{max_len}): raise max_len or n_symbols, or ask for fewer")
    rng = random.Random(f"seq2seq/{task}/{seed}")
    seen: set[tuple[int, ...]] = set()
    out: dict[str, list[tuple[list[int], list[int]]]] = {}
    for split, n in sizes.items():
        pairs = []
        while len(pairs) < n:
            src = [rng.randrange(n_symbols) for _ in range(rng.randint(min_len, max_len))]
            if tuple(src) in seen:
                continue
            seen.add(tuple(src))
            pairs.append((src, target_of(task, src, n_symbols)))
        out[split] = pairs
    return out


def write_split(path: Path, pairs: list[tuple[list[int], list[int]]]) -> None:
    """``Source<TAB>Target`` TSV, symbols space-separated; written to a temporary file, then renamed."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w", newline="") as fh:
        w = csv.writer(fh, delimiter="\t", lineterminator="\n")
        w.writerow(HEADER)
        w.writerows((" ".join(map(str, s)), " ".join(map(str, t))) for s, t in pairs)
    tmp.replace(path)


def read_split(path: Path) -> list[tuple[list[int], list[int]]]:
    """The pairs of one TSV file (``write_split``'s format); errors name the file and line."""
    with path.open(newline="") as fh:
        rows = list(csv.reader(fh, delimiter="\t"))
    if not rows or tuple(rows[0]) != HEADER:
        raise DataError(f"{path}: first line must be the header {'<TAB>'.join(HEADER)}")
    pairs = []
    for i, row in enumerate(rows[1:], start=2):
        if len(row) != 2:
            raise DataError(f"{path}:{i}: expected 2 tab-separated fields, got {len(row)}")
        try:
            pairs.append(([int(t) for t in row[0].split()], [int(t) for t in row[1].split()]))
        except ValueError:
            raise DataError(f"{path}:{i}: symbols must be integers separated by spaces") from None
    return pairs


def params(task: str, n_symbols: int, min_len: int, max_len: int, n_train: int, n_val: int, n_test: int,
           seed: int) -> dict[str, int | str]:
    """What ``meta.json`` records: everything the files depend on."""
    return {"task": task, "n_symbols": n_symbols, "min_len": min_len, "max_len": max_len, "n_train": n_train,
            "n_val": n_val, "n_test": n_test, "seed": seed, "generator_version": GENERATOR_VERSION}


GENERATOR_KEYS = ("n_symbols", "min_len", "max_len", "n_train", "n_val", "n_test", "seed")


def non_defaults(meta: dict[str, int | str]) -> dict[str, int | str]:
    """The generator parameters of ``meta`` that differ from the data module's defaults."""
    defaults = inspect.signature(Seq2SeqDataModule).parameters
    return {k: meta[k] for k in GENERATOR_KEYS if meta[k] != defaults[k].default}


def folder_name(meta: dict[str, int | str]) -> str:
    """The folder of a generated data set: the task, then each non-default parameter as ``<name><value>``
    (``reverse``; ``sort-max_len12-seed3``)."""
    return "-".join([str(meta["task"]), *(f"{k}{v}" for k, v in non_defaults(meta).items())])


def prepare(root: Path, meta: dict[str, int | str], force: bool = False) -> Path:
    """Write ``root/<folder_name>/{train,val,test}.tsv`` and ``meta.json`` for ``meta`` (``params``); return the
    folder. A folder whose meta.json disagrees (edited, or another generator version) is an error unless
    ``force``."""
    folder = Path(root) / folder_name(meta)
    old = folder / "meta.json"
    if old.is_file() and not force:
        have = json.loads(old.read_text())
        if have == meta:
            return folder
        diff = {k: (have.get(k), meta[k]) for k in meta if have.get(k) != meta[k]}
        raise DataError(f"{folder} holds data generated with other parameters ({diff}, as (on disk, asked)); "
                        "regenerate with `python scripts/prepare_data.py seq2seq --generate --force ...` or use "
                        "another paths.data_dir")
    folder.mkdir(parents=True, exist_ok=True)
    sizes = {"train": int(meta["n_train"]), "val": int(meta["n_val"]), "test": int(meta["n_test"])}
    data = generate(str(meta["task"]), sizes, int(meta["n_symbols"]), int(meta["min_len"]), int(meta["max_len"]),
                    int(meta["seed"]))
    for split in SPLITS:
        write_split(folder / f"{split}.tsv", data[split])
    tmp = folder / f".meta.json.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(meta, indent=1) + "\n")
    tmp.replace(old)  # last: a folder with meta.json is complete
    return folder


def encode(pairs: list[tuple[list[int], list[int]]], length: int, n_symbols: int) -> tuple[Tensor, Tensor, Tensor]:
    """(src, tgt_in, labels), each int64 (N, length): src = symbols + EOS, tgt_in = BOS + target, labels =
    target + EOS, PAD after. Symbols outside 0..n_symbols-1 or a pair longer than ``length - 1`` raise."""
    n = len(pairs)
    src = torch.full((n, length), PAD_ID, dtype=torch.long)
    tgt_in, labels = src.clone(), src.clone()
    for i, (s, t) in enumerate(pairs):
        if max(len(s), len(t)) > length - 1:
            raise DataError(f"pair {i} has {len(s)} source / {len(t)} target symbols; at most {length - 1} fit")
        if any(not 0 <= x < n_symbols for x in (*s, *t)):
            raise DataError(f"pair {i} holds a symbol outside 0..{n_symbols - 1}")
        s_ids = [x + N_SPECIAL for x in s]
        t_ids = [x + N_SPECIAL for x in t]
        src[i, : len(s) + 1] = torch.tensor([*s_ids, EOS_ID])
        tgt_in[i, : len(t) + 1] = torch.tensor([BOS_ID, *t_ids])
        labels[i, : len(t) + 1] = torch.tensor([*t_ids, EOS_ID])
    return src, tgt_in, labels


class Seq2SeqDataModule(SplitDataModule):
    """Batches of (src, tgt_in, labels), each (B, max_len + 1) int64 (``encode``), from the task's TSV files."""

    def __init__(
        self, data_dir: str, task: str = "reverse", n_symbols: int = 10, min_len: int = 4, max_len: int = 16,
        n_train: int = 10000, n_val: int = 500, n_test: int = 1000, seed: int = 0, generate: bool = True,
        batch_size: int = 64, eval_batch_size: int | None = 250, num_workers: int = 0,
    ) -> None:
        super().__init__()
        if task not in TASKS:
            raise ValueError(f"data.task={task!r}; allowed: {', '.join(TASKS)}")
        self.root = Path(data_dir) / "seq2seq"
        self.meta = params(task, n_symbols, min_len, max_len, n_train, n_val, n_test, seed)
        self.task, self.n_symbols, self.length = task, n_symbols, max_len + 1
        self.generate = generate
        self.batch_size, self.num_workers = batch_size, num_workers
        self.eval_batch_size = eval_batch_size or batch_size

    def prepare_data(self) -> None:
        folder = self.root / folder_name(self.meta)
        if (folder / "meta.json").is_file() or self.generate:
            if not (folder / "meta.json").is_file():
                log.info("seq2seq: generating %s into %s", self.meta, folder)
            prepare(self.root, self.meta)
            return
        options = "".join(f" --{k.replace('_', '-')} {v}" for k, v in non_defaults(self.meta).items())
        raise DataError(f"seq2seq: {folder}/meta.json not found. Generate the data:\n"
                        f"  python scripts/prepare_data.py seq2seq --generate --task {self.task}{options} "
                        f"--data-dir {self.root.parent}\n  or set data.generate=true")

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        self.prepare_data()  # checks meta.json against the config (single process: cheap)
        folder = self.root / folder_name(self.meta)
        for split in SPLITS:
            self.datasets[split] = TensorDataset(*encode(read_split(folder / f"{split}.tsv"), self.length,
                                                         self.n_symbols))
