"""Fetch a data set into the data directory, or copy it from a folder that holds it, and verify it.

    python scripts/prepare_data.py ETTh1                  # download (URL + sha256 from the catalogue)
    python scripts/prepare_data.py ETTh1 ETTh2 --from ../shared/data
    python scripts/prepare_data.py all --from DIR         # every forecasting data set found in DIR
    python scripts/prepare_data.py adrenalmnist3d_64      # one MedMNIST3D file (zenodo URL + md5)
    python scripts/prepare_data.py medmnist3d --from DIR  # every MedMNIST3D file found in DIR (28^3 and 64^3)
    python scripts/prepare_data.py glue --from ../shared/data   # the GLUE tsv files (glue_sst2_train, ...)
    python scripts/prepare_data.py imdb                        # aclImdb_v1.tar.gz (Stanford URL + md5)
    python scripts/prepare_data.py pg19 [--pg19-splits train,validation,test]   # PG-19 books (gs://deepmind-gutenberg)
    python scripts/prepare_data.py cifar10                     # cifar-10-python.tar.gz (Toronto URL + md5)
    python scripts/prepare_data.py --list
    python scripts/prepare_data.py seq2seq --generate --task reverse [--n-train N --seed S ...]  # the CPU seq2seq task
    python scripts/prepare_data.py listops --generate [--n-train N --seed S]  # LRA ListOps, generated (~5 min)
    python scripts/prepare_data.py pathfinder --generate --resolution 32 [--difficulty hard --n N --seed S]

When DATA_DIR (or --data-dir) already holds a verified copy, nothing is fetched.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from attnbench.data.catalog import CIFAR10_SOURCE, IMDB_SOURCE, TIME_SERIES, glue_files, medmnist_files
from attnbench.data.download import DataError, fetch


def catalogue() -> dict:
    """Every fetchable file by name: the forecasting data sets, the MedMNIST3D files, the GLUE files, IMDB."""
    return {**{n: s.source for n, s in TIME_SERIES.items()}, **medmnist_files(), **glue_files(), "imdb": IMDB_SOURCE,
            "cifar10": CIFAR10_SOURCE}


GROUPS = {"all": list(TIME_SERIES), "medmnist3d": list(medmnist_files()), "glue": list(glue_files())}


def generate_listops(args: argparse.Namespace) -> int:
    """LRA ListOps: the seeded official generator writes <data-dir>/lra/listops/basic_{train,val,test}.tsv."""
    from attnbench.data.lra import listops

    if not args.generate:
        print("error: listops is generated, not downloaded: add --generate", file=sys.stderr)
        return 2
    spec = listops.ListOpsSpec(**{k: getattr(args, k) for k in ("n_train", "n_val", "n_test", "min_length",
                                                                 "max_length") if getattr(args, k) is not None})
    root = args.data_dir / "lra" / listops.INFO.dir
    for split, path in listops.write_splits(root, spec, seed=args.seed).items():
        print(f"ok   listops {split}: {path}")
    return 0


GENERATED = {"listops": generate_listops}  # data sets made here, not fetched


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["pathfinder"]:
        return pathfinder_main(argv[1:])
    if argv[:1] == ["seq2seq"]:
        return generate_seq2seq(argv[1:])
    files = catalogue()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("names", nargs="*", help=f"data sets: {', '.join(files)}; or a group: {', '.join(GROUPS)}")
    p.add_argument("--from", dest="from_dir", type=Path, default=None, help="copy from this folder")
    p.add_argument("--data-dir", type=Path, default=Path(os.environ.get("DATA_DIR", "data")),
                   help="destination (default: $DATA_DIR or data/)")
    p.add_argument("--list", action="store_true", help="list the data sets and their sources")
    p.add_argument("--pg19-splits", default="validation,test",
                   help="pg19: the splits to download (train: 28,602 books, ~11 GB); default validation,test")
    gen = p.add_argument_group("generated data sets (listops)")
    gen.add_argument("--generate", action="store_true", help="generate it (seeded) instead of fetching")
    gen.add_argument("--seed", type=int, default=0, help="generator seed (default 0)")
    for k in ("n_train", "n_val", "n_test", "min_length", "max_length"):
        gen.add_argument(f"--{k.replace('_', '-')}", type=int, default=None, help="default: the official value")
    args = p.parse_args(argv)
    if "pg19" in args.names:  # a folder of books from a bucket listing, not one catalogued file
        args.names = [n for n in args.names if n != "pg19"]
        failed = _pg19(args)
        if failed or not args.names:
            return failed
    if args.names and args.names[0] in GENERATED:
        if len(args.names) > 1:
            print(f"error: generate {args.names[0]} on its own (got {args.names})", file=sys.stderr)
            return 2
        return GENERATED[args.names[0]](args)
    if args.list or not args.names:
        for name, src in files.items():
            print(f"{name:22s} {src.path:40s} {src.url}")
        for name in GENERATED:
            print(f"{name:22s} {'lra/' + name + '/':40s} generated: python scripts/prepare_data.py {name} --generate")
        print(f"{'pg19':22s} {'pg19/{train,validation,test}/<id>.txt':40s} gs://deepmind-gutenberg (books, md5 listed)")
        return 0
    names = [n for arg in args.names for n in GROUPS.get(arg, [arg])]
    unknown = [n for n in names if n not in files]
    if unknown:
        print(f"error: unknown data set(s) {unknown}; allowed: {', '.join(files)} or a group: "
              f"{', '.join(GROUPS)}; generated: {', '.join(GENERATED)}", file=sys.stderr)
        return 2
    where = args.from_dir if args.from_dir is None or args.from_dir.is_absolute() else (
        f"{args.from_dir} ({args.from_dir.resolve()})")
    if args.from_dir is not None and not args.from_dir.is_dir():
        what = "is not a folder" if args.from_dir.exists() else "does not exist"
        print(f"error: --from {where} {what}: name the folder that holds the files", file=sys.stderr)
        return 2
    in_group = {n for arg in args.names if arg in GROUPS for n in GROUPS[arg]}
    failed, skipped = 0, set()
    for name in names:
        src = files[name]
        if name in in_group and args.from_dir is not None and not any(
                (args.from_dir / c).is_file() for c in (src.path, Path(src.path).name)):
            print(f"skip {name}: not in {args.from_dir}")
            skipped.add(name)
            continue
        try:
            path = fetch(name, src, args.data_dir, from_dir=args.from_dir)
            print(f"ok   {name}: {path}")
        except DataError as e:
            print(f"error: {e}", file=sys.stderr)
            failed += 1
    for arg in dict.fromkeys(a for a in args.names if a in GROUPS):  # a group of which the folder holds nothing
        if args.from_dir is not None and set(GROUPS[arg]) <= skipped:
            first = files[GROUPS[arg][0]].path
            print(f"error: --from {where} holds none of the {len(GROUPS[arg])} files of {arg} (looked for at "
                  f"{args.from_dir / first}, ..., or by file name in the folder itself): name the folder that holds "
                  "them", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


def _pg19(args: argparse.Namespace) -> int:
    """``pg19``: download the books of ``--pg19-splits`` (md5 from the bucket listing) into <data-dir>/pg19/."""
    from attnbench.data.corpus import fetch_pg19

    try:
        print(f"ok   pg19: {fetch_pg19(args.data_dir, [s.strip() for s in args.pg19_splits.split(',') if s.strip()])}")
        return 0
    except (DataError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


# ---- LRA Pathfinder: generate images in the released layout (the official data is not downloadable from here)
def pathfinder_main(argv: list[str]) -> int:
    """python scripts/prepare_data.py pathfinder --generate [--resolution 32|64|128] [--difficulty ...] [--n N]"""
    from attnbench.data.lra import pathfinder as pf

    p = argparse.ArgumentParser(prog="prepare_data.py pathfinder", description=pf.__doc__.split("\n\n")[0])
    p.add_argument("--generate", action="store_true", help="generate with our seeded re-implementation")
    p.add_argument("--resolution", type=int, default=32, choices=pf.RESOLUTIONS)
    p.add_argument("--difficulty", default="hard", choices=[*pf.DIFFICULTIES, "all"])
    p.add_argument("--n", type=int, default=200_000, help="images per difficulty (official: 200,000 = 80/10/10 %%)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=1000, help="images per imgs/<b>/ folder and metadata/<b>.npy")
    p.add_argument("--workers", type=int, default=1, help="processes (the output does not depend on it)")
    p.add_argument("--data-dir", type=Path, default=Path(os.environ.get("DATA_DIR", "data")),
                   help="destination root (default: $DATA_DIR or data/); writes DATA_DIR/lra/pathfinder/...")
    args = p.parse_args(argv)
    root = args.data_dir / "lra" / pf.INFO.dir
    if not args.generate:
        print(f"error: the released Pathfinder data is not fetched by this script; copy (or link) "
              f"lra_release/pathfinder{args.resolution}/ to {root}/pathfinder{args.resolution}/, or add --generate",
              file=sys.stderr)
        return 2
    for diff in pf.DIFFICULTIES if args.difficulty == "all" else [args.difficulty]:
        out = pf.write_folder(pf.folder(root, args.resolution, diff), pf.params_for(args.resolution, diff), args.n,
                              args.seed, batch_size=args.batch_size, workers=args.workers)
        print(f"ok   pathfinder{args.resolution} {diff}: {args.n} images in {out}")
    return 0


def generate_seq2seq(argv: list[str]) -> int:
    """``seq2seq --generate``: write the algorithmic seq2seq task's TSV files (attnbench.data.seq2seq); options
    not given take the data module's defaults."""
    import inspect

    from attnbench.data import seq2seq

    defaults = inspect.signature(seq2seq.Seq2SeqDataModule).parameters

    p = argparse.ArgumentParser(prog="prepare_data.py seq2seq", description=generate_seq2seq.__doc__)
    p.add_argument("--generate", action="store_true", required=True, help="generate (there is nothing to fetch)")
    p.add_argument("--task", choices=seq2seq.TASKS, required=True)
    for name in ("n_symbols", "min_len", "max_len", "n_train", "n_val", "n_test", "seed"):
        p.add_argument(f"--{name.replace('_', '-')}", type=int, default=defaults[name].default)
    p.add_argument("--force", action="store_true", help="overwrite files generated with other parameters")
    p.add_argument("--data-dir", type=Path, default=Path(os.environ.get("DATA_DIR", "data")),
                   help="destination (default: $DATA_DIR or data/); files go to "
                        "<data-dir>/seq2seq/<task>[-<changed parameters>]/")
    a = p.parse_args(argv)
    meta = seq2seq.params(a.task, a.n_symbols, a.min_len, a.max_len, a.n_train, a.n_val, a.n_test, a.seed)
    try:
        folder = seq2seq.prepare(a.data_dir / "seq2seq", meta, force=a.force)
    except (DataError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"ok   seq2seq/{folder.name}: {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
