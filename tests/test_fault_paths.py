"""Fault paths of a requeued SLURM job, in-process (``SLURM_RESTART_COUNT`` set, the same output folder): a stop
mid-epoch resumed to the weights and metrics.csv of an uninterrupted run, a truncated last.ckpt passed over for a
readable checkpoint, checkpoints written atomically, Lightning's SIGUSR1 save stating its weights_only."""

from __future__ import annotations

import io
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import torch
from lightning.pytorch import Callback

from attnbench import checkpoint
from attnbench.callbacks import AtomicCheckpointIO, RunStopped
from attnbench.train import _requeued_checkpoint
from tests.conftest import FAST, train_run
from tests.test_safety import Messages

EPOCHS = 3  # debug=fast: 3 training batches an epoch, 9 steps in all


class SignalAt(Callback):
    """Sends this process ``sig`` once, at the end of the training batch that makes global step ``step``."""

    def __init__(self, step: int = 1, sig: str = "SIGTERM") -> None:
        self.step, self.sig, self.sent = step, signal.Signals[sig], False

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step and not self.sent:
            self.sent = True
            os.kill(os.getpid(), self.sig)


def stop_at(step: int, sig: str = "SIGTERM") -> list[str]:
    return ["+callbacks.stop._target_=tests.test_fault_paths.SignalAt", f"+callbacks.stop.step={step}",
            f"+callbacks.stop.sig={sig}"]


@pytest.fixture(scope="module")
def args(synth_data_dir) -> list[str]:
    return [*FAST, f"paths.data_dir={synth_data_dir}", f"trainer.max_epochs={EPOCHS}", "model.net.dropout=0.2"]


@pytest.fixture(scope="module")
def uninterrupted(args, tmp_path_factory) -> Path:
    """The output folder of the run the interrupted ones must equal."""
    out = tmp_path_factory.mktemp("uninterrupted")
    assert train_run(args, out)["status"] == "ok"
    return out


def assert_same_run(out: Path, ref: Path) -> None:
    """Same final weights (float tolerance, as tests/test_resume.py) and the same metrics.csv: steps and values."""
    got = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    want = torch.load(ref / "checkpoints" / "last.ckpt", weights_only=True)
    assert got["global_step"] == want["global_step"] == 3 * EPOCHS
    for k, w in want["state_dict"].items():
        torch.testing.assert_close(got["state_dict"][k], w, rtol=1e-5, atol=1e-6, msg=k)
    pd.testing.assert_frame_equal(pd.read_csv(out / "csv" / "metrics.csv"), pd.read_csv(ref / "csv" / "metrics.csv"))


def test_a_requeued_run_stopped_mid_epoch_equals_an_uninterrupted_one(args, uninterrupted, tmp_path, monkeypatch,
                                                                      caplog):
    """SIGTERM after the first batch of epoch 1: last.ckpt at step 4; the requeued job continues that epoch (its
    order, the two batches left, the epoch means) and appends to the first attempt's metrics.csv."""
    with pytest.raises(RunStopped, match="checkpoint saved at the stop"):
        train_run([*args, *stop_at(4)], tmp_path)
    first = pd.read_csv(tmp_path / "csv" / "metrics.csv")
    assert first["step"].max() == 3  # epoch 0 and the first batch of epoch 1
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    with caplog.at_level(logging.INFO):
        assert train_run(args, tmp_path)["status"] == "ok"
    assert f"resuming from {tmp_path / 'checkpoints' / 'last.ckpt'}" in caplog.text
    assert f"keeps its {len(first)} earlier rows" in caplog.text
    assert "Previous log files" not in caplog.text and "not resumable" not in caplog.text
    assert_same_run(tmp_path, uninterrupted)


def test_a_truncated_last_ckpt_falls_back_to_the_newest_readable_checkpoint(args, uninterrupted, tmp_path,
                                                                            monkeypatch, caplog):
    """last.ckpt cut in half (a node lost while a version without atomic writes saved it) and a stale temporary
    file beside it: the requeued job resumes from epoch_000.ckpt (the best epoch, step 3), says so, drops the rows
    the first attempt logged after step 3, and ends as the uninterrupted run."""
    with pytest.raises(RunStopped):
        train_run([*args, *stop_at(7)], tmp_path)
    ckpts = tmp_path / "checkpoints"
    last, best = ckpts / "last.ckpt", ckpts / "epoch_000.ckpt"
    assert best.is_file() and pd.read_csv(tmp_path / "csv" / "metrics.csv")["step"].max() == 6
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    stale = ckpts / ".last.ckpt.123.abcdef01.tmp"
    stale.write_bytes(b"half a checkpoint")
    saved = []
    real_save = checkpoint.atomic_save
    monkeypatch.setattr(checkpoint, "atomic_save", lambda obj, path: (saved.append(Path(path)), real_save(obj, path)))
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    with caplog.at_level(logging.INFO):
        assert train_run(args, tmp_path)["status"] == "ok"
    assert f"cannot resume: checkpoint='{last}' is not a PyTorch checkpoint" in caplog.text
    assert f"resuming from {best} (epoch 0, step 3), the newest readable checkpoint" in caplog.text
    assert f"removing {stale}" in caplog.text and not stale.exists()
    assert "keeps its 6 earlier rows (8 logged after the checkpoint dropped" in caplog.text
    assert last in saved  # Lightning's saves go through AtomicCheckpointIO
    assert_same_run(tmp_path, uninterrupted)


