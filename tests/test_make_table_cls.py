"""Sweep -> MedMNIST3D classification table: fake results.json folders (tests/tables.py), no training."""

from __future__ import annotations

import pandas as pd
import pytest

from attnbench.analysis.classification import (
    RUN_COLUMNS,
    classification_table,
    cost_table,
    load_reference,
    load_runs,
    to_latex,
    to_markdown,
)
from attnbench.analysis.runs import FACT_COLUMNS
from attnbench.analysis.spec import experiment_spec, sweep_spec
from attnbench.data.catalog import MEDMNIST3D
from scripts.make_table import main as make_table
from tests.tables import OOM, PNG, assert_snapshot, cls_result, md_rows, write_cls_job, write_result

pytest_plugins = ["tests.tables"]
SPEC = experiment_spec("hot/medmnist3d")  # the table the experiment declares
OUTPUT_NAMES = ("table.md", "table.tex", "table.csv", "runs.csv", "table.png")


def cls_table(runs: pd.DataFrame, reference: pd.DataFrame, baselines: list[str] | None = None) -> pd.DataFrame:
    """The classification table with the experiment's baselines (or ``baselines``), notes and label."""
    return classification_table(runs, reference, baselines or SPEC.baseline, SPEC.notes, SPEC.baseline_label)


# ---------------------------------------------------------------------------------------------- reference
@pytest.mark.parametrize("dataset, model, acc, auc", [
    ("organmnist3d", "ResNet-18 (3D)", 0.907, 0.996),
    ("organmnist3d", "ResNet-18 (ACS)", 0.900, 0.994),
    ("nodulemnist3d", "auto-sklearn", 0.874, 0.914),
    ("adrenalmnist3d", "ResNet-18 (2.5D)", 0.772, 0.718),
])
def test_reference_values(cls_reference, dataset, model, acc, auc):
    row = cls_reference.set_index(["dataset", "size", "model"]).loc[(dataset, 28, model)]
    assert (row["acc"], row["auc"]) == (acc, auc)


def test_reference_shape(cls_reference):
    reference = cls_reference
    assert list(reference.columns) == ["dataset", "size", "model", "acc", "auc", "source", "confirmed"]
    assert len(reference) == 6 * 8
    assert set(reference["dataset"]) == set(MEDMNIST3D)
    assert set(reference["size"]) == {28}
    assert reference["confirmed"].dtype == bool and reference["confirmed"].all()
    with pytest.raises(FileNotFoundError, match="medmnist3d"):
        load_reference("no_such_table")


# ---------------------------------------------------------------------------------------------- runs
def test_load_runs_keeps_failed_and_missing(cls_sweep):
    runs = load_runs(cls_sweep)
    assert list(runs.columns) == [*RUN_COLUMNS, *FACT_COLUMNS]
    assert len(runs) == 8
    assert runs["status"].value_counts().to_dict() == {"ok": 6, "failed": 1, "missing": 1}
    assert set(runs["model"]) == {"hot3d", "hot3d[hot_linear]", "vit3d", "resnet3d"}
    failed = runs[runs["status"] == "failed"].iloc[0]
    assert (failed["model"], failed["dataset"], failed["size"], failed["error"]) == (
        "resnet3d", "organmnist3d", 28, OOM)
    missing = runs[runs["status"] == "missing"].iloc[0]
    assert (missing["model"], missing["dataset"], missing["size"]) == ("vit3d", "nodulemnist3d", 28)
    assert "no results.json" in missing["error"] and missing["run_dir"] == str(cls_sweep / "5")
    ok = runs[runs["run_dir"] == str(cls_sweep / "2")].iloc[0]
    assert (ok["acc"], ok["auc"], ok["val_acc_best"], ok["epochs"], ok["n_params"]) == (
        0.850, 0.980, 0.850, 32, 1_500_000)


def test_the_sweep_names_its_table(cls_sweep, tmp_path):
    """The table is the one the experiment declares (choices.experiment), not guessed from targets."""
    spec = sweep_spec(cls_sweep)
    assert (spec.kind, spec.reference, spec.baseline) == ("classification", "medmnist3d",
                                                          ["ResNet-18 (3D)", "ResNet-50 (3D)"])
    fc = tmp_path / "forecast"
    result = cls_result("hot", acc=0.4)  # the classification target and metrics ...
    result["choices"]["experiment"] = "hot/forecasting"  # ... of a job of the forecasting experiment
    write_result(fc, 0, result)
    assert sweep_spec(fc).kind == "forecasting"  # a target or metric name does not change the table
    with pytest.raises(FileNotFoundError, match="does not exist"):
        sweep_spec(tmp_path / "nope")


