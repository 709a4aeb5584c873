"""MedMNIST3D data, the 3D classifiers and the classification module: synthetic files in the official
``.npz`` layout, the real 64^3 AdrenalMNIST3D file (``data`` marker), and ``debug=fast`` runs of HOT, ViT
and ResNet through the CLI (``slow``)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from attnbench.config import ConfigError, validate
from attnbench.data.catalog import MEDMNIST3D, medmnist_files
from attnbench.data.download import DataError
from attnbench.data.medmnist import MedMNIST3DDataModule, volume_transform
from attnbench.lit.classification import ClassificationModule, inverse_frequency_weights
from attnbench.models.classifier3d import VolumeClassifier, resnet3d
from tests.conftest import QUICK, SHARED_DATA, train_run

HOT = {"name": "hot", "mode": "product", "pool": "sum", "sum_normalize": False}


def write_npz(path: Path, n=(6, 3, 4), size=28, n_classes=2, seed=0) -> dict:
    """A file in the official layout: {split}_images (N, S, S, S) uint8, {split}_labels (N, 1) uint8."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, k in zip(("train", "val", "test"), n, strict=True):
        labels = (np.arange(k) % n_classes).astype(np.uint8)[:, None]
        imgs = rng.integers(0, 256, size=(k, size, size, size), dtype=np.uint8)
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = imgs, labels
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
    return arrays


def dm(tmp_path, **kw) -> MedMNIST3DDataModule:
    args = {"name": "adrenalmnist3d", "data_dir": str(tmp_path), "size": 28, "batch_size": 4, "download": False,
            "verify": False, **kw}
    return MedMNIST3DDataModule(**args)


def test_catalogue_has_the_six_3d_sets_with_both_sizes():
    assert set(MEDMNIST3D) == {"organmnist3d", "nodulemnist3d", "adrenalmnist3d", "fracturemnist3d",
                               "vesselmnist3d", "synapsemnist3d"}
    assert MEDMNIST3D["organmnist3d"].n_classes == 11 and MEDMNIST3D["fracturemnist3d"].n_classes == 3
    files = medmnist_files()
    assert len(files) == 12 and files["adrenalmnist3d_64"].path == "medmnist3d/adrenalmnist3d_64.npz"
    assert files["organmnist3d"].url.startswith("https://zenodo.org/records/10519652/files/organmnist3d.npz")
    assert all(len(s.md5[0]) == 32 for s in files.values())


