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
from attnbench.analysis.model_tasks import ModelTaskLayout
from attnbench.analysis.render import Rendered
from attnbench.analysis.runs import job_parts
from attnbench.analysis.runs import load_runs as load_jobs
from attnbench.analysis.spec import TableSpec
from attnbench.data.catalog.corpus import CORPORA

TASKS = {"lm": "LM (CS) PPL", "mlm": "MLM (NS) PPL"}  # model.objective -> column header
RUN_COLUMNS = ["task", "model", "status", "error", "ppl", "epochs", "wall_time_s", "n_params",
               "attention", "attention_gflops", "run_dir"]
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
    return load_jobs(sweep_dir, _job_row, RUN_COLUMNS, TABLE_KEYS,
                     ("ppl", "epochs", "wall_time_s", "n_params", "attention_gflops"),
                     ["task", "model", "run_dir"])


LAYOUT = ModelTaskLayout(
    metric="ppl", tasks=TASKS, avg=False, published_prefix="CAB: ", skip_empty_published=True,
    unconfirmed_shown_only=True,  # ABC's LM value is unconfirmed, its MLM value is not: "?" only where LM is shown
    ours_note="Ours: test perplexity, mean ± std over seeds (n runs); lower is better.",
    caption="Language modelling: test perplexity (lower is better).", label="tab:cab_lm")


def ppl_table(runs: pd.DataFrame, reference: pd.DataFrame, notes: list[str] | tuple[str, ...] = ()
              ) -> pd.DataFrame:
    """Rows: our attentions then the published ones (``CAB: <model>``, labelled with their source's corpus);
    columns: the tasks our sweep ran (``analysis.model_tasks``)."""
    return LAYOUT.table(runs, reference, notes)


def rendered(sweep_dir: str | Path, spec: TableSpec) -> Rendered:
    """The perplexity table of a sweep: table.md, table.tex, table.csv (the shown cells), runs.csv (one row per
    job)."""
    runs = load_runs(sweep_dir)
    ref = published.for_kind(spec.reference, "perplexity")
    table = ppl_table(runs, ref, spec.notes)
    return LAYOUT.rendered(table, runs, ref)
