"""CAB's compositional index (CI, Zhang et al., ICML 2023) and its leaderboards.

For a pattern p (NS, CS, NC, CC) and each metric m of the tasks scored in p: z = (x - mu_m) / sigma_m * s_m,
s_m = +1 where higher is better, -1 where lower is; mu_m, sigma_m are CAB's fixed constants (the mean / std of
the metric over the attentions CAB evaluated). A task's score is the mean of its metrics' z, the pattern's CI
the mean of its task scores; higher is better.

    ci = pattern_ci("NC", {"PCC": {"cd_l1": 7.425, "cd_l2": 0.231, "fscore": 0.779}, "LSTF": {...}})
    # {"PCC": 0.4495, "LSTF": 0.7442, "Avg": 0.5968}

The constants are data (``reference/cab_ci_constants.csv``, one line per metric in the official script's order);
the published per-task results CAB's CI is computed from are ``reference/cab_tasks.csv`` and the leaderboards
``reference/cab_leaderboard.csv`` (both in the long form of ``analysis.reference``: row ``<pattern>/<task>``,
``<pattern>/Avg`` for the leaderboards' average column).

CI is only meaningful for CAB's own tasks and metrics: z-scoring another task's numbers with CAB's constants
says nothing. The one task this project runs in kind is LSTF (ETT / Weather / ECL forecasting MSE and MAE,
``lstf_score``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd

from attnbench.analysis.reference import confirmed_column, load_reference
from attnbench.analysis.render import Rendered, failed_section
from attnbench.analysis.runs import cell_stats, job_parts, model_label, spread, sweep_notes, truncation_notes
from attnbench.analysis.runs import load_runs as load_jobs
from attnbench.analysis.spec import TableSpec

PATTERNS = ("NS", "CS", "NC", "CC")
PATTERN_NAMES = {"NS": "noncausal self", "CS": "causal self", "NC": "noncausal cross", "CC": "causal cross"}
CONSTANT_COLUMNS = ["pattern", "task", "metric", "direction", "mu", "sigma", "source", "confirmed"]


@functools.cache
def constants() -> pd.DataFrame:
    """CAB's CI constants, one line per (pattern, task, metric) in the official order, checked."""
    path = resources.files("attnbench.analysis").joinpath("reference", "cab_ci_constants.csv")
    with path.open() as fh:
        c = pd.read_csv(fh)
    if list(c.columns) != CONSTANT_COLUMNS:
        raise ValueError(f"cab_ci_constants.csv columns {list(c.columns)}; expected {CONSTANT_COLUMNS}")
    bad = c[~c["direction"].isin(["higher", "lower"]) | ~(c["sigma"] > 0) | ~c["pattern"].isin(PATTERNS)]
    if not bad.empty:
        raise ValueError(f"cab_ci_constants.csv: bad lines (direction higher|lower, sigma > 0, pattern in "
                         f"{PATTERNS}):\n{bad}")
    if c.duplicated(["pattern", "task", "metric"]).any():
        raise ValueError("cab_ci_constants.csv repeats a (pattern, task, metric)")
    c["confirmed"] = confirmed_column(c["confirmed"])
    return c


def tasks(pattern: str) -> list[str]:
    """The tasks CAB scores in ``pattern``, in its order."""
    if pattern not in PATTERNS:
        raise ValueError(f"pattern={pattern!r}; allowed: {', '.join(PATTERNS)}")
    c = constants()
    return list(dict.fromkeys(c.loc[c["pattern"] == pattern, "task"]))


def metrics(pattern: str, task: str) -> list[str]:
    """The metrics of ``task`` in ``pattern``, in the official order."""
    if task not in tasks(pattern):
        raise ValueError(f"task={task!r} is not scored in pattern {pattern}; allowed: {', '.join(tasks(pattern))}")
    c = constants()
    return list(c.loc[(c["pattern"] == pattern) & (c["task"] == task), "metric"])


def z_score(pattern: str, task: str, metric: str, value: float) -> float:
    """(value - mu) / sigma, signed so that higher is better."""
    c = constants()
    line = c[(c["pattern"] == pattern) & (c["task"] == task) & (c["metric"] == metric)]
    if line.empty:
        raise ValueError(f"no CAB constant for {pattern}/{task}/{metric}; the metrics of {task} in {pattern}: "
                         f"{', '.join(metrics(pattern, task))}")
    (mu, sigma, direction), = line[["mu", "sigma", "direction"]].itertuples(index=False)
    sign = 1.0 if direction == "higher" else -1.0
    return sign * (float(value) - mu) / sigma


