"""Training entry: validate, prepare, instantiate, fit, test; ``results.json`` is written even on a crash.

The config is checked once, here (``run``), before torch or Lightning is imported: a bad value answers in a second
and is recorded in ``results.json`` like any other failure.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
import resource
import signal
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from attnbench.config import drop_disabled_progress_bar, register_configs, validate
from attnbench.config.hparams_search import check_trial
from attnbench.config.resolvers import project_root
from attnbench.errors import ConfigError, user_error
from attnbench.provenance import code_version
from attnbench.wandb_log import finish_run


class _Lazy:
    """A module imported on first attribute access: importing this file stays light (torch and Lightning take
    ~8 s), so a config error is reported, and recorded in results.json, before either is loaded."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        return getattr(importlib.import_module(self._name), attr)


torch = _Lazy("torch")
L = _Lazy("lightning")
# our modules that load torch/Lightning at import
checkpoint = _Lazy("attnbench.checkpoint")
_callbacks = _Lazy("attnbench.callbacks")
_flops = _Lazy("attnbench.attention.flops")
_dropout = _Lazy("attnbench.layers.dropout")
_hardware = _Lazy("attnbench.hardware")

log = logging.getLogger(__name__)
register_configs()


def _instantiate_all(node: DictConfig | None, what: str) -> list[Any]:
    out = []
    for key, conf in (node or {}).items():
        if conf is None:
            continue
        if "_target_" not in conf:
            raise ValueError(f"{what}.{key} has no _target_")
        log.info("instantiating %s.%s <%s>", what, key, conf._target_)
        out.append(instantiate(conf))
    return out


def _scalar(v: Any) -> float | Any:
    return v.item() if isinstance(v, torch.Tensor) and v.numel() == 1 else v


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
    """Targeted filters for Lightning's noise: two info lines, one deprecation warning of its own code and, outside
    a SLURM job, its "`srun` is available but not used" hint (srun on the PATH says nothing about this run).

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
    if "SLURM_JOB_ID" not in os.environ:  # inside an allocation the hint can matter (a DDP job started without srun)
        warnings.filterwarnings("ignore", message=r"The `srun` command is available on your system but is not used")


def prepare(cfg: DictConfig) -> None:
    """What a checked run needs decided before it builds anything: the progress bar (off where stdout is not a
    terminal), the mixed precision ``auto-mixed`` stands for, quiet Lightning logs, one rank's logs."""
    quiet_other_ranks()
    gone = drop_disabled_progress_bar(cfg, interactive=sys.stdout.isatty())
    if gone and not sys.stdout.isatty():
        log.info("stdout is not a terminal: progress bar off (metrics: csv/metrics.csv and this log)")
    if cfg.trainer.get("precision") == "auto-mixed":
        cfg.trainer.precision = _hardware.amp_precision()
        log.info("trainer.precision=auto-mixed -> %s", cfg.trainer.precision)
    check_cpu_precision(cfg)
    quiet_lightning()
    log_debug_settings(cfg)


def debug_settings(cfg: DictConfig, choices: dict[str, Any]) -> list[str]:
    """``key=value`` for every key the chosen debug configs set (``conf/debug/<debug>.yaml`` and the data set's
    ``conf/debug_data/<debug>/<data>.yaml``), each with the value this run uses (a command-line value wins)."""
    name = choices.get("debug")
    if name in (None, "null", "None"):
        return []
    conf = Path(project_root()) / "conf"
    files = [conf / "debug" / f"{name}.yaml", conf / "debug_data" / str(name) / f"{choices.get('data')}.yaml"]

    def leaves(node: Any, prefix: str) -> list[str]:
        if isinstance(node, DictConfig) and node.keys() and "_target_" not in node:
            return [k for key in node if key != "defaults" for k in leaves(node[key], f"{prefix}{key}.")]
        return [prefix.rstrip(".")]

    keys = [k for f in files if f.is_file() for k in leaves(OmegaConf.load(f), "")]
    return [f"{k}={OmegaConf.select(cfg, k, default=None)}" for k in dict.fromkeys(keys) if k != "task_name"]


