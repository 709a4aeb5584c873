"""Where each forecasting data set comes from, how it looks on disk, and how it is split.

Facts only: URLs, checksums, shapes and protocol constants of the standard long-term forecasting
benchmark (Autoformer / Time-Series-Library layout: ``<data_dir>/<folder>/<file>``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

_HF = "https://huggingface.co/datasets/thuml/Time-Series-Library/resolve/main/"
_ETT = "https://raw.githubusercontent.com/zhouhaoyi/ETDataset/main/ETT-small/"


@dataclass(frozen=True)
class Source:
    """A data set file: its path under the data directory, download URL and accepted digests (sha256, or
    the publisher's md5 where that is all it gives; a file passes when either matches).

    Several digests are accepted where the same content circulates with CRLF and LF line endings.
    ``gz_sha256`` is set when the URL serves a gzip of the file (then checked before decompressing).
    """

    path: str
    url: str
    sha256: tuple[str, ...]
    gz_sha256: str | None = None
    md5: tuple[str, ...] = ()  # accepted md5 digests where the publisher gives md5 (MedMNIST's INFO)
    member: str | None = None  # the file's path inside the zip archive at ``url``
    builder: str | None = None  # the file is built from downloads by ``data.download.BUILDERS[builder]``


@dataclass(frozen=True)
class TimeSeriesSpec:
    """One forecasting data set: file, frequency, split rule and column facts."""

    name: str
    source: Source
    freq: str  # pandas-style: "h", "15min", "10min", "D", "W"
    split: Literal["ett_hour", "ett_minute", "ratio"]
    n_vars: int  # variables (columns but the date)
    n_rows: int
    target: str = "OT"
    has_date: bool = True  # Solar-Energy (LSTNet format) has no header and no date column
    defaults: dict = field(default_factory=dict)  # protocol lengths: seq_len, label_len, pred_lens


_TS = dict(seq_len=96, label_len=48, pred_lens=(96, 192, 336, 720))

TIME_SERIES: dict[str, TimeSeriesSpec] = {
    s.name: s
    for s in [
        TimeSeriesSpec("ETTh1", Source("ETT-small/ETTh1.csv", _ETT + "ETTh1.csv",
                       ("f18de3ad269cef59bb07b5438d79bb3042d3be49bdeecf01c1cd6d29695ee066",)),
                       "h", "ett_hour", 7, 17420, defaults=_TS),
        TimeSeriesSpec("ETTh2", Source("ETT-small/ETTh2.csv", _ETT + "ETTh2.csv",
                       ("a3dc2c597b9218c7ce1cd55eb77b283fd459a1d09d753063f944967dd6b9218b",)),
                       "h", "ett_hour", 7, 17420, defaults=_TS),
        TimeSeriesSpec("ETTm1", Source("ETT-small/ETTm1.csv", _ETT + "ETTm1.csv",
                       ("6ce1759b1a18e3328421d5d75fadcb316c449fcd7cec32820c8dafda71986c9e",)),
                       "15min", "ett_minute", 7, 69680, defaults=_TS),
        TimeSeriesSpec("ETTm2", Source("ETT-small/ETTm2.csv", _ETT + "ETTm2.csv",
                       ("db973ca252c6410a30d0469b13d696cf919648d0f3fd588c60f03fdbdbadd1fd",)),
                       "15min", "ett_minute", 7, 69680, defaults=_TS),
        TimeSeriesSpec("weather", Source("weather/weather.csv", _HF + "weather/weather.csv", (
            "34ee981d07313e51da2a50bb600072c8ae4a69cb4b0651f4cb93a069d7a2ba63",  # CRLF (Autoformer release)
            "9b2b19b13e342d9c9b9c51620d42b4be232df7fba30e7f5c4968b7c79ab138ad",  # LF
        )), "10min", "ratio", 21, 52696, defaults=_TS),
        TimeSeriesSpec("electricity", Source("electricity/electricity.csv", _HF + "electricity/electricity.csv", (
            "7e45845d54c5219bad0ae6bc1b5316cf8ff9cead5d33fa998a5a51c2e4a497ad",  # CRLF
            "10b4ddd095548839274ce4d55d3c7d6842b4bfa69ac2a4321a7608622da7b4eb",  # LF
        )), "h", "ratio", 321, 26304, defaults=_TS),
        TimeSeriesSpec("traffic", Source("traffic/traffic.csv", _HF + "traffic/traffic.csv", (
            "cb06463d56fa17d87f47027cd9389ceae82a69eddee51cdb61480e120dab0b16",
        )), "h", "ratio", 862, 17544, defaults=_TS),
        TimeSeriesSpec("exchange_rate", Source("exchange_rate/exchange_rate.csv",
                       _HF + "exchange_rate/exchange_rate.csv", (
            "48b4d9d3d508f5104162e85b9a6042e3557fde11aa9f2944eba8c0d0efc89842",  # CRLF
            "d55e7aa2641009814a18ba3279431b13f6d413b0eab195b9ff21988d8cf94e97",  # LF
        )), "D", "ratio", 8, 7588, defaults=_TS),
        TimeSeriesSpec("national_illness", Source("illness/national_illness.csv",
                       _HF + "illness/national_illness.csv", (
            "93601f64d2566dc796ca4305adad8b8560c2db1a1ff04543c3bd813a7263570a",  # CRLF
            "8594cecb98c6f2f9dc014eca11c4d5d1e38ad5ce6ed0592d4abe65b146fce395",  # LF
        )), "W", "ratio", 7, 966, defaults=dict(seq_len=36, label_len=18, pred_lens=(24, 36, 48, 60))),
        TimeSeriesSpec("solar", Source(
            "solar/solar_AL.txt",
            "https://raw.githubusercontent.com/laiguokun/multivariate-time-series-data/master/solar-energy/"
            "solar_AL.txt.gz",
            ("230327ef72d2abb387939d4a35d6fd34f1066071bc7c40ce7ecf5531a0122ac2",),
            gz_sha256="1ae9329c3e1032acbb8dd080bfc397c44507006812a715d2788f172820489a1c",
        ), "10min", "ratio", 137, 52560, target="136", has_date=False, defaults=_TS),
    ]
}


def spec(name: str) -> TimeSeriesSpec:
    """The catalogue entry ``name``; an unknown name lists the allowed ones."""
    if name not in TIME_SERIES:
        raise ValueError(f"unknown time-series data set {name!r}; allowed: {', '.join(TIME_SERIES)}")
    return TIME_SERIES[name]


# ----------------------------------------------------------------------------- MedMNIST v2, 3D subsets
_ZENODO = "https://zenodo.org/records/10519652/files/"


@dataclass(frozen=True)
class VolumeSpec:
    """One MedMNIST3D data set (Yang et al., Scientific Data 2023): official splits in one ``.npz`` per size
    (``train/val/test_images`` (N, S, S, S) uint8, ``*_labels`` (N, 1)). URLs and md5 from medmnist 3.0.2's INFO."""

    name: str
    task: Literal["binary-class", "multi-class"]
    labels: tuple[str, ...]
    n_samples: tuple[int, int, int]  # train, val, test
    md5: dict  # size -> md5
    sha256: dict = field(default_factory=dict)  # size -> sha256, where we have measured it

    @property
    def n_classes(self) -> int:
        return len(self.labels)

    def source(self, size: int) -> Source:
        if size not in self.md5:
            raise ValueError(f"{self.name}: size {size} not released; allowed: {', '.join(map(str, self.md5))}")
        stem = self.name if size == 28 else f"{self.name}_{size}"
        sha = (self.sha256[size],) if size in self.sha256 else ()
        return Source(f"medmnist3d/{stem}.npz", f"{_ZENODO}{stem}.npz?download=1", sha, md5=(self.md5[size],))


_ORGANS = ("liver", "kidney-right", "kidney-left", "femur-right", "femur-left", "bladder", "heart", "lung-right",
           "lung-left", "spleen", "pancreas")

MEDMNIST3D: dict[str, VolumeSpec] = {
    s.name: s
    for s in [
        VolumeSpec("organmnist3d", "multi-class", _ORGANS, (971, 161, 610),
                   {28: "a0c5a1ff56af4f155c46d46fbb45a2fe", 64: "58a2205adf14a9d0a189cb06dc78bf10"}),
        VolumeSpec("nodulemnist3d", "binary-class", ("benign", "malignant"), (1158, 165, 310),
                   {28: "8755a7e9e05a4d9ce80a24c3e7a256f3", 64: "c47c5b7d457bf6332200d2ea6d64ecd8"}),
        VolumeSpec("adrenalmnist3d", "binary-class", ("normal", "hyperplasia"), (1188, 98, 298),
                   {28: "bbd3c5a5576322bc4cdfea780653b1ce", 64: "17721accfe9fb005146a47d33bc54b2f"},
                   {64: "124a53ea2c66c8ac1985a4c98ea6f34d1ab35bdab1dc50947f80d4a87e54057d"}),
        VolumeSpec("fracturemnist3d", "multi-class",
                   ("buckle rib fracture", "nondisplaced rib fracture", "displaced rib fracture"), (1027, 103, 240),
                   {28: "6aa7b0143a6b42da40027a9dda61302f", 64: "f01d7e6316aedf4210da0da5b7437b42"}),
        VolumeSpec("vesselmnist3d", "binary-class", ("vessel", "aneurysm"), (1335, 191, 382),
                   {28: "b41fd4f7e7e2feedddb201585ecafa1b", 64: "6bb274a8846e1097066dcd64e2c4520f"}),
        VolumeSpec("synapsemnist3d", "binary-class", ("inhibitory synapse", "excitatory synapse"), (1230, 177, 352),
                   {28: "1235b78a3cd6280881dd7850a78eadb6", 64: "43bd14ebf3af9d3dd072446fedc14d5e"}),
    ]
}


def volume_spec(name: str) -> VolumeSpec:
    """The MedMNIST3D entry ``name``; an unknown name lists the allowed ones."""
    if name not in MEDMNIST3D:
        raise ValueError(f"unknown MedMNIST3D data set {name!r}; allowed: {', '.join(MEDMNIST3D)}")
    return MEDMNIST3D[name]


def medmnist_files() -> dict[str, Source]:
    """Every MedMNIST3D file by its key (``organmnist3d`` = 28^3, ``organmnist3d_64`` = 64^3)."""
    return {(v.name if size == 28 else f"{v.name}_{size}"): v.source(size) for v in MEDMNIST3D.values()
            for size in v.md5}


# ----------------------------------------------------------------------------- GLUE
_GLUE = "https://dl.fbaipublicfiles.com/glue/data/"
_MRPC_MS = "https://dl.fbaipublicfiles.com/senteval/senteval_data/msr_paraphrase_train.txt"


@dataclass(frozen=True)
class GlueTask:
    """One GLUE task in the original tsv release (``<data_dir>/glue/<folder>/{train,dev}.tsv``).

    ``text`` / ``label`` are column names, or indices for CoLA's header-less files. ``labels`` maps the label
    strings to classes in order (empty for STS-B's regression score). ``metrics`` are the task's GLUE metrics;
    the GLUE score of a task is their mean. The official zips give no checksum: the extracted files are checked
    against the sha256 of the original release. MNLI, QNLI and QQP are not listed until their digests are pinned.
    """

    name: str
    folder: str
    text: tuple[str | int, ...]
    label: str | int
    labels: tuple[str, ...]
    metrics: tuple[str, ...]
    sha256: dict = field(default_factory=dict)  # split -> sha256 of <folder>/<split>.tsv
    header: bool = True
    url: str = ""  # the zip holding <folder>/<split>.tsv

    @property
    def n_labels(self) -> int:
        return len(self.labels) or 1  # 1 = regression

    def source(self, split: str) -> Source:
        path, digest = f"glue/{self.folder}/{split}.tsv", (self.sha256[split],)
        if self.name == "mrpc":
            return Source(path, self.url, digest, builder="glue_mrpc")
        return Source(path, self.url, digest, member=f"{self.folder}/{split}.tsv")


GLUE: dict[str, GlueTask] = {
    t.name: t
    for t in [
        GlueTask("cola", "CoLA", (3,), 1, ("0", "1"), ("mcc",), {
            "train": "cb368ebeb9f27d7ad03720d27ddc95687a311bdb100781a2fe59a5f5b1bc0624",
            "dev": "8c013e21dc39957cac37378d87bebe225b694a0d5fe13eded66c2856628833fd"},
            header=False, url=_GLUE + "CoLA.zip"),
        GlueTask("sst2", "SST-2", ("sentence",), "label", ("0", "1"), ("acc",), {
            "train": "48eac26399f8456935f81dd9e3a745c1430adb6c62e233ccfe22db4a0d15d1d1",
            "dev": "54a9c12c77e402fc14d6a66a506f24d999f596b0176eb777c972cccc2f9cc4b0"}, url=_GLUE + "SST-2.zip"),
        # GLUE builds MRPC's train/dev from Microsoft's file and its list of dev ids (see data.download)
        GlueTask("mrpc", "MRPC", ("#1 String", "#2 String"), "Quality", ("0", "1"), ("f1", "acc"), {
            "train": "69abcedee3cf738c6ce58d772e43e1b7cdf5b4edee4aceda459c0d9f4e5599f3",
            "dev": "9e8f284788040f7c9ecde2e1b3c07237c756f926bd9ef8548ef5d34b56f69f17"}, url=_MRPC_MS),
        GlueTask("stsb", "STS-B", ("sentence1", "sentence2"), "score", (), ("pearson", "spearman"), {
            "train": "41c4d978b6162abdcada7e49a982211954cca5459c228db478af333124b257a2",
            "dev": "fe7dc0632a5033562f3cadff991f6e8d9b9b6311861660e78c3c82eb7db67f59"}, url=_GLUE + "STS-B.zip"),
        GlueTask("rte", "RTE", ("sentence1", "sentence2"), "label", ("entailment", "not_entailment"), ("acc",), {
            "train": "41e3a9b063433392343fad9e962cf2f58b681c78d8f71592f4186f0837246c5c",
            "dev": "80230dfa1347282e7b532b06a1004a76a710087541189bf874223ddf0e3819fb"}, url=_GLUE + "RTE.zip"),
        GlueTask("wnli", "WNLI", ("sentence1", "sentence2"), "label", ("0", "1"), ("acc",), {
            "train": "9a88e9d54b6861cc796a088e9acf4f5f65064a9ef65ae6fa7a688b28391e5c9a",
            "dev": "cba00490596dd14be8cf53b4f53bb744abe3a7b89f81ab210528d80225338ed5"}, url=_GLUE + "WNLI.zip"),
    ]
}


def glue_files() -> dict[str, Source]:
    """Every GLUE file by its key (``glue_sst2_train``)."""
    return {f"glue_{t.name}_{s}": t.source(s) for t in GLUE.values() for s in t.sha256}


# ----------------------------------------------------------------------------- IMDB
# Maas et al. (ACL 2011), the Stanford archive: aclImdb/{train,test}/{pos,neg}/<id>_<rating>.txt, 25k + 25k.
# md5 of the official archive (as torchtext pins it); the sha256 is the offline copy in ../shared/data, rebuilt
# from the same reviews without the unlabelled ``unsup`` folder (its README gives the provenance).
IMDB_SOURCE = Source("imdb/aclImdb_v1.tar.gz", "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz",
                     ("b98d87f0ff79a81f44da08232e6f00c4ea291e69c1cb7bc30a4d00f0c3247781",),
                     md5=("7c2ac02c03563afcf9b574c7e56c153a",))
IMDB = GlueTask("imdb", "aclImdb", ("text",), "label", ("neg", "pos"), ("acc",))  # same task record as GLUE's
TEXT_TASKS: dict[str, GlueTask] = {**GLUE, "imdb": IMDB}  # every task the text classifier trains on
