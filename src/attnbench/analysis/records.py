"""The compact record of a sweep or a benchmark, kept in the repo under ``results/``: what every published number
is rendered from (``make docs``), without checkpoints, predictions or figures.

    python -m attnbench.analysis.records SWEEP_DIR results/lra/table_cpu        # make record SRC=... DEST=...
    python -m attnbench.analysis.records outputs/bench/hot_step results/bench/hot_step
    python -m attnbench.analysis.records SWEEP_A SWEEP_B results/lra/table_cpu     # one table, two sweeps

A sweep keeps, per job, ``results.json``, ``csv/metrics.csv`` and (classification) ``confusion_matrix.csv`` under
the job's folder name, and Hydra's ``multirun.yaml`` (so a saved sweep is a source again, with its command, when a
later sweep of the same commit joins the table); a benchmark its
``*.csv``, ``*.json`` and ``*.md`` (``machine.json`` included). Beside them ``record.json`` says what made them:
the command (from the sweep's ``multirun.yaml`` or the benchmark's report), the commit every job ran on
(``results.json``'s ``code``, ``machine.json``'s for a benchmark), the source folder and the date. A record is
refused when its jobs ran on different commits, on uncommitted changes, or name no commit, since then the table
could not be regenerated from one checkout (``--allow-mixed`` / ``--allow-dirty`` keep it anyway and say so in
``record.json``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

RUN_FILES = ("results.json", "csv/metrics.csv", "confusion_matrix.csv")  # the last: classification only
BENCH_SUFFIXES = (".csv", ".json", ".md")
RECORD = "record.json"


def _commits(codes: list[dict[str, Any] | None], where: str, allow_mixed: bool, allow_dirty: bool) -> list[str]:
    """The distinct commits of ``codes``, checked: every record names one, none is dirty, and all agree."""
    missing = sum(1 for c in codes if not c or not c.get("commit"))
    if missing:
        raise ValueError(f"{where}: {missing} of {len(codes)} records name no commit (made before results.json "
                         "recorded its code, or outside a git checkout): rerun them to keep a record")
    dirty = sum(1 for c in codes if c.get("dirty"))  # type: ignore[union-attr]
    if dirty and not allow_dirty:
        raise ValueError(f"{where}: {dirty} of {len(codes)} records ran on uncommitted changes: commit, rerun, or "
                         "pass --allow-dirty")
    commits = sorted({c["commit"] for c in codes})  # type: ignore[index]
    if len(commits) > 1 and not allow_mixed:
        raise ValueError(f"{where}: the records ran on {len(commits)} commits ({', '.join(c[:7] for c in commits)}):"
                         " a table's records come from one commit; rerun, or pass --allow-mixed")
    return commits


def sweep_command(src: Path) -> str | None:
    """``python train.py -m <overrides>`` from the sweep's ``multirun.yaml`` (Hydra writes it), else None."""
    path = src / "multirun.yaml"
    if not path.is_file():
        return None
    cfg = yaml.safe_load(path.read_text())
    task = cfg.get("hydra", {}).get("overrides", {}).get("task", [])
    return "python train.py -m " + " ".join(task)


def _collect(src: Path, allow_mixed: bool, allow_dirty: bool, command: str | None
             ) -> tuple[str, list[tuple[Path, Path]], list[dict[str, Any]], str | None, dict[str, Any]]:
    """(kind, [(file, path relative to src)], code records, command, extra facts) of one sweep or benchmark."""
    if not src.is_dir():
        raise ValueError(f"{src} is not a folder")
    if (src / "machine.json").is_file():  # a benchmark (one that runs train.py keeps its runs' folders below)
        machine = json.loads((src / "machine.json").read_text())
        files = [(p, p.relative_to(src)) for p in sorted(src.iterdir()) if p.suffix in BENCH_SUFFIXES]
        return ("bench", files, [machine.get("code")], command or machine.get("command"),
                {"bench": machine.get("bench") or src.name})
    runs = sorted(src.rglob("results.json"))
    if runs:
        results = [json.loads(p.read_text()) for p in runs]
        files = [(job / f, job.relative_to(src) / f) for job in (p.parent for p in runs) for f in RUN_FILES
                 if (job / f).is_file()]
        if (src / "multirun.yaml").is_file():  # the sweep's command: a saved record can be a source again
            files.append((src / "multirun.yaml", Path("multirun.yaml")))
        return ("sweep", files, [r.get("code") for r in results], command or sweep_command(src),
                {"jobs": len(runs), "ok": sum(r.get("status") == "ok" for r in results)})
    raise ValueError(f"{src} holds no results.json (a sweep or run) and no machine.json (a benchmark)")


