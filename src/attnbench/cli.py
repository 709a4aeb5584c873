"""The command line: ``attnbench-train`` / ``python train.py`` (Hydra) and ``python -m attnbench list ...``.

Light on purpose: composing and checking a config imports only Hydra, OmegaConf and the torch-free project modules
(``config``, ``attention_spec``, ``data.catalog``), so ``--help``, ``--cfg job`` and a typo answer in about a
second; torch and Lightning are imported when the run starts, after ``train.run`` has checked the config. The
project's own errors (``attnbench.errors``: a bad config, missing data, an attention asked for a capability it
lacks) print one paragraph that leads with the fix and exit 2; their traceback goes to the run's log file and
``results.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import os
import sys
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

import attnbench.sweep  # noqa: F401  (registers the run-folder and W&B name resolvers: ${dirname:...}, ...)
from attnbench.config import PathsConfig, TrainerConfig, project_root, register_configs
from attnbench.errors import EXIT_USER_ERROR, ConfigError, SearchError, paragraph, report, user_error

register_configs()
if not OmegaConf.has_resolver("attnbench_help"):  # --help's text (conf/hydra/help/attnbench.yaml): help_text()
    OmegaConf.register_new_resolver("attnbench_help", lambda: help_text())
CONF = Path(project_root()) / "conf"

# --help: one line per group (the options are the yaml files of conf/<group>/, schemas left out)
GROUPS = {
    "model": "the network and its LightningModule",
    "model/attention": "the attention of model (every registry entry; python -m attnbench list attention)",
    "data": "the data set (python -m attnbench list data: which are present locally)",
    "trainer": "Lightning Trainer: cpu, one gpu, ddp",
    "logger": "where metrics go (csv/ always; wandb adds Weights & Biases)",
    "callbacks": "checkpoints, early stopping, model summary, progress bar, LR monitor",
    "debug": "fast: 3/2/2 batches of 4; limit: 50/10/10 batches, 3 epochs; overfit: 3 batches, 20 epochs; profile: "
             "SimpleProfiler report (unset by default)",
    "experiment": "a paper's table, run with -m (unset by default)",
    "hparams_search": "an Optuna search of a model family's hyper-parameters, a sweep without -m (unset by default)",
    "lra_task": "an LRA task's sizes and schedule (released; cpu/: minutes), set by experiment=lra/*",
    "lstf": "CAB's LSTF settings, <data set>_<M|S> (lengths and layers; with experiment=cab/lstf*)",
    "recipe": "a baseline's training recipe per data set (lr, batch, epochs), taken with its model; ~recipe: none",
    "hydra/launcher": "how -m sweeps run",
}
# groups whose keys are the same whatever the option: a misspelt `trainer.<key>=` is named before composing
KEYS = {"trainer": TrainerConfig, "paths": PathsConfig}


def group_options(group: str) -> list[str]:
    """The options of config group ``group`` (``conf/<group>/**.yaml``; ``*_schema`` entries and the shared
    parts in ``base/`` folders excluded)."""
    root = CONF / group
    opts = sorted(str(p.relative_to(root).with_suffix("")) for p in root.rglob("*.yaml")
                  if (group != "model" or p.parent == root) and "base" not in p.relative_to(root).parts[:-1])
    if group == "hydra/launcher":
        import importlib.util

        opts = ["basic", *opts]
        if importlib.util.find_spec("hydra_plugins.hydra_submitit_launcher") is not None:
            opts += ["submitit_local", "submitit_slurm"]
    return [o for o in opts if not o.endswith("_schema")]


def group_lines() -> list[str]:
    """``--help``'s group list: ``group  options  (what it is)``."""
    return [f"  {g:16s} {', '.join(group_options(g))}  # {what}" for g, what in GROUPS.items()]


def help_text() -> str:
    """``--help``: usage, one line per config group, pointers (also Hydra's help template, conf/hydra/help)."""
    app = "attnbench-train"
    return "\n".join([
        f"{app}: train a model on a data set from one Hydra config tree (python train.py is the same).",
        "",
        f"Usage: {app} [group=option ...] [key=value ...] [+new.key=value] [-m for a sweep]",
        f"  e.g. {app} model=hot data=ett debug=fast",
        f"       {app} model=full model/attention=linformer model.net.attention.max_len=168 "
        "model.net.attention.k=32",
        f"       {app} -m experiment=hot/forecasting",
        "",
        "== Config groups (group=option) ==",
        *group_lines(),
        "",
        "Full composed config: --cfg job [--resolve].  What exists: python -m attnbench list "
        "attention|data|models|experiments",
        "Hydra's own flags: --hydra-help",
    ]) + "\n"


def check_group_choices(args: list[str]) -> str | None:
    """A ``group=option`` on the command line naming no option of the group, or a ``trainer.<key>=`` /
    ``paths.<key>=`` naming no key of the Trainer / paths (``KEYS``): the message (options or keys listed).

    Hydra already refuses most of these, but silently lists nothing for a nested group (``experiment=hot/x``) or
    for a key; this says it for every group before anything is composed. Sweeps (``a,b``) are checked per value.
    """
    for arg in args:
        key, sep, value = arg.partition("=")
        group, _, sub = key.partition(".")
        if sep and group in KEYS and sub and not key.startswith(("+", "~")):
            allowed = [f.name for f in fields(KEYS[group]) if f.name != "_target_"]
            name = sub.split(".")[0]
            if name not in allowed:
                return _unknown(f"{group}.{name}", f"a key of {group}", name, allowed)
        key = key.lstrip("+")
        if not sep or key not in GROUPS or key == "hydra/launcher" or any(c in value for c in "()[]{}$"):
            continue
        options = group_options(key)
        for v in value.split(","):
            if v and v != "null" and v not in options:
                return _unknown(f"{key}={v}", f"an option of the config group {key!r}", v, options, f"{key}=")
    return None


def _unknown(what: str, of: str, name: str, allowed: list[str], prefix: str = "") -> str:
    close = difflib.get_close_matches(name, allowed, n=1)
    hint = f" (did you mean {prefix}{close[0]}?)" if close else ""
    return f"{what} is not {of}{hint}; available: {', '.join(allowed)}"


# ----------------------------------------------------------------------------- errors
def gpu_missing(cfg: DictConfig) -> ConfigError | None:
    """trainer=gpu on a machine without a CUDA GPU (checked after a failure: torch is loaded by then)."""
    if str(cfg.trainer.get("accelerator")) not in ("gpu", "cuda") or "torch" not in sys.modules:
        return None
    import torch

    if torch.cuda.is_available():
        return None
    return ConfigError(f"trainer.accelerator={cfg.trainer.accelerator} but this machine has no CUDA GPU "
                       "(torch.cuda.is_available() is False): run with trainer=cpu, or on a machine with a GPU")


# ----------------------------------------------------------------------------- train
def task(cfg: DictConfig) -> float | None:
    """One run (Hydra's task function). Returns ``optimized_metric`` for sweepers."""
    from attnbench.train import run_with_results  # checks the config (torch-free), then loads torch and Lightning

    hc = HydraConfig.get()
    extra = {"choices": {k: v for k, v in hc.runtime.choices.items() if not k.startswith("hydra")},
             "overrides": list(hc.overrides.task), "job_num": hc.job.get("num")}
    try:
        result = run_with_results(cfg, extra)
    except Exception as e:
        fix = user_error(e) or gpu_missing(cfg)
        if fix is None:
            raise
        where = report(e, fix, cfg.paths.get("output_dir"))
        if hc.mode == RunMode.MULTIRUN:
            # the other jobs of the sweep go on: Hydra records this one as failed, and its sweeper raises the first
            # failure again at the end (``one_paragraph_errors``: this paragraph, exit 2). Raised as our own error,
            # not Hydra's wrapping of it: a job run in another process (submitit) returns its error pickled,
            # without the chain of causes ``user_error`` follows.
            if where:
                fix.add_note(where)
            raise fix from fix.__cause__  # as it was raised (its own cause, if any)
        sys.exit(EXIT_USER_ERROR)
    key = cfg.get("optimized_metric")
    return result["metrics"].get(key) if key else None


_hydra_train = hydra.main(version_base="1.3", config_path=str(CONF), config_name="train")(task)


def train() -> None:
    """``attnbench-train`` / ``python train.py [overrides]``: compose, check and run (Hydra's command line)."""
    if {"--help", "-h"} & set(sys.argv[1:]):  # Hydra's --help scans every group of every config (seconds)
        sys.stdout.write(help_text())
        return
    bad = check_group_choices(sys.argv[1:])
    if bad:
        print(f"error (ConfigError): {bad}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    with one_paragraph_errors():
        _hydra_train()


def no_best_trial(e: BaseException) -> SearchError | None:
    """Optuna's ``study.best_trial`` at the end of a search whose every trial failed (the sweeper asks for it
    unguarded), as the one paragraph; the sweep's summary, printed at exit, lists each trial's error."""
    if isinstance(e, ValueError) and str(e) == "No trials are completed yet.":
        return SearchError("every trial of the search failed, so it has no best trial: each trial's error is in the "
                           "sweep's summary and its results.json; fix it, then run the search again")
    return None


@contextlib.contextmanager
def one_paragraph_errors() -> Iterator[None]:
    """An error of ours that leaves Hydra's ``main`` (raised while composing, or a sweep's failed job that the
    sweeper raises again at the sweep's end) prints its paragraph and exits 2, where Hydra would print "Error
    executing job ..." with a stack and exit 1; anything else is Hydra's to report, as before (HYDRA_FULL_ERROR
    included). Hydra runs each stage of ``main`` through ``hydra._internal.utils.run_and_report``; ours runs inside
    it for as long as this context lasts."""
    from hydra._internal import utils as hydra_utils

    hydras = getattr(hydra_utils, "run_and_report", None)
    if hydras is None:  # another Hydra: its own reporting
        yield
        return

    def run_and_report(func: Any) -> Any:
        def ours() -> Any:
            try:
                return func()
            except Exception as e:
                fix = user_error(e) or no_best_trial(e)
                if fix is None:
                    raise
                print(paragraph(fix), file=sys.stderr)
                for note in getattr(fix, "__notes__", ()):  # a sweep job's: where its traceback is
                    print(note, file=sys.stderr)
                sys.exit(EXIT_USER_ERROR)

        return hydras(ours)

    hydra_utils.run_and_report = run_and_report
    try:
        yield
    finally:
        hydra_utils.run_and_report = hydras


# ----------------------------------------------------------------------------- list
def data_dir() -> Path:
    """Where data sets are looked for: ``DATA_DIR``, else ``<root>/data`` (as ``conf/paths/default.yaml``)."""
    return Path(os.environ.get("DATA_DIR", Path(project_root()) / "data"))


def list_attention() -> str:
    from omegaconf import OmegaConf

    from attnbench import attention_spec

    needs = []
    for name in attention_spec.available():
        node = OmegaConf.load(CONF / "model" / "attention" / f"{name}.yaml")
        req = [str(k) for k in node if OmegaConf.is_missing(node, k)]
        if req:
            needs.append(f"- `{name}`: " + " ".join(f"model.net.attention.{k}=<value>" for k in req))
    return (f"{attention_spec.caps_table()}\nUse: model/attention=<entry> (sequence entries with model=full or "
            "model=vit3d; drop-in entries with model=bert). Options without a default, to give on the command "
            "line:\n" + "\n".join(needs) + "\n")


def list_data(where: Path) -> str:
    from attnbench.data.catalog import IMDB_SOURCE, TIME_SERIES, glue_files, medmnist_files

    groups = {"data=ett|weather|... data.name=": {n: s.source for n, s in TIME_SERIES.items()},
              "data=medmnist3d data.name=": medmnist_files(), "data=glue data.task=": glue_files(),
              "data=imdb": {"imdb": IMDB_SOURCE}}
    lines = [f"data directory: {where} (DATA_DIR or paths.data_dir)", ""]
    for use, files in groups.items():
        lines.append(use)
        for name, src in files.items():
            mark = "present" if (where / src.path).is_file() else "missing"
            lines.append(f"  {name:24s} {mark:8s} {src.path}")
    lines.append("\nmissing: python scripts/prepare_data.py <name> [--from DIR] (or point DATA_DIR at a copy)")
    return "\n".join(lines) + "\n"


def _first_comment(path: Path) -> str:
    for line in path.read_text().splitlines():
        if line.startswith("#") and not line.startswith("# @package"):
            return line.lstrip("# ").strip()
    return ""


def list_group(group: str) -> str:
    return "".join(f"{o:34s} {_first_comment(CONF / group / f'{o}.yaml')}\n" for o in group_options(group)
                   if (CONF / group / f"{o}.yaml").is_file())


LISTS = {"attention": "attention entries and their capabilities", "data": "data sets, present locally or not",
         "models": "model=<option>", "experiments": "experiment=<option> (python train.py -m experiment=...)"}


def main(argv: list[str] | None = None) -> int:
    """``python -m attnbench list attention|data|models|experiments``."""
    p = argparse.ArgumentParser(prog="attnbench", description="What exists in this attnbench checkout. "
                                "Train with attnbench-train / python train.py (--help lists the config groups).")
    sub = p.add_subparsers(dest="cmd", required=True)
    lp = sub.add_parser("list", help="list attentions, data sets, models or experiments")
    lp.add_argument("what", choices=list(LISTS), help="; ".join(f"{k}: {v}" for k, v in LISTS.items()))
    lp.add_argument("--data-dir", type=Path, default=None, help="for `list data` (default: $DATA_DIR or data/)")
    args = p.parse_args(argv)
    out: dict[str, Any] = {"attention": list_attention, "data": lambda: list_data(args.data_dir or data_dir()),
                           "models": lambda: list_group("model"), "experiments": lambda: list_group("experiment")}
    sys.stdout.write(out[args.what]())
    return 0
