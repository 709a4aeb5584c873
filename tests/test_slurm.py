"""The cluster path on a real scheduler: sweeps through ``hydra/launcher=slurm_cpu`` on the one-node cluster of
``scripts/local_slurm.sh`` (tests marked ``slurm``: skipped, with the script's reason, where it cannot start).

Fault paths: a job preempted while training (``scontrol requeue``) and one whose process is SIGKILLed while it
writes last.ckpt resume and end as an uninterrupted run (same weights, same metrics.csv); a time limit sends USR2,
the job saves, requeues and finishes, and past ``max_num_timeout`` requeues it is ``failed``; DDP with 2 SLURM
tasks (gloo) equals one process at the same global batch. ``Fault`` (a callback the jobs import from this module)
pauses, slows or half-writes on cue; it changes nothing that is computed.

The cluster stays up after the tests (pytest workers share it; ``scripts/local_slurm.sh down`` stops it)."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import pandas as pd
import pytest
import torch
from lightning.pytorch import Callback

from attnbench import checkpoint
from tests.conftest import FAST, ROOT, run_cli, train_run, write_ett_csv
from tests.test_fault_paths import EPOCHS, assert_same_run

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


def _start(root: Path, args: list[str]) -> subprocess.Popen:
    """``python train.py -m ARGS`` in the background, outputs under ``root/outputs``, its output in
    ``root/sweep.log``; the jobs can import this module (``PYTHONPATH``: ``Fault``)."""
    root.mkdir(parents=True, exist_ok=True)
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "WANDB_MODE": "offline", "HYDRA_FULL_ERROR": "1", "PYTHONPATH": path}
    with (root / "sweep.log").open("w") as out:
        return subprocess.Popen([sys.executable, str(ROOT / "train.py"), "-m", f"paths.log_dir={root / 'outputs'}",
                                 *args], cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT)


def _finish(proc: subprocess.Popen, root: Path, timeout: float = 300) -> str:
    """Wait for the sweep (killed after ``timeout`` s); its output."""
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    return (root / "sweep.log").read_text()


def _wait_for(what: str, found: Any, proc: subprocess.Popen, root: Path, timeout: float = 300) -> Any:
    """Poll ``found()`` every 0.2 s until it is truthy (its value); when the sweep ends first or ``timeout`` s
    pass, stop the sweep and fail with its output."""
    deadline = time.time() + timeout
    while not (value := found()):
        if proc.poll() is not None or time.time() > deadline:
            why = "sweep ended" if proc.poll() is not None else "timeout"
            proc.kill()
            pytest.fail(f"{what}: not seen ({why}):\n{(root / 'sweep.log').read_text()[-3000:]}")
        time.sleep(0.2)
    return value


def _job(sweep_dir: Path, num: int) -> Path:
    (job,) = sweep_dir.glob(f"{num}_*")
    return job


def _job_log(job: Path) -> str:
    """The job's log file (``<task_name>.log``; a requeued job appends to it)."""
    (path,) = job.glob("*.log")
    return path.read_text()


def _results(job: Path) -> dict:
    return json.loads((job / "results.json").read_text())


def _scontrol(*args: str) -> None:
    subprocess.run(["scontrol", *args], check=True, capture_output=True, timeout=60)


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
            "hydra.launcher.array_parallelism=1", f"paths.data_dir={sweep_root / 'data'}"]
    proc = _start(sweep_root, args)
    _wait_for("job 1 training", lambda: list((sweep_root / "outputs").glob("*/multiruns/*/1_*/**/metrics.csv")),
              proc, sweep_root, timeout=400)
    sweep_dir = _sweep_dir(sweep_root)
    (array,) = _arrays(sweep_dir)
    subprocess.run(["scancel", array], check=True)
    out = _finish(proc, sweep_root)
    job0 = json.loads(next(sweep_dir.glob("0_*/results.json")).read_text())
    assert job0["status"] == "ok" and job0["metrics"]["test/mse"] > 0
    for f in sweep_dir.glob("*/results.json"):  # what a cancelled job wrote is whole too
        json.loads(f.read_text())
    summary = _summary(sweep_root)
    assert summary["counts"] == {"ok": 1, "cancelled": 2}, (summary, out[-3000:])
    lines = {job["job"].split("_", 1)[0]: job["line"] for job in summary["jobs"]}
    assert "cancelled (SLURM)" in lines["1"] and "cancelled (SLURM); not started" in lines["2"]
    assert "trainer.max_epochs=1000" in lines["1"] and lines["2"].startswith("2_")


# ---------------------------------------------------------------------------------------------- fault hooks
def _first_attempt() -> bool:
    return os.environ.get("SLURM_RESTART_COUNT", "0") in ("", "0")


