"""GLUE and IMDB through 🤗 Datasets (``data.hf_text``): the nine GLUE tasks' tsv layouts, the local copy before the
Hub, the one error naming both, the tokenization cache (hit, miss on a new max_length), checksums."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

pytest.importorskip("datasets")
pytest.importorskip("transformers")

from attnbench.data.catalog import GLUE, IMDB_SOURCE  # noqa: E402
from attnbench.data.catalog.glue import GLUE_HUB_REVISION  # noqa: E402
from attnbench.errors import DataError  # noqa: E402
from tests.conftest import needs_minilm, write_imdb  # noqa: E402

pytestmark = needs_minilm

# tsv header (None: CoLA's header-less file) and one row per example: i -> the row's fields, in the original release's
# column order; {a} / {b} are the texts, {y} the label string
_MNLI_HEAD = ["index", "promptID", "pairID", "genre", "sentence1_binary_parse", "sentence2_binary_parse",
              "sentence1_parse", "sentence2_parse", "sentence1", "sentence2"]
LAYOUTS: dict[str, tuple[list[str] | None, list[str]]] = {
    "CoLA": (None, ["gj04", "{y}", "", "{a}"]),
    "SST-2": (["sentence", "label"], ["{a}", "{y}"]),
    "MRPC": (["\ufeffQuality", "#1 ID", "#2 ID", "#1 String", "#2 String"], ["{y}", "11", "12", "{a}", "{b}"]),
    "STS-B": (["index", "genre", "filename", "year", "old_index", "source1", "source2", "sentence1", "sentence2",
               "score"], ["0", "main-news", "f", "2012", "0001", "none", "none", "{a}", "{b}", "{y}"]),
    "QQP": (["id", "qid1", "qid2", "question1", "question2", "is_duplicate"], ["7", "8", "9", "{a}", "{b}", "{y}"]),
    "MNLI/train": ([*_MNLI_HEAD, "label1", "gold_label"], ["0", "1", "1e", "fiction", "( a )", "( b )", "(S a)",
                                                           "(S b)", "{a}", "{b}", "{y}", "{y}"]),
    "MNLI/dev": ([*_MNLI_HEAD, "label1", "label2", "label3", "label4", "label5", "gold_label"],
                 ["0", "1", "1e", "slate", "( a )", "( b )", "(S a)", "(S b)", "{a}", "{b}", "{y}", "{y}", "{y}",
                  "neutral", "{y}", "{y}"]),
    "QNLI": (["index", "question", "sentence", "label"], ["0", "{a}", "{b}", "{y}"]),
    "RTE": (["index", "sentence1", "sentence2", "label"], ["0", "{a}", "{b}", "{y}"]),
    "WNLI": (["index", "sentence1", "sentence2", "label"], ["0", "{a}", "{b}", "{y}"]),
}


def expected(task: str, split: str, n: int) -> tuple[list[str], list[float | int]]:
    """The first text and the labels that ``write_glue_task`` writes: the task's classes in turn (STS-B: i / 2)."""
    t = GLUE[task]
    labels = [i / 2 for i in range(n)] if not t.labels else [i % len(t.labels) for i in range(n)]
    return [f"{t.folder} {t.files[split]} sentence {i} ." for i in range(n)], labels


def write_glue_task(root: Path, task: str, n_train: int = 6, n_dev: int = 4) -> Path:
    """``root/glue/<folder>/<file>.tsv`` for the train and dev splits of ``task`` in the release's layout."""
    t = GLUE[task]
    for split, n in (("train", n_train), ("dev", n_dev)):
        head, row = LAYOUTS[f"{t.folder}/{split}"] if t.folder == "MNLI" else LAYOUTS[t.folder]
        texts, labels = expected(task, split, n)
        ys = [str(y) for y in labels] if not t.labels else [t.labels[y] for y in labels]
        lines = ([] if head is None else ["\t".join(head)]) + [
            "\t".join(f.format(a=a, b=f"second {i} .", y=y) for f in row)
            for i, (a, y) in enumerate(zip(texts, ys, strict=True))]
        path = root / t.source(split).path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def glue(task: str, root: Path, **kw):
    from attnbench.data.glue import GlueDataModule

    args = {"download": False, "verify": False, "cache_dir": str(root / "cache"), "max_length": 32,
            "batch_size": 2, "eval_batch_size": 2} | kw
    return GlueDataModule(task, str(root), "minilm", **args)