def save(srcs: str | Path | list[str | Path], dest: str | Path, *, command: str | None = None,
         allow_mixed: bool = False, allow_dirty: bool = False) -> dict[str, Any]:
    """Copy the record of the sweep(s) or benchmark at ``srcs`` into ``dest`` (replacing what was there); return
    ``record.json``'s content. A folder with ``machine.json`` is a benchmark (its own csv / json / md; folders
    below it are not kept), else one with ``results.json`` files a sweep (or one run). Several sweeps (one table
    from several sweeps, e.g. one per task) go into ``dest/<folder name>/`` each and must share one commit.
    ValueError when a source holds neither, or the records fail the commit checks."""
    srcs = [Path(s) for s in (srcs if isinstance(srcs, list) else [srcs])]
    dest = Path(dest)
    if len({s.name for s in srcs}) < len(srcs):
        raise ValueError(f"the sources' folder names must differ: {', '.join(map(str, srcs))}")
    parts = [_collect(s, allow_mixed, allow_dirty, command if len(srcs) == 1 else None) for s in srcs]
    if len({p[0] for p in parts}) > 1:
        raise ValueError("a record is either sweeps or one benchmark, not both")
    kind = parts[0][0]
    commits = _commits([c for p in parts for c in p[2]], ", ".join(map(str, srcs)), allow_mixed, allow_dirty)
    extra: dict[str, Any] = parts[0][4]
    if kind == "sweep":
        extra = {"jobs": sum(p[4]["jobs"] for p in parts), "ok": sum(p[4]["ok"] for p in parts)}
    if dest.exists():
        shutil.rmtree(dest)
    for src, (_, files, _, _, _) in zip(srcs, parts, strict=True):
        base = dest if len(srcs) == 1 else dest / src.name
        for source, rel in files:
            (base / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, base / rel)
    cmds = [p[3] for p in parts if p[3]]
    record = {"kind": kind, **extra, "command": command or " ; ".join(cmds) or None, "commits": commits,
              "source": [str(s.resolve()) for s in srcs] if len(srcs) > 1 else str(srcs[0].resolve()),
              "saved": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    (dest / RECORD).write_text(json.dumps(record, indent=2) + "\n")
    return record


def read_record(folder: str | Path) -> dict[str, Any]:
    """``record.json`` of a saved record; FileNotFoundError naming the folder when there is none."""
    path = Path(folder) / RECORD
    if not path.is_file():
        raise FileNotFoundError(f"{folder} is not a saved record (no {RECORD}): save one with "
                                "`python -m attnbench.analysis.records SRC DEST`")
    return json.loads(path.read_text())


def size_bytes(root: str | Path) -> int:
    """Bytes of every file under ``root`` (what ``results/`` adds to a clone)."""
    return sum(p.stat().st_size for p in Path(root).rglob("*") if p.is_file())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", type=Path, nargs="+", help="a sweep (multirun) or run folder, or a benchmark's out_dir "
                   "(several sweeps: one table's record)")
    p.add_argument("dest", type=Path, help="where under results/ to keep it, e.g. results/lra/table_cpu")
    p.add_argument("--command", default=None, help="the command that made it (default: from multirun.yaml)")
    p.add_argument("--allow-mixed", action="store_true", help="keep records of several commits")
    p.add_argument("--allow-dirty", action="store_true", help="keep records made on uncommitted changes")
    args = p.parse_args(argv)
    try:
        record = save(list(args.src), args.dest, command=args.command, allow_mixed=args.allow_mixed,
                      allow_dirty=args.allow_dirty)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"saved {record['kind']} record of commit {', '.join(c[:7] for c in record['commits'])} to {args.dest} "
          f"({size_bytes(args.dest) / 1e3:.0f} kB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