def log_debug_settings(cfg: DictConfig) -> None:
    """debug=<name> logs what it shrank: the values its configs set, as this run uses them."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return
    choices = dict(HydraConfig.get().runtime.choices)
    settings = debug_settings(cfg, choices)
    if settings:
        log.info("debug=%s sets %s", choices["debug"], ", ".join(settings))


def quiet_other_ranks() -> None:
    """On every process but rank 0 of a multi-process run (DDP: SLURM tasks, or the processes Lightning starts),
    the root logger's handlers (Hydra's console and the run's log file, which the ranks share) drop messages below
    WARNING: info lines, the sweep's job line included, come once, from rank 0; another rank's warnings and errors
    still show."""
    if _rank() == 0:
        return
    for h in logging.getLogger().handlers:
        h.setLevel(max(h.level, logging.WARNING))


def check_cpu_precision(cfg: DictConfig) -> None:
    """A half precision that this CPU only emulates stops the run before it builds anything (its steps would run
    many times slower than in float32), unless ``allow_slow_precision=true``; where torch cannot tell, a warning."""
    precision = str(cfg.trainer.get("precision"))
    half = "bf16" if precision.startswith("bf16") else "16" if precision.startswith("16") else None
    accelerator = str(cfg.trainer.get("accelerator"))
    on_cpu = accelerator == "cpu" or (accelerator == "auto" and not torch.cuda.is_available())
    if half is None or not on_cpu:
        return
    native, needs = _hardware.cpu_native(half), _hardware.instructions(half)
    if native:
        return
    if native is None or cfg.allow_slow_precision:
        log.warning("trainer.precision=%s on a CPU %s: %s matmuls %s emulated without %s, which can make a step "
                    "many times slower than with trainer.precision=32-true", precision,
                    "torch cannot inspect" if native is None else "without native support", half,
                    "may be" if native is None else "are", needs)
        return
    raise ConfigError(f"trainer.precision={precision} on this CPU would be emulated: it lacks {needs} "
                      f"(torch.ops.mkldnn reports no native {half} matmuls), so every step would run many times "
                      "slower than in float32 (make bench-step measures both). Use trainer.precision=32-true (the "
                      "CPU default), or allow_slow_precision=true to run it anyway")


def run(cfg: DictConfig) -> tuple[dict[str, float], str | None]:
    """Validate (the one check of the config, torch-free), prepare, build and train; return (metrics, best
    checkpoint path)."""
    validate(cfg)
    prepare(cfg)
    if cfg.seed is not None:
        L.seed_everything(cfg.seed, workers=True)
    log.info("instantiating data <%s>", cfg.data._target_)
    dm = instantiate(cfg.data)
    log.info("instantiating model <%s>", cfg.model._target_)
    model = instantiate(cfg.model)
    if cfg.dropout_rng == "packed":
        log.info("dropout_rng=packed: %d dropout layers draw packed masks", _dropout.use_packed_dropout(model))
    callbacks = _instantiate_all(cfg.get("callbacks"), "callbacks")
    # fit time per epoch (train + val) for the tables' cost columns; a Timer of the config's own is used as it is
    timer = next((cb for cb in callbacks if isinstance(cb, L.pytorch.callbacks.Timer)), None)
    if timer is None:
        timer = L.pytorch.callbacks.Timer()
        callbacks.append(timer)
    loggers = _instantiate_all(cfg.get("logger"), "logger")
    log.info("instantiating trainer <%s>", cfg.trainer._target_)
    # checkpoints written atomically (temporary file, then rename) unless the config names plugins of its own
    plugins = {} if cfg.trainer.get("plugins") else {"plugins": [_callbacks.AtomicCheckpointIO()]}
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, **plugins)
    _callbacks.hpc_save_full_state(trainer)
    hparams = OmegaConf.to_container(cfg, resolve=True)
    # saved in checkpoints as plain data (enums as strings) to compare with the run that loads them
    model.run_config = {k: v for k, v in OmegaConf.to_container(cfg, resolve=True, enum_to_str=True).items()
                        if k != "paths"}
    hparams["n_params"] = sum(p.numel() for p in model.parameters())
    flop_recorder = _flops.FlopRecorder(model)  # attention FLOPs per example, from the calls the entries get

    # every checkpoint is read with weights_only=True (plain data, no code) and checked against this model first
    ckpt_path, ckpt = cfg.get("ckpt_path"), None
    if not ckpt_path and cfg.train:
        ckpt_path, ckpt = _requeued_checkpoint(trainer)
    if ckpt_path:
        ckpt = checkpoint.load(ckpt_path) if ckpt is None else ckpt
        checkpoint.check_fits(ckpt, model, model.run_config, ckpt_path, model.checkpoint_ignore)
        if cfg.train:
            _continue_checkpoint_dir(trainer, ckpt)
            _callbacks.continue_csv_logs(trainer, ckpt)  # before anything is logged
        del ckpt
    for lg in trainer.loggers:
        lg.log_hyperparams(hparams)
    metrics: dict[str, float] = {}
    try:
        if cfg.train:
            trainer.fit(model, datamodule=dm, ckpt_path=ckpt_path, weights_only=True)
            metrics.update({k: _scalar(v) for k, v in trainer.callback_metrics.items()})
        ckpt_cb = trainer.checkpoint_callback
        best = ckpt_cb.best_model_path if ckpt_cb is not None and ckpt_cb.best_model_path else None
        if best and ckpt_cb.monitor and ckpt_cb.best_model_score is not None:
            metrics[f"{ckpt_cb.monitor}_best"] = float(ckpt_cb.best_model_score)  # e.g. val/mse_best
        if cfg.test:
            # "best": the checkpoint with the best monitored val metric; "last": the final weights (the HOT code).
            ckpt = best if cfg.test_ckpt == "best" and best else None
            if not cfg.train:  # evaluate a trained model: train=false ckpt_path=<.ckpt>
                if ckpt_path:
                    ckpt = ckpt_path
                elif model.evaluable_untrained:  # a fine-tuned pretrained model, as it is
                    ckpt = None
                else:
                    raise ValueError("train=false needs ckpt_path=<checkpoint> to test (else it would test untrained "
                                     "weights; only a pretrained model fine-tuned for the task, head included, is "
                                     "tested as it is)")
            elif cfg.test_ckpt == "best" and not best:
                log.warning("no best checkpoint was saved; testing the current weights")
            trainer.test(model, datamodule=dm, ckpt_path=ckpt, weights_only=True)
            metrics.update({k: _scalar(v) for k, v in trainer.callback_metrics.items()})
    except BaseException as e:
        stop = _callbacks.stopped(e, trainer)  # SIGTERM / Ctrl+C: exit 128+signal, saying so (Lightning exits 0 / 1)
        if stop is None:
            raise
        log.error("%s", stop)
        raise stop from None
    metrics["n_params"] = hparams["n_params"]
    metrics.update(flop_recorder.summary())  # attention_gflops (per example forward), see attention.flops
    flop_recorder.remove()
    metrics["epochs"] = trainer.current_epoch
    if cfg.train and trainer.current_epoch:  # seconds per epoch trained, validation included (resumes: all attempts)
        metrics["epoch_s"] = timer.time_elapsed("train") / trainer.current_epoch
    return {k: v for k, v in metrics.items() if isinstance(v, int | float)}, best


def _requeued_checkpoint(trainer: L.Trainer) -> tuple[str | None, dict[str, Any] | None]:
    """A requeued SLURM job (``SLURM_RESTART_COUNT`` > 0, same output folder) resumes from the newest of its
    ``last.ckpt`` and Lightning's auto-requeue ``hpc_ckpt_*.ckpt`` (SIGUSR1); returns (path, checkpoint as
    ``checkpoint.load`` read it), or (None, None) outside a requeue.

    One that cannot be read (truncated: the node was lost while it was written by a version without atomic
    writes, or the disk failed) is passed over, saying why, for the newest readable checkpoint of the folder (an
    ``epoch_*.ckpt``); none readable: training starts over, loudly, rather than failing the job.
    """
    restarts = os.environ.get("SLURM_RESTART_COUNT", "0")
    if not restarts.isdigit() or int(restarts) == 0:
        return None, None
    folders = list(dict.fromkeys(Path(cb.dirpath) for cb in trainer.checkpoint_callbacks if cb.dirpath))
    for tmp in [t for d in folders for t in checkpoint.stale_temporaries(d)]:
        log.warning("requeued job: removing %s (a checkpoint write the previous attempt did not finish)", tmp)
        with contextlib.suppress(OSError):  # another rank removed it first
            tmp.unlink()
    last = [Path(cb.dirpath) / f"{cb.filename}.ckpt" for cb in trainer.checkpoint_callbacks
            if cb.monitor is None and cb.dirpath]
    last += Path(trainer.default_root_dir).glob("hpc_ckpt_*.ckpt")
    last = sorted({f for f in last if f.is_file()}, key=lambda f: f.stat().st_mtime, reverse=True)
    others = sorted({f for d in folders for f in d.glob("*.ckpt") if f not in last},
                    key=lambda f: f.stat().st_mtime, reverse=True)
    if not last and not others:
        log.warning("requeued job (SLURM_RESTART_COUNT=%s) but no last checkpoint found: training from scratch",
                    restarts)
        return None, None
    unreadable = []
    for path in [*last, *others]:  # the last checkpoints first, then the others, each newest first
        try:
            ckpt = checkpoint.load(path, key="checkpoint")
            if "loops" not in ckpt:
                raise checkpoint.CheckpointError(f"checkpoint={str(path)!r} holds the weights only, not the "
                                                 "training state")
        except checkpoint.CheckpointError as e:
            unreadable.append(str(e))
            log.error("requeued job (SLURM_RESTART_COUNT=%s): cannot resume: %s", restarts, e)
            continue
        if unreadable:
            log.warning("requeued job (SLURM_RESTART_COUNT=%s): resuming from %s (epoch %s, step %s), the newest "
                        "readable checkpoint (%d could not be read)", restarts, path, ckpt.get("epoch"),
                        ckpt.get("global_step"), len(unreadable))
        else:
            log.warning("requeued job (SLURM_RESTART_COUNT=%s): resuming from %s", restarts, path)
        return str(path), ckpt
    log.error("requeued job (SLURM_RESTART_COUNT=%s): TRAINING STARTS OVER, none of its %d checkpoints can be read "
              "(the earlier attempts' progress is lost):\n  %s", restarts, len(unreadable), "\n  ".join(unreadable))
    return None, None


def _continue_checkpoint_dir(trainer: L.Trainer, ckpt: dict[str, Any]) -> None:
    """Resume: every ModelCheckpoint saves into the folder it saved into in the run being resumed.

    Lightning restores a ModelCheckpoint's best score and top-k only when ``dirpath`` is unchanged; a resumed run
    in a fresh output folder would otherwise call its first epoch "best" whatever its score, and test the wrong
    weights. ``ckpt`` is the checkpoint as ``checkpoint.load`` read it.
    """
    states = ckpt.get("callbacks", {})
    for cb in trainer.checkpoint_callbacks:
        state = states.get(cb.state_key) or {}
        old = state.get("dirpath")
        if old and Path(old).is_dir():
            log.info("resuming: %s checkpoints continue in %s (best so far: %s)", cb.monitor or "last", old,
                     _scalar(state.get("best_model_score")))
            cb.dirpath = old
        elif old:
            log.warning("resuming: the checkpoint folder %s is gone; checkpoints restart in %s", old, cb.dirpath)


_PROC = Path("/proc/self")  # Linux: VmHWM in status is the peak resident set size; "5" to clear_refs resets it


def reset_peak_memory() -> None:
    """Start the peak memory count of this job: the jobs of a multirun share one process (Hydra's basic
    launcher), and each job's ``peak_memory_mb`` is its own, not the largest of the jobs before it."""
    if "torch" in sys.modules and torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    with contextlib.suppress(OSError):  # not Linux, or not allowed: the process's peak (ru_maxrss) is what is left
        (_PROC / "clear_refs").write_text("5")


