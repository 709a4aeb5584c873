"""Builders and fixtures for the table tests (tests/test_make_table*.py): fake job folders in the layout
train.py and Hydra write (results.json, .hydra/, csv/metrics.csv), no training; rendered tables compared whole
with stored snapshot files.

    pytest_plugins = ["tests.tables"]          # in a test module: the fixtures below
    write_result(root, 0, forecast_result("hot", mse=0.4))
    assert_snapshot(md, "test_name.md")        # tests/snapshots/test_name.md; UPDATE_SNAPSHOTS=1 writes it

The sweep fixtures work in tmp_path and return the sweep's path relative to it, so the run folders a table
lists read the same in every run.

PYTEST_DONT_REWRITE: the test modules import this before pytest_plugins registers it, too late for assertion
rewriting (a warning otherwise); it raises AssertionError with its own messages instead.
"""

from __future__ import annotations

import difflib
import json
import os
import tempfile
from pathlib import Path

import pandas as pd
import pytest
import yaml

from attnbench.analysis import classification, tables
from tests.conftest import ROOT

SNAPSHOTS = Path(__file__).resolve().parent / "snapshots"
EXPERIMENTS = sorted(str(p.relative_to(ROOT / "conf" / "experiment").with_suffix(""))
                     for p in (ROOT / "conf" / "experiment").rglob("*.yaml"))
PNG = b"\x89PNG\r\n\x1a\n"
OOM = "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB"  # a failed job's error
CLS_TARGET = "attnbench.lit.classification.ClassificationModule"
GLUE_TARGET = "attnbench.lit.text_classification.TextClassificationModule"
CLS_ATTENTION = {"hot3d": "hot", "vit3d": "full"}  # the 3D models' default model/attention choice
SWEEP_DIR = "multiruns/2026-01-01_00-00-00"  # where a multirun puts its jobs (below tmp_path here)


# ---------------------------------------------------------------------------------------------- snapshots
def assert_snapshot(text: str, name: str) -> None:
    """``text`` equals ``tests/snapshots/<name>`` to the character; UPDATE_SNAPSHOTS=1 (re)writes the file
    instead (read the diff before committing it)."""
    for tmp in ("pytest-of-", tempfile.gettempdir() + os.sep):
        if tmp in text:
            raise AssertionError(f"{name}: the text holds a temporary path ({tmp}...), different in every run; "
                                 "build the sweep under sweep_root (a path relative to tmp_path)")
    path = SNAPSHOTS / name
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return
    if not path.is_file():
        raise AssertionError(f"no snapshot {path}; create it with UPDATE_SNAPSHOTS=1 pytest <this test>, "
                             "then read it and commit it")
    stored = path.read_text(encoding="utf-8")
    if text != stored:
        diff = "".join(difflib.unified_diff(stored.splitlines(keepends=True), text.splitlines(keepends=True),
                                            f"{path} (stored)", f"{name} (rendered)"))
        raise AssertionError(f"{name} differs from its snapshot (UPDATE_SNAPSHOTS=1 rewrites it):\n{diff}")


