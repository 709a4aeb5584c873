"""results/ and the generated docs: ``analysis.records`` keeps a sweep's or benchmark's compact record (refusing
records of several commits or of uncommitted code), ``analysis.docs`` renders every generated block from them and
``--check`` (make docs-check) fails on a hand-edited number, naming the block."""

from __future__ import annotations

import json
import re
import shutil

import pytest
import yaml

from attnbench.analysis import docs, records
from tests.conftest import ROOT
from tests.tables import forecast_result

A, B = "a" * 40, "b" * 40


def fake_sweep(root, commits=(A, A), dirty=False):
    """A forecasting sweep as Hydra and train.py leave it: results.json, metrics.csv, a checkpoint, multirun.yaml."""
    root.mkdir(parents=True)
    (root / "multirun.yaml").write_text(yaml.safe_dump(
        {"hydra": {"overrides": {"task": ["experiment=hot/forecasting", "model=full,hot"]}}}))
    for i, (model, commit) in enumerate(zip(("full", "hot"), commits, strict=True)):
        job = root / f"{i}_model={model}"
        (job / "csv").mkdir(parents=True)
        (job / "checkpoints").mkdir()
        result = forecast_result(model, mse=0.4 + 0.01 * i) | {"code": {"commit": commit, "dirty": dirty}}
        (job / "results.json").write_text(json.dumps(result))
        (job / "csv" / "metrics.csv").write_text("epoch,val/mse\n0,1.0\n")
        (job / "checkpoints" / "last.ckpt").write_bytes(b"weights")
        (job / "test_predictions.npz").write_bytes(b"predictions")
    return root


def test_a_sweep_record_keeps_results_and_metrics_only(tmp_path):
    rec = records.save(fake_sweep(tmp_path / "sweep"), tmp_path / "results" / "hot")
    kept = sorted(str(p.relative_to(tmp_path / "results" / "hot")) for p in (tmp_path / "results" / "hot").rglob("*")
                  if p.is_file())
    assert kept == ["0_model=full/csv/metrics.csv", "0_model=full/results.json", "1_model=hot/csv/metrics.csv",
                    "1_model=hot/results.json", "multirun.yaml", "record.json"]
    assert rec["commits"] == [A] and rec["jobs"] == 2 and rec["ok"] == 2 and rec["kind"] == "sweep"
    assert rec["command"] == "python train.py -m experiment=hot/forecasting model=full,hot"
    assert records.read_record(tmp_path / "results" / "hot") == rec
    # a saved sweep is a source again (a later sweep of the same commit joins the table), its command kept
    again = records.save([tmp_path / "results" / "hot", fake_sweep(tmp_path / "later")], tmp_path / "both")
    assert again["jobs"] == 4 and again["commits"] == [A]
    assert again["command"] == " ; ".join(["python train.py -m experiment=hot/forecasting model=full,hot"] * 2)


@pytest.mark.parametrize(("kw", "message"), [
    ({"commits": (A, B)}, r"ran on 2 commits \(aaaaaaa, bbbbbbb\)"),
    ({"dirty": True}, r"2 of 2 records ran on uncommitted changes"),
    ({"commits": (A, None)}, r"1 of 2 records name no commit"),
])
def test_a_record_of_mixed_dirty_or_unknown_code_is_refused(tmp_path, capsys, kw, message):
    src = fake_sweep(tmp_path / "sweep", **kw)
    assert records.main([str(src), str(tmp_path / "out")]) == 2
    assert re.search(message, capsys.readouterr().err)
    assert not (tmp_path / "out").exists()


def test_mixed_or_dirty_records_are_kept_when_asked(tmp_path):
    rec = records.save(fake_sweep(tmp_path / "sweep", commits=(A, B), dirty=True), tmp_path / "out",
                       allow_mixed=True, allow_dirty=True)
    assert rec["commits"] == [A, B]


