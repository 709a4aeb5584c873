"""Resume that trains: RNG states in checkpoints, the LR schedule extended to a larger budget, 1 epoch + resume to 2
equal to 2 uninterrupted epochs, and a cosine schedule without an epoch budget refused."""

from __future__ import annotations

import logging
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from attnbench import checkpoint
from attnbench.config import ConfigError
from attnbench.train import run
from tests.conftest import FAST, train_run


def test_rng_states_round_trip_as_plain_data(tmp_path):
    torch.manual_seed(3), np.random.seed(3), random.seed(3)
    torch.rand(5), np.random.rand(5), random.random(), np.random.randn()  # a cached gaussian in numpy's state
    torch.save({"rng": checkpoint.rng_state()}, tmp_path / "s.pt")
    expected = torch.rand(4), np.random.rand(4), np.random.randn(2), [random.random() for _ in range(4)]
    torch.manual_seed(0), np.random.seed(0), random.seed(0)
    checkpoint.set_rng_state(torch.load(tmp_path / "s.pt", weights_only=True)["rng"])
    again = torch.rand(4), np.random.rand(4), np.random.randn(2), [random.random() for _ in range(4)]
    assert torch.equal(expected[0], again[0]) and np.array_equal(expected[1], again[1])
    assert np.array_equal(expected[2], again[2]) and expected[3] == again[3]


def test_cosine_schedule_without_an_epoch_budget_is_refused(compose_cfg, synth_data_dir):
    cfg = compose_cfg([*FAST, f"paths.data_dir={synth_data_dir}", "trainer.max_epochs=-1"])
    with pytest.raises(ConfigError, match=r"model.scheduler.T_max=-1 is invalid.*trainer.max_epochs, here -1"):
        run(cfg)
    cfg = compose_cfg([*FAST, f"paths.data_dir={synth_data_dir}", "trainer.max_epochs=3", "model.scheduler.T_max=0"])
    with pytest.raises(ConfigError, match=r"model.scheduler.T_max=0 is invalid"):
        run(cfg)


@pytest.mark.slow
def test_one_epoch_and_a_resume_to_two_equal_two_epochs(tmp_path, synth_data_dir, caplog):
    """Same weights to float tolerance on CPU: the RNG states (shuffle, dropout) come back with the checkpoint, and
    the cosine schedule (T_max = trainer.max_epochs) is extended from 1 to 2 epochs instead of staying at lr 0."""
    args = [*FAST, f"paths.data_dir={synth_data_dir}", "model.net.dropout=0.2"]
    train_run(args, tmp_path / "one")
    last = tmp_path / "one" / "checkpoints" / "last.ckpt"
    one = torch.load(last, weights_only=True)
    assert one["lr_schedulers"][0]["T_max"] == 1 and one["optimizer_states"][0]["param_groups"][0]["lr"] == 0.0
    with caplog.at_level(logging.INFO):
        res = train_run([*args, "trainer.max_epochs=2", f"ckpt_path={last}"], tmp_path / "resumed")
    assert "model.scheduler T_max 1 -> 2" in caplog.text
    resumed = torch.load(last, weights_only=True)  # checkpoints continue in the resumed run's folder
    two_res = train_run([*args, "trainer.max_epochs=2"], tmp_path / "two")
    two = torch.load(tmp_path / "two" / "checkpoints" / "last.ckpt", weights_only=True)
    assert resumed["epoch"] == two["epoch"] == 1 and resumed["global_step"] == two["global_step"]
    for k, w in two["state_dict"].items():
        torch.testing.assert_close(resumed["state_dict"][k], w, rtol=1e-5, atol=1e-6, msg=k)
    assert resumed["lr_schedulers"][0] == two["lr_schedulers"][0]  # T_max 2, the same step
    assert res["metrics"]["val/mse"] == pytest.approx(two_res["metrics"]["val/mse"], rel=1e-5)


@pytest.mark.slow
def test_a_checkpoint_without_rng_state_still_resumes_with_a_warning(tmp_path, synth_data_dir, caplog):
    args = [*FAST, f"paths.data_dir={synth_data_dir}"]
    train_run(args, tmp_path / "one")
    ckpt = torch.load(tmp_path / "one" / "checkpoints" / "last.ckpt", weights_only=True)
    del ckpt[checkpoint.RNG_KEY]
    torch.save(ckpt, Path(tmp_path / "old.ckpt"))
    with caplog.at_level(logging.INFO):
        res = train_run([*args, "trainer.max_epochs=2", f"ckpt_path={tmp_path / 'old.ckpt'}"], tmp_path / "b")
    assert "without RNG state" in caplog.text
    assert res["metrics"]["epochs"] == 2


def test_the_medmnist_augmentation_state_resumes(tmp_path):
    """The training augmentation draws from its own seeded RandomStates (MONAI): the datamodule's state in the
    checkpoint continues them instead of replaying the first epoch's augmentation."""
    from attnbench.data.medmnist import MedMNIST3DDataModule
    from tests.test_medmnist import write_npz

    write_npz(tmp_path / "medmnist3d" / "adrenalmnist3d.npz")

    def dm():
        m = MedMNIST3DDataModule("adrenalmnist3d", str(tmp_path), download=False, verify=False, augment="flip")
        m.setup("fit")
        return m

    first = dm()
    [first.datasets["train"][i] for i in range(4)]  # an epoch's worth of draws
    torch.save({"dm": first.state_dict()}, tmp_path / "s.pt")
    expected = torch.stack([first.datasets["train"][i][0] for i in range(4)])
    fresh = dm()
    assert not torch.equal(torch.stack([fresh.datasets["train"][i][0] for i in range(4)]), expected)
    resumed = dm()
    resumed.load_state_dict(torch.load(tmp_path / "s.pt", weights_only=True)["dm"])
    assert torch.equal(torch.stack([resumed.datasets["train"][i][0] for i in range(4)]), expected)
