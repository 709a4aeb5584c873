"""Run-folder and W&B names, as OmegaConf resolvers the yamls use (registered on import).

``${dirname:...}`` makes any text a safe folder name (``model/attention=x`` -> ``model-attention=x``),
``${job_dirname:<num>,<override_dirname>}`` names a multirun job's folder (``3_data.name=ETTh1,model=hot,seed=1``),
``${sweep_group:<task_name>}`` and ``${run_name:<data>}`` name W&B groups and runs (``conf/logger/wandb.yaml``).
Foundation level: ``config.register_configs`` registers them for every composition.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

MAX_NAME = 200  # folder names: under the 255-byte limit of most file systems


def dirname(text: Any) -> str:
    """``text`` as one safe folder name: ``/`` and spaces become ``-``, other unsafe characters ``_``,
    cut to ``MAX_NAME`` characters."""
    name = re.sub(r"[/\s]+", "-", str(text))
    name = re.sub(r"[^A-Za-z0-9._=,+@-]", "_", name).strip("-_.")
    return name[:MAX_NAME]


# overrides that say where things go or how they are shown, not what ran: left out of folder and run names
_NOT_NAMED = ("experiment", "hydra", "hydra/launcher", "logger", "paths", "ckpt_path", "callbacks.rich_progress_bar",
              "trainer.enable_progress_bar", "data.num_workers", "data.download", "data.verify")
_ITEM = re.compile(r",(?=[+~]*[\w./@-]+=)")  # commas between overrides, not inside a value like [96,192]


def named_overrides(override_dirname: Any) -> str:
    """Hydra's ``override_dirname`` (``k=v,k=v``) without the ``_NOT_NAMED`` keys (and keys under them)."""
    items = [o for o in _ITEM.split(str(override_dirname or "")) if o]
    keys = [o.lstrip("+~").split("=", 1)[0] for o in items]
    return ",".join(o for o, k in zip(items, keys, strict=True)
                    if not any(k == n or k.startswith(n + ".") for n in _NOT_NAMED))


def job_dirname(num: Any, override_dirname: Any = "") -> str:
    """A multirun job's folder: ``<num>_<overrides>`` (``<num>`` alone when it has none)."""
    rest = dirname(named_overrides(override_dirname))
    return f"{num}_{rest}" if rest else str(num)


def _hydra() -> Any | None:
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get() if HydraConfig.initialized() else None


def sweep_group(task_name: Any) -> str:
    """W&B group: ``<task_name>/<sweep folder>`` in a multirun (one group per sweep), else ``<task_name>``."""
    from hydra.types import RunMode

    hc = _hydra()
    if hc is not None and hc.mode == RunMode.MULTIRUN:
        return f"{task_name}/{Path(str(hc.sweep.dir)).name}"
    return str(task_name)


def run_name(data: Any = None) -> str:
    """W&B run name: ``<model>_<data>`` plus the job's overrides (``hot_ETTh1 data.pred_len=96,seed=1``)."""
    hc = _hydra()
    if hc is None:
        return f"run_{data}" if data not in (None, "None") else "run"
    choices = hc.runtime.choices
    parts = [str(choices.get("model")), str(data if data not in (None, "None") else choices.get("data"))]
    overrides = named_overrides(hc.job.get("override_dirname"))
    return "_".join(parts) + (f" {overrides}" if overrides else "")


def register_resolvers() -> None:
    """Idempotent: ``dirname``, ``job_dirname``, ``sweep_group``, ``run_name``."""
    for name, fn in {"dirname": dirname, "job_dirname": job_dirname, "sweep_group": sweep_group,
                     "run_name": run_name}.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)


register_resolvers()
