"""Language-modelling data (CAB's LM and MLM tasks): a text corpus as one token stream cut into contiguous blocks.

Corpora (``data.name``, see :mod:`attnbench.data.catalog.corpus`):

- ``pg19``: CAB's corpus, each split a 🤗 ``datasets.Dataset`` of books (``text`` column, :func:`load_pg19`),
  first that applies: the local copy, ``<data_dir>/pg19/{train,validation,test}/<id>.txt`` (the layout of
  ``gs://deepmind-gutenberg``; ``python scripts/prepare_data.py pg19`` fetches it) or Parquet files with a ``text``
  column (the Hugging Face copies ``deepmind/pg19`` / ``emozilla/pg19``:
  ``<data_dir>/pg19/data/{train,validation,test}-*.parquet``), read by ``load_dataset("text" | "parquet")``
  without network; with ``download=true`` the Hub's copy (``catalog.corpus.PG19_HUB``: repo and revision); else
  one error naming both ways. Not on these machines. Each split is held in memory as one int16 stream: fine for
  validation and test (50 / 100 books), about 22 GB for the 11 GB of training text (a memory-mapped token cache
  would be the next step at CAB's scale). The byte tokens are not cached: encoding is a copy of the UTF-8 bytes.
- ``imdb_unsup``: the substitute corpus that runs here: the 50k unlabelled reviews of the aclImdb archive
  (``aclImdb/train/unsup``), split by a seeded shuffle of the reviews into train / val / test
  (``val_fraction`` and ``test_fraction`` of the reviews, the rest for training).
- ``imdb_labelled``: the texts of the 50k labelled reviews (train and test folders pooled, labels unused), split
  the same way: the substitute the offline copy of the archive holds (it has no ``unsup`` folder).

Tokenisation: bytes of the UTF-8 text (ids 0..255) plus end-of-document and [MASK] (``catalog.corpus.BYTE``):
nothing to download, no unknown token, and no lossy normalisation (a WordPiece vocabulary such as MiniLM's
lower-cases and strips accents, so its "text" is not the corpus). Perplexity is then per byte, comparable between
attentions on one corpus, not with CAB's (GPT-2 BPE tokens on PG-19).

Blocks: each split's documents, each followed by end-of-document, in one stream, cut into windows of
``block_len + 1`` tokens starting every ``block_len`` tokens (consecutive windows share one token), the
remainder dropped. The causal LM reads ``window[:-1]`` and predicts ``window[1:]``, so every token after the
first is predicted once; the MLM reads ``window[:-1]`` (contiguous, non-overlapping blocks). Masking (RoBERTa's,
dynamic per batch) is :func:`mask_tokens`, called by the task module.
"""

from __future__ import annotations

import base64
import json
import logging
import random
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from attnbench.data.base import SplitDataModule
from attnbench.data.catalog.corpus import CORPORA, PG19_HUB, PG19_SPLITS, VOCABS, Vocab
from attnbench.data.catalog.imdb import IMDB_SOURCE
from attnbench.data.download import DataError, download, fetch, locate, md5sum
from attnbench.data.hf_text import TEXT, no_progress_bars, offline

if TYPE_CHECKING:
    from datasets import Dataset as HFDataset

log = logging.getLogger(__name__)
SPLITS = ("train", "val", "test")
IGNORE = -100  # label of the positions that carry no loss (cross_entropy's ignore_index)


# ----------------------------------------------------------------------------- tokenisation
class ByteTokenizer:
    """UTF-8 bytes as ids 0..255; ``decode`` drops the specials and inverts ``encode`` exactly."""

    vocab: Vocab = VOCABS["byte"]

    def encode(self, text: str) -> np.ndarray:
        """(n_bytes,) int16 ids."""
        return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int16)

    def decode(self, ids: Sequence[int] | Tensor | np.ndarray) -> str:
        ids = np.asarray(ids)
        return bytes(ids[ids < self.vocab.n_regular].astype(np.uint8).tolist()).decode("utf-8", errors="replace")


