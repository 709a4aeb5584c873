"""W&B dashboards, read back from what offline runs wrote (``WANDB_MODE=offline``: ``<dir>/wandb/offline-run-*/``
with ``files/media/...`` and the run's records in ``run-<id>.wandb``): a job's test plots as images and its
results as summary values, the group and job type of a sweep's jobs, the sweep's summary run with its table and
figures; and W&B optional: a run whose ``wandb.init`` raises ends ok with one warning."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import wandb
from lightning_utilities.core.imports import RequirementCache
from wandb.proto import wandb_internal_pb2 as pb

from attnbench import sweep
from attnbench.lit import wandb_logger
from attnbench.lit.artifacts import PredictionArtifacts
from attnbench.wandb_log import finish_run, log_sweep, markdown_tables
from tests.conftest import FAST, train_run
from tests.tables import SNAPSHOTS, forecast_result, write_result

SWEEP_TIME = "2026-01-01_00-00-00"


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    yield
    if wandb.run is not None:  # a failed test leaves no run open for the next one
        wandb.finish()


# ---------------------------------------------------------------------------------------------- reading runs
def _records(path: Path):
    """The protobuf records of a ``.wandb`` file: W&B's LevelDB-style log (a 7-byte header, 32 KiB blocks of
    chunks: crc32 (4), length (2), type (1: full, 2: first, 3: middle, 4: last))."""
    data = path.read_bytes()
    assert data[:4] == b":W&B", path
    pos, block, buf = 7, 32768, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # a block's tail too short for a chunk header is padding
            pos += left
            continue
        length, kind = int.from_bytes(data[pos + 4:pos + 6], "little"), data[pos + 6]
        buf += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(buf)
            buf = b""
            yield record


def read_run(run_dir: Path, wait_s: float = 30.0) -> dict:
    """An offline run: its run record (group, job type, name), final summary (nested keys as dicts), exit code,
    folder. W&B's service may still be writing the file when ``finish`` returns: read until its exit record."""
    (path,) = run_dir.glob("run-*.wandb")
    deadline = time.monotonic() + wait_s
    while True:
        records = list(_records(path))
        if any(r.WhichOneof("record_type") == "exit" for r in records) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    out: dict = {"summary": {}, "dir": run_dir}
    for r in records:
        kind = r.WhichOneof("record_type")
        if kind == "run":
            out |= {"group": r.run.run_group, "job_type": r.run.job_type, "name": r.run.display_name,
                    "project": r.run.project}
        elif kind == "summary":
            for u in r.summary.update:
                *parents, last = list(u.nested_key) or [u.key]
                node = out["summary"]
                for k in parents:
                    node = node.setdefault(k, {})
                node[last] = json.loads(u.value_json)
        elif kind == "exit":
            out["exit_code"] = r.exit.exit_code
    return out


def offline_runs(folder: Path) -> list[dict]:
    return [read_run(d) for d in sorted((folder / "wandb").glob("offline-run-*"))]


def media(run: dict, key: str) -> Path:
    """The file a media summary value (an image, a list of one image, a table) points to, checked to exist."""
    value = run["summary"][key]
    path = run["dir"] / "files" / (value["filenames"][0] if "filenames" in value else value["path"])
    assert path.is_file(), path
    return path


# ---------------------------------------------------------------------------------------------- a job
def test_job_logs_its_plots_and_results_in_the_sweeps_group_and_the_sweep_a_summary_run(tmp_path, synth_data_dir,
                                                                                         offline):
    """One job of a multirun: group <task>/<sweep folder>, job type <task>, test/forecasts as an image; the
    sweep's summary run joins its group, job type summary."""
    root = tmp_path / SWEEP_TIME
    res = train_run([*FAST, f"paths.data_dir={synth_data_dir}", "logger=wandb", "hydra.mode=MULTIRUN",
                     f"hydra.sweep.dir={root}"], root / "0", job_num=0)
    assert res["status"] == "ok"
    (job,) = offline_runs(root / "0")
    assert (job["group"], job["job_type"]) == (f"debug/{SWEEP_TIME}", "debug")
    assert job["summary"]["test/forecasts"]["_type"] == "images/separated"  # Lightning's log_image: a list
    assert media(job, "test/forecasts").read_bytes()[:4] == b"\x89PNG"
    assert job["summary"]["test/mse"] == pytest.approx(res["metrics"]["test/mse"])

    sweep.summarize_sweep(root)  # no experiment, no table: the job statuses only
    folder = log_sweep(root)  # once per sweep: the run summarize_sweep made, where it calls log_sweep
    assert log_sweep(root) == folder
    (summary,) = offline_runs(root)
    assert folder == summary["dir"]
    assert (summary["group"], summary["job_type"], summary["exit_code"]) == (job["group"], "summary", 0)
    jobs = json.loads(media(summary, "jobs").read_text())
    assert jobs["columns"] == ["job", "status", "line"] and [r[:2] for r in jobs["data"]] == [["0", "ok"]]
    assert summary["summary"]["jobs/ok"] == summary["summary"]["n_jobs"] == 1


