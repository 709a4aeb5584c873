"""Measuring helpers shared by the benchmarks: timing, step statistics, CPU/CUDA memory, machine facts.

CPU memory is a process's peak resident set size (``ru_maxrss``); :func:`reset_peak_rss` resets it
(Linux >= 4.0) so that one process can measure several points one after another. Process isolation lives in
:mod:`attnbench.bench.isolation`, the point routine in :mod:`attnbench.bench.harness`.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import os
import platform
import resource
import time
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from attnbench.provenance import code_version


def machine_info(device: str, threads: int) -> dict:
    """CPU model, core count, torch version, threads and device name of this machine."""
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    name = torch.cuda.get_device_name(0) if device == "cuda" else cpu
    return {"device": device, "device_name": name, "cpu_model": cpu, "cpu_count": os.cpu_count(),
            "threads": threads, "torch": torch.__version__, "python": platform.python_version(),
            "platform": platform.platform(), "code": code_version()}


def mem_available_bytes() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            kb = next(int(ln.split()[1]) for ln in f if ln.startswith("MemAvailable"))
        return kb * 1024
    except (OSError, StopIteration):
        return None


def time_steps(step: Callable[[], object], warmup: int, repeats: int, budget_s: float,
               sync: Callable[[], None] = lambda: None) -> tuple[int, list[float]]:
    """Run ``warmup`` untimed then up to ``repeats`` timed calls of ``step``; seconds per timed call.

    Once ``budget_s`` (counted from the first call) is spent both loops stop early, keeping at least one
    warm-up call (if ``warmup`` >= 1) and one timed call. Returns (warm-up calls made, timed seconds).
    """
    if repeats < 1:
        raise ValueError(f"repeats={repeats} must be >= 1")
    start = time.perf_counter()
    n_warm = 0
    while n_warm < warmup and (n_warm == 0 or time.perf_counter() - start < budget_s):
        step()
        sync()
        n_warm += 1
    times: list[float] = []
    while len(times) < repeats and (not times or time.perf_counter() - start < budget_s):
        t0 = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t0)
    return n_warm, times


def summarize(times_s: Sequence[float]) -> dict[str, float]:
    """Median, interquartile range (NaN for a single sample) and min of step times, in milliseconds."""
    ms = np.asarray(times_s, dtype=float) * 1e3
    if ms.size == 0:
        raise ValueError("no step times to summarize")
    iqr = float(np.subtract(*np.percentile(ms, [75, 25]))) if ms.size > 1 else math.nan
    return {"step_ms_median": float(np.median(ms)), "step_ms_iqr": iqr, "step_ms_min": float(ms.min())}


def rss_bytes() -> int:
    """Current resident set size of this process (Linux /proc)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    """Peak resident set size of this process's memory (VmHWM; what :func:`reset_peak_rss` resets).

    Not ``ru_maxrss``: that is at least the peak of the process that spawned this one (the kernel keeps the
    parent's high-water mark across a vfork + exec), so a point smaller than the benchmark driver read as the
    driver's size. ``ru_maxrss`` (KiB) only where /proc is missing.
    """
    try:
        with open("/proc/self/status") as f:
            return next(int(ln.split()[1]) for ln in f if ln.startswith("VmHWM:")) * 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def reset_peak_rss() -> bool:
    """Hand freed heap back to the OS (glibc ``malloc_trim``) and reset the peak RSS to the current RSS.

    Writing "5" to /proc/self/clear_refs resets VmHWM, which ``ru_maxrss`` reports (Linux >= 4.0). False
    where that is refused: the peak is then the process's lifetime peak (kept meaningful by running
    each point in a fresh process), and the row's mem_kind says so.
    """
    # Not glibc: freed memory stays mapped and gets reused, so the peak increase can only come out lower.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def is_oom(err: BaseException) -> bool:
    """Whether an exception is an allocation failure (CUDA OOM, CPU allocator or Python MemoryError)."""
    if isinstance(err, MemoryError | torch.cuda.OutOfMemoryError):
        return True
    msg = str(err)
    return "out of memory" in msg or "can't allocate memory" in msg


def first_line(err: BaseException, limit: int = 200) -> str:
    """``Type: message``, first line only, at most ``limit`` characters (for a row's reason)."""
    msg = str(err).strip()
    text = f"{type(err).__name__}: {msg}" if msg else type(err).__name__
    return text.splitlines()[0][:limit]


def fmt(v: object, digits: int = 1) -> str:
    """A table cell: "-" for a missing value, floats with thousands separators."""
    if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA:
        return "-"
    return f"{v:,.{digits}f}" if isinstance(v, float) else str(v)
