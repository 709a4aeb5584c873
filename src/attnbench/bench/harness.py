"""The benchmark harness: what every ``python -m attnbench.bench.<name>`` shares.

- configs: each benchmark is a Hydra app (:func:`hydra_main`) on ``conf/bench/<name>.yaml`` with a dataclass
  schema whose ``__post_init__`` names the key and what is allowed (:func:`need`, :func:`check_entries`);
  :func:`load_config` composes one outside Hydra (tests, notebooks); :class:`Device` / :func:`resolve_device`,
  :func:`memory_cap`;
- a sweep: :func:`start_sweep` (clock, device, threads, output folder, machine record), :func:`record` (a
  point's row into the CSV and a progress line), :func:`finish_sweep` (``machine.json``), :func:`publish` (the
  Markdown report);
- models: :func:`model_net` composes ``conf/model/<name>.yaml`` (the configs training uses) and returns its
  ``net`` node, which :func:`build_net` instantiates (no name-to-constructor code in the benchmarks);
- one point: :func:`measure_point` (warm-up, repeats, median / IQR / min, peak memory, ``oom`` / ``error``
  rows); process isolation in :mod:`attnbench.bench.isolation`;
- planning and analysis: :func:`predict` / :func:`predicted` (cost extrapolation), :func:`skip_reason` and
  :func:`budget_spent` (``skipped`` rows), :func:`crossover`
  (where a model starts beating the baseline for good: HOT's crossover and CAB's efficiency length).
"""

from __future__ import annotations

import gc
import shlex
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from attnbench.bench.common import (
    first_line,
    is_oom,
    machine_info,
    mem_available_bytes,
    peak_rss_bytes,
    reset_peak_rss,
    rss_bytes,
    summarize,
    time_steps,
)
from attnbench.config import project_root
from attnbench.errors import EXIT_USER_ERROR, ConfigError, report, user_error

CPU_MEMORY_FRACTION, CUDA_MEMORY_FRACTION = 0.7, 0.9  # default memory caps (see memory_cap)
FAILED = ("oom", "error", "timeout", "killed")  # statuses after which a series stops (skip_reason)
POINT_FIELDS = ["n_warmup", "n_timed", "step_ms_median", "step_ms_iqr", "step_ms_min", "peak_mem_mb", "mem_kind",
                "status", "reason"]  # what measure_point returns


# ----------------------------------------------------------------------------- configs
class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


def need(ok: bool, key: str, value: Any, allowed: str) -> None:
    """Raise a :class:`ConfigError` naming ``key``, its value and what is allowed, unless ``ok``."""
    if not ok:
        raise ConfigError(f"{key}={value!r} is invalid: {allowed}")


@dataclass
class MeasureConfig:
    """The keys every timing benchmark's config shares (its yaml sets them; subclasses set their defaults)."""

    warmup: int = 1
    repeats: int = 3
    time_budget_s: float = 1.0  # per point: warm-up and repeats stop early once spent (one of each still runs)
    point_timeout_s: float = 120.0  # CPU: a point's process is killed after this long (a timeout row)
    max_memory_gb: float | None = None  # None: memory_cap's default
    device: Device = Device.auto
    threads: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        need(self.warmup >= 0, "warmup", self.warmup, "must be >= 0")
        for k in ("repeats", "threads"):
            need(getattr(self, k) >= 1, k, getattr(self, k), "must be >= 1")
        for k in ("time_budget_s", "point_timeout_s"):
            need(getattr(self, k) > 0, k, getattr(self, k), "must be > 0")
        need(self.max_memory_gb is None or self.max_memory_gb > 0, "max_memory_gb", self.max_memory_gb,
             "must be > 0 or null")


