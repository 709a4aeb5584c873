"""Seeds and truncated runs in every table: mean ± std over seeds, a footnote marker on cut-short runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from attnbench.analysis import classification, tables
from attnbench.analysis.report import write_table
from attnbench.analysis.runs import job_facts, label_variants, truncation_reasons
from attnbench.analysis.spec import is_step
from attnbench.config import register_configs

ROOT = Path(__file__).resolve().parents[1]
REF = "forecasting_lookback96"
CLS_BASELINES = ["ResNet-18 (3D)", "ResNet-50 (3D)"]
GLUE_TARGET = "attnbench.lit.text_classification.TextClassificationModule"
SWEEP_OVERRIDES = ["trainer.max_epochs=3", "callbacks.early_stopping.patience=1", "callbacks.rich_progress_bar=null"]


def result(model: str = "hot", dataset: str = "ETTh1", pred_len: int = 96, seed: int = 1, mse: float = 0.4,
           overrides: list[str] | None = None, debug: str | None = None, limits: dict | None = None,
           status: str = "ok", task_name: str = "hot_forecasting") -> dict:
    """A results.json in the layout today's train.run_with_results writes (no fields added for the tables)."""
    trainer = {"max_epochs": 20, "limit_train_batches": None, "limit_val_batches": None,
               "limit_test_batches": None, **(limits or {})}
    choices = {"model": model, "model/attention": model, "data": "ett", "trainer": "cpu", "logger": "csv",
               "experiment": "hot/forecasting", "debug": debug}
    return {"status": status, "error": None if status == "ok" else "KeyboardInterrupt: ",
            "metrics": {"test/mse": mse, "test/mae": mse + 0.01, "n_params": 10, "epochs": 3} if status == "ok"
            else {}, "best_checkpoint": None, "choices": choices,
            "overrides": [f"model={model}", f"data.name={dataset}", f"data.pred_len={pred_len}",
                          "experiment=hot/forecasting", f"seed={seed}", *(overrides or [])],
            "job_num": 0, "wall_time_s": 12.0, "peak_memory_mb": 900.0, "peak_memory_kind": "cpu_max_rss",
            "config": {"task_name": task_name, "seed": seed, "trainer": trainer,
                       "data": {"name": dataset, "pred_len": pred_len, "seq_len": 96},
                       "model": {"horizons": None}}}


def write(root: Path, num: int | str, res: dict) -> None:
    d = root / str(num)
    d.mkdir(parents=True)
    (d / "results.json").write_text(json.dumps(res))


# ---------------------------------------------------------------------------------------------- truncation
def test_truncation_reasons_from_config_choices_and_overrides():
    assert truncation_reasons(result()) == []
    assert truncation_reasons(result(debug="fast", task_name="debug",
                                     limits={"limit_train_batches": 3, "limit_val_batches": 2})) == [
        "debug run (debug=fast)", "batch limits (train 3, val 2)"]
    assert truncation_reasons(result(limits={"limit_train_batches": 1.0, "limit_test_batches": 0.25})) == [
        "batch limits (test 0.25)"]  # 1.0 is all batches, 0.25 a quarter
    assert truncation_reasons(result(limits={"limit_val_batches": 1})) == ["batch limits (val 1)"]  # one batch
    # compared with what conf/ gives the run's experiment: 20 epochs, patience 3 (conf/trainer, conf/callbacks)
    assert truncation_reasons(result(overrides=SWEEP_OVERRIDES)) == ["reduced budget (3 epochs < 20, patience 1 < 3)"]
    assert truncation_reasons(result(overrides=["+trainer.max_steps=10"])) == [
        "reduced budget (trainer.max_steps=10 < no limit)"]
    assert truncation_reasons(result(overrides=["trainer.max_epochs=50", "callbacks.early_stopping.patience=3",
                                                "trainer.max_steps=-1"])) == []  # longer or equal: not cut
    assert truncation_reasons(result(overrides=["callbacks.early_stopping.min_delta=0.1"])) == [
        "reduced budget (callbacks.early_stopping.min_delta=0.1)"]  # stops sooner than min_delta 0.0
    renamed = result(overrides=["trainer.max_epochs=50"])
    renamed["choices"]["experiment"] = "no/such_experiment"  # cannot compose: any budget override is marked
    assert truncation_reasons(renamed) == ["budget overridden (trainer.max_epochs=50)"]


