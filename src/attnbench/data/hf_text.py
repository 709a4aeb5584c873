"""Text classification sets (GLUE, IMDB) as 🤗 ``datasets.Dataset``s, tokenized once and cached.

Where the rows come from, first that applies:

1. the local copy under ``data_dir`` (the files ``scripts/prepare_data.py`` fetches), checked against the catalogue's
   digests (``verify``) and read without touching the network;
2. with ``download=true``, the Hub's copy at a pinned revision (``load_dataset(repo, config, revision=...)``); with
   ``HF_DATASETS_OFFLINE=1`` or ``HF_HUB_OFFLINE=1`` it is read from the datasets cache only;
3. else one ``DataError`` naming both ways (the files and the command that fetches them, the Hub id and revision).

Tokenization is ``Dataset.map(batched=True)`` into ``<cache_dir>/<file>-<key>.arrow``; the key hashes what the
tokens depend on: the tokenizer (vocabulary, normalizer, pre-tokenizer, post-processor), ``max_length``, the data
file and split, and the source (the local file's sha256, or the Hub repo, revision, config and split). A run whose
key is cached memory-maps that file and tokenizes nothing. ``cache_dir`` defaults to
``<datasets cache>/attnbench_tokens`` (``HF_DATASETS_CACHE``; the data directory may be read-only). Batches are
``with_format("torch")`` rows padded per batch (transformers' ``DataCollatorWithPadding``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch.utils.data import DataLoader

from attnbench.data.base import SplitDataModule
from attnbench.data.catalog import Source, TextTask
from attnbench.data.catalog.source import HubSource
from attnbench.data.download import sha256sum, verify
from attnbench.errors import DataError
from attnbench.pretrained import load_tokenizer

if TYPE_CHECKING:
    from datasets import Dataset

log = logging.getLogger(__name__)

TEXT, PAIR, LABEL = "text", "text_pair", "label"  # the columns of a source split before tokenization
OFFLINE_ENV = ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE")
TOKENS_VERSION = 1  # part of the cache key: raise it when the tokenized columns change


def offline() -> bool:
    """True when HF_DATASETS_OFFLINE or HF_HUB_OFFLINE is set (1/ON/YES/TRUE): the Hub is read from the cache only."""
    return any(os.environ.get(k, "").upper() in {"1", "ON", "YES", "TRUE"} for k in OFFLINE_ENV)


def text_dataset(texts: list[tuple[str, ...]], labels: list) -> Dataset:
    """A source split: one or two text columns (``text``, ``text_pair``) and ``label``."""
    from datasets import Dataset

    columns = [list(c) for c in zip(*texts, strict=True)] or [[]]  # one list per text column
    if len(columns) > 2:
        raise ValueError(f"{len(columns)} text columns; a text classifier takes one or a pair")
    return Dataset.from_dict({TEXT: columns[0], **({PAIR: columns[1]} if len(columns) == 2 else {}), LABEL: labels})


def tokenizer_fingerprint(tok: Any) -> str:
    """sha256 of what a tokenizer's ids depend on: its class, input names and, for a fast tokenizer, the backend's
    state (vocabulary, normalizer, pre-tokenizer, post-processor; not its truncation or padding, which calls change),
    else the vocabulary."""
    from transformers import PreTrainedTokenizerFast

    if isinstance(tok, PreTrainedTokenizerFast):
        state = json.loads(tok.backend_tokenizer.to_str())
        state.pop("truncation", None)
        state.pop("padding", None)
    else:
        state = {"vocab": sorted(tok.get_vocab().items())}
    state |= {"class": type(tok).__name__, "inputs": list(tok.model_input_names)}
    return hashlib.sha256(json.dumps(state, sort_keys=True).encode()).hexdigest()


def cache_key(tokenizer: str, max_length: int, file: str, split: str, origin: str) -> str:
    """16 hex digits of the sha256 of everything the tokenized split depends on (see the module doc)."""
    parts = [TOKENS_VERSION, tokenizer, max_length, file, split, origin]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]


def default_cache_dir() -> Path:
    from datasets import config

    return Path(config.HF_DATASETS_CACHE) / "attnbench_tokens"


@contextmanager
def no_progress_bars() -> Iterator[None]:
    """datasets' progress bars off for a block (the run logs its own lines)."""
    import datasets

    was = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if was:
            datasets.enable_progress_bars()


