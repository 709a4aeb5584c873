"""Test-set artifacts: forecasting predictions + plot, classification confusion matrix."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from attnbench.lit.artifacts import PredictionArtifacts, confusion_matrix
from tests.conftest import FAST, QUICK, train_run, write_ett_csv
from tests.test_medmnist import write_npz

TRAINER = SimpleNamespace(global_rank=0, world_size=1, global_step=0, loggers=[])  # no logger: files only
PNG = b"\x89PNG\r\n\x1a\n"


def test_confusion_matrix_rows_true_columns_predicted():
    cm = confusion_matrix(np.array([0, 0, 1, 2, 2, 2]), np.array([0, 1, 1, 2, 0, 2]), 3)
    assert cm.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]


def _feed(cb: PredictionArtifacts, batches: list[dict]) -> None:
    cb.on_test_epoch_start(TRAINER, None)
    for i, out in enumerate(batches):
        cb.on_test_batch_end(TRAINER, None, out, None, i)
    cb.on_test_epoch_end(TRAINER, None)


def test_forecasts_saved_with_targets_and_plotted(tmp_path):
    g = torch.Generator().manual_seed(0)
    batches = [{"forecast": torch.randn(4, 24, 2, generator=g), "target": torch.randn(4, 24, 2, generator=g),
                "history": torch.randn(4, 48, generator=g)} for _ in range(3)]
    _feed(PredictionArtifacts(str(tmp_path), n_plot=3), batches)
    z = np.load(tmp_path / "test_predictions.npz")
    assert z["forecast"].shape == z["target"].shape == (12, 24, 2) and z["history"].shape == (12, 48)
    assert np.array_equal(z["target"][4:8], batches[1]["target"].numpy())
    assert int(z["windows_saved"]) == int(z["windows_total"]) == 12
    assert (tmp_path / "test_forecasts.png").read_bytes()[:8] == PNG
    assert not (tmp_path / "confusion_matrix.csv").exists()


def test_cap_keeps_the_first_batches_and_says_so(tmp_path):
    batch = {"forecast": torch.zeros(8, 96, 1), "target": torch.ones(8, 96, 1), "history": torch.zeros(8, 96)}
    per_batch_mb = 3 * 8 * 96 * 4 / 2**20
    _feed(PredictionArtifacts(str(tmp_path), n_plot=0, max_mb=2.5 * per_batch_mb), [batch] * 4)
    z = np.load(tmp_path / "test_predictions.npz")
    assert (int(z["windows_saved"]), int(z["windows_total"])) == (16, 32) and len(z["forecast"]) == 16
    assert not (tmp_path / "test_forecasts.png").exists()  # n_plot=0


def test_confusion_matrix_csv_and_png(tmp_path):
    probs = torch.tensor([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.1, 0.1, 0.8], [0.6, 0.3, 0.1]])
    _feed(PredictionArtifacts(str(tmp_path)), [{"probs": probs[:2], "target": torch.tensor([0, 1])},
                                          {"probs": probs[2:], "target": torch.tensor([2, 2])}])
    cm = pd.read_csv(tmp_path / "confusion_matrix.csv", index_col=0)
    assert cm.index.name == "true\\pred" and list(cm.columns) == ["0", "1", "2"]
    assert cm.to_numpy().tolist() == [[1, 0, 0], [0, 1, 0], [1, 0, 1]]
    assert (tmp_path / "confusion_matrix.png").read_bytes()[:8] == PNG


def test_modules_returning_nothing_are_left_alone(tmp_path):
    _feed(PredictionArtifacts(str(tmp_path)), [None, {"loss": torch.tensor(1.0)}])
    assert not list(tmp_path.iterdir())
    with pytest.raises(ValueError, match="callbacks.test_artifacts.max_mb"):
        PredictionArtifacts(str(tmp_path), max_mb=0)


@pytest.mark.slow
def test_debug_runs_leave_predictions_plot_and_confusion_matrix(tmp_path):
    data = tmp_path / "data"
    write_ett_csv(data / "ETT-small" / "ETTh1.csv")
    run_dir = tmp_path / "f"
    res = train_run([*FAST, f"paths.data_dir={data}", "data.pred_len=24", "data.batch_size=8"], run_dir)
    z = np.load(run_dir / "test_predictions.npz")
    n = len(z["forecast"])  # the 2 test batches of debug=fast
    assert z["forecast"].shape == z["target"].shape == (n, 24, 7) and z["history"].shape == (n, 96) and n > 2
    mse = float(((z["forecast"] - z["target"]) ** 2).mean())
    assert mse == pytest.approx(res["metrics"]["test/mse"], rel=1e-5)
    assert (run_dir / "test_forecasts.png").is_file()

    write_npz(data / "medmnist3d" / "fracturemnist3d.npz", n=(9, 6, 6), n_classes=3)
    run_dir = tmp_path / "c"
    train_run([*QUICK, "model=resnet3d", "data=medmnist3d", "data.name=fracturemnist3d", "data.batch_size=3",
               f"paths.data_dir={data}", "model.net.depth=10", "model.net.widen_factor=0.25"], run_dir)
    cm = pd.read_csv(run_dir / "confusion_matrix.csv", index_col=0).to_numpy()
    assert cm.shape == (3, 3) and cm.sum() == 6  # the 6 test volumes (2 batches of 3)
    assert (run_dir / "confusion_matrix.png").is_file() and Path(run_dir / "test_predictions.npz").is_file()
