"""Structured-config schemas (dataclasses in Hydra's ConfigStore) and the checks run before training.

Each group yaml names its schema first in its defaults list (``- forecasting_schema``), so Hydra rejects
an unknown key or a value of the wrong type while composing. ``validate`` then builds the dataclasses
(running their range checks) and the cross-group checks, before anything is instantiated.
"""

import difflib
from dataclasses import dataclass, field, fields
from enum import Enum
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from attnbench import attention
from attnbench.data.catalog import GLUE, MEDMNIST3D, TEXT_TASKS, TIME_SERIES


def _incomplete(obj: Any) -> bool:
    """True while a schema holds MISSING values (when the ConfigStore builds its defaults)."""
    return any(getattr(obj, f.name) == MISSING for f in fields(obj))


class ConfigError(ValueError):
    """A configuration value is out of range or inconsistent; the message names key, value and fix."""


def _need(ok: bool, key: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"{key}={value!r} is invalid: {allowed}")


def _choice(key: str, value: str, allowed: list[str]) -> None:
    if value not in allowed:
        close = difflib.get_close_matches(str(value), allowed, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"{key}={value!r} is invalid{hint}; allowed: {', '.join(allowed)}")


class Features(str, Enum):
    M = "M"
    S = "S"
    MS = "MS"


class Head(str, Enum):
    mean = "mean"
    flatten = "flatten"


# ----------------------------------------------------------------------------- data
class TSSplit(str, Enum):
    tslib = "tslib"  # TSLib borders: ETT 12/4/4 months, the others 70/10/20
    official = "official"  # the HOT code: 70/10/20 for every data set, one window fewer per split


@dataclass
class TimeSeriesDataConfig:
    _target_: str = "attnbench.data.timeseries.TimeSeriesDataModule"
    name: str = MISSING
    data_dir: str = MISSING
    seq_len: int = MISSING
    label_len: int = MISSING
    pred_len: int = MISSING
    features: Features = Features.M
    target: str | None = None
    batch_size: int = 32
    eval_batch_size: int | None = None
    num_workers: int = 0
    scale: bool = True
    verify: bool = True
    download: bool = True
    drop_last_train: bool = True
    split: TSSplit = TSSplit.tslib

    def __post_init__(self) -> None:
        if _incomplete(self):
            return
        _choice("data.name", self.name, list(TIME_SERIES))
        for k in ("seq_len", "pred_len", "batch_size"):
            _need(getattr(self, k) >= 1, f"data.{k}", getattr(self, k), "must be >= 1")
        _need(0 <= self.label_len <= self.seq_len, "data.label_len", self.label_len,
              f"must lie in [0, seq_len={self.seq_len}]")
        _need(self.num_workers >= 0, "data.num_workers", self.num_workers, "must be >= 0")
        _need(self.eval_batch_size is None or self.eval_batch_size >= 1, "data.eval_batch_size",
              self.eval_batch_size, "must be >= 1 or null")


# ----------------------------------------------------------------------------- model
def check_attention(key: str, att: dict) -> None:
    """An attention node: a registry key plus options its constructor accepts."""
    if "name" not in att:
        raise ConfigError(f"{key}.name is missing; allowed: {', '.join(attention.available())}")
    _choice(f"{key}.name", att["name"], attention.available())
    opts = {k: v for k, v in att.items() if k != "name"}
    try:
        attention.check_kwargs(att["name"], opts)
    except TypeError as e:
        raise ConfigError(f"{key}: {e}") from None