def decode(ids: torch.Tensor | str) -> str:
    """The text of token ids (a string: as it comes back from tokenizing it)."""
    from attnbench.pretrained import load_tokenizer

    tok = load_tokenizer("minilm")
    return tok.decode(tok(ids)["input_ids"] if isinstance(ids, str) else ids, skip_special_tokens=True)


@pytest.mark.parametrize("task", list(GLUE))
def test_every_glue_task_reads_its_rows_and_labels(tmp_path, task):
    dm = glue(task, write_glue_task(tmp_path, task))
    dm.setup("fit")
    assert dm.datasets["val"] is dm.datasets["test"]  # dev is val and test
    for split, ours in (("train", "train"), ("dev", "val")):
        ds = dm.datasets[ours]
        texts, labels = expected(task, split, 6 if split == "train" else 4)
        assert ds[:]["labels"].tolist() == pytest.approx(labels)
        assert ds[:]["labels"].dtype == (torch.float32 if task == "stsb" else torch.int64)
        first = decode(ds[0]["input_ids"])
        assert first.startswith(decode(texts[0]))
        assert ("second 0" in first) == (len(GLUE[task].text) == 2)  # a sentence pair: both texts
    b = next(iter(dm.train_dataloader()))
    assert set(b) >= {"input_ids", "attention_mask", "labels"} and b["input_ids"].dtype == torch.int64


def test_mnli_matched_and_mismatched_share_the_training_tokens(tmp_path, caplog):
    write_glue_task(tmp_path, "mnli_m")
    write_glue_task(tmp_path, "mnli_mm")  # the same train.tsv again, and dev_mismatched.tsv
    m, mm = glue("mnli_m", tmp_path), glue("mnli_mm", tmp_path)
    m.setup("fit")
    with caplog.at_level(logging.INFO, logger="attnbench.data.hf_text"):
        mm.setup("fit")
    assert "tokenized dev 4 examples" in caplog.text and "train 6 examples from the tokenization cache" in caplog.text
    assert decode(m.datasets["test"][0]["input_ids"]).startswith("mnli dev _ matched")
    assert decode(mm.datasets["test"][0]["input_ids"]).startswith("mnli dev _ mismatched")
    assert m.n_labels == mm.n_labels == 3


def test_second_setup_reads_the_cache_and_a_new_max_length_tokenizes_again(tmp_path, caplog, monkeypatch):
    from attnbench.data import hf_text

    write_glue_task(tmp_path, "rte", n_train=5, n_dev=3)
    with caplog.at_level(logging.INFO, logger="attnbench.data.hf_text"):
        first = glue("rte", tmp_path)
        first.setup("fit")
        (made,) = [r.getMessage() for r in caplog.records if "tokenized" in r.getMessage()]
        assert made.startswith(f"glue_rte: tokenized train 5, dev 3 examples (tokenizer minilm, max_length 32) from "
                               f"{tmp_path} in ") and made.endswith(f" s; cached in {tmp_path / 'cache'}")
        caplog.clear()

        def no_tokenizing(*args, **kwargs):
            raise AssertionError("tokenized again")

        monkeypatch.setattr(hf_text, "tokenize", no_tokenizing)
        second = glue("rte", tmp_path)
        second.setup("fit")
        lines = [r for r in caplog.records if r.name == "attnbench.data.hf_text"]
        assert len(lines) == 1 and lines[0].levelno == logging.INFO
        assert lines[0].getMessage() == (f"glue_rte: train 5, dev 3 examples from the tokenization cache (tokenizer "
                                         f"minilm, max_length 32): {tmp_path / 'cache'}")
        for split in ("train", "test"):
            a, b = first.datasets[split], second.datasets[split]
            assert all(torch.equal(a[i][k], b[i][k]) for i in range(len(a)) for k in a[i])
        monkeypatch.undo()
        caplog.clear()
        short = glue("rte", tmp_path, max_length=6)
        short.setup("fit")
    assert "glue_rte: tokenized train 5, dev 3 examples (tokenizer minilm, max_length 6)" in caplog.text
    assert max(len(x["input_ids"]) for x in short.datasets["train"]) == 6
    assert len(list((tmp_path / "cache").glob("glue_rte_*.arrow"))) == 4  # two lengths x two splits


