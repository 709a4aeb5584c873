"""The cluster path on a real scheduler: sweeps through ``hydra/launcher=slurm_cpu`` on the one-node cluster of
``scripts/local_slurm.sh`` (tests marked ``slurm``: skipped, with the script's reason, where it cannot start).

The cluster stays up after the tests (pytest workers share it; ``scripts/local_slurm.sh down`` stops it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import FAST, ROOT, run_cli, write_ett_csv

SCRIPT = ROOT / "scripts" / "local_slurm.sh"


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[str]:
    """``scripts/local_slurm.sh up`` once per session (idempotent, so once per pytest worker); SLURM_CONF set for
    the session. Skips where the cluster cannot start (not root, no apt-get, a daemon that fails)."""
    try:
        p = subprocess.run(["bash", str(SCRIPT), "up"], capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as e:
        pytest.skip(f"local SLURM cluster: {e}")
    if p.returncode != 0:
        said = (p.stderr or p.stdout).strip().splitlines()
        pytest.skip(f"local SLURM cluster cannot start: {said[-1] if said else f'exit status {p.returncode}'}")
    conf = p.stdout.strip().splitlines()[-1].removeprefix("export SLURM_CONF=")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SLURM_CONF", conf)
        yield conf


@pytest.fixture
def sweep_root(slurm_cluster, tmp_path) -> Iterator[Path]:
    """tmp_path, with the test's data in ``data/``; any SLURM job of the test still queued at its end is
    cancelled (its array ids read from the sweeps' ``.submitit/`` folders)."""
    write_ett_csv(tmp_path / "data" / "ETT-small" / "ETTh1.csv")
    yield tmp_path
    arrays = _arrays(tmp_path)
    if arrays:
        subprocess.run(["scancel", *arrays], capture_output=True)


def _arrays(root: Path) -> list[str]:
    """The SLURM array ids of the sweeps under ``root`` (submitit's ``.submitit/<array id>_<task>/`` folders)."""
    return sorted({p.name.split("_")[0] for p in root.rglob(".submitit/*_*")
                   if p.is_dir() and p.name.replace("_", "").isdigit()})


def _sweep_dir(root: Path) -> Path:
    (sweep_dir,) = (root / "outputs").glob("*/multiruns/*")
    return sweep_dir


def _summary(root: Path) -> dict:
    return json.loads((_sweep_dir(root) / "summary.json").read_text())


# ---------------------------------------------------------------------------------------------- config
def test_the_cpu_profile_requests_no_gpu_and_requeues_as_the_gpu_one(compose_cfg):
    cpu = compose_cfg(["hydra/launcher=slurm_cpu"], hydra=True).hydra.launcher
    gpu = compose_cfg(["hydra/launcher=slurm"], hydra=True).hydra.launcher
    assert cpu.gpus_per_node is None and 1 <= cpu.cpus_per_task <= 2 and gpu.gpus_per_node >= 1
    for key in ("_target_", "timeout_min", "signal_delay_s", "max_num_timeout", "additional_parameters"):
        assert cpu[key] == gpu[key], key


# ---------------------------------------------------------------------------------------------- quiet
def test_no_srun_hint_outside_a_slurm_job(monkeypatch):
    """With srun on the PATH a plain local run gets no "`srun` is available but not used" hint; a process inside
    a SLURM allocation still does (a DDP job started without srun would hang)."""
    from lightning.fabric.plugins.environments import slurm as lightning_slurm

    from attnbench.train import quiet_lightning

    monkeypatch.setattr(lightning_slurm.shutil, "which", lambda name: f"/usr/bin/{name}")
    for var in ("SLURM_JOB_ID", "SLURM_NTASKS", "SLURM_JOB_NAME"):
        monkeypatch.delenv(var, raising=False)

    def hints() -> list[str]:
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            quiet_lightning()
            lightning_slurm.SLURMEnvironment._validate_srun_used()
        return [str(w.message) for w in seen if "`srun`" in str(w.message)]

    assert hints() == []
    monkeypatch.setenv("SLURM_JOB_ID", "7")
    assert len(hints()) == 1


# ---------------------------------------------------------------------------------------------- sweeps
@pytest.mark.slurm
@pytest.mark.slow
def test_cpu_sweep_runs_both_jobs_quietly(sweep_root):
    """The issue's done-when: ``train.py -m model=hot,full data=ett debug=fast hydra/launcher=slurm_cpu`` ends
    with 2 ok jobs in summary.json and no sacct or srun noise (one line says job states come from squeue)."""
    synthetic = ["data.verify=false", "data.download=false"]  # the test's ETTh1 is not the official file
    p = run_cli(["model=hot,full", "data=ett", "debug=fast", "hydra/launcher=slurm_cpu",
                 f"paths.data_dir={sweep_root / 'data'}", *synthetic], sweep_root, flags=("-m",))
    out = p.stdout + p.stderr
    assert p.returncode == 0, out[-3000:]
    summary = _summary(sweep_root)
    assert summary["counts"] == {"ok": 2} and summary["attempts"] == 2, summary
    assert "Bypassing sacct error" not in out and out.count("job states come from squeue") == 1, out[-3000:]
    assert "`srun`" not in out and "table" not in out  # no experiment: nothing about tables
    assert "[1/2]" in out and "[2/2]" in out and "sweep finished: 2 jobs, 2 ok" in out


@pytest.mark.slurm
@pytest.mark.slow
def test_a_crashing_value_fails_alone(sweep_root):
    """One sweep value fails inside its job (ETTh2 is not in the data folder): ``failed`` in summary.json and in
    the sweep's table while the other job finishes ok."""
    table = ["experiment=hot/forecasting", "seed=1", "data.pred_len=96", "model=hot"]
    p = run_cli([*FAST, *table, "data.name=ETTh1,ETTh2", "hydra/launcher=slurm_cpu",
                 f"paths.data_dir={sweep_root / 'data'}"], sweep_root, flags=("-m",))
    out = p.stdout + p.stderr
    assert p.returncode != 0  # Hydra re-raises the failed job's error after the sweep
    summary = _summary(sweep_root)
    assert summary["counts"] == {"ok": 1, "failed": 1}, summary
    status = {job["job"].split("_", 1)[0]: job for job in summary["jobs"]}
    assert status["0"]["status"] == "ok" and status["1"]["status"] == "failed"
    assert "ETTh2" in status["1"]["line"] and "sweep finished: 2 jobs, 1 ok, 1 not ok (1 failed, 1 ok)" in out
    md = (_sweep_dir(sweep_root) / "table.md").read_text()
    assert "ETTh2" in md and "failed" in md.lower(), md


@pytest.mark.slurm
@pytest.mark.slow
def test_scancel_of_the_array_keeps_finished_results(sweep_root):
    """``scancel`` of the array while job 1 trains (job 0 done, job 2 waiting for its turn): job 0's results.json
    intact and ok, and the summary names jobs 1 and 2 as cancelled."""
    args = [*FAST, "model=hot", "data=ett", "trainer.max_epochs=1,1000,1", "hydra/launcher=slurm_cpu",
            "hydra.launcher.array_parallelism=1", f"paths.data_dir={sweep_root / 'data'}",
            f"paths.log_dir={sweep_root / 'outputs'}"]
    env = {**os.environ, "WANDB_MODE": "offline", "HYDRA_FULL_ERROR": "1"}
    log = (sweep_root / "sweep.log").open("w")
    proc = subprocess.Popen([sys.executable, str(ROOT / "train.py"), "-m", *args], cwd=sweep_root, env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 400
        while not list((sweep_root / "outputs").glob("*/multiruns/*/1_*/**/metrics.csv")):  # job 1 trains
            assert proc.poll() is None and time.time() < deadline, (sweep_root / "sweep.log").read_text()[-3000:]
            time.sleep(1)
        sweep_dir = _sweep_dir(sweep_root)
        (array,) = _arrays(sweep_dir)
        subprocess.run(["scancel", array], check=True)
        proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    out = (sweep_root / "sweep.log").read_text()
    job0 = json.loads(next(sweep_dir.glob("0_*/results.json")).read_text())
    assert job0["status"] == "ok" and job0["metrics"]["test/mse"] > 0
    for f in sweep_dir.glob("*/results.json"):  # what a cancelled job wrote is whole too
        json.loads(f.read_text())
    summary = _summary(sweep_root)
    assert summary["counts"] == {"ok": 1, "cancelled": 2}, (summary, out[-3000:])
    lines = {job["job"].split("_", 1)[0]: job["line"] for job in summary["jobs"]}
    assert "cancelled (SLURM)" in lines["1"] and "cancelled (SLURM); not started" in lines["2"]
    assert "trainer.max_epochs=1000" in lines["1"] and lines["2"].startswith("2_")
