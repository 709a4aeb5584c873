"""Long-term multivariate forecasting data (the Time-Series-Library protocol).

- ETTh1/ETTh2: 12/4/4 months train/val/test; ETTm1/ETTm2 the same in 15-minute steps.
- Everything else: 70/10/20 in time order.
- val/test start ``seq_len`` steps early so their first windows are full.
- StandardScaler fit on the train part only; metrics are computed in this scaled space.
- features: M (all variables in and out), S (target only), MS (all in, target out; target moved last).
- A window: x = [s, s+seq_len), y = [s+seq_len-label_len, s+seq_len+pred_len); count = T - seq_len - pred_len + 1.

``split="official"`` is the HOT code's protocol instead (``src/ts_data.py``): every data set, ETT included,
70/10/20 in time order (train int(0.7 T), val int(0.1 T), test the rest), val/test again ``seq_len`` early,
and one window fewer per split (count = T - seq_len - pred_len: its loader never reads the last window).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from attnbench.data.base import SplitDataModule
from attnbench.data.catalog.timeseries import TimeSeriesSpec, calendar_features, spec
from attnbench.data.download import DataError, fetch, locate
from attnbench.signatures import check_literals

Features = Literal["M", "S", "MS"]
Split = Literal["tslib", "official"]  # data.split: the TSLib borders per data set, or the HOT code's protocol


# ----------------------------------------------------------------------------- pure helpers
def split_borders(split: str, n_rows: int, seq_len: int) -> dict[str, tuple[int, int]]:
    """Row ranges [start, end) of train/val/test, val/test starting seq_len rows early."""
    if split in ("ett_hour", "ett_minute"):
        month = 30 * 24 * (4 if split == "ett_minute" else 1)
        b1 = [0, 12 * month - seq_len, 16 * month - seq_len]
        b2 = [12 * month, 16 * month, 20 * month]
    elif split == "official":  # the HOT code: int(0.7 T) / int(0.1 T) / the rest, for every data set
        n_train, n_val = int(0.7 * n_rows), int(0.1 * n_rows)
        b1 = [0, n_train - seq_len, n_train + n_val - seq_len]
        b2 = [n_train, n_train + n_val, n_rows]
    elif split == "ratio":
        n_train, n_test = int(n_rows * 0.7), int(n_rows * 0.2)
        n_val = n_rows - n_train - n_test
        b1 = [0, n_train - seq_len, n_rows - n_test - seq_len]
        b2 = [n_train, n_train + n_val, n_rows]
    else:
        raise ValueError(f"unknown split rule {split!r}; allowed: ett_hour, ett_minute, ratio, official")
    if b2[-1] > n_rows or min(b1) < 0:
        raise DataError(f"{n_rows} rows are too few for the {split!r} split with seq_len={seq_len}")
    return {"train": (b1[0], b2[0]), "val": (b1[1], b2[1]), "test": (b1[2], b2[2])}


def time_features(dates: pd.DatetimeIndex, freq: str) -> np.ndarray:
    """Calendar features scaled to [-0.5, 0.5] (TSLib ``timeenc=1``), (T, F) float32."""
    f = {
        "second": lambda d: d.second / 59.0 - 0.5,
        "minute": lambda d: d.minute / 59.0 - 0.5,
        "hour": lambda d: d.hour / 23.0 - 0.5,
        "dow": lambda d: d.dayofweek / 6.0 - 0.5,
        "dom": lambda d: (d.day - 1) / 30.0 - 0.5,
        "doy": lambda d: (d.dayofyear - 1) / 365.0 - 0.5,
        "month": lambda d: (d.month - 1) / 11.0 - 0.5,
        "week": lambda d: (d.isocalendar().week.to_numpy(dtype=float) - 1) / 52.0 - 0.5,
    }
    names = calendar_features(freq)  # ValueError naming the frequencies that have features
    return np.stack([np.asarray(f[k](dates), dtype=np.float32) for k in names], axis=1)


class StandardScaler:
    """Per-variable z-scoring fit on the train part (population std, as sklearn's)."""

    def fit(self, x: np.ndarray) -> StandardScaler:
        self.mean = x.mean(axis=0)
        self.std = x.std(axis=0)
        self.std = np.where(self.std == 0, 1.0, self.std)
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        return (x - self.mean) / self.std

    def inverse_transform(self, x: np.ndarray) -> np.ndarray:
        return x * self.std + self.mean


def read_frame(path: Path, s: TimeSeriesSpec) -> pd.DataFrame:
    """The raw table with a ``date`` column first (synthesised as NaT-free zeros when the file has none)."""
    if s.has_date:
        df = pd.read_csv(path)
        if "date" not in df.columns:
            raise DataError(f"{path}: no 'date' column; columns are {list(df.columns)[:5]}...")
        df["date"] = pd.to_datetime(df["date"])
        return df
    df = pd.read_csv(path, header=None)
    df.columns = [str(c) for c in df.columns]
    return df


def check_frame(df: pd.DataFrame, cols: list[str], s: TimeSeriesSpec, path: Path, rows: bool = True) -> None:
    """The table's shape and values, checked whatever ``verify`` says (``verify`` adds the checksum): the data
    set's number of variables (``rows``: and of rows), numeric and finite values (no empty cell), valid dates."""
    if len(cols) != s.n_vars:
        raise DataError(f"{path}: {len(cols)} variables, expected {s.n_vars} for {s.name}; columns: {cols}")
    if rows and len(df) != s.n_rows:
        raise DataError(f"{path}: {len(df)} rows, expected {s.n_rows} for {s.name}")
    bad = [c for c in cols if not pd.api.types.is_numeric_dtype(df[c])]
    if bad:
        c = bad[0]
        row = int(pd.to_numeric(df[c], errors="coerce").isna().to_numpy().argmax())
        raise DataError(f"{path}: column {c!r} is not numeric (row {row + 2} of the file holds {df[c].iloc[row]!r})")
    values = df[cols].to_numpy(dtype=np.float64)
    finite = np.isfinite(values)
    if not finite.all():
        r, c = np.argwhere(~finite)[0]
        raise DataError(f"{path}: {int((~finite).sum())} empty or non-finite values, the first in column "
                        f"{cols[c]!r} at row {r + 2} of the file ({values[r, c]}); fill or drop them first")
    if s.has_date and df["date"].isna().any():
        raise DataError(f"{path}: {int(df['date'].isna().sum())} empty dates (first at row "
                        f"{int(df['date'].isna().to_numpy().argmax()) + 2} of the file)")


class ForecastWindows(Dataset):
    """Sliding windows over one split: (x (seq_len, C), y (label_len+pred_len, C), x_mark, y_mark)."""

    def __init__(self, data: np.ndarray, marks: np.ndarray, seq_len: int, label_len: int, pred_len: int) -> None:
        if len(data) < seq_len + pred_len:
            raise DataError(f"a split of {len(data)} rows holds no window of seq_len+pred_len="
                            f"{seq_len + pred_len}")
        self.data = torch.from_numpy(np.ascontiguousarray(data, dtype=np.float32))
        self.marks = torch.from_numpy(np.ascontiguousarray(marks, dtype=np.float32))
        self.seq_len, self.label_len, self.pred_len = seq_len, label_len, pred_len

    def __len__(self) -> int:
        return len(self.data) - self.seq_len - self.pred_len + 1

    def __getitem__(self, i: int):
        s_end = i + self.seq_len
        r_begin, r_end = s_end - self.label_len, s_end + self.pred_len
        return self.data[i:s_end], self.data[r_begin:r_end], self.marks[i:s_end], self.marks[r_begin:r_end]


# ----------------------------------------------------------------------------- datamodule
class TimeSeriesDataModule(SplitDataModule):
    """One catalogue data set (``name``) under ``data_dir``, windowed for long-term forecasting; ``datasets``
    holds the train/val/test ``ForecastWindows`` after ``setup`` (loaders: ``SplitDataModule``)."""

    def __init__(
        self, name: str, data_dir: str, seq_len: int, label_len: int, pred_len: int, features: Features = "M",
        target: str | None = None, batch_size: int = 32, eval_batch_size: int | None = 256, num_workers: int = 0,
        scale: bool = True, verify: bool = True, download: bool = True, drop_last_train: bool = True,
        split: Split = "tslib",
    ) -> None:
        super().__init__()
        self.spec = spec(name)
        self.name, self.data_dir = name, Path(data_dir)
        self.seq_len, self.label_len, self.pred_len = seq_len, label_len, pred_len
        check_literals(TimeSeriesDataModule.__init__, features=features, split=split)
        if label_len > seq_len:
            raise ValueError(f"label_len={label_len} must be <= seq_len={seq_len}")
        self.features, self.target = features, target or self.spec.target
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or batch_size
        self.num_workers, self.scale, self.verify, self.download = num_workers, scale, verify, download
        self.drop_last_train = drop_last_train
        self.split = split
        self.scaler: StandardScaler | None = None

    @property
    def n_targets(self) -> int:
        """Variables predicted and scored: 1 for S/MS (the target, last column), all for M."""
        return self.spec.n_vars if self.features == "M" else 1

    def prepare_data(self) -> None:
        src = self.spec.source
        if self.download and not (self.data_dir / src.path).is_file():
            fetch(self.name, src, self.data_dir)

    def load_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(values (T, C) with the target last for S/MS, calendar marks (T, F)) before scaling."""
        path = locate(self.name, self.spec.source, self.data_dir, check=self.verify)
        df = read_frame(path, self.spec)
        cols = [c for c in df.columns if c != "date"]
        if self.target not in cols:
            raise DataError(f"{path}: target column {self.target!r} not found; columns: {cols}")
        check_frame(df, cols, self.spec, path, rows=self.verify)
        cols = [c for c in cols if c != self.target] + [self.target]  # target last
        if self.features == "S":
            cols = [self.target]
        values = df[cols].to_numpy(dtype=np.float64)
        if self.spec.has_date:
            marks = time_features(pd.DatetimeIndex(df["date"]), self.spec.freq)
        else:
            n_feat = time_features(pd.date_range("2000", periods=2, freq=self.spec.freq), self.spec.freq).shape[1]
            marks = np.zeros((len(df), n_feat), dtype=np.float32)
        return values, marks

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        values, marks = self.load_arrays()
        official = self.split == "official"
        borders = split_borders("official" if official else self.spec.split, len(values), self.seq_len)
        if self.scale:
            a, b = borders["train"]
            self.scaler = StandardScaler().fit(values[a:b])
            values = self.scaler.transform(values)
        cut = 1 if official else 0  # the HOT loader's last window is never read: windowing stops a row early
        for part, (a, b) in borders.items():
            self.datasets[part] = ForecastWindows(values[a:b - cut], marks[a:b - cut], self.seq_len, self.label_len,
                                              self.pred_len)