def test_batches_labels_and_class_counts(tmp_path):
    arrays = write_npz(tmp_path / "medmnist3d" / "adrenalmnist3d.npz")
    d = dm(tmp_path, augment="none")
    d.prepare_data()
    d.setup("fit")
    x, y = next(iter(d.train_dataloader()))
    assert x.shape == (4, 1, 28, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert type(x) is torch.Tensor  # no MONAI MetaTensor in batches
    assert x.min() >= 0.0 and x.max() <= 1.0
    assert d.class_counts == [3, 3] and d.n_classes == 2 and d.task == "binary-class"
    xv, yv = next(iter(d.val_dataloader()))
    torch.testing.assert_close(xv[0, 0], torch.from_numpy(arrays["val_images"][0]).float() / 255)
    assert yv.tolist() == [0, 1, 0]


def test_mul_augmentation_is_the_medmnist_protocol():
    x = torch.ones(1, 4, 4, 4)
    ev = volume_transform("mul", train=False)(x)
    assert torch.equal(ev, torch.full_like(x, 0.5))
    tr = volume_transform("mul", train=True)
    tr.set_random_state(0)
    scales = [float(tr(x).unique()) for _ in range(50)]  # one factor per sample, uniform in [0, 1]
    assert all(0.0 <= s <= 1.0 for s in scales) and np.std(scales) > 0.2
    fl = volume_transform("flip", train=True)
    fl.set_random_state(0)
    ramp = torch.arange(64.0).view(1, 4, 4, 4) / 64
    outs = [fl(ramp) for _ in range(20)]
    assert any(not torch.allclose(o / o.max(), ramp / ramp.max()) for o in outs)  # some flips happened
    with pytest.raises(ValueError, match="augment='rot'"):
        volume_transform("rot", train=True)


def test_missing_corrupt_and_wrong_files_name_the_fix(tmp_path):
    with pytest.raises(DataError, match=r"adrenalmnist3d: .*medmnist3d/adrenalmnist3d.npz not found"):
        dm(tmp_path).prepare_data()
    with pytest.raises(DataError, match=r"prepare_data.py adrenalmnist3d_64"):
        dm(tmp_path, size=64).prepare_data()
    path = tmp_path / "medmnist3d" / "adrenalmnist3d.npz"
    write_npz(path)
    with pytest.raises(DataError, match="md5 .* expected bbd3c5a5576322bc4cdfea780653b1ce"):
        dm(tmp_path, verify=True).prepare_data()
    d = dm(tmp_path, verify=True)
    with pytest.raises(DataError, match=r"train split has images \(6, 28, 28, 28\).*\(1188, 28, 28, 28\)"):
        d.setup("fit")  # the split sizes of the official release are checked too
    path.write_bytes(b"not a zip file")
    with pytest.raises(DataError, match="cannot be read as .npz"):
        dm(tmp_path).setup("fit")
    with pytest.raises(ValueError, match="size 32 not released"):
        dm(tmp_path, size=32)


def test_volume_classifier_and_resnet_shapes_and_sizes():
    torch.manual_seed(0)
    m = VolumeClassifier(28, 11, HOT)
    assert sum(p.numel() for p in m.parameters()) == 1_327_371  # the digest's ~1.33M for the official defaults
    y = m(torch.randn(2, 1, 28, 28, 28))
    assert y.shape == (2, 11) and torch.isfinite(y).all()
    vit = VolumeClassifier([16, 24, 8], 3, {"name": "full"}, patch_size=8, d_model=32, n_heads=2, d_mlp=64,
                           n_layers=1, per_axis_qk=False)
    assert vit.grid == (2, 3, 1) and vit(torch.randn(1, 1, 16, 24, 8)).shape == (1, 3)
    with pytest.raises(ValueError, match="must divide every side"):
        VolumeClassifier(30, 2, HOT)
    with pytest.raises(ValueError, match="input volume"):
        m(torch.randn(1, 1, 32, 32, 32))
    r = resnet3d(10, 2, widen_factor=0.25)
    assert r(torch.randn(2, 1, 28, 28, 28)).shape == (2, 2)
    with pytest.raises(ValueError, match="depth=12"):
        resnet3d(12, 2)


def test_hot3d_equals_full_attention_on_a_one_axis_grid():
    """A 1 x 1 x N token grid: HOT's factors on the two singleton axes are 1, so it is full attention."""
    torch.manual_seed(0)
    kw = {"patch_size": 4, "d_model": 16, "n_heads": 2, "d_mlp": 32, "n_layers": 2, "dropout": 0.0,
          "per_axis_qk": False, "rope": False}
    hot = VolumeClassifier([4, 4, 32], 3, HOT, **kw).eval()
    full = VolumeClassifier([4, 4, 32], 3, {"name": "full"}, **kw).eval()
    full.load_state_dict(hot.state_dict())
    x = torch.randn(2, 1, 4, 4, 32)
    torch.testing.assert_close(hot(x), full(x))


def test_classification_metrics_follow_the_medmnist_evaluator():
    w = inverse_frequency_weights([30, 10, 0])
    torch.testing.assert_close(w, torch.tensor([0.25, 0.75, 0.0]))
    m = ClassificationModule(torch.nn.Identity(), optimizer=torch.optim.AdamW, n_classes=2)
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [0.5, 0.0], [0.0, 3.0]])  # p1 = .12, .73, .38, .95
    y = torch.tensor([0, 1, 1, 1])
    m.val_metrics.update(logits.softmax(-1)[:, 1], y)
    out = m.val_metrics.compute()
    assert math.isclose(out["val/acc"], 0.75) and math.isclose(out["val/auc"], 1.0)
    mc = ClassificationModule(torch.nn.Identity(), optimizer=torch.optim.AdamW, n_classes=3)
    p = torch.eye(3)[[0, 1, 2, 1]] * 0.8 + 0.2 / 3
    mc.test_metrics.update(p, torch.tensor([0, 1, 2, 2]))
    out = mc.test_metrics.compute()
    assert math.isclose(out["test/acc"], 0.75)
    assert 0.5 < float(out["test/auc"]) < 1.0  # macro one-vs-rest: class 2 is ranked imperfectly


