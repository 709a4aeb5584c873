"""The command line: ``attnbench-train`` / ``python train.py`` (Hydra) and ``python -m attnbench list ...``.

Light on purpose: composing and checking a config imports only Hydra, OmegaConf and the torch-free project modules
(``config``, ``attention_spec``, ``data.catalog``), so ``--help``, ``--cfg job`` and a typo answer in about a
second; torch and Lightning are imported when the run starts. The project's own errors (a bad config, missing
data, an attention asked for a capability it lacks) print one paragraph that leads with the fix and exit 2; their
traceback goes to the run's log file and ``results.json``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

import attnbench.sweep  # noqa: F401  (registers the run-folder and W&B name resolvers: ${dirname:...}, ...)
from attnbench.config import ConfigError, amp_precision, drop_disabled_progress_bar, project_root, register_configs

log = logging.getLogger(__name__)
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
    "debug": "fast = a handful of batches of train/val/test (unset by default)",
    "experiment": "a paper's table, run with -m (unset by default)",
    "lra_task": "an LRA task's sizes and schedule (released; cpu/: minutes), set by experiment=lra/*",
    "lstf": "CAB's LSTF settings, <data set>_<M|S> (lengths and layers; with experiment=cab/lstf*)",
    "hydra/launcher": "how -m sweeps run",
}
EXIT_USER_ERROR = 2


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
    """A ``group=option`` on the command line naming no option of the group: the message (options listed).

    Hydra already refuses most of these, but silently lists nothing for a nested group (``experiment=hot/x``);
    this says the same thing for every group before anything is composed. Sweeps (``a,b``) are checked per value.
    """
    import difflib

    for arg in args:
        key, sep, value = arg.partition("=")
        key = key.lstrip("+")
        if not sep or key not in GROUPS or key == "hydra/launcher" or any(c in value for c in "()[]{}$"):
            continue
        options = group_options(key)
        for v in value.split(","):
            if v and v != "null" and v not in options:
                close = difflib.get_close_matches(v, options, n=1)
                hint = f" (did you mean {key}={close[0]}?)" if close else ""
                return f"{key}={v} is not an option of the config group {key!r}{hint}; available: {', '.join(options)}"
    return None


# ----------------------------------------------------------------------------- errors
def _user_errors() -> tuple[type[BaseException], ...]:
    from attnbench.data.download import DataError

    errors: list[type[BaseException]] = [ConfigError, DataError]
    if "attnbench.attention.registry" in sys.modules:  # loaded once a model was built
        errors.append(sys.modules["attnbench.attention.registry"].CapabilityError)
    return tuple(errors)


def user_error(e: BaseException) -> BaseException | None:
    """The project's own error behind ``e`` (Hydra's instantiate wraps them), or None for anything else."""
    kinds = _user_errors()
    seen: set[int] = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, kinds):
            return e
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return None


def gpu_missing(cfg: DictConfig) -> ConfigError | None:
    """trainer=gpu on a machine without a CUDA GPU (checked after a failure: torch is loaded by then)."""
    if str(cfg.trainer.get("accelerator")) not in ("gpu", "cuda") or "torch" not in sys.modules:
        return None
    import torch

    if torch.cuda.is_available():
        return None
    return ConfigError(f"trainer.accelerator={cfg.trainer.accelerator} but this machine has no CUDA GPU "
                       "(torch.cuda.is_available() is False): run with trainer=cpu, or on a machine with a GPU")


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


def report(e: BaseException, fix: BaseException, out_dir: str | None) -> None:
    """One paragraph on stderr that leads with the fix, then where the traceback is."""
    where = [*_to_log_file(e), *([str(Path(out_dir) / "results.json")] if out_dir else [])]
    kind = type(fix).__name__
    print(f"error ({kind}): {fix}", file=sys.stderr)
    if where:
        print(f"(traceback: {' and '.join(where)})", file=sys.stderr)


# ----------------------------------------------------------------------------- noise
class _DropMessages(logging.Filter):
    """Drop log records whose message starts with one of ``prefixes`` (Lightning's repeated tips)."""

    def __init__(self, *prefixes: str) -> None:
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefixes)


LIGHTNING_NOISE = _DropMessages("💡 Tip: For seamless cloud logging",  # once per Trainer, no LitLogger wanted
                                "Trainer already configured with model summary callbacks")  # ours is configured


def quiet_lightning() -> None:
    """Targeted filters for Lightning's noise: two info lines and one deprecation warning of its own code.

    Also: under Hydra (the root logger has handlers) Lightning's messages go through them, into the run's log
    file, instead of a second console handler of the ``lightning`` package that would print each twice.
    """
    import lightning  # noqa: F401  (adds its console handler on import)

    if logging.getLogger().hasHandlers():
        lg = logging.getLogger("lightning")
        for h in [h for h in lg.handlers if type(h) is logging.StreamHandler]:
            lg.removeHandler(h)
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        lg = logging.getLogger(name)
        if LIGHTNING_NOISE not in lg.filters:
            lg.addFilter(LIGHTNING_NOISE)
    # lightning/pytorch/utilities/_pytree.py calls a torch API torch deprecated; nothing for a user to change
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated")


# ----------------------------------------------------------------------------- train
def prepare(cfg: DictConfig) -> None:
    """What the run needs decided before it builds anything: the progress bar, the mixed precision, quiet logs."""
    gone = drop_disabled_progress_bar(cfg, interactive=sys.stdout.isatty())
    if gone and cfg.trainer.enable_progress_bar is False and not sys.stdout.isatty():
        log.info("stdout is not a terminal: progress bar off (metrics: csv/metrics.csv and this log)")
    if cfg.trainer.get("precision") == "auto-mixed":
        cfg.trainer.precision = amp_precision()
        log.info("trainer.precision=auto-mixed -> %s", cfg.trainer.precision)
    quiet_lightning()


def task(cfg: DictConfig) -> float | None:
    """One run (Hydra's task function). Returns ``optimized_metric`` for sweepers."""
    from attnbench.config import validate

    hc = HydraConfig.get()
    extra = {"choices": {k: v for k, v in hc.runtime.choices.items() if not k.startswith("hydra")},
             "overrides": list(hc.overrides.task), "job_num": hc.job.get("num")}
    try:
        try:
            validate(cfg)  # torch-free: a bad value answers in a second
        except ConfigError:
            pass  # run() raises it again inside run_with_results, which records it in results.json
        else:
            prepare(cfg)
        from attnbench.train import run_with_results  # torch, Lightning

        result = run_with_results(cfg, extra)
    except Exception as e:
        fix = user_error(e) or gpu_missing(cfg)
        if fix is None:
            raise
        report(e, fix, cfg.paths.get("output_dir"))
        if hc.mode == RunMode.MULTIRUN:  # the other jobs of the sweep go on; Hydra records this one as failed
            raise
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
    _hydra_train()


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