def md_rows(md: str, keys: int = 2) -> dict[tuple[str, ...], dict[str, str]]:
    """The first Markdown table's rows keyed by their first ``keys`` cells, each a dict keyed by header."""
    lines = [ln for ln in md.split("\n\n## ")[0].splitlines() if ln.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = {}
    for ln in lines[2:]:
        cells = [c.strip() for c in ln.strip("|").split("|")]
        rows[tuple(cells[:keys])] = dict(zip(header, cells, strict=True))
    return rows


# ---------------------------------------------------------------------------------------------- job folders
def write_result(root: Path, name: int | str, result: dict) -> Path:
    """One job folder ``root/<name>/results.json``."""
    job = root / str(name)
    job.mkdir(parents=True)
    (job / "results.json").write_text(json.dumps(result))
    return job


def write_hydra(job: Path, config: dict, choices: dict[str, str], overrides: list[str] | None = None) -> Path:
    """The ``.hydra/`` folder Hydra writes into every job before it runs: config, choices, overrides. A job
    with this and no results.json was killed or is still running."""
    d = job / ".hydra"
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (d / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"runtime": {"choices": choices}}}, sort_keys=False))
    if overrides is not None:
        (d / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    return job


def forecast_result(model: str = "hot", dataset: str = "ETTh1", pred_len: int = 96, *, seed: int = 1,
                    mse: float = 0.4, mae: float | None = None, attention: str | None = None,
                    per_horizon: dict[int, tuple[float, float]] | None = None, status: str = "ok",
                    error: str = "KeyboardInterrupt: ", overrides: list[str] | None = None, debug: str | None = None,
                    limits: dict | None = None, task_name: str = "hot_forecasting", wall_time_s: float = 12.0,
                    features: str = "M", epoch_s: float | None = None) -> dict:
    """A forecasting results.json as train.run_with_results writes it (mae defaults to mse + 0.01;
    ``per_horizon`` {horizon: (mse, mae)} for a model scoring every horizon in one run)."""
    metrics: dict = {}
    if status == "ok":
        metrics = {"test/mse": mse, "test/mae": mse + 0.01 if mae is None else mae, "val/mse": 1.0,
                   "n_params": 1198560, "epochs": 3}
        if epoch_s is not None:
            metrics["epoch_s"] = epoch_s
        for h, (hm, ha) in (per_horizon or {}).items():
            metrics |= {f"test/mse_{h}": hm, f"test/mae_{h}": ha}
    trainer = {"max_epochs": 20, "limit_train_batches": None, "limit_val_batches": None,
               "limit_test_batches": None, **(limits or {})}
    choices = {"model": model, "model/attention": attention or model, "data": "ett", "trainer": "cpu",
               "logger": "csv", "experiment": "hot/forecasting", "debug": debug}
    return {"status": status, "error": None if status == "ok" else error, "metrics": metrics,
            "best_checkpoint": None, "wall_time_s": wall_time_s, "peak_memory_mb": 1166.0,
            "peak_memory_kind": "cpu_max_rss", "choices": choices,
            "overrides": [f"model={model}", f"data.name={dataset}", f"data.pred_len={pred_len}",
                          "experiment=hot/forecasting", f"seed={seed}", *(overrides or [])],
            "config": {"task_name": task_name, "seed": seed, "trainer": trainer,
                       "data": {"name": dataset, "pred_len": pred_len, "seq_len": 96, "features": features},
                       "model": {"net": {"attention": {"name": attention or model}},
                                 "horizons": sorted(per_horizon) if per_horizon else None}}}


def write_forecast_hydra(job: Path, model: str = "hot", dataset: str = "ETTh1", pred_len: int = 96, *,
                         seed: int | None = None, overrides: list[str] | None = None) -> Path:
    """A forecasting job that wrote only ``.hydra/`` (killed)."""
    config = {**({"seed": seed} if seed is not None else {}), "data": {"name": dataset, "pred_len": pred_len},
              "model": {"horizons": None}}
    return write_hydra(job, config, {"model": model, "model/attention": model}, overrides)


def cls_result(model: str, dataset: str = "organmnist3d", size: int = 28, *, acc: float | None = None,
               auc: float | None = None, seed: int | None = None, status: str = "ok", error: str | None = None,
               attention: str | None = None, n_params: int = 820_000, epochs: int = 30, wall_time_s: float = 600.0,
               gflops: float = 0.0, debug: str | None = None) -> dict:
    """A MedMNIST3D results.json (auc defaults to acc; attention FLOPs only for the attention models)."""
    metrics: dict = {}
    if status == "ok":
        metrics = {"test/acc": acc, "test/auc": acc if auc is None else auc, "test/loss": 0.3, "val/acc": acc,
                   "val/acc_best": acc, "n_params": n_params, "epochs": epochs}
        if model in CLS_ATTENTION:  # train.py's attention FLOPs per example (attention.flops.FlopRecorder)
            metrics["attention_gflops"] = gflops
    choices = {"model": model, "data": "medmnist3d", "trainer": "gpu", "experiment": "hot/medmnist3d",
               "debug": debug}
    if model in CLS_ATTENTION:
        choices["model/attention"] = attention or CLS_ATTENTION[model]
    return {"status": status, "error": error, "metrics": metrics, "best_checkpoint": None,
            "wall_time_s": wall_time_s, "peak_memory_mb": 2048.0, "peak_memory_kind": "cuda_max_allocated",
            "choices": choices, "overrides": [f"model={model}", f"data.name={dataset}", f"data.size={size}",
                                              *([f"seed={seed}"] if seed is not None else [])],
            "config": {"seed": seed, "task_name": "debug" if debug else "hot_medmnist3d",
                       "trainer": {"limit_train_batches": 3 if debug else None},
                       "data": {"name": dataset, "size": size, "n_classes": 2},
                       "model": {"_target_": CLS_TARGET, "n_classes": 2}}}


def write_cls_hydra(job: Path, model: str, dataset: str, size: int = 28, attention: str | None = None) -> Path:
    """A MedMNIST3D job's ``.hydra/`` (n_classes still an interpolation, as Hydra stores it)."""
    config = {"data": {"name": dataset, "size": size, "n_classes": "${medmnist_classes:${data.name}}"},
              "model": {"_target_": CLS_TARGET}}
    choices = {"model": model, **({"model/attention": attention or CLS_ATTENTION[model]}
                                  if model in CLS_ATTENTION else {}), "data": "medmnist3d"}
    return write_hydra(job, config, choices)


def write_cls_job(root: Path, num: int, model: str, dataset: str = "organmnist3d", size: int = 28, *,
                  hydra: bool = True, **result) -> Path:
    """Job ``num`` of a MedMNIST3D sweep: epochs 30 + num, 600 + 60 num seconds, 0.5 num attention GFLOPs."""
    result = {"epochs": 30 + num, "wall_time_s": 600.0 + 60 * num, "gflops": 0.5 * num, **result}
    job = write_result(root, num, cls_result(model, dataset, size, **result))
    if hydra:
        write_cls_hydra(job, model, dataset, size, result.get("attention"))
    return job


def glue_result(model: str, task: str, score: float, *, attention: str = "full", seed: int | None = None,
                experiment: str | None = None, table: dict | None = None, order: str | None = None,
                gflops: float | None = None) -> dict:
    """A GLUE-kind results.json (test/score); ``table`` stores a ``table:`` block in the config, ``order`` a
    tree-bootstrap order (override and config)."""
    extra = [f"seed={seed}"] * (seed is not None) + [f"callbacks.tree_bootstrap.order={order}"] * (order is not None)
    config = {"seed": seed, "data": {"task": task},
              "model": {"_target_": GLUE_TARGET, "net": {"attention": {"name": attention}}},
              **({"table": table} if table else {}),
              **({"callbacks": {"tree_bootstrap": {"order": order}}} if order else {})}
    return {"status": "ok", "metrics": {"test/score": score, **({"attention_gflops": gflops} if gflops else {})},
            "choices": {"model": model, "model/attention": attention,
                        **({"experiment": experiment} if experiment else {})},
            "overrides": [f"model={model}", f"data.task={task}", *extra], "config": config}


# ---------------------------------------------------------------------------------------------- LRA + curves
CURVES = {"metrics": ["val/acc", "train/loss_step"], "by": ["callbacks.tree_bootstrap.order", "model/attention"],
          "smooth": {"train/loss_step": 2}}
LRA_TABLE = {"kind": "tasks", "rows": ["task"], "columns": "model", "metrics": ["acc"], "direction": "higher",
             "reference": "lra", "baseline": [], "curves": CURVES}


def metrics_csv(train: dict[int, float], val: dict[int, float]) -> str:
    """A Lightning CSVLogger file: train rows and val rows apart, the other columns empty."""
    lines = ["epoch,step,train/loss_step,val/acc,val/loss"]
    lines += [f"0,{s},{v},," for s, v in train.items()] + [f"0,{s},,{v},1.0" for s, v in val.items()]
    return "\n".join(lines) + "\n"


def lra_job(root: Path, num: int, attention: str, order: str, seed: int, *, acc: float | None = None,
            gflops: float | None = None, log: str | None = None, table: dict | None = None) -> Path:
    """One ListOps job folder ``<num>_<overrides>`` with results.json (and csv/metrics.csv when ``log``); failed
    when ``acc`` is None."""
    ok = acc is not None
    metrics = {"test/acc": acc, "val/acc": acc, "n_params": 1000, "epochs": 1, "attention_gflops": gflops} if ok \
        else {}
    result = {"status": "ok" if ok else "failed", "error": None if ok else "RuntimeError: boom", "metrics": metrics,
              "choices": {"model": "lra_encoder", "model/attention": attention, "experiment": "treeformer/listops",
                          "data": "lra"},
              "overrides": [f"model/attention={attention}", f"callbacks.tree_bootstrap.order={order}",
                            f"seed={seed}"],
              "config": {"seed": seed, "table": table or LRA_TABLE, "data": {"task": "listops"},
                         "model": {"_target_": CLS_TARGET, "net": {"attention": {"name": attention}}},
                         "callbacks": {"tree_bootstrap": {"order": order}}}}
    job = write_result(root, f"{num}_callbacks.tree_bootstrap.order={order},model-attention={attention},seed={seed}",
                       result)
    if log is not None:
        (job / "csv").mkdir()
        (job / "csv" / "metrics.csv").write_text(log)
    return job


# ---------------------------------------------------------------------------------------------- fixtures
@pytest.fixture
def forecast_reference() -> pd.DataFrame:
    return tables.load_reference("forecasting_lookback96")


@pytest.fixture
def cls_reference() -> pd.DataFrame:
    return classification.load_reference("medmnist3d")


@pytest.fixture
def sweep_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where a sweep's jobs go, relative to the working directory, which is tmp_path: run folders in rendered
    tables (failed and missing jobs) are the same in every run."""
    monkeypatch.chdir(tmp_path)
    return Path(SWEEP_DIR)


@pytest.fixture
def forecast_sweep(sweep_root: Path) -> Path:
    """Two seeds of hot on ETTh1-96, a failed full run, a per-horizon run, a non-default attention."""
    weather = {96: (0.170, 0.210), 192: (0.220, 0.250), 336: (0.280, 0.300), 720: (0.360, 0.350)}
    for num, result in enumerate([
        forecast_result("hot", "ETTh1", 96, seed=1, mse=0.400, mae=0.410),
        forecast_result("hot", "ETTh1", 96, seed=2, mse=0.380, mae=0.400),
        forecast_result("full", "ETTh1", 96, status="failed", error=OOM),
        forecast_result("full", "ETTh2", 96, mse=0.300, mae=0.350),
        forecast_result("hot", "weather", 720, mse=0.36, mae=0.35, per_horizon=weather),
        forecast_result("hot", "electricity", 96, attention="hot_linear", mse=0.150, mae=0.245),
    ]):
        write_result(sweep_root, num, result)
    return sweep_root


@pytest.fixture
def cls_sweep(sweep_root: Path) -> Path:
    """Two seeds of hot3d, a vit3d, a failed resnet3d on Organ 28; a missing vit3d on Nodule; 64^3 jobs."""
    write_cls_job(sweep_root, 0, "hot3d", "organmnist3d", acc=0.900, auc=0.990)
    write_cls_job(sweep_root, 1, "hot3d", "organmnist3d", acc=0.920, auc=0.994, hydra=False)
    write_cls_job(sweep_root, 2, "vit3d", "organmnist3d", acc=0.850, auc=0.980, n_params=1_500_000)
    write_cls_job(sweep_root, 3, "resnet3d", "organmnist3d", status="failed", error=OOM)
    write_cls_job(sweep_root, 4, "hot3d", "nodulemnist3d", acc=0.860, auc=0.900)
    write_cls_hydra(sweep_root / "5", "vit3d", "nodulemnist3d")  # killed: .hydra/ only
    write_cls_job(sweep_root, 6, "hot3d", "adrenalmnist3d", 64, attention="hot_linear", acc=0.800, auc=0.850)
    write_cls_job(sweep_root, 7, "resnet3d", "adrenalmnist3d", 64, acc=0.780, auc=0.860, n_params=33_000_000)
    return sweep_root


@pytest.fixture
def lra_sweep(sweep_root: Path) -> Path:
    """full (order=off) and treeformer_tf (order=both), two seeds each, with learning curves; a failed
    treeformer_tf (order=off) that wrote no log."""
    root = sweep_root
    root.mkdir(parents=True)
    (root / "multirun.yaml").write_text("hydra:\n  mode: MULTIRUN\n")
    lra_job(root, 0, "full", "off", 0, acc=0.35, gflops=0.04, log=metrics_csv({4: 2.0, 9: 1.0}, {9: 0.2, 19: 0.3}))
    lra_job(root, 1, "full", "off", 1, acc=0.37, gflops=0.04, log=metrics_csv({4: 3.0, 9: 2.0}, {9: 0.4, 19: 0.5}))
    for num, seed, acc in [(2, 0, 0.40), (3, 1, 0.42)]:
        lra_job(root, num, "treeformer_tf", "both", seed, acc=acc, gflops=0.01,
                log=metrics_csv({4: 2.0, 9: 1.5}, {9: 0.3, 19: 0.6}))
    lra_job(root, 4, "treeformer_tf", "off", 0)
    return root
