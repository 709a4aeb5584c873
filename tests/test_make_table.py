"""Sweep -> forecasting table: fake results.json folders (tests/tables.py), no training."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

from attnbench.analysis import classification
from attnbench.analysis.runs import FACT_COLUMNS, model_label
from attnbench.analysis.spec import experiment_spec
from attnbench.analysis.tables import (
    RUN_COLUMNS,
    forecasting_table,
    load_reference,
    load_runs,
    published_name,
    to_latex,
    to_markdown,
)
from attnbench.data.catalog import TIME_SERIES
from scripts.make_table import main as make_table
from tests.conftest import ROOT
from tests.tables import OOM, PNG, assert_snapshot, forecast_result, md_rows, write_forecast_hydra, write_result

pytest_plugins = ["tests.tables"]
SPEC = experiment_spec("hot/forecasting")  # the table the experiment declares


def fc_table(runs: pd.DataFrame, reference: pd.DataFrame, baseline: str | None = None) -> pd.DataFrame:
    """The forecasting table with the experiment's baseline (or ``baseline``) and notes."""
    return forecasting_table(runs, reference, baseline or SPEC.baseline[0], SPEC.notes)


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
def test_reference_matches_published(forecast_reference, dataset, horizon, model, mse, mae):
    row = forecast_reference.set_index(["dataset", "horizon", "model"]).loc[(dataset, horizon, model)]
    assert (row["mse"], row["mae"]) == (mse, mae)


def test_reference_shape_names_and_confirmation(forecast_reference):
    reference = forecast_reference
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
@pytest.mark.parametrize("label, choices, expected", [
    (model_label, {"model": "hot", "model/attention": "hot"}, "hot"),
    (model_label, {"model": "full"}, "full"),
    (model_label, {"model": "hot", "model/attention": "hot_linear"}, "hot[hot_linear]"),
    (classification.classifier_label, {"model": "hot3d", "model/attention": "hot"}, "hot3d"),  # hot3d's default
    (classification.classifier_label, {"model": "vit3d", "model/attention": "full"}, "vit3d"),
    (classification.classifier_label, {"model": "resnet3d"}, "resnet3d"),
    (classification.classifier_label, {"model": "hot3d", "model/attention": "hot_linear"}, "hot3d[hot_linear]"),
])
def test_labels_name_only_non_default_attention(label, choices, expected):
    assert label(choices) == expected


def test_load_runs_long_form(forecast_sweep):
    runs = load_runs(forecast_sweep)
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


def test_job_without_results_is_missing_not_dropped(forecast_sweep, forecast_reference):
    write_forecast_hydra(forecast_sweep / "9", "hot", "ETTm1", 192)
    runs = load_runs(forecast_sweep)
    row = runs[runs["status"] == "missing"].iloc[0]
    assert (row["model"], row["dataset"], row["horizon"]) == ("hot", "ETTm1", 192)
    table = fc_table(runs, forecast_reference)
    assert table.loc[("ETTm1", 192, "hot"), "missing"] == 1
    assert md_rows(to_markdown(table, runs), 3)[("ETTm1", "192", "hot")]["MSE"] == "missing"


