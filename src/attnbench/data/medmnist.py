"""MedMNIST v2 3D classification data (Yang et al., Scientific Data 2023): the official ``.npz`` files.

Each file holds the official splits: ``train/val/test_images`` (N, S, S, S) uint8 and ``*_labels`` (N, 1).
A sample is a (1, S, S, S) float volume in [0, 1] and its class index. Augmentation ``mul`` is the MedMNIST
3D benchmark's and the HOT code's: voxels times U(0, 1) per training sample and times 0.5 at evaluation
(MONAI ``RandScaleIntensity`` / ``ScaleIntensity`` with factor f scale by 1 + f). ``flip`` adds random flips
along each axis for training; ``none`` leaves the volumes in [0, 1].
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from monai.transforms import Compose, RandFlip, Randomizable, RandScaleIntensity, ScaleIntensity, ToTensor
from torch import Tensor
from torch.utils.data import Dataset

from attnbench.checkpoint import numpy_state, set_numpy_state
from attnbench.data.base import SplitDataModule
from attnbench.data.catalog.medmnist import VolumeSpec, volume_spec
from attnbench.data.download import DataError, fetch, locate
from attnbench.signatures import check_literals

Augment = Literal["mul", "flip", "none"]
SPLITS = ("train", "val", "test")


def volume_transform(augment: Augment, train: bool) -> Compose:
    """MONAI transforms of a (1, S, S, S) float volume in [0, 1] (see the module doc)."""
    check_literals(volume_transform, augment=augment)
    ts: list = []
    if train and augment == "flip":
        ts += [RandFlip(prob=0.5, spatial_axis=a) for a in range(3)]
    if augment in ("mul", "flip"):
        ts.append(RandScaleIntensity(factors=(-1.0, 0.0), prob=1.0) if train  # x * U(0, 1)
                  else ScaleIntensity(minv=None, maxv=None, factor=-0.5))  # x * 0.5
    ts.append(ToTensor(track_meta=False))
    return Compose(ts)


class VolumeDataset(Dataset):
    """(N, *spatial) uint8 or float volumes and (N,) labels -> ((1, *spatial) float in [0, 1], label)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform=None) -> None:
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} volumes but {len(labels)} labels")
        self.images, self.labels, self.transform = images, labels.reshape(-1).astype(np.int64), transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        img = self.images[i]
        x = torch.from_numpy(np.asarray(img, dtype=np.float32))[None]  # (1, S, S, S)
        if img.dtype == np.uint8:
            x = x / 255.0
        if self.transform is not None:
            x = self.transform(x)
        return x, torch.tensor(self.labels[i])


