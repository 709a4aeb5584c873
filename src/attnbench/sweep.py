"""Sweeps that report themselves: run-folder names, a per-job status line, and the sweep's table at its end.

- Names: run folders and W&B runs are named by the resolvers of :mod:`attnbench.names`.
- ``SweepSummary`` (``hydra.callbacks`` in ``conf/hydra/default.yaml``): a status line per finished job from
  its ``results.json`` (``[3/8] 2_model=hot,...: ok in 41.2 s (test/mse 0.412)``; a requeued job's time is
  summed over its attempts) and, at the end, jobs ok/failed/cancelled/not started, attempts and job time, plus
  the table its experiment declares (``table:`` in ``conf/experiment/<paper>/<table>.yaml``, written by
  ``analysis.report.write_table``, as ``scripts/make_table.py``; a sweep without an experiment has none and
  says nothing about it) and ``summary.json`` in the sweep folder. Jobs run in this process (the basic
  launcher) are reported by ``on_job_end``; jobs in other processes (``hydra/launcher=submitit_local`` or
  ``slurm``) by a thread that watches the sweep folder. That thread reports a job again when its
  ``results.json`` changes (a requeued job's next attempt: ``[1/2] 0_model=hot: ok in 80.3 s over 2
  attempts``); an attempt stopped by SIGTERM or submitit's USR2 reads ``(may be requeued)``, not as a final
  failure. Hydra skips ``on_multirun_end`` when a job failed, so the summary is also written after the last
  expected job, or at exit.
- SLURM without accounting (``scripts/local_slurm.sh``, many small clusters): submitit polls ``sacct``, which
  then fails at every poll; ``SweepSummary`` says so once and has submitit read job states from ``squeue``.
- Searches (``hparams_search=<name>``: the Optuna sweeper, ``conf/hparams_search/``): checked before the first trial
  (``config.hparams_search.check_search``; a misspelt search key stops the sweep, exit 2); a trial whose
  ``optimized_metric`` is missing or not finite fails (``config.hparams_search.check_trial``: results.json status
  failed, Optuna marks it FAIL) and the study goes on; ``n_trials`` jobs are expected; at the end ``best.json``
  (``best_trial``: the best value, its overrides and its job folder) joins Optuna's ``optimization_results.yaml``
  in the sweep folder.

Nothing here imports torch or Lightning: ``--help`` stays fast.
"""

from __future__ import annotations

import atexit
import functools
import getpass
import json
import logging
import math
import os
import re
import shutil
import subprocess
import threading
from collections import Counter
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from attnbench.config.hparams_search import check_search, is_search
from attnbench.errors import EXIT_USER_ERROR, ConfigError, report

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
    seconds = result.get("total_wall_time_s", result.get("wall_time_s"))
    if seconds is not None:
        text += f" in {float(seconds):.1f} s"
    if int(result.get("attempts") or 1) > 1:
        text += f" over {int(result['attempts'])} attempts"
    metrics = result.get("metrics") or {}
    shown = [k for k in ("test/mse", "test/acc", "test/score") if k in metrics]
    if status == "ok" and shown:
        text += f" ({shown[0]} {metrics[shown[0]]:.4g})"
    if status != "ok" and result.get("error"):
        text += f": {str(result['error']).splitlines()[0][:200]}"
    return text


# train.run_with_results writes ``RunStopped: stopped by <signal>; ...`` (callbacks.RunStopped); SLURM and
# submitit requeue with these two (preemption, time limit, scontrol requeue); SIGINT is Ctrl+C: final
_REQUEUE_STOP = re.compile(r"RunStopped: stopped by (SIGTERM|SIGUSR2)\b")


def may_be_requeued(result: dict[str, Any] | None) -> bool:
    """Whether an attempt was stopped by a signal that SLURM or submitit requeues with (a later attempt may
    rewrite its results.json), read from the error text; a SIGTERM from scancel reads the same."""
    if result is None or result.get("status") == "ok":
        return False
    return _REQUEUE_STOP.match(str(result.get("error") or "")) is not None