def check_transformer_net(net: Any, *positive: str) -> None:
    """Checks shared by the tensor-block networks (``model.net``): sizes, heads, RoPE, attention, per-axis q/k."""
    for k in (*positive, "d_model", "n_heads", "n_layers", "d_mlp"):
        _need(getattr(net, k) >= 1, f"model.net.{k}", getattr(net, k), "must be >= 1")
    _need(0.0 <= net.dropout < 1.0, "model.net.dropout", net.dropout, "must lie in [0, 1)")
    if net.d_model % net.n_heads:
        raise ConfigError(f"model.net.n_heads={net.n_heads} must divide model.net.d_model={net.d_model}")
    if net.rope and (net.d_model // net.n_heads) % 2:
        raise ConfigError(f"RoPE needs an even head size: model.net.d_model/n_heads = "
                          f"{net.d_model}/{net.n_heads} is odd (or set model.net.rope=false)")
    check_attention("model.net.attention", dict(net.attention))
    cls = attention.get(net.attention["name"])
    if net.per_axis_qk and not cls.caps.per_axis_qk:
        raise ConfigError(f"model.net.per_axis_qk=true but attention {cls.name!r} takes one query/key "
                          "tensor: set model.net.per_axis_qk=false")


@dataclass
class TransformerNetConfig:
    """Fields of the tensor-block networks (``layers.block.TensorBlock`` stacks)."""

    attention: dict[str, Any] = MISSING
    d_model: int = 128
    n_heads: int = 8
    n_layers: int = 4
    d_mlp: int = 512
    dropout: float = 0.1
    qk_norm: bool = True
    rope: bool = True
    per_axis_qk: bool = True


class DropoutLayout(str, Enum):
    ours = "ours"
    official = "official"  # the HOT code's dropout sites (models/forecaster.py)


@dataclass
class ForecasterNetConfig(TransformerNetConfig):
    _target_: str = "attnbench.models.forecaster.PatchForecaster"
    seq_len: int = MISSING
    pred_len: int = MISSING
    patch_len: int = 4
    revin: bool = True
    head: Head = Head.flatten
    dropout_layout: DropoutLayout = DropoutLayout.ours

    def __post_init__(self) -> None:
        if _incomplete(self):
            return
        check_transformer_net(self, "patch_len")
        if self.seq_len % self.patch_len:
            raise ConfigError(f"model.net.patch_len={self.patch_len} must divide data.seq_len={self.seq_len}")


@dataclass
class OptimizerConfig:
    _target_: str = "torch.optim.AdamW"
    _partial_: bool = True
    lr: float = 1e-3
    weight_decay: float = 1e-2
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])

    def __post_init__(self) -> None:
        if _incomplete(self):
            return
        _need(self.lr > 0, "model.optimizer.lr", self.lr, "must be > 0")
        _need(self.weight_decay >= 0, "model.optimizer.weight_decay", self.weight_decay, "must be >= 0")


def _check_schedule(model: Any, example: str) -> None:
    """The scheduler fields every model schema has: ``scheduler_interval`` and a ``_target_`` when set."""
    _choice("model.scheduler_interval", model.scheduler_interval, ["epoch", "step"])
    if model.scheduler is not None and "_target_" not in model.scheduler:
        raise ConfigError(f"model.scheduler needs a _target_ (e.g. {example})")


