"""Progress lines without a terminal (``attnbench.progress.ProgressLog``): their content and cadence and the ETA
arithmetic, driven by hand with a fake clock; on by default where the progress bar is off (stdout not a terminal),
off beside a bar; the config entry checked by its schema; a real fit's lines."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from hydra.utils import instantiate

from attnbench.config import ConfigError, drop_disabled_progress_bar, validate
from attnbench.progress import ProgressLog, hms, steps_left


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def fake_trainer(**kw) -> SimpleNamespace:
    """What ProgressLog reads of a Trainer: 10 batches an epoch, 3 epochs, no bar, val/mse monitored."""
    current = SimpleNamespace(completed=0)
    t = SimpleNamespace(num_training_batches=10, accumulate_grad_batches=1, max_epochs=3, max_steps=-1,
                        current_epoch=0, global_step=0, callback_metrics={}, is_global_zero=True,
                        progress_bar_callback=None, checkpoint_callback=SimpleNamespace(monitor="val/mse"),
                        sanity_checking=False,
                        fit_loop=SimpleNamespace(epoch_loop=SimpleNamespace(batch_progress=SimpleNamespace(
                            current=current))))
    for k, v in kw.items():
        setattr(t, k, v)
    return t


def train_batches(cb: ProgressLog, t: SimpleNamespace, clock: Clock, n: int, seconds: float) -> None:
    """``n`` batches of ``seconds`` each, batch i with loss i (within the epoch)."""
    for _ in range(n):
        i = t.fit_loop.epoch_loop.batch_progress.current.completed
        clock.t += seconds
        t.global_step += 1
        t.fit_loop.epoch_loop.batch_progress.current.completed = i + 1
        cb.on_train_batch_end(t, None, {"loss": torch.tensor(float(i))}, None, i)


def validate_for(cb: ProgressLog, t: SimpleNamespace, clock: Clock, seconds: float, mse: float) -> None:
    cb.on_validation_start(t, None)
    clock.t += seconds
    t.callback_metrics["val/mse"] = torch.tensor(mse)
    cb.on_validation_end(t, None)


def test_lines_cadence_and_eta_with_a_fake_clock(caplog):
    cb, t, clock = ProgressLog(every_n_steps=4), fake_trainer(), Clock()
    cb.clock = clock
    caplog.set_level(logging.INFO, logger="attnbench.progress")
    cb.on_fit_start(t, None)
    cb.on_train_start(t, None)
    cb.on_train_epoch_start(t, None)
    train_batches(cb, t, clock, 10, 0.5)  # 2 steps/s; lines at steps 4 and 8
    validate_for(cb, t, clock, 5.0, 0.25)
    t.current_epoch, t.fit_loop.epoch_loop.batch_progress.current.completed = 1, 0
    cb.on_train_epoch_start(t, None)
    train_batches(cb, t, clock, 2, 1.0)  # step 12: 4 steps in 8 s, 5 of them validating: 4/3 steps/s
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "progress: a line every 4 steps and at each validation (no progress bar)",
        # 6 steps left in the epoch, 6 + 2 * 10 in the run, at 2 steps/s; loss: mean of batches 0..3
        "step 4 | epoch 1/3, batch 4/10 | train/loss 1.5 | 2 steps/s | ETA epoch 0:00:03, run 0:00:13",
        "step 8 | epoch 1/3, batch 8/10 | train/loss 5.5 | 2 steps/s | ETA epoch 0:00:01, run 0:00:11",
        # the epoch's mean loss; 20 steps at 2/s = 10 s plus 2 epochs of validation at 5 s each
        "validation, step 10 | epoch 1/3, batch 10/10 | train/loss 4.5 | val/mse 0.25 | 2 steps/s | ETA run 0:00:20",
        # loss: batches 8, 9 of epoch 1 and 0, 1 of epoch 2; 8 steps left in the epoch at 4/3 steps/s = 6 s; the
        # run: 18 steps = 13.5 s, plus validation at 5 s per 1.2 epochs trained for the 1.8 epochs left = 7.5 s
        "step 12 | epoch 2/3, batch 2/10 | train/loss 4.5 | val/mse 0.25 | 1.33 steps/s | ETA epoch 0:00:06, "
        "run 0:00:21",
    ]


def test_a_validation_before_the_first_line_has_a_rate_and_eta(caplog):
    """A short run (debug=fast: 3 steps an epoch, a line every 50): the validation's line measures what ran."""
    cb, t, clock = ProgressLog(), fake_trainer(num_training_batches=3, max_epochs=1), Clock()
    cb.clock = clock
    caplog.set_level(logging.INFO, logger="attnbench.progress")
    cb.on_fit_start(t, None)
    cb.on_train_start(t, None)
    cb.on_train_epoch_start(t, None)
    train_batches(cb, t, clock, 3, 0.25)
    validate_for(cb, t, clock, 1.0, 0.5)
    assert caplog.records[-1].getMessage() == ("validation, step 3 | epoch 1/1, batch 3/3 | train/loss 1 | "
                                               "val/mse 0.5 | 4 steps/s | ETA run 0:00:00")