def test_a_changed_file_is_a_new_cache_key(tmp_path, caplog):
    write_glue_task(tmp_path, "sst2", n_train=4, n_dev=2)
    glue("sst2", tmp_path).setup("fit")
    write_glue_task(tmp_path, "sst2", n_train=3, n_dev=2)  # train.tsv changed, dev.tsv the same
    with caplog.at_level(logging.INFO, logger="attnbench.data.hf_text"):
        dm = glue("sst2", tmp_path)
        dm.setup("fit")
    assert "tokenized train 3 examples" in caplog.text and "dev 2 examples from the tokenization cache" in caplog.text
    assert len(dm.datasets["train"]) == 3


def test_limit_examples_takes_the_first_rows_of_each_split(tmp_path):
    dm = glue("cola", write_glue_task(tmp_path, "cola"), limit_examples=3)
    dm.setup("fit")
    assert len(dm.datasets["train"]) == 3 and len(dm.datasets["test"]) == 3
    assert dm.datasets["train"][:]["labels"].tolist() == [0, 1, 0]


def _hub_offline(monkeypatch, tmp_path):
    import datasets
    import huggingface_hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # read when the process starts; the modules keep their copy
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf")


@pytest.mark.parametrize("download", [False, True])
def test_neither_local_nor_hub_is_one_error_naming_both(tmp_path, monkeypatch, download):
    _hub_offline(monkeypatch, tmp_path)
    dm = glue("qnli", tmp_path / "data", download=download)
    with pytest.raises(DataError) as e:
        dm.prepare_data()
        dm.setup("fit")
    msg = str(e.value)
    assert f"{tmp_path / 'data' / 'glue/QNLI/train.tsv'}, {tmp_path / 'data' / 'glue/QNLI/dev.tsv'} not found" in msg
    assert f"python scripts/prepare_data.py glue_qnli_train glue_qnli_dev [--from DIR] --data-dir {tmp_path}" in msg
    assert f"nyu-mll/glue (config qnli) at revision {GLUE_HUB_REVISION}" in msg
    assert ("not tried (data.download=false)" in msg) != download
    assert ("offline and not in the datasets cache (split train: ConnectionError" in msg) == download


def test_the_hub_copy_when_no_local_one(tmp_path, monkeypatch, caplog):
    """A stand-in for load_dataset: the pinned revision is asked for, the Hub's columns are renamed, MNLI's dev is
    validation_mismatched; the tokens are cached under the Hub's key, so a second run loads nothing."""
    import datasets

    calls = []

    def load_dataset(repo, config, revision, split):
        calls.append((repo, config, revision, split))
        n = 5 if split == "train" else 3
        feats = datasets.Features({"premise": datasets.Value("string"), "hypothesis": datasets.Value("string"),
                                   "label": datasets.ClassLabel(names=["entailment", "neutral", "contradiction"]),
                                   "idx": datasets.Value("int32")})
        return datasets.Dataset.from_dict({"premise": [f"{split} premise {i}" for i in range(n)],
                                           "hypothesis": [f"hypothesis {i}" for i in range(n)],
                                           "label": [i % 3 for i in range(n)], "idx": list(range(n))}, feats)

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    dm = glue("mnli_mm", tmp_path, download=True)
    with caplog.at_level(logging.INFO, logger="attnbench.data.hf_text"):
        dm.setup("fit")
    assert calls == [("nyu-mll/glue", "mnli", GLUE_HUB_REVISION, "train"),
                     ("nyu-mll/glue", "mnli", GLUE_HUB_REVISION, "validation_mismatched")]
    assert "the Hub's copy, nyu-mll/glue (config mnli)" in caplog.text and "from the Hub in" in caplog.text
    assert dm.datasets["test"][:]["labels"].tolist() == [0, 1, 2]
    assert decode(dm.datasets["test"][1]["input_ids"]) == "validation _ mismatched premise 1 hypothesis 1"
    again = glue("mnli_mm", tmp_path, download=True)
    again.setup("fit")
    assert len(calls) == 2  # nothing loaded: the tokens came from the cache
    assert torch.equal(again.datasets["train"][4]["input_ids"], dm.datasets["train"][4]["input_ids"])


