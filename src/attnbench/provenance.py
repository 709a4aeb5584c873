"""Which code made a record: the git commit of the checkout and whether it had uncommitted changes.

``results.json`` (``code``) and every benchmark's ``machine.json`` carry it, so a number under ``results/`` names
the commit that produced it (``make docs-check`` shows it beside each generated table). Torch-free and cheap: two
``git`` calls, nothing when git or the checkout is missing (an installed wheel).
"""

from __future__ import annotations

import subprocess
from functools import cache
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def _git(*args: str) -> str | None:
    try:
        p = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return p.stdout.strip() if p.returncode == 0 else None


@cache
def code_version() -> dict[str, Any]:
    """``{"commit": <40 hex> | None, "dirty": bool | None}``: dirty when a tracked file differs from the commit
    (untracked files, such as outputs and data, do not count). Cached: a process runs one checkout."""
    commit = _git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None}
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": None if status is None else bool(status)}