def test_finish_run_puts_results_json_in_the_summary(tmp_path, offline):
    result = forecast_result("hot", mse=0.4, status="ok") | {"wall_time_s": 12.5, "peak_memory_mb": 900.0}
    wandb.init(dir=str(tmp_path), project="attnbench")
    finish_run(result)
    assert wandb.run is None
    (run,) = offline_runs(tmp_path)
    values = {k: run["summary"][k] for k in ("status", "test/mse", "n_params", "epochs", "wall_time_s")}
    assert values == {"status": "ok", "test/mse": 0.4, "n_params": 1198560, "epochs": 3, "wall_time_s": 12.5}
    assert run["exit_code"] == 0

    wandb.init(dir=str(tmp_path / "failed"), project="attnbench")
    finish_run(forecast_result("full", status="failed", error="RuntimeError: boom\ntraceback"))
    (run,) = offline_runs(tmp_path / "failed")
    assert (run["summary"]["status"], run["summary"]["error"], run["exit_code"]) == ("failed", "RuntimeError: boom",
                                                                                     1)
    finish_run({"status": "ok"})  # no run open: nothing to do


def test_confusion_matrix_goes_into_the_run_as_an_image(tmp_path, offline):
    lg = wandb_logger.wandb_logger(project="attnbench", save_dir=str(tmp_path), group="g", job_type="t")
    trainer = SimpleNamespace(global_rank=0, world_size=1, global_step=7, loggers=[lg])
    cb = PredictionArtifacts(str(tmp_path))
    cb.on_test_epoch_start(trainer, None)
    cb.on_test_batch_end(trainer, None, {"probs": torch.eye(3), "target": torch.tensor([0, 1, 1])}, None, 0)
    cb.on_test_epoch_end(trainer, None)
    wandb.finish()
    (run,) = offline_runs(tmp_path)
    assert (run["group"], run["job_type"]) == ("g", "t")
    assert media(run, "test/confusion_matrix").read_bytes()[:4] == b"\x89PNG"


# ---------------------------------------------------------------------------------------------- W&B optional
def test_wandb_init_failing_is_one_warning_and_the_run_ends_ok(tmp_path, synth_data_dir, offline, monkeypatch,
                                                                caplog):
    def refuse(*args, **kwargs):
        raise wandb.errors.UsageError("api_key not configured (no-tty)")

    monkeypatch.setattr(wandb, "init", refuse)
    with caplog.at_level(logging.WARNING):
        res = train_run([*FAST, f"paths.data_dir={synth_data_dir}", "logger=wandb"], tmp_path)
    assert res["status"] == "ok" and (tmp_path / "csv" / "metrics.csv").is_file()
    about_wandb = [r.getMessage() for r in caplog.records if "wandb" in r.getMessage().lower()]
    assert len(about_wandb) == 1, about_wandb
    assert "wandb.init failed (UsageError: api_key not configured (no-tty)); this run goes on" in about_wandb[0]
    assert not (tmp_path / "wandb").exists()


def test_wandb_not_installed_is_one_warning(monkeypatch, caplog, tmp_path):
    monkeypatch.setattr("lightning.pytorch.loggers.wandb._WANDB_AVAILABLE", RequirementCache("wandb>=999"))
    with caplog.at_level(logging.WARNING, logger="attnbench.lit.wandb_logger"):
        lg = wandb_logger.wandb_logger(project="attnbench", save_dir=str(tmp_path))
    assert type(lg).__name__ == "DummyLogger"
    (message,) = [r.getMessage() for r in caplog.records]
    assert message.startswith("logger=wandb: no W&B logger (ModuleNotFoundError: Requirement 'wandb>=999' not met")
    assert message.endswith("this run goes on without W&B (metrics: csv/metrics.csv)")


