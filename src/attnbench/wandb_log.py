"""W&B dashboards of a job and of a sweep, for runs with ``logger=wandb`` (``conf/logger/wandb.yaml``).

- ``finish_run(result)``: as a job ends (``train.run_with_results``), its W&B run gets the job's results.json
  (metrics, status, wall time, peak memory) as summary values and is finished (exit code 1 unless ``ok``).
  Its test plots went in as images during the test (``lit.wandb_logger.log_images``).
- ``log_sweep(sweep_dir)``: at a sweep's end (``sweep.summarize_sweep``), one more run in the jobs' group,
  ``job_type`` ``summary``, holding what the sweep's summary wrote: each Markdown table of ``table.md`` as a
  ``wandb.Table`` (``table``: ours beside the published rows, as in table.md; ``table/<heading>`` for the cost,
  curve and failed-job tables), each CSV as ``csv/<name>``, each figure as ``figures/<name>``, one row per job
  (``jobs``) and the job counts as summary values. A sweep whose jobs did not log to W&B gets none.

W&B is optional: nothing here raises; a failure is one warning. Nothing imports wandb before it is needed, nor
torch at all.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from pathlib import Path
from typing import Any

from attnbench.config.logger import LOGGER_SCHEMAS, WANDB_LOGGER
from attnbench.signatures import constructor_params

log = logging.getLogger(__name__)

# the targets of a W&B logger in a job's config (ours, or Lightning's class named directly)
WANDB_TARGETS = (WANDB_LOGGER, LOGGER_SCHEMAS[WANDB_LOGGER]._target_)
# wandb.init keywords that name one run only: a job's, not for the summary run
ONE_RUN_ONLY = ("job_type", "resume", "resume_from", "fork_from", "config", "reinit")
MAX_ROWS = 10_000  # wandb.Table.MAX_ROWS: a longer CSV is cut, saying so
_LOGGED: dict[Path, Path] = {}  # sweep folder -> its summary run's folder, made in this process


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0]}" if text else type(e).__name__


# ---------------------------------------------------------------------------------------------- a job
def summary_values(result: dict[str, Any]) -> dict[str, Any]:
    """A job's W&B summary: the metrics of its results.json, its status, wall time, peak memory (and error)."""
    out = {k: v for k, v in (result.get("metrics") or {}).items() if isinstance(v, int | float)}
    out |= {k: result[k] for k in ("status", "wall_time_s", "peak_memory_mb") if result.get(k) is not None}
    if result.get("error"):
        out["error"] = str(result["error"]).splitlines()[0][:500]
    return out


def finish_run(result: dict[str, Any]) -> None:
    """This process's W&B run (if one is open): ``summary_values(result)`` as summary values, then finished."""
    if "wandb" not in sys.modules:  # nothing imported wandb: no W&B run in this process
        return
    import wandb

    run = wandb.run
    if run is None:
        return
    try:
        run.summary.update(summary_values(result))
    except Exception as e:  # W&B is optional: never an error of the job
        log.warning("W&B: the results of this run were not logged as summary values (%s)", _first_line(e))
    try:
        wandb.finish(exit_code=0 if result.get("status") == "ok" else 1)
    except Exception as e:
        log.warning("W&B: the run did not finish cleanly (%s)", _first_line(e))


# ---------------------------------------------------------------------------------------------- a sweep
def _slug(text: str) -> str:
    """``Failed or missing jobs (1)`` -> ``failed_or_missing_jobs`` (counts in brackets left out)."""
    return re.sub(r"[^a-z0-9]+", "_", re.sub(r"\([^)]*\)", "", text).lower()).strip("_")


def _cells(line: str) -> list[str]:
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]


def markdown_tables(md: str) -> dict[str, tuple[list[str], list[list[str]]]]:
    """The pipe tables of a Markdown text, ``{key: (columns, rows)}``, cells as written: the first is ``table``,
    a later one ``table/<headings above it>`` (``table/attention_cost/rte``), ``table/<n>`` under none."""
    out: dict[str, tuple[list[str], list[list[str]]]] = {}
    heads: dict[int, str] = {}  # heading level -> its text, deeper ones dropped at each heading
    block: list[str] = []
    for line in [*md.splitlines(), ""]:
        if line.lstrip().startswith("|"):
            block.append(line)
            continue
        if len(block) >= 2:
            columns = _cells(block[0])
            rows = [_cells(b) for b in block[1:]]
            rows = [(r + [""] * len(columns))[: len(columns)] for r in rows
                    if not all(re.fullmatch(r":?-+:?", c) for c in r)]  # the |---| line
            path = "/".join(_slug(h) for _, h in sorted(heads.items()) if _slug(h))
            key = "table" if not out else f"table/{path or len(out) + 1}"
            n, base = 2, key
            while key in out:
                key, n = f"{base}_{n}", n + 1
            out[key] = (columns, rows)
        block = []
        heading = re.match(r"(#{1,6})\s+(.*)", line)
        if heading:
            level = len(heading.group(1))
            heads = {lv: h for lv, h in heads.items() if lv < level} | {level: heading.group(2)}
    return out