def test_job_facts_read_seed_and_overrides():
    facts = job_facts(result(seed=7, overrides=["model.optimizer.lr=0.01"]))
    assert facts["seed"] == 7 and facts["truncated"] == "" and "model.optimizer.lr=0.01" in facts["overrides"]
    old = {"status": "ok", "choices": {"model": "hot"}, "config": {"data": {}}}  # an older results.json
    assert job_facts(old) == {"seed": None, "truncated": "", "overrides": ()}


def test_labels_name_differing_overrides_not_seeds_or_table_keys():
    import pandas as pd

    rows = [{"model": "hot", **job_facts(result(seed=s, dataset=d, overrides=[f"model.optimizer.lr={lr}",
                                                                          "trainer.gradient_clip_val=0"]))}
            for s in (1, 2) for d in ("ETTh1", "ETTh2") for lr in (0.1, 0.01)]
    runs = label_variants(pd.DataFrame(rows), tables.FORECAST_KEYS)
    assert sorted(set(runs["model"])) == ["hot (model.optimizer.lr=0.01)", "hot (model.optimizer.lr=0.1)"]
    assert runs.attrs["common_overrides"] == ["trainer.gradient_clip_val=0"]


# ---------------------------------------------------------------------------------------------- forecasting
@pytest.fixture
def mixed_sweep(tmp_path: Path) -> Path:
    """Three seeds of hot and of full on ETTh1-96, one debug run of hot, one interrupted full run."""
    root = tmp_path / "sweep"
    for i, (s, mse) in enumerate([(1, 0.40), (2, 0.42), (3, 0.44)]):
        write(root, i, result("hot", seed=s, mse=mse))
        write(root, 10 + i, result("full", seed=s, mse=mse - 0.02))
    write(root, 20, result("hot", seed=1, mse=0.9, debug="fast", task_name="debug",
                           limits={"limit_train_batches": 3, "limit_test_batches": 2}))
    write(root, 21, result("full", seed=4, status="interrupted"))
    return root


def test_forecasting_cells_are_mean_std_n_and_truncated_runs_marked(mixed_sweep):
    runs = tables.load_runs(mixed_sweep)
    assert set(runs["model"]) == {"hot", "full", "hot‡"}  # the debug run is not averaged with the full runs
    table = tables.forecasting_table(runs, tables.load_reference(REF), "iTransformer")
    row = table.loc[("ETTh1", 96)]
    assert row[("ours", "hot", "mse")] == pytest.approx(0.42) and row[("ours", "hot", "n")] == 3
    assert row[("ours", "hot", "mse_std")] == pytest.approx(0.02)  # sample std of 0.40, 0.42, 0.44
    assert row[("ours", "hot‡", "mse")] == pytest.approx(0.9) and row[("ours", "hot‡", "n")] == 1
    assert row[("ours", "full", "failed")] == 1  # interrupted counts as failed, never as a score
    md = tables.to_markdown(table, runs)
    header = next(ln for ln in md.splitlines() if ln.startswith("| dataset"))
    cells = dict(zip([c.strip() for c in header.strip("|").split("|")],
                     [c.strip() for c in md.splitlines()[md.splitlines().index(header) + 2].strip("|").split("|")],
                     strict=True))
    assert cells["hot MSE"] == "0.420 ± 0.020" and cells["hot n"] == "3"
    assert cells["hot‡ MSE"] == "0.900" and cells["hot‡ n"] == "1"
    assert cells["full MSE"] == "0.400 ± 0.020"  # not bold: published 0.384 is better
    assert cells["full n"] == "3 (+1 failed)"
    assert "- ‡ truncated run: debug run (debug=fast); batch limits (train 3, test 2). Not comparable" in md
    tex = tables.to_latex(table)
    assert r"hot\ddag{}" in tex and r"0.420 $\pm$ 0.020" in tex and "‡" not in tex