def peak_memory_mb() -> tuple[float, str]:
    """Peak GPU memory allocated when CUDA was used, else the peak resident set size since ``reset_peak_memory``
    (Linux; elsewhere: since the process started)."""
    if "torch" in sys.modules and torch.cuda.is_available() and torch.cuda.max_memory_allocated() > 0:
        return torch.cuda.max_memory_allocated() / 2**20, "cuda_max_allocated"
    try:
        status = (_PROC / "status").read_text()
        kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return kb / 1024, "cpu_max_rss"


def _resolved(cfg: DictConfig) -> Any:
    try:
        return OmegaConf.to_container(cfg, resolve=True)
    except Exception:  # an unresolvable value is itself a likely cause of the failure: keep it raw
        return OmegaConf.to_container(cfg, resolve=False)


def _rank() -> int:
    """This process's global rank: Lightning's once it is loaded, else from the launcher's environment."""
    if "lightning" in sys.modules:
        from lightning.pytorch.utilities import rank_zero_only

        return rank_zero_only.rank
    for key in ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK"):
        if key in os.environ:
            return int(os.environ[key])
    return 0


def write_results(cfg: DictConfig, result: dict[str, Any]) -> Path | None:
    """Write ``<output_dir>/results.json`` on rank zero."""
    if _rank() != 0:
        return None
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "results.json"
    path.write_text(json.dumps(result, indent=2, default=str))
    return path


