"""Hostile and broken inputs: checkpoints whose pickle would run code, checkpoints of another model, garbage
files, SIGTERM / Ctrl+C, and data files with a wrong shape or values (checked whatever ``data.verify`` says)."""

from __future__ import annotations

import inspect
import logging
import os
import re
import signal
import subprocess
import sys
import time
import traceback
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from lightning.pytorch import Callback
from omegaconf import OmegaConf

from attnbench import checkpoint
from attnbench.checkpoint import CONFIG_KEY, CheckpointError
from attnbench.data import download
from attnbench.data.download import DataError
from attnbench.data.medmnist import MedMNIST3DDataModule
from attnbench.data.timeseries import TimeSeriesDataModule
from tests.conftest import FAST, ROOT, read_results, train_run, write_ett_csv


class Marker:
    """Pickles as ``os.system("touch <path>")``: loading it with weights_only=False creates the file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def evil_copy(src: dict, dest: Path, marker: Path) -> Path:
    torch.save({**src, "extra": Marker(marker)}, dest)
    return dest


# ----------------------------------------------------------------------------- checkpoint loading (fast)
def test_a_pickle_that_runs_code_is_refused_unrun(tmp_path):
    marker = tmp_path / "ran"
    evil = evil_copy({"state_dict": {"w": torch.ones(2)}}, tmp_path / "evil.ckpt", marker)
    with pytest.raises(CheckpointError, match="refused unread") as e:
        checkpoint.load(evil)
    assert re.search(r"it would call (os|posix).system", str(e.value))
    assert not marker.exists()
    torch.load(evil, weights_only=False)  # the file is really hostile: the unsafe loader runs it
    assert marker.exists()


def test_garbage_files_get_one_message(tmp_path):
    (tmp_path / "random.ckpt").write_bytes(np.random.default_rng(0).bytes(4096))
    (tmp_path / "empty.ckpt").write_bytes(b"")
    (tmp_path / "text.ckpt").write_text("epoch: 3\n")
    for name in ("random.ckpt", "empty.ckpt", "text.ckpt"):
        with pytest.raises(CheckpointError, match=rf"ckpt_path='.*{name}' is not a PyTorch checkpoint"):
            checkpoint.load(tmp_path / name)
    torch.save([1, 2, 3], tmp_path / "list.ckpt")
    with pytest.raises(CheckpointError, match="is not a Lightning checkpoint"):
        checkpoint.load(tmp_path / "list.ckpt")
    with pytest.raises(CheckpointError, match="no such file"):
        checkpoint.load(tmp_path / "typo.ckpt")


def _model(compose_cfg, *overrides):
    cfg = compose_cfg([*FAST, *overrides])
    model = instantiate(cfg.model)
    return model, OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)


def test_hparams_are_plain_data_and_build_the_optimizer(compose_cfg, tmp_path):
    model, _ = _model(compose_cfg, "trainer.max_epochs=5")
    hp = dict(model.hparams)
    ours = {"_target_": "torch.optim.adamw.AdamW", "lr": 1e-3, "weight_decay": 1e-2, "betas": [0.9, 0.999]}
    assert {k: hp["optimizer"][k] for k in ours} == ours
    # the rest: AdamW's own defaults, as its signature states them (the schema reads them from torch's source)
    defaults = {k: p.default for k, p in inspect.signature(torch.optim.AdamW).parameters.items()}
    assert {k: v for k, v in hp["optimizer"].items() if k not in ours} == {k: defaults[k] for k in hp["optimizer"]
                                                                           if k not in ours}
    assert hp["scheduler"] == {"_target_": "torch.optim.lr_scheduler.CosineAnnealingLR", "T_max": 5}
    torch.save(hp, tmp_path / "hp.pt")
    assert torch.load(tmp_path / "hp.pt", weights_only=True) == hp
    conf = model.configure_optimizers()
    opt, sched = conf["optimizer"], conf["lr_scheduler"]["scheduler"]
    assert isinstance(opt, torch.optim.AdamW) and opt.param_groups[0]["betas"] == (0.9, 0.999)
    assert isinstance(sched, torch.optim.lr_scheduler.CosineAnnealingLR) and sched.T_max == 5


def test_a_checkpoint_of_another_model_names_the_config_keys_that_differ(compose_cfg):
    small, small_cfg = _model(compose_cfg)
    big, big_cfg = _model(compose_cfg, "model.net.d_model=64", "model.net.n_layers=3")
    ckpt = {"state_dict": small.state_dict(), CONFIG_KEY: small_cfg}
    checkpoint.check_fits(ckpt, small, small_cfg, "a.ckpt")  # its own model fits
    with pytest.raises(CheckpointError) as e:
        checkpoint.check_fits(ckpt, big, big_cfg, "a.ckpt")
    msg = str(e.value)
    assert "checkpoint of another model" in msg and "differ in shape" in msg
    assert "model.net.d_model: 32 (checkpoint) vs 64 (this run)" in msg
    assert "model.net.n_layers: 2 (checkpoint) vs 3 (this run)" in msg
    assert "state_dict" not in msg.split("differs from this run's")[-1]  # keys, not a dump
    del ckpt[CONFIG_KEY]
    with pytest.raises(CheckpointError, match="holds no attnbench config"):
        checkpoint.check_fits(ckpt, big, big_cfg, "a.ckpt")


# ----------------------------------------------------------------------------- data checks (fast)
def ts(data_dir: Path, **kw) -> TimeSeriesDataModule:
    m = TimeSeriesDataModule("ETTh1", str(data_dir), 96, 48, 96, verify=False, download=False, **kw)
    m.setup()
    return m


def test_csv_with_an_empty_cell_is_refused_without_verify(tmp_path):
    path = tmp_path / "ETT-small" / "ETTh1.csv"
    df = write_ett_csv(path)
    df.loc[100, "HULL"] = None
    df.to_csv(path, index=False, float_format="%.4f")
    with pytest.raises(DataError, match=r"1 empty or non-finite values, the first in column 'HULL' at row 102"):
        ts(tmp_path)


def test_csv_missing_a_column_is_refused_without_verify(tmp_path):
    path = tmp_path / "ETT-small" / "ETTh1.csv"
    write_ett_csv(path).drop(columns=["MULL"]).to_csv(path, index=False, float_format="%.4f")
    with pytest.raises(DataError, match="6 variables, expected 7 for ETTh1"):
        ts(tmp_path)


def test_csv_with_text_in_a_value_column_is_refused(tmp_path):
    path = tmp_path / "ETT-small" / "ETTh1.csv"
    df = write_ett_csv(path).astype({"OT": object})
    df.loc[7, "OT"] = "n/a?"
    df.to_csv(path, index=False)
    with pytest.raises(DataError, match=r"column 'OT' is not numeric \(row 9 of the file holds 'n/a\?'\)"):
        ts(tmp_path)


def write_npz(path: Path, labels_max: int = 1, size: int = 28, n: int = 4) -> None:
    rng = np.random.default_rng(0)
    arrays = {}
    for split in ("train", "val", "test"):
        arrays[f"{split}_images"] = rng.integers(0, 256, size=(n, size, size, size), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % (labels_max + 1)).astype(np.uint8)[:, None]
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)


def med(data_dir: Path, **kw) -> MedMNIST3DDataModule:
    return MedMNIST3DDataModule("adrenalmnist3d", str(data_dir), size=28, download=False, verify=False, **kw)


def test_npz_labels_out_of_range_and_wrong_volumes_are_refused_without_verify(tmp_path):
    path = tmp_path / "medmnist3d" / "adrenalmnist3d.npz"
    write_npz(path, labels_max=1)
    med(tmp_path).setup("fit")  # in range: fine
    write_npz(path, labels_max=3)
    with pytest.raises(DataError, match=r"train labels span \[0, 3\], outside the 2 classes \[0, 2\)"):
        med(tmp_path).setup("fit")
    write_npz(path, size=14)
    with pytest.raises(DataError, match=r"train split has images \(4, 14, 14, 14\).*expected \(N, 28, 28, 28\)"):
        med(tmp_path).setup("fit")


def test_a_mistyped_data_dir_is_not_created(tmp_path, monkeypatch):
    def offline(url, dest, timeout=60.0):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(download, "download", offline)
    typo = tmp_path / "dtaa"
    m = TimeSeriesDataModule("ETTh1", str(typo), 96, 48, 96, verify=False, download=True)
    with pytest.raises(DataError, match="download of .* failed"):
        m.prepare_data()
    assert not typo.exists() and list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- end to end (slow)
def cli(args: list[str], run_dir: Path) -> subprocess.Popen:
    """``python train.py ARGS`` into ``run_dir``, started (for a signal sent to the process)."""
    e = {**os.environ, "HYDRA_FULL_ERROR": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(ROOT / "train.py"), f"hydra.run.dir={run_dir}", *args]
    # the child starts with SIGINT's default action, as from a shell: a disposition some library set in this
    # pytest process (an ignored SIGINT is inherited across exec) must not decide what Ctrl+C does to the run
    return subprocess.Popen(cmd, cwd=run_dir.parent, env=e, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, preexec_fn=_default_sigint)


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def finish(p: subprocess.Popen, timeout: int = 300) -> tuple[int, str]:
    out, _ = p.communicate(timeout=timeout)
    return p.returncode, out


@pytest.fixture(scope="module")
def trained(tmp_path_factory, synth_data_dir) -> tuple[Path, list[str]]:
    """(last.ckpt of a 1-epoch debug run, the overrides it ran with)."""
    args = [*FAST, f"paths.data_dir={synth_data_dir}"]
    run_dir = tmp_path_factory.mktemp("trained") / "run"
    train_run(args, run_dir)
    return run_dir / "checkpoints" / "last.ckpt", args


@pytest.mark.slow
@pytest.mark.parametrize("train", ["true", "false"])
def test_a_hostile_checkpoint_never_runs_in_a_training_run(tmp_path, trained, train):
    last, args = trained
    marker = tmp_path / "ran"
    evil = evil_copy(torch.load(last, weights_only=True), tmp_path / "evil.ckpt", marker)
    with pytest.raises(CheckpointError, match="refused unread"):
        train_run([*args, f"train={train}", f"ckpt_path={evil}"], tmp_path / "run")
    assert not marker.exists()
    res = read_results(tmp_path / "run")
    assert res["status"] == "failed" and "refused unread" in res["error"] and "system" in res["error"]


@pytest.mark.slow
def test_another_models_checkpoint_and_garbage_fail_with_one_message(tmp_path, trained):
    last, args = trained
    with pytest.raises(CheckpointError, match="checkpoint of another model"):
        train_run([*args, "train=false", f"ckpt_path={last}", "model.net.d_model=64"], tmp_path / "a")
    err = read_results(tmp_path / "a")["error"]
    assert "checkpoint of another model" in err and "model.net.d_model: 32 (checkpoint) vs 64 (this run)" in err
    (tmp_path / "junk.ckpt").write_bytes(b"\x00" * 1000)
    with pytest.raises(CheckpointError, match="is not a PyTorch checkpoint"):
        train_run([*args, f"ckpt_path={tmp_path / 'junk.ckpt'}"], tmp_path / "b")
    assert "is not a PyTorch checkpoint" in read_results(tmp_path / "b")["error"]


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_saves_a_checkpoint_exits_nonzero_and_a_requeued_job_resumes(tmp_path, synth_data_dir, sig,
                                                                              caplog, monkeypatch):
    """SIGTERM (kill, SLURM preemption) or Ctrl+C during fit: last.ckpt saved at the stop, exit 128+signal,
    results.json names the signal; the same job started again with SLURM_RESTART_COUNT set resumes from it.
    A process: the signal goes to the run's process and what is checked is its exit status."""
    run_dir = tmp_path / "run"
    args = [*FAST, f"paths.data_dir={synth_data_dir}", "trainer.max_epochs=100000",
            "callbacks.early_stopping.patience=100000"]
    p = cli(args, run_dir)
    last = run_dir / "checkpoints" / "last.ckpt"
    t0 = time.time()
    while not last.is_file() and p.poll() is None and time.time() - t0 < 240:
        time.sleep(0.2)
    assert p.poll() is None, p.communicate()[0][-3000:]
    time.sleep(0.5)
    p.send_signal(sig)
    rc, out = finish(p)  # the default 300 s: a loaded machine can take minutes to finish the step and save
    assert rc == 128 + sig, out[-3000:]
    # a save at the stop states its weights_only (else Lightning logs "`weights_only` was not set"); whether this
    # stop lands in a training epoch (and saves) is timing: test_every_checkpoint_load_is_weights_only is certain
    assert "weights_only" not in out, out[-3000:]
    res = read_results(run_dir)
    assert res["status"] == "failed" and res["error"].startswith(f"RunStopped: stopped by {sig.name}")
    assert f"resume with ckpt_path={last}" in res["error"]
    stopped_at = torch.load(last, weights_only=True)["epoch"]
    # the requeued job: same folder, SLURM_RESTART_COUNT > 0, a budget two epochs past the stop
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    with caplog.at_level(logging.WARNING, logger="attnbench.train"):
        res = train_run([*args[:-2], f"trainer.max_epochs={stopped_at + 2}", args[-1]], run_dir)
    assert f"resuming from {last}" in caplog.text
    assert res["status"] == "ok" and res["metrics"]["epochs"] == stopped_at + 2


