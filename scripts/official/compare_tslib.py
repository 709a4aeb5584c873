"""Our forecasting data protocol (``attnbench.data.timeseries``) beside the official Time-Series-Library datasets.

    git clone https://github.com/thuml/Time-Series-Library /tmp/Time-Series-Library
    pip install scikit-learn        # TSLib's StandardScaler (the one TSLib import that the comparison uses)
    python scripts/official/compare_tslib.py --official /tmp/Time-Series-Library [--data-dir ../shared/data]

Builds TSLib's ``Dataset_ETT_hour`` / ``Dataset_ETT_minute`` / ``Dataset_Custom`` (``data_provider/data_loader.py``,
imported from the checkout; sktime, patoolib and ``datasets`` are stubbed when missing, none of them is used on a
local csv) and our ``TimeSeriesDataModule`` on the same file, for flag train/val/test, features M and S, 96 in /
48 label / 96 out (ILI: 36/18/24), timeenc=1 with our frequency string. Compares the number of windows, and for
the first, middle and last window the scaled x / y (TSLib float64, ours float32: agreement = within one float32
ulp) and the calendar marks. Then the documented differences, printed as such: ``data.split=official`` (the HOT
code's 70/10/20 with one window fewer per split) against TSLib's counts and the README's ETTh1 96->720 example.
Last, a note (not counted): the features TSLib's ``run.py`` default ``--freq h`` gives (its scripts never set
``--freq``) beside ours; ``--tslib-freq h`` hands that frequency to TSLib's datasets, where it counts. Exits
non-zero only on an undocumented difference. Data sets whose file is missing under ``--data-dir`` are skipped.

Measured 2026-12-07 (torch 2.13 CPU, scikit-learn 1.9.1, official commit 4e938a1, ../shared/data): ETTh1, ETTm1,
weather, exchange_rate, national_illness, M and S, train/val/test: every window count equal (ETTh1 8,449 / 2,785 /
2,785), x / y exactly TSLib's float64 rounded to float32 (0 ulp; max |ours - official| 2.4e-7 on values up to
9.5), marks too (1.5e-8); ``data.split=official`` counts as described, ETTh1 96->720 test windows 2,764 against
TSLib's 2,161 as the README says. Not in the README: with TSLib's default ``--freq h`` its ETTm1 / weather marks
hold 4 features where ours hold 5, exchange_rate 4 against 3, national_illness 4 against 2.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import types
from pathlib import Path

import numpy as np
import pandas as pd

from attnbench.data.catalog.timeseries import calendar_features, spec
from attnbench.data.timeseries import TimeSeriesDataModule

OFFICIAL_FILE = "data_provider/data_loader.py"
CLASSES = {"ETTh1": "Dataset_ETT_hour", "ETTm1": "Dataset_ETT_minute", "weather": "Dataset_Custom",
           "exchange_rate": "Dataset_Custom", "national_illness": "Dataset_Custom"}
FLAGS = ("train", "val", "test")
README_EXAMPLE = ("ETTh1", 96, 48, 720, "test", 2764, 2161)  # README: 2,764 test windows against TSLib's 2,161


def _unavailable(*args: object, **kwargs: object) -> None:
    """What a stubbed import answers if it is ever called (it is not, on local csv files)."""
    raise RuntimeError("a stub of a package that is not installed was called (scripts/official/compare_tslib.py)")


STUBS = {"sktime.datasets": {"load_from_tsfile_to_dataframe": _unavailable}, "patoolib": {},
         "datasets": {"load_dataset": _unavailable}}  # TSLib imports used only for M4 / UEA / downloads


def stub_missing() -> list[str]:
    """Stubs (``sys.modules``) for TSLib's imports that are not installed; returns the stubbed names."""
    made = []
    for name, attrs in STUBS.items():
        top = name.split(".")[0]
        if importlib.util.find_spec(top) is not None:
            continue  # installed: the real one is imported
        parent = sys.modules[top] = types.ModuleType(top)
        mod = sys.modules[name] = parent if name == top else types.ModuleType(name)
        if mod is not parent:
            setattr(parent, name.split(".", 1)[1], mod)
        mod.__dict__.update(attrs)
        made.append(name)
    return made


