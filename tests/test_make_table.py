"""Sweep -> forecasting table: fake results.json folders, no training."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from attnbench.analysis.runs import FACT_COLUMNS, model_label
from attnbench.analysis.spec import experiment_spec
from attnbench.analysis.tables import (
    RUN_COLUMNS,
    display_frame,
    forecasting_table,
    load_reference,
    load_runs,
    to_latex,
    to_markdown,
)
from attnbench.data.catalog import TIME_SERIES

ROOT = Path(__file__).resolve().parents[1]
OOM = "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB"


def write_job(root: Path, num: int, model: str, dataset: str, pred_len: int, *, status: str = "ok",
              mse: float | None = None, mae: float | None = None, attention: str | None = None,
              per_horizon: dict[int, tuple[float, float]] | None = None, error: str | None = None) -> Path:
    """One job folder ``root/<num>/results.json`` in the layout train.py writes."""
    metrics: dict = {}
    if status == "ok":
        metrics = {"test/mse": mse, "test/mae": mae, "val/mse": 1.0, "n_params": 1198560, "epochs": 7}
        for h, (hm, ha) in (per_horizon or {}).items():
            metrics |= {f"test/mse_{h}": hm, f"test/mae_{h}": ha}
    result = {
        "status": status, "error": error, "metrics": metrics, "best_checkpoint": None,
        "wall_time_s": 100.0 + num, "peak_memory_mb": 1166.0, "peak_memory_kind": "cpu_max_rss",
        "choices": {"model": model, "data": "ett", "model/attention": attention or model, "trainer": "cpu",
                    "experiment": "hot/forecasting"},
        "overrides": [f"model={model}", f"data.name={dataset}", f"data.pred_len={pred_len}"], "job_num": num,
        "config": {"data": {"name": dataset, "pred_len": pred_len, "seq_len": 96},
                   "model": {"net": {"attention": {"name": attention or model}},
                             "horizons": sorted(per_horizon) if per_horizon else None}},
    }
    d = root / str(num)
    d.mkdir(parents=True)
    (d / "results.json").write_text(json.dumps(result))
    return d


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """Two seeds of hot on ETTh1-96, a failed full run, a per-horizon run, a non-default attention."""
    root = tmp_path / "multiruns" / "2026-01-01_00-00-00"
    write_job(root, 0, "hot", "ETTh1", 96, mse=0.400, mae=0.410)
    write_job(root, 1, "hot", "ETTh1", 96, mse=0.380, mae=0.400)
    write_job(root, 2, "full", "ETTh1", 96, status="failed", error=OOM)
    write_job(root, 3, "full", "ETTh2", 96, mse=0.300, mae=0.350)
    write_job(root, 4, "hot", "weather", 720, mse=0.36, mae=0.35,
              per_horizon={96: (0.170, 0.210), 192: (0.220, 0.250), 336: (0.280, 0.300), 720: (0.360, 0.350)})
    write_job(root, 5, "hot", "electricity", 96, attention="hot_linear", mse=0.150, mae=0.245)
    return root


@pytest.fixture
def reference() -> pd.DataFrame:
    return load_reference("forecasting_lookback96")


SPEC = experiment_spec("hot/forecasting")  # the table the experiment declares


def fc_table(runs: pd.DataFrame, reference: pd.DataFrame, baseline: str | None = None) -> pd.DataFrame:
    """The forecasting table with the experiment's baseline (or ``baseline``) and notes."""
    return forecasting_table(runs, reference, baseline or SPEC.baseline[0], SPEC.notes)