class SigtermAt(Callback):
    """Sends this process SIGTERM once, at the end of training batch ``batch``: a killed run's stop, in-process
    (Lightning's handler sets its stop flag; the run stops at that batch's end)."""

    def __init__(self, batch: int = 0) -> None:
        self.batch, self.sent = batch, False

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if batch_idx == self.batch and not self.sent:
            self.sent = True
            os.kill(os.getpid(), signal.SIGTERM)


class Messages(logging.Handler):
    """The messages of one logger (at INFO and above) while the ``with`` block runs."""

    def __init__(self, name: str) -> None:
        super().__init__(logging.INFO)
        self.logger, self.messages = logging.getLogger(name), []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())

    def __enter__(self) -> list[str]:
        self.level = self.logger.level
        self.logger.setLevel(logging.INFO)
        self.logger.addHandler(self)
        return self.messages

    def __exit__(self, *exc) -> None:
        self.logger.removeHandler(self)
        self.logger.setLevel(self.level)


@pytest.fixture
def weights_only_loads(monkeypatch) -> tuple[list[str], list[str]]:
    """``torch.load`` (and ``torch.serialization.load``) wrapped: every call is recorded (its caller) and passed to
    the real one, and a call whose ``weights_only`` is not True raises; the list of those is returned too, for a
    caller that would swallow the error (``checkpoint.load`` turns any into a CheckpointError)."""
    real = torch.load
    calls: list[str] = []
    unsafe: list[str] = []

    def load(*args, **kwargs):
        caller = traceback.extract_stack(limit=2)[0]
        calls.append(f"{caller.filename}:{caller.lineno}")
        if kwargs.get("weights_only") is not True:
            unsafe.append(f"weights_only={kwargs.get('weights_only')!r} at\n{''.join(traceback.format_stack(limit=8))}")
            raise AssertionError(unsafe[-1])
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "load", load)
    monkeypatch.setattr(torch.serialization, "load", load)
    return calls, unsafe


