"""Seeds and truncated runs in every table: mean ± std over seeds, a footnote marker on cut-short runs."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from attnbench.analysis import classification, tables
from attnbench.analysis.report import write_table
from attnbench.analysis.runs import job_facts, label_variants, truncation_reasons
from attnbench.analysis.spec import is_step
from tests.conftest import compose_train
from tests.tables import (
    EXPERIMENTS,
    assert_snapshot,
    forecast_result,
    glue_result,
    write_cls_job,
    write_forecast_hydra,
    write_result,
)

pytest_plugins = ["tests.tables"]
REF = "forecasting_lookback96"
CLS_BASELINES = ["ResNet-18 (3D)", "ResNet-50 (3D)"]
SWEEP_OVERRIDES = ["trainer.max_epochs=3", "callbacks.early_stopping.patience=1", "callbacks.rich_progress_bar=null"]


# ---------------------------------------------------------------------------------------------- truncation
def test_truncation_reasons_from_config_choices_and_overrides():
    assert truncation_reasons(forecast_result()) == []
    assert truncation_reasons(forecast_result(debug="fast", task_name="debug",
                                              limits={"limit_train_batches": 3, "limit_val_batches": 2})) == [
        "debug run (debug=fast)", "batch limits (train 3, val 2)"]
    assert truncation_reasons(forecast_result(limits={"limit_train_batches": 1.0, "limit_test_batches": 0.25})) == [
        "batch limits (test 0.25)"]  # 1.0 is all batches, 0.25 a quarter
    assert truncation_reasons(forecast_result(limits={"limit_val_batches": 1})) == ["batch limits (val 1)"]
    # compared with what conf/ gives the run's experiment: 20 epochs, patience 3 (conf/trainer, conf/callbacks)
    assert truncation_reasons(forecast_result(overrides=SWEEP_OVERRIDES)) == [
        "reduced budget (3 epochs < 20, patience 1 < 3)"]
    assert truncation_reasons(forecast_result(overrides=["+trainer.max_steps=10"])) == [
        "reduced budget (trainer.max_steps=10 < no limit)"]
    assert truncation_reasons(forecast_result(overrides=[
        "trainer.max_epochs=50", "callbacks.early_stopping.patience=3", "trainer.max_steps=-1"])) == []  # not cut
    assert truncation_reasons(forecast_result(overrides=["callbacks.early_stopping.min_delta=0.1"])) == [
        "reduced budget (callbacks.early_stopping.min_delta=0.1)"]  # stops sooner than min_delta 0.0
    # a baseline is compared with its recipe for the data set (TimesNet: 10 epochs), not the experiment's 20
    assert truncation_reasons(forecast_result("timesnet", overrides=["trainer.max_epochs=15"])) == []
    assert truncation_reasons(forecast_result("timesnet", overrides=["trainer.max_epochs=5"])) == [
        "reduced budget (5 epochs < 10)"]
    renamed = forecast_result(overrides=["trainer.max_epochs=50"])
    renamed["choices"]["experiment"] = "no/such_experiment"  # cannot compose: any budget override is marked
    assert truncation_reasons(renamed) == ["budget overridden (trainer.max_epochs=50)"]


def test_job_facts_read_seed_and_overrides():
    facts = job_facts(forecast_result(seed=7, overrides=["model.optimizer.lr=0.01"]))
    assert facts["seed"] == 7 and facts["truncated"] == "" and "model.optimizer.lr=0.01" in facts["overrides"]
    old = {"status": "ok", "choices": {"model": "hot"}, "config": {"data": {}}}  # an older results.json
    assert job_facts(old) == {"seed": None, "truncated": "", "overrides": ()}


def test_labels_name_differing_overrides_not_seeds_or_table_keys():
    rows = [{"model": "hot", **job_facts(forecast_result(seed=s, dataset=d, overrides=[
                f"model.optimizer.lr={lr}", "trainer.gradient_clip_val=0"]))}
            for s in (1, 2) for d in ("ETTh1", "ETTh2") for lr in (0.1, 0.01)]
    runs = label_variants(pd.DataFrame(rows), tables.FORECAST_KEYS)
    assert sorted(set(runs["model"])) == ["hot (model.optimizer.lr=0.01)", "hot (model.optimizer.lr=0.1)"]
    assert runs.attrs["common_overrides"] == ["trainer.gradient_clip_val=0"]


# ---------------------------------------------------------------------------------------------- forecasting
@pytest.fixture
def mixed_sweep(sweep_root: Path) -> Path:
    """Three seeds of hot and of full on ETTh1-96, one debug run of hot, one interrupted full run."""
    for i, (s, mse) in enumerate([(1, 0.40), (2, 0.42), (3, 0.44)]):
        write_result(sweep_root, i, forecast_result("hot", seed=s, mse=mse))
        write_result(sweep_root, 10 + i, forecast_result("full", seed=s, mse=mse - 0.02))
    write_result(sweep_root, 20, forecast_result("hot", seed=1, mse=0.9, debug="fast", task_name="debug",
                                                 limits={"limit_train_batches": 3, "limit_test_batches": 2}))
    write_result(sweep_root, 21, forecast_result("full", seed=4, status="interrupted"))
    return sweep_root


def test_forecasting_cells_are_mean_std_n_and_truncated_runs_marked(mixed_sweep):
    runs = tables.load_runs(mixed_sweep)
    assert set(runs["model"]) == {"hot", "full", "hot‡"}  # the debug run is not averaged with the full runs
    table = tables.forecasting_table(runs, tables.load_reference(REF), "iTransformer")
    rows = table.loc[("ETTh1", 96)]
    assert rows.loc["hot", "mse"] == pytest.approx(0.42) and rows.loc["hot", "n"] == 3
    assert rows.loc["hot", "mse_std"] == pytest.approx(0.02)  # sample std of 0.40, 0.42, 0.44
    assert rows.loc["hot‡", "mse"] == pytest.approx(0.9) and rows.loc["hot‡", "n"] == 1
    assert pd.isna(rows.loc["hot‡", "vs_base_pub_mse"]) and rows.loc["hot‡", "truncated"]  # no Δ when truncated
    assert rows.loc["full", "failed"] == 1  # interrupted counts as failed, never as a score
    name = "test_forecasting_cells_are_mean_std_n_and_truncated_runs_marked"
    assert_snapshot(tables.to_markdown(table, runs), f"{name}.md")
    assert_snapshot(tables.to_latex(table), f"{name}.tex")


def test_todays_sweep_with_reduced_budget_is_marked_everywhere(sweep_root):
    """The coordinator's sweep: seed=1 trainer.max_epochs=3 callbacks.early_stopping.patience=1 on every job."""
    write_result(sweep_root, 0, forecast_result("hot", overrides=SWEEP_OVERRIDES))
    write_result(sweep_root, 1, forecast_result("full", overrides=SWEEP_OVERRIDES, mse=0.5))
    md, paths = write_table(sweep_root)
    assert set(tables.load_runs(sweep_root)["model"]) == {"hot‡", "full‡"}
    assert_snapshot(md, "test_todays_sweep_with_reduced_budget_is_marked_everywhere.md")
    assert [p.name for p in paths] == ["table.md", "table.tex", "table.csv", "table.png"]
    assert all(p.is_file() for p in paths)


