"""Sweeps that report themselves: folder names, W&B names, per-job status lines, the end-of-sweep summary."""

from __future__ import annotations

import json
import logging
import signal
from pathlib import Path
from types import SimpleNamespace

import pytest
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import OmegaConf

from attnbench import names, sweep, train
from tests.conftest import FAST, ROOT, run_cli, write_ett_csv
from tests.tables import forecast_result, write_result
from tests.test_make_table_seeds import SWEEP_OVERRIDES


@pytest.fixture
def hydra_cfg(compose_cfg):
    """compose(overrides) -> the composed config with its ``hydra`` node (as a run sees it); HydraConfig unset
    after (a test sets it)."""
    yield lambda overrides: compose_cfg(overrides, hydra=True)
    HydraConfig.instance().cfg = None


# ---------------------------------------------------------------------------------------------- names
def test_folder_names_are_safe_and_keep_what_ran():
    assert names.dirname("hot/linear  x:y") == "hot-linear-x_y"
    assert names.job_dirname(3, "data.name=ETTh1,model.horizons=[96,192],model/attention=hot_linear,"
                                "paths.data_dir=/a/b,experiment=hot/forecasting,seed=2") == (
        "3_data.name=ETTh1,model.horizons=_96,192_,model-attention=hot_linear,seed=2")
    assert names.job_dirname(0, "") == "0" and len(names.job_dirname(1, "x=" + "a" * 500)) <= 2 + names.MAX_NAME


@pytest.mark.parametrize("overrides, task, tail", [
    (["model=hot", "data.name=ETTh2"], "train", "_hot_ETTh2"),
    (["model=full", "debug=fast"], "debug", "_full_ETTh1"),  # debug runs name model and data too
    (["model=bert", "data=glue", "data.task=rte"], "train", "_bert_rte"),
    (["experiment=hot/medmnist3d", "model=vit3d"], "hot_medmnist3d", "_vit3d_organmnist3d"),
])
def test_run_dir_names_model_and_data(hydra_cfg, overrides, task, tail):
    run_dir = Path(hydra_cfg(overrides).hydra.run.dir)
    assert run_dir.parent.parent.name == task and run_dir.parent.name == "runs"
    assert run_dir.name.endswith(tail), run_dir.name


def test_multirun_subdir_names_the_job_overrides(hydra_cfg):
    cfg = hydra_cfg(["experiment=hot/forecasting", "model=hot", "data.name=ETTh1", "seed=2",
                     "model/attention=hot_linear"])
    cfg.hydra.job.num = 4
    assert cfg.hydra.sweep.subdir == "4_data.name=ETTh1,model-attention=hot_linear,model=hot,seed=2"
    assert cfg.hydra.callbacks.sweep_summary._target_ == "attnbench.sweep.SweepSummary"


