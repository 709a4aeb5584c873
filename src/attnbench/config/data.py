"""``data``: the datamodules (``attnbench.data``), one schema each; the fields are the constructor's
(``from_code``), the names are checked against the catalogues (``data.catalog``), and the checks every
datamodule shares (batch sizes, workers, limits) are ``DataConfig``'s."""

from typing import ClassVar

from attnbench.config.base import Checked, at_least_one, choice, from_code, need
from attnbench.data.catalog import GLUE, MEDMNIST3D, TIME_SERIES
from attnbench.data.catalog.corpus import CORPORA, VOCABS
from attnbench.data.catalog.lra import LRA_TASKS
from attnbench.data.catalog.seq2seq import TASKS as SEQ2SEQ_TASKS
from attnbench.errors import ConfigError
from attnbench.signatures import constructor_params


class DataConfig(Checked):
    """The checks of every datamodule: ``batch_size`` and the ``sizes`` a subclass names are >= 1,
    ``eval_batch_size`` and the ``limits`` >= 1 or null, ``num_workers`` >= 0; ``fractions`` (a split's shares of
    the data) lie in (0, 1) and sum to less than 1."""

    sizes: ClassVar[tuple[str, ...]] = ()
    limits: ClassVar[tuple[str, ...]] = ()
    fractions: ClassVar[tuple[str, ...]] = ()

    def check(self) -> None:
        at_least_one("data", self, *self.sizes, "batch_size")
        at_least_one("data", self, "eval_batch_size", *self.limits, null=True)
        need(self.num_workers >= 0, "data.num_workers", self.num_workers, "must be >= 0")
        self.check_fractions(*self.fractions)

    def check_fractions(self, *keys: str) -> None:
        for k in keys:
            v = getattr(self, k)
            need(v is not None and 0 < v < 1, f"data.{k}", v, "must lie in (0, 1)")
        if len(keys) > 1:
            total = sum(getattr(self, k) for k in keys)
            need(total < 1, " + ".join(f"data.{k}" for k in keys), total, "must be < 1")


@from_code("attnbench.data.timeseries.TimeSeriesDataModule")
class TimeSeriesDataConfig(DataConfig):
    """The lengths of a forecast: ``data.seq_len`` in, ``data.pred_len`` out (the model's are these)."""

    sizes = ("seq_len", "pred_len")

    def check(self) -> None:
        choice("data.name", self.name, TIME_SERIES)
        super().check()
        need(0 <= self.label_len <= self.seq_len, "data.label_len", self.label_len,
             f"must lie in [0, seq_len={self.seq_len}]")


@from_code("attnbench.data.medmnist.MedMNIST3DDataModule")
class MedMNISTDataConfig(DataConfig):
    def check(self) -> None:
        choice("data.name", self.name, MEDMNIST3D)
        choice("data.size", str(self.size), ["28", "64"])
        super().check()


@from_code("attnbench.data.nifti.NiftiDataModule")
class NiftiDataConfig(DataConfig):
    """NIfTI volumes + a label CSV. ``size`` is ``${data.spatial_size}`` in the yaml (the model reads ``img_size:
    ${data.size}``) and must equal ``spatial_size``."""

    fractions = ("val_fraction", "test_fraction")

    def check(self) -> None:
        need(self.n_classes >= 2, "data.n_classes", self.n_classes, "must be >= 2")
        sides = list(self.spatial_size)
        need(len(sides) == 3 and min(sides) >= 1, "data.spatial_size", sides, "must be three sides >= 1")
        need(self.size is None or list(self.size) == sides, "data.size", self.size,
             f"must equal data.spatial_size={sides} (it is derived from it: set data.spatial_size)")
        need(self.pixdim is None or (len(self.pixdim) == 3 and min(self.pixdim) > 0), "data.pixdim",
             self.pixdim, "must be three voxel spacings > 0 (mm) or null")
        need(self.clip is None or (len(self.clip) == 2 and self.clip[0] < self.clip[1]), "data.clip",
             self.clip, "must be [a_min, a_max] with a_min < a_max, or null")
        super().check()


