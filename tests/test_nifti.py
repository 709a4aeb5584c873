"""data=nifti: NIfTI volumes + a label CSV; synthetic volumes written with nibabel."""

from __future__ import annotations

import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch

from attnbench.config import ConfigError, validate
from attnbench.data.download import DataError
from attnbench.data.nifti import NiftiDataModule, stratified_split
from tests.conftest import FAST, train_run

SHAPE = (10, 12, 9)


def write_volumes(root: Path, n_per_class: int = 4, n_classes: int = 3, spacing: float = 1.0, seed: int = 0,
                  names: list[str] | None = None) -> pd.DataFrame:
    """``root/vols/case###.nii.gz`` (SHAPE, values >= 1) and ``root/labels.csv``; class k brightens slab k of x."""
    rng = np.random.default_rng(seed)
    (root / "vols").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n_per_class * n_classes):
        k = i % n_classes
        vol = 1.0 + rng.random(SHAPE, dtype=np.float32)  # (X, Y, Z) in [1, 2)
        vol[k * SHAPE[0] // n_classes:(k + 1) * SHAPE[0] // n_classes] += 3.0
        affine = np.diag([spacing, spacing, spacing, 1.0])  # RAS already
        name = f"vols/case{i:03d}.nii.gz"
        nib.save(nib.Nifti1Image(vol, affine), root / name)
        rows.append({"image": name, "label": names[k] if names else k})
    df = pd.DataFrame(rows)
    df.to_csv(root / "labels.csv", index=False)
    return df


def module(root: Path, **kw) -> NiftiDataModule:
    args = {"data_dir": str(root), "csv": "labels.csv", "n_classes": 3, "spatial_size": [8, 8, 8],
            "batch_size": 4, **kw}
    return NiftiDataModule(**args)


def test_batches_are_float_volumes_of_the_target_shape_and_int_labels(tmp_path):
    write_volumes(tmp_path)
    dm = module(tmp_path, spatial_size=[16, 8, 12], augment="flip")
    dm.setup("fit")
    assert dm.task == "multi-class" and dm.n_classes == 3 and dm.classes == ["0", "1", "2"]
    assert sum(dm.class_counts) == len(dm.splits["train"]) and len(dm.class_counts) == 3
    for loader in (dm.train_dataloader(), dm.val_dataloader(), dm.test_dataloader()):
        x, y = next(iter(loader))
        assert type(x) is torch.Tensor and x.dtype == torch.float32 and x.shape[1:] == (1, 16, 8, 12)
        assert type(y) is torch.Tensor and y.dtype == torch.int64 and y.shape == (len(x),)


def test_stratified_split_is_seeded_and_stratified(tmp_path):
    write_volumes(tmp_path, n_per_class=10)  # 30 volumes: test 6, val 3
    a, b, c = module(tmp_path, seed=0), module(tmp_path, seed=0), module(tmp_path, seed=1)
    for dm in (a, b, c):
        dm.setup("fit")
    assert a.splits == b.splits and a.splits != c.splits
    files = [f for s in ("train", "val", "test") for f in a.splits[s]]
    assert sorted(files) == sorted(pd.read_csv(tmp_path / "labels.csv")["image"])  # a partition
    label = dict(pd.read_csv(tmp_path / "labels.csv").values)
    per = {s: np.bincount([label[f] for f in a.splits[s]], minlength=3).tolist() for s in a.splits}
    assert per == {"train": [7, 7, 7], "val": [1, 1, 1], "test": [2, 2, 2]}
    assert a.class_counts == [7, 7, 7]


def test_stratified_split_keeps_every_class_in_train():
    labels = np.repeat([0, 1, 2, 3], [50, 10, 3, 1])
    s = stratified_split(labels, 0.1, 0.2, seed=3)
    assert len(s["test"]) == 13 and len(s["val"]) == 6
    assert np.array_equal(np.sort(np.concatenate(list(s.values()))), np.arange(len(labels)))
    assert set(labels[s["train"]]) == {0, 1, 2, 3}
    assert np.bincount(labels[s["test"]], minlength=4)[:2].tolist() == [10, 2]  # proportional
    with pytest.raises(DataError, match="too few"):
        stratified_split(np.array([0, 1]), 0.1, 0.2, seed=0)


def test_split_column_is_honoured_and_checked(tmp_path):
    df = write_volumes(tmp_path)
    df["fold"] = ["train"] * 8 + ["val"] * 2 + ["test"] * 2
    df.to_csv(tmp_path / "labels.csv", index=False)
    dm = module(tmp_path, split_column="fold")
    dm.setup("fit")
    assert dm.splits == {s: df.image[df.fold == s].tolist() for s in ("train", "val", "test")}
    df.loc[3, "fold"] = "training"
    df.to_csv(tmp_path / "labels.csv", index=False)
    with pytest.raises(DataError, match=r"labels.csv line 5 \(image='vols/case003.nii.gz'\): 'training'"):
        module(tmp_path, split_column="fold").setup("fit")


@pytest.mark.parametrize(("intensity", "clip"), [("minmax", None), ("minmax", [1.5, 3.0]), ("zscore", None)])
def test_intensity(tmp_path, intensity, clip):
    write_volumes(tmp_path)
    pad = intensity == "minmax"  # pad to 12^3 (zeros) for minmax; keep the native shape for zscore
    dm = module(tmp_path, spatial_size=[12, 12, 12] if pad else list(SHAPE), intensity=intensity, clip=clip,
                eval_batch_size=12)
    dm.setup("fit")
    x, _ = next(iter(dm.test_dataloader()))  # (B, 1, S, S, S)
    flat = x.flatten(1)
    if intensity == "minmax":
        assert torch.all(flat.amin(1) == 0) and torch.allclose(flat.amax(1), torch.ones(len(x)))
    else:
        assert torch.allclose(flat.mean(1), torch.zeros(len(x)), atol=1e-5)
        assert torch.allclose(flat.std(1), torch.ones(len(x)), atol=1e-2)


def test_pixdim_resamples(tmp_path):
    write_volumes(tmp_path)
    dm = module(tmp_path, spatial_size=[12, 12, 12], pixdim=[2.0, 2.0, 2.0], intensity="none")
    dm.setup("fit")
    x, _ = next(iter(dm.test_dataloader()))
    inside = (x[0, 0] > 0).nonzero()  # the resampled volume (values >= 1) inside the zero padding
    extent = (inside.amax(0) - inside.amin(0) + 1).tolist()
    assert all(abs(e - n / 2) <= 1 for e, n in zip(extent, SHAPE, strict=True)), extent  # 1 mm voxels at 2 mm


def test_class_names_are_mapped_in_sorted_order(tmp_path):
    write_volumes(tmp_path, n_classes=2, names=["tumour", "normal"])
    dm = module(tmp_path, n_classes=2)
    dm.setup("fit")
    assert dm.classes == ["normal", "tumour"] and dm.task == "binary-class"
    label = dict(pd.read_csv(tmp_path / "labels.csv").values)
    y = torch.cat([b[1] for b in dm.test_dataloader()]).tolist()
    assert y == [dm.classes.index(label[f]) for f in dm.splits["test"]]
    with pytest.raises(DataError, match=r"2 class names \['normal', 'tumour'\].*data.n_classes=3"):
        module(tmp_path, n_classes=3).setup("fit")


def test_missing_csv_and_columns(tmp_path):
    with pytest.raises(DataError, match=r"label CSV .*labels.csv not found"):
        module(tmp_path).setup("fit")
    write_volumes(tmp_path)
    with pytest.raises(DataError, match=r"no column\(s\) \['diagnosis'\].*data.label_column"):
        module(tmp_path, label_column="diagnosis").setup("fit")


def test_missing_volume_is_named(tmp_path):
    write_volumes(tmp_path)
    (tmp_path / "vols" / "case004.nii.gz").unlink()
    with pytest.raises(DataError, match=r"not found: .*vols/case004.nii.gz"):
        module(tmp_path).setup("fit")


def test_corrupt_volume_is_named(tmp_path):
    write_volumes(tmp_path)
    (tmp_path / "vols" / "case005.nii.gz").write_bytes(b"this is not a nifti file" * 10)
    with pytest.raises(DataError, match=r"not readable NIfTI volumes: .*vols/case005.nii.gz"):
        module(tmp_path).setup("fit")


@pytest.mark.parametrize("cache", [True, False])
def test_truncated_volume_is_named_when_loaded(tmp_path, cache):
    df = write_volumes(tmp_path)
    raw = nib.load(tmp_path / df.image[2])
    nib.save(raw, tmp_path / "vols" / "cut.nii")
    (tmp_path / "vols" / "cut.nii").write_bytes((tmp_path / "vols" / "cut.nii").read_bytes()[:600])  # header ok
    df.loc[2, "image"] = "vols/cut.nii"
    df.to_csv(tmp_path / "labels.csv", index=False)
    with pytest.raises(DataError, match=r"vols/cut.nii: cannot be read as a NIfTI volume"):
        dm = module(tmp_path, cache=cache, eval_batch_size=12)
        dm.setup("fit")
        for split in ("train", "val", "test"):
            list(dm._loader(split))


def test_label_out_of_range_names_the_row(tmp_path):
    df = write_volumes(tmp_path)
    df.loc[6, "label"] = 3
    df.to_csv(tmp_path / "labels.csv", index=False)
    with pytest.raises(DataError, match=r"outside \[0, data.n_classes=3\) in labels.csv line 8 "
                                        r"\(image='vols/case006.nii.gz'\): 3"):
        module(tmp_path).setup("fit")


def test_config_composes_and_refuses_bad_values(compose_cfg):
    cfg = compose_cfg(["model=hot3d", "data=nifti", "data.n_classes=2", "data.spatial_size=[16,16,24]"])
    validate(cfg)
    assert list(cfg.model.net.img_size) == [16, 16, 24] and cfg.model.net.n_classes == 2
    cases = [([], "data.n_classes is required"),
             (["data.n_classes=2", "data.intensity=zcore"], "did you mean 'zscore'"),
             (["data.n_classes=2", "data.size=[8,8,8]"], "data.size=.*must equal data.spatial_size"),
             (["data.n_classes=2", "data.clip=[400,-1000]"], "data.clip"),
             (["data.n_classes=2", "data.val_fraction=0.5", "data.test_fraction=0.5"], "must be < 1"),
             (["data.n_classes=2", "model.net.patch_size=5"], "patch_size=5 must divide")]
    for ov, needle in cases:
        with pytest.raises(ConfigError, match=needle):
            validate(compose_cfg(["model=hot3d", "data=nifti", *ov]))


@pytest.mark.slow
def test_debug_fast_end_to_end_nifti(tmp_path):
    write_volumes(tmp_path / "data" / "nifti", n_per_class=6)  # 18 volumes, 3 classes
    quick = [a for a in FAST if not a.startswith(("data.", "model."))]
    small = ["model.net.patch_size=4", "model.net.d_model=32", "model.net.n_heads=2", "model.net.d_mlp=64",
             "model.net.n_layers=1"]
    res = train_run([*quick, "model=hot3d", "data=nifti", "data.n_classes=3", "data.spatial_size=[16,16,16]",
                     "data.batch_size=4", f"paths.data_dir={tmp_path / 'data'}", *small], tmp_path / "run")
    assert res["status"] == "ok", res["error"]
    m = res["metrics"]
    for key in ("test/acc", "test/auc", "val/acc", "train/loss"):
        assert math.isfinite(m[key]), key
    assert 0.0 <= m["test/acc"] <= 1.0 and res["config"]["data"]["size"] == [16, 16, 16]
