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
    build_entry,
    call_limit,
    cost_cell,
    efficiency_lengths,
    load_cab_reference,
    main,
    measure_point,
    modes,
    plan_group,
    point_gflop,
    subquadratic,
    with_throughput,
)
from attnbench.bench.harness import predict, skip_reason

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
                 "warmup=1", "passes=[fwd]", "max_call_s=1e-9", "subquadratic_max_call_s=1e-9",
                 "baseline_max_call_s=1e-9", "device=cpu", f"out_dir={out}"]
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
    # CAB's setting (self, non-causal) at every length first, then the other settings
    assert not df["causal"].iloc[:4].any() and (df["kind"].iloc[:4] == "self").all()
    assert (df[df["length"] == 32]["status"] == "ok").all(), df[["entry", "status", "reason"]]
    long = df[df["length"] == 64]
    skipped, extra = long[long["entry"] == "linear"], long[long["entry"] == "full"]
    assert (skipped["status"] == "skipped").all() and skipped["reason"].str.contains("max_call_s").all()
    # the baseline beyond where it runs: extrapolated rows with a time, memory and the reason, no GFLOP/s
    assert (extra["status"] == "extrapolated").all() and extra["reason"].str.contains("1e-09").all()
    assert (extra["ms_median"] > 0).all() and extra["gflop_per_s"].isna().all()
    assert (df[df["kind"] == "cross"]["kv_length"] == df[df["kind"] == "cross"]["length"] // 2).all()
    ok = df[df["status"] == "ok"]
    assert (ok["ms_median"] > 0).all() and (ok["peak_mem_mb"] >= 0).all() and (df["gflop"] > 0).all()
    assert ok["gflop_per_s"].to_numpy() == pytest.approx((ok["gflop"] / (ok["ms_median"] / 1e3)).to_numpy())
    md = (out / "efficiency_length.md").read_text()
    assert "| linear" in md and "CAB reference" in md and "hot" in md  # tensor entries named as excluded
    assert "(extrapolated)" in md and "GFLOP/s" in md and "python -m attnbench.bench.attention" in md


def _run_points(entry: str, every: bool) -> None:
    yaml = OmegaConf.load(CONF_BENCH)
    yaml.pop("defaults"), yaml.pop("hydra")
    cfg = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(AttentionBenchConfig), yaml))
    points = modes(entry, cfg)
    assert points, entry
    if not every:  # CAB's setting, the one efficiency lengths are read from
        points = [p for p in points if p[0] == "self" and not p[1]]
        assert len(points) == 2, (entry, points)
    spec = GroupSpec(entry=entry, options=dict(cfg.options.get(entry, {})), length=64, points=points, batch=1,
                     heads=2, head_dim=8, cross_kv_ratio=0.5, warmup=0, repeats=1, time_budget_s=1.0,
                     device="cpu", threads=1, seed=0)
    for kind, causal, pass_ in points:
        res = measure_point(spec, kind, causal, pass_)
        assert res["status"] == "ok", (kind, causal, pass_, res["reason"])


SEQUENCE_ENTRIES = [e for e in available() if not get(e).caps.tensor]


@pytest.mark.parametrize("entry", SEQUENCE_ENTRIES)
def test_every_sequence_entry_runs_cabs_points(entry):
    """The default config's options build every entry, and its self-attention, non-causal points (fwd and
    fwd+bwd: CAB's setting) are ok."""
    _run_points(entry, every=False)


@pytest.mark.slow
@pytest.mark.parametrize("entry", SEQUENCE_ENTRIES)
def test_every_sequence_entry_runs_every_allowed_point(entry):
    """... and so is every other allowed (kind, causal, pass) point."""
    _run_points(entry, every=True)


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


def _cfg(**over) -> AttentionBenchConfig:
    kw = {"entries": ["linear", "treeformer_tf"], "lengths": [64], "batch": 1, "heads": 1, "head_dim": 8,
          "passes": ["fwd"], "device": "cpu", "max_total_s": None}
    return AttentionBenchConfig(**{**kw, **over})


def _hist(entry: str, rows: list[tuple[int, float, float, float]]) -> pd.DataFrame:
    """A series' earlier rows: (length, ms, MB, gflop) each, status ok."""
    return pd.DataFrame([{**_row(entry, L, ms, mb), "gflop": gf} for L, ms, mb, gf in rows])


def test_gflop_per_s_is_flops_over_median_time_on_measured_rows_only():
    df = pd.DataFrame([{**_row("a", 64, 500.0, 1.0), "gflop": 10.0},
                       {**_row("full", 128, 800.0, 2.0, "extrapolated"), "gflop": 4.0},
                       {**_row("b", 64, math.nan, math.nan, "skipped"), "gflop": 1.0}])
    out = with_throughput(df)
    assert out["gflop_per_s"].iloc[0] == pytest.approx(20.0)  # 10 GFLOP in 0.5 s
    assert out["gflop_per_s"].iloc[1:].isna().all()