def check_entries(entries: Sequence[str], options: Mapping[str, Mapping[str, Any]], tensor_note: str) -> None:
    """Every name in ``entries`` and ``options`` is a registry entry, none of ``entries`` a tensor entry
    (``tensor_note`` says why and where to look instead), and each entry's options are constructor keywords; a
    :class:`ConfigError` naming the key and what is allowed otherwise."""
    from attnbench.attention import available, check_kwargs, get

    names = available()
    for e in [*entries, *options]:
        need(e in names, "entries/baseline/options", e, f"allowed: {', '.join(names)}")
    for e in entries:
        need(not get(e).caps.tensor, "entries", e, tensor_note)
    for e, opts in options.items():
        try:
            check_kwargs(e, dict(opts))
        except TypeError as err:
            raise ConfigError(f"options.{e}: {err}") from None


def resolve_device(device: Device | str) -> str:
    """``cpu`` or ``cuda``: ``auto`` picks CUDA when available; ``cuda`` without one is a config error."""
    device = Device(device)
    if device == Device.auto:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == Device.cuda and not torch.cuda.is_available():
        raise ConfigError("device=cuda but torch.cuda.is_available() is False; use device=cpu or auto")
    return device.value


def memory_cap(max_memory_gb: float | None, device: str) -> int | None:
    """Bytes a point may use: ``max_memory_gb``, else 70% of MemAvailable (CPU) / 90% of the GPU (CUDA)."""
    if max_memory_gb is not None:
        return int(max_memory_gb * 2**30)
    if device == "cpu":
        avail = mem_available_bytes()
        return int(CPU_MEMORY_FRACTION * avail) if avail else None
    return int(CUDA_MEMORY_FRACTION * torch.cuda.get_device_properties(0).total_memory)