def test_steps_left_honours_max_steps_accumulation_and_unknown_lengths():
    t = fake_trainer(global_step=12, current_epoch=1)
    assert steps_left(t, 1) == (8, 18)
    t.max_steps = 15  # the run ends at step 15, before the epoch does
    assert steps_left(t, 1) == (3, 3)
    t = fake_trainer(accumulate_grad_batches=3)  # 10 batches: 4 optimizer steps an epoch (the last one short)
    assert steps_left(t, 4) == (2, 2 + 2 * 4)
    t = fake_trainer(num_training_batches=float("inf"), max_epochs=-1)  # an iterable loader, no epoch budget
    assert steps_left(t, 4) == (float("inf"), float("inf"))
    t.max_steps = 100
    assert steps_left(t, 4) == (100, 100)
    assert hms(3725.4) == "1:02:05" and hms(None) == "?" and hms(float("inf")) == "?"


def test_on_without_a_bar_off_beside_one_or_when_disabled():
    assert ProgressLog.wanted("auto", bar_shown=False) and not ProgressLog.wanted("auto", bar_shown=True)
    assert ProgressLog.wanted(True, bar_shown=True) and not ProgressLog.wanted(False, bar_shown=False)
    for enabled, bar, active in [("auto", None, True), ("auto", object(), False), (False, None, False)]:
        cb = ProgressLog(enabled=enabled)
        cb.on_fit_start(fake_trainer(progress_bar_callback=bar), None)
        assert cb.active is active
    cb = ProgressLog()
    cb.on_fit_start(fake_trainer(is_global_zero=False), None)  # another rank says nothing
    assert not cb.active


@pytest.mark.parametrize("interactive", [False, True])
def test_default_config_logs_progress_exactly_when_stdout_is_not_a_terminal(compose_cfg, interactive):
    """The default callbacks: stdout not a terminal drops the bar, and the progress lines come on; on a terminal
    the bar stays and the lines stay off."""
    cfg = compose_cfg(["logger=none"])
    drop_disabled_progress_bar(cfg, interactive=interactive)
    validate(cfg)
    cbs = [instantiate(c) for c in cfg.callbacks.values() if c is not None]
    trainer = instantiate(cfg.trainer, callbacks=cbs, logger=False, default_root_dir=None)
    (progress,) = [cb for cb in cbs if isinstance(cb, ProgressLog)]
    progress.on_fit_start(trainer, None)
    assert progress.active is not interactive and progress.monitor == cfg.model.monitor
    assert (trainer.progress_bar_callback is None) is not interactive


@pytest.mark.parametrize(("override", "needle"), [
    ("+callbacks.progress_log.every_n_step=10", "callbacks.progress_log.every_n_step: Key 'every_n_step' not in "),
    ("callbacks.progress_log.every_n_steps=0", "callbacks.progress_log.every_n_steps=0 is invalid: must be an int"),
    ("callbacks.progress_log.enabled=sometimes", "callbacks.progress_log.enabled='sometimes' is invalid: auto "),
])
def test_config_entry_is_checked(compose_cfg, override, needle):
    with pytest.raises(ConfigError) as e:
        validate(compose_cfg([override]))
    assert needle in str(e.value)
    if "every_n_step=" in override:
        assert "did you mean callbacks.progress_log.every_n_steps?" in str(e.value)


class _Tiny(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(2, 1)

    def training_step(self, batch, i):
        return self.lin(batch).pow(2).mean()

    def validation_step(self, batch, i):
        self.log("val/mse", self.lin(batch).pow(2).mean())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self):
        return torch.utils.data.DataLoader(torch.randn(20, 2), batch_size=2)  # 10 batches

    def val_dataloader(self):
        return torch.utils.data.DataLoader(torch.randn(4, 2), batch_size=2)


def test_a_fit_logs_every_n_steps_and_each_validation(caplog, tmp_path):
    """limit_train_batches counts: 3 batches an epoch of the loader's 10, 2 epochs."""
    caplog.set_level(logging.INFO, logger="attnbench.progress")
    trainer = L.Trainer(max_epochs=2, limit_train_batches=3, limit_val_batches=1, enable_progress_bar=False,
                        logger=False, enable_checkpointing=False, enable_model_summary=False,
                        num_sanity_val_steps=1, callbacks=[ProgressLog(every_n_steps=2, monitor="val/mse")],
                        default_root_dir=tmp_path)
    trainer.fit(_Tiny())
    lines = [r.getMessage() for r in caplog.records if r.name == "attnbench.progress"][1:]
    heads = [line.split(" | ")[:2] for line in lines]
    assert heads == [["step 2", "epoch 1/2, batch 2/3"], ["validation, step 3", "epoch 1/2, batch 3/3"],
                     ["step 4", "epoch 2/2, batch 1/3"], ["step 6", "epoch 2/2, batch 3/3"],
                     ["validation, step 6", "epoch 2/2, batch 3/3"]]  # the sanity check: no line
    assert "| val/mse " in lines[1] and " steps/s | ETA epoch " in lines[0]
    assert lines[-1].endswith("ETA run 0:00:00")