def task_score(pattern: str, task: str, values: Mapping[str, float], partial: bool = False) -> float:
    """Mean z of the task's metrics; every metric must be given (``partial``: the mean over those given, which
    is not CAB's score and must be said where shown). NaN where a value is NaN."""
    wanted = metrics(pattern, task)
    unknown = [m for m in values if m not in wanted]
    if unknown:
        raise ValueError(f"{pattern}/{task}: unknown metric {unknown[0]!r}; allowed: {', '.join(wanted)}")
    lacking = [m for m in wanted if m not in values]
    if lacking and not partial:
        raise ValueError(f"{pattern}/{task}: metric {lacking[0]!r} is missing (CAB's score needs "
                         f"{', '.join(wanted)}; partial=True averages those given)")
    if not values:
        raise ValueError(f"{pattern}/{task}: no metric given")
    zs = [z_score(pattern, task, m, values[m]) for m in wanted if m in values]
    return sum(zs) / len(zs)


def pattern_ci(pattern: str, raw: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Task scores of the tasks given in ``raw`` (task -> metric -> value) and ``Avg``, the pattern's CI: the
    mean over all of the pattern's tasks, NaN unless every task is given (as the leaderboards' "–")."""
    out = {t: task_score(pattern, t, raw[t]) for t in tasks(pattern) if t in raw}
    unknown = [t for t in raw if t not in tasks(pattern)]
    if unknown:
        raise ValueError(f"task={unknown[0]!r} is not scored in pattern {pattern}; allowed: "
                         f"{', '.join(tasks(pattern))}")
    full = len(out) == len(tasks(pattern))
    out["Avg"] = sum(out.values()) / len(out) if full else math.nan
    return out


def published_tasks() -> pd.DataFrame:
    """CAB's published per-task results (``cab_tasks.csv``), long form."""
    return load_reference("cab_tasks")


def published_leaderboard() -> pd.DataFrame:
    """CAB's leaderboards (``cab_leaderboard.csv``) wide: one line per (pattern, model), one column per task and
    ``Avg`` (NaN for the leaderboards' "–"), and ``Δ`` = Avg - vanilla's Avg, in file order."""
    ref = load_reference("cab_leaderboard")
    lines: dict[tuple[str, str], dict[str, Any]] = {}
    for row, model, value in ref[["row", "column", "value"]].itertuples(index=False):
        pattern, task = row.split("/")
        lines.setdefault((pattern, model), {"pattern": pattern, "model": model})[task] = float(value)
    out = pd.DataFrame(list(lines.values()))
    vanilla = {p: lines.get((p, "vanilla"), {}).get("Avg", math.nan) for p in PATTERNS}
    out["Δ"] = out["Avg"] - out["pattern"].map(vanilla)
    return out


def leaderboard_from_tasks(raw: pd.DataFrame | None = None) -> pd.DataFrame:
    """CI recomputed from per-task results (long form as ``cab_tasks.csv``; default: the published ones), one
    line per (pattern, model) in file order, columns pattern, model, the pattern's tasks, Avg."""
    raw = published_tasks() if raw is None else raw
    parts = raw["row"].str.split("/", expand=True)
    raw = raw.assign(pattern=parts[0], task=parts[1])
    lines = []
    for (pattern, model), g in raw.groupby(["pattern", "column"], sort=False):
        values: dict[str, dict[str, float]] = {}
        for task, metric, value in g[["task", "metric", "value"]].itertuples(index=False):
            values.setdefault(task, {})[metric] = float(value)
        lines.append({"pattern": pattern, "model": model, **pattern_ci(pattern, values)})
    return pd.DataFrame(lines)


# ----------------------------------------------------------------------------- LSTF, the task we run in kind
LSTF_DATASETS = {"ett": ("ETTh1", "ETTh2", "ETTm1"), "weather": ("weather",), "ecl": ("electricity",)}