def md_row(md: str, dataset: str, horizon: int) -> dict[str, str]:
    """The cells of one row of the first Markdown table, keyed by header."""
    lines = [ln for ln in md.splitlines() if ln.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    for ln in lines[2:]:
        cells = [c.strip() for c in ln.strip("|").split("|")]
        if cells[:2] == [dataset, str(horizon)]:
            return dict(zip(header, cells, strict=True))
    raise KeyError((dataset, horizon))


# ---------------------------------------------------------------------------------------------- reference
@pytest.mark.parametrize("dataset, horizon, model, mse, mae", [
    ("ETTh1", 96, "iTransformer", 0.386, 0.405),
    ("ETTh1", 720, "RLinear", 0.481, 0.470),
    ("ETTh2", 720, "DLinear", 0.831, 0.657),
    ("ETTm1", 336, "PatchTST", 0.399, 0.410),
    ("ETTm2", 192, "TimesNet", 0.249, 0.309),
    ("electricity", 192, "iTransformer", 0.162, 0.253),
    ("exchange_rate", 720, "TimesNet", 0.964, 0.746),
    ("weather", 336, "PatchTST", 0.278, 0.297),
    ("solar", 96, "RLinear", 0.322, 0.339),
    ("solar", 720, "DLinear", 0.356, 0.413),
    ("traffic", 720, "iTransformer", 0.467, 0.302),
])
def test_reference_matches_published(reference, dataset, horizon, model, mse, mae):
    row = reference.set_index(["dataset", "horizon", "model"]).loc[(dataset, horizon, model)]
    assert (row["mse"], row["mae"]) == (mse, mae)


def test_reference_shape_names_and_confirmation(reference):
    assert list(reference.columns) == ["dataset", "horizon", "model", "mse", "mae", "source", "confirmed"]
    assert len(reference) == 8 * 4 * 5 + 4  # 8 data sets x 4 horizons x 5 models, plus Traffic iTransformer
    assert set(reference["dataset"]) <= set(TIME_SERIES)  # the catalogue's names
    assert set(reference["dataset"]) == {"ETTh1", "ETTh2", "ETTm1", "ETTm2", "electricity", "exchange_rate",
                                         "weather", "solar", "traffic"}
    assert set(reference["horizon"]) == {96, 192, 336, 720}
    unconfirmed = reference[~reference["confirmed"]]
    assert set(unconfirmed["dataset"]) == {"traffic"} and set(unconfirmed["model"]) == {"iTransformer"}
    assert len(unconfirmed) == 4
    assert reference["source"].str.contains("iTransformer (Liu et al., ICLR 2024)", regex=False).all()


def test_unknown_reference_lists_known_ones():
    with pytest.raises(FileNotFoundError, match="forecasting_lookback96"):
        load_reference("no_such_table")


# ---------------------------------------------------------------------------------------------- runs
def test_model_label():
    assert model_label({"model": "hot", "model/attention": "hot"}) == "hot"
    assert model_label({"model": "full"}) == "full"
    assert model_label({"model": "hot", "model/attention": "hot_linear"}) == "hot[hot_linear]"


def test_load_runs_long_form(sweep):
    runs = load_runs(sweep)
    assert list(runs.columns) == [*RUN_COLUMNS, *FACT_COLUMNS]
    assert len(runs) == 2 + 1 + 1 + 4 + 1  # the per-horizon run gives one row per horizon
    weather = runs[runs["dataset"] == "weather"]
    assert list(weather["horizon"]) == [96, 192, 336, 720]
    assert list(weather["mse"]) == [0.170, 0.220, 0.280, 0.360]
    assert weather["run_dir"].nunique() == 1
    failed = runs[runs["status"] == "failed"].iloc[0]
    assert (failed["model"], failed["dataset"], failed["horizon"]) == ("full", "ETTh1", 96)
    assert failed["error"] == OOM
    assert pd.isna(failed["mse"])
    assert set(runs["model"]) == {"hot", "full", "hot[hot_linear]"}


def test_job_without_results_is_missing_not_dropped(sweep):
    job = sweep / "9" / ".hydra"
    job.mkdir(parents=True)
    (job / "config.yaml").write_text("data:\n  name: ETTm1\n  pred_len: 192\nmodel:\n  horizons: null\n")
    (job / "hydra.yaml").write_text(
        "hydra:\n  runtime:\n    choices:\n      model: hot\n      model/attention: hot\n")
    runs = load_runs(sweep)
    row = runs[runs["status"] == "missing"].iloc[0]
    assert (row["model"], row["dataset"], row["horizon"]) == ("hot", "ETTm1", 192)
    table = fc_table(runs, load_reference("forecasting_lookback96"))
    assert table.loc[("ETTm1", 192), ("ours", "hot", "missing")] == 1
    assert md_row(to_markdown(table, runs), "ETTm1", 192)["hot MSE"] == "missing"


def test_empty_or_absent_sweep_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="no results.json"):
        load_runs(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_runs(tmp_path / "nope")


# ---------------------------------------------------------------------------------------------- table
def test_cells_differences_and_averaging(tmp_path, reference):
    write_job(tmp_path, 0, "hot", "ETTh1", 96, mse=0.400, mae=0.410)
    table = fc_table(load_runs(tmp_path), reference)
    row = table.loc[("ETTh1", 96)]
    assert row[("ours", "hot", "mse")] == 0.400 and row[("ours", "hot", "n")] == 1
    assert row[("published", "iTransformer", "mse")] == 0.386
    assert row[("published", "TimesNet", "mae")] == 0.402
    assert row[("diff", "hot", "mse")] == pytest.approx(0.014)  # ours - published: positive = worse
    assert row[("diff", "hot", "mae")] == pytest.approx(0.005)
    assert md_row(to_markdown(table, load_runs(tmp_path)), "ETTh1", 96)["Δ hot MSE"] == "+0.014"


def test_repeated_runs_are_averaged(sweep, reference):
    table = fc_table(load_runs(sweep), reference)
    row = table.loc[("ETTh1", 96)]
    assert row[("ours", "hot", "mse")] == pytest.approx(0.390)
    assert row[("ours", "hot", "mae")] == pytest.approx(0.405)
    assert row[("ours", "hot", "n")] == 2
    assert row[("diff", "hot", "mse")] == pytest.approx(0.390 - 0.386)


def test_per_horizon_run_fills_every_horizon(sweep, reference):
    table = fc_table(load_runs(sweep), reference)
    published_itransformer = {96: 0.174, 192: 0.221, 336: 0.278, 720: 0.358}
    for (h, published), mse in zip(published_itransformer.items(), (0.170, 0.220, 0.280, 0.360), strict=True):
        assert table.loc[("weather", h), ("ours", "hot", "mse")] == mse
        assert table.loc[("weather", h), ("diff", "hot", "mse")] == pytest.approx(mse - published)


def test_only_pairs_we_ran_and_other_baseline(sweep, reference):
    table = fc_table(load_runs(sweep), reference, baseline="PatchTST")
    assert list(table.index) == [("ETTh1", 96), ("ETTh2", 96), ("electricity", 96), ("weather", 96),
                                 ("weather", 192), ("weather", 336), ("weather", 720)]
    assert table.loc[("ETTh2", 96), ("diff", "full", "mse")] == pytest.approx(0.300 - 0.302)
    assert table.loc[("electricity", 96), ("diff", "hot[hot_linear]", "mae")] == pytest.approx(0.245 - 0.270)
    with pytest.raises(ValueError, match="choose one of"):
        fc_table(load_runs(sweep), reference, baseline="HOT")


def test_failed_run_is_a_cell_and_listed(sweep, reference):
    runs = load_runs(sweep)
    table = fc_table(runs, reference)
    assert table.loc[("ETTh1", 96), ("ours", "full", "failed")] == 1
    assert pd.isna(table.loc[("ETTh1", 96), ("ours", "full", "mse")])
    md = to_markdown(table, runs)
    row = md_row(md, "ETTh1", 96)
    assert row["full MSE"] == "failed" and row["full MAE"] == "failed"
    assert row["hot MSE"] == "0.390 ± 0.014" and row["hot n"] == "2"  # mean ± std over the two seeds
    failed_section = md.split("## Failed or missing jobs (1)")[1]
    assert OOM in failed_section and str(sweep / "2") in failed_section
    assert "not available" in md and "HOT" in md  # footnote: no published HOT numbers
    assert "failed" in to_latex(table)


def test_best_mse_bold_and_dagger(tmp_path, reference):
    write_job(tmp_path, 0, "hot", "ETTh1", 96, mse=0.380, mae=0.410)  # beats every published 0.384+
    write_job(tmp_path, 1, "hot", "traffic", 96, mse=0.500, mae=0.300)
    runs = load_runs(tmp_path)
    frame = display_frame(fc_table(runs, reference), "md")
    assert frame.loc[("ETTh1", 96), ("hot", "MSE")] == "**0.380**"
    assert frame.loc[("ETTh1", 96), ("TimesNet", "MSE")] == "0.384"
    assert frame.loc[("traffic", 96), ("iTransformer", "MSE")] == "**0.395**†"  # unconfirmed value
    assert frame.loc[("traffic", 96), ("PatchTST", "MSE")] == "–"


def test_latex_booktabs_three_decimals(sweep, reference):
    tex = to_latex(fc_table(load_runs(sweep), reference))
    for needle in (r"\toprule", r"\midrule", r"\bottomrule", r"\multicolumn{2}{c}{iTransformer}",
                   r"\textbf{", "0.386", "hot[hot\\_linear]", r"$\Delta$ hot", "not available"):
        assert needle in tex, needle


# ---------------------------------------------------------------------------------------------- CLI
def _cli_main():
    spec = importlib.util.spec_from_file_location("make_table", ROOT / "scripts" / "make_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def test_cli_writes_four_files(sweep, tmp_path, capsys):
    out = tmp_path / "paper"
    assert _cli_main()([str(sweep), "--out", str(out)]) == 0
    for name in ("table.md", "table.tex", "table.csv", "table.png"):
        assert (out / name).stat().st_size > 0, name
    stdout = capsys.readouterr().out
    assert stdout.strip() == (out / "table.md").read_text().strip()
    assert len(pd.read_csv(out / "table.csv")) == len(load_runs(sweep))
    assert (out / "table.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_fails_clearly_on_empty_dir(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "make_table.py"), str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "no results.json" in proc.stderr and str(tmp_path) in proc.stderr
    assert not list(tmp_path.iterdir())  # nothing written