def _compose(config_name: str, overrides: Sequence[str]):
    """Compose ``conf/<config_name>`` inside a running Hydra app or on its own."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from attnbench.config import register_configs

    register_configs()
    if GlobalHydra.instance().is_initialized():  # inside a benchmark's Hydra app: same conf/ tree
        return compose(config_name, overrides=list(overrides))
    with initialize_config_dir(config_dir=str(Path(project_root()) / "conf"), version_base="1.3"):
        return compose(config_name, overrides=list(overrides))


def hydra_main(name: str, run: Callable[[Any, str], object]) -> Callable[[], None]:
    """The ``main`` of ``python -m attnbench.bench.<name>``: a Hydra app on ``conf/bench/<name>.yaml`` that builds
    the checked schema object (``OmegaConf.to_object`` runs its ``__post_init__``) and calls ``run(cfg, command)``,
    ``command`` being the line that started it (reports quote it)."""
    import hydra
    from omegaconf import DictConfig, OmegaConf

    module = f"attnbench.bench.{name}"

    @hydra.main(config_path=str(Path(project_root()) / "conf"), config_name=f"bench/{name}", version_base="1.3")
    def main(cfg: DictConfig) -> None:
        try:
            run(OmegaConf.to_object(cfg), " ".join(["python", "-m", module, *map(shlex.quote, sys.argv[1:])]))
        except Exception as e:  # a bad value or missing data: one message that leads with the fix, as train.py
            fix = user_error(e)
            if fix is None:
                raise
            report(e, fix, None)
            sys.exit(EXIT_USER_ERROR)

    return main


def load_config(name: str, overrides: Sequence[str] = ()) -> Any:
    """The checked schema object of ``conf/bench/<name>.yaml`` with ``key=value`` overrides, as the CLI gets it."""
    import importlib

    from omegaconf import OmegaConf

    importlib.import_module(f"attnbench.bench.{name}")  # registers the benchmark's schema
    cfg = _compose(f"bench/{name}", overrides)
    return OmegaConf.to_object(cfg)


def model_net(model: str, **sizes: Any) -> dict[str, Any]:
    """The ``net`` node of ``conf/model/<model>.yaml`` as training composes it, with ``sizes`` set (the shapes
    a benchmark point decides: seq_len, img_size, n_classes, ...; those the net does not take are left out: a
ResNet has no patch size), resolved: plain JSON for a point's process.

    A value the model config takes from another group (``${data.seq_len}``) must be among ``sizes``.
    """
    from omegaconf import OmegaConf

    if not (Path(project_root()) / "conf" / "model" / f"{model}.yaml").is_file():
        allowed = sorted(p.stem for p in (Path(project_root()) / "conf" / "model").glob("*.yaml"))
        raise ConfigError(f"models: {model!r} is not a model config; allowed: {', '.join(allowed)}")
    node = _compose("train", [f"model={model}"]).model.net
    net = OmegaConf.to_container(node, resolve=False, enum_to_str=True)
    net.update({k: v for k, v in sizes.items() if k in net})
    try:
        return OmegaConf.to_container(OmegaConf.create(net), resolve=True, enum_to_str=True)
    except Exception as e:  # an interpolation into another group that sizes did not replace
        raise ConfigError(f"model={model}: its net needs a value the benchmark does not set: {e}") from None


def build_net(net: dict[str, Any]) -> torch.nn.Module:
    """The module of a :func:`model_net` node (``hydra.utils.instantiate``)."""
    from hydra.utils import instantiate

    return instantiate(net, _convert_="all")


def count_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def start_sweep(device: Device | str, threads: int, out_dir: str | Path, command: str | None = None
                ) -> tuple[float, str, Path, dict[str, Any]]:
    """What every sweep starts with: its clock (``time.perf_counter``), the resolved device, torch's threads set,
    ``out_dir`` created, and the machine record (``common.machine_info``, load average and UTC date now, and the
    ``command`` that started it, which a saved record names) that :func:`finish_sweep` completes."""
    import os
    from datetime import datetime, timezone

    t_start = time.perf_counter()
    dev = resolve_device(device)
    torch.set_num_threads(threads)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    machine = {**machine_info(dev, threads), "loadavg_start": os.getloadavg(),
               "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "command": command}
    return t_start, dev, out, machine


def finish_sweep(machine: dict[str, Any], t_start: float, out: Path) -> dict[str, Any]:
    """Add the load average and wall time to the machine record and write it as ``out/machine.json``."""
    import json
    import os

    machine.update(loadavg_end=os.getloadavg(), wall_s=round(time.perf_counter() - t_start, 1))
    (out / "machine.json").write_text(json.dumps(machine, indent=2) + "\n")
    return machine


def record(rows: list[dict], row: dict, columns: list[str], path: Path, t_start: float, label: str,
           time_col: str = "step_ms_median") -> pd.DataFrame:
    """Append a point's ``row``, rewrite the CSV at ``path`` (partial results survive a kill) and print one
    progress line ``[elapsed] label: status time memory reason``; returns the rows as a frame."""
    from attnbench.bench.common import fmt

    rows.append(row)
    df = write_rows(rows, columns, path)
    print(f"[{time.perf_counter() - t_start:6.0f} s] {label}: {row['status']} {fmt(row.get(time_col))} ms "
          f"{fmt(row.get('peak_mem_mb'))} MB {row.get('reason', '')}", flush=True)
    return df


def publish(path: Path, markdown: str) -> str:
    """Write a benchmark's Markdown report to ``path`` and print it; returns it."""
    path.write_text(markdown)
    print(markdown)
    return markdown


def write_rows(rows: list[dict], columns: list[str], path: Path) -> pd.DataFrame:
    """The rows as a CSV with exactly ``columns`` (missing fields empty); returns the frame."""
    df = pd.DataFrame(rows).reindex(columns=columns)
    df.to_csv(path, index=False)
    return df


# ----------------------------------------------------------------------------- one point
@dataclass(frozen=True, kw_only=True)
class PointTiming:
    """How a point is measured; each benchmark's point spec extends it with its shapes (JSON round-trips)."""

    warmup: int
    repeats: int
    time_budget_s: float
    device: str
    threads: int
    seed: int
    max_memory_bytes: int | None = None  # CPU only: address-space allowance of the point's process


