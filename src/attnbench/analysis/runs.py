"""What every table needs to know about a job beyond its scores: its seed, whether it was cut short, and which
overrides tell it apart from the other jobs of its sweep.

Tables group jobs that differ only by seed (mean ± std over seeds, n), never average a truncated run with a full
one, and mark a truncated run's label with a footnote marker whose legend line says why:

    facts = job_facts(result)             # seed, overrides, truncation reasons of one results.json
    runs = label_variants(runs, keys)     # model label += differing overrides + marker; runs["mark"]
    notes = truncation_notes(runs)        # ["‡ debug run (debug=fast): not comparable with published numbers"]

A run is truncated when it is a debug run (``debug`` choice or ``task_name: debug``), limits its batches
(``trainer.limit_*_batches`` < 100 %, ``fast_dev_run``, ``overfit_batches``), or its overrides cut the training
budget below what its experiment configures (``trainer.max_epochs=3`` where the experiment says 20, a smaller
``callbacks.early_stopping.patience``, ``trainer.max_steps``/``max_time``). The configured values come from
composing ``conf/`` with the run's experiment, trainer and callbacks choices; where that fails (a renamed
experiment), any budget override marks the run. Everything else is read from ``results.json`` (``config``,
``choices``, ``overrides``), so results written before these fields meant anything still load.
"""

from __future__ import annotations

import functools
import json
import logging
import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pandas as pd

log = logging.getLogger(__name__)
MARK = "‡"  # truncated runs: ‡, ‡2, ‡3, ... one per distinct reason, in order of first appearance
TEX_MARK = r"\ddag{}"
# overrides that can cut training short, and how: "lower" (a smaller number stops sooner; -1/None = no limit),
# "higher" (a larger number stops sooner), "set" (any value where the experiment sets none)
BUDGET_KEYS = {"trainer.max_epochs": "lower", "trainer.max_steps": "lower", "trainer.max_time": "set",
               "callbacks.early_stopping.patience": "lower", "callbacks.early_stopping.min_delta": "higher"}
BUDGET_WORDS = {"trainer.max_epochs": "{} epochs", "callbacks.early_stopping.patience": "patience {}"}
LIMIT_KEYS = ("limit_train_batches", "limit_val_batches", "limit_test_batches")
# overrides that do not change what a run computes (or are table keys of their own): never in a label.
# Exact keys (group choices: ``trainer=gpu`` is neutral, ``trainer.gradient_clip_val=0`` is not) ...
NEUTRAL_KEYS = ("seed", "experiment", "debug", "logger", "trainer", "model", "model/attention", "data", "tags",
                "task_name", "ckpt_path", "optimized_metric", "trainer.accelerator", "trainer.devices",
                "trainer.enable_progress_bar", "trainer.log_every_n_steps", "data.num_workers", "data.download",
                "data.verify", "data.data_dir")
# ... and prefixes (everything under them)
NEUTRAL_PREFIXES = ("paths", "hydra", "logger", "callbacks.rich_progress_bar", "callbacks.model_summary",
                    "callbacks.lr_monitor")


def override_key(override: str) -> str:
    """``+trainer.max_epochs=3`` -> ``trainer.max_epochs`` (``~key`` and ``++key=v`` alike)."""
    return override.lstrip("+~").split("=", 1)[0].strip()


def _value(override: str) -> str:
    return override.split("=", 1)[1] if "=" in override else "null"


def _matches(key: str, prefixes: tuple[str, ...] | set[str]) -> bool:
    """``key`` is one of ``prefixes`` or lies under one (``paths.data_dir`` under ``paths``)."""
    return any(key == k or key.startswith(k + ".") for k in prefixes)


def _limited(value: Any) -> bool:
    """Lightning's limit semantics: an int counts batches, a float < 1.0 a fraction; 1.0 (or None) is all."""
    if value is None or isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, float) and value < 1.0