def sweep_wandb_config(sweep_dir: str | Path) -> dict[str, Any] | None:
    """The W&B logger options (resolved) of the sweep's jobs, from the first results.json that has them; None
    where no job logged to W&B."""
    for path in sorted(Path(sweep_dir).rglob("results.json")):
        try:
            loggers = (json.loads(path.read_text()).get("config") or {}).get("logger") or {}
        except (OSError, json.JSONDecodeError, AttributeError):
            continue
        for node in loggers.values() if isinstance(loggers, dict) else ():
            if isinstance(node, dict) and node.get("_target_") in WANDB_TARGETS:
                return node
    return None


def summary_init(node: dict[str, Any], sweep_dir: Path) -> dict[str, Any]:
    """``wandb.init`` keywords of the sweep's summary run: the jobs' project, entity, group, tags, mode and other
    W&B options; ``job_type`` summary, its files in ``sweep_dir``."""
    lightning = set(constructor_params(LOGGER_SCHEMAS[WANDB_LOGGER]._target_))  # the rest go to wandb.init
    kwargs = {k: v for k, v in node.items() if k not in lightning | {"_target_", *ONE_RUN_ONLY}}
    group = str(node.get("group") or sweep_dir.name)
    kwargs |= {"project": node.get("project") or os.environ.get("WANDB_PROJECT", "lightning_logs"),
               "group": group, "job_type": "summary", "name": f"summary {group}", "dir": str(sweep_dir),
               "config": {"sweep_dir": str(sweep_dir)}, "reinit": "create_new"}
    if node.get("offline"):
        kwargs["mode"] = "offline"
    if node.get("anonymous"):
        kwargs["anonymous"] = "allow"
    return kwargs


def sweep_media(sweep_dir: Path, status: dict[str, Any]) -> dict[str, Any]:
    """What the summary run logs (``log_sweep``), from the files the sweep's summary wrote and its ``status``
    (summary.json)."""
    import pandas as pd
    import wandb

    media: dict[str, Any] = {}
    md = sweep_dir / "table.md"
    if md.is_file():
        for key, (columns, rows) in markdown_tables(md.read_text()).items():
            media[key] = wandb.Table(columns=columns, data=rows, allow_mixed_types=True)
    for path in sorted(sweep_dir.glob("*.csv")):
        frame = pd.read_csv(path)
        if len(frame) > MAX_ROWS:
            log.info("W&B: csv/%s holds the first %d of %d rows of %s", path.stem, MAX_ROWS, len(frame), path)
            frame = frame.head(MAX_ROWS)
        media[f"csv/{path.stem}"] = wandb.Table(dataframe=frame, allow_mixed_types=True)
    for path in sorted(sweep_dir.glob("*.png")):
        media[f"figures/{path.stem}"] = wandb.Image(str(path))
    if status.get("jobs"):
        media["jobs"] = wandb.Table(columns=["job", "status", "line"],
                                    data=[[j.get("job"), j.get("status"), j.get("line")] for j in status["jobs"]])
    return media


def log_sweep(sweep_dir: str | Path) -> Path | None:
    """The sweep's summary run (module docstring): its folder (``<sweep_dir>/wandb/<run>``), or None where the
    jobs did not log to W&B or W&B failed (one warning). Once per sweep and process: a second call returns the
    first run's folder."""
    root = Path(sweep_dir)
    if root.resolve() in _LOGGED:
        return _LOGGED[root.resolve()]
    node = sweep_wandb_config(root)
    if node is None:
        return None
    run = None
    try:
        import wandb

        summary = root / "summary.json"
        status = json.loads(summary.read_text()) if summary.is_file() else {}
        media = sweep_media(root, status)
        run = wandb.init(**summary_init(node, root))
        run.log(media)
        if status:
            run.summary.update({"n_jobs": status.get("n_jobs"),
                                **{f"jobs/{k}": v for k, v in (status.get("counts") or {}).items()}})
        folder = Path(run.dir).parent  # run.dir is <run folder>/files
        run.finish()
        _LOGGED[root.resolve()] = folder
        log.info("W&B: the sweep's table and figures (%d items) are in the run %r of group %r (%s)", len(media),
                 run.name, node.get("group"), folder)
        return folder
    except Exception as e:  # W&B is optional: a finished sweep never fails here
        log.warning("W&B: no summary run for %s (%s); the table is in its folder", root, _first_line(e))
        if run is not None:
            try:
                run.finish(exit_code=1)
            except Exception as e2:
                log.debug("W&B: finishing the summary run failed too: %s", e2)
        return None