@dataclass(frozen=True, kw_only=True)
class EntryPoint(PointTiming):
    """A point of one attention entry (with its constructor options) at one sequence length."""

    entry: str
    options: dict
    length: int


def measure_point(build: Callable[[], Callable[[], object]], spec: PointTiming, *,
                  before: Callable[[], object] | None = None,
                  check: Callable[[], str | None] | None = None) -> dict[str, Any]:
    """Time and peak memory of one point in this process; an ``oom`` / ``error`` row instead of raising.

    ``before()`` runs first and is not counted in memory (inputs, a runtime warm-up); then the memory baseline
    (CUDA: ``max_memory_allocated`` after ``reset_peak_memory_stats``; CPU: the peak RSS just after
    ``common.reset_peak_rss`` reset it to the current RSS, or the RSS where the reset is refused); then
    ``build()`` returns the step that ``spec.warmup`` + ``spec.repeats`` calls time (``common.time_steps``, cut
    short by ``spec.time_budget_s``; CUDA synchronised). ``check()`` after timing may turn the point into an
    ``error`` row (e.g. a non-finite loss). Fields: :data:`POINT_FIELDS`.
    """
    dev = torch.device(spec.device)
    cuda = dev.type == "cuda"
    mem_kind = "cuda_max_allocated" if cuda else "cpu_peak_rss_increase"
    try:
        if before is not None:
            before()
        gc.collect()
        if cuda:
            torch.cuda.synchronize(dev)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(dev)
            base = torch.cuda.memory_allocated(dev)
        else:
            # after a reset the baseline is read from the peak counter itself: the kernel's RSS counters are
            # approximate (per-CPU), and statm's RSS could sit ~100 KB above the reset peak (negative increases)
            reset = reset_peak_rss()
            mem_kind += "" if reset else "_lifetime"
            base = peak_rss_bytes() if reset else rss_bytes()
        step = build()
        sync = (lambda: torch.cuda.synchronize(dev)) if cuda else (lambda: None)
        n_warm, times = time_steps(step, spec.warmup, spec.repeats, spec.time_budget_s, sync)
        peak = (torch.cuda.max_memory_allocated(dev) if cuda else peak_rss_bytes()) - base
        bad = check() if check is not None else None
    except (RuntimeError, MemoryError, ValueError) as err:
        return {"status": "oom" if is_oom(err) else "error", "reason": first_line(err), "mem_kind": mem_kind}
    finally:
        step = None  # noqa: F841  (free the point's tensors before the next one)
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()
    if bad is not None:
        return {"status": "error", "reason": bad, "mem_kind": mem_kind}
    return {"status": "ok", "reason": "", "n_warmup": n_warm, "n_timed": len(times), **summarize(times),
            "peak_mem_mb": peak / 2**20, "mem_kind": mem_kind}


# ----------------------------------------------------------------------------- planning
def predict(xs: Sequence[float], values: Sequence[float], at: float, power: float | None = None) -> float:
    """Extrapolate a cost to ``at`` as c * x^p from the last point: ``power`` if given, else p from the last
    two points clipped to [1, 2] (a single point: p = 2, the cautious guess)."""
    p = 2.0 if power is None else power
    if power is None and len(values) >= 2 and values[-2] > 0 and values[-1] > 0 and xs[-1] != xs[-2]:
        p = min(max(float(np.log(values[-1] / values[-2]) / np.log(xs[-1] / xs[-2])), 1.0), 2.0)
    return values[-1] * (at / xs[-1]) ** p


def budget_spent(t_start: float, max_total_s: float | None) -> str | None:
    """The skip reason once ``max_total_s`` seconds have passed since ``t_start`` (``time.perf_counter``), else
    None (also for no limit)."""
    elapsed = time.perf_counter() - t_start
    if max_total_s is None or elapsed <= max_total_s:
        return None
    return f"max_total_s={max_total_s:g} spent ({elapsed:.0f} s)"


