"""What the LightningModules read off nets and datamodules is declared (models.interfaces, data.base) and checked."""

from __future__ import annotations

import functools

import pytest
import torch
from torch import nn

from attnbench.data.base import ClassCounted
from attnbench.lit.base import ConfiguredModule
from attnbench.lit.classification import ClassificationModule
from attnbench.lit.forecasting import ForecastingModule
from attnbench.lit.text_classification import TextClassificationModule
from attnbench.models.interfaces import Forecaster, PretrainedNet

ADAMW = functools.partial(torch.optim.AdamW)


class Swapped(nn.Module):
    """A pretrained net with one swapped-in attention holding a buffer (as models.hf_text builds)."""

    def __init__(self, trained_head: bool) -> None:
        super().__init__()
        self.w = nn.Linear(2, 2)
        self.attnbench_attention = nn.Module()
        self.attnbench_attention.register_buffer("proj", torch.ones(3))
        self.attnbench_trained_head = trained_head
        self.attnbench_model_state = ("attnbench_attention",)


def test_pretrained_net_declares_its_head_and_model_owned_state():
    net = Swapped(trained_head=True)
    assert isinstance(net, PretrainedNet) and not isinstance(nn.Linear(2, 2), PretrainedNet)
    m = TextClassificationModule(net, optimizer=ADAMW, task="sst2")
    assert m.evaluable_untrained and m.checkpoint_ignore == ("attnbench_attention",)
    assert not TextClassificationModule(Swapped(trained_head=False), optimizer=ADAMW, task="sst2").evaluable_untrained
    plain = TextClassificationModule(nn.Linear(2, 2), optimizer=ADAMW, task="sst2")
    assert not plain.evaluable_untrained and plain.checkpoint_ignore == ()
    assert ConfiguredModule.evaluable_untrained is False  # declared for every module


def test_swapped_attention_state_follows_the_model_on_load():
    m = TextClassificationModule(Swapped(trained_head=False), optimizer=ADAMW, task="sst2")
    state = {k: v.clone() for k, v in m.state_dict().items()}
    del state["net.attnbench_attention.proj"]
    state["net.attnbench_attention.other"] = torch.zeros(5)  # another entry's buffer, from the checkpoint
    ckpt = {"state_dict": state}
    m.on_load_checkpoint(ckpt)
    assert set(ckpt["state_dict"]) == set(m.state_dict())
    torch.testing.assert_close(ckpt["state_dict"]["net.attnbench_attention.proj"], torch.ones(3))


def test_forecasting_module_needs_a_net_declaring_pred_len():
    with pytest.raises(TypeError, match="Linear is not a Forecaster: it lacks pred_len"):
        ForecastingModule(nn.Linear(2, 2), optimizer=ADAMW)
    net = nn.Linear(8, 4)
    net.pred_len = 4
    assert isinstance(net, Forecaster) and ForecastingModule(net, optimizer=ADAMW).pred_len == 4


def test_inverse_class_weights_need_a_class_counted_datamodule():
    class DM:
        class_counts = [3, 1]

    assert isinstance(DM(), ClassCounted) and not isinstance(object(), ClassCounted)
    m = ClassificationModule(nn.Identity(), optimizer=ADAMW, n_classes=2)
    assert m.hparams.class_weights == "inverse"  # the yaml's default, and the code's
    m._trainer = type("T", (), {"datamodule": object()})()
    with pytest.raises(ValueError, match="class_weights=inverse needs a datamodule with class_counts"):
        m.setup("fit")
    m._trainer = type("T", (), {"datamodule": DM()})()
    m.setup("fit")
    torch.testing.assert_close(m.class_w, torch.tensor([0.5, 1.5]))  # 2 * (1/3, 1) / (4/3)