def test_wandb_group_per_sweep_name_from_model_data_overrides(hydra_cfg, monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    cfg = hydra_cfg(["logger=wandb", "model=full", "data.name=ETTm1", "seed=3", "logger.wandb.log_model=true",
                     f"paths.output_dir={tmp_path}"])
    assert cfg.logger.wandb.group == "train" and cfg.logger.wandb.name == "run_ETTm1"  # outside a Hydra run
    cfg.hydra.mode, cfg.hydra.job.num = RunMode.MULTIRUN, 0
    HydraConfig.instance().set_config(cfg)
    sweep_time = Path(cfg.hydra.sweep.dir).name
    assert cfg.logger.wandb.group == f"train/{sweep_time}"  # every job of the sweep: one group
    assert cfg.logger.wandb.name == "full_ETTm1 data.name=ETTm1,model=full,seed=3"  # logger/paths keys left out
    from hydra.utils import instantiate

    logger = instantiate(cfg.logger.wandb)
    assert logger._log_model is True and logger._wandb_init["group"] == f"train/{sweep_time}"
    assert OmegaConf.load(ROOT / "conf" / "logger" / "wandb.yaml").wandb.log_model is False  # opt-in


# ---------------------------------------------------------------------------------------------- summary
def test_expected_jobs_counts_the_basic_sweep(hydra_cfg):
    cfg = hydra_cfg(["experiment=hot/forecasting_ili"])
    assert sweep.expected_jobs(cfg) == 3 * 7 * 4  # seeds x models (hot, full, five baselines) x horizons
    cfg = hydra_cfg(["experiment=hot/forecasting_ili", "data.pred_len=24", "seed=1"])  # the command line wins
    cfg.hydra.overrides.task = ["data.pred_len=24", "seed=1"]
    assert sweep.expected_jobs(cfg) == 7  # the models


def _job_return(out: Path):
    return SimpleNamespace(hydra_cfg=OmegaConf.create({"hydra": {"runtime": {"output_dir": str(out)}}}))


def test_callback_summarizes_after_the_last_job_even_if_one_failed(tmp_path, caplog):
    """Hydra skips on_multirun_end when a job failed: the summary comes after the last expected job."""
    root = tmp_path / "sweep"
    write_result(root, 0, forecast_result("hot", overrides=SWEEP_OVERRIDES))
    write_result(root, 1, forecast_result("full", status="failed", overrides=SWEEP_OVERRIDES))
    cb = sweep.SweepSummary()
    cb.sweep_dir, cb.expected = root, 2
    with caplog.at_level(logging.INFO, logger="attnbench.sweep"):
        cb.on_job_end(None, _job_return(root / "0"))
        assert not (root / "table.md").exists()
        cb.on_job_end(None, _job_return(root / "1"))
    text = caplog.text
    assert "[job 1/2] 0: ok in 12.0 s (test/mse 0.4)" in text and "[job 2/2] 1: failed" in text
    assert "sweep finished: 2 jobs, 1 ok, 1 not ok (1 failed, 1 ok)" in text
    summary = json.loads((root / "summary.json").read_text())
    assert summary["counts"] == {"ok": 1, "failed": 1} and summary["n_jobs"] == 2
    md = (root / "table.md").read_text()
    assert "| hot‡ " in md and "reduced budget (3 epochs < 20, patience 1 < 3)" in md
    caplog.clear()
    cb.on_multirun_end(None)  # already written: not twice
    assert "sweep finished" not in caplog.text


def test_a_sweep_without_an_experiment_says_nothing_about_tables(tmp_path, caplog):
    root = tmp_path / "sweep"
    write_result(root, 0, {"status": "ok", "metrics": {}})  # no experiment, no table block: no table asked for
    (root / "1" / ".hydra").mkdir(parents=True)
    (root / "1" / ".hydra" / "config.yaml").write_text("seed: 1\n")
    with caplog.at_level(logging.DEBUG, logger="attnbench.sweep"):
        status = sweep.summarize_sweep(root)
    assert status["counts"] == {"ok": 1, "missing": 1} and "table_error" not in status
    assert "no table" not in caplog.text and "make_table" not in caplog.text and "1: no results.json" in caplog.text


def test_summary_survives_a_table_that_cannot_be_made(tmp_path, caplog):
    root = tmp_path / "sweep"
    write_result(root, 0, {"status": "ok", "metrics": {}, "choices": {"experiment": "nopaper/notable"}})
    with caplog.at_level(logging.INFO, logger="attnbench.sweep"):
        status = sweep.summarize_sweep(root)
    assert status["counts"] == {"ok": 1} and "table_error" in status
    assert "python scripts/make_table.py" in caplog.text


def test_requeued_jobs_count_every_attempt(tmp_path, monkeypatch):
    """A requeued job (SLURM_RESTART_COUNT > 0) adds the time of the attempts before it, from the results.json
    they left; the line and the summary count attempts and the total time."""
    monkeypatch.delenv("SLURM_RESTART_COUNT", raising=False)
    job = tmp_path / "sweep" / "0_model=hot"
    assert train.attempt_record(job, 5.0) == {"attempts": 1, "total_wall_time_s": 5.0}
    job.mkdir(parents=True)
    (job / "results.json").write_text(json.dumps({"status": "failed", "wall_time_s": 10.0, "attempts": 1,
                                                  "total_wall_time_s": 10.0}))
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    record = train.attempt_record(job, 5.0)
    assert record == {"attempts": 2, "total_wall_time_s": 15.0}
    (job / "results.json").write_text(json.dumps({"status": "ok", "wall_time_s": 5.0, **record}))
    write_result(tmp_path / "sweep", "1_model=full", {"status": "ok", "wall_time_s": 7.0})  # written before
    status = sweep.sweep_status(tmp_path / "sweep")
    assert status["jobs"][0]["line"] == "0_model=hot: ok in 15.0 s over 2 attempts"
    assert status["attempts"] == 3 and status["job_time_s"] == 22.0


def test_summary_names_cancelled_and_never_started_jobs(tmp_path):
    """Jobs of the sweep with no folder are ``not started``; SLURM's CANCELLED makes a job ``cancelled`` unless it
    finished ok."""
    root = tmp_path / "sweep"
    write_result(root, "0_seed=1", forecast_result("hot"))
    write_result(root, "1_seed=2", forecast_result("hot", status="failed", error="RunStopped: stopped by SIGTERM"))
    names = ["0_seed=1", "1_seed=2", "2_seed=3", "3_seed=4"]
    status = sweep.sweep_status(root, names, {0: "CANCELLED", 1: "CANCELLED by 0", 2: "CANCELLED"})
    assert status["counts"] == {"ok": 1, "cancelled": 2, "not started": 1} and status["n_jobs"] == 4
    lines = [job["line"] for job in status["jobs"]]
    assert lines[1] == "1_seed=2: cancelled (SLURM); failed in 12.0 s: RunStopped: stopped by SIGTERM"
    assert lines[2:] == ["2_seed=3: cancelled (SLURM); not started", "3_seed=4: not started"]


def test_expected_job_names_are_the_job_folders(hydra_cfg):
    cfg = hydra_cfg(["model=hot", "data=ett", "debug=fast", "paths.log_dir=/x"])
    cfg.hydra.overrides.task = ["model=hot,full", "data=ett", "debug=fast", "paths.log_dir=/x"]
    assert sweep.expected_job_names(cfg) == ["0_data=ett,debug=fast,model=hot", "1_data=ett,debug=fast,model=full"]


def test_job_states_from_squeue_without_accounting(monkeypatch, caplog):
    """SLURM without accounting: submitit's watcher reads squeue (said once); a job squeue no longer lists has
    left the queue: done, its result file says how."""
    from submitit.slurm.slurm import SlurmJob

    monkeypatch.setattr(SlurmJob, "watcher", SlurmJob.watcher)
    monkeypatch.setattr(sweep.shutil, "which", lambda name: None)  # no sacct
    with caplog.at_level(logging.INFO, logger="attnbench.sweep"):
        assert sweep.use_squeue_without_accounting() and sweep.use_squeue_without_accounting()
    assert caplog.text.count("SLURM accounting is off (no sacct on the PATH): job states come from squeue") == 1
    watcher = SlurmJob.watcher
    for job_id in ("5_0", "5_1", "5_2"):
        watcher.register_job(job_id)
    assert watcher._make_command()[0] == "squeue"
    info = watcher.read_info(b"5_0|RUNNING|vm\n5_1|PENDING|\n")
    assert {k: v["State"] for k, v in info.items()} == {"5_0": "RUNNING", "5_1": "PENDING", "5_2": "LEFT_QUEUE"}
    watcher._info_dict.update(info)
    assert [watcher.is_done(j, mode="cache") for j in ("5_0", "5_1", "5_2")] == [False, False, True]


def test_progress_lines_as_results_appear(tmp_path, caplog):
    root = tmp_path / "sweep"
    progress = sweep._Progress(root, total=3)
    write_result(root, 0, forecast_result("hot"))
    (root / "2").mkdir()
    (root / "2" / "results.json").write_text('{"status": ')  # being written: not yet
    with caplog.at_level(logging.INFO, logger="attnbench.sweep"):
        progress.poll()
        write_result(root, 1, forecast_result("full", status="interrupted"))
        progress.poll()
    assert caplog.text.count("[1/3] 0: ok") == 1 and "[2/3] 1: interrupted in 12.0 s: KeyboardInterrupt" in caplog.text


def test_progress_line_follows_a_requeued_job(tmp_path, caplog, monkeypatch):
    """A job stopped for a requeue (SIGTERM: preemption, scontrol requeue) writes results.json at the stop, its
    next attempt rewrites it: the watcher logs both, the first as possibly requeued, and counts the job once."""
    from attnbench.callbacks import RunStopped

    monkeypatch.delenv("SLURM_RESTART_COUNT", raising=False)
    root = tmp_path / "sweep"
    job = root / "0_model=hot"
    job.mkdir(parents=True)
    stop = RunStopped(signal.SIGTERM, "checkpoint saved at the stop: resume with ckpt_path=ckpt/last.ckpt")
    first = {"status": "failed", "error": f"{type(stop).__name__}: {stop}", **train.attempt_record(job, 40.1)}
    (job / "results.json").write_text(json.dumps(first))
    progress = sweep._Progress(root, total=2)
    with caplog.at_level(logging.INFO, logger="attnbench.sweep"):
        assert progress.poll() == 1
        monkeypatch.setenv("SLURM_RESTART_COUNT", "1")  # the requeued attempt, same folder
        second = {"status": "ok", "metrics": {"test/mse": 0.412}, **train.attempt_record(job, 40.2)}
        (job / "results.json").write_text(json.dumps(second))
        assert progress.poll() == 1 and progress.poll() == 1  # one job; unchanged since: no third line
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["[1/2] 0_model=hot: failed in 40.1 s: RunStopped: stopped by SIGTERM; checkpoint saved at "
                     "the stop: resume with ckpt_path=ckpt/last.ckpt (may be requeued)",
                     "[1/2] 0_model=hot: ok in 80.3 s over 2 attempts (test/mse 0.412)"]
    ctrl_c = {"status": "failed", "error": f"RunStopped: {RunStopped(signal.SIGINT, 'no checkpoint saved')}"}
    assert not sweep.may_be_requeued(ctrl_c)  # Ctrl+C: final


# ---------------------------------------------------------------------------------------------- end to end
@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["basic", "submitit_local"])
def test_multirun_reports_itself(tmp_path, launcher):
    """``python train.py -m``, a process: Hydra's multirun and launchers, its run folders and callbacks (the
    in-process runs of the other tests set what these would)."""
    data = tmp_path / "data"
    write_ett_csv(data / "ETT-small" / "ETTh1.csv")
    extra = (["hydra/launcher=submitit_local", "hydra.launcher.cpus_per_task=1"] if launcher != "basic"
             else ["trainer.max_epochs=1"])  # compared, inside the Hydra app, with the configured 20 epochs
    table = ["experiment=hot/forecasting", "seed=1", "data.name=ETTh1", "data.pred_len=96"]  # the table's 2 jobs
    p = run_cli([*FAST, f"paths.data_dir={data}", *table, "model=hot,full", *extra], tmp_path, flags=("-m",))
    assert p.returncode == 0, p.stderr[-3000:]
    (sweep_dir,) = (tmp_path / "outputs" / "debug" / "multiruns").iterdir()
    jobs = sorted(d.name for d in sweep_dir.iterdir() if (d / "results.json").is_file())
    assert [j.split("_", 1)[0] for j in jobs] == ["0", "1"]
    assert "model=hot" in jobs[0].split(",") and "model=full" in jobs[1].split(",")
    for job in jobs:  # what Hydra's runner writes beside results.json: the composed config and the run's log
        assert (sweep_dir / job / ".hydra" / "config.yaml").is_file() and list((sweep_dir / job).glob("*.log"))
    out = p.stdout + p.stderr
    assert "sweep finished: 2 jobs, 2 ok" in out and (sweep_dir / "table.md").is_file()
    md = (sweep_dir / "table.md").read_text()
    assert "‡ truncated run: debug run (debug=fast)" in md
    if launcher == "basic":
        assert "reduced budget (1 epochs < 20)" in md
    if launcher != "basic":
        assert "[1/2]" in out and "[2/2]" in out  # a line per job, watched from the main process