# ---------------------------------------------------------------------------------------------- table
def test_table_values(cls_sweep, cls_reference):
    table = cls_table(load_runs(cls_sweep), cls_reference)
    assert list(table.index) == [("organmnist3d", 28), ("nodulemnist3d", 28), ("adrenalmnist3d", 64)]
    organ = table.loc[("organmnist3d", 28)]
    assert organ[("ours", "hot3d", "acc")] == pytest.approx(0.910)
    assert organ[("ours", "hot3d", "auc")] == pytest.approx(0.992)
    assert organ[("ours", "hot3d", "n")] == 2
    assert organ[("ours", "vit3d", "acc")] == 0.850
    assert organ[("ours", "resnet3d", "failed")] == 1 and pd.isna(organ[("ours", "resnet3d", "acc")])
    assert organ[("published", "ResNet-18 (3D)", "acc")] == 0.907
    assert organ[("published", "AutoKeras", "auc")] == 0.979
    # best of ours (hot3d 0.910 / 0.992) - best ResNet (3D) (ResNet-18: 0.907 / 0.996)
    assert organ[("diff", "best", "acc")] == pytest.approx(0.003)
    assert organ[("diff", "best", "auc")] == pytest.approx(-0.004)
    assert table.loc[("nodulemnist3d", 28), ("ours", "vit3d", "missing")] == 1
    adrenal = table.loc[("adrenalmnist3d", 64)]
    assert adrenal[("ours", "hot3d[hot_linear]", "acc")] == 0.800
    assert adrenal.xs("published", level="group").isna().all()  # no published 64^3 numbers
    assert pd.isna(adrenal[("diff", "best", "acc")])


def test_markdown_and_latex_cells_notes_and_failures(cls_sweep, cls_reference):
    runs = load_runs(cls_sweep)
    table = cls_table(runs, cls_reference)
    md = to_markdown(table, runs)
    rows = md_rows(md)
    assert rows[("organmnist3d", "28")]["resnet3d ACC"] == "failed"
    assert rows[("nodulemnist3d", "28")]["vit3d ACC"] == "missing"
    failed = md.split("## Failed or missing jobs (2)")[1]
    assert OOM in failed and str(cls_sweep / "3") in failed and str(cls_sweep / "5") in failed
    assert_snapshot(md, "test_markdown_and_latex_cells_notes_and_failures.md")
    assert_snapshot(to_latex(table, runs), "test_markdown_and_latex_cells_notes_and_failures.tex")


def test_unconfirmed_value_gets_dagger(tmp_path):
    write_cls_job(tmp_path / "s", 0, "hot3d", "organmnist3d", acc=0.950, auc=0.999)
    ref = tmp_path / "ref.csv"
    ref.write_text("paper,table,row,column,metric,value,source,confirmed\n"
                   "p,t,organmnist3d/28,ResNet-18 (3D),auc,0.996,paper,true\n"
                   "p,t,organmnist3d/28,ResNet-18 (3D),acc,0.907,paper,false\n"
                   "p,t,organmnist3d/28,ResNet-50 (3D),auc,0.994,paper,true\n"
                   "p,t,organmnist3d/28,ResNet-50 (3D),acc,0.883,paper,true\n")
    runs, reference = load_runs(tmp_path / "s"), load_reference(str(ref))
    assert_snapshot(to_markdown(cls_table(runs, reference), runs), "test_unconfirmed_value_gets_dagger.md")
    with pytest.raises(ValueError, match="choose from"):
        cls_table(runs, reference, baselines=["ResNet-18 (2.5D)"])


def test_cost_table(cls_sweep):
    cost = cost_table(load_runs(cls_sweep))
    assert cost.loc[("organmnist3d", 28), ("cost", "hot3d", "minutes")] == pytest.approx(10.5)
    assert cost.loc[("organmnist3d", 28), ("cost", "hot3d", "epochs")] == pytest.approx(30.5)
    assert cost.loc[("adrenalmnist3d", 64), ("cost", "resnet3d", "n_params")] == 33_000_000
    assert pd.isna(cost.loc[("organmnist3d", 28), ("cost", "resnet3d", "minutes")])  # failed
    assert pd.isna(cost.loc[("adrenalmnist3d", 64), ("cost", "resnet3d", "attention_gflops")])  # no attention
    assert cost.loc[("organmnist3d", 28), ("cost", "hot3d", "attention_gflops")] == pytest.approx(0.25)


# ---------------------------------------------------------------------------------------------- outputs, CLI
def test_cli_writes_the_files(cls_sweep, tmp_path, capsys):
    out = tmp_path / "cli"
    assert make_table([str(cls_sweep), "--out", str(out)]) == 0
    stdout, stderr = capsys.readouterr()
    md = (out / "table.md").read_text()
    assert stdout.strip() == md.strip()
    assert_snapshot(md, "test_markdown_and_latex_cells_notes_and_failures.md")  # the experiment's table
    assert stderr.strip() == "wrote " + ", ".join(str(out / name) for name in OUTPUT_NAMES)
    for name in OUTPUT_NAMES:
        assert (out / name).stat().st_size > 0, name
    assert (out / "table.png").read_bytes()[:8] == PNG
    assert len(pd.read_csv(out / "runs.csv")) == 8
    wide = pd.read_csv(out / "table.csv", index_col=[0, 1])
    assert wide.loc[("organmnist3d", 28), "ours/hot3d/acc"] == pytest.approx(0.910)
    assert wide.loc[("organmnist3d", 28), "published/ResNet-18 (3D)/acc"] == 0.907
    assert "cost/vit3d/n_params" in wide.columns