class Fault(Callback):
    """Faults on cue inside a SLURM job (``+callbacks.fault._target_=tests.test_slurm.Fault``), ``mode``:

    - ``preempt`` (first attempt): at the end of global step ``step`` write ``<dirpath>/fault.ready`` (this pid)
      and wait, up to 5 min, for the scheduler's SIGTERM (Lightning stops at this batch boundary);
    - ``hang_in_write`` (first attempt): the ``nth`` write of last.ckpt puts half its bytes into the temporary
      file, flushed, writes ``fault.ready`` and hangs until the process is killed;
    - ``slow``: sleep ``seconds`` after each training batch (first attempt, or ``every_attempt``).
    """

    def __init__(self, mode: str, dirpath: str, step: int = 4, nth: int = 2, seconds: float = 1.0,
                 every_attempt: bool = False) -> None:
        if mode not in ("preempt", "hang_in_write", "slow"):
            raise ValueError(f"Fault mode={mode!r}")
        self.mode, self.dirpath, self.step, self.nth = mode, Path(dirpath), step, nth
        self.seconds, self.every_attempt = seconds, every_attempt
        self.writes = 0
        self._patch: Any = None

    def _ready(self) -> None:
        (self.dirpath / "fault.ready").write_text(str(os.getpid()))

    def setup(self, trainer, pl_module, stage: str) -> None:
        if self.mode == "hang_in_write" and stage == "fit" and _first_attempt() and self._patch is None:
            real = torch.save

            def save(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
                if ".last.ckpt." in str(getattr(f, "name", "")):  # atomic_save's temporary file
                    self.writes += 1
                    if self.writes == self.nth:
                        buf = io.BytesIO()
                        real(obj, buf, *args, **kwargs)
                        f.write(buf.getvalue()[: len(buf.getvalue()) // 2])
                        f.flush()
                        os.fsync(f.fileno())
                        self._ready()
                        time.sleep(600)  # until SIGKILL
                real(obj, f, *args, **kwargs)

            self._patch = mock.patch.object(torch, "save", save)
            self._patch.start()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if self.mode == "slow" and (self.every_attempt or _first_attempt()):
            time.sleep(self.seconds)
        if self.mode == "preempt" and trainer.global_step == self.step and _first_attempt():
            self._ready()
            deadline = time.time() + 300
            while not trainer.received_sigterm and time.time() < deadline:
                time.sleep(0.1)


HOOK = ["+callbacks.fault._target_=tests.test_slurm.Fault", "+callbacks.fault.dirpath=${paths.output_dir}"]


# ---------------------------------------------------------------------------------------------- preempted, killed
@pytest.fixture(scope="module")
def faulted(slurm_cluster, tmp_path_factory) -> Iterator[dict[str, Any]]:
    """One sweep of two jobs of the config of tests/test_fault_paths.py (3 epochs of 3 batches, dropout 0.2) and
    that config run in-process, uninterrupted, meanwhile (``reference``). Job 0 is preempted at step 4
    (``scontrol requeue`` while it trains); job 1 is SIGKILLed half-way through writing the epoch-1 last.ckpt
    (``scontrol requeue`` first, so that SLURM restarts it as a node failure with --requeue would, then SIGKILL at
    once: the write cannot finish). ``at_kill``: what job 1's checkpoint folder held when it was killed."""
    root = tmp_path_factory.mktemp("faults")
    write_ett_csv(root / "data" / "ETT-small" / "ETTh1.csv")
    args = [*FAST, f"paths.data_dir={root / 'data'}", f"trainer.max_epochs={EPOCHS}", "model.net.dropout=0.2"]
    proc = _start(root, [*args, *HOOK, "+callbacks.fault.mode=preempt,hang_in_write", "hydra/launcher=slurm_cpu"])
    try:
        reference = root / "reference"
        assert train_run(args, reference)["status"] == "ok"
        sweep_dir = _wait_for("the sweep folder", lambda: list((root / "outputs").glob("*/multiruns/*")), proc,
                              root)[0]
        preempted = _wait_for("job 0 at step 4", lambda: list(sweep_dir.glob("0_*/fault.ready")), proc, root)[0]
        (array,) = _arrays(sweep_dir)
        _scontrol("requeue", f"{array}_0")
        killed = _wait_for("job 1 writing last.ckpt", lambda: list(sweep_dir.glob("1_*/fault.ready")), proc,
                           root)[0]
        _scontrol("requeue", f"{array}_1")
        os.kill(int(killed.read_text()), signal.SIGKILL)
        ckpts = killed.parent / "checkpoints"
        at_kill = {"last_step": checkpoint.load(ckpts / "last.ckpt")["global_step"],
                   "partial": [(p, p.stat().st_size) for p in checkpoint.stale_temporaries(ckpts)]}
        out = _finish(proc, root)
        yield {"sweep_dir": sweep_dir, "out": out, "reference": reference, "preempted": preempted.parent,
               "killed": killed.parent, "at_kill": at_kill}
    finally:
        if proc.poll() is None:
            proc.kill()
        if _arrays(root):
            subprocess.run(["scancel", *_arrays(root)], capture_output=True)


@pytest.mark.slurm
@pytest.mark.slow
def test_a_preempted_job_resumes_to_the_weights_and_metrics_of_an_uninterrupted_run(faulted):
    """``scontrol requeue`` at step 4 (mid-epoch 1): SIGTERM, last.ckpt saved at the stop, SLURM restarts the job
    in seconds (local_slurm.sh: cred_expire=10), it resumes mid-epoch and ends ok; its last.ckpt weights and its
    csv/metrics.csv (every step of both attempts, once) equal the uninterrupted run's."""
    job = faulted["preempted"]
    res = _results(job)
    assert res["status"] == "ok" and res["attempts"] == 2, (res.get("error"), faulted["out"][-3000:])
    log = _job_log(job)
    assert f"stopping: saved {job / 'checkpoints' / 'last.ckpt'} at epoch 1, step 4" in log
    assert f"requeued job (SLURM_RESTART_COUNT=1): resuming from {job / 'checkpoints' / 'last.ckpt'}" in log
    assert "resuming mid-epoch: the epoch's order drawn again, 1 batches already trained on skipped" in log
    assert_same_run(job, faulted["reference"])


@pytest.mark.slurm
@pytest.mark.slow
def test_a_job_killed_while_writing_last_ckpt_resumes_from_the_previous_one(faulted):
    """SIGKILL half-way through the epoch-1 write of last.ckpt: last.ckpt is still epoch 0's, whole (step 3), the
    partial write a temporary file beside it; the requeued job removes that file, resumes from last.ckpt, says
    so, and ends as the uninterrupted run (weights, metrics.csv)."""
    job, at_kill = faulted["killed"], faulted["at_kill"]
    assert at_kill["last_step"] == 3
    ((partial, size),) = at_kill["partial"]
    assert partial.name.startswith(".last.ckpt.") and size > 0
    res = _results(job)
    assert res["status"] == "ok" and res["attempts"] == 2, (res.get("error"), faulted["out"][-3000:])
    log = _job_log(job)
    assert f"requeued job: removing {partial}" in log and not partial.exists()
    assert f"requeued job (SLURM_RESTART_COUNT=1): resuming from {job / 'checkpoints' / 'last.ckpt'}" in log
    assert checkpoint.stale_temporaries(job / "checkpoints") == []
    assert_same_run(job, faulted["reference"])


# ---------------------------------------------------------------------------------------------- time limit
@pytest.mark.slurm
@pytest.mark.slow
def test_a_time_limit_saves_requeues_and_finishes_and_past_max_num_timeout_fails(slurm_cluster, tmp_path):
    """``hydra.launcher.timeout_min=1`` (SLURM's smallest), ``signal_delay_s=1``: slurmctld checks limits every
    30 s, so USR2 comes 29-59 s into an attempt and the limit 60-90 s. Two sweeps at once, their first attempts
    slowed to 1 s a batch (80 batches: they cannot finish in time). With ``max_num_timeout=3`` the job saves at
    USR2, requeues and finishes in a later attempt; with ``max_num_timeout=0`` it saves and is reported
    ``failed`` (results.json, summary.json), not lost."""
    write_ett_csv(tmp_path / "data" / "ETT-small" / "ETTh1.csv")
    args = [*FAST, "model=hot", "data=ett", f"paths.data_dir={tmp_path / 'data'}", "trainer.max_epochs=2",
            "trainer.limit_train_batches=40", "hydra/launcher=slurm_cpu", "hydra.launcher.timeout_min=1",
            "hydra.launcher.signal_delay_s=1", *HOOK, "+callbacks.fault.mode=slow"]
    roots = {"requeued": tmp_path / "requeued", "fails": tmp_path / "fails"}
    procs = {"requeued": _start(roots["requeued"], [*args, "hydra.launcher.max_num_timeout=3"]),
             "fails": _start(roots["fails"], [*args, "+callbacks.fault.every_attempt=true",
                                              "hydra.launcher.max_num_timeout=0"])}
    try:
        out = {name: _finish(proc, roots[name], timeout=400) for name, proc in procs.items()}
    finally:
        for name, proc in procs.items():
            if proc.poll() is None:
                proc.kill()
            if _arrays(roots[name]):
                subprocess.run(["scancel", *_arrays(roots[name])], capture_output=True)

    job = _job(_sweep_dir(roots["requeued"]), 0)
    res = _results(job)
    assert res["status"] == "ok" and res["attempts"] >= 2, (res.get("error"), out["requeued"][-3000:])
    assert _summary(roots["requeued"])["counts"] == {"ok": 1}
    log = _job_log(job)
    assert "SIGUSR2 from submitit: stopping at the next batch to save a checkpoint, then requeueing" in log
    assert f"stopping: saved {job / 'checkpoints' / 'last.ckpt'}" in log
    assert "requeued job (SLURM_RESTART_COUNT=1): resuming from" in log
    steps = pd.read_csv(job / "csv" / "metrics.csv").dropna(subset=["train/loss_step"])["step"]
    assert steps.tolist() == list(range(80))  # every step of every attempt, once

    job = _job(_sweep_dir(roots["fails"]), 0)
    res = _results(job)
    assert res["status"] == "failed" and "timed-out too many times" in res["error"], res.get("error")
    assert (job / "checkpoints" / "last.ckpt").is_file()  # saved at USR2: resumable with ckpt_path=
    summary = _summary(roots["fails"])
    assert summary["counts"] == {"failed": 1} and "timed-out too many times" in summary["jobs"][0]["line"]


# ---------------------------------------------------------------------------------------------- DDP
def test_merge_ranks_puts_windows_in_test_set_order_once():
    """Lightning's DistributedSampler over 5 windows and 2 ranks: rank 0 tests 0, 2, 4, rank 1 tests 1, 3 and 0
    again (padding); the merge is 0..4, each once."""
    from attnbench.lit.artifacts import merge_ranks

    shares = [{"arrays": {"target": np.array([0.0, 2, 4])}, "index": np.array([0, 2, 4]), "seen": np.array([0, 2, 4])},
              {"arrays": {"target": np.array([1.0, 3, 0])}, "index": np.array([1, 3, 0]), "seen": np.array([1, 3, 0])}]
    data, kept, seen = merge_ranks(shares)
    assert data["target"].tolist() == [0, 1, 2, 3, 4] and kept == seen == 5


@pytest.mark.slurm
@pytest.mark.slow
def test_ddp_with_two_slurm_tasks_equals_one_process_at_the_same_global_batch(sweep_root):
    """``trainer=ddp trainer.accelerator=cpu trainer.devices=2 hydra.launcher.tasks_per_node=2`` (gloo, one CPU a
    task: the node's two): trains, logs once (rank 0), writes one results.json and one test_predictions.npz with
    every test window, the sweep reports it once, ok. Its test metrics and predictions equal one process's
    (``trainer=ddp trainer.devices=1``: Lightning's DistributedSampler over one rank, the same shuffled order) at
    the same global batch (2 x 16 = 32), without dropout (each rank draws its own masks)."""
    base = [*FAST, "model=hot", "data=ett", f"paths.data_dir={sweep_root / 'data'}", "model.net.dropout=0",
            "trainer.limit_test_batches=1.0", "trainer=ddp", "trainer.accelerator=cpu"]
    proc = _start(sweep_root, [*base, "trainer.devices=2", "data.batch_size=16", "hydra/launcher=slurm_cpu",
                               "hydra.launcher.tasks_per_node=2"])
    env = dict(os.environ)
    try:
        one = train_run([*base, "trainer.devices=1", "data.batch_size=32"], sweep_root / "one")
    finally:  # the one-process DDP run's process group and MASTER_ADDR/PORT, LOCAL_RANK, ... out of this process
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        os.environ.clear()
        os.environ.update(env)
    out = _finish(proc, sweep_root)
    assert one["status"] == "ok"
    sweep_dir = _sweep_dir(sweep_root)
    job = _job(sweep_dir, 0)
    res = _results(job)
    assert res["status"] == "ok", (res.get("error"), out[-3000:])
    assert [p.name for p in sweep_dir.rglob("results.json")] == ["results.json"]
    assert sorted(p.name for p in job.glob("test_predictions*")) == ["test_predictions.npz"]
    for key in ("test/mse", "test/mae"):
        assert res["metrics"][key] == pytest.approx(one["metrics"][key], rel=1e-5), key
    got, want = np.load(job / "test_predictions.npz"), np.load(sweep_root / "one" / "test_predictions.npz")
    assert int(got["windows_saved"]) == int(got["windows_total"]) == int(want["windows_total"]) > 2000
    np.testing.assert_array_equal(got["target"], want["target"])
    np.testing.assert_allclose(got["forecast"], want["forecast"], rtol=1e-4, atol=1e-5)
    log = _job_log(job)
    assert log.count("instantiating trainer") == 1 and "[rank: 1]" not in log, log[-3000:]
    tasks = "".join(f.read_text() for f in sweep_dir.glob(".submitit/*/*_log.*"))  # each task's own output
    assert "no results.json" not in log + tasks + out and out.count("[1/1] 0_") == 1, out[-3000:]
    assert _summary(sweep_root)["counts"] == {"ok": 1}