def tokenize(ds: Dataset, tok: Any, max_length: int, path: Path) -> Dataset:
    """``ds`` (text[, text_pair], label) -> input_ids, attention_mask (token_type_ids), labels; written to ``path``."""
    pair = PAIR in ds.column_names

    def encode(batch: dict[str, list]) -> dict[str, list]:
        enc = tok(batch[TEXT], batch[PAIR] if pair else None, truncation=True, max_length=max_length)
        return {**enc, "labels": batch[LABEL]}

    path.parent.mkdir(parents=True, exist_ok=True)
    with no_progress_bars():  # map writes a temporary file and renames it: no half-written cache at ``path``
        return ds.map(encode, batched=True, remove_columns=ds.column_names, cache_file_name=str(path),
                      load_from_cache_file=False, new_fingerprint=path.stem)


@dataclass(frozen=True)
class RawSplit:
    """A source split before tokenization: ``origin`` (part of the cache key) says where it comes from, a local
    file's sha256 or the Hub repo@revision/config/split; ``read`` builds it, called only when its tokens are not
    cached."""

    origin: str
    read: Callable[[], Dataset]


class TokenizedDataModule(SplitDataModule):
    """The text datamodules: their source splits from the local copy or the Hub, tokenized with the model's
    tokenizer through the cache (see the module doc); batches padded per batch.

    A subclass names its local files (``files``: source split -> (catalogue key, Source)), reads one
    (``read_local``), and says where the Hub has it (``hub``, ``hub_split``, ``hub_columns``: the Hub's column ->
    ``text`` / ``text_pair`` / ``label``).
    """

    name: str  # log lines and errors: glue_rte, imdb
    task: TextTask
    hub: HubSource
    data_dir: Path
    tokenizer_name: str
    max_length: int
    download: bool
    verify: bool
    cache_dir: str | None

    def __init__(self) -> None:
        super().__init__()
        self._raw: dict[str, RawSplit] | None = None

    def files(self) -> dict[str, tuple[str, Source]]:
        raise NotImplementedError

    def read_local(self, split: str, path: Path) -> Dataset:
        raise NotImplementedError

    def hub_split(self, split: str) -> str:
        return split

    def hub_columns(self) -> dict[str, str]:
        raise NotImplementedError

    def prepare_data(self) -> None:
        self.sources()

    def sources(self) -> dict[str, RawSplit]:
        """The source splits: the verified local copy when all its files are there, else the Hub's (with
        ``download``), else the error naming both."""
        if self._raw is not None:
            return self._raw
        files = self.files()
        paths = {split: self.data_dir / src.path for split, (_, src) in files.items()}
        missing = list(dict.fromkeys(p for p in paths.values() if not p.is_file()))
        if not missing:
            digests: dict[Path, str] = {}
            for split, (key, src) in files.items():
                path = paths[split]
                if path not in digests:
                    digests[path] = sha256sum(path)
                    if self.verify and digests[path] not in src.sha256:
                        verify(key, src, path)  # an md5, a digest not pinned yet, or the error
            self._raw = {split: RawSplit(f"file:{files[split][1].path}:sha256:{digests[path]}",
                                         partial(self.read_local, split, path)) for split, path in paths.items()}
        elif not self.download:
            raise self.no_data(missing, "not tried (data.download=false)")
        else:
            log.info("%s: %s not found: the Hub's copy, %s", self.name, ", ".join(map(str, missing)), self.hub)
            self._raw = {split: RawSplit(
                f"hub:{self.hub.repo}@{self.hub.revision}/{self.hub.config}/{self.hub_split(split)}",
                partial(self._read_hub, split, missing)) for split in files}
        return self._raw

    def no_data(self, missing: list[Path], hub_why: str) -> DataError:
        keys = " ".join(dict.fromkeys(key for key, _ in self.files().values()))
        return DataError(
            f"{self.name}: no data, neither of the two ways to it is there.\n"
            f"  local copy: {', '.join(map(str, missing))} not found; fetch it (or copy it from DIR) with\n"
            f"    python scripts/prepare_data.py {keys} [--from DIR] --data-dir {self.data_dir}\n"
            f"    or point paths.data_dir (env DATA_DIR) at a folder holding it.\n"
            f"  the Hub: {self.hub}: {hub_why}. It is read with data.download=true when online, or from the "
            f"datasets cache once downloaded (HF_DATASETS_OFFLINE=1 / HF_HUB_OFFLINE=1 keep it off the network)."
        )

    def _read_hub(self, split: str, missing: list[Path]) -> Dataset:
        from datasets import ClassLabel, load_dataset

        hub_split = self.hub_split(split)
        try:
            ds = load_dataset(self.hub.repo, self.hub.config, revision=self.hub.revision, split=hub_split)
        except OSError as e:  # ConnectionError (offline, unreachable), FileNotFoundError (no such repo / revision)
            why = "offline and not in the datasets cache" if offline() else "could not be loaded"
            msg = str(e).splitlines()[0][:300] if str(e) else ""
            raise self.no_data(missing, f"{why} (split {hub_split}: {type(e).__name__}: {msg})") from e
        label = ds.features.get("label")
        if isinstance(label, ClassLabel) and label.num_classes != self.task.n_labels:
            raise DataError(f"{self.name}: {self.hub} split {hub_split} has {label.num_classes} classes "
                            f"({label.names}); the task has {self.task.n_labels} ({self.task.labels})")
        cols = self.hub_columns()
        return ds.select_columns(list(cols)).rename_columns({k: v for k, v in cols.items() if k != v})

    def encode(self, raw: dict[str, RawSplit]) -> dict[str, Dataset]:
        """Each source split tokenized (or memory-mapped from the cache), formatted as torch tensors."""
        from datasets import Dataset

        tok = self._tokenizer()
        tok_id = tokenizer_fingerprint(tok)
        cache = Path(self.cache_dir) if self.cache_dir else default_cache_dir()
        keys = {split: key for split, (key, _) in self.files().items()}
        shared = Counter(keys.values())
        out: dict[str, Dataset] = {}
        cached, made = [], []
        start = time.perf_counter()
        for split, source in raw.items():
            file = keys[split] + (f"_{split}" if shared[keys[split]] > 1 else "")
            path = cache / f"{file}-{cache_key(tok_id, self.max_length, file, split, source.origin)}.arrow"
            if path.is_file():
                ds = Dataset.from_file(str(path))
                cached.append(f"{split} {len(ds)}")
            else:
                ds = tokenize(source.read(), tok, self.max_length, path)
                made.append(f"{split} {len(ds)}")
            out[split] = ds.with_format("torch")
        how = f"tokenizer {self.tokenizer_name}, max_length {self.max_length}"
        if made:
            origin = "the Hub" if next(iter(raw.values())).origin.startswith("hub:") else str(self.data_dir)
            log.info("%s: tokenized %s examples (%s) from %s in %.1f s; cached in %s", self.name, ", ".join(made),
                     how, origin, time.perf_counter() - start, cache)
        if cached:
            log.info("%s: %s examples from the tokenization cache (%s): %s", self.name, ", ".join(cached), how, cache)
        return out

    def _loader(self, split: str) -> DataLoader:
        train = split == "train"
        return DataLoader(self.datasets[split], batch_size=self.batch_size if train else self.eval_batch_size,
                          shuffle=train, num_workers=self.num_workers, collate_fn=self.collate,
                          persistent_workers=self.num_workers > 0)

    def _tokenizer(self) -> Any:
        tok = load_tokenizer(self.tokenizer_name)
        self.collate = _collator(tok)
        return tok


def _collator(tok: Any) -> Callable:
    from transformers import DataCollatorWithPadding

    return DataCollatorWithPadding(tok, return_tensors="pt")
