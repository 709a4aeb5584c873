"""Time-series datamodule: split borders, window counts, scaling without leakage, errors."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from attnbench.data.catalog import TIME_SERIES, Source
from attnbench.data.download import DataError, fetch, sha256sum
from attnbench.data.timeseries import TimeSeriesDataModule, split_borders, time_features
from scripts.prepare_data import main as prepare_data
from tests.conftest import SHARED_DATA, write_ett_csv


def dm(data_dir, **kw) -> TimeSeriesDataModule:
    args = dict(name="ETTh1", data_dir=str(data_dir), seq_len=96, label_len=48, pred_len=96, verify=False,
                download=False)
    args.update(kw)
    m = TimeSeriesDataModule(**args)
    m.setup()
    return m


def test_split_borders_follow_the_protocol():
    h = split_borders("ett_hour", 17420, 96)
    assert h == {"train": (0, 8640), "val": (8640 - 96, 11520), "test": (11520 - 96, 14400)}
    m = split_borders("ett_minute", 69680, 96)
    assert m == {"train": (0, 34560), "val": (34560 - 96, 46080), "test": (46080 - 96, 57600)}
    r = split_borders("ratio", 1000, 96)  # 700 / 100 / 200
    assert r == {"train": (0, 700), "val": (604, 800), "test": (704, 1000)}
    w = split_borders("ratio", 52696, 96)  # weather: the TSLib borders
    assert w["train"] == (0, 36887) and w["test"] == (52696 - 10539 - 96, 52696)
    with pytest.raises(DataError, match="too few"):
        split_borders("ett_hour", 5000, 96)


def test_window_counts_and_contents(synth_data_dir):
    m = dm(synth_data_dir)
    # the standard ETTh1 counts (seq 96, pred 96): 8449 / 2785 / 2785
    assert [len(m.datasets[p]) for p in ("train", "val", "test")] == [8449, 2785, 2785]
    m2 = dm(synth_data_dir, pred_len=720)
    assert [len(m2.datasets[p]) for p in ("train", "val", "test")] == [7825, 2161, 2161]
    x, y, xm, ym = m.datasets["test"][5]
    assert x.shape == (96, 7) and y.shape == (48 + 96, 7) and xm.shape == (96, 4) and ym.shape == (144, 4)
    # the test part starts seq_len rows before its border: window 0 of test ends where test starts
    raw = pd.read_csv(synth_data_dir / "ETT-small" / "ETTh1.csv")
    vals = m.scaler.transform(raw.iloc[:, 1:].to_numpy())
    start = 11520 - 96 + 5
    np.testing.assert_allclose(x.numpy(), vals[start:start + 96], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(y.numpy(), vals[start + 48:start + 192], rtol=1e-5, atol=1e-5)
    assert float(xm.min()) >= -0.5 and float(xm.max()) <= 0.5


def test_scaler_is_fit_on_train_only(tmp_path):
    write_ett_csv(tmp_path / "ETT-small" / "ETTh1.csv")
    df = pd.read_csv(tmp_path / "ETT-small" / "ETTh1.csv")  # the values as written (4 decimals)
    m = dm(tmp_path)
    train = df.iloc[:8640, 1:].to_numpy()
    np.testing.assert_allclose(m.scaler.mean, train.mean(0), rtol=1e-6)
    np.testing.assert_allclose(m.scaler.std, train.std(0), rtol=1e-6)
    # perturbing val/test rows leaves the scaler (hence the train inputs) unchanged: no leakage
    df2 = df.copy()
    df2.iloc[8640:, 1:] = df2.iloc[8640:, 1:] * 100 + 7
    df2.to_csv(tmp_path / "ETT-small" / "ETTh1.csv", index=False)
    m2 = dm(tmp_path)
    np.testing.assert_allclose(m2.scaler.mean, m.scaler.mean, rtol=1e-6)
    assert np.allclose(m2.datasets["train"].data.numpy(), m.datasets["train"].data.numpy(), atol=1e-5)
    assert abs(float(m.datasets["train"].data.mean())) < 1e-4


def test_features_s_and_ms_put_the_target_last(synth_data_dir):
    s = dm(synth_data_dir, features="S")
    ms = dm(synth_data_dir, features="MS")
    mm = dm(synth_data_dir, features="M")
    assert s.datasets["train"].data.shape[1] == 1 and s.n_targets == 1
    assert ms.datasets["train"].data.shape[1] == 7 and ms.n_targets == 1 and mm.n_targets == 7
    np.testing.assert_allclose(ms.datasets["train"].data[:, -1], s.datasets["train"].data[:, 0], atol=1e-5)
    hufl = dm(synth_data_dir, features="S", target="HUFL")
    np.testing.assert_allclose(hufl.datasets["train"].data[:, 0], mm.datasets["train"].data[:, 0], atol=1e-5)
    with pytest.raises(DataError, match="target column 'NOPE' not found"):
        dm(synth_data_dir, features="S", target="NOPE")


def test_test_loader_keeps_its_last_batch(synth_data_dir):
    m = dm(synth_data_dir, batch_size=64, eval_batch_size=100)
    assert sum(len(b[0]) for b in m.test_dataloader()) == len(m.datasets["test"]) == 2785
    assert sum(len(b[0]) for b in m.val_dataloader()) == 2785
    assert all(len(b[0]) == 64 for b in m.train_dataloader())  # train drops its ragged last batch


def test_time_features_by_frequency():
    d = pd.date_range("2016-07-01", periods=200, freq="15min")
    f = time_features(d, "15min")
    assert f.shape == (200, 5) and f.min() >= -0.5 and f.max() <= 0.5
    assert time_features(pd.date_range("2020", periods=10, freq="W"), "W").shape == (10, 2)
    assert time_features(pd.date_range("2020", periods=10, freq="D"), "D").shape == (10, 3)
    hour = time_features(pd.date_range("2016-07-01", periods=24, freq="h"), "h")[:, 0]
    np.testing.assert_allclose(hour, np.arange(24) / 23 - 0.5, rtol=1e-6)


def test_missing_and_corrupt_files_say_what_to_do(tmp_path):
    with pytest.raises(DataError) as e:
        dm(tmp_path)
    msg = str(e.value)
    assert "ETT-small/ETTh1.csv not found" in msg and "prepare_data.py ETTh1" in msg and "--from DIR" in msg
    write_ett_csv(tmp_path / "ETT-small" / "ETTh1.csv", n_rows=17420)
    with pytest.raises(DataError, match="corrupt or not the official file: sha256"):
        dm(tmp_path, verify=True)


def test_fetch_copies_verifies_and_reports_offline(tmp_path):
    src_dir = tmp_path / "src"
    f = src_dir / "x" / "a.csv"
    f.parent.mkdir(parents=True)
    f.write_text("date,OT\n")
    good = Source("x/a.csv", "http://127.0.0.1:9/a.csv", (sha256sum(f),))
    out = fetch("demo", good, tmp_path / "dst", from_dir=src_dir)
    assert out.read_text() == "date,OT\n"
    assert fetch("demo", good, tmp_path / "dst") == out  # already there: kept
    bad = Source("x/a.csv", "http://127.0.0.1:9/a.csv", ("0" * 64,))
    with pytest.raises(DataError, match="corrupt"):
        fetch("demo", bad, tmp_path / "dst2", from_dir=src_dir)
    with pytest.raises(DataError, match=r"(?s)download of http://127.0.0.1:9/a.csv failed.*--from DIR"):
        fetch("demo", good, tmp_path / "dst3", timeout=5)
    assert not (tmp_path / "dst3" / "x" / "a.csv").exists()


def test_catalogue_is_complete():
    assert {"ETTh1", "ETTh2", "ETTm1", "ETTm2", "weather", "electricity", "traffic", "exchange_rate",
            "national_illness", "solar"} == set(TIME_SERIES)
    for s in TIME_SERIES.values():
        assert s.source.url.startswith("https://") and all(len(h) == 64 for h in s.source.sha256)
    assert TIME_SERIES["national_illness"].defaults["seq_len"] == 36


@pytest.mark.data
def test_real_etth1_from_shared_data(tmp_path):
    m = TimeSeriesDataModule("ETTh1", str(SHARED_DATA), 96, 48, 96, verify=True, download=False)
    m.setup()
    assert [len(m.datasets[p]) for p in ("train", "val", "test")] == [8449, 2785, 2785]
    # prepare_data.py --from copies and verifies
    assert prepare_data(["ETTh1", "weather", "--from", str(SHARED_DATA), "--data-dir", str(tmp_path)]) == 0
    assert sha256sum(tmp_path / "ETT-small" / "ETTh1.csv") == TIME_SERIES["ETTh1"].source.sha256[0]
    assert (tmp_path / "weather" / "weather.csv").is_file()


@pytest.mark.data
@pytest.mark.parametrize("name", ["ETTh2", "ETTm1", "weather", "exchange_rate", "national_illness"])
def test_real_files_match_catalogue(name):
    s = TIME_SERIES[name]
    m = TimeSeriesDataModule(name, str(SHARED_DATA), s.defaults["seq_len"], s.defaults["label_len"],
                             s.defaults["pred_lens"][0], verify=True, download=False)
    m.setup()
    assert all(len(v) > 0 for v in m.datasets.values())


def test_prepare_data_script_reports_unknown_names(tmp_path, capsys):
    assert prepare_data(["ETTh9"]) == 2 and "unknown data set" in capsys.readouterr().err
    assert prepare_data(["ETTh1", "--from", str(tmp_path), "--data-dir", str(tmp_path / "d")]) == 1
    assert "--from must hold ETT-small/ETTh1.csv" in capsys.readouterr().err
    shutil.rmtree(tmp_path / "d", ignore_errors=True)


# ----------------------------------------------------------------------------- the official HOT protocol
def test_official_split_borders():
    # the HOT code (src/ts_data.py): train int(0.7 T), val int(0.1 T), test the rest, for every data set
    assert split_borders("official", 17420, 96) == {"train": (0, 12194), "val": (12194 - 96, 13936),
                                                     "test": (13936 - 96, 17420)}
    assert split_borders("official", 1000, 96) == {"train": (0, 700), "val": (604, 800), "test": (704, 1000)}
    assert split_borders("official", 7588, 96)["val"] == (5311 - 96, 5311 + 758)  # exchange: int(758.8)
    with pytest.raises(ValueError, match="allowed: ett_hour, ett_minute, ratio, official"):
        split_borders("hot", 1000, 96)


def official_windows(values: np.ndarray, part: str, seq_len: int, pred_len: int) -> list[tuple]:
    """The HOT loader re-derived: segments of the z-scored (T, C) values, window i = rows [i, i+seq+pred),
    count T_seg - seq_len - pred_len."""
    T = len(values)
    n_train, n_val = int(0.7 * T), int(0.1 * T)
    mean, std = values[:n_train].mean(0), values[:n_train].std(0)
    z = (values - mean) / std
    n_test = T - n_train - n_val
    seg = {"train": z[:n_train], "val": z[n_train - seq_len:n_train + n_val], "test": z[-n_test - seq_len:]}[part]
    return [(seg[i:i + seq_len], seg[i + seq_len:i + seq_len + pred_len])
            for i in range(len(seg) - seq_len - pred_len)]


def test_official_split_window_counts_and_contents(synth_data_dir):
    """ETTh1's row count at 96 -> 720: 11,378 / 1,022 / 2,764 windows (TSLib: 7,825 / 2,161 / 2,161)."""
    off, ts = dm(synth_data_dir, pred_len=720, split="official"), dm(synth_data_dir, pred_len=720)
    assert [len(off.datasets[p]) for p in ("train", "val", "test")] == [11378, 1022, 2764]
    assert [len(ts.datasets[p]) for p in ("train", "val", "test")] == [7825, 2161, 2161]
    raw = pd.read_csv(synth_data_dir / "ETT-small" / "ETTh1.csv").iloc[:, 1:].to_numpy(dtype=np.float64)
    np.testing.assert_allclose(off.scaler.mean, raw[:12194].mean(0))  # fit on the official train part
    for part in ("train", "val", "test"):
        ref = official_windows(raw, part, 96, 720)
        assert len(ref) == len(off.datasets[part])
        for i in (0, len(ref) // 2, len(ref) - 1):
            x, y, _, _ = off.datasets[part][i]
            np.testing.assert_allclose(x.numpy(), ref[i][0], rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(y[48:].numpy(), ref[i][1], rtol=1e-5, atol=1e-5)
    # the last test window ends one row before the file does (the loader's unread last window)
    assert off.datasets["test"].data.shape[0] == 17420 - (13936 - 96) - 1
    with pytest.raises(ValueError, match="split='hot'; allowed: tslib, official"):
        dm(synth_data_dir, split="hot")


@pytest.mark.data
def test_real_etth1_official_split_window_counts():
    counts = {}
    for split in ("tslib", "official"):
        m = TimeSeriesDataModule("ETTh1", str(SHARED_DATA), 96, 48, 720, verify=True, download=False, split=split)
        m.setup()
        counts[split] = [len(m.datasets[p]) for p in ("train", "val", "test")]
    assert counts == {"tslib": [7825, 2161, 2161], "official": [11378, 1022, 2764]}
