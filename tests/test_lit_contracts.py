"""What the LightningModules promise beyond their metrics: a compiled net saves the plain net's keys, a resumed fit
holds the schedule of this run's config at the restored step (through the schedulers' public API), and the
capabilities they read (the weight sources of a fit, the layer's pooled projection) are declared, not probed."""

from __future__ import annotations

import functools
import types

import pytest
import torch
from torch import nn
from torch.optim.lr_scheduler import CosineAnnealingLR, LambdaLR, ReduceLROnPlateau

from attnbench import attention, checkpoint
from attnbench.attention.registry import Caps
from attnbench.config import ConfigError
from attnbench.lit.base import ConfiguredModule
from attnbench.lit.classification import ClassificationModule
from attnbench.lit.forecasting import ForecastingModule
from attnbench.lit.text_classification import TextClassificationModule
from attnbench.lit.treeformer import TreeBootstrap

SGD = functools.partial(torch.optim.SGD, lr=0.1)


class _Forecaster(nn.Module):
    """(B, L, C) -> (B, pred_len, C): one linear map over time."""

    pred_len = 2

    def __init__(self, seq_len: int = 4) -> None:
        super().__init__()
        self.time = nn.Linear(seq_len, self.pred_len)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.time(x.transpose(1, 2)).transpose(1, 2)  # (B, C, L) -> (B, pred_len, C)


# ----------------------------------------------------------------------------- torch.compile
@pytest.mark.parametrize(("make", "shape"), [
    (lambda compile: ForecastingModule(_Forecaster(), SGD, compile=compile), (2, 4, 3)),
    (lambda compile: ClassificationModule(nn.Linear(3, 2), SGD, n_classes=2, compile=compile), (2, 3)),
], ids=["forecasting", "classification"])
def test_a_compiled_net_saves_and_loads_the_plain_keys(make, shape, monkeypatch):
    """compile=True compiles the net in place: its checkpoint keys are the plain net's (no ``_orig_mod.``), so
    checkpoints move between compiled and uncompiled runs; the compiled forward (dynamo's eager backend here:
    seconds, not inductor's minute of C++ on a CPU) equals the plain one."""
    compiled_fns = []

    def eager_compile(fn, *args, **kwargs):
        compiled_fns.append(fn)
        return torch_compile(fn, *args, backend="eager", **kwargs)

    torch_compile = torch.compile
    monkeypatch.setattr(torch, "compile", eager_compile)
    torch.manual_seed(0)
    compiled, plain = make(True), make(False)
    assert len(compiled_fns) == 1  # the compiled run's net, and only it
    keys = list(compiled.state_dict())
    assert keys == list(plain.state_dict()) and not any("_orig_mod" in k for k in keys), keys
    plain.load_state_dict(compiled.state_dict())  # strict: the same keys both ways
    compiled.load_state_dict(plain.state_dict())
    x = torch.randn(shape)
    torch.testing.assert_close(compiled(x), plain(x), rtol=0, atol=0)


def test_a_checkpoint_of_the_old_compiled_wrapper_loads_into_the_plain_net(tmp_path):
    """Checkpoints written before nets were compiled in place hold ``net._orig_mod.*`` keys: both readers (ours,
    before the fit check, and Lightning's, through ``on_load_checkpoint``) see the plain keys."""
    torch.manual_seed(0)
    module = ClassificationModule(nn.Linear(3, 2), SGD, n_classes=2)
    old = {k.replace("net.", "net._orig_mod.", 1): v for k, v in module.state_dict().items()}
    torch.save({"state_dict": old}, tmp_path / "old.ckpt")
    assert set(checkpoint.load(tmp_path / "old.ckpt")["state_dict"]) == set(module.state_dict())
    ckpt = {"state_dict": dict(old)}
    fresh = ClassificationModule(nn.Linear(3, 2), SGD, n_classes=2)
    fresh.on_load_checkpoint(ckpt)
    fresh.load_state_dict(ckpt["state_dict"])  # strict
    for k, v in module.state_dict().items():
        torch.testing.assert_close(fresh.state_dict()[k], v, rtol=0, atol=0)


# ----------------------------------------------------------------------------- schedules on resume
def _module(scheduler, interval: str = "epoch") -> ForecastingModule:
    return ForecastingModule(_Forecaster(), SGD, scheduler=scheduler, scheduler_interval=interval)


def _resumed(module: ConfiguredModule, checkpoint_sched: torch.optim.lr_scheduler.LRScheduler):
    """The module's optimizer and scheduler with the checkpoint's state loaded (as Lightning restores them) and
    the module's trainer stubbed with that scheduler."""
    conf = module.configure_optimizers()
    opt, sched = conf["optimizer"], conf["lr_scheduler"]["scheduler"]
    opt.load_state_dict(checkpoint_sched.optimizer.state_dict())
    sched.load_state_dict(checkpoint_sched.state_dict())
    module._trainer = types.SimpleNamespace(lr_scheduler_configs=[types.SimpleNamespace(scheduler=sched)])
    return opt, sched