TOKENIZERS = {"byte": ByteTokenizer}


def make_tokenizer(name: str) -> ByteTokenizer:
    """The tokeniser ``data.tokenizer`` names."""
    if name not in TOKENIZERS:
        raise ValueError(f"data.tokenizer={name!r}; allowed: {', '.join(TOKENIZERS)}")
    return TOKENIZERS[name]()


def token_stream(docs: Sequence[str], tok: ByteTokenizer) -> Tensor:
    """Every document's tokens followed by end-of-document, concatenated: (N,) int16."""
    parts = []
    eos = np.array([tok.vocab.eos_id], dtype=np.int16)
    for d in docs:
        parts += [tok.encode(d), eos]
    return torch.from_numpy(np.concatenate(parts) if parts else np.zeros(0, np.int16))


# ----------------------------------------------------------------------------- blocks
class BlockDataset(Dataset):
    """Windows of ``block_len + 1`` tokens of a stream, starting every ``block_len`` tokens: item i is
    ``stream[i*block_len : (i+1)*block_len + 1]`` as int64 (block_len + 1,)."""

    def __init__(self, stream: Tensor, block_len: int) -> None:
        if block_len < 1:
            raise ValueError(f"block_len={block_len} must be >= 1")
        self.stream, self.block_len = stream, block_len
        self.n = max(0, (len(stream) - 1) // block_len)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> Tensor:
        if not 0 <= i < self.n:
            raise IndexError(f"block {i} of {self.n}")
        s = i * self.block_len
        return self.stream[s: s + self.block_len + 1].long()


# ----------------------------------------------------------------------------- MLM masking
def mask_tokens(ids: Tensor, vocab: Vocab, generator: torch.Generator, mask_prob: float = 0.15,
                mask_frac: float = 0.8, random_frac: float = 0.1) -> tuple[Tensor, Tensor]:
    """RoBERTa's masking: each ordinary token (not a special) is selected with probability ``mask_prob``; a
    selected token becomes [MASK] with probability ``mask_frac``, a uniformly drawn ordinary token with
    ``random_frac``, and stays itself otherwise. ids (B, L) -> (inputs (B, L), labels (B, L): the original token
    where selected, ``IGNORE`` elsewhere). Draws come from ``generator`` (CPU), so a seed fixes the masking."""
    u = torch.rand(ids.shape, generator=generator)  # selection
    r = torch.rand(ids.shape, generator=generator)  # what a selected token becomes
    rand_tok = torch.randint(vocab.n_regular, ids.shape, generator=generator)
    u, r, rand_tok = u.to(ids.device), r.to(ids.device), rand_tok.to(ids.device)
    selected = (u < mask_prob) & (ids < vocab.n_regular)
    labels = torch.where(selected, ids, torch.full_like(ids, IGNORE))
    inputs = torch.where(selected & (r < mask_frac), torch.full_like(ids, vocab.mask_id), ids)
    inputs = torch.where(selected & (r >= mask_frac) & (r < mask_frac + random_frac), rand_tok, inputs)
    return inputs, labels


# ----------------------------------------------------------------------------- readers
def _pg19_help(root: Path) -> str:
    return (f"  fetch it:  python scripts/prepare_data.py pg19 --data-dir {root.parent} "
            "[--pg19-splits train,validation,test]\n"
            f"  or place PG-19's books as {root}/{{train,validation,test}}/<id>.txt, e.g. with\n"
            f"    gsutil -m cp -r gs://deepmind-gutenberg/validation gs://deepmind-gutenberg/test "
            f"gs://deepmind-gutenberg/train {root}/\n"
            f"  or the Hugging Face Parquet files (deepmind/pg19 or emozilla/pg19, a `text` column) as "
            f"{root}/data/{{train,validation,test}}-*.parquet\n"
            "  or point paths.data_dir (env DATA_DIR) at a folder holding pg19/; without network, "
            "data.name=imdb_unsup (or imdb_labelled) is the substitute corpus")


def pg19_local(root: Path, split: str) -> tuple[str, list[Path]]:
    """The local files of one split (``train`` / ``val`` / ``test``), by file name: ``("text", books)`` for
    ``<root>/<folder>/*.txt`` (GCS layout), else ``("parquet", files)`` for ``<root>/data/<folder>-*.parquet`` or
    ``<root>/<folder>-*.parquet`` (Hugging Face), else ``("", [])``."""
    folder = PG19_SPLITS[split]
    books = sorted((root / folder).glob("*.txt"))
    if books:
        return "text", books
    parquet = sorted((root / "data").glob(f"{folder}-*.parquet")) + sorted(root.glob(f"{folder}-*.parquet"))
    return ("parquet", parquet) if parquet else ("", [])


def read_pg19_files(kind: str, files: list[Path]) -> HFDataset:
    """Local files as a ``datasets.Dataset`` with a ``text`` column, one row per book in ``files`` order: each
    ``.txt`` whole (``sample_by="document"``, read as ``Path.read_text`` reads it: universal newlines), or the
    Parquet files' ``text`` column. Explicit ``data_files``, so nothing is looked up on the network; the rows are
    cached as Arrow in the datasets cache (keyed by the files' paths and modification times)."""
    from datasets import load_dataset

    paths = [str(p) for p in files]
    with no_progress_bars():
        if kind == "text":
            return load_dataset("text", data_files=paths, sample_by="document", split="train")
        return load_dataset("parquet", data_files=paths, columns=[TEXT], split="train")


def read_pg19_hub(split: str) -> HFDataset:
    """One split from the Hub (``PG19_HUB``), its ``text`` column."""
    from datasets import load_dataset

    with no_progress_bars():
        ds = load_dataset(PG19_HUB.repo, PG19_HUB.config, revision=PG19_HUB.revision, split=PG19_SPLITS[split])
    return ds.select_columns([TEXT])


def pg19_no_data(root: Path, missing: Sequence[str], hub_why: str) -> DataError:
    """The error when a split has neither a local copy nor the Hub's: both ways, and why each is not there."""
    folders = ", ".join(PG19_SPLITS[s] for s in missing)
    return DataError(f"pg19: no books for split {', '.join(missing)}: neither of the two ways to them is there.\n"
                     f"  local copy: for <folder> = {folders}, neither {root}/<folder>/*.txt nor "
                     f"{root / 'data'}/<folder>-*.parquet exists.\n" + _pg19_help(root) + "\n"
                     f"  the Hub: {PG19_HUB}: {hub_why}. It is read with data.download=true when online, or from "
                     "the datasets cache once downloaded (HF_DATASETS_OFFLINE=1 / HF_HUB_OFFLINE=1 keep it off the "
                     "network).")


def load_pg19(root: Path, download: bool, limit_docs: int | None = None) -> dict[str, HFDataset]:
    """Each split's books (the first ``limit_docs`` of them) as a ``datasets.Dataset`` with a ``text`` column: the
    local copy of the split (:func:`pg19_local`), else with ``download`` the Hub's, else :func:`pg19_no_data`."""
    local = {s: pg19_local(root, s) for s in SPLITS}
    missing = [s for s, (kind, _) in local.items() if not kind]
    if missing and not download:
        raise pg19_no_data(root, missing, "not tried (data.download=false)")
    out: dict[str, HFDataset] = {}
    for split in missing:  # first: a failure comes before reading anything
        try:
            out[split] = read_pg19_hub(split)
        except (OSError, ValueError, RuntimeError) as e:  # offline / unreachable, no such split, a loading script
            why = "offline and not in the datasets cache" if offline() else "could not be loaded"
            msg = str(e).splitlines()[0][:300] if str(e) else ""
            raise pg19_no_data(root, missing, f"{why} (split {PG19_SPLITS[split]}: {type(e).__name__}: {msg})") from e
        log.info("pg19: %s split from the Hub, %s", split, PG19_HUB)
    for split, (kind, files) in local.items():
        if kind:
            out[split] = read_pg19_files(kind, files)
            log.info("pg19: %s split from %d %s file(s) under %s", split, len(files), kind, root)
    out = {s: out[s] for s in SPLITS}
    if limit_docs:
        out = {s: ds.select(range(min(limit_docs, len(ds)))) for s, ds in out.items()}
    return out


PG19_BUCKET = "deepmind-gutenberg"  # public; one object <folder>/<id>.txt per book
PG19_LISTING = f"https://storage.googleapis.com/storage/v1/b/{PG19_BUCKET}/o"


def fetch_pg19(data_dir: Path, folders: Sequence[str] = ("validation", "test"), timeout: float = 60.0) -> Path:
    """Download PG-19's books of ``folders`` (train, validation, test) from the public bucket into
    ``<data_dir>/pg19/<folder>/<id>.txt``, each checked against the md5 the bucket lists; books already there
    with that md5 are kept. Returns ``<data_dir>/pg19``. (train: 28,602 books, about 11 GB.)"""
    root = Path(data_dir) / "pg19"
    for folder in folders:
        if folder not in PG19_SPLITS.values():
            raise ValueError(f"pg19 split {folder!r}; allowed: {', '.join(PG19_SPLITS.values())}")
        token = None
        while True:
            query = {"prefix": f"{folder}/", "fields": "items(name,md5Hash),nextPageToken",
                     **({"pageToken": token} if token else {})}
            try:
                with urllib.request.urlopen(f"{PG19_LISTING}?{urllib.parse.urlencode(query)}", timeout=timeout) as r:
                    listing = json.load(r)
                for item in listing.get("items", []):
                    name = item["name"]
                    if not name.endswith(".txt"):
                        continue
                    dest, md5 = root / name, base64.b64decode(item["md5Hash"]).hex()
                    if dest.is_file() and md5sum(dest) == md5:
                        continue
                    download(f"https://storage.googleapis.com/{PG19_BUCKET}/{urllib.parse.quote(name)}", dest,
                             timeout)
                    got = md5sum(dest)
                    if got != md5:
                        dest.unlink()
                        raise DataError(f"pg19: {name} downloaded with md5 {got}, the bucket lists {md5}; retry")
            except (urllib.error.URLError, TimeoutError, OSError) as e:
                raise DataError(f"pg19: download from gs://{PG19_BUCKET} failed ({e}).\n" + _pg19_help(root)) from e
            token = listing.get("nextPageToken")
            if not token:
                break
    return root


def seeded_split(n: int, val_fraction: float, test_fraction: float, seed: int) -> dict[str, list[int]]:
    """Document indices per split: a ``random.Random(seed)`` shuffle of ``range(n)``, the first
    ``round(val_fraction * n)`` for val, the next ``round(test_fraction * n)`` for test, the rest for train
    (each list sorted, so a split's stream keeps file order)."""
    order = list(range(n))
    random.Random(seed).shuffle(order)
    n_val, n_test = round(val_fraction * n), round(test_fraction * n)
    parts = {"val": order[:n_val], "test": order[n_val:n_val + n_test], "train": order[n_val + n_test:]}
    return {k: sorted(v) for k, v in parts.items()}


# ----------------------------------------------------------------------------- datamodule
class CorpusDataModule(SplitDataModule):
    """Contiguous token blocks of a corpus for language modelling (see the module doc).

    ``val_fraction`` / ``test_fraction`` / ``seed`` split the IMDB substitutes by review (PG-19 has its own
    splits and refuses them set otherwise than null). ``limit_docs`` keeps the first N documents of each split
    (quick runs); ``download`` fetches the aclImdb archive when missing, and reads a PG-19 split the local copy
    lacks from the Hub.
    """

    def __init__(self, name: str, data_dir: str, block_len: int, tokenizer: str = "byte", batch_size: int = 16,
                 eval_batch_size: int | None = 32, num_workers: int = 0, val_fraction: float | None = 0.01,
                 test_fraction: float | None = 0.01, seed: int = 0, download: bool = True, verify: bool = True,
                 limit_docs: int | None = None) -> None:
        super().__init__()
        if name not in CORPORA:
            raise ValueError(f"data.name={name!r}; allowed: {', '.join(CORPORA)}")
        self.corpus, self.data_dir, self.block_len = CORPORA[name], Path(data_dir), block_len
        self.tok = make_tokenizer(tokenizer)
        self.vocab = self.tok.vocab
        if self.corpus.split == "seeded":
            for key, v in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
                if v is None or not 0.0 < v < 1.0:
                    raise ValueError(f"data.{key}={v} must lie in (0, 1) for data.name={name}")
            if val_fraction + test_fraction >= 1.0:
                raise ValueError(f"data.val_fraction + data.test_fraction = {val_fraction + test_fraction} "
                                 "must be < 1")
        elif val_fraction is not None or test_fraction is not None:
            raise ValueError(f"data.name={name} has official splits: set data.val_fraction=null "
                             "data.test_fraction=null")
        self.val_fraction, self.test_fraction, self.seed = val_fraction, test_fraction, seed
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or batch_size
        self.num_workers, self.download, self.verify, self.limit_docs = num_workers, download, verify, limit_docs

    @property
    def label(self) -> str:
        """What results and tables say the numbers were measured on."""
        return self.corpus.label

    def _imdb_file(self) -> Path:
        if self.download:
            return fetch("imdb", IMDB_SOURCE, self.data_dir)
        return locate("imdb", IMDB_SOURCE, self.data_dir, check=self.verify)

    def prepare_data(self) -> None:
        if self.corpus.name == "pg19":
            root = self.data_dir / "pg19"
            missing = [s for s in SPLITS if not pg19_local(root, s)[0]]
            if missing and not self.download:  # the Hub's copy is read (and cached) by documents()
                raise pg19_no_data(root, missing, "not tried (data.download=false)")
        else:
            self._imdb_file()

    def documents(self) -> dict[str, list[str]]:
        """The documents of each split (``limit_docs`` applied)."""
        if self.corpus.name == "pg19":
            books = load_pg19(self.data_dir / "pg19", self.download, self.limit_docs)
            docs = {s: list(ds[TEXT]) for s, ds in books.items()}
        else:
            from attnbench.data.imdb import read_imdb

            if self.corpus.name == "imdb_unsup":
                try:
                    texts = [t for (t,) in read_imdb(self._imdb_file(), unsup=True)["unsup"][0]]
                except DataError as e:
                    raise DataError(f"{e}\n  or use the labelled reviews' texts as the substitute corpus: "
                                    "data.name=imdb_labelled") from e
            else:
                data = read_imdb(self._imdb_file())
                texts = [t for split in ("train", "test") for (t,) in data[split][0]]
            parts = seeded_split(len(texts), self.val_fraction, self.test_fraction, self.seed)
            docs = {s: [texts[i] for i in parts[s]] for s in SPLITS}
        return {s: d[: self.limit_docs] if self.limit_docs else d for s, d in docs.items()}

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        for split, docs in self.documents().items():
            ds = BlockDataset(token_stream(docs, self.tok), self.block_len)
            if len(ds) == 0:
                raise DataError(f"{self.corpus.name}: the {split} split holds {len(ds.stream)} tokens, fewer than "
                                f"one block of data.block_len + 1 = {self.block_len + 1}: lower data.block_len or "
                                "give the split more documents (data.limit_docs, data.val_fraction/test_fraction)")
            self.datasets[split] = ds
            log.info("%s (%s): %s split, %d documents, %d tokens, %d blocks of %d", self.corpus.name, self.label,
                     split, len(docs), len(ds.stream), len(ds), self.block_len)