@pytest.mark.slow
def test_every_checkpoint_load_is_weights_only(tmp_path, synth_data_dir, weights_only_loads, monkeypatch):
    """Every torch.load of a run passes weights_only=True: a fit that tests its best checkpoint, train=false
    ckpt_path=<best>, a resume (ckpt_path=last.ckpt), a SIGTERM stop and the requeued job resuming from it.
    Lightning never logs that a weights_only went unset (the stop's save did: "defaulting to `False`")."""
    from attnbench.callbacks import RunStopped

    calls, unsafe = weights_only_loads
    args = [*FAST, f"paths.data_dir={synth_data_dir}"]
    loads = {}
    with Messages("lightning.pytorch.trainer.connectors.checkpoint_connector") as said:
        first = train_run(args, tmp_path / "a")  # fit, then test the best checkpoint
        loads["fit + test best"] = len(calls)
        train_run([*args, "train=false", f"ckpt_path={first['best_checkpoint']}"], tmp_path / "b")
        loads["train=false"] = len(calls) - sum(loads.values())
        # before the resume: its checkpoints continue in a/checkpoints, replacing the best one
        train_run([*args, "trainer.max_epochs=2", f"ckpt_path={tmp_path / 'a' / 'checkpoints' / 'last.ckpt'}"],
                  tmp_path / "c")
        loads["resume"] = len(calls) - sum(loads.values())
        stop = [*args, "+callbacks.sigterm._target_=tests.test_safety.SigtermAt"]
        with pytest.raises(RunStopped, match="stopped by SIGTERM; checkpoint saved at the stop"):
            train_run(stop, tmp_path / "d")
        loads["SIGTERM stop"] = len(calls) - sum(loads.values())
        monkeypatch.setenv("SLURM_RESTART_COUNT", "1")  # the requeued job: same folder, resumes from last.ckpt
        assert train_run(args, tmp_path / "d")["status"] == "ok"
        loads["requeued"] = len(calls) - sum(loads.values())
    assert not unsafe, unsafe[0]
    assert all(n > 0 for step, n in loads.items() if step != "SIGTERM stop"), (loads, calls)  # the wrapper saw them
    assert not [m for m in said if "weights_only" in m], said