@pytest.mark.parametrize("load", [load_runs, classification.load_runs], ids=["forecasting", "classification"])
def test_empty_or_absent_sweep_raises(tmp_path, load):
    with pytest.raises(FileNotFoundError, match="no results.json"):
        load(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load(tmp_path / "nope")


# ---------------------------------------------------------------------------------------------- table
def test_cells_differences_and_averaging(tmp_path, forecast_reference):
    write_result(tmp_path, 0, forecast_result("hot", "ETTh1", 96, mse=0.400, mae=0.410))
    table = fc_table(load_runs(tmp_path), forecast_reference)
    hot = table.loc[("ETTh1", 96, "hot")]
    assert hot["mse"] == 0.400 and hot["n"] == 1 and pd.isna(hot["pub_mse"])
    assert table.loc[("ETTh1", 96, "iTransformer"), "pub_mse"] == 0.386
    assert table.loc[("ETTh1", 96, "TimesNet"), "pub_mae"] == 0.402
    assert not table.loc[("ETTh1", 96, "TimesNet"), "ours"]  # published only: not run here
    assert hot["vs_base_pub_mse"] == pytest.approx(0.014)  # ours - published iTransformer: positive = worse
    assert hot["vs_base_pub_mae"] == pytest.approx(0.005)
    assert pd.isna(hot["vs_base_rerun_mse"])  # iTransformer was not rerun


def test_repeated_runs_are_averaged(forecast_sweep, forecast_reference):
    row = fc_table(load_runs(forecast_sweep), forecast_reference).loc[("ETTh1", 96, "hot")]
    assert row["mse"] == pytest.approx(0.390)
    assert row["mae"] == pytest.approx(0.405)
    assert row["n"] == 2
    assert row["vs_base_pub_mse"] == pytest.approx(0.390 - 0.386)


def test_per_horizon_run_fills_every_horizon(forecast_sweep, forecast_reference):
    table = fc_table(load_runs(forecast_sweep), forecast_reference)
    published_itransformer = {96: 0.174, 192: 0.221, 336: 0.278, 720: 0.358}
    for (h, published), mse in zip(published_itransformer.items(), (0.170, 0.220, 0.280, 0.360), strict=True):
        assert table.loc[("weather", h, "hot"), "mse"] == mse
        assert table.loc[("weather", h, "hot"), "vs_base_pub_mse"] == pytest.approx(mse - published)


def test_only_pairs_we_ran_and_other_baseline(forecast_sweep, forecast_reference):
    runs = load_runs(forecast_sweep)
    table = fc_table(runs, forecast_reference, baseline="PatchTST")
    pairs = list(dict.fromkeys((d, h) for d, h, _ in table.index))
    assert pairs == [("ETTh1", 96), ("ETTh2", 96), ("electricity", 96), ("weather", 96), ("weather", 192),
                     ("weather", 336), ("weather", 720)]
    # ours first (by name), then every published model at that pair in the reference's order
    assert list(table.loc[("ETTh1", 96)].index) == ["full", "hot", "iTransformer", "PatchTST", "DLinear", "RLinear",
                                                    "TimesNet"]
    assert table.loc[("ETTh2", 96, "full"), "vs_base_pub_mse"] == pytest.approx(0.300 - 0.302)
    assert table.loc[("electricity", 96, "hot[hot_linear]"), "vs_base_pub_mae"] == pytest.approx(0.245 - 0.270)
    with pytest.raises(ValueError, match="choose one of"):
        fc_table(runs, forecast_reference, baseline="HOT")


def test_failed_run_is_a_cell_and_listed(forecast_sweep, forecast_reference):
    runs = load_runs(forecast_sweep)
    table = fc_table(runs, forecast_reference)
    assert table.loc[("ETTh1", 96, "full"), "failed"] == 1
    assert pd.isna(table.loc[("ETTh1", 96, "full"), "mse"])
    md = to_markdown(table, runs)
    row = md_rows(md, 3)[("ETTh1", "96", "full")]
    assert row["MSE"] == "failed" and row["MAE"] == "failed" and row["n"] == "0 (+1 failed)"
    failed_section = md.split("## Failed or missing jobs (1)")[1]
    assert OOM in failed_section and str(forecast_sweep / "2") in failed_section
    assert_snapshot(md, "test_failed_run_is_a_cell_and_listed.md")
    assert_snapshot(to_latex(table), "test_failed_run_is_a_cell_and_listed.tex")


def test_best_mse_bold_and_dagger(tmp_path, forecast_reference):
    """hot's 0.380 beats every published 0.384+ (bold); Traffic's iTransformer values are unconfirmed (†)."""
    write_result(tmp_path, 0, forecast_result("hot", "ETTh1", 96, mse=0.380, mae=0.410))
    write_result(tmp_path, 1, forecast_result("hot", "traffic", 96, mse=0.500, mae=0.300))
    runs = load_runs(tmp_path)
    assert_snapshot(to_markdown(fc_table(runs, forecast_reference), runs), "test_best_mse_bold_and_dagger.md")


# ---------------------------------------------------------------------------------------------- CLI
def test_cli_writes_four_files(forecast_sweep, tmp_path, capsys):
    out = tmp_path / "paper"
    assert make_table([str(forecast_sweep), "--out", str(out)]) == 0
    for name in ("table.md", "table.tex", "table.csv", "table.png"):
        assert (out / name).stat().st_size > 0, name
    assert capsys.readouterr().out.strip() == (out / "table.md").read_text().strip()
    assert len(pd.read_csv(out / "table.csv")) == len(load_runs(forecast_sweep))
    assert (out / "table.png").read_bytes()[:8] == PNG


def test_cli_fails_clearly_on_empty_dir(tmp_path):
    """The one run of the script as a process: its exit status."""
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "make_table.py"), str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "no results.json" in proc.stderr and str(tmp_path) in proc.stderr
    assert not list(tmp_path.iterdir())  # nothing written


