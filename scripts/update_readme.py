"""Rewrite README's generated blocks from the code: ``python scripts/update_readme.py [--check]`` (``make readme``).

A generated block sits between ``<!-- begin NAME -->`` and ``<!-- end NAME -->``; ``BLOCKS`` says which function
writes it. A new attention entry then needs no hand-pasted table: run ``make readme``.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from pathlib import Path

from attnbench.attention_spec import caps_table

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS: dict[str, Callable[[], str]] = {"caps-table": caps_table}


def render(text: str) -> str:
    """``text`` with every generated block rewritten; ValueError if a block's markers are missing."""
    for name, make in BLOCKS.items():
        pattern = re.compile(rf"(<!-- begin {name} -->\n).*?(<!-- end {name} -->)", re.S)
        if not pattern.search(text):
            raise ValueError(f"README has no '<!-- begin {name} -->' ... '<!-- end {name} -->' block")
        text = pattern.sub(lambda m, body=make(): m[1] + body + m[2], text)  # noqa: B008 (called once per block)
    return text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if README is stale instead of rewriting it")
    ap.add_argument("--readme", type=Path, default=README)
    args = ap.parse_args(argv)
    old = args.readme.read_text()
    new = render(old)
    if args.check:
        if new != old:
            print(f"{args.readme} is stale: run `make readme`", file=sys.stderr)
            return 1
        return 0
    if new != old:
        args.readme.write_text(new)
        print(f"updated {args.readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
