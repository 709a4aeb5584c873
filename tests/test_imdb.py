"""IMDB: the aclImdb archive read in place, splits, md5-or-sha256 verification, configs and an end-to-end run."""

from __future__ import annotations

import hashlib
import math

import pytest

pytest.importorskip("transformers")

from attnbench.config import validate  # noqa: E402
from attnbench.data.catalog import Source  # noqa: E402
from attnbench.data.download import DataError, verify  # noqa: E402
from attnbench.data.imdb import read_imdb  # noqa: E402
from tests.conftest import QUICK, SHARED_DATA, needs_minilm, train_run, write_imdb  # noqa: E402


def test_read_imdb_splits_labels_and_order(tmp_path):
    data = read_imdb(write_imdb(tmp_path, n=3) / "imdb" / "aclImdb_v1.tar.gz")
    texts, labels = data["train"]
    assert len(texts) == 6 and labels == [0, 0, 0, 1, 1, 1]  # neg before pos, then file order
    assert texts[0] == ("A terrible film.<br /><br />Review 0 of the train set.",)
    assert len(data["test"][0]) == 6


def test_unreadable_archive_says_how_to_fetch(tmp_path):
    bad = tmp_path / "imdb" / "aclImdb_v1.tar.gz"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"not a tar")
    with pytest.raises(DataError, match="prepare_data.py imdb"):
        read_imdb(bad)


def test_verify_accepts_sha256_or_md5_and_names_both(tmp_path):
    f = tmp_path / "x.bin"
    f.write_bytes(b"abc")
    sha, md5 = hashlib.sha256(b"abc").hexdigest(), hashlib.md5(b"abc").hexdigest()
    verify("x", Source("x.bin", "u", ("0" * 64,), md5=(md5,)), f)  # the md5 matches
    verify("x", Source("x.bin", "u", (sha,), md5=("0" * 32,)), f)  # the sha256 matches
    with pytest.raises(DataError, match=f"sha256 {sha}, expected 0+; md5 {md5}, expected 0+"):
        verify("x", Source("x.bin", "u", ("0" * 64,), md5=("0" * 32,)), f)


@needs_minilm
def test_datamodule_val_from_train_and_official_test(tmp_path):
    from attnbench.data.imdb import ImdbDataModule

    cache = str(tmp_path / "cache")
    dm = ImdbDataModule(str(write_imdb(tmp_path)), "minilm", max_length=16, batch_size=4, val_fraction=0.2,
                        download=False, verify=False, cache_dir=cache)
    dm.setup("fit")
    assert [len(dm.datasets[s]) for s in ("train", "val", "test")] == [16, 4, 20]
    b = next(iter(dm.train_dataloader()))
    assert b["input_ids"].shape[0] == 4 and b["input_ids"].shape[1] <= 16 and set(b["labels"].tolist()) <= {0, 1}
    dm2 = ImdbDataModule(str(tmp_path), "minilm", limit_examples=4, download=False, verify=False, cache_dir=cache)
    dm2.setup("fit")
    test_labels = dm2.datasets["test"][:]["labels"].tolist()
    assert len(test_labels) == 4 and len(set(test_labels)) == 2  # seeded shuffle first


def test_missing_archive_says_how_to_get_it(tmp_path):
    from attnbench.data.imdb import ImdbDataModule

    with pytest.raises(DataError, match="prepare_data.py imdb"):
        ImdbDataModule(str(tmp_path), "minilm", download=False).prepare_data()


def test_imdb_config_composes(compose_cfg):
    cfg = compose_cfg(["model=smyrf_bert", "data=imdb"])
    validate(cfg)
    assert cfg.model.task == "imdb" and cfg.model.net.n_labels == 2 and cfg.data.max_length == 512


@needs_minilm
@pytest.mark.slow
def test_imdb_end_to_end(tmp_path):
    data = write_imdb(tmp_path / "data", n=6)
    res = train_run([*QUICK, "model=smyrf_bert", "data=imdb", "model.net.pretrained=minilm", "data.max_length=32",
                     "data.batch_size=4", "data.eval_batch_size=4", "model.net.attention.cluster_size=8",
                     f"paths.data_dir={data}", f"data.cache_dir={tmp_path / 'cache'}"], tmp_path / "run")
    m = res["metrics"]
    assert res["status"] == "ok" and 0.0 <= m["test/acc"] <= 100.0 and m["test/score"] == m["test/acc"]
    assert math.isfinite(m["train/loss"])


@pytest.mark.data
def test_real_imdb_archive_verifies_and_reads():
    from attnbench.data.catalog import IMDB_SOURCE
    from attnbench.data.download import locate

    data = read_imdb(locate("imdb", IMDB_SOURCE, SHARED_DATA, check=True))
    for split in ("train", "test"):
        texts, labels = data[split]
        assert len(texts) == 25000 and sum(labels) == 12500, split


@needs_minilm
@pytest.mark.data
def test_real_imdb_through_the_datamodule(tmp_path):
    from attnbench.data.imdb import ImdbDataModule

    dm = ImdbDataModule(str(SHARED_DATA), "minilm", max_length=32, download=False, cache_dir=str(tmp_path / "cache"))
    dm.setup("fit")
    assert [len(dm.datasets[s]) for s in ("train", "val", "test")] == [22500, 2500, 25000]
    assert int(dm.datasets["test"][:]["labels"].sum()) == 12500
