"""The attention benchmark: efficiency-length helper and planning (fast), a tiny end-to-end run (slow)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pandas as pd
import pytest
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from attnbench.attention import available, get
from attnbench.bench.attention import (
    CSV_COLUMNS,
    AttentionBenchConfig,
    GroupSpec,
    efficiency_lengths,
    load_cab_reference,
    main,
    measure_point,
    modes,
    predict,
    skip_reason,
)

CONF_BENCH = Path(__file__).resolve().parents[1] / "conf" / "bench" / "attention.yaml"


def _row(entry: str, length: int, ms: float, mb: float, status: str = "ok", kind: str = "self",
         causal: bool = False, pass_: str = "fwd") -> dict:
    return {"entry": entry, "kind": kind, "causal": causal, "pass": pass_, "length": length,
            "ms_median": ms, "peak_mem_mb": mb, "status": status}


def test_efficiency_length_is_the_start_of_the_final_winning_run():
    df = pd.DataFrame([
        # a: wins at 64, loses at 128 (time), wins from 256 on; full skipped at 1024 (not paired).
        _row("full", 64, 2.0, 10.0), _row("a", 64, 1.0, 12.0),
        _row("full", 128, 3.0, 20.0), _row("a", 128, 4.0, 15.0),
        _row("full", 256, 8.0, 40.0), _row("a", 256, 5.0, 30.0),
        _row("full", 512, 30.0, 160.0), _row("a", 512, 9.0, 60.0),
        _row("full", 1024, math.nan, math.nan, "skipped"), _row("a", 1024, 20.0, 120.0),
        # b: beats full, then loses again at the longest paired length -> no efficiency length.
        _row("b", 64, 1.0, 1.0), _row("b", 128, 2.0, 1.0), _row("b", 256, 9.0, 50.0),
        _row("b", 512, math.nan, math.nan, "oom"),
        # c: a different series (causal) with no baseline point -> no pair.
        _row("c", 64, 1.0, 1.0, causal=True),
    ])
    t = efficiency_lengths(df, "ms_median").set_index("entry")
    assert t.loc["a", "efficiency_length"] == 256 and t.loc["a", "n_pairs"] == 4 and t.loc["a", "n_wins"] == 3
    assert t.loc["a", "max_length_paired"] == 512
    assert pd.isna(t.loc["b", "efficiency_length"]) and t.loc["b", "n_wins"] == 2 and t.loc["b", "n_pairs"] == 3
    assert t.loc["c", "n_pairs"] == 0 and pd.isna(t.loc["c", "efficiency_length"])
    m = efficiency_lengths(df, "peak_mem_mb").set_index("entry")
    assert m.loc["a", "efficiency_length"] == 128  # 12 > 10, then 15 < 20, 30 < 40, 60 < 160
    assert pd.isna(m.loc["b", "efficiency_length"])  # 50 > 40 at the longest paired length
    assert "full" not in t.index
    with pytest.raises(KeyError, match="nope"):
        efficiency_lengths(df, "nope")


def test_predict_and_skip_reason():
    assert predict([100], [1.0], 200) == pytest.approx(4.0)  # one point: quadratic
    assert predict([100, 200], [1.0, 2.0], 400) == pytest.approx(4.0)  # linear
    assert predict([100, 200], [1.0, 8.0], 400) == pytest.approx(32.0)  # cubic clipped to quadratic
    hist = pd.DataFrame([_row("a", 100, 500.0, 10.0)])
    assert "max_call_s" in skip_reason(hist, 200, max_call_s=1.0, max_mem_mb=None)
    assert skip_reason(hist, 200, max_call_s=5.0, max_mem_mb=100.0) is None
    assert "memory cap" in skip_reason(hist, 400, max_call_s=100.0, max_mem_mb=100.0)
    assert skip_reason(pd.DataFrame([_row("a", 100, math.nan, math.nan, "oom")]), 200, 1.0, None) == \
        "oom at length 100"


def test_cab_reference_is_package_data():
    ref = load_cab_reference()
    assert {"model", "entry", "time_length", "memory_length", "source"} <= set(ref.columns)
    assert ref.set_index("model").loc["ABC", "time_length"] == 1877


@pytest.mark.slow
def test_main_tiny_run_writes_csv_plots_table(tmp_path, monkeypatch):
    out = tmp_path / "bench"
    overrides = ["entries=[linear]", "lengths=[32,64]", "batch=1", "heads=2", "head_dim=8", "repeats=1",
                 "warmup=1", "passes=[fwd]", "max_call_s=1e-9", "baseline_max_call_s=1e-9", "device=cpu",
                 f"out_dir={out}"]
    monkeypatch.setattr(sys, "argv", ["attention", *overrides])
    GlobalHydra.instance().clear()
    try:
        main()
    finally:
        GlobalHydra.instance().clear()
    for name in ("attention.csv", "attention_time.png", "attention_memory.png", "efficiency_length.md",
                 "machine.json"):
        assert (out / name).is_file(), name
    df = pd.read_csv(out / "attention.csv")
    assert list(df.columns) == CSV_COLUMNS
    # full and linear, each self / self causal / cross (non-causal), fwd only, at 2 lengths
    assert len(df) == 12
    got = set(zip(df["entry"], df["kind"], df["causal"], df["length"], strict=True))
    assert got == {(e, k, c, L) for e in ("full", "linear") for k, c in [("self", False), ("self", True),
                                                                         ("cross", False)] for L in (32, 64)}
    assert (df[df["length"] == 32]["status"] == "ok").all(), df[["entry", "status", "reason"]]
    skipped = df[df["length"] == 64]
    assert (skipped["status"] == "skipped").all() and skipped["reason"].str.contains("max_call_s").all()
    assert skipped[skipped["entry"] == "full"]["reason"].str.contains("1e-09").all()
    assert (df[df["kind"] == "cross"]["kv_length"] == df[df["kind"] == "cross"]["length"] // 2).all()
    ok = df[df["status"] == "ok"]
    assert (ok["ms_median"] > 0).all() and (ok["peak_mem_mb"] >= 0).all()
    md = (out / "efficiency_length.md").read_text()
    assert "| linear" in md and "CAB reference" in md and "hot" in md  # tensor entries named as excluded


@pytest.mark.parametrize("entry", [e for e in available() if not get(e).caps.tensor])
def test_every_sequence_entry_runs_every_allowed_point(entry):
    """The default config's options build every entry, and each allowed (kind, causal, pass) point is ok."""
    yaml = OmegaConf.load(CONF_BENCH)
    yaml.pop("defaults"), yaml.pop("hydra")
    cfg = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(AttentionBenchConfig), yaml))
    points = modes(entry, cfg)
    assert points, entry
    spec = GroupSpec(entry=entry, options=dict(cfg.options.get(entry, {})), length=64, points=points, batch=1,
                     heads=2, head_dim=8, cross_kv_ratio=0.5, warmup=0, repeats=1, time_budget_s=1.0,
                     device="cpu", threads=1, seed=0)
    for kind, causal, pass_ in points:
        res = measure_point(spec, kind, causal, pass_)
        assert res["status"] == "ok", (kind, causal, pass_, res["reason"])


