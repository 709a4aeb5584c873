"""Where each forecasting data set comes from, how it looks on disk, and how it is split.

Facts only: URLs, checksums, shapes and protocol constants of the standard long-term forecasting
benchmark (Autoformer / Time-Series-Library layout: ``<data_dir>/<folder>/<file>``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from attnbench.data.catalog.source import Source

_HF = "https://huggingface.co/datasets/thuml/Time-Series-Library/resolve/main/"
_ETT = "https://raw.githubusercontent.com/zhouhaoyi/ETDataset/main/ETT-small/"


@dataclass(frozen=True)
class TimeSeriesSpec:
    """One forecasting data set: file, frequency, split rule and column facts."""

    name: str
    source: Source
    freq: str  # pandas-style: "h", "15min", "10min", "D", "W"
    split: Literal["ett_hour", "ett_minute", "ratio"]
    n_vars: int  # variables (columns but the date)
    n_rows: int
    target: str = "OT"
    has_date: bool = True  # Solar-Energy (LSTNet format) has no header and no date column
    defaults: dict = field(default_factory=dict)  # protocol lengths: seq_len, label_len, pred_lens


_TS = dict(seq_len=96, label_len=48, pred_lens=(96, 192, 336, 720))

TIME_SERIES: dict[str, TimeSeriesSpec] = {
    s.name: s
    for s in [
        TimeSeriesSpec("ETTh1", Source("ETT-small/ETTh1.csv", _ETT + "ETTh1.csv",
                       ("f18de3ad269cef59bb07b5438d79bb3042d3be49bdeecf01c1cd6d29695ee066",)),
                       "h", "ett_hour", 7, 17420, defaults=_TS),
        TimeSeriesSpec("ETTh2", Source("ETT-small/ETTh2.csv", _ETT + "ETTh2.csv",
                       ("a3dc2c597b9218c7ce1cd55eb77b283fd459a1d09d753063f944967dd6b9218b",)),
                       "h", "ett_hour", 7, 17420, defaults=_TS),
        TimeSeriesSpec("ETTm1", Source("ETT-small/ETTm1.csv", _ETT + "ETTm1.csv",
                       ("6ce1759b1a18e3328421d5d75fadcb316c449fcd7cec32820c8dafda71986c9e",)),
                       "15min", "ett_minute", 7, 69680, defaults=_TS),
        TimeSeriesSpec("ETTm2", Source("ETT-small/ETTm2.csv", _ETT + "ETTm2.csv",
                       ("db973ca252c6410a30d0469b13d696cf919648d0f3fd588c60f03fdbdbadd1fd",)),
                       "15min", "ett_minute", 7, 69680, defaults=_TS),
        TimeSeriesSpec("weather", Source("weather/weather.csv", _HF + "weather/weather.csv", (
            "34ee981d07313e51da2a50bb600072c8ae4a69cb4b0651f4cb93a069d7a2ba63",  # CRLF (Autoformer release)
            "9b2b19b13e342d9c9b9c51620d42b4be232df7fba30e7f5c4968b7c79ab138ad",  # LF
        )), "10min", "ratio", 21, 52696, defaults=_TS),
        TimeSeriesSpec("electricity", Source("electricity/electricity.csv", _HF + "electricity/electricity.csv", (
            "7e45845d54c5219bad0ae6bc1b5316cf8ff9cead5d33fa998a5a51c2e4a497ad",  # CRLF
            "10b4ddd095548839274ce4d55d3c7d6842b4bfa69ac2a4321a7608622da7b4eb",  # LF
        )), "h", "ratio", 321, 26304, defaults=_TS),
        TimeSeriesSpec("traffic", Source("traffic/traffic.csv", _HF + "traffic/traffic.csv", (
            "cb06463d56fa17d87f47027cd9389ceae82a69eddee51cdb61480e120dab0b16",
        )), "h", "ratio", 862, 17544, defaults=_TS),
        TimeSeriesSpec("exchange_rate", Source("exchange_rate/exchange_rate.csv",
                       _HF + "exchange_rate/exchange_rate.csv", (
            "48b4d9d3d508f5104162e85b9a6042e3557fde11aa9f2944eba8c0d0efc89842",  # CRLF
            "d55e7aa2641009814a18ba3279431b13f6d413b0eab195b9ff21988d8cf94e97",  # LF
        )), "D", "ratio", 8, 7588, defaults=_TS),
        TimeSeriesSpec("national_illness", Source("illness/national_illness.csv",
                       _HF + "illness/national_illness.csv", (
            "93601f64d2566dc796ca4305adad8b8560c2db1a1ff04543c3bd813a7263570a",  # CRLF
            "8594cecb98c6f2f9dc014eca11c4d5d1e38ad5ce6ed0592d4abe65b146fce395",  # LF
        )), "W", "ratio", 7, 966, defaults=dict(seq_len=36, label_len=18, pred_lens=(24, 36, 48, 60))),
        TimeSeriesSpec("solar", Source(
            "solar/solar_AL.txt",
            "https://raw.githubusercontent.com/laiguokun/multivariate-time-series-data/master/solar-energy/"
            "solar_AL.txt.gz",
            ("230327ef72d2abb387939d4a35d6fd34f1066071bc7c40ce7ecf5531a0122ac2",),
            gz_sha256="1ae9329c3e1032acbb8dd080bfc397c44507006812a715d2788f172820489a1c",
        ), "10min", "ratio", 137, 52560, target="136", has_date=False, defaults=_TS),
    ]
}


def spec(name: str) -> TimeSeriesSpec:
    """The catalogue entry ``name``; an unknown name lists the allowed ones."""
    if name not in TIME_SERIES:
        raise ValueError(f"unknown time-series data set {name!r}; allowed: {', '.join(TIME_SERIES)}")
    return TIME_SERIES[name]


# The calendar features of each sampling frequency (TSLib / Informer ``time_features``, timeenc=1), keyed by the
# pandas offset class of the frequency; ``data.timeseries.time_features`` computes them, scaled to [-0.5, 0.5].
CALENDAR_FEATURES: dict[str, tuple[str, ...]] = {
    "Second": ("second", "minute", "hour", "dow", "dom", "doy"),
    "Minute": ("minute", "hour", "dow", "dom", "doy"),
    "Hour": ("hour", "dow", "dom", "doy"),
    "Day": ("dow", "dom", "doy"),
    "BusinessDay": ("dow", "dom", "doy"),
    "Week": ("dom", "week"),
    "MonthEnd": ("month",),
    "MonthBegin": ("month",),
}


def calendar_features(freq: str) -> tuple[str, ...]:
    """The calendar features of pandas frequency ``freq`` ("h": hour, dow, dom, doy); an unknown one lists the known."""
    from pandas.tseries.frequencies import to_offset  # here: the catalogue is read without pandas elsewhere

    name = type(to_offset(freq)).__name__
    if name not in CALENDAR_FEATURES:
        raise ValueError(f"no calendar features for frequency {freq!r}; allowed: {', '.join(CALENDAR_FEATURES)}")
    return CALENDAR_FEATURES[name]
