"""Sweeps that report themselves: run-folder names, a per-job status line, and the sweep's table at its end.

- Names: run folders and W&B runs are named by the resolvers of :mod:`attnbench.names`.
- ``SweepSummary`` (``hydra.callbacks`` in ``conf/hydra/default.yaml``): a status line per finished job from
  its ``results.json`` (``[3/8] 2_model=hot,...: ok in 41.2 s (test/mse 0.412)``) and, at the end, jobs
  ok/failed plus the table its experiment declares (``table:`` in ``conf/experiment/<paper>/<table>.yaml``,
  written by ``analysis.report.write_table``, as ``scripts/make_table.py``; a sweep without an experiment
  logs why it has none) and ``summary.json`` in the sweep folder. Jobs run in this process (the basic
  launcher) are reported by ``on_job_end``; jobs in other processes (``hydra/launcher=submitit_local`` or
  ``slurm``) by a thread that watches the sweep folder. Hydra skips ``on_multirun_end`` when a job failed, so
  the summary is also written after the last expected job, or at exit.

Nothing here imports torch or Lightning: ``--help`` stays fast.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)
_SUMMARIZED: set[str] = set()  # sweep folders already summarised in this process


# ---------------------------------------------------------------------------------------------- status
def _read(path: Path) -> dict[str, Any] | None:
    try:
        result = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):  # still being written, or broken: the table reports it
        return None
    return result if isinstance(result, dict) else None


def job_line(job_dir: Path, result: dict[str, Any] | None) -> str:
    """``2_model=hot,seed=1: ok in 41.2 s (test/mse 0.412)`` or ``...: failed: RuntimeError: ...``."""
    if result is None:
        return f"{job_dir.name}: no results.json (killed, or still running)"
    status = result.get("status", "?")
    text = f"{job_dir.name}: {status}"
    if result.get("wall_time_s") is not None:
        text += f" in {float(result['wall_time_s']):.1f} s"
    metrics = result.get("metrics") or {}
    shown = [k for k in ("test/mse", "test/acc", "test/score") if k in metrics]
    if status == "ok" and shown:
        text += f" ({shown[0]} {metrics[shown[0]]:.4g})"
    if status != "ok" and result.get("error"):
        text += f": {str(result['error']).splitlines()[0][:200]}"
    return text


def sweep_status(sweep_dir: Path) -> dict[str, Any]:
    """Every job folder under ``sweep_dir`` (``results.json`` or ``.hydra/``): status counts and one line each."""
    jobs: dict[Path, dict[str, Any] | None] = {f.parent: _read(f) for f in sweep_dir.rglob("results.json")}
    for cfg in sweep_dir.rglob(".hydra/config.yaml"):
        jobs.setdefault(cfg.parent.parent, None)
    counts: dict[str, int] = {}
    lines = []
    for job_dir, result in sorted(jobs.items(), key=lambda kv: _job_order(kv[0])):
        status = "missing" if result is None else str(result.get("status"))
        counts[status] = counts.get(status, 0) + 1
        lines.append({"job": job_dir.name, "status": status, "line": job_line(job_dir, result)})
    return {"sweep_dir": str(sweep_dir), "n_jobs": len(jobs), "counts": counts, "jobs": lines}


def _job_order(job_dir: Path) -> tuple[int, str]:
    head = job_dir.name.split("_", 1)[0]
    return (int(head) if head.isdigit() else 1 << 30, job_dir.name)


def summarize_sweep(sweep_dir: str | Path, table: bool = True) -> dict[str, Any]:
    """Log jobs ok/failed (each failure with its error), write ``summary.json`` and (``table``) the sweep's
    table (table.md, ...) into ``sweep_dir``; a table that cannot be made is logged, never raised."""
    root = Path(sweep_dir)
    _SUMMARIZED.add(str(root.resolve()))
    status = sweep_status(root)
    counts = status["counts"]
    ok = counts.get("ok", 0)
    log.info("sweep finished: %d jobs, %d ok, %d not ok (%s) in %s", status["n_jobs"], ok, status["n_jobs"] - ok,
             ", ".join(f"{v} {k}" for k, v in sorted(counts.items())) or "none", root)
    for job in status["jobs"]:
        if job["status"] != "ok":
            log.warning("  %s", job["line"])
    try:
        if table:
            from attnbench.analysis.report import write_table

            md, paths = write_table(root)
            status["table"] = [str(p) for p in paths]
            log.info("sweep table: %s\n%s", paths[0], md)
    except Exception as e:  # a summary must not turn a finished sweep into a crash
        status["table_error"] = f"{type(e).__name__}: {e}"
        log.warning("no table for %s (%s); once fixed: python scripts/make_table.py %s", root,
                    status["table_error"], root)
    (root / "summary.json").write_text(json.dumps(status, indent=2))
    return status


def expected_jobs(config: DictConfig) -> int | None:
    """How many jobs the basic sweeper will launch (None for another sweeper: it decides as it goes)."""
    sweeper = config.hydra.sweeper
    if not str(sweeper.get("_target_", "")).endswith("BasicSweeper"):
        return None
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = [f"{k}={v}" for k, v in (sweeper.get("params") or {}).items()]
    args = [*params, *OmegaConf.to_container(config.hydra.overrides.task, resolve=False)]
    batches = BasicSweeper.split_arguments(OverridesParser.create().parse_overrides(args), None)
    return sum(len(b) for b in batches)


# ---------------------------------------------------------------------------------------------- callback
class _Progress(threading.Thread):
    """Logs a line for each ``results.json`` that appears under the sweep folder (jobs in other processes)."""

    def __init__(self, sweep_dir: Path, total: int | None, every_s: float = 2.0) -> None:
        super().__init__(daemon=True)
        self.sweep_dir, self.total, self.every_s = sweep_dir, total, every_s
        self.seen: set[Path] = set()
        self.halt = threading.Event()

    def poll(self) -> int:
        """Log the new results; return how many jobs have one."""
        for f in sorted(self.sweep_dir.rglob("results.json")):
            if f in self.seen:
                continue
            result = _read(f)
            if result is None:
                continue  # being written: next poll
            self.seen.add(f)
            log.info("[%d/%s] %s", len(self.seen), self.total or "?", job_line(f.parent, result))
        return len(self.seen)

    def run(self) -> None:
        while not self.halt.wait(self.every_s):
            self.poll()

    def stop(self) -> None:
        self.halt.set()
        if self.is_alive():
            self.join()
        self.poll()


class SweepSummary(Callback):
    """Hydra callback: a status line per job, the sweep's summary and table at its end (module docstring)."""

    def __init__(self, table: bool = True, poll_s: float = 2.0) -> None:
        self.table, self.poll_s = table, poll_s
        self.sweep_dir: Path | None = None
        self.expected: int | None = None
        self.ended = 0
        self.pid = os.getpid()
        self.progress: _Progress | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.sweep_dir = Path(str(config.hydra.sweep.dir))
        self.pid = os.getpid()
        try:
            self.expected = expected_jobs(config)
        except Exception as e:  # an unparsable sweep fails in the sweeper itself, with Hydra's message
            log.debug("cannot count the sweep's jobs: %s", e)
            self.expected = None
        log.info("sweep of %s jobs into %s", self.expected or "?", self.sweep_dir)
        if not str(config.hydra.launcher.get("_target_", "")).endswith("BasicLauncher"):
            self.progress = _Progress(self.sweep_dir, self.expected, self.poll_s)  # jobs in other processes
            self.progress.start()
        atexit.register(self._summarize)  # Hydra raises past on_multirun_end when a job failed

    def __getstate__(self) -> dict[str, Any]:  # pickled into submitit jobs: without the thread
        return {**self.__dict__, "progress": None}

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        if getattr(job_return, "hydra_cfg", None) is None:
            return
        out = Path(str(job_return.hydra_cfg.hydra.runtime.output_dir))
        self.ended += 1
        total = f"/{self.expected}" if self.expected else ""
        log.info("[job %d%s] %s", self.ended, total, job_line(out, _read(out / "results.json")))
        in_sweep = self.sweep_dir is not None and os.getpid() == self.pid  # not in a submitit worker
        if in_sweep and self.expected is not None and self.ended >= self.expected:
            self._summarize()

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._summarize()

    def _summarize(self) -> None:
        if self.sweep_dir is None or os.getpid() != self.pid or str(self.sweep_dir.resolve()) in _SUMMARIZED:
            return
        if self.progress is not None:
            self.progress.stop()
        summarize_sweep(self.sweep_dir, table=self.table)
