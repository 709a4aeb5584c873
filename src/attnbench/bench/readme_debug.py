"""Every single-run ``python train.py`` line of the README, run with ``debug=fast``: its wall time and how it ended.

``debug=fast`` promises an answer within a minute (``limit_s``) for every model x data pair the README shows. Each
line runs as its own process from the repository root, as a user pastes it, with ``debug=fast`` added, the data
folder given where the line names none, and its run folder under ``out_dir``; ``<placeholders>`` and ``...`` are
dropped (as ``tests/test_debug.py`` does when it composes the same lines). A line that needs what the machine lacks
is a ``skipped`` row naming it (:func:`needs`: a GPU, W&B, a folder of the user's own); a line that fails is a
``failed`` row with its error (:func:`why_failed`), never left out.

    python -m attnbench.bench.readme_debug                     # every line; data from DATA_DIR (or data_dir=...)
    python -m attnbench.bench.readme_debug match=lra           # only the lines containing "lra"

Outputs under ``out_dir``: ``readme_debug.csv`` (line, command, status, wall_s, reason), ``readme_debug.md``,
``machine.json``, and each line's run folder under ``runs/<line>``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from hydra.core.config_store import ConfigStore

from attnbench.bench import harness
from attnbench.config import project_root

COLUMNS = ["line", "command", "status", "wall_s", "reason"]
_LINE = re.compile(r"^((?:[A-Z_]+=\S+ )*)python train\.py (?!-m)(.*)")


@dataclass
class ReadmeDebugConfig:
    """``conf/bench/readme_debug.yaml``; checks name the key and what is allowed."""

    readme: str = "README.md"  # relative to the repository root
    match: str | None = None  # only the lines containing this text
    data_dir: str = "data"  # paths.data_dir for the lines that name none
    limit_s: float = 60.0  # the promise: a debug=fast run answers within this
    timeout_s: float = 600.0  # a line still running after this is stopped (a timeout row)
    threads: int = 1  # OMP_NUM_THREADS of each run
    out_dir: str = "outputs/bench/readme_debug"

    def __post_init__(self) -> None:
        for k in ("limit_s", "timeout_s"):
            harness.need(getattr(self, k) > 0, k, getattr(self, k), "must be > 0")
        harness.need(self.threads >= 1, "threads", self.threads, "must be >= 1")


ConfigStore.instance().store(name="readme_debug_bench_schema", node=ReadmeDebugConfig)


def readme_train_lines(text: str) -> list[tuple[dict[str, str], list[str]]]:
    """(environment assignments, arguments) of every single-run ``python train.py`` line of a README's text, in
    order, each once: continuation lines joined, comments and ``<placeholders>`` removed (multiruns, ``-m``, are
    not single runs)."""
    out: list[tuple[dict[str, str], list[str]]] = []
    for line in text.replace("\\\n", " ").splitlines():
        m = _LINE.match(line.strip())
        if not m:
            continue
        env = dict(a.split("=", 1) for a in m.group(1).split())
        args = re.sub(r"<[^>]*>", "", m.group(2).split("#")[0]).split()
        if (env, args) not in out:
            out.append((env, args))
    return out


def needs(env: dict[str, str], args: list[str], cuda: bool) -> str | None:
    """What a line needs that this machine or the README lacks (the ``skipped`` reason), or None."""
    if not cuda and any(a.startswith(("trainer=gpu", "trainer=ddp")) for a in args):
        return "needs a GPU (trainer=gpu / ddp)"
    if "logger=wandb" in args and env.get("WANDB_MODE") != "offline":
        return "logs to W&B (a login and the network)"
    blank = [a + "<...>" for a in args if a.endswith("=")] + [a for a in args if "..." in a and a != "..."]
    if blank:
        return f"needs a value of the user's own ({', '.join(blank)})"
    if missing := [a for a in args if a.split("=", 1)[-1].startswith("/") and not Path(a.split("=", 1)[1]).exists()]:
        return f"names a folder of the user's own ({', '.join(missing)})"
    return None


def command(env: dict[str, str], args: list[str], data_dir: str) -> list[str]:
    """The arguments a line runs with: its own (``...`` and an epoch count dropped: debug=fast runs one), then the
    data folder unless the line or its environment names one, and ``debug=fast``."""
    run = [a for a in args if "..." not in a and not a.startswith(("debug=", "trainer.max_epochs="))]
    if not any(a.startswith("paths.data_dir=") for a in run) and "DATA_DIR" not in env:
        run.append(f"paths.data_dir={data_dir}")
    return [*run, "debug=fast"]


def why_failed(run_dir: Path, stderr: str) -> str:
    """Why a run failed: the error its ``results.json`` records (train.py writes one also when it fails), else the
    last line of its output."""
    import json

    try:
        error = json.loads((run_dir / "results.json").read_text()).get("error")
    except (OSError, ValueError):
        error = None
    if not error:
        lines = [ln.strip() for ln in stderr.splitlines() if ln.strip() and not ln.startswith("(traceback:")]
        error = lines[-1] if lines else "(no output)"
    return " ".join(str(error).split())[:300]


def run(cfg: ReadmeDebugConfig, command_line: str = "python -m attnbench.bench.readme_debug") -> pd.DataFrame:
    import torch

    t0, _, out, machine = harness.start_sweep("cpu", cfg.threads, cfg.out_dir, command_line)
    root = Path(project_root())
    lines = readme_train_lines((root / cfg.readme).read_text())
    rows = []
    for i, (env, args) in enumerate(lines):
        shown = " ".join([*(f"{k}={v}" for k, v in env.items()), "python train.py", *args])
        if cfg.match and cfg.match not in shown:
            continue
        argv = command(env, args, cfg.data_dir)
        ran = shown if "debug=fast" in args else f"{shown} debug=fast"
        row = {"line": i, "command": ran, "status": "skipped", "wall_s": float("nan"), "reason": ""}
        reason = needs(env, args, torch.cuda.is_available())
        if reason:
            rows.append(row | {"reason": reason})
            print(f"[{i}] skipped: {reason}: {shown}", flush=True)
            continue
        child_env = {**os.environ, **env, "OMP_NUM_THREADS": str(cfg.threads)}
        run_dir = out.resolve() / "runs" / str(i)
        shutil.rmtree(run_dir, ignore_errors=True)  # a results.json left by an earlier run would answer for this one
        t = time.perf_counter()
        try:
            p = subprocess.run([sys.executable, "train.py", *argv, f"hydra.run.dir={run_dir}"],
                               cwd=root, env=child_env, capture_output=True, text=True, timeout=cfg.timeout_s)
            status, reason = ("ok", "") if p.returncode == 0 else ("failed", why_failed(run_dir, p.stderr or p.stdout))
        except subprocess.TimeoutExpired:
            status, reason = "timeout", f"still running after timeout_s={cfg.timeout_s:g}"
        row |= {"status": status, "wall_s": round(time.perf_counter() - t, 1), "reason": reason}
        rows.append(row)
        print(f"[{i}] {status} {row['wall_s']:.1f} s: {shown}" + (f"  ({reason})" if reason else ""), flush=True)
    df = pd.DataFrame(rows, columns=COLUMNS)
    df.to_csv(out / "readme_debug.csv", index=False)
    machine = harness.finish_sweep(machine | {"bench": "readme_debug", "limit_s": cfg.limit_s}, t0, out)
    md = markdown(df, cfg.limit_s, machine)
    (out / "readme_debug.md").write_text(md)
    print(md)
    return df


def markdown(df: pd.DataFrame, limit_s: float, machine: dict) -> str:
    """The table (one row a README line) and how many answered within ``limit_s``."""
    from attnbench.analysis import bench as reports

    ran = df[df["status"] != "skipped"]
    fast = ran[(ran["status"] == "ok") & (ran["wall_s"] <= limit_s)]
    table = df.assign(wall_s=df["wall_s"].map(lambda s: "–" if pd.isna(s) else f"{s:.1f}"),
                      command=df["command"].map(lambda c: f"`{c}`"))
    return "\n".join([
        "# The README's single-run lines with debug=fast", "",
        f"`{machine['command']}`", "",
        reports.machine_line(machine, f"each line one process, OMP_NUM_THREADS={machine['threads']}"), "",
        f"{len(fast)} of {len(ran)} lines that ran answered (exit 0) within {limit_s:g} s; {len(df) - len(ran)} "
        "skipped (what they need is named). Wall time: the whole process, Python start-up and imports included.", "",
        table[["line", "command", "status", "wall_s", "reason"]].to_markdown(index=False), "",
    ])


main = harness.hydra_main("readme_debug", run)


if __name__ == "__main__":
    main()
