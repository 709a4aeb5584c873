"""GLUE (Wang et al., 2018): tasks, columns, label names, metrics, and where the data is (the original tsv release's
files and digests, the Hub's copy at a pinned revision).

A GLUE task is a ``TextTask`` (catalog.text) plus where its files are and which columns hold text and label.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from attnbench.data.catalog.source import HubSource, Source
from attnbench.data.catalog.text import TextTask

_GLUE = "https://dl.fbaipublicfiles.com/glue/data/"
MRPC_SOURCE_URL = "https://dl.fbaipublicfiles.com/senteval/senteval_data/msr_paraphrase_train.txt"
GLUE_HUB_REPO = "nyu-mll/glue"
# The commit other public code pins for nyu-mll/glue (the parquet conversion); it could not be checked against the Hub
# from here (no network): one constant to change if it is wrong.
GLUE_HUB_REVISION = "bcdcba79d07bc864c1c254ccfcedcce55bcc9a8c"
SPLITS = ("train", "dev")  # GLUE's test labels are private: dev is our val and test


@dataclass(frozen=True, kw_only=True)
class GlueTask(TextTask):
    """One GLUE task: the original tsv release (``<data_dir>/glue/<folder>/<file>.tsv``) and the Hub's copy.

    ``text`` / ``label`` are tsv column names, or indices for CoLA's header-less files; ``hub_text`` the Hub's text
    columns (its ``label`` column holds the class index in the order of ``labels``, or STS-B's score). ``labels``
    maps the tsv label strings to classes in order (empty for STS-B's regression score). ``metrics`` are the task's
    GLUE metrics; the GLUE score of a task is their mean. ``files`` names the tsv of each split (MNLI's two dev sets
    are two tasks, ``mnli_m`` and ``mnli_mm``, that share the training file). The official zips give no checksum:
    the extracted files are checked against the sha256 of the original release; MNLI's, QNLI's and QQP's are not
    pinned yet (their files are read with a warning that names the digest found).
    """

    folder: str
    text: tuple[str | int, ...]
    label: str | int
    hub_text: tuple[str, ...]
    sha256: dict = field(default_factory=dict)  # split -> sha256 of <folder>/<file>.tsv
    header: bool = True
    url: str = ""  # the zip holding <folder>/<file>.tsv
    files: dict = field(default_factory=lambda: {"train": "train", "dev": "dev"})  # split -> tsv name
    hub_config: str = ""  # the Hub's config (default: the task's name)
    hub_dev: str = "validation"  # the Hub's split that is GLUE's dev set

    def file_key(self, split: str) -> str:
        """The file's name in the catalogue (``glue_sst2_train``, ``glue_mnli_dev_matched``)."""
        return f"glue_{self.folder.lower().replace('-', '')}_{self.files[split]}"

    def source(self, split: str) -> Source:
        name = self.files[split]
        path, digest = f"glue/{self.folder}/{name}.tsv", (self.sha256[split],) if split in self.sha256 else ()
        if self.name == "mrpc":
            return Source(path, self.url, digest, builder="glue_mrpc")
        return Source(path, self.url, digest, member=f"{self.folder}/{name}.tsv")

    def hub(self) -> HubSource:
        return HubSource(GLUE_HUB_REPO, GLUE_HUB_REVISION, self.hub_config or self.name)

    def hub_split(self, split: str) -> str:
        return {"train": "train", "dev": self.hub_dev}[split]


_MNLI = {"folder": "MNLI", "text": ("sentence1", "sentence2"), "label": "gold_label",
         "hub_text": ("premise", "hypothesis"), "url": _GLUE + "MNLI.zip", "hub_config": "mnli"}
GLUE: dict[str, GlueTask] = {
    t.name: t
    for t in [
        GlueTask("cola", ("0", "1"), ("mcc",),
                 folder="CoLA", text=(3,), label=1, sha256={
            "train": "cb368ebeb9f27d7ad03720d27ddc95687a311bdb100781a2fe59a5f5b1bc0624",
            "dev": "8c013e21dc39957cac37378d87bebe225b694a0d5fe13eded66c2856628833fd"},
            header=False, url=_GLUE + "CoLA.zip", hub_text=("sentence",)),
        GlueTask("sst2", ("0", "1"), ("acc",),
                 folder="SST-2", text=("sentence",), label="label", sha256={
            "train": "48eac26399f8456935f81dd9e3a745c1430adb6c62e233ccfe22db4a0d15d1d1",
            "dev": "54a9c12c77e402fc14d6a66a506f24d999f596b0176eb777c972cccc2f9cc4b0"}, url=_GLUE + "SST-2.zip",
            hub_text=("sentence",)),
        # GLUE builds MRPC's train/dev from Microsoft's file and its list of dev ids (see data.download)
        GlueTask("mrpc", ("0", "1"), ("f1", "acc"),
                 folder="MRPC", text=("#1 String", "#2 String"), label="Quality", sha256={
            "train": "69abcedee3cf738c6ce58d772e43e1b7cdf5b4edee4aceda459c0d9f4e5599f3",
            "dev": "9e8f284788040f7c9ecde2e1b3c07237c756f926bd9ef8548ef5d34b56f69f17"}, url=MRPC_SOURCE_URL,
            hub_text=("sentence1", "sentence2")),
        GlueTask("stsb", (), ("pearson", "spearman"),
                 folder="STS-B", text=("sentence1", "sentence2"), label="score", sha256={
            "train": "41c4d978b6162abdcada7e49a982211954cca5459c228db478af333124b257a2",
            "dev": "fe7dc0632a5033562f3cadff991f6e8d9b9b6311861660e78c3c82eb7db67f59"}, url=_GLUE + "STS-B.zip",
            hub_text=("sentence1", "sentence2")),
        GlueTask("qqp", ("0", "1"), ("f1", "acc"),
                 folder="QQP", text=("question1", "question2"), label="is_duplicate",
                 hub_text=("question1", "question2"), url=_GLUE + "QQP-clean.zip"),
        GlueTask("mnli_m", ("entailment", "neutral", "contradiction"), ("acc",), **_MNLI,
                 files={"train": "train", "dev": "dev_matched"}, hub_dev="validation_matched"),
        GlueTask("mnli_mm", ("entailment", "neutral", "contradiction"), ("acc",), **_MNLI,
                 files={"train": "train", "dev": "dev_mismatched"}, hub_dev="validation_mismatched"),
        GlueTask("qnli", ("entailment", "not_entailment"), ("acc",),
                 folder="QNLI", text=("question", "sentence"), label="label", hub_text=("question", "sentence"),
                 url=_GLUE + "QNLIv2.zip"),
        GlueTask("rte", ("entailment", "not_entailment"), ("acc",),
                 folder="RTE", text=("sentence1", "sentence2"), label="label", sha256={
            "train": "41e3a9b063433392343fad9e962cf2f58b681c78d8f71592f4186f0837246c5c",
            "dev": "80230dfa1347282e7b532b06a1004a76a710087541189bf874223ddf0e3819fb"}, url=_GLUE + "RTE.zip",
            hub_text=("sentence1", "sentence2")),
        GlueTask("wnli", ("0", "1"), ("acc",),
                 folder="WNLI", text=("sentence1", "sentence2"), label="label", sha256={
            "train": "9a88e9d54b6861cc796a088e9acf4f5f65064a9ef65ae6fa7a688b28391e5c9a",
            "dev": "cba00490596dd14be8cf53b4f53bb744abe3a7b89f81ab210528d80225338ed5"}, url=_GLUE + "WNLI.zip",
            hub_text=("sentence1", "sentence2")),
    ]
}


def glue_files() -> dict[str, Source]:
    """Every GLUE file by its key (``glue_sst2_train``; MNLI's training file once)."""
    return {t.file_key(s): t.source(s) for t in GLUE.values() for s in SPLITS}
