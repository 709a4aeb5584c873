"""Language-modelling sweep (CAB's LM / MLM) -> one row per attention, one column per task (test perplexity),
beside the published rows.

A job's cell is its ``test/ppl`` (``lit.lm``: exp of the token-weighted mean NLL over the test split); jobs that
differ only by seed share a cell (mean ± std, n). Every row names what it was measured on: ours carry the corpus
label (``data.catalog.corpus``: "substitute corpus: aclImdb unsup", ...) and block length, the published rows the
paper's corpus and context (the reference file's ``source``), because perplexities on different corpora,
tokenisations and lengths are not comparable in value, only in ranking. Lower is better.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from attnbench.analysis import reference as published
from attnbench.analysis.render import Fmt, Rendered, latex_table, tex_escape, tex_note
from attnbench.analysis.runs import job_parts, mean_std, status_kind, sweep_notes, truncation_notes
from attnbench.analysis.runs import load_runs as load_jobs
from attnbench.analysis.spec import TableSpec
from attnbench.data.catalog.corpus import CORPORA

TASKS = {"lm": "LM (CS) PPL", "mlm": "MLM (NS) PPL"}  # model.objective -> column header
RUN_COLUMNS = ["task", "model", "status", "error", "ppl", "epochs", "wall_time_s", "n_params", "run_dir"]
TABLE_KEYS = ("model/attention", "model.net.attention.name", "data.name", "data.block_len")  # in the label already


def _job_row(job_dir: Path, result: dict[str, Any], status: str | None = None) -> list[dict[str, Any]]:
    choices, data, metrics, base = job_parts(job_dir, result, ("name", "block_len"), status,
                                             " (not a language-modelling job?)")
    model = (result.get("config") or {}).get("model") or {}
    objective = model.get("objective")
    if objective not in TASKS:
        raise ValueError(f"{job_dir / 'results.json'}: config.model.objective={objective!r}; expected one of "
                         f"{', '.join(TASKS)}")
    attention = choices.get("model/attention") or (model.get("net") or {}).get("attention", {}).get("name")
    corpus = CORPORA[data["name"]].label if data["name"] in CORPORA else str(data["name"])
    return [{**base, "task": objective, "model": f"{attention} [{corpus}, {data['block_len']} tokens]",
             "ppl": metrics.get("test/ppl")}]


def load_runs(sweep_dir: str | Path) -> pd.DataFrame:
    """Every job under ``sweep_dir`` (failed and missing kept); columns ``RUN_COLUMNS`` + ``FACT_COLUMNS``."""
    return load_jobs(sweep_dir, _job_row, RUN_COLUMNS, TABLE_KEYS, ("ppl", "epochs", "wall_time_s", "n_params"),
                     ["task", "model", "run_dir"])


def ppl_table(runs: pd.DataFrame, reference: pd.DataFrame, notes: list[str] | tuple[str, ...] = ()
              ) -> pd.DataFrame:
    """Rows: our attentions then the published ones; columns: the tasks our sweep ran. Our cell: mean test
    perplexity over the ok jobs (hidden ``_std:<task>``, ``_n:<task>``), ``failed`` / ``missing`` when none
    succeeded. Published rows are labelled with their source's corpus; unconfirmed ones get ``?``."""
    tasks = [t for t in TASKS if t in set(runs["task"])]
    out: dict[str, dict[str, Any]] = {}
    for model, g in runs.groupby("model", sort=False):
        row: dict[str, Any] = {}
        for t in tasks:
            jobs = g[g["task"] == t]
            mean, std, n = mean_std(jobs[jobs["status"] == "ok"]["ppl"])
            row[t] = mean if n else (status_kind(jobs["status"].iloc[0]) if len(jobs) else None)
            row[f"_std:{t}"], row[f"_n:{t}"] = std, n
        out[f"ours: {model}"] = row
    for model, g in reference.groupby("model", sort=False):
        by_task = g.set_index("task")
        row = {t: (float(by_task.loc[t, "ppl"]) if t in by_task.index else None) for t in tasks}
        if any(v is not None for v in row.values()):
            row["_unconfirmed"] = not bool(g["confirmed"].all())
            out[f"CAB: {model}"] = row
    frame = pd.DataFrame.from_dict(out, orient="index")
    frame = frame[[c for c in frame.columns if not c.startswith("_")] + [c for c in frame.columns if c.startswith("_")]]
    frame.index.name = "model"
    frame.attrs.update(sweep_notes(runs), notes=list(notes))
    return frame