def lstf_score(mse_mae: Mapping[str, tuple[float, float]]) -> tuple[float, list[str]]:
    """CAB's NC LSTF task score from per-data-set (MSE, MAE), keyed by our data names (ETTh1, ETTh2, ETTm1,
    weather, electricity); CAB averages each group (ETT: the three sets; CAB also averages features S and M,
    which the caller does). Returns (score, the CAB metrics used); groups absent are left out (a partial score:
    say so where shown)."""
    unknown = [n for n in mse_mae if not any(n in sets for sets in LSTF_DATASETS.values())]
    if unknown:
        known = [n for sets in LSTF_DATASETS.values() for n in sets]
        raise ValueError(f"LSTF data set {unknown[0]!r}; CAB's LSTF uses {', '.join(known)}")
    values: dict[str, float] = {}
    for group, sets in LSTF_DATASETS.items():
        got = [mse_mae[s] for s in sets if s in mse_mae]
        if got:
            values[f"{group}_mse"] = sum(v[0] for v in got) / len(got)
            values[f"{group}_mae"] = sum(v[1] for v in got) / len(got)
    if not values:
        raise ValueError("no LSTF data set given")
    return task_score("NC", "LSTF", values, partial=True), list(values)


# ----------------------------------------------------------------------------- the table (kind: cab)
SEQ2SEQ_TARGET = "attnbench.lit.seq2seq.Seq2SeqModule"
# overrides the table's columns already name (never appended to a row label)
CAB_KEYS = ("model/attention@model.net.encoder_attention", "model/attention@model.net.decoder_attention",
            "model/attention@model.net.cross_attention", "data.task", "data.name",
            "data.features")
RUN_COLUMNS = ["kind", "task", "model", "decoder_self", "cross", "status", "error", "acc", "exact", "loss", "mse",
               "mae", "epochs", "wall_time_s", "n_params", "run_dir"]
_NUMERIC = ("acc", "exact", "loss", "mse", "mae", "epochs", "wall_time_s", "n_params")


def _job_row(job_dir: Path, result: dict[str, Any], status: str | None = None) -> list[dict[str, Any]]:
    """A seq2seq job (test/acc, exact, loss; its decoder-self and cross entries) or an LSTF forecasting job
    (test/mse, test/mae on a data set CAB's LSTF uses); other jobs are an error naming the file."""
    choices, data, metrics, base = job_parts(job_dir, result, (), status)
    model = (result.get("config") or {}).get("model") or {}
    if model.get("_target_") == SEQ2SEQ_TARGET:
        net = model.get("net") or {}
        dec = (net.get("decoder_attention") or {}).get("name")
        cross = (net.get("cross_attention") or {}).get("name")
        enc = (net.get("encoder_attention") or {}).get("name")
        label = f"dec {dec} / cross {cross}" + ("" if enc == "full" else f" / enc {enc}")
        return [{**base, "kind": "seq2seq", "task": str(data.get("task")), "model": label, "decoder_self": dec,
                 "cross": cross, "acc": metrics.get("test/acc"), "exact": metrics.get("test/exact"),
                 "loss": metrics.get("test/loss")}]
    name = data.get("name")
    if name in [s for sets in LSTF_DATASETS.values() for s in sets] and "test/mse" in metrics:
        return [{**base, "kind": "lstf", "task": f"{name}/{data.get('features')}",  # label: [cross_attention=x]
                 "model": model_label(choices), "mse": metrics.get("test/mse"),
                 "mae": metrics.get("test/mae")}]
    raise ValueError(f"{job_dir / 'results.json'}: neither a seq2seq job ({SEQ2SEQ_TARGET}) nor an LSTF forecast on "
                     f"{', '.join(s for sets in LSTF_DATASETS.values() for s in sets)}")


def load_runs(sweep_dir: str | Path) -> pd.DataFrame:
    """Every job of a CAB sweep (failed and missing ones kept), one row each."""
    return load_jobs(sweep_dir, _job_row, RUN_COLUMNS, CAB_KEYS, _NUMERIC, ["kind", "task", "model", "run_dir"])


def _fmt(v: Any) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"