def load_official(checkout: Path) -> types.ModuleType:
    """TSLib's ``data_provider.data_loader`` from the checkout (put first on ``sys.path``)."""
    if not (checkout / OFFICIAL_FILE).is_file():
        raise SystemExit(f"error: {checkout / OFFICIAL_FILE} not found; --official must be a checkout of "
                         f"github.com/thuml/Time-Series-Library")
    if importlib.util.find_spec("sklearn") is None:
        raise SystemExit("error: TSLib's datasets scale with sklearn's StandardScaler: pip install scikit-learn")
    made = stub_missing()
    if made:
        print(f"stubbed (not installed, unused on local files): {', '.join(made)}")
    sys.path.insert(0, str(checkout))
    from data_provider import data_loader  # the official module

    return data_loader


def lengths(name: str, pred_len: int | None = None) -> tuple[int, int, int]:
    """The protocol's seq_len, label_len, first pred_len (ILI: 36/18/24)."""
    d = spec(name).defaults
    return d["seq_len"], d["label_len"], pred_len or d["pred_lens"][0]


def official_dataset(mod: types.ModuleType, data_dir: Path, name: str, flag: str, features: str,
                     size: tuple[int, int, int], freq: str) -> object:
    """TSLib's dataset of ``name`` as its data_factory builds it (timeenc=1, scale, no augmentation)."""
    src = Path(spec(name).source.path)
    cls = getattr(mod, CLASSES[name])
    return cls(types.SimpleNamespace(augmentation_ratio=0), str(data_dir / src.parent), flag=flag, size=list(size),
               features=features, data_path=src.name, target=spec(name).target, scale=True, timeenc=1, freq=freq)


def ours(data_dir: Path, name: str, features: str, size: tuple[int, int, int], split: str = "tslib") -> dict:
    """Our train/val/test windows (``ForecastWindows``), checksums not enforced (synthetic files compare too)."""
    dm = TimeSeriesDataModule(name, str(data_dir), *size, features=features, verify=False, download=False,
                              split=split)
    dm.setup()
    return dm.datasets


def ulps(a: np.ndarray, b: np.ndarray) -> float:
    """Largest distance of float32 ``a`` from float64 ``b`` in float32 ulps of ``b``."""
    b32 = b.astype(np.float32)
    return float((np.abs(a.astype(np.float64) - b32) / np.spacing(np.abs(b32))).max())