def test_a_bench_record_keeps_tables_and_machine_not_figures(tmp_path):
    src = tmp_path / "bench"
    src.mkdir()
    (src / "machine.json").write_text(json.dumps({"code": {"commit": A, "dirty": False}, "bench": "hot_step",
                                                 "command": "python -m attnbench.bench.hot_step"}))
    for name in ("hot_step.csv", "hot_step.md", "figure.png"):
        (src / name).write_text("x")
    (src / "runs" / "0").mkdir(parents=True)  # a benchmark that runs train.py (readme_debug) keeps its runs below
    (src / "runs" / "0" / "results.json").write_text(json.dumps({"status": "ok", "code": {"commit": B}}))
    rec = records.save(src, tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["hot_step.csv", "hot_step.md", "machine.json",
                                                                    "record.json"]
    assert rec["bench"] == "hot_step" and rec["command"] == "python -m attnbench.bench.hot_step"


def test_a_folder_with_neither_is_refused(tmp_path):
    with pytest.raises(ValueError, match="no results.json .* and no machine.json"):
        records.save(tmp_path, tmp_path / "out")


def test_docs_blocks_render_from_the_records_and_a_hand_edit_is_stale(tmp_path, capsys):
    records.save(fake_sweep(tmp_path / "sweep"), tmp_path / "results" / "hot")
    page = tmp_path / "page.md"
    page.write_text("# Results\n<!-- begin table results/hot -->\n<!-- end table -->\nprose\n")
    assert docs.main(["--root", str(tmp_path), "page.md"]) == 0
    text = page.read_text()
    assert "0.400" in text and "0.410" in text  # full's and hot's test MSE
    assert "Records: `results/hot/` (2 of 2 jobs ok, commit aaaaaaa), made by `python train.py -m " in text
    assert text.endswith("<!-- end table -->\nprose\n")
    assert docs.main(["--check", "--root", str(tmp_path), "page.md"]) == 0

    page.write_text(text.replace("0.410", "0.417", 1))  # one digit edited by hand
    assert docs.main(["--check", "--root", str(tmp_path), "page.md"]) == 1
    assert "page.md: the block 'table results/hot' differs from what its records render" in capsys.readouterr().err
    assert docs.main(["--root", str(tmp_path), "page.md"]) == 0
    assert page.read_text() == text


def test_a_block_of_an_unknown_kind_or_missing_record_stops(tmp_path, capsys):
    page = tmp_path / "page.md"
    page.write_text("<!-- begin tabel results/x -->\n<!-- end tabel -->\n")
    assert docs.main(["--root", str(tmp_path), "page.md"]) == 2
    assert "unknown generated block 'tabel results/x' (one of: table RECORD, " in capsys.readouterr().err
    page.write_text("<!-- begin table results/x -->\n<!-- end table -->\n")
    assert docs.main(["--root", str(tmp_path), "page.md"]) == 2
    assert "results/x is not a saved record (no record.json)" in capsys.readouterr().err


def test_the_repo_docs_are_what_results_renders(tmp_path):
    """make docs-check on this checkout: every generated block of README and docs/ equals what its records under
    results/ render; a digit edited in docs/results.md is caught, and make docs restores it."""
    assert docs.main(["--check"]) == 0
    for name in (*docs.FILES, "results"):
        src = ROOT / name
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / name)
    page = tmp_path / "docs" / "results.md"
    text = page.read_text()
    block = next(docs.BLOCK.finditer(text))
    digit = re.search(r"\d\.\d\d", block["body"])
    edited = text[:block.start("body") + digit.start()] + str((int(digit[0][0]) + 1) % 10) + \
        text[block.start("body") + digit.start() + 1:]
    page.write_text(edited)
    assert docs.main(["--check", "--root", str(tmp_path)]) == 1
    assert docs.main(["--root", str(tmp_path)]) == 0
    assert page.read_text() == text


def test_a_table_typed_by_hand_fails_the_check(tmp_path, capsys):
    page = tmp_path / "page.md"
    table = "| a | b |\n|---|---|\n| 1 | 2 |\n"
    page.write_text(f"# Page\n\n{table}\n```\n{table}```\n")  # the fenced one is code, not a table
    assert docs.main(["--check", "--root", str(tmp_path), "page.md"]) == 1
    assert "page.md:3: a table typed by hand" in capsys.readouterr().err
    page.write_text(f"# Page\n\n```\n{table}```\n")
    assert docs.main(["--check", "--root", str(tmp_path), "page.md"]) == 0


def test_one_table_from_two_sweeps_of_one_commit(tmp_path):
    a, b = fake_sweep(tmp_path / "listops"), fake_sweep(tmp_path / "text")
    rec = records.save([a, b], tmp_path / "out")
    assert rec["jobs"] == 4 and rec["commits"] == [A]
    assert (tmp_path / "out" / "text" / "1_model=hot" / "results.json").is_file()
    assert rec["command"].count("python train.py -m") == 2
    with pytest.raises(ValueError, match="ran on 2 commits"):
        records.save([a, fake_sweep(tmp_path / "other" / "x", commits=(B, B))], tmp_path / "out2")


def test_the_majority_class_is_counted_from_a_records_confusion_matrix(tmp_path):
    import pandas as pd

    from attnbench.analysis.lra import majority_note

    job = tmp_path / "0"
    job.mkdir()
    (job / "confusion_matrix.csv").write_text("true\\pred,0,1,2\n0,5,1,0\n1,2,30,1\n2,0,0,11\n")
    runs = pd.DataFrame({"task": ["listops", "text"], "run_dir": [str(job), str(tmp_path / "none")]})
    assert majority_note(runs) == ("Majority class (the most frequent test label's share, from a job's "
                                   "confusion_matrix.csv): ListOps 66.00 % (label 1: 33 of 50).")
    assert majority_note(runs.iloc[1:]) is None