def test_missing_job_reads_overrides_from_hydra(sweep_root):
    write_result(sweep_root, 0, forecast_result("hot", overrides=SWEEP_OVERRIDES))
    write_forecast_hydra(sweep_root / "1", seed=2, overrides=[
        "model=hot", "seed=2", "trainer.max_epochs=3", "callbacks.early_stopping.patience=1"])
    runs = tables.load_runs(sweep_root)
    assert set(runs["model"]) == {"hot‡"} and sorted(runs["status"]) == ["missing", "ok"]


# ---------------------------------------------------------------------------------------------- classification
def test_classification_mean_std_and_truncated_runs_get_no_delta(sweep_root):
    write_cls_job(sweep_root, 0, "hot3d", seed=43, acc=0.90)
    write_cls_job(sweep_root, 1, "hot3d", seed=44, acc=0.92)
    write_cls_job(sweep_root, 2, "vit3d", seed=43, acc=0.99, debug="fast")  # a debug run better than everything
    runs = classification.load_runs(sweep_root)
    assert set(runs["model"]) == {"hot3d", "vit3d‡"}
    table = classification.classification_table(runs, classification.load_reference("medmnist3d"), CLS_BASELINES)
    row = table.loc[("organmnist3d", 28)]
    assert row[("ours", "hot3d", "acc_std")] == pytest.approx(0.0141421, abs=1e-6)
    assert row[("diff", "best", "acc")] == pytest.approx(0.91 - 0.907)  # from hot3d, not the debug vit3d‡
    # the debug run's 0.99 is shown but never the row's best
    assert_snapshot(classification.to_markdown(table, runs),
                    "test_classification_mean_std_and_truncated_runs_get_no_delta.md")


