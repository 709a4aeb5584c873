"""Accuracy vs attention FLOPs and learning curves from stored sweeps: fake job folders in the on-disk layout
(results.json, csv/metrics.csv, multirun.yaml; tests/tables.py), no training."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from attnbench.analysis.report import write_table
from attnbench.analysis.spec import parse_spec
from scripts.make_table import main as make_table
from tests.tables import CURVES, LRA_TABLE, PNG, assert_snapshot, glue_result, lra_job, metrics_csv, write_result

pytest_plugins = ["tests.tables"]


def test_cost_table_share_of_full_and_plot(lra_sweep, tmp_path):
    out = tmp_path / "out"
    md, paths = write_table(lra_sweep, out)
    names = [p.name for p in paths]
    assert names[:4] == ["table.md", "table.tex", "table.csv", "runs.csv"]
    assert {"cost.csv", "acc_vs_attention_gflops.png"} <= set(names)
    assert (out / "acc_vs_attention_gflops.png").read_bytes()[:8] == PNG
    cost = pd.read_csv(out / "cost.csv").set_index("model")
    tree = "ours: treeformer_tf (callbacks.tree_bootstrap.order=both)"
    full = "ours: full (callbacks.tree_bootstrap.order=off)"
    assert cost.loc[tree, "attention_gflops"] == pytest.approx(0.01)
    assert cost.loc[tree, "share_of_full"] == pytest.approx(0.25)
    assert cost.loc[full, "share_of_full"] == pytest.approx(1.0)
    assert cost.loc[tree, "acc"] == pytest.approx(41.0) and cost.loc[tree, "n"] == 2
    assert pd.isna(cost.loc["Transformer", "attention_gflops"])  # published rows have none
    assert_snapshot(md, "test_cost_table_share_of_full_and_plot.md")  # the curves section too


def test_curves_csv_holds_group_means_and_failed_job_is_reported(lra_sweep, tmp_path):
    out = tmp_path / "out"
    md, paths = write_table(lra_sweep, out)
    for name in ("curves_val_acc.png", "curves_train_loss_step.png"):
        assert out / name in paths and (out / name).read_bytes()[:8] == PNG
    pts = pd.read_csv(out / "curves.csv", keep_default_na=False)
    assert set(pts["line"]) == {"order=off, attention=full", "order=both, attention=treeformer_tf"}  # no failed
    at = pts.set_index(["metric", "line", "step"])
    full = "order=off, attention=full"
    row = at.loc[("val/acc", full, 9)]
    assert (row["mean"], row["min"], row["max"], row["n"]) == pytest.approx((0.3, 0.2, 0.4, 2))
    assert at.loc[("val/acc", full, 19), "mean"] == pytest.approx(0.4)
    # train/loss_step smoothed per job over 2 points: seed 0 (2.0, 1.5), seed 1 (3.0, 2.5) -> means 2.5, 2.0
    assert at.loc[("train/loss_step", full, 4), "mean"] == pytest.approx(2.5)
    assert at.loc[("train/loss_step", full, 9), "mean"] == pytest.approx(2.0)
    assert at.loc[("val/acc", "order=both, attention=treeformer_tf", 19), "n"] == 2
    section = md.split("## Learning curves")[1]
    assert "Not plotted (1):" in section
    assert "model-attention=treeformer_tf,seed=0: failed, no csv/metrics.csv" in section


def test_a_truncated_run_is_a_line_of_its_own(sweep_root, tmp_path):
    lra_job(sweep_root, 0, "full", "off", 0, acc=0.3, gflops=0.04, log=metrics_csv({4: 2.0}, {9: 0.2}))
    debug = lra_job(sweep_root, 1, "full", "off", 1, acc=0.9, gflops=0.04, log=metrics_csv({4: 1.0}, {9: 0.9}))
    result = json.loads((debug / "results.json").read_text())
    result["choices"]["debug"] = "fast"
    (debug / "results.json").write_text(json.dumps(result))
    md, _ = write_table(sweep_root, tmp_path / "out")
    pts = pd.read_csv(tmp_path / "out" / "curves.csv").set_index(["metric", "line", "step"])
    assert pts.loc[("val/acc", "order=off, attention=full", 9), "mean"] == pytest.approx(0.2)  # not pooled
    assert pts.loc[("val/acc", "order=off, attention=full‡", 9), "mean"] == pytest.approx(0.9)
    assert_snapshot(md, "test_a_truncated_run_is_a_line_of_its_own.md")


def test_bad_curves_key_names_the_key_and_the_allowed_ones(tmp_path, capsys):
    with pytest.raises(ValueError, match=r"experiment=x: unknown key table.curves.metric; allowed: metrics, by, "
                                         r"panels, smooth"):
        parse_spec({**LRA_TABLE, "curves": {"metric": ["val/acc"], "by": ["seed"]}}, "experiment=x")
    with pytest.raises(ValueError, match=r"table.curves.smooth.val/loss: not in table.curves.metrics; allowed: "
                                         r"val/acc, train/loss_step"):
        parse_spec({**LRA_TABLE, "curves": {**CURVES, "smooth": {"val/loss": 3}}}, "experiment=x")
    with pytest.raises(ValueError, match=r"table.curves.by is required"):
        parse_spec({**LRA_TABLE, "curves": {"metrics": ["val/acc"]}}, "experiment=x")
    root = tmp_path / "sweep"
    lra_job(root, 0, "full", "off", 0, acc=0.3, gflops=0.04, table={**LRA_TABLE, "curves": {"colour": "red"}})
    assert make_table([str(root)]) == 2
    assert "unknown key table.curves.colour; allowed: metrics, by, panels, smooth" in capsys.readouterr().err


def test_glue_cost_plot_and_curves_per_task_panel(sweep_root, tmp_path):
    """GLUE: score_vs_attention_gflops.png; curves of val/score, one panel per task; no full row: no share."""
    table = {"kind": "glue", "rows": ["task"], "columns": "model", "metrics": ["score"], "direction": "higher",
             "reference": "treeformer_glue", "baseline": [],
             "curves": {"metrics": ["val/score"], "by": ["callbacks.tree_bootstrap.order"], "panels": "data.task"}}
    for i, (task, order, score) in enumerate([("rte", "both", 60.0), ("rte", "off", 55.0), ("sst2", "both", 80.0)]):
        job = write_result(sweep_root, i, glue_result("tree_bert", task, score, attention="treeformer_tf",
                                                      table=table, order=order, gflops=0.2))
        (job / "csv").mkdir()
        (job / "csv" / "metrics.csv").write_text(f"epoch,step,val/score\n0,10,{score - 5}\n1,20,{score}\n")
    md, paths = write_table(sweep_root, tmp_path / "out")
    assert {"score_vs_attention_gflops.png", "curves_val_score.png", "table.png"} <= {p.name for p in paths}
    pts = pd.read_csv(tmp_path / "out" / "curves.csv").set_index(["panel", "line", "step"])
    assert pts.loc[("rte", "order=off", 20), "mean"] == pytest.approx(55.0)
    assert pts.loc[("sst2", "order=both", 10), "mean"] == pytest.approx(75.0)
    assert_snapshot(md, "test_glue_cost_plot_and_curves_per_task_panel.md")


def test_results_without_attention_flops_render_as_before(tmp_path):
    root = tmp_path / "sweep"
    lra_job(root, 0, "full", "off", 0, acc=0.3, gflops=None,
            table={k: v for k, v in LRA_TABLE.items() if k != "curves"})
    md, paths = write_table(root, tmp_path / "out")
    assert "## Attention cost" not in md and "## Learning curves" not in md
    assert [p.name for p in paths] == ["table.md", "table.tex", "table.csv", "runs.csv"]
