"""CAB's compositional index: the official script's numbers from vanilla's raw scores, the leaderboards from the
published per-task results, and the reference files' shape."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from attnbench.analysis import cab, reference
from attnbench.analysis.report import write_table
from scripts.make_table import main as make_table

# vanilla's raw scores, scripts/compositional_index/example.txt (one line per pattern, the script's metric order)
EXAMPLE = {
    "NS": {"TTS": {"fs2_mcd": 3.4748, "fs2_msd": 1.9735, "ttts_mcd": 4.0953, "ttts_msd": 2.1985},
           "Sum": {"rouge1": 34.61, "rouge2": 6.35, "rougeL": 31.66}, "SR": {"psnr": 23.18, "ssim": 0.675},
           "MLM": {"ppl": 3.42}},
    "NC": {"PCC": {"cd_l1": 7.425, "cd_l2": 0.231, "fscore": 0.779},
           # the script's "ECL" columns hold Weather (0.478, 0.508), its "Weather" columns ECL (0.449, 0.4855)
           "LSTF": {"ett_mse": 1.138167, "ett_mae": 0.77467, "weather_mse": 0.478, "weather_mae": 0.508,
                    "ecl_mse": 0.449, "ecl_mae": 0.4855}},
    "CC": {"TTS": {"ttts_mcd": 4.0953, "ttts_msd": 2.1985}, "Sum": {"rouge1": 34.61, "rouge2": 6.35, "rougeL": 31.66}},
}
# what the official script prints for it (digest B.5, run here on example.txt)
SCRIPT = {"NS": {"TTS": -0.3007, "Sum": -0.2491, "SR": -0.0766, "MLM": 0.5276, "Avg": -0.0247},
          "NC": {"PCC": 0.4495, "LSTF": 0.7442, "Avg": 0.5968},
          "CC": {"TTS": 1.0473, "Sum": 0.8665, "Avg": 0.9569}}


@pytest.mark.parametrize("pattern", list(SCRIPT))
def test_vanilla_example_gives_the_official_scripts_numbers(pattern):
    got = cab.pattern_ci(pattern, EXAMPLE[pattern])
    assert got == pytest.approx(SCRIPT[pattern], abs=1e-3)


def test_the_published_vanilla_rows_are_the_example_scores():
    """cab_tasks.csv holds example.txt for vanilla, so the recomputed vanilla rows are the script's."""
    lb = cab.leaderboard_from_tasks().set_index(["pattern", "model"])
    for pattern, want in SCRIPT.items():
        row = lb.loc[(pattern, "vanilla")]
        assert {k: row[k] for k in want} == pytest.approx(want, abs=1e-3)


def test_local_ns_row_from_its_raw_scores():
    raw = {"TTS": {"fs2_mcd": 3.419, "fs2_msd": 1.970, "ttts_mcd": 4.015, "ttts_msd": 2.164},
           "Sum": {"rouge1": 38.50, "rouge2": 10.54, "rougeL": 35.39}, "SR": {"psnr": 23.33, "ssim": 0.682},
           "MLM": {"ppl": 4.18}}
    published = {"TTS": 0.362, "Sum": 2.617, "SR": 0.421, "MLM": 0.515, "Avg": 0.978}
    assert cab.pattern_ci("NS", raw) == pytest.approx(published, abs=0.003)


def test_every_leaderboard_cell_follows_from_the_published_task_results():
    """Within the rounding of the published raw scores (3 decimals; sigma as small as 0.006), except one cell
    where CAB's own files disagree: ABC's LM perplexity 29.13 (tasks/LM/README) gives CI -0.828, the
    leaderboard prints -1.117."""
    got = cab.leaderboard_from_tasks().set_index(["pattern", "model"])
    pub = cab.published_leaderboard().set_index(["pattern", "model"])
    assert set(got.index) == set(pub.index)
    checked = 0
    for (pattern, model), row in pub.iterrows():
        for task in [*cab.tasks(pattern), "Avg"]:
            want, have = row[task], got.loc[(pattern, model), task]
            if pd.isna(want):  # "–" on the leaderboard: a task CAB did not run
                assert math.isnan(have), (pattern, model, task)
                continue
            if (pattern, model) == ("CS", "ABC") and task in ("LM", "Avg"):
                continue
            assert have == pytest.approx(want, abs=0.03), (pattern, model, task)
            checked += 1
    assert checked == 94  # 96 published cells less the CS ABC pair
    assert got.loc[("CS", "ABC"), "LM"] == pytest.approx(-0.828, abs=1e-3)
    assert pub.loc[("CS", "ABC"), "LM"] == -1.117