def test_hub_with_other_classes_is_refused(tmp_path, monkeypatch):
    import datasets

    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: datasets.Dataset.from_dict(
        {"sentence1": ["a"], "sentence2": ["b"], "label": [0]},
        datasets.Features({"sentence1": datasets.Value("string"), "sentence2": datasets.Value("string"),
                           "label": datasets.ClassLabel(names=["x", "y", "z"])})))
    with pytest.raises(DataError, match=r"split train has 3 classes \(\['x', 'y', 'z'\]\); the task has 2"):
        glue("rte", tmp_path, download=True).setup("fit")


def test_a_corrupt_local_file_is_refused_before_anything_is_read(tmp_path, monkeypatch):
    import datasets

    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: pytest.fail("went to the Hub"))
    write_glue_task(tmp_path, "wnli")
    dm = glue("wnli", tmp_path, verify=True, download=True)
    with pytest.raises(DataError, match=r"(?s)glue_wnli_train: .*train.tsv is corrupt or not the official file: sha256 "
                                        r"[0-9a-f]{64}, expected 9a88e9d5.*prepare_data.py glue_wnli_train"):
        dm.prepare_data()


def test_an_unpinned_local_file_is_read_with_a_warning_naming_its_digest(tmp_path, caplog):
    from attnbench.data.download import sha256sum

    write_glue_task(tmp_path, "qqp")
    with caplog.at_level(logging.WARNING, logger="attnbench.data.download"):
        glue("qqp", tmp_path, verify=True).setup("fit")
    digest = sha256sum(tmp_path / "glue/QQP/train.tsv")
    assert f"glue_qqp_train: no digest is pinned for {tmp_path / 'glue/QQP/train.tsv'}; using it unverified " \
           f"(sha256 {digest})" in caplog.text


def test_imdb_archive_tokenized_once_then_from_the_cache(tmp_path, caplog):
    from attnbench.data.imdb import ImdbDataModule

    write_imdb(tmp_path, n=5)
    args = {"max_length": 16, "val_fraction": 0.2, "download": False, "verify": False,
            "cache_dir": str(tmp_path / "cache")}
    with caplog.at_level(logging.INFO, logger="attnbench.data.hf_text"):
        a = ImdbDataModule(str(tmp_path), "minilm", **args)
        a.setup("fit")
        assert "imdb: tokenized train 10, test 10 examples" in caplog.text
        caplog.clear()
        b = ImdbDataModule(str(tmp_path), "minilm", **args)
        b.setup("fit")
    assert "imdb: train 10, test 10 examples from the tokenization cache" in caplog.text
    assert [len(b.datasets[s]) for s in ("train", "val", "test")] == [8, 2, 10]
    labels = b.datasets["train"][:]["labels"].tolist() + b.datasets["val"][:]["labels"].tolist()
    assert sorted(labels) == [0] * 5 + [1] * 5
    assert all(torch.equal(a.datasets["val"][i]["input_ids"], b.datasets["val"][i]["input_ids"]) for i in range(2))


def test_imdb_neither_way_names_the_archive_and_the_hub(tmp_path, monkeypatch):
    from attnbench.data.imdb import ImdbDataModule

    _hub_offline(monkeypatch, tmp_path)
    with pytest.raises(DataError) as e:
        ImdbDataModule(str(tmp_path), "minilm", cache_dir=str(tmp_path / "cache")).setup("fit")
    msg = str(e.value)
    assert f"{tmp_path / IMDB_SOURCE.path} not found" in msg and "prepare_data.py imdb [--from DIR]" in msg
    assert "stanfordnlp/imdb (config plain_text) at revision e6281661" in msg and "offline" in msg