@dataclass
class ForecastingModelConfig:
    _target_: str = "attnbench.lit.forecasting.ForecastingModule"
    net: ForecasterNetConfig = field(default_factory=ForecasterNetConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    scheduler: dict[str, Any] | None = None
    scheduler_interval: str = "epoch"
    n_targets: int = MISSING
    horizons: list[int] | None = None
    compile: bool = False
    monitor: str = "val/mse"  # checkpoint / early-stopping / scheduler metric (callbacks read it)
    monitor_mode: str = "min"

    def monitors(self) -> list[str]:
        """The val metrics ForecastingModule logs for these horizons (a test checks they are all logged)."""
        hs = sorted(self.horizons) if self.horizons else [self.net.pred_len]
        per_h = [f"val/{m}_{h}" for h in hs for m in ("mse", "mae")] if len(hs) > 1 else ["val/mae"]
        return ["val/mse", "val/mae_avg", *per_h]

    def __post_init__(self) -> None:
        if _incomplete(self):
            return
        if self.horizons:
            bad = [h for h in self.horizons if not 1 <= h <= self.net.pred_len]
            if bad:
                raise ConfigError(f"model.horizons={list(self.horizons)}: {bad} outside [1, data.pred_len="
                                  f"{self.net.pred_len}]")
        _choice("model.monitor", self.monitor, self.monitors())
        _choice("model.monitor_mode", self.monitor_mode, ["min", "max"])
        _check_schedule(self, "torch.optim.lr_scheduler.CosineAnnealingLR")


# ----------------------------------------------------------------------------- 3D classification
class Augment(str, Enum):
    mul = "mul"
    flip = "flip"
    none = "none"


@dataclass
class MedMNISTDataConfig:
    _target_: str = "attnbench.data.medmnist.MedMNIST3DDataModule"
    name: str = MISSING
    data_dir: str = MISSING
    size: int = 28
    batch_size: int = 32
    eval_batch_size: int | None = None
    num_workers: int = 0
    augment: Augment = Augment.mul
    download: bool = True
    verify: bool = True
    drop_last_train: bool = False
    seed: int = 0
    n_classes: int | None = None

    def __post_init__(self) -> None:
        if _incomplete(self):
            return
        _choice("data.name", self.name, list(MEDMNIST3D))
        _choice("data.size", str(self.size), ["28", "64"])
        _need(self.batch_size >= 1, "data.batch_size", self.batch_size, "must be >= 1")
        _need(self.num_workers >= 0, "data.num_workers", self.num_workers, "must be >= 0")


@dataclass
class NiftiDataConfig:
    """NIfTI volumes + a label CSV (attnbench.data.nifti). ``size`` is ``${data.spatial_size}`` in the yaml
    (the model reads ``img_size: ${data.size}``) and must equal ``spatial_size``."""

    _target_: str = "attnbench.data.nifti.NiftiDataModule"
    data_dir: str = MISSING
    csv: str = MISSING
    n_classes: int = MISSING
    spatial_size: list[int] = MISSING
    size: list[int] | None = None
    image_column: str = "image"
    label_column: str = "label"
    split_column: str | None = None
    pixdim: list[float] | None = None
    intensity: str = "minmax"
    clip: list[float] | None = None
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    seed: int = 0
    batch_size: int = 8
    eval_batch_size: int | None = None
    num_workers: int = 0
    augment: str = "none"
    cache: bool = True

    def __post_init__(self) -> None:
        if _incomplete(self):
            return
        _need(self.n_classes >= 2, "data.n_classes", self.n_classes, "must be >= 2")
        sides = list(self.spatial_size)
        _need(len(sides) == 3 and min(sides) >= 1, "data.spatial_size", sides, "must be three sides >= 1")
        _need(self.size is None or list(self.size) == sides, "data.size", self.size,
              f"must equal data.spatial_size={sides} (it is derived from it: set data.spatial_size)")
        _need(self.pixdim is None or (len(self.pixdim) == 3 and min(self.pixdim) > 0), "data.pixdim",
              self.pixdim, "must be three voxel spacings > 0 (mm) or null")
        _need(self.clip is None or (len(self.clip) == 2 and self.clip[0] < self.clip[1]), "data.clip",
              self.clip, "must be [a_min, a_max] with a_min < a_max, or null")
        _choice("data.intensity", self.intensity, ["minmax", "zscore", "none"])
        _choice("data.augment", self.augment, ["flip", "none"])
        _need(0 < self.val_fraction < 1, "data.val_fraction", self.val_fraction, "must lie in (0, 1)")
        _need(0 < self.test_fraction < 1, "data.test_fraction", self.test_fraction, "must lie in (0, 1)")
        _need(self.val_fraction + self.test_fraction < 1, "data.val_fraction + data.test_fraction",
              self.val_fraction + self.test_fraction, "must be < 1")
        _need(self.batch_size >= 1, "data.batch_size", self.batch_size, "must be >= 1")
        _need(self.eval_batch_size is None or self.eval_batch_size >= 1, "data.eval_batch_size",
              self.eval_batch_size, "must be >= 1 or null")
        _need(self.num_workers >= 0, "data.num_workers", self.num_workers, "must be >= 0")


@dataclass
class VolumeClassifierNetConfig(TransformerNetConfig):
    _target_: str = "attnbench.models.classifier3d.VolumeClassifier"
    img_size: Any = MISSING  # one side or [D, H, W]
    n_classes: int = MISSING
    in_channels: int = 1
    patch_size: int = 4

    def __post_init__(self) -> None:
        if _incomplete(self):
            return
        check_transformer_net(self, "patch_size", "in_channels")
        sides = [self.img_size] * 3 if isinstance(self.img_size, int) else list(self.img_size)
        if len(sides) != 3 or any(int(s) % self.patch_size for s in sides):
            raise ConfigError(f"model.net.patch_size={self.patch_size} must divide every side of "
                              f"model.net.img_size={sides}")


@dataclass
class ResNet3DNetConfig:
    _target_: str = "attnbench.models.classifier3d.resnet3d"
    depth: int = 18
    n_classes: int = MISSING
    in_channels: int = 1
    widen_factor: float = 1.0
    conv1_kernel: int = 7
    conv1_stride: int = 2
    no_max_pool: bool = False

    def __post_init__(self) -> None:
        if _incomplete(self):
            return
        _choice("model.net.depth", str(self.depth), ["10", "18", "34", "50"])
        _need(self.widen_factor > 0, "model.net.widen_factor", self.widen_factor, "must be > 0")


NET_SCHEMAS = {
    "attnbench.models.classifier3d.VolumeClassifier": VolumeClassifierNetConfig,
    "attnbench.models.classifier3d.resnet3d": ResNet3DNetConfig,
}


@dataclass
class ClassificationModelConfig:
    _target_: str = "attnbench.lit.classification.ClassificationModule"
    net: Any = MISSING  # a VolumeClassifier or resnet3d node, checked by its own schema in validate()
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    scheduler: dict[str, Any] | None = None
    scheduler_interval: str = "epoch"
    n_classes: int = MISSING
    class_weights: str = "none"
    compile: bool = False
    monitor: str = "val/acc"
    monitor_mode: str = "max"

    def __post_init__(self) -> None:
        if _incomplete(self):
            return
        _choice("model.class_weights", self.class_weights, ["none", "inverse"])
        _choice("model.monitor_mode", self.monitor_mode, ["min", "max"])
        target = self.net.get("_target_") if isinstance(self.net, dict) else None
        _choice("model.net._target_", str(target), list(NET_SCHEMAS))
        check_schema("model.net", NET_SCHEMAS[target], self.net)
        if self.net.get("n_classes") != self.n_classes:
            raise ConfigError(f"model.net.n_classes={self.net.get('n_classes')} must equal "
                              f"model.n_classes={self.n_classes}")
        _check_schedule(self, "torch.optim.lr_scheduler.CosineAnnealingLR")


# ----------------------------------------------------------------------------- text classification (GLUE)
@dataclass
class TextDataConfig:
    """Fields and checks shared by the text datamodules (tokenized by the model's own tokenizer)."""

    task: str = MISSING
    data_dir: str = MISSING
    tokenizer: str = MISSING
    max_length: int = 128
    batch_size: int = 32
    eval_batch_size: int | None = None
    num_workers: int = 0
    download: bool = True
    verify: bool = True
    limit_examples: int | None = None

    def __post_init__(self) -> None:
        if _incomplete(self):
            return
        for k in ("max_length", "batch_size"):
            _need(getattr(self, k) >= 1, f"data.{k}", getattr(self, k), "must be >= 1")
        _need(self.eval_batch_size is None or self.eval_batch_size >= 1, "data.eval_batch_size",
              self.eval_batch_size, "must be >= 1 or null")
        _need(self.num_workers >= 0, "data.num_workers", self.num_workers, "must be >= 0")
        _need(self.limit_examples is None or self.limit_examples >= 1, "data.limit_examples",
              self.limit_examples, "must be >= 1 or null")


@dataclass
class GlueDataConfig(TextDataConfig):
    _target_: str = "attnbench.data.glue.GlueDataModule"

    def __post_init__(self) -> None:
        if _incomplete(self):
            return
        _choice("data.task", self.task, list(GLUE))
        super().__post_init__()


@dataclass
class ImdbDataConfig(TextDataConfig):
    _target_: str = "attnbench.data.imdb.ImdbDataModule"
    task: str = "imdb"
    max_length: int = 512
    batch_size: int = 8
    val_fraction: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        if _incomplete(self):
            return
        _choice("data.task", self.task, ["imdb"])
        _need(0 < self.val_fraction < 1, "data.val_fraction", self.val_fraction, "must lie in (0, 1)")
        super().__post_init__()


@dataclass
class HFClassifierNetConfig:
    _target_: str = "attnbench.models.hf_text.pretrained_classifier"
    pretrained: str = MISSING
    n_labels: int = MISSING
    attention: dict[str, Any] | None = None
    dropout: float | None = None

    def __post_init__(self) -> None:
        if _incomplete(self):
            return
        _need(self.n_labels >= 1, "model.net.n_labels", self.n_labels, "must be >= 1 (1 = regression)")
        _need(self.dropout is None or 0.0 <= self.dropout < 1.0, "model.net.dropout", self.dropout,
              "must lie in [0, 1) or be null")
        if self.attention is not None:
            check_attention("model.net.attention", dict(self.attention))
            from attnbench.models.hf_swap import check_drop_in

            try:
                check_drop_in(self.attention["name"])
            except ValueError as e:
                raise ConfigError(f"model.net.attention.name={self.attention['name']!r} cannot replace a pretrained "
                                  f"self-attention: {e}") from None


@dataclass
class TextClassificationModelConfig:
    _target_: str = "attnbench.lit.text_classification.TextClassificationModule"
    net: HFClassifierNetConfig = field(default_factory=HFClassifierNetConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    scheduler: dict[str, Any] | None = None
    scheduler_interval: str = "step"
    warmup_ratio: float = 0.0
    task: str = MISSING
    monitor: str = "val/score"
    monitor_mode: str = "max"

    def __post_init__(self) -> None:
        if _incomplete(self):
            return
        _choice("model.task", self.task, list(TEXT_TASKS))
        _choice("model.monitor_mode", self.monitor_mode, ["min", "max"])
        _need(0.0 <= self.warmup_ratio < 1.0, "model.warmup_ratio", self.warmup_ratio, "must lie in [0, 1)")
        if self.net.n_labels != TEXT_TASKS[self.task].n_labels:
            raise ConfigError(f"model.net.n_labels={self.net.n_labels} but task {self.task!r} has "
                              f"{TEXT_TASKS[self.task].n_labels} (1 = regression)")
        _check_schedule(self, "transformers.get_linear_schedule_with_warmup")


# ----------------------------------------------------------------------------- trainer
@dataclass
class TrainerConfig:
    _target_: str = "lightning.pytorch.Trainer"
    default_root_dir: str | None = MISSING
    accelerator: str = "cpu"
    devices: Any = 1
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "32-true"
    min_epochs: int = 1
    max_epochs: int = 10
    max_time: str | None = None
    max_steps: int = -1
    gradient_clip_val: float | None = None
    accumulate_grad_batches: int = 1
    check_val_every_n_epoch: int = 1
    val_check_interval: float | None = None
    limit_train_batches: float | None = None
    limit_val_batches: float | None = None
    limit_test_batches: float | None = None
    num_sanity_val_steps: int = 2
    log_every_n_steps: int = 50
    deterministic: bool = False
    benchmark: bool = False
    enable_progress_bar: bool = True
    enable_model_summary: bool = True
    detect_anomaly: bool = False
    sync_batchnorm: bool = False
    use_distributed_sampler: bool = True

    def __post_init__(self) -> None:
        if _incomplete(self):
            return
        _choice("trainer.accelerator", self.accelerator, ["cpu", "gpu", "cuda", "mps", "auto"])
        _choice("trainer.precision", self.precision,
                ["32-true", "32", "bf16-mixed", "16-mixed", "bf16-true", "16-true", "64-true", "64"])
        _need(self.max_epochs >= 1 or self.max_epochs == -1, "trainer.max_epochs", self.max_epochs, ">= 1 or -1")
        _need(self.min_epochs >= 0, "trainer.min_epochs", self.min_epochs, "must be >= 0")


# ----------------------------------------------------------------------------- top level
@dataclass
class PathsConfig:
    root_dir: str = MISSING
    data_dir: str = MISSING
    log_dir: str = MISSING
    output_dir: str | None = MISSING  # Hydra's run dir; None under --cfg (nothing runs)


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
    test_ckpt: str = "best"
    optimized_metric: str | None = None
    fail: str | None = None  # testing hook: "before_fit" raises there, to exercise results.json on failure


def project_root() -> str:
    """The checkout holding ``conf/train.yaml``: above the package (editable install) or the cwd."""
    here = Path(__file__).resolve().parents[2]
    return str(here if (here / "conf" / "train.yaml").is_file() else Path.cwd())


def _ts_targets(name: str, features: str) -> int:
    return TIME_SERIES[name].n_vars if features == "M" and name in TIME_SERIES else 1


def _amp_precision() -> str:
    """bf16-mixed where the GPU supports it, else 16-mixed."""
    import torch

    return "bf16-mixed" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "16-mixed"


def register_configs() -> None:
    """Put the schemas in the ConfigStore and the resolvers in OmegaConf (idempotent)."""
    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainConfig)
    cs.store(group="data", name="timeseries_schema", node=TimeSeriesDataConfig)
    cs.store(group="model", name="forecasting_schema", node=ForecastingModelConfig)
    cs.store(group="data", name="medmnist_schema", node=MedMNISTDataConfig)
    cs.store(group="data", name="nifti_schema", node=NiftiDataConfig)
    cs.store(group="model", name="classification_schema", node=ClassificationModelConfig)
    cs.store(group="data", name="glue_schema", node=GlueDataConfig)
    cs.store(group="data", name="imdb_schema", node=ImdbDataConfig)
    cs.store(group="model", name="text_classification_schema", node=TextClassificationModelConfig)
    cs.store(group="trainer", name="trainer_schema", node=TrainerConfig)
    cs.store(group="paths", name="paths_schema", node=PathsConfig)
    resolvers = {"project_root": project_root, "ts_targets": _ts_targets, "amp_precision": _amp_precision,
                 "medmnist_classes": _medmnist_classes, "glue_labels": _glue_labels}
    for name, fn in resolvers.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)


