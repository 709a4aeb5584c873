"""Our ListOps generator (``attnbench.data.lra.listops``) beside the official ``lra_benchmarks/data/listops.py``.

    git clone https://github.com/google-research/long-range-arena /tmp/long-range-arena
    python scripts/official/compare_listops.py --official /tmp/long-range-arena [--full]

Runs the official script's own ``main`` (its ``generate_tree``, ``to_string``, ``to_value``, split and
``write_to_file``) after ``random.seed(seed)``, with two things swapped: absl and tensorflow are stubs (flags as
plain attributes, ``tf.logging`` silent, ``tf.io.gfile.GFile`` = ``open``), and its ``set`` of trees is one that
iterates in insertion order, so that its splits are taken in drawing order as ours are (the official ``set`` splits
in hash order, which changes with PYTHONHASHSEED: the documented difference). Then ``write_splits`` writes ours
with the same seed and options, and each case prints the number of differing rows (expression or label, position
by position in train/val/test, plus any difference in count) and whether the files are byte-identical. Also: the
same run with the official ``set`` (the same trees, split in hash order), and our ``MED``/``MIN``/``MAX``/``SM``
against the official ``to_value`` on every argument list of 2 and 3 digits and 20,000 random ones of 4-10.
``--full`` adds the official defaults, 96k/2k/2k (16 minutes on a shared 2-core machine, 5 GB of memory).

Measured 2026-12-07 (torch 2.13 CPU, official commit cd31e5c): the constants equal, 0 label disagreements over
84,400 (operator, argument list) pairs; 0 differing rows and byte-identical files at the four settings (official
lengths 501-1999 seeds 0 and 1, the CPU preset's 51-255, depth 6 / 5 args / 11-99; about a minute) and at the
official defaults (``--full``); the hash-order run holds the same trees (0 differing rows pooled), about a third
of them in another split (the share varies with PYTHONHASHSEED).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import itertools
import random
import sys
import tempfile
import types
from pathlib import Path

from attnbench.data.lra import listops
from attnbench.data.lra.listops import ListOpsSpec, write_splits

OFFICIAL_FILE = "lra_benchmarks/data/listops.py"
SPLITS = ("train", "val", "test")


class DrawOrderSet(dict):
    """A ``set`` of trees that iterates in insertion (drawing) order: the one change to the official loop."""

    def add(self, item: object) -> None:
        self[item] = None


def stub_modules() -> None:
    """absl (flags as attributes) and tensorflow (silent logging, ``GFile`` = ``open``): the official script's
    only heavy imports, neither of which touches what is drawn."""
    absl, app, flags = (types.ModuleType(n) for n in ("absl", "absl.app", "absl.flags"))
    flags.FLAGS = types.SimpleNamespace()

    def define(name: str, default: object, help: str = "") -> None:
        setattr(flags.FLAGS, name, default)

    flags.DEFINE_string = flags.DEFINE_integer = define
    app.UsageError = type("UsageError", (Exception,), {})
    absl.app, absl.flags = app, flags
    tf, compat, v1 = (types.ModuleType(n) for n in ("tensorflow", "tensorflow.compat", "tensorflow.compat.v1"))
    v1.logging = types.SimpleNamespace(info=lambda *a, **k: None)
    v1.io = types.SimpleNamespace(gfile=types.SimpleNamespace(GFile=open))
    tf.compat, compat.v1 = compat, v1
    sys.modules.update({"absl": absl, "absl.app": app, "absl.flags": flags, "tensorflow": tf,
                        "tensorflow.compat": compat, "tensorflow.compat.v1": v1})


def load_official(checkout: Path) -> types.ModuleType:
    """The official module, imported from the checkout with the stubs in place."""
    path = checkout / OFFICIAL_FILE
    if not path.is_file():
        raise SystemExit(f"error: {path} not found; --official must be a checkout of "
                         f"github.com/google-research/long-range-arena")
    stub_modules()
    mod_spec = importlib.util.spec_from_file_location("lra_official_listops", path)
    mod = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(mod)
    return mod


def run_official(mod: types.ModuleType, spec: ListOpsSpec, seed: int, out: Path, draw_order: bool) -> None:
    """The official ``main`` with these flags after ``random.seed(seed)``; files ``out/basic_<split>.tsv``."""
    for k, v in dict(task="basic", num_train_samples=spec.n_train, num_valid_samples=spec.n_val,
                     num_test_samples=spec.n_test, max_depth=spec.max_depth, max_args=spec.max_args,
                     min_length=spec.min_length, max_length=spec.max_length, output_dir=str(out)).items():
        setattr(mod.FLAGS, k, v)
    if draw_order:
        mod.set = DrawOrderSet  # a module global shadows the builtin inside main()
    elif "set" in vars(mod):
        del mod.set
    out.mkdir(parents=True, exist_ok=True)
    random.seed(seed)
    with contextlib.redirect_stdout(io.StringIO()):  # its 'Processed N' lines
        mod.main(["listops"])


def rows(path: Path) -> list[tuple[str, str]]:
    """(source, target) rows of one TSV, header dropped."""
    lines = path.read_bytes().decode().split("\r\n")  # csv.writer ends lines with CRLF
    return [tuple(line.split("\t")) for line in lines[1:] if line]


def compare(ours: Path, theirs: Path) -> tuple[int, bool, int]:
    """(differing rows over the splits, files byte-identical, rows compared)."""
    diff, same, n = 0, True, 0
    for split in SPLITS:
        a, b = ours / f"basic_{split}.tsv", theirs / f"basic_{split}.tsv"
        ra, rb = rows(a), rows(b)
        diff += sum(x != y for x, y in zip(ra, rb, strict=False)) + abs(len(ra) - len(rb))
        same &= a.read_bytes() == b.read_bytes()
        n += max(len(ra), len(rb))
    return diff, same, n


def official_value(mod: types.ModuleType, op: str, args: list[int]) -> int:
    """The official ``to_value`` of ``[op args ]`` in its tree form ((((op, a1), a2), ...), END)."""
    t: object = (op, args[0])
    for a in args[1:]:
        t = (t, a)
    return int(mod.to_value((t, mod.END)))


def check_values(mod: types.ModuleType, n_random: int = 20_000) -> tuple[int, int]:
    """(disagreements, lists tried): our operator semantics against the official ``to_value``."""
    lists = [list(a) for k in (2, 3) for a in itertools.product(range(10), repeat=k)]
    rng = random.Random(0)
    lists += [[rng.randrange(10) for _ in range(rng.randint(4, 10))] for _ in range(n_random)]
    bad = sum(listops._apply(op, a) != official_value(mod, op, a) for op in listops.OPERATORS for a in lists)
    return bad, len(lists) * len(listops.OPERATORS)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--official", type=Path, required=True, help="a checkout of google-research/long-range-arena")
    ap.add_argument("--full", action="store_true", help="also the official defaults, 96k/2k/2k (~16 minutes, 5 GB)")
    args = ap.parse_args()
    mod = load_official(args.official)
    failed = 0

    consts = [(tuple(mod.OPERATORS), listops.OPERATORS), (mod.END, listops.END), (mod.VALUE_P, listops.VALUE_P),
              (tuple(mod.VALUES), tuple(range(10)))]
    n_bad = sum(a != b for a, b in consts)
    print(f"constants (OPERATORS, END, VALUE_P, VALUES): max |ours - official| {n_bad}")
    failed += n_bad

    bad, tried = check_values(mod)
    print(f"labels of [OP args ] (MIN MAX MED SM: {tried} operator, argument-list pairs): max |ours - official| {bad}")
    failed += bad

    cases = [("official lengths 501-1999, 1000/100/100, seed 0", ListOpsSpec(n_train=1000, n_val=100, n_test=100), 0),
             ("official lengths 501-1999, 1000/100/100, seed 1", ListOpsSpec(n_train=1000, n_val=100, n_test=100), 1),
             ("CPU preset lengths 51-255, 2000/200/200, seed 0",
              ListOpsSpec(n_train=2000, n_val=200, n_test=200, min_length=50, max_length=256), 0),
             ("depth 6, 5 args, lengths 11-99, 500/50/50, seed 3",
              ListOpsSpec(n_train=500, n_val=50, n_test=50, max_depth=6, max_args=5, min_length=10, max_length=100),
              3)]
    if args.full:
        cases.append(("official defaults 96000/2000/2000, seed 0", ListOpsSpec(), 0))
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, spec, seed) in enumerate(cases):
            ours, theirs = Path(tmp) / f"ours{i}", Path(tmp) / f"official{i}"
            write_splits(ours, spec, seed=seed)
            run_official(mod, spec, seed, theirs, draw_order=True)
            diff, same, n = compare(ours, theirs)
            print(f"{name}: max |ours - official| {diff} differing rows of {n} "
                  f"(files {'byte-identical' if same else 'DIFFER'})")
            failed += diff + (not same)

        # The official set as released: the same trees, split in hash order (documented, not counted).
        spec, seed = cases[0][1], cases[0][2]
        theirs = Path(tmp) / "official_hash_order"
        run_official(mod, spec, seed, theirs, draw_order=False)
        ours_rows = {s: rows(Path(tmp) / "ours0" / f"basic_{s}.tsv") for s in SPLITS}
        theirs_rows = {s: rows(theirs / f"basic_{s}.tsv") for s in SPLITS}
        pool_ours = sorted(r for s in SPLITS for r in ours_rows[s])
        pool_theirs = sorted(r for s in SPLITS for r in theirs_rows[s])
        diff = (sum(a != b for a, b in zip(pool_ours, pool_theirs, strict=False))
                + abs(len(pool_ours) - len(pool_theirs)))
        moved = sum(len(set(ours_rows[s]) - set(theirs_rows[s])) for s in SPLITS)
        print(f"{cases[0][0]}, official hash-order set, all splits pooled: max |ours - official| {diff} "
              f"differing rows of {len(pool_theirs)}")
        print(f"  documented difference: {moved} of {len(pool_theirs)} rows sit in another split (the official "
              f"splits in set iteration order, ours in drawing order)")
        failed += diff
    print("all cases agree" if not failed else f"DIFFERENCES: {failed}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
