"""The top level of ``conf/train.yaml`` (``TrainConfig``) and ``paths``: what a run is asked to do, where it
writes; an experiment's ``table:`` block rides along (``analysis.spec`` reads and checks it)."""

from dataclasses import dataclass, field, fields
from typing import Any

from omegaconf import MISSING, DictConfig

from attnbench.config.base import choice, need
from attnbench.errors import ConfigError


@dataclass
class PathsConfig:
    root_dir: str = MISSING
    data_dir: str = MISSING
    log_dir: str = MISSING
    output_dir: str | None = MISSING  # Hydra's run dir (under --cfg: the one it would make)


# torch: nn.Dropout as built; packed: masks cut from packed random bits, ~4x cheaper on a CPU (layers/dropout.py)
DROPOUT_RNGS = ("torch", "packed")
TEST_CKPTS = ("best", "last")  # the best checkpoint by the monitored val metric, or the final weights


@dataclass
class TrainConfig:
    model: Any = MISSING
    data: Any = MISSING
    trainer: Any = MISSING
    logger: Any = None
    callbacks: Any = None
    paths: PathsConfig = field(default_factory=PathsConfig)
    extras: dict[str, Any] = field(default_factory=dict)
    task_name: str = "train"
    tags: list[str] = field(default_factory=list)
    seed: int | None = 42
    train: bool = True
    test: bool = True
    ckpt_path: str | None = None
    test_ckpt: str = "best"  # one of TEST_CKPTS
    dropout_rng: str = "torch"  # one of DROPOUT_RNGS: how nn.Dropout draws its masks (attnbench.layers.dropout)
    # run a half precision on a CPU that only emulates it (trainer.precision=bf16-mixed without AVX512-BF16 / AMX:
    # many times slower than 32-true); by default such a run stops before training (attnbench.train.prepare)
    allow_slow_precision: bool = False
    optimized_metric: str | None = None
    table: Any = None  # the paper table an experiment fills (conf/experiment/**: checked by analysis.spec)
    recipe: Any = None  # a baseline's hyper-parameters per data set (conf/recipe/<model>.yaml picks by data.name)


def check_run(cfg: DictConfig) -> None:
    """The top-level keys and values: known keys, the groups present, the seed and the choices."""
    known = [f.name for f in fields(TrainConfig)]
    unknown = [k for k in cfg if k not in known]
    if unknown:
        raise ConfigError(f"unknown top-level key {unknown[0]!r} (from +{unknown[0]}=... or an experiment file); "
                          f"allowed: {', '.join(known)}")
    for group in ("data", "model", "trainer"):
        if cfg.get(group) is None:
            raise ConfigError(f"config group {group!r} is missing")
    need(cfg.seed is None or (isinstance(cfg.seed, int) and 0 <= cfg.seed <= 2**32 - 1), "seed", cfg.seed,
         "must be an int in [0, 2**32 - 1], or null for an unseeded run")
    choice("test_ckpt", cfg.test_ckpt, TEST_CKPTS)
    choice("dropout_rng", cfg.dropout_rng, DROPOUT_RNGS)
    for k in cfg.paths:
        choice("paths key", k, [f.name for f in fields(PathsConfig)])