class TextDataConfig(DataConfig):
    """The text datamodules, tokenized by the model's own tokenizer."""

    sizes = ("max_length",)
    limits = ("limit_examples",)


@from_code("attnbench.data.glue.GlueDataModule")
class GlueDataConfig(TextDataConfig):
    def check(self) -> None:
        choice("data.task", self.task, GLUE)
        super().check()


@from_code("attnbench.data.imdb.ImdbDataModule")
class ImdbDataConfig(TextDataConfig):
    fractions = ("val_fraction",)

    def check(self) -> None:
        choice("data.task", self.task, ["imdb"])
        super().check()


@from_code("attnbench.data.lra.datamodule.LRADataModule")
class LRADataConfig(DataConfig):
    """``data=lra``: one LRA task (``attnbench.data.lra.<task>``); ``options`` are the task's ``load_split``
    keywords (e.g. a Pathfinder resolution), checked against its signature."""

    limits = ("limit_examples",)

    def check(self) -> None:
        choice("data.task", self.task, LRA_TASKS)
        need(self.max_len is None or self.max_len >= 1, "data.max_len", self.max_len,
             f"must be >= 1, or null for the task's official {LRA_TASKS[self.task].max_len}")
        super().check()
        reader = f"attnbench.data.lra.{self.task}.load_split"
        try:
            params = constructor_params(reader)
        except (OSError, ImportError, ValueError) as e:
            raise ConfigError(f"data.task={self.task!r}: {reader} cannot be read ({e})") from None
        allowed = [k for k in params if k not in ("root", "split", "max_len")]
        for k in (self.options or {}):
            if "**" not in params and k not in allowed:
                raise ConfigError(f"data.options.{k} is not an option of data.task={self.task!r}; allowed: "
                                  f"{', '.join(allowed) or 'none (data.options={})'}")


@from_code("attnbench.data.corpus.CorpusDataModule")
class CorpusDataConfig(DataConfig):
    """A language-modelling corpus in blocks of ``block_len`` tokens; a corpus with official splits takes no
    fractions."""

    sizes = ("block_len",)
    limits = ("limit_docs",)

    def check(self) -> None:
        choice("data.name", self.name, CORPORA)
        self.check_tokenizer()
        super().check()
        official = CORPORA[self.name].split == "official"
        for k in ("val_fraction", "test_fraction"):
            need(not official or getattr(self, k) is None, f"data.{k}", getattr(self, k),
                 f"must be null for data.name={self.name} (it has official splits)")
        if not official:
            self.check_fractions("val_fraction", "test_fraction")

    def check_tokenizer(self) -> None:
        choice("data.tokenizer", self.tokenizer, VOCABS)


@from_code("attnbench.data.wordpiece.WordPieceCorpusDataModule")
class WordPieceCorpusDataConfig(CorpusDataConfig):
    """``data=corpus_wordpiece``: a corpus in a pretrained model's WordPiece blocks (``data.wordpiece``)."""

    def check_tokenizer(self) -> None:  # a pretrained name (hub id, folder, minilm): checked when loaded
        need(bool(self.tokenizer), "data.tokenizer", self.tokenizer, "the pretrained model's name (e.g. minilm)")
        need(0 < self.mlm_probability < 1, "data.mlm_probability", self.mlm_probability, "must lie in (0, 1)")


@from_code("attnbench.data.seq2seq.Seq2SeqDataModule")
class Seq2SeqDataConfig(DataConfig):
    sizes = ("n_train", "n_val", "n_test")

    def check(self) -> None:
        choice("data.task", self.task, SEQ2SEQ_TASKS)
        need(self.n_symbols >= 2, "data.n_symbols", self.n_symbols, "must be >= 2")
        need(1 <= self.min_len <= self.max_len, "data.min_len", self.min_len,
             f"must lie in [1, data.max_len={self.max_len}]")
        super().check()

