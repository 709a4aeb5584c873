"""The HOT scaling benchmark: crossover helper (fast) and an end-to-end run at tiny sizes (slow)."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from attnbench.bench.common import summarize, time_steps
from attnbench.bench.harness import load_config, predict
from attnbench.bench.hot_scaling import CSV_COLUMNS, crossover, describe_crossover, run


def _row(model: str, seq_len: int, n_vars: int, ms: float, mb: float, status: str = "ok") -> dict:
    return {"model": model, "seq_len": seq_len, "n_vars": n_vars, "tokens": n_vars * seq_len // 4,
            "step_ms_median": ms, "peak_mem_mb": mb, "status": status}


def test_crossover_is_the_start_of_the_final_winning_run():
    df = pd.DataFrame([
        # seq_len 16 (4 patches): hot wins at 12 tokens, loses at 28, wins from 84 on -> crossover 84 tokens.
        _row("hot", 16, 3, 1.0, 9.0), _row("full", 16, 3, 2.0, 5.0),
        _row("hot", 16, 7, 3.0, 9.0), _row("full", 16, 7, 2.0, 8.0),
        _row("hot", 16, 21, 3.0, 9.0), _row("full", 16, 21, 4.0, 10.0),
        _row("hot", 16, 50, 5.0, 9.0), _row("full", 16, 50, 9.0, 20.0),
        _row("hot", 16, 99, 7.0, 9.0), _row("full", 16, 99, math.nan, math.nan, status="skipped"),
        # seq_len 32: full faster at the largest paired point -> no time crossover; no memory pair differs.
        _row("hot", 32, 3, 1.0, 5.0), _row("full", 32, 3, 2.0, 5.0),
        _row("hot", 32, 7, 3.0, 6.0), _row("full", 32, 7, 2.0, 6.0),
    ])
    t = crossover(df, "step_ms_median").set_index("seq_len")
    assert t.loc[16, "crossover_tokens"] == 84 and t.loc[16, "crossover_n_vars"] == 21
    assert t.loc[16, "n_pairs"] == 4 and t.loc[16, "n_wins"] == 3  # the skipped full point is not paired
    assert t.loc[16, "max_tokens_paired"] == 200
    assert pd.isna(t.loc[32, "crossover_tokens"]) and t.loc[32, "n_wins"] == 1
    m = crossover(df, "peak_mem_mb").set_index("seq_len")
    assert m.loc[16, "crossover_tokens"] == 84  # 9 < 10 and 9 < 20 after 9 > 8
    assert pd.isna(m.loc[32, "crossover_tokens"])  # ties are not wins
    assert "from 84 tokens (21 variables) on" in describe_crossover(t.reset_index().iloc[0])
    assert "not within the measured range" in describe_crossover(t.reset_index().iloc[1])


def test_crossover_without_pairs_and_unknown_metric():
    df = pd.DataFrame([_row("hot", 16, 3, 1.0, 1.0), _row("full", 16, 3, math.nan, math.nan, "oom")])
    t = crossover(df, "step_ms_median")
    assert t["n_pairs"].tolist() == [0] and pd.isna(t["crossover_tokens"].iloc[0])
    assert "no point where both ran" in describe_crossover(t.iloc[0])
    with pytest.raises(KeyError, match="nope"):
        crossover(df, "nope")


def test_time_steps_budget_keeps_one_of_each_and_summarize():
    calls = []
    n_warm, times = time_steps(lambda: calls.append(1), warmup=3, repeats=5, budget_s=0.0)
    assert (n_warm, len(times), len(calls)) == (1, 1, 2)
    n_warm, times = time_steps(lambda: None, warmup=2, repeats=4, budget_s=60.0)
    assert (n_warm, len(times)) == (2, 4)
    s = summarize([0.001, 0.002, 0.003, 0.004])
    assert s["step_ms_median"] == pytest.approx(2.5) and s["step_ms_min"] == pytest.approx(1.0)
    assert s["step_ms_iqr"] == pytest.approx(1.5)
    assert math.isnan(summarize([0.001])["step_ms_iqr"])


@pytest.mark.slow
def test_main_tiny_run_writes_csv_png_md(tmp_path, capsys):
    out = tmp_path / "bench"
    run(load_config("hot_scaling", ["n_vars=[3,7]", "seq_lens=[16]", "models=[hot,full]", "batch_size=2",
                                    "pred_len=8", "d_model=32", "n_heads=2", "d_mlp=64", "n_layers=1",
                                    "repeats=1", "warmup=1", "max_tokens_full=20", "device=cpu", f"out_dir={out}"]))
    df = pd.read_csv(out / "hot_scaling.csv")
    assert list(df.columns) == CSV_COLUMNS
    assert len(df) == 4  # 2 models x 1 seq_len x 2 n_vars, the skipped point included
    assert set(zip(df["model"], df["n_vars"], strict=True)) == {("hot", 3), ("hot", 7), ("full", 3), ("full", 7)}
    assert (df["tokens"] == df["n_vars"] * 4).all() and (df["n_params"] > 0).all()
    skipped = df[(df["model"] == "full") & (df["n_vars"] == 7)].iloc[0]
    assert skipped["status"] == "skipped" and "max_tokens_full" in skipped["reason"]
    ok = df[df["status"] == "ok"]
    assert len(ok) == 3, df[["model", "n_vars", "status", "reason"]]
    for col in ("step_ms_median", "step_ms_min", "peak_mem_mb"):
        assert ok[col].map(math.isfinite).all() and (ok[col] > 0).all(), ok[col]
    assert (ok["n_timed"] == 1).all() and (ok["mem_kind"].str.startswith("cpu_peak_rss")).all()
    assert (out / "hot_scaling.png").stat().st_size > 0
    md = (out / "hot_scaling.md").read_text()
    assert "| seq_len" in md and "skipped: tokens=28 > max_tokens_full=20" in md
    assert "hot faster than full" in md and "hot uses less memory than full" in md
    assert json.loads((out / "machine.json").read_text())["command"].startswith("python -m attnbench.bench.hot_scaling")
    assert "## Crossovers" in capsys.readouterr().out


@pytest.mark.slow
def test_main_records_oom_as_a_row(tmp_path):
    out = tmp_path / "bench"
    # The input batch alone (200000 x 512 x 7 fp32 = 2.7 GiB) exceeds the 0.5 GiB cap, so the failure is a
    # torch allocation after every import is done (a tiny cap fails inside lazy imports instead).
    run(load_config("hot_scaling", ["n_vars=[7]", "seq_lens=[512]", "models=[hot]", "pred_len=8",
                                    "d_model=32", "n_heads=2", "d_mlp=64", "n_layers=1", "patch_len=16",
                                    "repeats=1", "warmup=1", "batch_size=200000", "device=cpu", "max_memory_gb=0.5",
                                    f"out_dir={out}"]))
    df = pd.read_csv(out / "hot_scaling.csv")
    assert df["status"].tolist() == ["oom"] and df["reason"].str.contains("Memory|allocate").all()
    assert (out / "hot_scaling.md").is_file() and (out / "hot_scaling.png").is_file()


@pytest.mark.parametrize(("sig", "cap", "status"), [(11, 2**30, "oom"), (6, 2**30, "oom"), (11, None, "error"),
                                                    (9, 2**30, "killed")])
def test_isolated_point_classifies_a_dead_process(sig, cap, status):
    """A point process that dies by a signal: SIGSEGV / SIGABRT under our cap is an allocation failure."""
    from attnbench.bench.isolation import run_isolated

    out = run_isolated("signal:raise_signal", sig, timeout_s=30, max_memory_bytes=cap)
    assert out["status"] == status, out
    if status == "oom":
        assert "address-space cap" in out["reason"]


def test_isolated_point_error_timeout_and_result():
    from attnbench.bench.isolation import Worker, run_isolated

    out = run_isolated("sys:exit", "boom", timeout_s=30, max_memory_bytes=None)
    assert out == {"status": "error", "reason": "point process exited with 1: boom"}
    out = run_isolated("time:sleep", 5, timeout_s=0.2, max_memory_bytes=None)
    assert out == {"status": "timeout", "reason": "point process killed after 0.2 s (point_timeout_s)"}
    w = Worker("math:sqrt", None)
    try:
        assert w.run(4, timeout_s=30) == 2.0 and w.run(9, timeout_s=30) == 3.0  # one process, two tasks
    finally:
        w.close()


def test_bad_config_names_the_key():
    from attnbench.config import ConfigError

    with pytest.raises(ConfigError, match="warmup=-1"):
        load_config("hot_scaling", ["warmup=-1"])
    with pytest.raises(ConfigError, match="models: 'nope' is not a model config; allowed: .*hot"):
        run(load_config("hot_scaling", ["models=[nope]"]))


def test_predict_given_and_fitted_power():
    assert predict([10], [1.0], 20, power=2.0) == pytest.approx(4.0)
    assert predict([10, 20], [1.0, 8.0], 20, power=1.0) == pytest.approx(8.0)  # from the last point only
    assert predict([10, 20], [1.0, 2.0], 40) == pytest.approx(4.0)  # fitted: linear


@pytest.mark.slow
def test_volume_scaling_tiny_run_and_skip_prediction(tmp_path):
    import pandas as pd

    from attnbench.bench.volume_scaling import net_of, predicted_step_s, step_power
    from attnbench.bench.volume_scaling import run as volume_run

    out = tmp_path / "vol"
    cfg = load_config("volume_scaling", ["sizes=[8,16]", "patch_size=4", "models=[hot3d,vit3d]", "repeats=1",
                                         "warmup=0", "max_step_s=1e-9", "device=cpu", f"out_dir={out}"])
    volume_run(cfg)
    df = pd.read_csv(out / "volume_scaling.csv")
    assert df[df["size"] == 8]["status"].tolist() == ["ok", "ok"]  # nothing to predict from: measured
    assert df[df["size"] == 16]["status"].tolist() == ["skipped", "skipped"]  # predicted too slow
    assert (df[df["size"] == 8]["tokens"] == 8).all() and (df["n_params"].dropna() > 0).all()
    assert (out / "volume_scaling.md").is_file() and (out / "volume_scaling.png").is_file()
    hist = pd.DataFrame([{"model": "vit3d", "tokens": 10, "step_ms_median": 1000.0, "status": "ok"}])
    powers = {m: step_power(net_of(m, 8, cfg)) for m in ("hot3d", "vit3d", "resnet3d")}
    assert powers == {"hot3d": 1.0, "vit3d": 2.0, "resnet3d": 1.0}  # quadratic for the ViT only
    assert predicted_step_s(hist, "vit3d", 20, powers["vit3d"]) == pytest.approx(4.0)
    assert predicted_step_s(hist.assign(model="hot3d"), "hot3d", 20, powers["hot3d"]) == pytest.approx(2.0)
    assert predicted_step_s(hist, "resnet3d", 20, 1.0) is None


def test_measure_point_rows_for_ok_oom_error_and_check():
    from attnbench.bench.harness import PointTiming, measure_point

    spec = PointTiming(warmup=1, repeats=2, time_budget_s=10.0, device="cpu", threads=1, seed=0)
    ok = measure_point(lambda: (lambda: None), spec)
    assert ok["status"] == "ok" and (ok["n_warmup"], ok["n_timed"]) == (1, 2) and ok["peak_mem_mb"] >= 0
    assert ok["mem_kind"].startswith("cpu_peak_rss")

    def boom():
        raise MemoryError("can't allocate memory")

    assert measure_point(lambda: boom, spec)["status"] == "oom"
    err = measure_point(lambda: (lambda: None), spec, before=lambda: int("x"))
    assert err["status"] == "error" and err["reason"].startswith("ValueError: invalid literal")
    bad = measure_point(lambda: (lambda: None), spec, check=lambda: "non-finite training loss")
    assert (bad["status"], bad["reason"]) == ("error", "non-finite training loss")


def test_model_net_is_the_training_config():
    """The benchmark builds what model=<name> trains: conf/model's net, sizes set, by instantiate."""
    import torch

    from attnbench.bench.harness import build_net, model_net
    from attnbench.config import ConfigError
    from attnbench.models.forecaster import PatchForecaster

    net = model_net("hot", seq_len=16, pred_len=8, d_model=32, n_heads=2, d_mlp=64, n_layers=1)
    assert net["head"] == "flatten" and net["attention"]["name"] == "hot" and net["per_axis_qk"] is True
    assert model_net("full", seq_len=16, pred_len=8)["per_axis_qk"] is False
    assert "img_size" not in model_net("resnet3d", n_classes=3, img_size=8)  # sizes a net does not take
    m = build_net(net)
    assert isinstance(m, PatchForecaster) and m(torch.randn(2, 16, 3)).shape == (2, 8, 3)
    with pytest.raises(ConfigError, match="model=hot: its net needs a value the benchmark does not set"):
        model_net("hot")  # seq_len comes from the data group: the benchmark must set it