def test_ctrl_c_during_fit_stops_at_the_next_batch_and_a_second_one_at_once():
    """The first Ctrl+C sets Lightning's stop flag (no KeyboardInterrupt thrown into whatever runs); the second
    raises; teardown puts Python's handler back. An ignored SIGINT is left ignored."""
    from types import SimpleNamespace

    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from attnbench.callbacks import SaveOnSignal, stopped

    outer = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a fresh `python train.py`
    cb = SaveOnSignal(dirpath="unused")
    trainer = SimpleNamespace(_signal_connector=SimpleNamespace(received_sigterm=False), callbacks=[cb])
    cb.on_train_start(trainer, None)
    try:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)  # the handler runs in the main thread at the next bytecode
        assert trainer._signal_connector.received_sigterm and cb.interrupted
        stop = stopped(SIGTERMException(), trainer)
        assert stop.code == 128 + signal.SIGINT and str(stop) == "stopped by SIGINT; no checkpoint saved"
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
    finally:
        cb.teardown(trainer, None, "fit")
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    try:
        cb3 = SaveOnSignal(dirpath="unused")  # stopped by an exception: Lightning calls no teardown hook
        cb3.on_train_start(trainer, None)
        assert signal.getsignal(signal.SIGINT) is not signal.default_int_handler
        cb3.on_exception(SimpleNamespace(state=SimpleNamespace(fn=None)), None, ValueError("boom"))
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        cb2 = SaveOnSignal(dirpath="unused")
        cb2.on_train_start(trainer, None)
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        cb2.teardown(trainer, None, "fit")
    finally:
        signal.signal(signal.SIGINT, outer)