def sweep_status(sweep_dir: Path, expected: list[str] | None = None,
                 slurm_states: dict[int, str] | None = None) -> dict[str, Any]:
    """Every job folder under ``sweep_dir`` (``results.json`` or ``.hydra/``): status counts and one line each.

    ``expected``: the sweep's job folder names; one with no folder is ``not started``. ``slurm_states``: SLURM's
    state by job number; a job SLURM cancelled is ``cancelled`` unless it finished ok."""
    jobs: dict[Path, dict[str, Any] | None] = {f.parent: _read(f) for f in sweep_dir.rglob("results.json")}
    for cfg in sweep_dir.rglob(".hydra/config.yaml"):
        jobs.setdefault(cfg.parent.parent, None)
    nums = {_job_order(d)[0] for d in jobs}
    never = [sweep_dir / name for name in expected or [] if _job_order(Path(name))[0] not in nums]
    counts: dict[str, int] = {}
    lines = []
    attempts, seconds = 0, 0.0
    for job_dir, result in sorted([*jobs.items(), *((d, None) for d in never)], key=lambda kv: _job_order(kv[0])):
        status = "missing" if result is None else str(result.get("status"))
        line = job_line(job_dir, result)
        if job_dir in never:
            status, line = "not started", f"{job_dir.name}: not started"
        slurm = (slurm_states or {}).get(_job_order(job_dir)[0], "")
        if slurm.startswith("CANCELLED") and status != "ok":  # scancel: said first, the error cut at 200 chars
            status, line = "cancelled", f"{job_dir.name}: cancelled (SLURM); {line.split(': ', 1)[1]}"
        counts[status] = counts.get(status, 0) + 1
        lines.append({"job": job_dir.name, "status": status, "line": line})
        if result is not None:
            attempts += int(result.get("attempts") or 1)
            seconds += float(result.get("total_wall_time_s", result.get("wall_time_s")) or 0.0)
    return {"sweep_dir": str(sweep_dir), "n_jobs": len(lines), "counts": counts, "jobs": lines,
            "attempts": attempts, "job_time_s": round(seconds, 3)}


def _job_order(job_dir: Path) -> tuple[int, str]:
    head = job_dir.name.split("_", 1)[0]
    return (int(head) if head.isdigit() else 1 << 30, job_dir.name)


def summarize_sweep(sweep_dir: str | Path, table: bool = True, expected: list[str] | None = None,
                    slurm: bool = False, search: dict[str, Any] | None = None) -> dict[str, Any]:
    """Log jobs ok/failed/cancelled/not started (each with its error), attempts and job time, write
    ``summary.json`` and (``table``, for a sweep that declares one) the sweep's table (table.md, ...) into
    ``sweep_dir``; a table that cannot be made is logged, never raised. ``expected``: the sweep's job folder
    names; ``slurm``: jobs submitted to SLURM (their states are asked for, to name the cancelled ones);
    ``search``: an Optuna search's metric and direction (its best trial goes to ``best.json``, ``best_trial``)."""
    root = Path(sweep_dir)
    _SUMMARIZED.add(str(root.resolve()))
    status = sweep_status(root, expected, slurm_states(root) if slurm else None)
    counts = status["counts"]
    ok = counts.get("ok", 0)
    log.info("sweep finished: %d jobs, %d ok, %d not ok (%s); %d attempts, %.1f s of job time; in %s",
             status["n_jobs"], ok, status["n_jobs"] - ok,
             ", ".join(f"{v} {k}" for k, v in sorted(counts.items())) or "none", status["attempts"],
             status["job_time_s"], root)
    for job in status["jobs"]:
        if job["status"] != "ok":
            log.warning("  %s", job["line"])
    try:
        best = best_trial(root, status["jobs"], search)
    except Exception as e:  # as for the table: the summary still comes
        best = None
        log.warning("no best.json for %s (%s: %s)", root, type(e).__name__, e)
    if best is not None:
        status["best"] = best
        log.info("best trial: %s %s=%.6g with %s (%s, best.json in %s)",
                 best["job"] or "(of an earlier sweep of the stored study)", best["metric"], best["value"],
                 " ".join(best["overrides"]), best["source"], root)
    elif search is not None:
        status["best"] = None
        log.warning("no trial of the search finished with a value of %s: no best trial", search.get("metric"))
    try:
        if table and declares_table(root):
            from attnbench.analysis.report import write_table

            md, paths = write_table(root)
            status["table"] = [str(p) for p in paths]
            log.info("sweep table: %s\n%s", paths[0], md)
    except Exception as e:  # a summary must not turn a finished sweep into a crash
        status["table_error"] = f"{type(e).__name__}: {e}"
        log.warning("no table for %s (%s); once fixed: python scripts/make_table.py %s", root,
                    status["table_error"], root)
    (root / "summary.json").write_text(json.dumps(status, indent=2))
    from attnbench.wandb_log import log_sweep  # W&B: one summary run of the group, where the jobs logged to W&B

    log_sweep(root)
    return status