# ---------------------------------------------------------------------------------------------- GLUE
def test_glue_cells_show_mean_std_and_n(sweep_root):
    for i, (seed, score) in enumerate([(42, 66.0), (43, 68.0)]):
        result = glue_result("bert", "rte", score, seed=seed, experiment="smyrf/glue")
        result["config"]["model"]["net"]["pretrained"] = "bert-base-uncased"
        write_result(sweep_root, i, result)
    md, _ = write_table(sweep_root)
    assert_snapshot(md, "test_glue_cells_show_mean_std_and_n.md")


# ---------------------------------------------------------------------------------------------- experiments
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_sweeps_three_seeds(experiment):
    if is_step(experiment):  # table: null, e.g. treeformer/mlm (one checkpoint for treeformer/glue)
        return
    cfg = compose_train([f"experiment={experiment}"], hydra=True)
    seeds = str(cfg.hydra.sweeper.params["seed"]).split(",")
    assert len(seeds) == 3 and len(set(seeds)) == 3, (experiment, seeds)


# ---------------------------------------------------------------------------------------------- plots
def _legend_inside(fig) -> tuple[list[str], bool]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    (legend,) = fig.legends
    box = legend.get_window_extent(canvas.get_renderer())
    inside = box.x0 >= 0 and box.y0 >= 0 and box.x1 <= fig.bbox.x1 and box.y1 <= fig.bbox.y1
    return [t.get_text() for t in legend.get_texts()], inside


def test_plot_legends_keep_every_label_inside_the_figure(tmp_path):
    """One panel and nine labels: the old one-row legend cut `full` and `hot` off at the figure's edges."""
    root = tmp_path / "sweep"
    write_result(root, 0, forecast_result("hot", mse=0.4))
    write_result(root, 1, forecast_result("full", mse=0.41, debug="fast", task_name="debug"))
    write_result(root, 2, forecast_result("hot", seed=3, status="failed", overrides=["model.optimizer.lr=0.1"]))
    table = tables.forecasting_table(tables.load_runs(root), tables.load_reference(REF), "iTransformer")
    labels, inside = _legend_inside(tables.mse_figure(table))
    assert labels[:3] == ["full‡ (ours)", "hot (ours)", "hot (model.optimizer.lr=0.1) (ours)"]
    assert "failed / missing" in labels and "TimesNet (published)" in labels and inside
    cls_root = tmp_path / "cls"
    for i, m in enumerate(["hot3d", "vit3d", "resnet3d"]):
        write_cls_job(cls_root, i, m, seed=43, acc=0.8 + i / 100)
    cls_table = classification.classification_table(classification.load_runs(cls_root),
                                                    classification.load_reference("medmnist3d"), CLS_BASELINES)
    labels, inside = _legend_inside(classification.acc_figure(cls_table))
    assert labels == ["hot3d", "resnet3d", "vit3d", "best published"] and inside


def test_named_job_folders_and_old_numbered_ones_read_alike(tmp_path):
    """New layout (<num>_<overrides>, '=' and ',' in names) beside the old one (<num>), a missing job included."""
    root = tmp_path / "sweep"
    write_result(root, "0_data.name=ETTh1,model=hot,seed=1", forecast_result("hot", seed=1, mse=0.40))
    write_result(root, "1", forecast_result("hot", seed=2, mse=0.42))
    write_forecast_hydra(root / "2_data.name=ETTh1,model=hot,seed=3", seed=3,
                         overrides=["model=hot", "data.name=ETTh1", "seed=3"])
    runs = tables.load_runs(root)
    assert sorted(runs["status"]) == ["missing", "ok", "ok"] and set(runs["model"]) == {"hot"}
    table = tables.forecasting_table(runs, tables.load_reference(REF), "iTransformer")
    assert table.loc[("ETTh1", 96, "hot"), "n"] == 2
    assert table.loc[("ETTh1", 96, "hot"), "missing"] == 1
