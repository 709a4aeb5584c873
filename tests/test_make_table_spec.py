"""A paper table is data: experiments declare their table, references share one long form, make_table renders
what the sweep declared."""

from __future__ import annotations

import pytest

from attnbench.analysis import reference
from attnbench.analysis.report import write_table
from attnbench.analysis.spec import KINDS, experiment_spec, is_step, parse_spec, sweep_spec
from scripts.make_table import main as make_table
from tests.conftest import ROOT, compose_train
from tests.tables import EXPERIMENTS, PNG, assert_snapshot, glue_result, write_result

BLOCK = {"kind": "glue", "rows": ["task"], "columns": "model", "metrics": ["score"], "direction": "higher",
         "reference": "smyrf_glue"}


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_declares_a_table_its_reference_can_fill(experiment):
    if is_step(experiment):
        with pytest.raises(ValueError, match="table: null`: it is a step feeding another experiment"):
            experiment_spec(experiment)
        return
    spec = experiment_spec(experiment)
    ref = reference.for_kind(spec.reference, spec.kind)
    assert len(ref) > 0 and list(ref.columns[: len(spec.rows)]) == spec.rows
    assert set(spec.baseline) <= set(ref["model"]), spec.baseline


def test_the_composed_config_carries_the_table():
    """results.json stores the resolved config, so a run names its table without reading conf/ again."""
    cfg = compose_train(["experiment=hot/medmnist3d"])
    plain = compose_train([])
    assert cfg.table.kind == "classification" and cfg.table.reference == "medmnist3d"
    assert plain.table is None


@pytest.mark.parametrize(("change", "message"), [
    ({"colour": "red"}, "unknown key table.colour; allowed: kind, rows"),
    ({"kind": "lra"}, "table.kind='lra'; allowed: forecasting, classification, glue"),
    ({"metrics": ["acc"]}, "table.metrics=['acc']; a glue table has metrics=['score']"),
    ({"direction": "lower"}, "table.direction='lower'; a glue table has direction='higher'"),
    ({"reference": None}, "table.reference is required"),
    ({"columns": "task"}, "table.columns='task'; allowed: model"),
    ({"baseline": [1]}, "table.baseline=[1]; expected a string or a list of strings"),
])
def test_spec_errors_name_the_key_and_what_is_allowed(change, message):
    with pytest.raises(ValueError, match="experiment=x: " + message.replace("[", r"\[").replace("(", r"\(")):
        parse_spec({**BLOCK, **change}, "experiment=x")


def test_unknown_experiment_lists_the_known_ones():
    with pytest.raises(FileNotFoundError, match="hot/forecasting"):
        experiment_spec("hot/nope")


def test_long_form_reference_checks(tmp_path):
    head = "paper,table,row,column,metric,value,source,confirmed\n"
    twice = tmp_path / "twice.csv"
    twice.write_text(head + "p,t,rte,A,score,1.0,s,true\np,t,rte,A,score,2.0,s,true\n")
    with pytest.raises(ValueError, match=r"repeats \(row, column, metric\)"):
        reference.load_reference(str(twice))
    split = tmp_path / "split.csv"
    split.write_text(head + "p,t,ETTh1,A,mse,0.4,s,true\n")
    with pytest.raises(ValueError, match=r"'ETTh1' does not split into \['dataset', 'horizon'\]"):
        reference.for_kind(str(split), "forecasting")
    mixed = tmp_path / "mixed.csv"
    mixed.write_text(head + "p,t,organmnist3d/28,A,acc,0.9,s,true\np,t,organmnist3d/28,A,auc,0.95,s,false\n")
    line = reference.for_kind(str(mixed), "classification").iloc[0]
    assert (line["dataset"], line["size"], line["acc"], line["auc"]) == ("organmnist3d", 28, 0.9, 0.95)
    assert not line["confirmed"]  # one unconfirmed value marks the published line


def test_every_reference_file_is_long_form():
    ref_dir = ROOT / "src" / "attnbench" / "analysis" / "reference"
    for name in ("forecasting_lookback96", "medmnist3d", "smyrf_glue", "smyrf_imdb"):
        ref = reference.load_reference(name)
        assert list(ref.columns) == reference.COLUMNS and ref["value"].dtype == float, name
    lacking = [p.name for p in sorted(ref_dir.glob("*.csv")) if not p.with_suffix(".md").is_file()]
    assert not lacking, f"reference files without their provenance .md beside them: {lacking}"


def test_a_new_table_is_one_block_and_one_reference_file(tmp_path):
    """No code names the new paper: its results carry the table block, its numbers are one long-form file."""
    ref = tmp_path / "newpaper_table2.csv"
    ref.write_text("paper,table,row,column,metric,value,source,confirmed\n"
                   "newpaper,table2,rte,NewFormer,score,70.5,newpaper Table 2,true\n"
                   "newpaper,table2,imdb,NewFormer,score,91.0,newpaper Table 2,false\n")
    block = {**BLOCK, "reference": str(ref), "notes": ["NewFormer: numbers from Table 2."]}
    sweep = tmp_path / "sweep"
    write_result(sweep, 0, glue_result("bert", "rte", 66.0, table=block, experiment="smyrf/glue"))  # block wins
    write_result(sweep, 1, glue_result("bert", "imdb", 90.0, table=block))
    assert sweep_spec(sweep).reference == str(ref)
    assert make_table([str(sweep), "--out", str(tmp_path / "out")]) == 0
    for ext in ("md", "tex"):  # "NewFormer?": an unconfirmed value marks the row
        assert_snapshot((tmp_path / "out" / f"table.{ext}").read_text(),
                        f"test_a_new_table_is_one_block_and_one_reference_file.{ext}")
    assert (tmp_path / "out" / "table.png").read_bytes()[:8] == PNG


def test_sweeps_must_name_one_table(tmp_path, capsys):
    both = tmp_path / "both"
    write_result(both, 0, glue_result("bert", "rte", 66.0, experiment="smyrf/glue"))
    write_result(both, 1, glue_result("bert", "imdb", 90.0, experiment="smyrf/imdb"))
    with pytest.raises(ValueError, match=r"jobs of different tables \(smyrf/glue, smyrf/imdb\)"):
        sweep_spec(both)
    md, _ = write_table(both, tmp_path / "out", experiment="smyrf/imdb")  # said on the command line: that one
    assert_snapshot(md, "test_sweeps_must_name_one_table.md")  # the IMDB table
    versions = tmp_path / "versions"  # one experiment whose yaml's table block changed between two of its sweeps
    write_result(versions, 0, glue_result("bert", "rte", 66.0, table=BLOCK, experiment="smyrf/glue"))
    write_result(versions, 1, glue_result("bert", "rte", 67.0, table={**BLOCK, "notes": ["a later note"]},
                                          experiment="smyrf/glue"))
    with pytest.raises(ValueError, match=r"declare 2 different `table:` blocks .* pass --experiment smyrf/glue"):
        sweep_spec(versions)
    anonymous = tmp_path / "anonymous"
    write_result(anonymous, 0, glue_result("bert", "rte", 66.0))
    assert make_table([str(anonymous)]) == 2
    assert "no job names its table" in capsys.readouterr().err and not (anonymous / "table.md").exists()
    assert make_table([str(anonymous), "--experiment", "smyrf/glue"]) == 0


def test_kinds_name_their_layout():
    assert set(KINDS) == {"forecasting", "classification", "glue", "tasks", "perplexity", "cab"}
    for kind, layout in KINDS.items():
        assert parse_spec({**BLOCK, "kind": kind, **layout}).kind == kind
