"""The LRA datamodule (``data=lra``) on a tiny generated ListOps set, and the ``data.task`` config checks."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from attnbench.config import ConfigError, LRADataConfig, check_schema, resolved
from attnbench.data.catalog.lra import LRA_TASKS
from attnbench.data.download import DataError
from attnbench.data.lra.common import PAD_ID, LRATask
from attnbench.data.lra.datamodule import LRADataModule, check_split
from attnbench.data.lra.listops import INFO, ListOpsSpec, write_splits
from scripts.prepare_data import main as prepare_data
from tests.conftest import train_run

TINY = ListOpsSpec(n_train=24, n_val=6, n_test=5, min_length=10, max_length=50)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("data")
    write_splits(d / "lra" / "listops", TINY, seed=0)
    return d


def test_listops_batches_shapes_pad_and_splits(data_dir):
    dm = LRADataModule("listops", str(data_dir), max_len=64, batch_size=8, eval_batch_size=4)
    assert dm.info == INFO and dm.n_classes == 10 and dm.max_len == 64
    dm.setup("fit")
    assert {s: len(d) for s, d in dm.datasets.items()} == {"train": 24, "val": 6, "test": 5}
    assert dm.datasets["train"].tokens.dtype == torch.uint8  # held compact, served as int64
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (8, 64) and x.dtype == torch.int64 and y.shape == (8,) and y.dtype == torch.int64
    assert (x[:, -1] == PAD_ID).all() and (x[:, 0] >= 11).all()  # length < 50 < 64; every tree opens with an op
    assert int(x.max()) < INFO.vocab_size and int(y.min()) >= 0 and int(y.max()) < 10
    mask = x != PAD_ID  # the model's key-padding mask: the real tokens form a prefix
    assert torch.equal(mask, mask.cummin(dim=1).values)
    xv, _ = next(iter(dm.val_dataloader()))
    assert xv.shape == (4, 64)
    assert sum(dm.class_counts) == 24 and len(dm.class_counts) == 10


def test_official_length_and_limit(data_dir):
    dm = LRADataModule("listops", str(data_dir), limit_examples=3)  # max_len null: the official 2000
    dm.setup()
    assert dm.max_len == 2000 and dm.datasets["test"].tokens.shape == (3, 2000)


def test_missing_files_and_bad_arguments(tmp_path):
    with pytest.raises(DataError, match=rf"prepare_data.py listops --generate --data-dir {tmp_path}"):
        LRADataModule("listops", str(tmp_path)).setup()
    with pytest.raises(ValueError, match="allowed: listops, text, retrieval, image, pathfinder"):
        LRADataModule("listopz", str(tmp_path))
    with pytest.raises(ValueError, match="data.options.resolution: task 'listops' takes no options"):
        LRADataModule("listops", str(tmp_path), options={"resolution": 32})


def test_a_task_modules_output_is_checked():
    """Shape (two towers too), integer dtypes of any width, id and label ranges: a task module's slip is a DataError."""
    pair = LRATask(name="retrieval", vocab_size=257, num_classes=2, max_len=4, two_tower=True)
    ok, y = torch.randint(0, 257, (3, 2, 4), dtype=torch.int16), torch.tensor([0, 1, 1])
    check_split(pair, "train", ok, y, 4)
    check_split(INFO, "val", torch.zeros(3, 4, dtype=torch.uint8), y, 4)
    for tokens, labels, needle in [(ok[:, 0], y, "expected integer (3, 2, 4)"), (ok.float(), y, "tokens are"),
                                   (ok.clone().fill_(257), y, "outside [0, vocab_size=257)"),
                                   (ok, torch.tensor([0, 1, 2]), "labels span [0, 2], outside [0, num_classes=2)")]:
        with pytest.raises(DataError, match=re.escape(needle)):
            check_split(pair, "train", tokens, labels, 4)


def _data_node(compose_cfg, overrides: list[str]):
    cfg = compose_cfg(["data=lra", *overrides])
    return resolved(cfg.data)


def test_config_composes_and_rejects_bad_values(compose_cfg):
    node = _data_node(compose_cfg, [])
    assert node["task"] == "listops" and node["max_len"] is None and node["options"] == {}
    check_schema("data", LRADataConfig, node)
    for overrides, needle in [
        (["data.task=listopz"], "data.task='listopz' is invalid (did you mean 'listops'?); allowed: "
                                + ", ".join(LRA_TASKS)),
        (["data.max_len=0"], "data.max_len=0 is invalid"),
        (["data.batch_size=0"], "data.batch_size=0"),
        (["+data.options.resolution=32"], "data.options.resolution is not an option of data.task='listops'"),
    ]:
        with pytest.raises(ConfigError) as e:
            check_schema("data", LRADataConfig, _data_node(compose_cfg, overrides))
        assert needle in str(e.value)


class _MeanPool(torch.nn.Module):
    """tokens (B, L) -> logits (B, C): embedding mean over the real tokens (mask = tokens != PAD_ID)."""

    def __init__(self, vocab: int, n_classes: int) -> None:
        super().__init__()
        self.emb, self.out = torch.nn.Embedding(vocab, 8, padding_idx=PAD_ID), torch.nn.Linear(8, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        keep = (x != PAD_ID).unsqueeze(-1).float()  # (B, L, 1)
        return self.out((self.emb(x) * keep).sum(1) / keep.sum(1).clamp_min(1.0))  # (B, C)


def test_classification_module_trains_on_lra_batches(data_dir, tmp_path):
    """The batch format is the one ``lit.classification.ClassificationModule`` consumes, class weights included."""
    import functools

    import lightning as L

    from attnbench.lit.classification import ClassificationModule

    dm = LRADataModule("listops", str(data_dir), max_len=64, batch_size=8)
    model = ClassificationModule(_MeanPool(INFO.vocab_size, dm.n_classes), functools.partial(torch.optim.Adam,
                                 lr=1e-2), n_classes=dm.n_classes, class_weights="inverse")
    trainer = L.Trainer(fast_dev_run=2, accelerator="cpu", logger=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(model, datamodule=dm)
    trainer.test(model, datamodule=dm, verbose=False)
    assert torch.isfinite(trainer.callback_metrics["test/loss"])
    assert model.class_w.shape == (10,) and float(model.class_w.sum()) == pytest.approx(10.0)


@pytest.mark.slow
def test_done_when_listops_performer_debug_fast(tmp_path):
    """Issue 12's Done-when on a generated set: ``prepare_data.py listops --generate``, then ``python train.py
    model=lra_encoder data=lra data.task=listops model/attention=performer debug=fast`` (the released ListOps model;
    a tiny set of short trees padded to 128 keeps it CPU-quick)."""
    data = tmp_path / "data"
    assert prepare_data(["listops", "--generate", "--n-train", "96", "--n-val", "16", "--n-test", "16",
                         "--min-length", "20", "--max-length", "120", "--data-dir", str(data)]) == 0
    res = train_run(["model=lra_encoder", "data=lra", "data.task=listops", "model/attention=performer", "debug=fast",
                     "logger=csv", "~callbacks.rich_progress_bar", "trainer.enable_progress_bar=false",
                     "data.max_len=128", f"paths.data_dir={data}"], tmp_path / "run")
    assert res["status"] == "ok" and 0.0 <= res["metrics"]["test/acc"] <= 1.0
