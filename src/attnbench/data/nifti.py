"""3D classification from a folder of NIfTI volumes (``.nii`` / ``.nii.gz``) and a CSV of labels.

The CSV has one row per volume: an image column (path relative to ``data_dir``, or absolute), a label column
(integers ``0..n_classes-1``, or class names, mapped to indices in sorted order and kept in ``classes``) and,
optionally, a split column whose values are ``train``/``val``/``test``. Without a split column the rows are
split per class with a seeded shuffle (``stratified_split``).

A volume goes through MONAI dictionary transforms: load (nibabel) -> channel first -> RAS orientation ->
[resample to ``pixdim``] -> intensity (``minmax`` to [0, 1], ``zscore``, or ``none``; ``clip`` windows the
raw values first, e.g. CT Hounsfield units) -> centre pad/crop to ``spatial_size`` -> [random flips, train
only] -> a plain float32 tensor. A batch is ``(x (B, 1, D, H, W) float32, y (B,) int64)`` with (D, H, W)
the RAS voxel axes, as for MedMNIST3D.

``size`` is the model's view of ``spatial_size`` (the model config reads ``img_size: ${data.size}``): the
yaml defines ``size: ${data.spatial_size}`` and the constructor only checks that the two agree.

Every listed file is checked in ``setup`` (exists, NIfTI header readable, one 3D volume), so a missing or
corrupt file is named before training starts.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import nibabel as nib
import numpy as np
import pandas as pd
import torch
from monai.data import CacheDataset
from monai.data import Dataset as MonaiDataset
from monai.data.utils import worker_init_fn
from monai.transforms import (
    Compose,
    EnsureChannelFirstd,
    EnsureTyped,
    LoadImaged,
    NormalizeIntensityd,
    Orientationd,
    RandFlipd,
    ResizeWithPadOrCropd,
    ScaleIntensityd,
    ScaleIntensityRanged,
    Spacingd,
)
from torch import Tensor
from torch.utils.data import Dataset

from attnbench.data.base import SplitDataModule
from attnbench.data.download import DataError
from attnbench.signatures import check_literals

log = logging.getLogger(__name__)

Intensity = Literal["minmax", "zscore", "none"]
Augment = Literal["flip", "none"]
SPLITS = ("train", "val", "test")
_MAX_LISTED = 5  # problems named in one error message


def _listing(items: Sequence[str]) -> str:
    more = f" (and {len(items) - _MAX_LISTED} more)" if len(items) > _MAX_LISTED else ""
    return "; ".join(items[:_MAX_LISTED]) + more


def _as_int(s: str) -> int | None:
    """``"3"`` or ``"3.0"`` -> 3; anything else -> None."""
    try:
        return int(s)
    except ValueError:
        try:
            f = float(s)
        except ValueError:
            return None
        return int(f) if f.is_integer() else None


def stratified_split(labels: np.ndarray, val_fraction: float, test_fraction: float, seed: int
                     ) -> dict[str, np.ndarray]:
    """Row indices of train/val/test, split per class after a seeded shuffle.

    test and val get ``round(fraction * N)`` rows each (at least one), shared among the classes by their size
    (largest remainders, ties at random); every class keeps at least one row for training.
    Raises DataError when there are too few rows for a non-empty val and test split.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    members = [rng.permutation(np.flatnonzero(labels == c)) for c in classes]
    sizes = np.array([len(m) for m in members])
    room = sizes - 1  # every class keeps one row for training
    take: dict[str, np.ndarray] = {}
    for split, frac in (("test", test_fraction), ("val", val_fraction)):
        want = min(max(1, int(np.floor(frac * len(labels) + 0.5))), int(room.sum()))
        if want < 1:
            raise DataError(f"{len(labels)} rows in {len(classes)} classes are too few for train/val/test splits "
                            "that keep every class in train: add volumes, or give a split column (data.split_column)")
        quota = frac * sizes
        n = np.minimum(np.floor(quota).astype(int), room)
        order = np.lexsort((rng.random(len(classes)), -(quota - np.floor(quota))))  # largest remainder first
        while n.sum() < want:
            for i in order:
                if n.sum() < want and n[i] < room[i]:
                    n[i] += 1
        take[split], room = n, room - n
    out: dict[str, list[int]] = {s: [] for s in SPLITS}
    for m, n_test, n_val in zip(members, take["test"], take["val"], strict=True):
        out["test"] += m[:n_test].tolist()
        out["val"] += m[n_test:n_test + n_val].tolist()
        out["train"] += m[n_test + n_val:].tolist()
    return {s: np.sort(np.array(v, dtype=np.int64)) for s, v in out.items()}