def predicted(history: pd.DataFrame, at: float, column: str, x: str = "length") -> float | None:
    """``column`` at ``x`` = ``at`` by :func:`predict` from the ``ok`` rows of a series (None without one)."""
    ok = history[history["status"] == "ok"].sort_values(x)
    if ok.empty:
        return None
    return predict(ok[x].tolist(), ok[column].astype(float).clip(lower=1e-6).tolist(), at)


def skip_reason(history: pd.DataFrame, length: int, max_call_s: float, max_mem_mb: float | None) -> str | None:
    """Why a point at ``length`` should not run, given the earlier rows of its series (columns length, status,
    ms_median, peak_mem_mb), or None: a failure of the series (:data:`FAILED`), or a call predicted to take more
    than ``max_call_s`` seconds or more than ``max_mem_mb`` MB."""
    if history.empty:
        return None
    failed = history[history["status"].isin(FAILED)]
    if len(failed):
        r = failed.iloc[0]
        return f"{r['status']} at length {r['length']}"
    t = predicted(history, length, "ms_median")
    if t is None:
        return None
    if t / 1e3 > max_call_s:
        return f"predicted {t / 1e3:.3g} s a call > max_call_s={max_call_s:g}"
    m = predicted(history, length, "peak_mem_mb") if max_mem_mb is not None else None
    if m is not None and m > max_mem_mb:
        return f"predicted {m:,.0f} MB > memory cap {max_mem_mb:,.0f} MB"
    return None


# ----------------------------------------------------------------------------- analysis
def crossover(df: pd.DataFrame, metric: str, *, name: str, baseline: str, series: Sequence[str], x: str,
              carry: Sequence[str] = ()) -> pd.DataFrame:
    """Per model (column ``name``, every value but ``baseline``) and ``series`` group: the smallest ``x`` from
    which the model beats ``baseline`` on ``metric`` for good.

    Only points where both ran (status ``ok``) are paired, on ``series`` + ``x`` + ``carry``. The crossover is
    the smallest paired ``x`` such that the model has the strictly lower ``metric`` at every paired point with a
    larger ``x``; <NA> when the baseline is as good or better at the largest paired point (beating it and then
    losing again does not count). Columns: ``name``, ``series``, metric, crossover, ``carry`` (their values at
    the crossover), n_pairs, n_wins, max_paired.
    """
    if metric not in df.columns:
        raise KeyError(f"metric {metric!r} not in columns {list(df.columns)}")
    keys, series = [*series, x, *carry], list(series)
    ok = df[df["status"] == "ok"]
    base = ok[ok[name] == baseline][[*keys, metric]]
    rows = []
    for key, g in df[df[name] != baseline].groupby([name, *series], sort=True):
        a = g[g["status"] == "ok"][[*keys, metric]]
        pairs = a.merge(base, on=keys, suffixes=("_m", "_b")).sort_values(x)
        wins = (pairs[f"{metric}_m"] < pairs[f"{metric}_b"]).to_numpy()
        at: dict[str, Any] = {c: pd.NA for c in ["crossover", *carry]}
        if len(wins) and wins[-1]:
            losses = np.flatnonzero(~wins)
            i = losses[-1] + 1 if losses.size else 0  # first index of the final all-wins run
            at = {"crossover": int(pairs[x].iloc[i]), **{c: int(pairs[c].iloc[i]) for c in carry}}
        rows.append({**dict(zip([name, *series], key, strict=True)), "metric": metric, **at,
                     "n_pairs": len(wins), "n_wins": int(wins.sum()),
                     "max_paired": int(pairs[x].max()) if len(wins) else pd.NA})
    out = pd.DataFrame(rows, columns=[name, *series, "metric", "crossover", *carry, "n_pairs", "n_wins",
                                      "max_paired"])
    for col in ("crossover", *carry, "max_paired"):
        out[col] = out[col].astype("Int64")
    return out