def _spec(**over) -> GroupSpec:
    kw = {"entry": "linear", "options": {}, "length": 16, "points": [["self", False, "fwd"]], "batch": 1, "heads": 1,
          "head_dim": 8, "cross_kv_ratio": 0.5, "warmup": 0, "repeats": 1, "time_budget_s": 1.0, "device": "cpu",
          "threads": 1, "seed": 0}
    return GroupSpec(**{**kw, **over})


@pytest.mark.slow
def test_worker_reuses_its_process_and_survives_timeouts_and_deaths():
    from attnbench.bench.attention import MODULE, measure_isolated
    from attnbench.bench.isolation import Worker

    w = Worker(f"{MODULE}:group", None)
    try:
        a = measure_isolated(w, _spec(), timeout_s=120)
        pid = w.proc.pid
        b = measure_isolated(w, _spec(length=32, points=[["self", False, "fwd"], ["self", True, "fwd_bwd"]]),
                             timeout_s=120)
        assert [r["status"] for r in a + b] == ["ok"] * 3 and w.proc.pid == pid  # one process, two groups
        t = measure_isolated(w, _spec(), timeout_s=0.01)
        assert t == [{"status": "timeout", "reason": "point process killed after 0.01 s (point_timeout_s)"}]
        assert w.proc is None
        assert measure_isolated(w, _spec(), timeout_s=120)[0]["status"] == "ok"  # a fresh worker
    finally:
        w.close()
    dead = Worker("attnbench.bench.no_such_module:group", None)
    try:
        assert measure_isolated(dead, _spec(points=[["self", False, "fwd"]] * 2), timeout_s=120) == [
            {"status": "error", "reason": "point process exited with 1: ModuleNotFoundError: No module named "
             "'attnbench.bench.no_such_module'"}] * 2
    finally:
        dead.close()