class _LoadVolumed(LoadImaged):
    """LoadImaged whose failures name the file (a DataError inside MONAI's RuntimeError chain)."""

    def __call__(self, data, reader=None):
        try:
            return super().__call__(data, reader)
        except Exception as e:
            raise DataError(f"{data.get('image')}: cannot be read as a NIfTI volume ({type(e).__name__}: {e}); "
                            "replace or re-export the file, or remove its row from the CSV") from e


def _data_error(e: BaseException) -> DataError | None:
    """The DataError in an exception's cause chain (MONAI wraps transform errors in RuntimeError)."""
    while e is not None:
        if isinstance(e, DataError):
            return e
        e = e.__cause__ or e.__context__
    return None


class _Pairs(Dataset):
    """A MONAI dict dataset -> (image (1, D, H, W) float32, label () int64) pairs."""

    def __init__(self, ds: Dataset) -> None:
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        try:
            d = self.ds[i]
        except Exception as e:
            err = _data_error(e)
            if err is None:
                raise
            raise err from e
        return d["image"], torch.as_tensor(d["label"], dtype=torch.int64)


def nifti_transform(spatial_size: Sequence[int], pixdim: Sequence[float] | None = None,
                    intensity: Intensity = "minmax", clip: Sequence[float] | None = None,
                    augment: Augment = "none", train: bool = False) -> Compose:
    """Dict transforms {"image": path, "label": int} -> {"image": (1, *spatial_size) float32 tensor, ...}."""
    k = ["image"]
    ts: list = [_LoadVolumed(keys=k, reader="NibabelReader", image_only=True), EnsureChannelFirstd(keys=k),
                Orientationd(keys=k, axcodes="RAS", labels=(("L", "R"), ("P", "A"), ("I", "S")))]
    if pixdim is not None:
        ts.append(Spacingd(keys=k, pixdim=tuple(float(p) for p in pixdim), mode="bilinear"))
    if clip is not None:  # window [a_min, a_max]: to [0, 1] (minmax, zscore) or clipped in place (none)
        lo, hi = (float(c) for c in clip)
        b = (lo, hi) if intensity == "none" else (0.0, 1.0)
        ts.append(ScaleIntensityRanged(keys=k, a_min=lo, a_max=hi, b_min=b[0], b_max=b[1], clip=True))
    if intensity == "minmax" and clip is None:
        ts.append(ScaleIntensityd(keys=k, minv=0.0, maxv=1.0))
    elif intensity == "zscore":
        ts.append(NormalizeIntensityd(keys=k, channel_wise=True))
    ts.append(ResizeWithPadOrCropd(keys=k, spatial_size=tuple(int(s) for s in spatial_size)))
    if train and augment == "flip":
        ts += [RandFlipd(keys=k, prob=0.5, spatial_axis=a) for a in range(3)]
    ts.append(EnsureTyped(keys=k, dtype=torch.float32, track_meta=False))
    return Compose(ts)