def _stepped(module: ConfiguredModule, steps: int):
    """The module's own optimizer and scheduler after ``steps`` scheduler steps (an uninterrupted run)."""
    conf = module.configure_optimizers()
    opt, sched = conf["optimizer"], conf["lr_scheduler"]["scheduler"]
    for _ in range(steps):
        opt.step()
        sched.step()
    return opt, sched


def test_a_larger_budget_replays_this_runs_schedule_to_the_restored_step(caplog):
    """1 epoch of T_max=1 (lr 0 at its end), resumed with T_max=3: the state and lr of 1 epoch of T_max=3."""
    _, ended = _stepped(_module(functools.partial(CosineAnnealingLR, T_max=1)), 1)
    assert ended.get_last_lr() == [0.0]
    resumed = _module(functools.partial(CosineAnnealingLR, T_max=3))
    opt, sched = _resumed(resumed, ended)
    with caplog.at_level("INFO"):
        resumed._extend_schedules()
    assert "model.scheduler T_max 1 -> 3" in caplog.text
    ref_opt, ref = _stepped(_module(functools.partial(CosineAnnealingLR, T_max=3)), 1)
    assert sched.state_dict() == ref.state_dict()
    assert [g["lr"] for g in opt.param_groups] == [g["lr"] for g in ref_opt.param_groups] == ref.get_last_lr()
    assert 0.0 < sched.get_last_lr()[0] < 0.1


def test_an_unchanged_schedule_resumes_as_it_was():
    _, ckpt = _stepped(_module(functools.partial(LambdaLR, lr_lambda=lambda s: 0.5 ** s), "step"), 3)
    resumed = _module(functools.partial(LambdaLR, lr_lambda=lambda s: 0.5 ** s), "step")
    opt, sched = _resumed(resumed, ckpt)
    resumed._extend_schedules()
    assert sched.last_epoch == 3 and sched.get_last_lr() == ckpt.get_last_lr() == [0.1 * 0.5 ** 3]
    assert opt.param_groups[0]["lr"] == 0.1 * 0.5 ** 3


def test_a_step_budget_schedule_is_replayed_over_this_runs_step_estimate():
    """GLUE's linear warm-up/decay: num_training_steps follows the trainer's estimate, so 4 of 8 steps resumed
    with 16 hold the lr of step 4 of 16 (as an uninterrupted 16-step run), not of 8."""
    from transformers import get_linear_schedule_with_warmup

    def glue(total: int) -> TextClassificationModule:
        m = TextClassificationModule(nn.Linear(2, 2), SGD, "rte",
                                     scheduler=functools.partial(get_linear_schedule_with_warmup))
        m._trainer = types.SimpleNamespace(estimated_stepping_batches=total)
        return m

    _, ckpt = _stepped(glue(8), 4)
    resumed = glue(16)
    opt, sched = _resumed(resumed, ckpt)
    resumed._trainer.estimated_stepping_batches = 16
    resumed._extend_schedules()
    _, ref = _stepped(glue(16), 4)
    assert sched.get_last_lr() == ref.get_last_lr() == [opt.param_groups[0]["lr"]] != ckpt.get_last_lr()


def test_a_metric_driven_scheduler_refuses_changed_values():
    plateau = _module(functools.partial(ReduceLROnPlateau, patience=2))
    conf = plateau.configure_optimizers()
    sched = conf["lr_scheduler"]["scheduler"]
    plateau._trainer = types.SimpleNamespace(lr_scheduler_configs=[types.SimpleNamespace(scheduler=sched)])
    plateau._extend_schedules()  # unchanged: its state stays the checkpoint's
    sched.patience = 5  # as restored from a checkpoint written with patience=5
    with pytest.raises(ConfigError, match=r"patience: 5 -> 2.*ReduceLROnPlateau follows a metric"):
        plateau._extend_schedules()


# ----------------------------------------------------------------------------- declared capabilities
def test_the_dense_checkpoint_of_tree_bootstrap_conflicts_with_init_from():
    glue = TextClassificationModule(nn.Linear(2, 2), SGD, "rte", init_from="mlm.ckpt")
    other = types.SimpleNamespace(dense_checkpoint="x.ckpt")  # not a weight source: only TreeBootstrap is
    tree = TreeBootstrap(order="depth", steps_per_stage=1, dense_checkpoint="dense.ckpt")
    glue._trainer = types.SimpleNamespace(callbacks=[other, tree])
    with pytest.raises(ConfigError, match=r"model.init_from='mlm.ckpt' and callbacks.tree_bootstrap.dense_checkpoint="
                                          r"'dense.ckpt' both set the weights"):
        glue.setup("fit")


def test_projected_tokens_is_a_declared_tensor_capability():
    takes = [n for n in attention.available() if attention.get(n).caps.projected_tokens]
    assert takes and all(attention.get(n).caps.tensor for n in takes), takes
    with pytest.raises(ValueError, match="projected_tokens=True needs tensor=True"):
        Caps(projected_tokens=True)