def test_configs_compose_and_refuse_mismatches(compose_cfg):
    for model in ("hot3d", "vit3d", "resnet3d"):
        cfg = compose_cfg([f"model={model}", "data=medmnist3d", "data.name=fracturemnist3d"])
        validate(cfg)
        assert cfg.model.n_classes == 3 and cfg.model.net.n_classes == 3
    validate(compose_cfg(["experiment=hot/medmnist3d"]))
    cases = [(["model=hot", "data=medmnist3d"], "cannot train on data"),
             (["model=hot3d"], "cannot train on data"),
             (["model=hot3d", "data=medmnist3d", "data.name=organmnist"], "did you mean 'organmnist3d'"),
             (["model=hot3d", "data=medmnist3d", "data.size=32"], "data.size='32'"),
             (["model=hot3d", "data=medmnist3d", "model.net.patch_size=5"], "patch_size=5 must divide"),
             (["model=resnet3d", "data=medmnist3d", "model.net.depth=12"], "model.net.depth='12'"),
             (["model=vit3d", "data=medmnist3d", "model.net.per_axis_qk=true"], "per_axis_qk=true")]
    for ov, needle in cases:
        with pytest.raises(ConfigError, match=needle):
            validate(compose_cfg(ov))


@pytest.mark.data
def test_real_adrenalmnist3d_64_loads_with_its_official_splits(tmp_path):
    d = MedMNIST3DDataModule("adrenalmnist3d", str(SHARED_DATA), size=64, batch_size=2, eval_batch_size=2,
                             download=False)
    d.prepare_data()  # sha256 of the shared copy
    d.setup("fit")
    assert [len(d.datasets[s]) for s in ("train", "val", "test")] == [1188, 98, 298]
    assert sum(d.class_counts) == 1188 and len(d.class_counts) == 2
    x, y = next(iter(d.val_dataloader()))
    assert x.shape == (2, 1, 64, 64, 64) and x.max() <= 0.5  # eval: x 0.5


@pytest.mark.slow
@pytest.mark.parametrize("model", ["hot3d", "vit3d", "resnet3d"])
def test_debug_fast_end_to_end_3d(tmp_path, model):
    write_npz(tmp_path / "data" / "medmnist3d" / "fracturemnist3d.npz", n=(9, 6, 6), n_classes=3)
    small = (["model.net.d_model=32", "model.net.n_heads=2", "model.net.d_mlp=64", "model.net.n_layers=1"]
             if model != "resnet3d" else ["model.net.depth=10", "model.net.widen_factor=0.25"])
    res = train_run([*QUICK, f"model={model}", "data=medmnist3d", "data.name=fracturemnist3d", "data.batch_size=3",
                     f"paths.data_dir={tmp_path / 'data'}", *small], tmp_path / "run")
    assert res["status"] == "ok", res["error"]
    m = res["metrics"]
    for key in ("test/acc", "test/auc", "val/acc", "val/auc", "train/loss", "val/acc_best"):
        assert math.isfinite(m[key]), key
    assert 0.0 <= m["test/acc"] <= 1.0 and m["n_params"] > 0