def _medmnist_classes(name: str) -> int:
    return MEDMNIST3D[name].n_classes if name in MEDMNIST3D else 2


def _glue_labels(task: str) -> int:
    return TEXT_TASKS[task].n_labels if task in TEXT_TASKS else 2


SCHEMAS = {
    "attnbench.data.glue.GlueDataModule": GlueDataConfig,
    "attnbench.data.imdb.ImdbDataModule": ImdbDataConfig,
    "attnbench.lit.text_classification.TextClassificationModule": TextClassificationModelConfig,
    "attnbench.data.timeseries.TimeSeriesDataModule": TimeSeriesDataConfig,
    "attnbench.lit.forecasting.ForecastingModule": ForecastingModelConfig,
    "attnbench.data.medmnist.MedMNIST3DDataModule": MedMNISTDataConfig,
    "attnbench.data.nifti.NiftiDataModule": NiftiDataConfig,
    "attnbench.lit.classification.ClassificationModule": ClassificationModelConfig,
    "lightning.pytorch.Trainer": TrainerConfig,
}


# which data modules each LightningModule trains on
TASK_DATA = {
    "attnbench.lit.forecasting.ForecastingModule": ("attnbench.data.timeseries.TimeSeriesDataModule",),
    "attnbench.lit.classification.ClassificationModule": ("attnbench.data.medmnist.MedMNIST3DDataModule",
                                                          "attnbench.data.nifti.NiftiDataModule"),
    "attnbench.lit.text_classification.TextClassificationModule": ("attnbench.data.glue.GlueDataModule",
                                                                   "attnbench.data.imdb.ImdbDataModule"),
}


