"""The generated blocks of README.md and docs/*.md, rendered from the records under ``results/``.

    python -m attnbench.analysis.docs            # make docs: rewrite every stale block
    python -m attnbench.analysis.docs --check    # make docs-check: exit 1, naming each stale block

A block is the text between ``<!-- begin KIND RECORD -->`` and ``<!-- end KIND -->``; ``RECORD`` is a folder under
``results/`` saved by ``attnbench.analysis.records`` and ``KIND`` picks the renderer (``RENDERERS``):

- ``table``: the sweep's paper table, as ``scripts/make_table.py`` renders it from the jobs' ``results.json``;
- ``bench-hot-step`` / ``speedups-hot-step``: ``make bench-step``'s table, and the README's speed-up lines;
- ``results-size``: how many records ``RECORD`` (``results``) holds and their size on disk;
- ``bench-report``: a benchmark's own Markdown report, as it wrote it next to its csv (``RECORD`` names the
  ``.md`` file inside the saved record): for the benchmarks whose renderer lives with them in ``bench/``.

Every block ends with a line naming its records, their commit and the command that made them, so a number in the
docs leads to the command that regenerates it. Edit the records (rerun, then save), never the block.

A table outside a block is a defect that ``--check`` names (file:line): a number typed by hand has no record to
be checked against (the tables measured before runs recorded their commit were rerun or withdrawn).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from attnbench.analysis import bench
from attnbench.analysis.records import RECORD, read_record, size_bytes
from attnbench.attention_spec import caps_table

ROOT = Path(__file__).resolve().parents[3]
FILES = ("README.md", "docs/results.md", "docs/benchmarks.md")
_RULE = re.compile(r"^\s*\|[\s:|-]+\|\s*$")  # a table's header rule: | --- | :-: |
BLOCK = re.compile(r"(<!-- begin (?P<kind>[\w-]+)(?: (?P<record>\S+))? -->\n)(?P<body>.*?)(<!-- end (?P=kind) -->)",
                   re.S)


def source_line(folder: Path, root: Path) -> str:
    """``Records: `results/...` (n jobs, commit abc1234), made by `command`.``"""
    rec = read_record(folder)
    what = f"{rec['ok']} of {rec['jobs']} jobs ok, " if rec["kind"] == "sweep" else ""
    commits = ", ".join(c[:7] for c in rec["commits"])
    made = f", made by `{rec['command']}`" if rec.get("command") else ""
    return f"Records: `{folder.relative_to(root)}/` ({what}commit {commits}){made}.\n"


def render_table(folder: Path) -> str:
    """make_table's Markdown of the sweep record, its headings two levels down (under the page's ``##``)."""
    from attnbench.analysis.report import render_table as render

    return demote(render(folder).markdown.rstrip("\n") + "\n", 2)


def demote(md: str, levels: int) -> str:
    """``md`` with every heading ``levels`` levels down (at most ``######``): a report's headings under the page's."""
    return re.sub(r"^(#+) ", lambda m: "#" * min(6, len(m[1]) + levels) + " ", md, flags=re.M)


def _hot_step(folder: Path) -> tuple[pd.DataFrame, dict]:
    return pd.read_csv(folder / "hot_step.csv"), json.loads((folder / "machine.json").read_text())


# the blocks rendered from the code, not from a record (scripts/update_readme.py writes them too, without torch)
CODE_RENDERERS: dict[str, Callable[[], str]] = {"caps-table": caps_table}
RENDERERS: dict[str, Callable[[Path], str]] = {
    "table": render_table,
    "bench-hot-step": lambda f: bench.hot_step_markdown(*_hot_step(f)),
    "speedups-hot-step": lambda f: bench.hot_step_speedups(*_hot_step(f)),
    "bench-report": lambda f: demote(f.read_text().rstrip("\n") + "\n", 3),
    "results-size": lambda f: results_size(f),
}


def results_size(root: Path) -> str:
    """``results/`` in one line: its saved records (sweeps, benchmarks), files and size."""
    recs = [read_record(p.parent) for p in sorted(root.rglob(RECORD))]
    files = [p for p in root.rglob("*") if p.is_file()]
    kinds = ", ".join(f"{sum(r['kind'] == k for r in recs)} {name}"
                      for k, name in (("sweep", "sweeps"), ("bench", "benchmarks")))
    return (f"`{root.name}/` holds {len(recs)} records ({kinds}): {len(files)} files, "
            f"{size_bytes(root) / 1e6:.2f} MB.\n")


def render_block(kind: str, record: str | None, root: Path) -> str:
    """The body of one block: the renderer's Markdown, a blank line and the records' source line."""
    if kind in CODE_RENDERERS and record is None:
        return CODE_RENDERERS[kind]()
    if kind not in RENDERERS or record is None:
        raise ValueError(f"unknown generated block '{kind}{'' if record is None else ' ' + record}' (one of: "
                         f"{', '.join(f'{k} RECORD' for k in RENDERERS)}, {', '.join(CODE_RENDERERS)})")
    path = root / record  # a saved record's folder, or (bench-report) a file in one
    if kind == "results-size":
        return RENDERERS[kind](path)
    line = source_line(path.parent if path.suffix else path, root)  # first: no saved record stops here, saying so
    return f"{RENDERERS[kind](path)}\n{line}"


def render_text(text: str, root: Path = ROOT) -> tuple[str, list[str]]:
    """``text`` with every block rendered anew, and the ``KIND RECORD`` of each block that changed."""
    stale: list[str] = []

    def sub(m: re.Match) -> str:
        body = render_block(m["kind"], m["record"], root)
        if body != m["body"]:
            stale.append(m["kind"] if m["record"] is None else f"{m['kind']} {m['record']}")
        return m[1] + body + m[5]

    return BLOCK.sub(sub, text), stale


def loose_tables(text: str) -> list[int]:
    """Line numbers (1-based) of the tables outside every generated block. Tables inside fenced code are not
    tables."""
    spans = [(text.count("\n", 0, m.start()), text.count("\n", 0, m.end())) for m in BLOCK.finditer(text)]
    lines = text.split("\n")
    loose, fenced = [], False
    for i, line in enumerate(lines):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        head = (not fenced and line.lstrip().startswith("|") and i + 1 < len(lines) and _RULE.match(lines[i + 1])
                and not (i and lines[i - 1].lstrip().startswith("|")))
        if head and not any(a <= i <= b for a, b in spans):
            loose.append(i + 1)
    return loose


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="exit 1 if a block is stale instead of rewriting it")
    ap.add_argument("--root", type=Path, default=ROOT, help="the checkout whose files and results/ to read")
    ap.add_argument("files", nargs="*", help=f"files to render (default: {', '.join(FILES)})")
    args = ap.parse_args(argv)
    bad = 0
    for name in args.files or FILES:
        path = args.root / name
        old = path.read_text()
        try:
            new, stale = render_text(old, args.root)
        except (FileNotFoundError, ValueError) as e:
            print(f"{name}: {e}", file=sys.stderr)
            return 2
        if args.check:
            for block in stale:
                print(f"{name}: the block '{block}' differs from what its records render: run `make docs`",
                      file=sys.stderr)
            loose = loose_tables(old)
            for line in loose:
                print(f"{name}:{line}: a table typed by hand: render it from a record under results/ (a "
                      "generated block: python -m attnbench.analysis.records, then make docs)", file=sys.stderr)
            bad += bool(stale) + bool(loose)
        elif new != old:
            path.write_text(new)
            print(f"updated {name}: {', '.join(stale)}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
