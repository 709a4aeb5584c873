"""Published numbers in one long form: ``analysis/reference/<name>.csv`` with one value per line.

    paper,table,row,column,metric,value,source,confirmed
    itransformer,lookback96,ETTh1/96,iTransformer,mse,0.386,"iTransformer (Liu et al., ICLR 2024), ...",true

``row`` joins the table's row keys (``table.rows`` of the experiment) with "/", ``column`` is the published
model, ``confirmed`` says whether a second source (or the source check, see the ``.md`` beside the file)
agreed. ``wide`` turns it into one line per (row keys, model) with one column per metric, in file order.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd

COLUMNS = ["paper", "table", "row", "column", "metric", "value", "source", "confirmed"]


def _as_bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if str(v).strip().lower() in ("true", "false"):
        return str(v).strip().lower() == "true"
    raise ValueError(f"confirmed={v!r}; expected true or false")


def confirmed_column(values: pd.Series) -> pd.Series:
    """A ``confirmed`` column as bool (also for the reference files not in the long form: the CAB constants and
    efficiency lengths); ValueError unless every value is true or false."""
    return values.map(_as_bool).astype(bool)


def load_reference(name: str) -> pd.DataFrame:
    """``analysis/reference/<name>.csv`` (package data) or a path to such a CSV, checked: ``COLUMNS``, no
    (row, column, metric) twice, numeric values, ``confirmed`` true/false (as bool)."""
    path = Path(name)
    ref_dir = resources.files("attnbench.analysis").joinpath("reference")
    source: Any = path if path.suffix == ".csv" and path.is_file() else ref_dir.joinpath(f"{name}.csv")
    if not source.is_file():
        known = sorted(p.name.removesuffix(".csv") for p in ref_dir.iterdir() if p.name.endswith(".csv"))
        raise FileNotFoundError(f"no reference table {name!r}; known: {', '.join(known)} (or a path to a .csv)")
    with source.open() as fh:
        ref = pd.read_csv(fh, dtype={"row": str, "column": str})
    lacking = [c for c in COLUMNS if c not in ref.columns]
    if lacking:
        raise ValueError(f"reference {name!r} lacks columns {lacking}; expected {COLUMNS}")
    keys = ["row", "column", "metric"]
    dup = ref[ref.duplicated(keys, keep=False)]
    if not dup.empty:
        raise ValueError(f"reference {name!r} repeats (row, column, metric):\n{dup[keys]}")
    ref = ref[COLUMNS].copy()
    ref["value"] = pd.to_numeric(ref["value"], errors="raise")
    ref["confirmed"] = confirmed_column(ref["confirmed"])
    return ref


def _key(part: str) -> Any:
    return int(part) if part.isdigit() else part


def wide(ref: pd.DataFrame, rows: list[str], metrics: list[str]) -> pd.DataFrame:
    """One line per (row keys, model), in the order of first appearance: columns ``rows``, ``model``,
    ``metrics`` (NaN where the file has none), ``source``, ``confirmed`` (all of the line's values confirmed).
    A ``row`` must split into ``len(rows)`` parts ("ETTh1/96" for rows [dataset, horizon])."""
    parts = ref["row"].str.split("/")
    bad = ref[parts.map(len) != len(rows)]
    if not bad.empty:
        raise ValueError(f"reference row {bad['row'].iloc[0]!r} does not split into {rows} (joined by '/')")
    unknown = sorted(set(ref["metric"]) - set(metrics))
    if unknown:
        raise ValueError(f"reference metric {unknown[0]!r} is not one of the table's metrics {metrics}")
    lines: dict[tuple[str, str], dict[str, Any]] = {}
    for (row, model, metric, value, src, ok) in ref[["row", "column", "metric", "value", "source",
                                                     "confirmed"]].itertuples(index=False):
        line = lines.setdefault((row, model), {**dict(zip(rows, map(_key, row.split("/")), strict=True)),
                                               "model": model, **dict.fromkeys(metrics, float("nan")),
                                               "source": src, "confirmed": True})
        line[metric] = value
        line["confirmed"] = line["confirmed"] and bool(ok)
    out = pd.DataFrame(list(lines.values()), columns=[*rows, "model", *metrics, "source", "confirmed"])
    out["confirmed"] = out["confirmed"].astype(bool)
    return out


def for_kind(name: str, kind: str) -> pd.DataFrame:
    """``wide(load_reference(name))`` with the row keys and metrics of a table ``kind`` (``spec.KINDS``)."""
    from attnbench.analysis.spec import KINDS

    return wide(load_reference(name), KINDS[kind]["rows"], KINDS[kind]["metrics"])