def test_todays_sweep_with_reduced_budget_is_marked_everywhere(tmp_path):
    """The coordinator's sweep: seed=1 trainer.max_epochs=3 callbacks.early_stopping.patience=1 on every job."""
    root = tmp_path / "sweep"
    write(root, 0, result("hot", overrides=SWEEP_OVERRIDES))
    write(root, 1, result("full", overrides=SWEEP_OVERRIDES, mse=0.5))
    md, paths = write_table(root)
    header = next(ln for ln in md.splitlines() if ln.startswith("| dataset")).split("|")
    assert {"hot‡ MSE", "full‡ MSE"} <= {c.strip() for c in header} and "hot MSE" not in md
    assert "‡ truncated run: reduced budget (3 epochs < 20, patience 1 < 3)" in md
    assert [p.name for p in paths] == ["table.md", "table.tex", "table.csv", "table.png"]
    assert all(p.is_file() for p in paths)


def test_missing_job_reads_overrides_from_hydra(tmp_path):
    root = tmp_path / "sweep"
    write(root, 0, result("hot", overrides=SWEEP_OVERRIDES))
    hyd = root / "1" / ".hydra"
    hyd.mkdir(parents=True)
    (hyd / "config.yaml").write_text("seed: 2\ndata:\n  name: ETTh1\n  pred_len: 96\nmodel:\n  horizons: null\n")
    (hyd / "hydra.yaml").write_text("hydra:\n  runtime:\n    choices:\n      model: hot\n      model/attention: hot\n")
    (hyd / "overrides.yaml").write_text("- model=hot\n- seed=2\n- trainer.max_epochs=3\n"
                                        "- callbacks.early_stopping.patience=1\n")
    runs = tables.load_runs(root)
    assert set(runs["model"]) == {"hot‡"} and sorted(runs["status"]) == ["missing", "ok"]


# ---------------------------------------------------------------------------------------------- classification
def cls_result(model: str, seed: int, acc: float, debug: str | None = None) -> dict:
    res = {"status": "ok", "error": None, "metrics": {"test/acc": acc, "test/auc": acc, "epochs": 5},
           "choices": {"model": model, "data": "medmnist3d", "debug": debug},
           "overrides": [f"model={model}", "data.name=organmnist3d", f"seed={seed}"],
           "config": {"seed": seed, "task_name": "debug" if debug else "hot_medmnist3d",
                      "trainer": {"limit_train_batches": 3 if debug else None},
                      "data": {"name": "organmnist3d", "size": 28},
                      "model": {"_target_": "attnbench.lit.classification.ClassificationModule"}}, "wall_time_s": 60.0}
    return res


def test_classification_mean_std_and_truncated_runs_get_no_delta(tmp_path):
    root = tmp_path / "sweep"
    write(root, 0, cls_result("hot3d", 43, 0.90))
    write(root, 1, cls_result("hot3d", 44, 0.92))
    write(root, 2, cls_result("vit3d", 43, 0.99, debug="fast"))  # a debug run better than everything
    runs = classification.load_runs(root)
    table = classification.classification_table(runs, classification.load_reference("medmnist3d"), CLS_BASELINES)
    row = table.loc[("organmnist3d", 28)]
    assert row[("ours", "hot3d", "acc_std")] == pytest.approx(0.0141421, abs=1e-6)
    assert row[("diff", "best", "acc")] == pytest.approx(0.91 - 0.907)  # from hot3d, not the debug vit3d‡
    md = classification.to_markdown(table, runs)
    assert "0.910 ± 0.014" in md and "vit3d‡ ACC" in md and "‡ truncated run: debug run (debug=fast)" in md
    assert "**0.990**" not in md and "0.990" in md  # the debug run's 0.99 is shown but never the row's best


