"""The project's own errors, at the bottom of the import graph: every layer raises them, the entry points report
them (``user_error``, ``report``). Standard library only.

A user error is one the user fixes (a config value, a missing data file, an attention asked for a capability it
lacks): it prints one paragraph that leads with the fix and exits 2 (``EXIT_USER_ERROR``); its traceback goes to
the run's log file and ``results.json``. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

EXIT_USER_ERROR = 2
log = logging.getLogger("attnbench.cli")  # the entry point's logger: the record names the command line


class ConfigError(ValueError):
    """A configuration value is out of range or inconsistent; the message names key, value and fix."""


class DataError(RuntimeError):
    """A data set is missing, unreachable or corrupt; the message says what to do."""


class CapabilityError(ValueError):
    """An attention was asked for a capability it lacks (``require``); the message names the entries that have it."""


class SearchError(RuntimeError):
    """A hyper-parameter search ended without a best trial (every trial failed); the sweep's summary lists why."""


USER_ERRORS = (ConfigError, DataError, CapabilityError, SearchError)


def user_error(e: BaseException | None) -> BaseException | None:
    """The project's own error behind ``e`` (Hydra's instantiate wraps them), or None for anything else."""
    seen: set[int] = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, USER_ERRORS):
            return e
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return None


def _to_log_file(e: BaseException) -> list[str]:
    """Write ``e``'s traceback to the run's log file(s) only (not the console); return their paths."""
    rec = logging.LogRecord(log.name, logging.ERROR, __file__, 0, "run failed: %s: %s", (type(e).__name__, e),
                            (type(e), e, e.__traceback__))
    paths = []
    for h in logging.getLogger().handlers:
        if isinstance(h, logging.FileHandler):
            h.handle(rec)
            paths.append(h.baseFilename)
    return paths


def paragraph(fix: BaseException) -> str:
    """``error (DataError): <the message, which leads with the fix>``."""
    return f"error ({type(fix).__name__}): {fix}"


def report(e: BaseException, fix: BaseException, out_dir: str | None) -> str | None:
    """One paragraph on stderr that leads with the fix, then where the traceback is (that line is returned)."""
    where = [*_to_log_file(e), *([str(Path(out_dir) / "results.json")] if out_dir else [])]
    print(paragraph(fix), file=sys.stderr)
    if not where:
        return None
    line = f"(traceback: {' and '.join(where)})"
    print(line, file=sys.stderr)
    return line