def declares_table(sweep_dir: Path) -> bool:
    """Whether a job of the sweep names a table (``config.table``, or ``choices.experiment`` in older results)."""
    for f in sweep_dir.rglob("results.json"):
        result = _read(f) or {}
        if (result.get("config") or {}).get("table") is not None or (result.get("choices") or {}).get("experiment"):
            return True
    return False


def expected_job_names(config: DictConfig) -> list[str] | None:
    """The folder names (``<num>_<overrides>``) of the jobs the basic sweeper will launch, in order (None for
    another sweeper: it decides as it goes)."""
    sweeper = config.hydra.sweeper
    if not str(sweeper.get("_target_", "")).endswith("BasicSweeper"):
        return None
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from attnbench.names import job_dirname

    params = [f"{k}={v}" for k, v in (sweeper.get("params") or {}).items()]
    args = [*params, *OmegaConf.to_container(config.hydra.overrides.task, resolve=False)]
    batches = BasicSweeper.split_arguments(OverridesParser.create().parse_overrides(args), None)
    opts = config.hydra.job.config.override_dirname
    exclude = set(opts.get("exclude_keys") or [])
    jobs = [job for batch in batches for job in batch]
    return [job_dirname(num, opts.item_sep.join(  # as Hydra's override_dirname: sorted, excluded keys dropped
        o.replace("=", opts.kv_sep, 1) for o in sorted(job) if o.split("=", 1)[0] not in exclude))
        for num, job in enumerate(jobs)]


def expected_jobs(config: DictConfig) -> int | None:
    """How many jobs the sweep will launch: the basic sweeper's combinations, an Optuna search's ``n_trials`` (with
    ``hydra/sweeper/sampler=grid`` at most that many); None for another sweeper."""
    if is_search(config):
        return int(config.hydra.sweeper.n_trials)
    names = expected_job_names(config)
    return None if names is None else len(names)


# ---------------------------------------------------------------------------------------------- searches
def best_trial(sweep_dir: Path, jobs: list[dict[str, Any]] | None = None,
               search: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The best trial of an Optuna search, from the sweeper's ``optimization_results.yaml`` (``best_params``,
    ``best_value``) and the job whose overrides hold those values; written to ``best.json`` beside it. None where
    there is no such file (no trial finished with a value, or not a search). ``jobs``: ``sweep_status``'s lines
    (trial counts); ``search``: the metric and direction, as ``SweepSummary`` read them from the sweep's config."""
    path = sweep_dir / "optimization_results.yaml"
    if not path.is_file():
        return None
    found = OmegaConf.to_container(OmegaConf.load(path))
    if "best_params" not in found:  # several directions: a Pareto front, left as Optuna wrote it
        log.info("search: %d Pareto-optimal trials in %s", len(found.get("solutions") or []), path)
        return None
    overrides = [f"{k}={v}" for k, v in found["best_params"].items()]  # as the sweeper passed them to the job
    job = None
    for f in sorted(sweep_dir.rglob("results.json"), key=lambda f: _job_order(f.parent)):
        result = _read(f) or {}
        if result.get("status") == "ok" and set(overrides) <= set(result.get("overrides") or []):
            job = f.parent
            value = (result.get("metrics") or {}).get(_metric(result, search), math.nan)
            if math.isclose(float(value), float(found["best_value"])):
                break  # the same values drawn twice: the job that scored the best value
    best = {"metric": (search or {}).get("metric"), "direction": (search or {}).get("direction"),
            "value": found["best_value"], "params": found["best_params"], "overrides": overrides,
            "job": job.name if job is not None else None,  # None: a trial of an earlier sweep of a stored study
            "trials": dict(sorted(Counter(j["status"] for j in jobs or []).items())), "source": path.name}
    if best["metric"] is None and job is not None:
        best["metric"] = _metric(_read(job / "results.json") or {}, None)
    (sweep_dir / "best.json").write_text(json.dumps(best, indent=2))
    return best


def _metric(result: dict[str, Any], search: dict[str, Any] | None) -> str:
    """The metric a search optimised: as its config said, else the job's ``optimized_metric``."""
    return (search or {}).get("metric") or str((result.get("config") or {}).get("optimized_metric"))