# ---------------------------------------------------------------------------------------------- reruns
@pytest.mark.parametrize("label, expected", [
    ("itransformer", "iTransformer"), ("itransformer[full]", "iTransformer"), ("timesnet", "TimesNet"),
    ("itransformer[performer]", None),  # another attention: not the published model
    ("itransformer[full]‡", None),  # truncated
    ("dlinear (model.optimizer.lr=0.1)", None),  # another recipe
    ("hot", None),
])
def test_published_name_of_a_rerun(label, expected):
    assert published_name(label, ["iTransformer", "PatchTST", "DLinear", "RLinear", "TimesNet"]) == expected


def test_reruns_share_the_published_row_with_both_deltas(tmp_path, forecast_reference):
    """The issue's table: each baseline's rerun beside its published value; HOT's Δ against the rerun
    iTransformer as well as the published one; the cost of every run of ours."""
    for seed, (it, dl, hot) in enumerate([(0.390, 0.400, 0.410), (0.394, 0.396, 0.400)], start=1):
        write_result(tmp_path, f"it{seed}", forecast_result("itransformer", seed=seed, mse=it, attention="full",
                                                            epoch_s=8.0 + seed))
        write_result(tmp_path, f"dl{seed}", forecast_result("dlinear", seed=seed, mse=dl, epoch_s=1.0))
        write_result(tmp_path, f"hot{seed}", forecast_result("hot", seed=seed, mse=hot, epoch_s=60.0))
    runs = load_runs(tmp_path)
    table = fc_table(runs, forecast_reference)
    assert list(table.loc[("ETTh1", 96)].index) == ["hot", "iTransformer", "PatchTST", "DLinear", "RLinear",
                                                    "TimesNet"]
    it, dl, hot = (table.loc[("ETTh1", 96, m)] for m in ("iTransformer", "DLinear", "hot"))
    assert it["mse"] == pytest.approx(0.392) and it["n"] == 2 and it["pub_mse"] == 0.386
    assert it["vs_pub_mse"] == pytest.approx(0.392 - 0.386) and pd.isna(it["vs_base_rerun_mse"])
    assert dl["vs_pub_mse"] == pytest.approx(0.398 - 0.386)  # DLinear's published ETTh1-96 is 0.386 too
    assert hot["vs_base_rerun_mse"] == pytest.approx(0.405 - 0.392)
    assert hot["vs_base_pub_mse"] == pytest.approx(0.405 - 0.386) and pd.isna(hot["vs_pub_mse"])
    assert it["epoch_s"] == pytest.approx(9.5) and hot["n_params"] == 1198560
    assert table.attrs["baseline_rerun"] == "iTransformer"
    md = to_markdown(table, runs)
    rows = md_rows(md, 3)
    assert rows[("ETTh1", "96", "iTransformer")]["MSE"] == "0.392 ± 0.003"
    assert rows[("ETTh1", "96", "iTransformer")]["published MSE"] == "0.386"
    assert rows[("ETTh1", "96", "iTransformer")]["ours − published"] == "+0.006 / -0.003"  # MAE 0.402 - 0.405
    assert rows[("ETTh1", "96", "hot")]["Δ iTransformer (rerun)"] == "+0.013 / +0.013"
    assert rows[("ETTh1", "96", "hot")]["Δ iTransformer (published)"] == "+0.019 / +0.010"
    assert rows[("ETTh1", "96", "TimesNet")]["MSE"] == "–" and rows[("ETTh1", "96", "TimesNet")]["n"] == ""
    assert rows[("ETTh1", "96", "TimesNet")]["published MSE"] == "**0.384**"  # the best of the row
    cost = md_rows(md.split("## Cost of our runs")[1], 3)
    assert cost[("ETTh1", "96", "iTransformer")]["s / epoch"] == "9.5"
    assert cost[("ETTh1", "96", "hot")]["params (M)"] == "1.199"
    assert ("ETTh1", "96", "TimesNet") not in cost  # published only: no cost of ours


def test_single_variable_runs_get_rows_of_their_own(tmp_path, forecast_reference):
    """CAB's LSTF sweeps lstf=ETTh1_M,ETTh1_S: the features are a row key, never a column or a published match."""
    write_result(tmp_path, 0, forecast_result("informer", mse=0.8, overrides=["lstf=ETTh1_M"]))
    write_result(tmp_path, 1, forecast_result("informer", mse=0.1, features="S", overrides=["lstf=ETTh1_S"]))
    runs = load_runs(tmp_path)
    assert set(runs["model"]) == {"informer"} and set(runs["dataset"]) == {"ETTh1", "ETTh1 (S)"}
    table = fc_table(runs, forecast_reference)
    assert table.loc[("ETTh1 (S)", 96, "informer"), "mse"] == 0.1
    assert list(table.loc[("ETTh1 (S)", 96)].index) == ["informer"]  # the published M values are not its rivals