def missing_keys(node: Any, prefix: str = "") -> list[str]:
    """Dotted paths of the mandatory (``???``) values under a config node."""
    out: list[str] = []
    if isinstance(node, DictConfig):
        for k in node:
            path = f"{prefix}{k}"
            if OmegaConf.is_missing(node, k):
                out.append(path)
            else:
                out += missing_keys(node._get_node(k), f"{path}.")
    return out


def check_schema(key: str, schema: type, plain: Any) -> None:
    """Merge a plain node into ``schema`` (unknown keys / bad types raise), require every ``???`` value, and
    build the dataclasses (every ``__post_init__`` runs)."""
    merged = OmegaConf.merge(OmegaConf.structured(schema), plain)
    missing = missing_keys(merged)
    if missing:
        k = f"{key}.{missing[0]}"
        raise ConfigError(f"{k} is required and has no value (???): set it, e.g. `{k}=<value>`")
    OmegaConf.to_object(merged)


def validate(cfg: DictConfig) -> None:
    """Range and cross-group checks; raise ConfigError naming the key before anything is built."""
    for group in ("data", "model", "trainer"):
        if cfg.get(group) is None:
            raise ConfigError(f"config group {group!r} is missing")
    wants = TASK_DATA.get(cfg.model.get("_target_"), ())
    if wants and cfg.data.get("_target_") not in wants:  # before resolving: cross-task interpolations fail
        raise ConfigError(f"model {cfg.model._target_} cannot train on data {cfg.data._target_}; it takes "
                          f"{', '.join(wants)} (forecasting: model=hot|full with data=ett|weather|...; "
                          "3D classification: model=hot3d|vit3d|resnet3d with data=medmnist3d|nifti; GLUE: "
                          "model=bert|smyrf_bert with data=glue|imdb)")
    for group in ("data", "model", "trainer"):
        node = cfg.get(group)
        target = node.get("_target_")
        schema = SCHEMAS.get(target)
        if schema is None:
            raise ConfigError(f"{group}._target_={target!r} has no schema; known: {', '.join(SCHEMAS)}")
        check_schema(group, schema, OmegaConf.to_container(node, resolve=True))  # resolved against the whole cfg
    _choice("test_ckpt", cfg.test_ckpt, ["best", "last"])
    forecasting = "seq_len" in cfg.data and "seq_len" in cfg.model.net
    if forecasting and (cfg.model.net.seq_len != cfg.data.seq_len or cfg.model.net.pred_len != cfg.data.pred_len):
        raise ConfigError(f"model.net.seq_len/pred_len ({cfg.model.net.seq_len}/{cfg.model.net.pred_len}) must "
                          f"equal data.seq_len/pred_len ({cfg.data.seq_len}/{cfg.data.pred_len})")