def load_npz(path: Path, spec: VolumeSpec, size: int, check: bool = True) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The three splits of an official file. Array names, volume shape and label range are always checked; with
    ``check`` (``verify``) the official split sizes too."""
    try:
        with np.load(path) as z:
            keys = set(z.files)
            need = {f"{s}_{k}" for s in SPLITS for k in ("images", "labels")}
            if not need <= keys:
                raise DataError(f"{spec.name}: {path} lacks {sorted(need - keys)} (has {sorted(keys)}); "
                                "is it an official MedMNIST .npz?")
            out = {s: (z[f"{s}_images"], z[f"{s}_labels"]) for s in SPLITS}
    except (OSError, ValueError) as e:
        raise DataError(f"{spec.name}: {path} cannot be read as .npz ({e}); delete it and run "
                        f"python scripts/prepare_data.py {spec.name}{'' if size == 28 else f'_{size}'}") from e
    for s, n in zip(SPLITS, spec.n_samples, strict=True):  # always: per-volume shape, label count and range
        imgs, labels = out[s]
        if imgs.ndim != 4 or imgs.shape[1:] != (size, size, size) or len(labels) != len(imgs):
            raise DataError(f"{spec.name}: {path} {s} split has images {imgs.shape}, labels {labels.shape}; "
                            f"expected (N, {size}, {size}, {size}) volumes and N labels")
        if check and imgs.shape[0] != n:  # with verify: the official split sizes too
            raise DataError(f"{spec.name}: {path} {s} split has images {imgs.shape}, labels {labels.shape}; "
                            f"the official {size}^3 release has ({n}, {size}, {size}, {size})")
        if labels.size and (labels.dtype.kind not in "iu" or labels.reshape(len(labels), -1).shape[1] != 1):
            raise DataError(f"{spec.name}: {path} {s} labels are {labels.dtype} of shape {labels.shape}; expected "
                            "one integer class per volume")
        if labels.size and not 0 <= labels.min() <= labels.max() < spec.n_classes:
            raise DataError(f"{spec.name}: {path} {s} labels span [{labels.min()}, {labels.max()}], outside the "
                            f"{spec.n_classes} classes [0, {spec.n_classes})")
        if imgs.dtype.kind == "f" and not np.isfinite(imgs).all():
            raise DataError(f"{spec.name}: {path} {s} images hold non-finite values")
    return out


class MedMNIST3DDataModule(SplitDataModule):
    """One MedMNIST3D data set at size 28 or 64 with its official splits.

    ``n_classes``, ``task`` and (after ``setup``) ``class_counts`` of the train split are exposed for the
    model and its class-weighted loss.
    """

    def __init__(
        self, name: str, data_dir: str, size: int = 28, batch_size: int = 32, eval_batch_size: int | None = 128,
        num_workers: int = 0, augment: Augment = "mul", download: bool = True, verify: bool = True,
        drop_last_train: bool = False, seed: int = 0, n_classes: int | None = None,
    ) -> None:
        super().__init__()
        self.spec = volume_spec(name)
        self.source = self.spec.source(size)  # raises for an unreleased size
        if n_classes is not None and n_classes != self.spec.n_classes:
            raise ValueError(f"{name} has {self.spec.n_classes} classes, not n_classes={n_classes}")
        self.name, self.data_dir, self.size = name, Path(data_dir), size
        self.key = name if size == 28 else f"{name}_{size}"
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or batch_size
        self.num_workers, self.augment, self.download, self.verify = num_workers, augment, download, verify
        self.drop_last_train, self.seed = drop_last_train, seed
        self.n_classes, self.task = self.spec.n_classes, self.spec.task
        self.class_counts: list[int] | None = None

    def prepare_data(self) -> None:
        if self.download:
            fetch(self.key, self.source, self.data_dir)  # keeps a verified copy, else downloads
        else:
            locate(self.key, self.source, self.data_dir, check=self.verify)

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        path = locate(self.key, self.source, self.data_dir, check=False)  # verified in prepare_data
        splits = load_npz(path, self.spec, self.size, check=self.verify)
        for s, (imgs, labels) in splits.items():
            tf = volume_transform(self.augment, train=s == "train")
            if s == "train":
                tf.set_random_state(seed=self.seed)
            self.datasets[s] = VolumeDataset(imgs, labels, tf)
        self.class_counts = np.bincount(self.datasets["train"].labels, minlength=self.n_classes).tolist()

    def _augment_rngs(self) -> list[np.random.RandomState]:
        tf = self.datasets["train"].transform if "train" in self.datasets else None
        return [t.R for t in getattr(tf, "transforms", ()) if isinstance(t, Randomizable)]

    def state_dict(self) -> dict[str, Any]:
        """The training augmentation's random states (saved in checkpoints, so a resumed run continues them)."""
        return {"augment_rng": [numpy_state(r) for r in self._augment_rngs()]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        rngs, saved = self._augment_rngs(), state.get("augment_rng", [])
        if len(rngs) == len(saved):  # a checkpoint of another augmentation keeps this run's seeded states
            for r, s in zip(rngs, saved, strict=True):
                set_numpy_state(s, r)