def test_point_gflop_counts_backward_as_twice_the_forward_products():
    from attnbench.attention.flops import attention_flops

    fwd = point_gflop("linear", {}, "cross", False, "fwd", 128, 2, 4, 16, 0.5)
    both = point_gflop("linear", {}, "cross", False, "fwd_bwd", 128, 2, 4, 16, 0.5)
    f = attention_flops(build_entry("linear", {}, 16, 64, 4), B=2, H=4, q_axes=128, k_axes=64, D=16)
    assert fwd == pytest.approx(f.total / 1e9) and both == pytest.approx((3 * f.matmul + 2 * f.other) / 1e9)
    # any length on the meta device: super's S x S mixing at 16K tokens costs no memory to count
    assert point_gflop("super", {}, "self", False, "fwd", 16384, 4, 8, 64, 0.5) > 2e3


def test_subquadratic_entries_get_the_long_call_limit():
    cfg = _cfg()
    assert subquadratic("linear") and subquadratic("performer") and not subquadratic("treeformer_tf")
    assert not subquadratic("full") and not subquadratic("super")
    assert call_limit("linear", cfg) == cfg.subquadratic_max_call_s
    assert call_limit("treeformer_tf", cfg) == cfg.max_call_s and call_limit("full", cfg) == cfg.baseline_max_call_s


def test_plan_group_single_call_extrapolation_and_budget():
    import time

    cfg = _cfg(single_call_s=2.0, baseline_max_call_s=5.0, subquadratic_max_call_s=100.0)
    base = {"entry": "x", "length": 256, "batch": 1, "heads": 1, "head_dim": 8, "device": "cpu"}
    pts = [["self", False, "fwd"]]
    # linear: 1 s at 64, 2 s at 128 -> 4 s predicted at 256: > single_call_s, < its limit: one call, no warm-up
    df = pd.concat([_hist("linear", [(64, 1000.0, 10.0, 1.0), (128, 2000.0, 20.0, 2.0)]),
                    _hist("full", [(64, 1000.0, 10.0, 1.0), (128, 4000.0, 20.0, 4.0)])])
    done, todo = plan_group("linear", 256, pts, df, cfg, base, time.perf_counter(), None)
    assert done == [] and list(todo) == [(0, 1)] and todo[(0, 1)][0][0] == ["self", False, "fwd"]
    # a short call keeps the configured warm-up and repeats
    done, todo = plan_group("linear", 64, pts, df.iloc[:0], cfg, base, time.perf_counter(), None)
    assert list(todo) == [(cfg.warmup, cfg.repeats)]
    # full: 16 s predicted > 5 s: extrapolated at its last measured GFLOP/s (1 GFLOP/s here), memory c * L^p
    done, todo = plan_group("full", 256, pts, df, cfg, base, time.perf_counter(), None)
    (r,) = done
    assert todo == {} and r["status"] == "extrapolated" and "max_call_s" in r["reason"]
    assert r["ms_median"] == pytest.approx(4000.0 * r["gflop"] / 4.0) and r["peak_mem_mb"] == pytest.approx(40.0)
    # a non-baseline entry over its limit, or anything once max_total_s is spent, is skipped
    done, _ = plan_group("linear", 256, pts, df, _cfg(subquadratic_max_call_s=3.0), base, time.perf_counter(), None)
    assert done[0]["status"] == "skipped" and "max_call_s=3" in done[0]["reason"]
    done, todo = plan_group("linear", 64, pts, df.iloc[:0], _cfg(max_total_s=1.0), base, time.perf_counter() - 5,
                            None)
    assert todo == {} and done[0]["status"] == "skipped" and "max_total_s=1 spent" in done[0]["reason"]
    # the baseline after a failure of its series is skipped, not extrapolated
    failed = pd.concat([df, pd.DataFrame([{**_row("full", 256, math.nan, math.nan, "oom"), "gflop": 8.0}])])
    done, _ = plan_group("full", 512, pts, failed, cfg, base, time.perf_counter(), None)
    assert done[0]["status"] == "skipped" and done[0]["reason"] == "oom at length 256"


def test_cost_cells_mark_extrapolated_and_keep_measured_apart():
    assert cost_cell(pd.Series({**_row("a", 64, 12.345, 250.0), "gflop_per_s": 3.21})) == \
        "12.3 ms · 250 MB · 3.21 GFLOP/s"
    assert cost_cell(pd.Series({**_row("full", 64, 1234.5, 10.0, "extrapolated"), "gflop_per_s": math.nan})) == \
        "≈1,234 ms · ≈10 MB (extrapolated)"
    assert cost_cell(pd.Series(_row("b", 64, math.nan, math.nan, "skipped"))) == "skipped"