def test_leaderboard_delta_and_average():
    pub = cab.published_leaderboard().set_index(["pattern", "model"])
    assert pub.loc[("NS", "local"), "Δ"] == pytest.approx(1.002, abs=1e-9)  # 0.978 - (-0.024)
    assert pub.loc[("CC", "Performer"), "Δ"] == pytest.approx(-1.970, abs=1e-9)
    for (pattern, _), row in pub.iterrows():  # Avg = mean of the task columns, to the table's rounding
        scores = [row[t] for t in cab.tasks(pattern)]
        if not any(pd.isna(s) for s in scores):
            assert row["Avg"] == pytest.approx(sum(scores) / len(scores), abs=2e-3)


def test_constants_are_the_official_scripts():
    c = cab.constants()
    assert len(c) == 10 + 6 + 9 + 5
    assert [cab.tasks(p) for p in cab.PATTERNS] == [["TTS", "Sum", "SR", "MLM"], ["TTS", "Sum", "LM"],
                                                    ["PCC", "LSTF"], ["TTS", "Sum"]]
    ns_mlm = c[(c["pattern"] == "NS") & (c["metric"] == "ppl")].iloc[0]
    assert (ns_mlm["mu"], ns_mlm["sigma"], ns_mlm["direction"]) == (36.292, 62.30827, "lower")
    assert list(c.loc[c["pattern"] == "CC", "direction"]) == ["lower", "lower", "higher", "higher", "higher"]


def test_errors_name_what_is_allowed():
    with pytest.raises(ValueError, match="pattern='XX'; allowed: NS, CS, NC, CC"):
        cab.tasks("XX")
    with pytest.raises(ValueError, match=r"task='MLM' is not scored in pattern CC; allowed: TTS, Sum"):
        cab.metrics("CC", "MLM")
    with pytest.raises(ValueError, match="metric 'rougeL' is missing"):
        cab.task_score("CC", "Sum", {"rouge1": 30.0, "rouge2": 5.0})
    with pytest.raises(ValueError, match="unknown metric 'bleu'"):
        cab.task_score("CC", "Sum", {"bleu": 30.0})


def test_a_pattern_without_every_task_has_no_average():
    ci = cab.pattern_ci("CS", {"TTS": {"ttts_mcd": 4.0953, "ttts_msd": 2.1985}})
    assert ci["TTS"] == pytest.approx(-0.047, abs=1e-3) and math.isnan(ci["Avg"])  # vanilla's CS row


def test_lstf_score_from_our_data_names():
    """ETT = mean over ETTh1/ETTh2/ETTm1; vanilla's per-set means (S and M averaged, results.xlsx) give its
    LSTF score; one data set alone gives a partial score over its two metrics."""
    s_then_m = {"ETTh1": (0.251, 0.24, 1.257, 0.905), "ETTh2": (0.266, 0.419, 3.548, 1.652),
                "ETTm1": (0.479, 0.619, 1.028, 0.813), "weather": (0.297, 0.414, 0.659, 0.602),
                "electricity": (0.439, 0.486, 0.459, 0.485)}  # S MSE, S MAE, M MSE, M MAE
    vanilla = {k: ((a + c) / 2, (b + d) / 2) for k, (a, b, c, d) in s_then_m.items()}
    score, used = cab.lstf_score(vanilla)
    assert score == pytest.approx(0.744, abs=0.02) and len(used) == 6
    part, used = cab.lstf_score({"ETTh1": vanilla["ETTh1"]})
    assert used == ["ett_mse", "ett_mae"] and part == pytest.approx(
        (cab.z_score("NC", "LSTF", "ett_mse", vanilla["ETTh1"][0])
         + cab.z_score("NC", "LSTF", "ett_mae", vanilla["ETTh1"][1])) / 2)
    with pytest.raises(ValueError, match="LSTF data set 'traffic'"):
        cab.lstf_score({"traffic": (1.0, 1.0)})


def test_reference_files_are_long_form():
    for name in ("cab_leaderboard", "cab_tasks"):
        ref = reference.load_reference(name)
        assert list(ref.columns) == reference.COLUMNS and ref["value"].dtype == float
        assert set(ref["row"].str.split("/").str[0]) == set(cab.PATTERNS)
    tasks = reference.load_reference("cab_tasks")
    assert not tasks.loc[(tasks["row"] == "CS/LM") & (tasks["column"] == "ABC"), "confirmed"].item()


# ----------------------------------------------------------------------------- make_table, kind cab
BLOCK = {"kind": "cab", "rows": ["pattern", "task"], "columns": "model", "metrics": ["ci"], "direction": "higher",
         "reference": "cab_leaderboard", "notes": ["A note of the experiment."]}