def test_the_slurm_launcher_requeues_preempted_and_timed_out_jobs(compose_cfg):
    cfg = compose_cfg(["hydra/launcher=slurm"], hydra=True)
    launcher = cfg.hydra.launcher
    assert "submitit" in launcher._target_ and launcher.max_num_timeout >= 1
    assert launcher.additional_parameters.requeue is True and launcher.signal_delay_s > 0
    assert cfg.callbacks.signal_checkpoint.dirpath == cfg.callbacks.last_checkpoint.dirpath


@pytest.mark.slow
def test_submitits_usr2_requeue_waits_for_the_checkpoint(compose_cfg, synth_data_dir, tmp_path):
    """hydra/launcher=slurm: submitit's USR2 handler (requeue, then sys.exit wherever training is) runs only after
    Lightning stopped at a batch boundary and last.ckpt was saved; the run then exits 128 + 12."""
    import threading

    from attnbench.callbacks import RunStopped
    from attnbench.train import run

    calls = []

    def fake_submitit(signum, frame):  # submitit's checkpoint_and_try_requeue: requeue, then exit
        calls.append(signum)
        sys.exit(-1)

    fake_submitit.__module__ = "submitit.core.job_environment"
    cfg = compose_cfg([*FAST, f"paths.data_dir={synth_data_dir}", "trainer.max_epochs=100000",
                       "callbacks.early_stopping.patience=100000"], output_dir=str(tmp_path))
    last = tmp_path / "checkpoints" / "last.ckpt"

    def send():
        t0 = time.time()
        while not last.is_file() and time.time() - t0 < 120:
            time.sleep(0.1)
        time.sleep(0.3)
        os.kill(os.getpid(), signal.SIGUSR2)

    old = signal.signal(signal.SIGUSR2, fake_submitit)
    try:
        threading.Thread(target=send, daemon=True).start()
        with pytest.raises(RunStopped) as e:
            run(cfg)
        assert signal.getsignal(signal.SIGUSR2) is fake_submitit  # put back after the fit
    finally:
        signal.signal(signal.SIGUSR2, old)
    assert calls == [signal.SIGUSR2] and e.value.code == 128 + signal.SIGUSR2
    assert str(e.value).startswith("stopped by SIGUSR2") and f"ckpt_path={last}" in str(e.value)
    assert torch.load(last, weights_only=True)["global_step"] > 0