# ---------------------------------------------------------------------------------------------- GLUE
def test_glue_cells_show_mean_std_and_n(tmp_path):
    root = tmp_path / "sweep"
    for i, (seed, score) in enumerate([(42, 66.0), (43, 68.0)]):
        write(root, i, {"status": "ok", "metrics": {"test/score": score},
                        "choices": {"model": "bert", "model/attention": "full", "experiment": "smyrf/glue"},
                        "overrides": ["model=bert", "data.task=rte", f"seed={seed}"],
                        "config": {"seed": seed, "model": {"_target_": GLUE_TARGET,
                                                           "net": {"pretrained": "bert-base-uncased",
                                                                   "attention": {"name": "full"}}},
                                   "data": {"task": "rte"}}})
    md, _ = write_table(root)
    assert "| ours: bert | 67.00 ± 1.41 (n=2) | 67.00 |" in md


# ---------------------------------------------------------------------------------------------- experiments
@pytest.mark.parametrize("experiment", sorted(
    str(p.relative_to(ROOT / "conf" / "experiment").with_suffix("")) for p in (ROOT / "conf" / "experiment").rglob(
        "*.yaml")))
def test_every_experiment_sweeps_three_seeds(experiment):
    if is_step(experiment):  # table: null, e.g. treeformer/mlm (one checkpoint for treeformer/glue)
        return
    register_configs()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
            cfg = compose("train", overrides=[f"experiment={experiment}"], return_hydra_config=True)
    finally:
        GlobalHydra.instance().clear()
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
    write(root, 0, result("hot", mse=0.4))
    write(root, 1, result("full", mse=0.41, debug="fast", task_name="debug"))
    write(root, 2, result("hot", seed=3, status="failed", overrides=["model.optimizer.lr=0.1"]))
    table = tables.forecasting_table(tables.load_runs(root), tables.load_reference(REF), "iTransformer")
    labels, inside = _legend_inside(tables.mse_figure(table))
    assert labels[:3] == ["full‡", "hot", "hot (model.optimizer.lr=0.1)"] and "failed / missing" in labels
    assert "TimesNet" in labels and inside
    cls_root = tmp_path / "cls"
    for i, m in enumerate(["hot3d", "vit3d", "resnet3d"]):
        write(cls_root, i, cls_result(m, 43, 0.8 + i / 100))
    cls_table = classification.classification_table(classification.load_runs(cls_root),
                                                    classification.load_reference("medmnist3d"), CLS_BASELINES)
    labels, inside = _legend_inside(classification.acc_figure(cls_table))
    assert labels == ["hot3d", "resnet3d", "vit3d", "best published"] and inside


def test_named_job_folders_and_old_numbered_ones_read_alike(tmp_path):
    """New layout (<num>_<overrides>, '=' and ',' in names) beside the old one (<num>), a missing job included."""
    root = tmp_path / "sweep"
    write(root, "0_data.name=ETTh1,model=hot,seed=1", result("hot", seed=1, mse=0.40))
    write(root, "1", result("hot", seed=2, mse=0.42))
    hyd = root / "2_data.name=ETTh1,model=hot,seed=3" / ".hydra"
    hyd.mkdir(parents=True)
    (hyd / "config.yaml").write_text("seed: 3\ndata:\n  name: ETTh1\n  pred_len: 96\nmodel:\n  horizons: null\n")
    (hyd / "overrides.yaml").write_text("- model=hot\n- data.name=ETTh1\n- seed=3\n")
    (hyd / "hydra.yaml").write_text("hydra:\n  runtime:\n    choices:\n      model: hot\n")
    runs = tables.load_runs(root)
    assert sorted(runs["status"]) == ["missing", "ok", "ok"] and set(runs["model"]) == {"hot"}
    table = tables.forecasting_table(runs, tables.load_reference(REF), "iTransformer")
    assert table.loc[("ETTh1", 96), ("ours", "hot", "n")] == 2
    assert table.loc[("ETTh1", 96), ("ours", "hot", "missing")] == 1
