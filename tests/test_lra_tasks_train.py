"""Every LRA task trains end to end (debug=fast) with three attentions — full, a linear one (performer) and a
clustering one (smyrf) — on small files in each task's real on-disk format, as one multirun per task."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import train_multirun

ATTENTIONS = ("full", "performer", "smyrf")
QUICK_LRA = ["debug=fast", "logger=csv", "~callbacks.rich_progress_bar", "trainer.enable_progress_bar=false",
             "data.batch_size=4", "seed=0", "model.net.d_model=16", "model.net.d_mlp=32", "model.net.n_layers=1"]


def _listops(d: Path) -> list[str]:
    from attnbench.data.lra.listops import ListOpsSpec, write_splits

    write_splits(d / "lra" / "listops", ListOpsSpec(n_train=24, n_val=8, n_test=8, min_length=10, max_length=60))
    return []


def _text(d: Path) -> list[str]:
    from tests.conftest import write_imdb

    write_imdb(d, n=6)
    return ["data.max_len=128", "data.options.val_fraction=0.25", "+data.options.verify=false"]  # a toy archive


def _retrieval(d: Path) -> list[str]:
    root = d / "lra" / "retrieval"
    root.mkdir(parents=True)
    for split, n in (("train", 12), ("eval", 8), ("test", 8)):
        lines = [f"{i % 2}\tP{i}\tQ{i}\t{'citing paper ' * (i % 5)}\tcited paper {i}\n" for i in range(n)]
        (root / f"new_aan_pairs.{split}.tsv").write_text("".join(lines))
    return ["data.max_len=64"]


def _image(d: Path) -> list[str]:
    from tests.test_lra_readers import write_cifar

    write_cifar(d, per_batch=4, n_test=8)
    return ["+data.options.verify=false"]  # not the official archive's checksum


def _pathfinder(d: Path) -> list[str]:
    from attnbench.data.lra import pathfinder as pf

    pf.write_folder(pf.folder(d / "lra" / "pathfinder", 32, "hard"), pf.params_for(32, "hard"), 20, seed=0,
                    batch_size=10)
    return []


TASKS = {"listops": _listops, "text": _text, "retrieval": _retrieval, "image": _image, "pathfinder": _pathfinder}


@pytest.mark.slow
@pytest.mark.parametrize("task", list(TASKS))
def test_every_lra_task_trains_with_full_linear_and_clustering_attention(task, tmp_path):
    data = tmp_path / "data"
    extra = TASKS[task](data)
    res = train_multirun([f"experiment=lra/cpu/{task}", f"model/attention={','.join(ATTENTIONS)}", *QUICK_LRA,
                          *extra, f"paths.data_dir={data}"], tmp_path / "run")
    assert sorted(r["config"]["model"]["net"]["attention"]["name"] for r in res) == sorted(ATTENTIONS)
    for r in res:
        assert r["status"] == "ok", r.get("error")
        assert 0.0 <= r["metrics"]["test/acc"] <= 1.0
        assert r["config"]["data"]["task"] == task