def truncation_reasons(result: dict[str, Any]) -> list[str]:
    """Why the run of one ``results.json`` is not a full run of its experiment ([] when it is one)."""
    config = result.get("config") or {}
    choices = result.get("choices") or {}
    trainer = config.get("trainer") or {}
    overrides = [str(o) for o in result.get("overrides") or []]
    reasons = []
    debug = choices.get("debug")
    if debug not in (None, "null") or config.get("task_name") == "debug":
        reasons.append(f"debug run (debug={debug})" if debug not in (None, "null") else "debug run")
    limits = [f"{k.removeprefix('limit_').removesuffix('_batches')} {trainer[k]}"
              for k in LIMIT_KEYS if _limited(trainer.get(k))]
    if limits:
        reasons.append("batch limits (" + ", ".join(limits) + ")")
    if trainer.get("fast_dev_run"):
        reasons.append(f"fast_dev_run={trainer['fast_dev_run']}")
    if trainer.get("overfit_batches"):
        reasons.append(f"overfit_batches={trainer['overfit_batches']}")
    budget = [o for o in overrides if override_key(o) in BUDGET_KEYS]
    # the budget the run's own choices give: a baseline's recipe (conf/recipe/<model>.yaml, picked by data.name)
    # sets its epochs and patience, so model, data and data.name take part
    data_name = (config.get("data") or {}).get("name")
    configured = configured_budget(*(choices.get(g) for g in ("experiment", "trainer", "callbacks", "model", "data")),
                                   data_name if isinstance(data_name, str) else None) if budget else {}
    cut = []
    for o in budget:
        key, value = override_key(o), _number(_value(o))
        if configured is None:  # cannot tell: any budget override is marked
            cut.append(o.lstrip("+"))
        elif _cuts(BUDGET_KEYS[key], value, configured.get(key)):
            shown = BUDGET_WORDS[key].format(_value(o)) if key in BUDGET_WORDS else o.lstrip("+")
            limit = "no limit" if configured[key] in (None, -1) else configured[key]
            cut.append(f"{shown} < {limit}" if BUDGET_KEYS[key] == "lower" else shown)
    if cut:
        reasons.append(("reduced budget (" if configured is not None else "budget overridden (") + ", ".join(cut)
                       + ")")
    return reasons


def _number(text: str) -> Any:
    try:
        return float(text)
    except ValueError:
        return None if text.strip().lower() in ("null", "none", "") else text


def _cuts(how: str, value: Any, configured: Any) -> bool:
    """Does an override ``value`` stop training sooner than the ``configured`` one?"""
    unlimited = (None, -1, -1.0)
    if how == "set":
        return value is not None and configured is None
    if not isinstance(value, float):
        return False
    if how == "lower":
        return value not in unlimited and (configured in unlimited or value < float(configured))
    return configured is not None and value > float(configured)