# ---------------------------------------------------------------------------------------------- SLURM
def slurm_states(sweep_dir: Path) -> dict[int, str]:
    """SLURM's state of each job of a submitit sweep (``.submitit/<array id>_<task>/``, task = job number), from
    submitit's watcher (as last polled) and, for jobs still known to SLURM, one ``squeue`` now."""
    tasks = {p.name: int(p.name.split("_")[1]) for p in (sweep_dir / ".submitit").glob("*_*")
             if p.is_dir() and all(x.isdigit() for x in p.name.split("_"))}
    if not tasks:
        return {}
    states: dict[int, str] = {}
    try:
        from submitit.slurm.slurm import SlurmJob

        for job_id, num in tasks.items():
            state = SlurmJob.watcher.get_state(job_id, mode="cache")
            if state not in ("UNKNOWN", "LEFT_QUEUE"):
                states[num] = state
    except ImportError:  # submitit absent: squeue alone
        pass
    for job_id, state in _squeue().items():
        if job_id in tasks:
            states[tasks[job_id]] = state
    return states


def _squeue() -> dict[str, str]:
    """``{"<array id>_<task>" or "<job id>": state}`` of this user's jobs SLURM still lists ({} without squeue)."""
    if shutil.which("squeue") is None:
        return {}
    cmd = ["squeue", "--array", "--noheader", "--states=all", "--format=%i|%T", f"--user={getpass.getuser()}"]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True).stdout
    except (OSError, subprocess.SubprocessError) as e:
        log.debug("squeue: %s", e)
        return {}
    return dict(line.split("|", 1) for line in out.splitlines() if "|" in line)


def use_squeue_without_accounting() -> bool:
    """Where ``sacct`` fails (SLURM accounting off), have submitit read job states from ``squeue`` (say so once);
    whether it does. submitit's default watcher polls ``sacct`` and prints each failure, three times a poll."""
    try:
        from submitit.slurm.slurm import SlurmJob
    except ImportError:
        return False
    if getattr(SlurmJob.watcher, "reads_squeue", False):
        return True
    reason = _sacct_fails()
    if reason is None:
        return False
    SlurmJob.watcher = _squeue_watcher()(delay_s=600)  # submitit's own delay
    log.info("SLURM accounting is off (%s): job states come from squeue", reason)
    return True


def _sacct_fails() -> str | None:
    """Why ``sacct`` cannot answer here (accounting off, no sacct), or None where it can."""
    if shutil.which("sacct") is None:
        return "no sacct on the PATH"
    try:
        p = subprocess.run(["sacct", "--noheader", "-X", "-j", "1", "-o", "JobID"], capture_output=True, text=True,
                           timeout=60)
    except (OSError, subprocess.SubprocessError) as e:
        return f"sacct: {e}"
    if p.returncode == 0:
        return None
    said = (p.stderr or p.stdout).strip().splitlines()
    return f"sacct: {said[0] if said else f'exit status {p.returncode}'}"


@functools.cache
def _squeue_watcher() -> type:
    """submitit's SLURM watcher, reading ``squeue`` (defined on first use: submitit is imported only then)."""
    from submitit.slurm.slurm import SlurmInfoWatcher

    class SqueueWatcher(SlurmInfoWatcher):
        """Job states from ``squeue`` (this user's jobs, array tasks one a line, finished ones while SLURM lists
        them); a job it no longer lists has left the queue (``LEFT_QUEUE``): done, its result file says how."""

        reads_squeue = True

        def _make_command(self) -> list[str] | None:
            if not self._registered - self._finished:
                return None
            return ["squeue", "--array", "--noheader", "--states=all", "--format=%i|%T|%N",
                    f"--user={getpass.getuser()}"]

        def read_info(self, string: bytes | str) -> dict[str, dict[str, str]]:
            text = string.decode() if isinstance(string, bytes) else string
            info = super().read_info("JobID|State|NodeList\n" + text)  # sacct's header: submitit's parser
            for job_id in self._registered - self._finished:
                info.setdefault(job_id, {"JobID": job_id, "State": "LEFT_QUEUE", "NodeList": ""})
            return info

    return SqueueWatcher