def compare_case(mod: types.ModuleType, data_dir: Path, name: str, features: str, theirs_freq: str,
                 ours_sets: dict) -> int:
    """Counts, x / y and marks of one data set and features over the three flags; returns undocumented diffs."""
    bad = 0
    size = lengths(name)
    for flag in FLAGS:
        off, our = official_dataset(mod, data_dir, name, flag, features, size, theirs_freq), ours_sets[flag]
        n_off, n_our = len(off), len(our)
        n = min(n_off, n_our)
        idx = sorted({0, n // 2, n - 1})
        dxy = uxy = dmark = umark = 0.0
        shapes = ["", ""]  # x/y, marks: a shape mismatch, if any
        for i in idx:
            a = [t.numpy() for t in our[i]]
            b = [np.asarray(t, dtype=np.float64) for t in off[i]]
            for k, (p, q) in enumerate(zip(a, b, strict=True)):
                if p.shape != q.shape:
                    shapes[k >= 2] = f"shapes differ: ours {p.shape}, official {q.shape}"
                    continue
                d, u = float(np.abs(p.astype(np.float64) - q).max()), ulps(p, q)
                if k < 2:
                    dxy, uxy = max(dxy, d), max(uxy, u)
                else:
                    dmark, umark = max(dmark, d), max(umark, u)
        scale = max(float(np.abs(np.asarray(off[i][0])).max()) for i in idx)
        counts = f"windows ours {n_our}, official {n_off}"
        ok = n_our == n_off and uxy <= 1 and not shapes[0]
        print(f"{name} {features} {flag} x/y (windows {', '.join(map(str, idx))}): max |ours - official| "
              f"{f'nan ({shapes[0]}' if shapes[0] else f'{dxy:.1e} ({uxy:.0f} float32 ulp'}, values up to "
              f"{scale:.1f}; {counts}){'' if ok else '  UNDOCUMENTED'}")
        bad += not ok
        if features == "M":  # the marks do not depend on the features
            ok_m = umark <= 1 and not shapes[1]
            print(f"{name} {flag} marks (timeenc=1, freq {theirs_freq!r}): max |ours - official| "
                  f"{f'nan ({shapes[1]})' if shapes[1] else f'{dmark:.1e} ({umark:.0f} float32 ulp)'}"
                  f"{'' if ok_m else '  UNDOCUMENTED'}")
            bad += not ok_m
    return bad


def hot_windows(n_rows: int, seq: int, pred: int) -> dict[str, int]:
    """Window counts of the HOT split as the README and ``timeseries.py`` describe it: train int(0.7 T) rows, val
    int(0.1 T), test the rest, val/test starting seq_len early, one window fewer than rows - seq - pred + 1."""
    n_train, n_val = int(0.7 * n_rows), int(0.1 * n_rows)
    rows = {"train": n_train, "val": n_val + seq, "test": n_rows - n_train - n_val + seq}
    return {f: r - seq - pred for f, r in rows.items()}


def documented_split(mod: types.ModuleType, data_dir: Path, names: list[str]) -> int:
    """``data.split=official`` against TSLib's counts (documented) and against its description, and the README's
    ETTh1 example; returns the disagreements with the text."""
    bad = 0
    print("documented: data.split=official is the HOT code's split (README: '70/10/20 for every data set, ETT "
          "included, and one window fewer per split'), not TSLib's:")
    for name in names:
        size = lengths(name)
        hot = ours(data_dir, name, "S", size, split="official")
        tslib = {f: official_dataset(mod, data_dir, name, f, "S", size, spec(name).freq) for f in FLAGS}
        n_rows = len(pd.read_csv(data_dir / spec(name).source.path, usecols=[0]))
        want = hot_windows(n_rows, size[0], size[2])
        ok = all(len(hot[f]) == want[f] for f in FLAGS)
        counts = ", ".join(f"{f} {len(hot[f])} (TSLib {len(tslib[f])})" for f in FLAGS)
        print(f"  {name} {size[0]}->{size[2]}: {counts}; "
              f"{'as described' if ok else f'DESCRIPTION DISAGREES, expected {want}'}")
        bad += not ok
    name, seq, label, pred, flag, want_hot, want_tslib = README_EXAMPLE
    if name in names:
        hot = len(ours(data_dir, name, "S", (seq, label, pred), split="official")[flag])
        tslib = len(official_dataset(mod, data_dir, name, flag, "S", (seq, label, pred), spec(name).freq))
        ok = (hot, tslib) == (want_hot, want_tslib)
        print(f"  README example {name} {seq}->{pred} {flag} windows: data.split=official {hot}, TSLib {tslib} "
              f"(README: {want_hot:,} against {want_tslib:,}){'' if ok else '  README DISAGREES'}")
        bad += not ok
    return bad


def freq_note(mod: types.ModuleType, names: list[str]) -> None:
    """What TSLib's run.py default ``--freq h`` gives beside our per-data-set frequency (not counted)."""
    from utils.timefeatures import time_features_from_frequency_str  # TSLib's, from the checkout

    theirs = [type(f).__name__ for f in time_features_from_frequency_str("h")]
    for name in names:
        ours_f = calendar_features(spec(name).freq)
        same = len(ours_f) == len(theirs)
        print(f"note: {name}: TSLib's run.py passes --freq h to every data set (its long_term_forecast scripts never "
              f"set --freq): {len(theirs)} marks ({', '.join(theirs)}); ours at {spec(name).freq!r}: {len(ours_f)} "
              f"({', '.join(ours_f)}){'' if same else ' -- not in the README'}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--official", type=Path, required=True, help="a checkout of thuml/Time-Series-Library")
    ap.add_argument("--data-dir", type=Path, default=Path(os.environ.get("DATA_DIR", "data")),
                    help="holding ETT-small/, weather/, exchange_rate/, illness/ (default: $DATA_DIR or data/)")
    ap.add_argument("--datasets", nargs="+", default=list(CLASSES), choices=list(CLASSES), metavar="NAME",
                    help=f"default: {' '.join(CLASSES)}")
    ap.add_argument("--tslib-freq", choices=("ours", "h"), default="ours",
                    help="the freq TSLib's datasets get: ours (default), or h, its run.py default")
    args = ap.parse_args()
    mod = load_official(args.official)
    names = [n for n in args.datasets if (args.data_dir / spec(n).source.path).is_file()]
    for n in args.datasets:
        if n not in names:
            print(f"skipped {n}: {args.data_dir / spec(n).source.path} not found")
    if not names:
        print(f"error: none of {args.datasets} under --data-dir {args.data_dir}", file=sys.stderr)
        return 2
    bad = 0
    for name in names:
        freq = spec(name).freq if args.tslib_freq == "ours" else "h"
        for features in ("M", "S"):
            bad += compare_case(mod, args.data_dir, name, features, freq, ours(args.data_dir, name, features,
                                                                                lengths(name)))
    bad += documented_split(mod, args.data_dir, names)
    freq_note(mod, names)
    print("no undocumented difference" if not bad else f"UNDOCUMENTED DIFFERENCES: {bad}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