def _trainer(folder: Path) -> SimpleNamespace:
    """What ``_requeued_checkpoint`` reads of a trainer: the checkpoint callbacks of conf/callbacks/default.yaml."""
    cbs = [SimpleNamespace(dirpath=str(folder), monitor="val/mse", filename="epoch_{epoch:03d}"),
           SimpleNamespace(dirpath=str(folder), monitor=None, filename="last")]
    return SimpleNamespace(checkpoint_callbacks=cbs, default_root_dir=str(folder.parent))


def test_no_readable_checkpoint_starts_over_saying_so(tmp_path, monkeypatch, caplog):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    (folder / "last.ckpt").write_bytes(b"PK\x03\x04 cut short")
    torch.save({"state_dict": {"w": torch.ones(2)}}, folder / "epoch_001.ckpt")  # weights only: cannot resume fit
    monkeypatch.setenv("SLURM_RESTART_COUNT", "2")
    with caplog.at_level(logging.WARNING, logger="attnbench.train"):
        assert _requeued_checkpoint(_trainer(folder)) == (None, None)
    assert "TRAINING STARTS OVER, none of its 2 checkpoints can be read" in caplog.text
    assert "epoch_001.ckpt' holds the weights only" in caplog.text
    monkeypatch.setenv("SLURM_RESTART_COUNT", "0")  # not a requeue: nothing is looked for
    assert _requeued_checkpoint(_trainer(folder)) == (None, None)


def _half_then(exc: BaseException):
    """A torch.save that writes half of the real bytes into the file, then raises ``exc`` (a crash mid-write)."""
    real = torch.save

    def save(obj, f, *a, **kw):
        buf = io.BytesIO()
        real(obj, buf, *a, **kw)
        f.write(buf.getvalue()[: len(buf.getvalue()) // 2])
        raise exc

    return save


def test_a_write_that_fails_half_way_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    last = tmp_path / "checkpoints" / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": torch.ones(3)}}, last)
    before = last.read_bytes()
    monkeypatch.setattr(torch, "save", _half_then(OSError(28, "No space left on device")))
    with pytest.raises(OSError, match="No space left"):
        AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": torch.zeros(3)}}, last)
    assert last.read_bytes() == before and torch.equal(checkpoint.load(last)["state_dict"]["w"], torch.ones(3))
    assert sorted(p.name for p in last.parent.iterdir()) == ["last.ckpt"]  # the temporary file removed


def test_a_process_killed_during_the_write_leaves_the_previous_checkpoint(tmp_path):
    """SIGKILL half-way through (a node lost): no cleanup runs; last.ckpt is the previous one, the partial write
    a temporary file beside it that ``stale_temporaries`` finds (a requeued job removes it)."""
    last = tmp_path / "last.ckpt"
    checkpoint.atomic_save({"state_dict": {"w": torch.ones(3)}}, last)
    code = f"""
import io, os, signal, torch
from attnbench import checkpoint
real = torch.save
def half_then_killed(obj, f):
    buf = io.BytesIO()
    real(obj, buf)
    f.write(buf.getvalue()[: len(buf.getvalue()) // 2])
    f.flush()
    os.kill(os.getpid(), signal.SIGKILL)
torch.save = half_then_killed
checkpoint.atomic_save({{"state_dict": {{"w": torch.zeros(3)}}}}, {str(last)!r})
"""
    root = Path(__file__).resolve().parents[1]
    p = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=300,
                       env={**os.environ, "PYTHONPATH": str(root)})
    assert p.returncode == -signal.SIGKILL, p.stderr[-2000:]
    assert torch.equal(checkpoint.load(last)["state_dict"]["w"], torch.ones(3))
    (stale,) = checkpoint.stale_temporaries(tmp_path)
    assert stale.name.startswith(".last.ckpt.") and stale.stat().st_size > 0


def test_lightnings_sigusr1_requeue_save_states_weights_only(args, tmp_path, monkeypatch):
    """Lightning's own SLURM auto-requeue (SIGUSR1, a job submitted with --signal=SIGUSR1@90): hpc_ckpt_1.ckpt,
    readable with weights_only=True, `scontrol requeue <job>` called, and no "`weights_only` was not set" line."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text(f'#!/bin/sh\necho "$@" > {tmp_path / "scontrol.args"}\n')
    (bin_dir / "scontrol").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    for k, v in {"SLURM_NTASKS": "1", "SLURM_JOB_NAME": "fault_paths", "SLURM_JOB_ID": "4242", "SLURM_PROCID": "0",
                 "SLURM_LOCALID": "0", "SLURM_NODEID": "0", "SLURM_NODELIST": "localhost"}.items():
        monkeypatch.setenv(k, v)
    out = tmp_path / "run"
    with Messages("lightning.pytorch.trainer.connectors.checkpoint_connector") as said:
        res = train_run([*args, "trainer.max_epochs=1", *stop_at(1, "SIGUSR1")], out)
    assert res["status"] == "ok"
    assert (tmp_path / "scontrol.args").read_text().split() == ["requeue", "4242"]
    assert checkpoint.load(out / "hpc_ckpt_1.ckpt")["global_step"] == 1
    assert not [m for m in said if "weights_only" in m], said