# ---------------------------------------------------------------------------------------------- callback
class _Progress(threading.Thread):
    """Logs a line for each ``results.json`` that appears under the sweep folder (jobs in other processes), and
    another when one changes (a requeued job's next attempt rewrites it); ``[n/total]``: jobs with a result so
    far, each counted once."""

    def __init__(self, sweep_dir: Path, total: int | None, every_s: float = 2.0) -> None:
        super().__init__(daemon=True)
        self.sweep_dir, self.total, self.every_s = sweep_dir, total, every_s
        self.seen: dict[Path, tuple[int, int]] = {}  # results.json read: (mtime_ns, size) when read
        self.said: dict[Path, str] = {}  # the line last logged per results.json
        self.halt = threading.Event()

    def poll(self) -> int:
        """Log the new and the changed results; return how many jobs have one."""
        for f in sorted(self.sweep_dir.rglob("results.json")):
            try:
                stat = f.stat()
            except OSError:  # replaced between the listing and now: next poll
                continue
            mark = (stat.st_mtime_ns, stat.st_size)  # taken before reading: a write after it is read next poll
            if self.seen.get(f) == mark:
                continue
            result = _read(f)
            if result is None:
                continue  # being written: next poll
            self.seen[f] = mark
            line = job_line(f.parent, result)
            if may_be_requeued(result):
                line += " (may be requeued)"
            if self.said.get(f) == line:  # rewritten with the same news
                continue
            self.said[f] = line
            log.info("[%d/%s] %s", len(self.seen), self.total or "?", line)
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
        self.names: list[str] | None = None  # the jobs' folder names
        self.expected: int | None = None
        self.search: dict[str, Any] | None = None  # an Optuna search: its metric, direction and n_trials
        self.slurm = False  # jobs submitted to SLURM
        self.ended = 0
        self.pid = os.getpid()
        self.progress: _Progress | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.sweep_dir = Path(str(config.hydra.sweep.dir))
        self.pid = os.getpid()
        if is_search(config):
            try:
                check_search(config)  # before the first trial: a misspelt key would fail every trial
            except ConfigError as e:
                report(e, e, None)
                raise SystemExit(EXIT_USER_ERROR) from None
            direction = config.hydra.sweeper.direction
            self.search = {"metric": str(config.optimized_metric), "n_trials": int(config.hydra.sweeper.n_trials),
                           "direction": str(getattr(direction, "name", direction))}
            log.info("search: %s trials, %s %s", self.search["n_trials"], self.search["direction"],
                     self.search["metric"])
        try:
            self.names = expected_job_names(config)
        except Exception as e:  # an unparsable sweep fails in the sweeper itself, with Hydra's message
            log.debug("cannot count the sweep's jobs: %s", e)
            self.names = None
        self.expected = len(self.names) if self.names is not None else expected_jobs(config)
        log.info("sweep of %s jobs into %s", self.expected or "?", self.sweep_dir)
        launcher = str(config.hydra.launcher.get("_target_", ""))
        self.slurm = launcher.endswith("submitit_launcher.SlurmLauncher")
        if self.slurm:
            use_squeue_without_accounting()
        if not launcher.endswith("BasicLauncher"):
            self.progress = _Progress(self.sweep_dir, self.expected, self.poll_s)  # jobs in other processes
            self.progress.start()
        # Hydra raises past on_multirun_end when a job failed: then the summary comes at exit, where a first
        # import of concurrent.futures.thread (pandas, for the table) fails ("can't register atexit after shutdown")
        import concurrent.futures.thread  # noqa: F401

        atexit.register(self._summarize)

    def __getstate__(self) -> dict[str, Any]:  # pickled into submitit jobs: without the thread
        return {**self.__dict__, "progress": None}

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        if getattr(job_return, "hydra_cfg", None) is None:
            return
        out = Path(str(job_return.hydra_cfg.hydra.runtime.output_dir))
        self.ended += 1
        total = f"/{self.expected}" if self.expected else ""
        result = _read(out / "results.json")
        line = job_line(out, result)
        value = ((result or {}).get("metrics") or {}).get((self.search or {}).get("metric"))
        if value is not None:  # a trial: the value the search optimises
            line += f" [{self.search['metric']} {value:.4g}]"
        log.info("[job %d%s] %s", self.ended, total, line)
        in_sweep = self.sweep_dir is not None and os.getpid() == self.pid  # not in a submitit worker
        # the last expected job ends the sweep; a search's end (on_multirun_end) comes after its best is written
        if in_sweep and self.search is None and self.expected is not None and self.ended >= self.expected:
            self._summarize()

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._summarize()

    def _summarize(self) -> None:
        if self.sweep_dir is None or os.getpid() != self.pid or str(self.sweep_dir.resolve()) in _SUMMARIZED:
            return
        if self.progress is not None:
            self.progress.stop()
        summarize_sweep(self.sweep_dir, table=self.table, expected=self.names, slurm=self.slurm, search=self.search)