def _cell(v: Any, std: Any = None, n: Any = None, pm: str = "±", dash: str = "–") -> str:
    if v is None or (isinstance(v, float) and pd.isna(v)):
        return dash
    if not isinstance(v, float):
        return str(v)
    text = f"{v:.2f}" + ("" if std is None or pd.isna(std) else f" {pm} {std:.2f}")
    return text + ("" if n is None or pd.isna(n) else f" (n={int(n)})")


def display_frame(table: pd.DataFrame, fmt: Fmt = "md") -> pd.DataFrame:
    """String cells; index the row names (``?`` on unconfirmed published rows); columns the tasks' headers."""
    tex = fmt == "tex"
    cols = [c for c in table.columns if not c.startswith("_")]
    cells = {f"{model}{'?' if row.get('_unconfirmed') is True else ''}":
             [_cell(row[c], row.get(f"_std:{c}"), row.get(f"_n:{c}"), r"$\pm$" if tex else "±", "--" if tex else "–")
              for c in cols] for model, row in table.iterrows()}
    frame = pd.DataFrame.from_dict(cells, orient="index", columns=[TASKS.get(c, c) for c in cols])
    frame.index = [tex_escape(str(m)) if tex else m for m in frame.index]
    frame.index.name = "model"
    return frame


def _notes(table: pd.DataFrame, reference: pd.DataFrame | None) -> list[str]:
    notes = ["Ours: test perplexity, mean ± std over seeds (n runs); lower is better.", *truncation_notes(table.attrs)]
    if reference is not None and not reference.empty:
        notes.append(f"Published rows: {reference['source'].iloc[0]}.")
    return notes + table.attrs.get("notes", [])


def to_markdown(table: pd.DataFrame, runs: pd.DataFrame, reference: pd.DataFrame | None = None) -> str:
    """Markdown: the table, its notes, and the jobs without a result with their errors."""
    frame = display_frame(table, "md")
    lines = ["| model | " + " | ".join(frame.columns) + " |", "|---|" + "---|" * frame.shape[1]]
    lines += [f"| {model} | " + " | ".join(row) + " |"
              for model, row in zip(frame.index, frame.to_numpy().tolist(), strict=True)]
    notes = ["", *_notes(table, reference)]
    bad = runs[runs["status"] != "ok"]
    if not bad.empty:
        notes += ["", "Jobs without a result:"] + [f"- {r.model} / {r.task}: {r.status}: {r.error} ({r.run_dir})"
                                                    for r in bad.itertuples()]
    return "\n".join(lines + notes) + "\n"


def rendered(sweep_dir: str | Path, spec: TableSpec) -> Rendered:
    """The perplexity table of a sweep: table.md, table.tex, table.csv (the shown cells), runs.csv (one row per
    job)."""
    runs = load_runs(sweep_dir)
    ref = published.for_kind(spec.reference, "perplexity")
    table = ppl_table(runs, ref, spec.notes)
    shown = table.drop(columns=[c for c in table.columns if c.startswith("_")])
    latex = "% needs \\usepackage{booktabs,graphicx}\n" + latex_table(
        display_frame(table, "tex"), "Language modelling: test perplexity (lower is better).", "tab:cab_lm",
        [tex_note(n) for n in _notes(table, ref)], fit_width=True)
    return Rendered(markdown=to_markdown(table, runs, ref), latex=latex,
                    csv={"table.csv": (shown, True), "runs.csv": (runs, False)})
