"""Language-modelling corpora (CAB's LM and MLM tasks) and their tokenisers' vocabularies: names, labels, layout.

PG-19 (Rae et al., ICLR 2020) is CAB's corpus: 28,602 / 50 / 100 books (train / validation / test), one
``<id>.txt`` per book in ``gs://deepmind-gutenberg/{train,validation,test}/``, on the Hub as ``PG19_HUB``. It is
not on these machines; the aclImdb reviews are, and stand in for it, always labelled as a substitute
(``CorpusSpec.label``) in results and tables.
"""

from __future__ import annotations

from dataclasses import dataclass

from attnbench.data.catalog.source import HubSource

PG19_SPLITS = {"train": "train", "val": "validation", "test": "test"}  # our split -> PG-19's folder and Hub split
# deepmind/pg19's main branch holds a loading script (pg19.py, which fetches the books from the bucket), and
# datasets>=4 refuses scripts; the Hub's Parquet export of it (``text`` column) is what load_dataset can read.
# UNVERIFIED: written offline, so this is the export's branch, not yet its commit sha: pin it to the sha that
# ``huggingface_hub.HfApi().dataset_info("deepmind/pg19", revision="refs/convert/parquet").sha`` gives, and check
# that the export's splits are named train / validation / test (a large split may be exported only in part).
PG19_HUB = HubSource("deepmind/pg19", "refs/convert/parquet")


@dataclass(frozen=True)
class CorpusSpec:
    """A corpus: its ``data.name``, the label results and tables carry, and how it is split."""

    name: str
    label: str  # shown beside every number measured on it
    split: str  # "official": the corpus's own splits; "seeded": a seeded document-level split (data.val_fraction...)


CORPORA: dict[str, CorpusSpec] = {c.name: c for c in (
    CorpusSpec("pg19", "PG-19", "official"),
    # aclImdb/train/unsup: 50k unlabelled reviews (in the official archive; NOT in the offline copy in shared/data)
    CorpusSpec("imdb_unsup", "substitute corpus: aclImdb unsup", "seeded"),
    # the texts of the 50k labelled reviews (aclImdb/{train,test}/{pos,neg}; labels unused): the substitute that
    # the offline copy of the archive holds
    CorpusSpec("imdb_labelled", "substitute corpus: aclImdb train+test texts (labels unused)", "seeded"),
)}


@dataclass(frozen=True)
class Vocab:
    """A tokeniser's ids: ``n_regular`` ordinary tokens ``0..n_regular-1``, then the specials."""

    name: str
    n_regular: int
    eos_id: int  # ends every document (documents are concatenated into one stream)
    mask_id: int  # MLM's [MASK]

    @property
    def vocab_size(self) -> int:
        return max(self.eos_id, self.mask_id) + 1

    @property
    def special_ids(self) -> tuple[int, ...]:
        return (self.eos_id, self.mask_id)


# bytes 0..255 are their own ids (UTF-8 text, no download, nothing unknown), then end-of-document and [MASK]
BYTE = Vocab("byte", n_regular=256, eos_id=256, mask_id=257)
VOCABS: dict[str, Vocab] = {BYTE.name: BYTE}