def attempt_record(output_dir: str | Path, wall_time_s: float) -> dict[str, Any]:
    """results.json's ``attempts`` (1 + ``SLURM_RESTART_COUNT``) and ``total_wall_time_s``: this attempt's time
    plus the earlier attempts' (from the results.json a requeued job finds in its folder, written by the attempt
    before it; an attempt killed without writing one is not counted)."""
    restarts = int(os.environ.get("SLURM_RESTART_COUNT") or 0)
    total = float(wall_time_s)
    try:
        before = json.loads((Path(output_dir) / "results.json").read_text()) if restarts else None
    except (OSError, json.JSONDecodeError):  # none, or cut short by the kill that ended the attempt
        before = None
    if isinstance(before, dict) and int(before.get("attempts") or 1) <= restarts:
        total += float(before.get("total_wall_time_s", before.get("wall_time_s")) or 0.0)
    return {"attempts": restarts + 1, "total_wall_time_s": round(total, 3)}


def run_with_results(cfg: DictConfig, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """``run`` wrapped so that results.json is written whatever happens; re-raises a failure.

    ``extra`` (e.g. Hydra's group choices and overrides) is stored alongside.
    """
    t0 = time.time()
    reset_peak_memory()
    result: dict[str, Any] = {"status": "failed", "error": None, "metrics": {}, "best_checkpoint": None,
                              "code": code_version(), **(extra or {})}
    try:
        metrics, best = run(cfg)
        result.update(metrics=metrics, best_checkpoint=best)
        check_trial(cfg, metrics)  # a search's trial without a finite optimized_metric fails
        result["status"] = "ok"
        return result
    except KeyboardInterrupt as e:  # Ctrl+C outside Lightning's fit/test (which turn it into RunStopped)
        stop = _callbacks.RunStopped(signal.SIGINT, "before or after training")
        result["error"], result["traceback"] = f"{type(stop).__name__}: {stop}", traceback.format_exc()
        raise stop from e
    except BaseException as e:
        shown = user_error(e) or e  # an error of ours behind Hydra's InstantiationException: its own message
        result["error"] = f"{type(shown).__name__}: {shown}"
        result["traceback"] = traceback.format_exc()
        raise
    finally:
        result["wall_time_s"] = round(time.time() - t0, 3)
        result.update(attempt_record(cfg.paths.output_dir, result["wall_time_s"]))  # a requeued job: all attempts
        result["peak_memory_mb"], result["peak_memory_kind"] = peak_memory_mb()
        result["config"] = _resolved(cfg)
        path = write_results(cfg, result)
        if path is not None:
            log.info("results: %s (status %s)", path, result["status"])
        finish_run(result)  # W&B: the results as summary values, then finish