def _ours_markdown(runs: pd.DataFrame) -> list[str]:
    """Our seq2seq cells (mean ± std over seeds, n) and, when present, the LSTF task score with CAB's
    constants."""
    out: list[str] = []
    s2s = runs[runs["kind"] == "seq2seq"]
    if not s2s.empty:
        stats = cell_stats(s2s, ["task", "model"], ["acc", "exact", "loss"])
        meta = s2s.drop_duplicates(["task", "model"]).set_index(["task", "model"])
        out += ["## Ours: sequence to sequence (CPU stand-in for CAB's TTS / summarisation)", "",
                "| task | decoder self (CS) | cross (CC) | model | token acc | exact match | CE | n |",
                "|---|---|---|---|---|---|---|---|"]
        for (task, model), r in stats.iterrows():
            m = meta.loc[(task, model)]
            cells = [spread(r[k], r[f"{k}_std"]) if r["n"] else ("failed" if r["failed"] else "missing")
                     for k in ("acc", "exact", "loss")]
            out.append(f"| {task} | {m['decoder_self']} | {m['cross']} | {model} | " + " | ".join(cells)
                       + f" | {int(r['n'])} |")
        out += ["", "Greedy decoding on the test split: token accuracy over target positions (EOS included) and the "
                "share of sequences decoded exactly; CE = teacher-forced cross-entropy per token. Higher acc / exact "
                "is better. CAB's CI is not computed for these rows: its constants are the mean / std of CAB's own "
                "task metrics (MCD, ROUGE, ...) over its attentions, and z-scoring a different task's accuracy with "
                "them means nothing.", ""]
    lstf = runs[(runs["kind"] == "lstf") & (runs["status"] == "ok")]
    if not lstf.empty:
        out += ["## Ours: LSTF task score with CAB's NC constants", "", "| model | data sets | metrics used | "
                "LSTF score |", "|---|---|---|---|"]
        for model, g in lstf.groupby("model", sort=False):
            g = g.assign(dataset=g["task"].str.split("/").str[0])
            per_set = {d: (float(x["mse"].mean()), float(x["mae"].mean())) for d, x in g.groupby("dataset")}
            score, used = lstf_score(per_set)
            out.append(f"| {model} | {', '.join(sorted(per_set))} | {', '.join(used)} | {score:+.3f} |")
        out += ["", "CAB's LSTF score averages features S and M per data set and ETT over ETTh1/ETTh2/ETTm1 at its "
                "lengths (ETTh1 336→720, ...); a row with fewer data sets or other lengths is a partial score, "
                "comparable in kind with the published LSTF column, not equal in setting.", ""]
    return out


def _leaderboard_markdown(board: pd.DataFrame) -> list[str]:
    """One Markdown table per pattern: the published CI per task, Avg and Δ (vs vanilla), best task score bold."""
    out = ["## CAB's published leaderboards (compositional index, higher is better)", ""]
    for pattern in PATTERNS:
        rows = board[board["pattern"] == pattern]
        cols = [*tasks(pattern), "Avg", "Δ"]
        out += [f"### {pattern} ({PATTERN_NAMES[pattern]})", "", "| model | " + " | ".join(cols) + " |",
                "|---|" + "---|" * len(cols)]
        best = {c: rows[c].max() for c in cols[:-1]}
        for _, r in rows.iterrows():
            cells = [f"**{_fmt(r[c])}**" if r[c] == best[c] else _fmt(r[c]) for c in cols[:-1]]
            cells.append("–" if pd.isna(r["Δ"]) else f"{r['Δ'] + 0.0:+.3f}")
            out.append(f"| {r['model']} | " + " | ".join(cells) + " |")
        out.append("")
    return out


def rendered(sweep_dir: str | Path, spec: TableSpec) -> Rendered:
    """The ``cab`` table of a sweep: our runs (seq2seq metrics; the LSTF score where LSTF jobs ran), then CAB's
    four published leaderboards. table.md, runs.csv (one row per job), leaderboard.csv."""
    runs = load_runs(sweep_dir)
    board = published_leaderboard()
    if spec.reference != "cab_leaderboard":
        raise ValueError(f"a cab table shows CAB's leaderboard: table.reference={spec.reference!r}; "
                         "allowed: cab_leaderboard")
    md = [*_ours_markdown(runs), *_leaderboard_markdown(board), *truncation_notes(sweep_notes(runs)),
          f"Published: {load_reference(spec.reference)['source'].iloc[0]}.", *spec.notes]
    md += failed_section(runs[runs["status"] != "ok"][["model", "task", "status", "error", "run_dir"]])
    return Rendered(markdown="\n".join(md) + "\n", csv={"runs.csv": (runs, False), "leaderboard.csv": (board, False)})