class NiftiDataModule(SplitDataModule):
    """NIfTI volumes listed in a CSV, for 3D classification (see the module doc).

    After ``setup``: ``splits`` (CSV image entries per split), ``class_counts`` (train rows per class),
    ``classes`` (class name of each index) and ``datasets``; ``n_classes`` and ``task`` from the start.
    """

    def __init__(
        self, data_dir: str, csv: str, n_classes: int, spatial_size: Sequence[int],
        image_column: str = "image", label_column: str = "label", split_column: str | None = None,
        pixdim: Sequence[float] | None = None, intensity: Intensity = "minmax", clip: Sequence[float] | None = None,
        val_fraction: float = 0.1, test_fraction: float = 0.2, seed: int = 0, batch_size: int = 8,
        eval_batch_size: int | None = None, num_workers: int = 0, augment: Augment = "none", cache: bool = True,
        size: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        spatial = [int(s) for s in spatial_size]
        if len(spatial) != 3 or min(spatial) < 1:
            raise ValueError(f"spatial_size={spatial} must be three sides >= 1, e.g. [32, 32, 32]")
        if size is not None and [int(s) for s in size] != spatial:
            raise ValueError(f"size={list(size)} must equal spatial_size={spatial} (size is derived: set spatial_size)")
        check_literals(NiftiDataModule.__init__, intensity=intensity, augment=augment)
        if clip is not None and (len(clip) != 2 or not clip[0] < clip[1]):
            raise ValueError(f"clip={list(clip)} must be [a_min, a_max] with a_min < a_max")
        if n_classes < 2:
            raise ValueError(f"n_classes={n_classes} must be >= 2")
        self.data_dir = Path(data_dir).expanduser()
        self.csv_path = Path(csv).expanduser()
        if not self.csv_path.is_absolute():
            self.csv_path = self.data_dir / self.csv_path
        self.image_column, self.label_column, self.split_column = image_column, label_column, split_column
        self.spatial_size = self.size = spatial
        self.pixdim = None if pixdim is None else [float(p) for p in pixdim]
        self.intensity, self.clip, self.augment, self.cache = intensity, clip, augment, cache
        self.val_fraction, self.test_fraction, self.seed = val_fraction, test_fraction, seed
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or batch_size
        self.num_workers = num_workers
        self.n_classes = n_classes
        self.task = "binary-class" if n_classes == 2 else "multi-class"
        self.classes: list[str] | None = None
        self.splits: dict[str, list[str]] = {}
        self.worker_init_fn = worker_init_fn  # re-seeds MONAI's random flips in each loader worker
        self.class_counts: list[int] | None = None

    # ------------------------------------------------------------------ reading and checking the CSV
    def _where(self, row: int, df: pd.DataFrame) -> str:
        """``labels.csv line 7 (image=a.nii.gz)`` for data-frame row ``row`` (line 1 is the header)."""
        return f"{self.csv_path.name} line {row + 2} ({self.image_column}={df[self.image_column].iloc[row]!r})"

    def read_table(self) -> pd.DataFrame:
        """The CSV with its columns checked; DataError naming what is missing."""
        if not self.csv_path.is_file():
            raise DataError(f"label CSV {self.csv_path} not found: put a CSV with columns {self.image_column!r} and "
                            f"{self.label_column!r} there, or point data.csv / data.data_dir at it")
        try:
            df = pd.read_csv(self.csv_path, dtype=str, keep_default_na=False)
        except Exception as e:
            raise DataError(f"label CSV {self.csv_path} cannot be read ({e}); is it a comma-separated file "
                            "with a header row?") from e
        need = [c for c in (self.image_column, self.label_column, self.split_column) if c is not None]
        lacking = [c for c in need if c not in df.columns]
        if lacking:
            raise DataError(f"label CSV {self.csv_path} has no column(s) {lacking} (it has {list(df.columns)}): "
                            "rename them, or set data.image_column / data.label_column / data.split_column")
        if df.empty:
            raise DataError(f"label CSV {self.csv_path} has no rows")
        df = df.apply(lambda col: col.str.strip())
        empty = [self._where(i, df) for i in np.flatnonzero(df[self.image_column] == "")]
        if empty:
            raise DataError(f"{self.csv_path}: empty {self.image_column!r} in {_listing(empty)}")
        dup = df[self.image_column][df[self.image_column].duplicated()].unique().tolist()
        if dup:
            raise DataError(f"{self.csv_path}: volumes listed more than once (they could land in two splits): "
                            f"{_listing(dup)}; keep one row per volume")
        return df

    def parse_labels(self, df: pd.DataFrame) -> np.ndarray:
        """(N,) int64 class indices; sets ``classes``. Integers must lie in [0, n_classes); names are sorted."""
        raw = df[self.label_column].tolist()
        empty = [self._where(i, df) for i, s in enumerate(raw) if s == ""]
        if empty:
            raise DataError(f"{self.csv_path}: empty {self.label_column!r} in {_listing(empty)}")
        ints = [_as_int(s) for s in raw]
        n_int = sum(v is not None for v in ints)
        if 0 < n_int < len(ints):
            bad = [f"{self._where(i, df)}: {s!r}" for i, (s, v) in enumerate(zip(raw, ints, strict=True)) if v is None]
            raise DataError(f"{self.csv_path}: {self.label_column!r} mixes integer labels and names; not integers: "
                            f"{_listing(bad)}")
        if n_int:
            bad = [f"{self._where(i, df)}: {v}" for i, v in enumerate(ints) if not 0 <= v < self.n_classes]
            if bad:
                raise DataError(f"{self.csv_path}: labels outside [0, data.n_classes={self.n_classes}) in "
                                f"{_listing(bad)}; fix the rows or set data.n_classes")
            self.classes = [str(c) for c in range(self.n_classes)]
            return np.array(ints, dtype=np.int64)
        names = sorted(set(raw))
        if len(names) != self.n_classes:
            raise DataError(f"{self.csv_path}: {len(names)} class names {names} in {self.label_column!r} but "
                            f"data.n_classes={self.n_classes}; set data.n_classes={len(names)}")
        self.classes = names
        index = {c: i for i, c in enumerate(names)}
        return np.array([index[s] for s in raw], dtype=np.int64)

    def split_rows(self, df: pd.DataFrame, labels: np.ndarray) -> dict[str, np.ndarray]:
        """Row indices per split: from the split column, else ``stratified_split``."""
        if self.split_column is None:
            return stratified_split(labels, self.val_fraction, self.test_fraction, self.seed)
        values = df[self.split_column].str.lower()
        bad = [f"{self._where(i, df)}: {df[self.split_column].iloc[i]!r}"
               for i in np.flatnonzero(~values.isin(SPLITS))]
        if bad:
            raise DataError(f"{self.csv_path}: column {self.split_column!r} must hold train, val or test; "
                            f"bad rows: {_listing(bad)}")
        out = {s: np.flatnonzero(values == s) for s in SPLITS}
        empty = [s for s in SPLITS if not len(out[s])]
        if empty:
            raise DataError(f"{self.csv_path}: no rows with {self.split_column}={'/'.join(empty)}; every split "
                            "needs at least one volume (or set data.split_column=null for a stratified split)")
        return out

    def resolve(self, entry: str) -> Path:
        p = Path(entry).expanduser()
        return p if p.is_absolute() else self.data_dir / p

    def check_files(self, paths: list[Path]) -> None:
        """Every path exists and has a readable NIfTI header of one 3D volume; else DataError naming them."""
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise DataError(f"{len(missing)} volume(s) listed in {self.csv_path} not found: {_listing(missing)}; "
                            "copy them there, fix the paths (relative to data.data_dir) or remove the rows")
        bad = []
        for p in paths:
            try:
                shape = tuple(nib.load(p).shape)
            except Exception as e:
                bad.append(f"{p} ({type(e).__name__}: {e})")
                continue
            if len(shape) < 3 or int(np.prod(shape[3:])) != 1:
                bad.append(f"{p} (shape {shape}, expected one 3D volume)")
        if bad:
            raise DataError(f"{len(bad)} volume(s) listed in {self.csv_path} are not readable NIfTI volumes: "
                            f"{_listing(bad)}; replace or re-export them, or remove their rows")

    # ------------------------------------------------------------------ Lightning hooks
    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        df = self.read_table()
        labels = self.parse_labels(df)
        paths = [self.resolve(s) for s in df[self.image_column]]
        self.check_files(paths)
        rows = self.split_rows(df, labels)
        self.splits = {s: df[self.image_column].iloc[r].tolist() for s, r in rows.items()}
        for s, r in rows.items():
            tf = nifti_transform(self.spatial_size, self.pixdim, self.intensity, self.clip, self.augment,
                                 train=s == "train")
            if s == "train":
                tf.set_random_state(seed=self.seed)
            items = [{"image": str(paths[i]), "label": int(labels[i])} for i in r]
            try:
                ds = (CacheDataset(items, tf, cache_rate=1.0, progress=False) if self.cache
                      else MonaiDataset(items, tf))
            except Exception as e:  # a volume whose header reads but whose data does not
                err = _data_error(e)
                if err is None:
                    raise
                raise err from e
            self.datasets[s] = _Pairs(ds)
        self.class_counts = np.bincount(labels[rows["train"]], minlength=self.n_classes).tolist()
        absent = [self.classes[c] for c, n in enumerate(self.class_counts) if n == 0]
        if absent:
            log.warning("classes %s have no training volumes", absent)
        log.info("nifti: %s volumes (train/val/test), train class counts %s",
                 [len(rows[s]) for s in SPLITS], self.class_counts)

