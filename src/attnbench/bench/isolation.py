"""Process isolation of benchmark points: the one way a benchmark runs a measurement in another process.

A :class:`Worker` is a Python process that imports a function (``"module:function"``), caps its own address
space, then answers one JSON task per stdin line with the function's JSON result on one tagged stdout line.
CPU peak RSS is per process, so a benchmark either gives every point a fresh process (:func:`run_isolated`)
or keeps one worker per model and resets the peak between points (``common.reset_peak_rss``). A process that
prints no result becomes a failure row: ``timeout`` (killed after ``timeout_s``), ``killed`` (SIGKILL: the
kernel OOM killer?), ``oom`` or ``error``, with the last stderr line as the reason.

Standard library only: a worker's start-up costs only what its target imports.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import resource
import select
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any

RESULT_TAG = "ATTNBENCH_POINT_RESULT "  # the line a worker prints a task's result on
OOM_MARKERS = ("MemoryError", "can't allocate memory", "bad_alloc", "out of memory")


def limit_address_space(allowance: int | None) -> None:
    """Cap this process's address space at its current size + ``allowance`` bytes (RLIMIT_AS).

    Past the cap allocations fail with a RuntimeError (recorded as ``oom``) instead of the kernel's
    OOM killer picking a process, possibly someone else's, on a shared machine.
    """
    if allowance is None:
        return
    with open("/proc/self/statm") as f:
        vm_size = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    resource.setrlimit(resource.RLIMIT_AS, (vm_size + allowance, resource.RLIM_INFINITY))


def serve(target: str, max_memory_bytes: int | None) -> int:
    """A worker's main loop: import ``target``, cap memory (after the imports, so that they fit), then answer
    one JSON task per stdin line with ``RESULT_TAG`` + the JSON result, until stdin closes."""
    module, name = target.split(":")
    fn = getattr(importlib.import_module(module), name)
    limit_address_space(max_memory_bytes)
    for line in sys.stdin:
        if line.strip():
            print(RESULT_TAG + json.dumps(fn(json.loads(line))), flush=True)
    return 0


def failure(returncode: int, tail: str, max_memory_bytes: int | None) -> dict[str, str]:
    """The row of a process that exited with ``returncode`` without printing a result.

    An allocation can fail outside the point's own try (e.g. while printing), or inside native code that does
    not check malloc's NULL and then segfaults/aborts: under our own address-space cap that is how an
    allocation failure looks, so SIGSEGV/SIGABRT there count as ``oom`` (the reason says so).
    """
    if returncode == -signal.SIGKILL:
        return {"status": "killed", "reason": f"point process got SIGKILL (kernel OOM killer?): {tail}"}
    if max_memory_bytes is not None and returncode in (-signal.SIGSEGV, -signal.SIGABRT):
        name = signal.Signals(-returncode).name
        return {"status": "oom", "reason": f"point process died with {name} under the "
                f"{max_memory_bytes / 2**30:.2f} GB address-space cap (unchecked allocation failure): {tail}"}
    oom = any(s in tail for s in OOM_MARKERS)
    return {"status": "oom" if oom else "error", "reason": f"point process exited with {returncode}: {tail}"}


class Worker:
    """A persistent process running ``target`` (``"module:function"``) on JSON tasks, one after another.

    :meth:`run` returns the function's result, or a failure row (a dict with ``status`` and ``reason``) when the
    process timed out (it is killed) or died; either way the next task starts a fresh process.
    """

    CODE = ("import sys; from attnbench.bench.isolation import serve; "
            "raise SystemExit(serve(sys.argv[1], None if sys.argv[2] == 'none' else int(sys.argv[2])))")

    def __init__(self, target: str, max_memory_bytes: int | None) -> None:
        self.target, self.cap = target, max_memory_bytes
        self.proc: subprocess.Popen | None = None
        self.stderr = None

    def _start(self) -> subprocess.Popen:
        self.stderr = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 (lives as long as the worker)
        cap = "none" if self.cap is None else str(self.cap)
        self.proc = subprocess.Popen([sys.executable, "-c", self.CODE, self.target, cap], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.stderr, text=True, bufsize=1)
        return self.proc

    def _stderr_tail(self) -> str:
        self.stderr.seek(0)
        return (self.stderr.read().strip().splitlines() or ["(no stderr)"])[-1][:200]

    def run(self, task: Any, timeout_s: float) -> Any:
        """The target's result for ``task`` (JSON), or a failure row; never raises for the process's death."""
        proc = self.proc if self.proc is not None and self.proc.poll() is None else self._start()
        deadline = time.monotonic() + timeout_s
        try:
            proc.stdin.write(json.dumps(task) + "\n")
            proc.stdin.flush()
            while True:
                ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
                if not ready:
                    self.close(kill=True)
                    return {"status": "timeout",
                            "reason": f"point process killed after {timeout_s:g} s (point_timeout_s)"}
                line = proc.stdout.readline()
                if not line:  # EOF: the process died
                    break
                if line.startswith(RESULT_TAG):
                    return json.loads(line[len(RESULT_TAG):])
        except BrokenPipeError:
            pass
        rc = proc.wait()
        tail = self._stderr_tail()
        self.close()
        return failure(rc, tail, self.cap)

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self, kill: bool = False) -> None:
        if self.proc is not None:
            if kill:
                self.proc.kill()
            else:
                with contextlib.suppress(BrokenPipeError, OSError):
                    self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
        if self.stderr is not None:
            self.stderr.close()
            self.stderr = None


class Workers:
    """One persistent :class:`Worker` per key (a benchmark's entry or model), all on ``target``; a context manager
    that closes them all."""

    def __init__(self, target: str, max_memory_bytes: int | None) -> None:
        self.target, self.cap = target, max_memory_bytes
        self.workers: dict[str, Worker] = {}

    def get(self, key: str) -> Worker:
        """``key``'s worker (its process starts on its first task)."""
        return self.workers.setdefault(key, Worker(self.target, self.cap))

    def run(self, key: str, task: Any, timeout_s: float) -> Any:
        """:meth:`Worker.run` of ``task`` in ``key``'s worker."""
        return self.get(key).run(task, timeout_s)

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc: object) -> None:
        for w in self.workers.values():
            w.close()


def run_isolated(target: str, task: Any, timeout_s: float, max_memory_bytes: int | None) -> Any:
    """``target(task)`` in a fresh process (its own peak RSS and address-space cap), or a failure row."""
    worker = Worker(target, max_memory_bytes)
    try:
        return worker.run(task, timeout_s)
    finally:
        worker.close()