def _job(root, num, result):
    d = root / str(num)
    d.mkdir(parents=True)
    (d / "results.json").write_text(json.dumps(result))


def _seq2seq(dec, cross, metrics, status="ok", error=None, seed=0):
    net = {"decoder_attention": {"name": dec}, "cross_attention": {"name": cross}, "encoder_attention":
           {"name": "full"}}
    return {"status": status, "error": error, "metrics": metrics, "overrides": [f"seed={seed}"],
            "choices": {"model": "seq2seq", "model/attention@model.net.decoder_attention": dec},
            "config": {"seed": seed, "table": BLOCK, "data": {"task": "reverse"},
                       "model": {"_target_": cab.SEQ2SEQ_TARGET, "net": net}}}


def test_make_table_renders_our_runs_beside_the_leaderboards(tmp_path):
    sweep = tmp_path / "sweep"
    _job(sweep, 0, _seq2seq("full", "full", {"test/acc": 0.9, "test/exact": 0.5, "test/loss": 0.3}, seed=0))
    _job(sweep, 1, _seq2seq("full", "full", {"test/acc": 0.8, "test/exact": 0.3, "test/loss": 0.5}, seed=1))
    _job(sweep, 2, _seq2seq("local", "nystrom", {}, status="failed", error="ValueError: mixes queries"))
    lstf = {"status": "ok", "error": None, "metrics": {"test/mse": 1.0, "test/mae": 0.8}, "overrides": [],
            "choices": {"model": "informer", "model/attention@model.net.cross_attention": "performer"},
            "config": {"table": BLOCK, "data": {"name": "ETTh1", "features": "M"},
                                                         "model": {"_target_": "x.Forecast"}}}
    _job(sweep, 3, lstf)
    assert make_table([str(sweep), "--out", str(tmp_path / "out")]) == 0
    md = (tmp_path / "out" / "table.md").read_text()
    assert "| reverse | full | full | dec full / cross full | 0.850 ± 0.071 | 0.400 ± 0.141 | 0.400 ± 0.141 | 2 |" in md
    assert "| reverse | local | nystrom | dec local / cross nystrom | failed | failed | failed | 0 |" in md
    ett = (cab.z_score("NC", "LSTF", "ett_mse", 1.0) + cab.z_score("NC", "LSTF", "ett_mae", 0.8)) / 2
    assert f"| informer[cross_attention=performer] | ETTh1 | ett_mse, ett_mae | {ett:+.3f} |" in md
    assert "| local | 0.362 | **2.617** | 0.421 | 0.515 | **0.978** | +1.002 |" in md  # NS, as published
    assert "| vanilla | -0.047 | 0.784 | – | – | – |" in md  # CS: no LM for vanilla
    assert "| Performer | -0.935 | -1.094 | -1.014 | -1.970 |" in md  # CC
    assert "CAB's CI is not computed for these rows" in md and "A note of the experiment." in md
    assert "## Failed or missing jobs (1)" in md and "mixes queries" in md
    board = pd.read_csv(tmp_path / "out" / "leaderboard.csv")
    assert len(board) == 11 + 6 + 4 + 3


def test_a_cab_table_needs_the_leaderboard(tmp_path):
    sweep = tmp_path / "sweep"
    _job(sweep, 0, _seq2seq("full", "full", {"test/acc": 0.9, "test/exact": 0.5, "test/loss": 0.3}))
    with pytest.raises(ValueError, match="table.reference='smyrf_glue'; allowed: cab_leaderboard"):
        write_table(sweep, tmp_path / "out", reference="smyrf_glue")


def test_the_lm_table_and_the_ci_inputs_agree():
    """CAB's LM / MLM perplexities live in two reference files (the perplexity table's cab_lm and the CI inputs'
    cab_tasks): they must hold the same numbers with the same confirmed flags (ABC's LM 29.13: false in both)."""
    lm = reference.load_reference("cab_lm")
    tasks = reference.load_reference("cab_tasks")
    for row, ours in (("lm", "CS/LM"), ("mlm", "NS/MLM")):
        a = lm[lm["row"] == row].set_index("column")
        b = tasks[tasks["row"] == ours].set_index("column")
        common = sorted(set(a.index) & set(b.index))
        assert len(common) >= 5 and (a.loc[common, "value"] == b.loc[common, "value"]).all(), row
        assert (a.loc[common, "confirmed"] == b.loc[common, "confirmed"]).all(), row
    assert not lm.loc[(lm["row"] == "lm") & (lm["column"] == "ABC"), "confirmed"].item()
