"""scripts/official/: side-by-sides with official implementations. Each script answers ``--help`` and is listed in
the folder's README; the comparisons themselves run (``slow``) only where an environment variable names a checkout
of the official code (scripts/official/README.md), and skip otherwise."""

from __future__ import annotations

import os
import re
import runpy
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pytest

from tests.conftest import ROOT, write_ett_csv

OFFICIAL = ROOT / "scripts" / "official"
SCRIPTS = sorted(p.name for p in OFFICIAL.glob("compare_*.py"))  # _shared.py: what they share
DIFF = re.compile(r"max \|ours - official\| (\S+)")


def test_the_readme_lists_every_script_with_its_command():
    text = (OFFICIAL / "README.md").read_text()
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^\| `(\w+\.py)` \|.*$", text, flags=re.M)}
    assert sorted(rows) == SCRIPTS
    for name, row in rows.items():
        assert f"python scripts/official/{name} --official " in row, row


@pytest.mark.parametrize("name", SCRIPTS)
def test_each_script_answers_help(name, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", [name, "--help"])
    monkeypatch.syspath_prepend(str(OFFICIAL))  # as `python scripts/official/<name>` puts it first
    with pytest.raises(SystemExit) as e:
        runpy.run_path(str(OFFICIAL / name), run_name="__main__")
    assert e.value.code == 0
    assert "official" in capsys.readouterr().out


def official_checkout(var: str, marker: str) -> Path:
    """The checkout ``$var`` names; the test skips when it is unset or holds no ``marker`` file."""
    value = os.environ.get(var)
    if not value:
        pytest.skip(f"{var} is unset: the path of a checkout of the official code (scripts/official/README.md)")
    path = Path(value).expanduser()
    if not (path / marker).is_file():
        pytest.skip(f"{var}={value} is not a checkout of the official code (no {marker})")
    return path


class OfficialRun(NamedTuple):
    """What a side-by-side printed: its stdout, each line reporting a difference with that line's (first) value,
    and every difference in the order printed."""

    stdout: str
    lines: list[tuple[str, float]]
    diffs: list[float]


def run_official(script: str, checkout: Path, *args: str | Path, cwd: Path, timeout: int = 600) -> OfficialRun:
    """``python scripts/official/SCRIPT --official CHECKOUT ARGS`` in ``cwd`` on one thread; asserts it exits 0 (the
    end of its output in the message) and reads every ``max |ours - official| <value>`` it printed."""
    p = subprocess.run([sys.executable, str(OFFICIAL / script), "--official", str(checkout), *map(str, args)],
                       cwd=cwd, capture_output=True, text=True, timeout=timeout,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
    lines = [(line, float(m.group(1))) for line in p.stdout.splitlines() if (m := DIFF.search(line))]
    return OfficialRun(p.stdout, lines, [float(d) for d in DIFF.findall(p.stdout)])


@pytest.mark.slow
def test_informer_matches_the_official_informer2020(tmp_path):
    """compare_informer.py: five official Informer layouts (layers, distilling, mix) and its calendar features of
    ETTh1 / ETTm1 dates (synthetic files in the ETT layout) against ours, every difference at float32 rounding."""
    checkout = official_checkout("ATTNBENCH_OFFICIAL_INFORMER", "models/model.py")
    write_ett_csv(tmp_path / "ETT-small" / "ETTh1.csv", n_rows=2000, freq="h")
    write_ett_csv(tmp_path / "ETT-small" / "ETTm1.csv", n_rows=2000, freq="15min")
    run = run_official("compare_informer.py", checkout, "--data-dir", tmp_path, cwd=tmp_path)
    assert len(run.diffs) == 5 + 2, run.stdout  # five model layouts, two calendars
    assert max(run.diffs) < 1e-5, run.stdout
