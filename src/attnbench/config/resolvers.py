"""The OmegaConf resolvers the yamls use: facts of the data catalogues (``${ts_targets:ETTh1,M}``) and of the
checkout (``${project_root:}``). They run while composing, so none imports torch; an unknown name fails, listing
the known ones (no made-up fallback)."""

from dataclasses import fields
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from attnbench import names  # the run-folder and W&B name resolvers
from attnbench.config.base import choice
from attnbench.config.hparams_search import optuna_direction
from attnbench.data.catalog import MEDMNIST3D, TEXT_TASKS, TIME_SERIES
from attnbench.data.catalog.corpus import VOCABS
from attnbench.data.catalog.lra import LRA_TASKS
from attnbench.data.catalog.timeseries import calendar_features


def project_root() -> str:
    """``${project_root:}``: the checkout holding ``conf/train.yaml``: above the package (editable install) or the
    cwd."""
    here = Path(__file__).resolve().parents[3]
    return str(here if (here / "conf" / "train.yaml").is_file() else Path.cwd())


def _entry(key: str, catalogue: dict[str, Any], name: str) -> Any:
    choice(key, name, catalogue)
    return catalogue[name]


def ts_targets(name: str, features: str) -> int:
    """``${ts_targets:name,features}``: the scored variables (all of them under features M, else the target)."""
    return _entry("data.name", TIME_SERIES, name).n_vars if features == "M" else 1


def ts_inputs(name: str, features: str) -> int:
    """``${ts_inputs:name,features}``: the variables fed in (all of them under features M and MS, else the target)."""
    return 1 if features == "S" else _entry("data.name", TIME_SERIES, name).n_vars


def ts_time_features(name: str) -> int:
    """``${ts_time_features:name}``: how many calendar features the data set's frequency has (``time_features``)."""
    return len(calendar_features(_entry("data.name", TIME_SERIES, name).freq))


def medmnist_classes(name: str) -> int:
    """``${medmnist_classes:name}``: the classes of a MedMNIST 3D set."""
    return _entry("data.name", MEDMNIST3D, name).n_classes


def glue_labels(task: str) -> int:
    """``${glue_labels:task}``: the labels of a text task (1: regression)."""
    return _entry("data.task", TEXT_TASKS, task).n_labels


def corpus_vocab(tokenizer: str) -> int:
    """``${corpus_vocab:tokenizer}``: the ids of a language-modelling tokeniser."""
    return _entry("data.tokenizer", VOCABS, tokenizer).vocab_size


def lra_task(task: str, key: str) -> Any:
    """``${lra_task:task,key}``: a field of an LRA task (``data.catalog.lra``: vocab_size, num_classes, max_len,
    two_tower)."""
    entry = _entry("data.task", LRA_TASKS, task)
    choice("lra_task field", key, [f.name for f in fields(entry)])
    return getattr(entry, key)


def or_else(value: Any, default: Any) -> Any:
    """``${or_else:a,b}``: a, or b where a is null (e.g. Hydra's output dir under ``--cfg``, where none is made)."""
    return default if value is None else value


RESOLVERS = {f.__name__: f for f in (project_root, ts_targets, ts_inputs, ts_time_features, medmnist_classes,
                                     glue_labels, corpus_vocab, lra_task, or_else, optuna_direction)}


def register_resolvers() -> None:
    """Put these and ``names``'s resolvers in OmegaConf (idempotent; ``attnbench_help``: ``attnbench.cli``)."""
    for name, fn in RESOLVERS.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)
    names.register_resolvers()