@functools.lru_cache(maxsize=64)
def configured_budget(experiment: str | None, trainer: str | None, callbacks: str | None, model: str | None = None,
                      data: str | None = None, data_name: str | None = None) -> dict[str, Any] | None:
    """The ``BUDGET_KEYS`` values the project's ``conf/`` gives these choices (None when it cannot compose); with
    ``model``, ``data`` and ``data_name``, a baseline's recipe for that data set included."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from attnbench.config import project_root, register_configs

    conf = Path(project_root()) / "conf"
    chosen = (("experiment", experiment), ("trainer", trainer), ("callbacks", callbacks), ("model", model),
              ("data", data))
    overrides = [f"{g}={c}" for g, c in chosen if c not in (None, "null")]
    if data_name:
        overrides.append(f"data.name={data_name}")
    if any(not (conf / g / f"{c}.yaml").is_file() for g, c in chosen if c not in (None, "null")):
        return None  # an optional group would silently compose without it
    try:
        register_configs()
        if GlobalHydra.instance().is_initialized():  # inside a Hydra app (the end-of-sweep summary)
            cfg = compose("train", overrides=overrides)
        else:
            with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
                cfg = compose("train", overrides=overrides)
    except Exception as e:  # a renamed experiment, a different checkout: mark every budget override
        log.debug("cannot compose %s: %s", overrides, e)
        return None
    from omegaconf import OmegaConf

    return {k: OmegaConf.select(cfg, k, default=None) for k in BUDGET_KEYS}


def seed_of(result: dict[str, Any]) -> int | None:
    seed = (result.get("config") or {}).get("seed")
    return int(seed) if isinstance(seed, int | float) and not isinstance(seed, bool) else None


def job_facts(result: dict[str, Any]) -> dict[str, Any]:
    """Columns every run table carries: ``seed``, ``truncated`` (reasons joined by "; ", "" when full) and
    ``overrides`` (the job's command-line overrides, a tuple)."""
    return {"seed": seed_of(result), "truncated": "; ".join(truncation_reasons(result)),
            "overrides": tuple(str(o) for o in result.get("overrides") or [])}


FACT_COLUMNS = ["seed", "truncated", "overrides", "mark"]


def hydra_stand_in(job_dir: Path, error: str) -> dict[str, Any]:
    """A ``results.json`` stand-in for a job that wrote none, from its ``.hydra/`` folder (config, choices,
    overrides)."""
    from omegaconf import OmegaConf

    hydra_dir = job_dir / ".hydra"
    config = OmegaConf.to_container(OmegaConf.load(hydra_dir / "config.yaml"), resolve=False)
    choices: Any = {}
    if (hydra_dir / "hydra.yaml").is_file():
        node = OmegaConf.select(OmegaConf.load(hydra_dir / "hydra.yaml"), "hydra.runtime.choices", default={})
        choices = OmegaConf.to_container(node, resolve=False) if OmegaConf.is_config(node) else node
    overrides: Any = []
    if (hydra_dir / "overrides.yaml").is_file():
        overrides = OmegaConf.to_container(OmegaConf.load(hydra_dir / "overrides.yaml"))
    return {"error": error, "choices": choices, "config": config, "overrides": overrides}


MISSING_ERROR = "no results.json: the job was killed or is still running"
# missing: a job folder (.hydra/) without results.json; any other status (interrupted, ...) counts as failed
STATUSES = ("ok", "failed", "interrupted", "missing")


POSITIONED_ATTENTION = "model/attention@model.net."  # the choice key of an attention placed in one position


def model_label(choices: dict[str, Any]) -> str:
    """``choices["model"]``, plus ``[<attention>]`` when ``model/attention`` names a different one, and
    ``[<position>=<attention>]`` for each attention placed in a position (``model/attention@model.net.<position>``)
    that is not ``full``."""
    label = str(choices["model"])
    attention = choices.get("model/attention")
    if attention not in (None, choices["model"]):
        label += f"[{attention}]"
    for key, name in sorted(choices.items()):  # an attention per position (Informer): [cross_attention=performer]
        if key.startswith(POSITIONED_ATTENTION) and name != "full":
            label += f"[{key.removeprefix(POSITIONED_ATTENTION)}={name}]"
    return label


def job_parts(job_dir: Path, result: dict[str, Any], data_keys: tuple[str, ...], status: str | None = None,
              hint: str = "") -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(choices, config.data, metrics, base) of one job's ``results.json`` content, checked: the model choice,
    the ``data_keys`` and a known status must be there (errors name the file). ``base`` holds the columns every
    run table shares: status, error, wall_time_s, attention (the entry the job ran: ``model.net.attention.name``,
    else the ``model/attention`` choice), peak_memory_mb, n_params, epochs, attention_gflops (per example forward,
    ``attention.flops``; None for older results), run_dir and ``job_facts``."""
    where = job_dir / "results.json"
    choices = result.get("choices") or {}
    data = (result.get("config") or {}).get("data") or {}
    if "model" not in choices:
        raise ValueError(f"{where}: no choices['model'] to name the model "
                         "(written by an older train.py, or outside Hydra?)")
    if any(k not in data for k in data_keys):
        raise ValueError(f"{where}: {' and '.join(f'config.data.{k}' for k in data_keys)} are required{hint}")
    status = status or result.get("status")
    if not isinstance(status, str) or not status:
        raise ValueError(f"{where}: status={status!r}; expected one of {STATUSES}")
    metrics = result.get("metrics") or {}
    net = ((result.get("config") or {}).get("model") or {}).get("net") or {}
    attention = (net.get("attention") or {}).get("name") if isinstance(net.get("attention"), dict) else None
    base = {"status": status, "error": result.get("error"), "wall_time_s": result.get("wall_time_s"),
            "attention": attention or choices.get("model/attention"),
            "peak_memory_mb": result.get("peak_memory_mb"), "n_params": metrics.get("n_params"),
            "epochs": metrics.get("epochs"), "epoch_s": metrics.get("epoch_s"),
            "attention_gflops": metrics.get("attention_gflops"),
            "run_dir": str(job_dir), **job_facts(result)}
    return choices, data, metrics, base


def read_jobs(sweep_dir: str | Path) -> list[tuple[Path, dict[str, Any], str | None]]:
    """Every job of a sweep as (job folder, results.json content, None), then every job folder with ``.hydra/``
    but no ``results.json`` (killed, or still running) as (folder, ``hydra_stand_in``, "missing"): failed jobs
    are kept, never dropped. Raises FileNotFoundError for an absent folder or one without results."""
    root = Path(sweep_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"sweep directory {root} does not exist")
    files = sorted(root.rglob("results.json"))
    if not files:
        raise FileNotFoundError(
            f"no results.json under {root}: expected one folder per job, e.g. {root}/0/results.json "
            "(written by `python train.py -m experiment=...`)")
    jobs: list[tuple[Path, dict[str, Any], str | None]] = []
    for f in files:
        try:
            jobs.append((f.parent, json.loads(f.read_text()), None))
        except json.JSONDecodeError as e:
            raise ValueError(f"{f}: not valid JSON ({e})") from e
    written = {f.parent for f in files}
    for hydra_cfg in sorted(root.glob("**/.hydra/config.yaml")):
        job = hydra_cfg.parent.parent
        if job not in written:
            jobs.append((job, hydra_stand_in(job, MISSING_ERROR), "missing"))
    return jobs


def load_runs(sweep_dir: str | Path, job_rows: Callable[[Path, dict[str, Any], str | None], list[dict[str, Any]]],
              columns: list[str], table_keys: tuple[str, ...], numeric: Iterable[str], order: list[str],
              ints: Iterable[str] = ()) -> pd.DataFrame:
    """The one loader of sweep results: ``job_rows(job_dir, result, status)`` of every job (``read_jobs``),
    labelled (``label_variants`` with the overrides ``table_keys`` the table already names), ``numeric``
    columns as numbers and ``ints`` as ints, sorted by ``order``; columns ``columns`` then ``FACT_COLUMNS``."""
    rows = [row for job, result, status in read_jobs(sweep_dir) for row in job_rows(job, result, status)]
    columns = [*columns, *FACT_COLUMNS]
    runs = label_variants(pd.DataFrame(rows, columns=[c for c in columns if c != "mark"]), table_keys)
    for c in numeric:
        runs[c] = pd.to_numeric(runs[c])
    for c in ints:
        runs[c] = runs[c].astype(int)
    return runs.sort_values(order, ignore_index=True)[columns]


def label_variants(runs: pd.DataFrame, key_prefixes: tuple[str, ...] = ()) -> pd.DataFrame:
    """Make ``runs["model"]`` name what tells a group of jobs apart, so that grouping by it (and the table's
    keys) pools exactly the jobs that differ only by seed.

    Appended to the label: the overrides that differ between jobs of the sweep (not ``NEUTRAL_KEYS`` or
    ``key_prefixes``, the task's table keys such as ``data.name``), then the truncation marker.
    ``runs["mark"]`` holds the marker ("" for full runs); ``runs.attrs["common_overrides"]`` the overrides
    every job shares (said in a note).
    """
    runs = runs.copy()
    skip = set(NEUTRAL_PREFIXES) | set(key_prefixes)
    kept = [tuple(o for o in ov if override_key(o) not in NEUTRAL_KEYS and not _matches(override_key(o), skip)
                  and not override_key(o).startswith(POSITIONED_ATTENTION))  # named by model_label
            for ov in runs["overrides"]]
    common = set.intersection(*(set(k) for k in kept)) if kept else set()
    labels = []
    for model, ov in zip(runs["model"], kept, strict=True):
        extra = [o.lstrip("+") for o in ov if o not in common]
        labels.append(f"{model} ({', '.join(extra)})" if extra else str(model))
    reasons = list(dict.fromkeys(r for r in runs["truncated"] if r))
    marker = {r: MARK if i == 0 else f"{MARK}{i + 1}" for i, r in enumerate(reasons)}
    runs["mark"] = [marker.get(r, "") for r in runs["truncated"]]
    runs["model"] = [lab + m for lab, m in zip(labels, runs["mark"], strict=True)]
    runs.attrs["common_overrides"] = sorted(common)
    return runs


def sweep_notes(runs: pd.DataFrame) -> dict[str, Any]:
    """What the legend needs, to keep in a table's ``attrs``: ``marks`` [(marker, reason)] and
    ``common_overrides``."""
    seen = runs[runs["mark"] != ""].drop_duplicates("mark")
    return {"marks": list(zip(seen["mark"], seen["truncated"], strict=True)),
            "common_overrides": list(runs.attrs.get("common_overrides") or [])}


def truncation_notes(attrs: dict[str, Any]) -> list[str]:
    """One legend line per truncation marker, then the overrides every job shared (from ``sweep_notes``)."""
    notes = [f"{mark} truncated run: {why}. Not comparable with the published numbers."
             for mark, why in attrs.get("marks") or []]
    common = attrs.get("common_overrides") or []
    if common:
        notes.append("Every job ran with " + ", ".join(common) + ".")
    return notes


def status_kind(status: Any) -> str:
    """``ok``, ``missing`` or ``failed`` (any other status: failed, interrupted, ...)."""
    return status if status in ("ok", "missing") else "failed"


def cell_stats(runs: pd.DataFrame, keys: list[str], metrics: list[str]) -> pd.DataFrame:
    """Per ``keys`` (a table cell): mean and sample std over seeds (``<metric>_std``, NaN for one run) of each
    metric over the ok runs, ``n`` (ok runs scored on the first metric), and counts of ``failed``/``missing``
    jobs; every cell with a job is there, counts as ints."""
    kind = runs["status"].map(status_kind)
    counts = pd.crosstab([runs[k] for k in keys], kind).reindex(columns=["ok", "failed", "missing"], fill_value=0)
    ok = runs[kind == "ok"].groupby(keys)
    means = ok[metrics].mean().join(ok[metrics].std().add_suffix("_std")).assign(n=ok[metrics[0]].count())
    stats = counts[["failed", "missing"]].join(means, how="left")
    stats["n"] = stats["n"].fillna(0).astype(int)
    return stats


def mean_std(values: pd.Series) -> tuple[float, float, int]:
    """(mean, sample std over seeds (NaN for one value), n) of the non-missing values."""
    v = pd.to_numeric(values, errors="coerce").dropna()
    n = len(v)
    return (float(v.mean()) if n else math.nan, float(v.std(ddof=1)) if n > 1 else math.nan, n)


def spread(mean: float, std: float, digits: int = 3, pm: str = "±") -> str:
    """``0.390 ± 0.014``, or ``0.390`` when there is no spread (one seed)."""
    if pd.isna(mean):
        return ""
    return f"{mean:.{digits}f}" + ("" if pd.isna(std) else f" {pm} {std:.{digits}f}")