def test_sweep_summary_failing_is_one_warning(tmp_path, offline, monkeypatch, caplog):
    monkeypatch.setattr(wandb, "init", lambda **kw: (_ for _ in ()).throw(wandb.errors.CommError("no network")))
    root = _forecast_sweep(tmp_path)
    caplog.clear()  # the sweep's own lines
    with caplog.at_level(logging.WARNING, logger="attnbench.wandb_log"):
        assert log_sweep(root) is None
    assert [r.getMessage() for r in caplog.records] == [
        f"W&B: no summary run for {root} (CommError: no network); the table is in its folder"]


# ---------------------------------------------------------------------------------------------- a sweep
WANDB_NODE = {"_target_": "attnbench.lit.wandb_logger.wandb_logger", "project": "attnbench", "entity": None,
              "group": f"hot_forecasting/{SWEEP_TIME}", "job_type": "hot_forecasting", "tags": ["dev"],
              "name": "hot_ETTh1", "save_dir": "x", "offline": False, "log_model": False}


def _forecast_sweep(tmp_path: Path, wandb_node: dict | None = WANDB_NODE) -> Path:
    """hot (two seeds) and a failed full on ETTh1-96, logged to W&B (``wandb_node``) or not; summarized."""
    root = tmp_path / "multiruns" / SWEEP_TIME
    for num, result in enumerate([forecast_result("hot", seed=1, mse=0.40), forecast_result("hot", seed=2, mse=0.38),
                                  forecast_result("full", status="failed")]):
        if wandb_node is not None:
            result["config"]["logger"] = {"csv": {"_target_": "lightning.pytorch.loggers.CSVLogger"},
                                          "wandb": wandb_node}
        write_result(root, num, result)
    sweep.summarize_sweep(root)
    return root


def test_sweep_table_and_figures_go_into_one_summary_run_of_the_group(tmp_path, offline):
    root = _forecast_sweep(tmp_path)
    log_sweep(root)
    (run,) = offline_runs(root)
    assert (run["group"], run["job_type"], run["name"]) == (WANDB_NODE["group"], "summary",
                                                            f"summary {WANDB_NODE['group']}")
    table = json.loads(media(run, "table").read_text())  # ours beside the published rows, as in table.md
    rows = {(r[0], r[1], r[2]): dict(zip(table["columns"], r, strict=True)) for r in table["data"]}
    assert rows[("ETTh1", "96", "hot")]["MSE"].startswith("0.390 ± 0.014")
    assert rows[("ETTh1", "96", "full")]["MSE"] == "failed"
    assert rows[("ETTh1", "96", "iTransformer")]["published MSE"] == "0.386"
    failed = json.loads(media(run, "table/failed_or_missing_jobs").read_text())
    assert [r[:4] for r in failed["data"]] == [["full", "ETTh1", "96", "failed"]]
    runs = json.loads(media(run, "csv/table").read_text())  # table.csv: one row per job
    assert len(runs["data"]) == 3
    assert media(run, "figures/table").read_bytes()[:4] == b"\x89PNG"
    jobs = json.loads(media(run, "jobs").read_text())
    assert [r[1] for r in jobs["data"]] == ["ok", "ok", "failed"]
    assert (run["summary"]["n_jobs"], run["summary"]["jobs/ok"], run["summary"]["jobs/failed"]) == (3, 2, 1)


def test_a_sweep_without_wandb_gets_no_summary_run(tmp_path, offline, caplog):
    root = _forecast_sweep(tmp_path, wandb_node=None)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="attnbench.wandb_log"):
        assert log_sweep(root) is None
    assert not caplog.records and not (root / "wandb").exists()


def test_markdown_tables_keyed_by_their_headings():
    md = (SNAPSHOTS / "test_glue_cost_plot_and_curves_per_task_panel.md").read_text()
    tables = markdown_tables(md)
    assert list(tables) == ["table", "table/attention_cost/rte", "table/attention_cost/sst_2", "table/learning_curves"]
    columns, rows = tables["table"]
    assert columns == ["model", "RTE", "SST-2", "Avg"]
    assert rows[1] == ["ours: tree_bert[treeformer_tf] boot=off", "55.00 (n=1)", "–", "–"]
    assert markdown_tables("| a | b \\| c |\n|---|---|\n| 1 | x \\| y |\n") == {"table": (["a", "b | c"],
                                                                                       [["1", "x | y"]])}
