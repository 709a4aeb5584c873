"""Structured-config schemas (dataclasses in Hydra's ConfigStore) and the checks run before training.

Each group yaml names its schema first in its defaults list (``- forecasting_schema``), so Hydra rejects
an unknown key or a value of the wrong type while composing. ``validate`` then checks the values a constructor's
``Literal`` allows, builds the dataclasses (running their range checks) and the cross-group checks, before
anything is instantiated. A schema field ``name: Any = FROM_CODE`` takes its type and default from the
constructor of the schema's ``_target_`` (``from_code``), so neither is written twice.
"""

import ast
import difflib
import functools
import operator
import typing
from dataclasses import dataclass, field, fields, make_dataclass
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, InterpolationResolutionError, ValidationError

from attnbench import attention_spec as attention  # the registry's declarations, read without importing torch
from attnbench import names  # the run-folder and W&B name resolvers the yamls use
from attnbench.data.catalog import GLUE, MEDMNIST3D, TEXT_TASKS, TIME_SERIES
from attnbench.data.catalog.corpus import CORPORA, VOCABS
from attnbench.data.catalog.lra import LRA_TASKS
from attnbench.data.catalog.seq2seq import TASKS as SEQ2SEQ_TASKS
from attnbench.data.catalog.timeseries import calendar_features
from attnbench.signatures import REQUIRED, attention_types, constructor_params, constructor_types


def _incomplete(obj: Any) -> bool:
    """True while a schema holds MISSING values (when the ConfigStore builds its defaults)."""
    return any(getattr(obj, f.name) == MISSING for f in fields(obj))


class Checked:
    """Base of the schemas with range checks: ``check()`` runs once every value is set, not while the
    ConfigStore builds the defaults (which still hold ``???``)."""

    def __post_init__(self) -> None:
        if not _incomplete(self):
            self.check()

    def check(self) -> None:
        """Raise ConfigError naming the key, value and what is allowed (subclasses)."""


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


class _FromCode:
    def __repr__(self) -> str:
        return "FROM_CODE"


FROM_CODE: Any = _FromCode()  # a schema field's default (and with ``: Any``, its type): its constructor's (@from_code)

_SCALARS = {"int": int, "float": float, "str": str, "bool": bool, "Any": Any}
_SEQUENCES = {"list", "Sequence", "tuple"}
_MAPPINGS = {"dict", "Mapping"}


def _name(node: ast.expr) -> str:
    return node.attr if isinstance(node, ast.Attribute) else getattr(node, "id", "")  # typing.Sequence: Sequence


def _union(node: ast.expr) -> list[ast.expr]:
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _union(node.left) + _union(node.right)
    return [node]


def field_type(annotation: str) -> tuple[Any, tuple | None]:
    """The structured-config type of a constructor annotation (source text, see ``signatures.constructor_types``)
    and, for a ``Literal``, its allowed values: int, float, str, bool, Any; ``X | None``; a union of scalars;
    ``Sequence[X]`` / ``list[X]`` / ``tuple[X, ...]`` -> ``list[X]``; ``Mapping[str, X]`` / ``dict`` ->
    ``dict[str, X]``; ``Literal["a", "b"]`` -> str with allowed values ("a", "b"); another union (``int |
    Sequence[int]``) -> Any. Raises TypeError for what OmegaConf cannot hold (``nn.Module``, ``Callable``): the
    schema states that field's type itself."""

    def scalar(node: ast.expr) -> Any:
        t = _SCALARS.get(_name(node)) if isinstance(node, ast.Name | ast.Attribute) else None
        if t is None:
            raise TypeError(f"{ast.unparse(node)!r} is not a scalar type")
        return t

    def one(node: ast.expr) -> tuple[Any, tuple | None]:
        if isinstance(node, ast.Name | ast.Attribute):
            return scalar(node), None
        if isinstance(node, ast.Subscript):
            base, args = _name(node.value), node.slice
            items = list(args.elts) if isinstance(args, ast.Tuple) else [args]
            if base == "Literal":
                values = tuple(ast.literal_eval(i) for i in items)
                kinds = {type(v) for v in values}
                if len(kinds) == 1 and kinds <= {str, int}:
                    return kinds.pop(), values
            elif base in _SEQUENCES and (len(items) == 1 or (len(items) == 2 and isinstance(items[1], ast.Constant)
                                                             and items[1].value is Ellipsis)):
                return list[scalar(items[0])], None  # type: ignore[index]
            elif base in _MAPPINGS and len(items) == 2 and _name(items[0]) == "str":
                return dict[str, scalar(items[1])], None  # type: ignore[index]
        raise TypeError(f"{ast.unparse(node)!r} has no structured-config type")

    members = _union(ast.parse(annotation, mode="eval").body)
    optional = any(isinstance(m, ast.Constant) and m.value is None for m in members)
    members = [m for m in members if not (isinstance(m, ast.Constant) and m.value is None)]
    if len(members) == 1:
        t, values = one(members[0])
        return (t | None if optional and t is not Any else t), (values + (None,) if optional and values else values)
    try:
        ts = [scalar(m) for m in members]
    except TypeError:
        if not any(isinstance(m, ast.Subscript) and _name(m.value) in _SEQUENCES | _MAPPINGS for m in members):
            raise
        return Any, None  # a scalar or a container: OmegaConf holds either only untyped (the schema's check narrows)
    return functools.reduce(operator.or_, ts + [type(None)] * optional), None


def from_code(cls: type) -> type:
    """Class decorator, under ``@dataclass``: every field whose default is ``FROM_CODE`` (declared here or in a base
    schema) takes the default of the same parameter of ``cls._target_``'s constructor, read from its source
    (``signatures.constructor_params``), or is required (``???``) where the constructor has none. A field declared
    ``name: Any = FROM_CODE`` also takes the parameter's type (``field_type`` of its annotation; a ``Literal``'s
    values are checked by ``check_schema``); any other declared type narrows the code's (a sub-schema for a
    ``Callable``, ``dict`` for an ``nn.Module`` node). So each default and type is stated once, in the code: the
    schema adds the checks."""
    params = constructor_params(cls._target_)
    types = constructor_types(cls._target_)
    own = cls.__dict__.get("__annotations__")
    if own is None:
        cls.__annotations__ = own = {}
    inherited = {f.name: f.type for b in reversed(cls.__mro__[1:])
                 for f in getattr(b, "__dataclass_fields__", {}).values() if f.default is FROM_CODE}
    choices = dict(getattr(cls, "__choices__", {}))
    for name in dict.fromkeys([*inherited, *own]):
        value = cls.__dict__.get(name) if name in own else FROM_CODE  # own: as declared here; else inherited
        if value is not FROM_CODE:
            continue
        if name not in params:
            raise TypeError(f"{cls.__name__}.{name} = FROM_CODE but {cls._target_} has no parameter {name!r}")
        declared = own.get(name, inherited.get(name))
        if declared is Any or declared == "Any":  # (a string under ``from __future__ import annotations``)
            if types.get(name) is None:
                raise TypeError(f"{cls.__name__}.{name}: {cls._target_} does not annotate {name!r}; annotate it "
                                "there (or state the field's type in the schema)")
            try:
                declared, values = field_type(types[name])
            except TypeError as e:
                raise TypeError(f"{cls.__name__}.{name}: {e}; state the field's type in the schema") from None
            if values is not None:
                choices[name] = values
        own[name] = declared  # redeclared here: the field keeps its place, takes this default
        setattr(cls, name, MISSING if params[name] is REQUIRED else params[name])
    cls.__choices__ = choices  # type: ignore[attr-defined]
    return cls


# ----------------------------------------------------------------------------- data
@dataclass
@from_code
class TimeSeriesDataConfig(Checked):
    _target_: str = "attnbench.data.timeseries.TimeSeriesDataModule"
    name: Any = FROM_CODE
    data_dir: Any = FROM_CODE
    seq_len: Any = FROM_CODE
    label_len: Any = FROM_CODE
    pred_len: Any = FROM_CODE
    features: Any = FROM_CODE
    target: Any = FROM_CODE
    batch_size: Any = FROM_CODE
    eval_batch_size: Any = FROM_CODE
    num_workers: Any = FROM_CODE
    scale: Any = FROM_CODE
    verify: Any = FROM_CODE
    download: Any = FROM_CODE
    drop_last_train: Any = FROM_CODE
    split: Any = FROM_CODE

    def check(self) -> None:
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
    for opt, allowed in attention.get(att["name"]).choices.items():  # options the constructor types as Literal
        if opt in opts:
            _choice(f"{key}.{opt}", opts[opt], list(allowed))
    schema = attention_schema(att["name"])
    for k, v in opts.items():  # typed as the constructor annotates them; an option left out keeps its default
        if v is None and k in attention.SIZES:  # null: the model fills in the size (e.g. lra/linformer's max_len)
            continue
        try:
            OmegaConf.merge(OmegaConf.structured(schema), {k: v})
        except ValidationError as e:
            t = typing.get_type_hints(schema)[k]
            raise ConfigError(f"{key}.{k}={v!r} is invalid: attention {att['name']!r} takes "
                              f"{getattr(t, '__name__', t)} ({str(e).splitlines()[0]})") from None


@functools.cache
def attention_schema(name: str) -> type:
    """The options of attention entry ``name`` as a schema: each constructor parameter with the type of its
    annotation (``field_type``; Any where OmegaConf cannot hold it; a Literal's values are ``Entry.choices``), every
    field ``???``, so that only the options a node sets are checked."""
    fields_ = []
    for k, annotation in attention_types(name).items():
        try:
            t = field_type(annotation)[0] if annotation else Any
        except TypeError:
            t = Any
        fields_.append((k, t, field(default=MISSING)))
    return make_dataclass(f"{name}_attention_options", fields_)


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
    entry = attention.get(net.attention["name"])
    if net.per_axis_qk and not entry.caps["per_axis_qk"]:
        raise ConfigError(f"model.net.per_axis_qk=true but attention {entry.name!r} takes one query/key "
                          "tensor: set model.net.per_axis_qk=false")


@dataclass
class TransformerNetConfig:
    """Fields of the tensor-block networks (``layers.block.TensorBlock`` stacks)."""

    attention: Any = FROM_CODE
    d_model: Any = FROM_CODE
    n_heads: Any = FROM_CODE
    n_layers: Any = FROM_CODE
    d_mlp: Any = FROM_CODE
    dropout: Any = FROM_CODE
    qk_norm: Any = FROM_CODE
    rope: Any = FROM_CODE
    per_axis_qk: Any = FROM_CODE


@dataclass
@from_code
class ForecasterNetConfig(TransformerNetConfig, Checked):
    _target_: str = "attnbench.models.forecaster.PatchForecaster"
    seq_len: Any = FROM_CODE
    pred_len: Any = FROM_CODE
    patch_len: Any = FROM_CODE
    revin: Any = FROM_CODE
    head: Any = FROM_CODE
    dropout_layout: Any = FROM_CODE

    def check(self) -> None:
        check_transformer_net(self, "patch_len")
        if self.seq_len % self.patch_len:
            raise ConfigError(f"model.net.patch_len={self.patch_len} must divide data.seq_len={self.seq_len}")


# Informer's encoder-decoder (models/informer.py; CAB's LSTF backbone): an attention per position
@dataclass
@from_code
class InformerNetConfig(Checked):
    _target_: str = "attnbench.models.informer.InformerForecaster"
    seq_len: Any = FROM_CODE
    label_len: Any = FROM_CODE
    pred_len: Any = FROM_CODE
    enc_in: Any = FROM_CODE
    n_time_features: Any = FROM_CODE
    self_attention: Any = FROM_CODE  # encoder self-attention (noncausal self, CAB's NS)
    cross_attention: Any = FROM_CODE  # decoder cross-attention (noncausal cross, CAB's NC)
    decoder_self_attention: Any = FROM_CODE  # decoder self-attention, causal
    c_out: Any = FROM_CODE
    d_model: Any = FROM_CODE
    n_heads: Any = FROM_CODE
    e_layers: Any = FROM_CODE
    d_layers: Any = FROM_CODE
    d_ff: Any = FROM_CODE
    dropout: Any = FROM_CODE
    distil: Any = FROM_CODE
    mix: Any = FROM_CODE

    def check(self) -> None:
        for k in ("seq_len", "pred_len", "enc_in", "n_time_features", "d_model", "n_heads", "e_layers", "d_layers",
                  "d_ff"):
            _need(getattr(self, k) >= 1, f"model.net.{k}", getattr(self, k), "must be >= 1")
        _need(self.c_out is None or self.c_out >= 1, "model.net.c_out", self.c_out, "must be >= 1 or null")
        _need(0 <= self.label_len <= self.seq_len, "model.net.label_len", self.label_len,
              f"must lie in [0, seq_len={self.seq_len}]")
        _need(0.0 <= self.dropout < 1.0, "model.net.dropout", self.dropout, "must lie in [0, 1)")
        if self.d_model % self.n_heads:
            raise ConfigError(f"model.net.n_heads={self.n_heads} must divide model.net.d_model={self.d_model}")
        for key, cap in (("self_attention", "self_attention"), ("cross_attention", "cross_attention"),
                         ("decoder_self_attention", "causal")):
            node = dict(getattr(self, key))
            check_attention(f"model.net.{key}", node)
            entry = attention.get(node["name"])
            if entry.caps["tensor"] or not entry.caps[cap]:
                able = [n for n in attention.available() if attention.get(n).caps[cap]
                        and not attention.get(n).caps["tensor"]]
                raise ConfigError(f"model.net.{key}.name={node['name']!r} is not a sequence attention with {cap} "
                                  f"support; entries that are: {', '.join(able)}")


@dataclass
class OptimizerConfig(Checked):
    _target_: str = "torch.optim.AdamW"
    _partial_: bool = True
    lr: float = 1e-3
    weight_decay: float = 1e-2
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])

    def check(self) -> None:
        _need(self.lr > 0, "model.optimizer.lr", self.lr, "must be > 0")
        _need(self.weight_decay >= 0, "model.optimizer.weight_decay", self.weight_decay, "must be >= 0")
        _need(len(self.betas) == 2 and all(0.0 <= b < 1.0 for b in self.betas), "model.optimizer.betas",
              list(self.betas), "must be two numbers in [0, 1), e.g. [0.9, 0.999]")


def _check_schedule(model: Any, example: str) -> None:
    """The scheduler every model schema has: a ``_target_`` when set (``scheduler_interval``'s values: its Literal)."""
    if model.scheduler is not None and "_target_" not in model.scheduler:
        raise ConfigError(f"model.scheduler needs a _target_ (e.g. {example})")


@dataclass
@from_code
class ForecastingModelConfig(Checked):
    _target_: str = "attnbench.lit.forecasting.ForecastingModule"
    net: Any = MISSING  # a PatchForecaster or InformerForecaster node, checked by its schema (FORECAST_NET_SCHEMAS)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    scheduler: dict[str, Any] | None = FROM_CODE
    scheduler_interval: Any = FROM_CODE
    n_targets: int = MISSING
    horizons: Any = FROM_CODE
    compile: Any = FROM_CODE
    monitor: Any = FROM_CODE  # checkpoint / early-stopping / scheduler metric (callbacks read it)
    monitor_mode: Any = FROM_CODE

    def monitors(self) -> list[str]:
        """The val metrics ForecastingModule logs for these horizons (a test checks they are all logged)."""
        hs = sorted(self.horizons) if self.horizons else [self.net["pred_len"]]
        per_h = [f"val/{m}_{h}" for h in hs for m in ("mse", "mae")] if len(hs) > 1 else ["val/mae"]
        return ["val/mse", "val/mae_avg", *per_h]

    def check(self) -> None:
        target = self.net.get("_target_") if isinstance(self.net, dict) else None
        _choice("model.net._target_", str(target), list(FORECAST_NET_SCHEMAS))
        check_schema("model.net", FORECAST_NET_SCHEMAS[target], self.net)
        if self.horizons:
            bad = [h for h in self.horizons if not 1 <= h <= self.net["pred_len"]]
            if bad:
                raise ConfigError(f"model.horizons={list(self.horizons)}: {bad} outside [1, data.pred_len="
                                  f"{self.net['pred_len']}]")
        _choice("model.monitor", self.monitor, self.monitors())
        _check_schedule(self, "torch.optim.lr_scheduler.CosineAnnealingLR")


# ----------------------------------------------------------------------------- 3D classification
@dataclass
@from_code
class MedMNISTDataConfig(Checked):
    _target_: str = "attnbench.data.medmnist.MedMNIST3DDataModule"
    name: Any = FROM_CODE
    data_dir: Any = FROM_CODE
    size: Any = FROM_CODE
    batch_size: Any = FROM_CODE
    eval_batch_size: Any = FROM_CODE
    num_workers: Any = FROM_CODE
    augment: Any = FROM_CODE
    download: Any = FROM_CODE
    verify: Any = FROM_CODE
    drop_last_train: Any = FROM_CODE
    seed: Any = FROM_CODE
    n_classes: Any = FROM_CODE

    def check(self) -> None:
        _choice("data.name", self.name, list(MEDMNIST3D))
        _choice("data.size", str(self.size), ["28", "64"])
        _need(self.batch_size >= 1, "data.batch_size", self.batch_size, "must be >= 1")
        _need(self.num_workers >= 0, "data.num_workers", self.num_workers, "must be >= 0")


@dataclass
@from_code
class NiftiDataConfig(Checked):
    """NIfTI volumes + a label CSV (attnbench.data.nifti). ``size`` is ``${data.spatial_size}`` in the yaml
    (the model reads ``img_size: ${data.size}``) and must equal ``spatial_size``."""

    _target_: str = "attnbench.data.nifti.NiftiDataModule"
    data_dir: Any = FROM_CODE
    csv: Any = FROM_CODE
    n_classes: Any = FROM_CODE
    spatial_size: Any = FROM_CODE
    size: Any = FROM_CODE
    image_column: Any = FROM_CODE
    label_column: Any = FROM_CODE
    split_column: Any = FROM_CODE
    pixdim: Any = FROM_CODE
    intensity: Any = FROM_CODE
    clip: Any = FROM_CODE
    val_fraction: Any = FROM_CODE
    test_fraction: Any = FROM_CODE
    seed: Any = FROM_CODE
    batch_size: Any = FROM_CODE
    eval_batch_size: Any = FROM_CODE
    num_workers: Any = FROM_CODE
    augment: Any = FROM_CODE
    cache: Any = FROM_CODE

    def check(self) -> None:
        _need(self.n_classes >= 2, "data.n_classes", self.n_classes, "must be >= 2")
        sides = list(self.spatial_size)
        _need(len(sides) == 3 and min(sides) >= 1, "data.spatial_size", sides, "must be three sides >= 1")
        _need(self.size is None or list(self.size) == sides, "data.size", self.size,
              f"must equal data.spatial_size={sides} (it is derived from it: set data.spatial_size)")
        _need(self.pixdim is None or (len(self.pixdim) == 3 and min(self.pixdim) > 0), "data.pixdim",
              self.pixdim, "must be three voxel spacings > 0 (mm) or null")
        _need(self.clip is None or (len(self.clip) == 2 and self.clip[0] < self.clip[1]), "data.clip",
              self.clip, "must be [a_min, a_max] with a_min < a_max, or null")
        _need(0 < self.val_fraction < 1, "data.val_fraction", self.val_fraction, "must lie in (0, 1)")
        _need(0 < self.test_fraction < 1, "data.test_fraction", self.test_fraction, "must lie in (0, 1)")
        _need(self.val_fraction + self.test_fraction < 1, "data.val_fraction + data.test_fraction",
              self.val_fraction + self.test_fraction, "must be < 1")
        _need(self.batch_size >= 1, "data.batch_size", self.batch_size, "must be >= 1")
        _need(self.eval_batch_size is None or self.eval_batch_size >= 1, "data.eval_batch_size",
              self.eval_batch_size, "must be >= 1 or null")
        _need(self.num_workers >= 0, "data.num_workers", self.num_workers, "must be >= 0")


@dataclass
@from_code
class VolumeClassifierNetConfig(TransformerNetConfig, Checked):
    _target_: str = "attnbench.models.classifier3d.VolumeClassifier"
    img_size: Any = FROM_CODE  # one side or [D, H, W]
    n_classes: Any = FROM_CODE
    in_channels: Any = FROM_CODE
    patch_size: Any = FROM_CODE

    def check(self) -> None:
        check_transformer_net(self, "patch_size", "in_channels")
        sides = [self.img_size] * 3 if isinstance(self.img_size, int) else list(self.img_size)
        if len(sides) != 3 or any(int(s) % self.patch_size for s in sides):
            raise ConfigError(f"model.net.patch_size={self.patch_size} must divide every side of "
                              f"model.net.img_size={sides}")


@dataclass
@from_code
class ResNet3DNetConfig(Checked):
    _target_: str = "attnbench.models.classifier3d.resnet3d"
    depth: Any = FROM_CODE  # required (conf/model/resnet3d.yaml: 18)
    n_classes: Any = FROM_CODE
    in_channels: Any = FROM_CODE
    widen_factor: Any = FROM_CODE
    conv1_kernel: Any = FROM_CODE
    conv1_stride: Any = FROM_CODE
    no_max_pool: Any = FROM_CODE

    def check(self) -> None:
        _choice("model.net.depth", str(self.depth), ["10", "18", "34", "50"])
        _need(self.widen_factor > 0, "model.net.widen_factor", self.widen_factor, "must be > 0")


def by_target(*schemas: type) -> dict[str, type]:
    """Schemas keyed by the ``_target_`` each declares (the one place a target's dotted path is written)."""
    return {s._target_: s for s in schemas}


NET_SCHEMAS = by_target(VolumeClassifierNetConfig, ResNet3DNetConfig)
FORECAST_NET_SCHEMAS = by_target(ForecasterNetConfig, InformerNetConfig)  # model.net of ForecastingModelConfig


@dataclass
@from_code
class ClassificationModelConfig(Checked):
    _target_: str = "attnbench.lit.classification.ClassificationModule"
    net: Any = MISSING  # a VolumeClassifier or resnet3d node, checked by its own schema in validate()
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    scheduler: dict[str, Any] | None = FROM_CODE
    scheduler_interval: Any = FROM_CODE
    n_classes: Any = FROM_CODE
    class_weights: Any = FROM_CODE
    compile: Any = FROM_CODE
    monitor: Any = FROM_CODE
    monitor_mode: Any = FROM_CODE

    def check(self) -> None:
        target = self.net.get("_target_") if isinstance(self.net, dict) else None
        _choice("model.net._target_", str(target), list(NET_SCHEMAS))
        check_schema("model.net", NET_SCHEMAS[target], self.net)
        if self.net.get("n_classes") != self.n_classes:
            raise ConfigError(f"model.net.n_classes={self.net.get('n_classes')} must equal "
                              f"model.n_classes={self.n_classes}")
        _check_schedule(self, "torch.optim.lr_scheduler.CosineAnnealingLR")


# ----------------------------------------------------------------------------- text classification (GLUE)
@dataclass
class TextDataConfig(Checked):
    """Fields and checks shared by the text datamodules (tokenized by the model's own tokenizer); each subclass's
    defaults are its own datamodule's (``@from_code``)."""

    task: Any = FROM_CODE
    data_dir: Any = FROM_CODE
    tokenizer: Any = FROM_CODE
    max_length: Any = FROM_CODE
    batch_size: Any = FROM_CODE
    eval_batch_size: Any = FROM_CODE
    num_workers: Any = FROM_CODE
    download: Any = FROM_CODE
    verify: Any = FROM_CODE
    limit_examples: Any = FROM_CODE

    def check(self) -> None:
        for k in ("max_length", "batch_size"):
            _need(getattr(self, k) >= 1, f"data.{k}", getattr(self, k), "must be >= 1")
        _need(self.eval_batch_size is None or self.eval_batch_size >= 1, "data.eval_batch_size",
              self.eval_batch_size, "must be >= 1 or null")
        _need(self.num_workers >= 0, "data.num_workers", self.num_workers, "must be >= 0")
        _need(self.limit_examples is None or self.limit_examples >= 1, "data.limit_examples",
              self.limit_examples, "must be >= 1 or null")


@dataclass
@from_code
class GlueDataConfig(TextDataConfig):
    _target_: str = "attnbench.data.glue.GlueDataModule"

    def check(self) -> None:
        _choice("data.task", self.task, list(GLUE))
        super().check()


@dataclass
@from_code
class ImdbDataConfig(TextDataConfig):
    _target_: str = "attnbench.data.imdb.ImdbDataModule"
    val_fraction: Any = FROM_CODE
    seed: Any = FROM_CODE

    def check(self) -> None:
        _choice("data.task", self.task, ["imdb"])
        _need(0 < self.val_fraction < 1, "data.val_fraction", self.val_fraction, "must lie in (0, 1)")
        super().check()


# ----------------------------------------------------------------------------- Long Range Arena data (data=lra)
@dataclass
@from_code
class LRADataConfig(Checked):
    """``data=lra``: one LRA task (``attnbench.data.lra.<task>``); ``options`` are the task's ``load_split``
    keywords (e.g. a Pathfinder resolution), checked against its signature."""

    _target_: str = "attnbench.data.lra.datamodule.LRADataModule"
    task: Any = FROM_CODE
    data_dir: Any = FROM_CODE
    max_len: Any = FROM_CODE
    batch_size: Any = FROM_CODE
    eval_batch_size: Any = FROM_CODE
    num_workers: Any = FROM_CODE
    drop_last_train: Any = FROM_CODE
    limit_examples: Any = FROM_CODE
    options: Any = FROM_CODE

    def check(self) -> None:
        _choice("data.task", self.task, list(LRA_TASKS))
        _need(self.max_len is None or self.max_len >= 1, "data.max_len", self.max_len,
              f"must be >= 1, or null for the task's official {LRA_TASKS[self.task].max_len}")
        _need(self.batch_size >= 1, "data.batch_size", self.batch_size, "must be >= 1")
        _need(self.eval_batch_size is None or self.eval_batch_size >= 1, "data.eval_batch_size",
              self.eval_batch_size, "must be >= 1 or null")
        _need(self.num_workers >= 0, "data.num_workers", self.num_workers, "must be >= 0")
        _need(self.limit_examples is None or self.limit_examples >= 1, "data.limit_examples",
              self.limit_examples, "must be >= 1 or null")
        try:
            params = constructor_params(f"attnbench.data.lra.{self.task}.load_split")
        except (OSError, ValueError) as e:
            raise ConfigError(f"data.task={self.task!r}: attnbench.data.lra.{self.task}.load_split cannot be read "
                              f"({e})") from None
        allowed = [k for k in params if k not in ("root", "split", "max_len")]
        for k in (self.options or {}):
            if "**" not in params and k not in allowed:
                raise ConfigError(f"data.options.{k} is not an option of data.task={self.task!r}; allowed: "
                                  f"{', '.join(allowed) or 'none (data.options={})'}")


def _check_pretrained_encoder(dropout: float | None, att: Any, trainable_attention: bool) -> None:
    """``model.net`` of a pretrained HF encoder (classifier or masked LM): its dropout, and the attention swapped in
    (an entry that can replace a pretrained dense self-attention)."""
    _need(dropout is None or 0.0 <= dropout < 1.0, "model.net.dropout", dropout, "must lie in [0, 1) or be null")
    if att is not None:
        check_attention("model.net.attention", dict(att))
        problem = attention.drop_in_problem(att["name"], trainable_attention)
        if problem:
            raise ConfigError(f"model.net.attention.name={att['name']!r} cannot replace a pretrained "
                              f"self-attention: {problem}")


@dataclass
@from_code
class HFClassifierNetConfig(Checked):
    _target_: str = "attnbench.models.hf_text.pretrained_classifier"
    pretrained: Any = FROM_CODE
    n_labels: Any = FROM_CODE
    attention: Any = FROM_CODE
    dropout: Any = FROM_CODE
    trainable_attention: Any = FROM_CODE

    def check(self) -> None:
        _need(self.n_labels >= 1, "model.net.n_labels", self.n_labels, "must be >= 1 (1 = regression)")
        _check_pretrained_encoder(self.dropout, self.attention, self.trainable_attention)


@dataclass
@from_code
class TextClassificationModelConfig(Checked):
    _target_: str = "attnbench.lit.text_classification.TextClassificationModule"
    net: HFClassifierNetConfig = field(default_factory=HFClassifierNetConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    scheduler: dict[str, Any] | None = FROM_CODE
    scheduler_interval: Any = FROM_CODE
    warmup_ratio: Any = FROM_CODE
    task: Any = FROM_CODE
    monitor: Any = FROM_CODE
    monitor_mode: Any = FROM_CODE
    init_from: Any = FROM_CODE  # a checkpoint of experiment=treeformer/mlm (checked when fitting starts)

    def check(self) -> None:
        _choice("model.task", self.task, list(TEXT_TASKS))
        _need(0.0 <= self.warmup_ratio < 1.0, "model.warmup_ratio", self.warmup_ratio, "must lie in [0, 1)")
        if self.net.n_labels != TEXT_TASKS[self.task].n_labels:
            raise ConfigError(f"model.net.n_labels={self.net.n_labels} but task {self.task!r} has "
                              f"{TEXT_TASKS[self.task].n_labels} (1 = regression)")
        _check_schedule(self, "transformers.get_linear_schedule_with_warmup")


# ----------------------------------------------------------------------------- language modelling (CAB LM / MLM)
@dataclass
@from_code
class CorpusDataConfig(Checked):
    _target_: str = "attnbench.data.corpus.CorpusDataModule"
    name: Any = FROM_CODE
    data_dir: Any = FROM_CODE
    block_len: Any = FROM_CODE
    tokenizer: Any = FROM_CODE
    batch_size: Any = FROM_CODE
    eval_batch_size: Any = FROM_CODE
    num_workers: Any = FROM_CODE
    val_fraction: Any = FROM_CODE
    test_fraction: Any = FROM_CODE
    seed: Any = FROM_CODE
    download: Any = FROM_CODE
    verify: Any = FROM_CODE
    limit_docs: Any = FROM_CODE

    def check(self) -> None:
        _choice("data.name", self.name, list(CORPORA))
        self.check_tokenizer()
        for k in ("block_len", "batch_size"):
            _need(getattr(self, k) >= 1, f"data.{k}", getattr(self, k), "must be >= 1")
        _need(self.eval_batch_size is None or self.eval_batch_size >= 1, "data.eval_batch_size",
              self.eval_batch_size, "must be >= 1 or null")
        _need(self.num_workers >= 0, "data.num_workers", self.num_workers, "must be >= 0")
        _need(self.limit_docs is None or self.limit_docs >= 1, "data.limit_docs", self.limit_docs,
              "must be >= 1 or null")
        if CORPORA[self.name].split == "official":
            for k in ("val_fraction", "test_fraction"):
                _need(getattr(self, k) is None, f"data.{k}", getattr(self, k),
                      f"must be null for data.name={self.name} (it has official splits)")
            return
        for k in ("val_fraction", "test_fraction"):
            v = getattr(self, k)
            _need(v is not None and 0 < v < 1, f"data.{k}", v, "must lie in (0, 1)")
        _need(self.val_fraction + self.test_fraction < 1, "data.val_fraction + data.test_fraction",
              self.val_fraction + self.test_fraction, "must be < 1")

    def check_tokenizer(self) -> None:
        _choice("data.tokenizer", self.tokenizer, list(VOCABS))


@dataclass
class LMNetConfig(Checked):
    """Fields of the language models of ``models.lm`` (GPT decoder, RoBERTa encoder)."""

    attention: Any = FROM_CODE
    vocab_size: Any = FROM_CODE
    max_len: Any = FROM_CODE
    d_model: Any = FROM_CODE
    n_heads: Any = FROM_CODE
    n_layers: Any = FROM_CODE
    d_mlp: Any = FROM_CODE
    dropout: Any = FROM_CODE
    attn_dropout: Any = FROM_CODE

    def check(self) -> None:
        for k in ("vocab_size", "max_len", "d_model", "n_heads", "n_layers", "d_mlp"):
            _need(getattr(self, k) >= 1, f"model.net.{k}", getattr(self, k), "must be >= 1")
        for k in ("dropout", "attn_dropout"):
            _need(0.0 <= getattr(self, k) < 1.0, f"model.net.{k}", getattr(self, k), "must lie in [0, 1)")
        if self.d_model % self.n_heads:
            raise ConfigError(f"model.net.n_heads={self.n_heads} must divide model.net.d_model={self.d_model}")
        check_attention("model.net.attention", dict(self.attention))


@dataclass
@from_code
class GPTDecoderNetConfig(LMNetConfig):
    _target_: str = "attnbench.models.lm.GPTDecoder"

    def check(self) -> None:
        super().check()
        name = self.attention["name"]
        if not attention.get(name).caps["causal"]:
            able = [n for n in attention.available() if attention.get(n).caps["causal"]]
            raise ConfigError(f"model.net.attention.name={name!r} cannot run causally (the LM's decoder needs it); "
                              f"entries that can: {', '.join(able)}")


@dataclass
@from_code
class RobertaEncoderNetConfig(LMNetConfig):
    _target_: str = "attnbench.models.lm.RobertaEncoder"


LM_NET_SCHEMAS = by_target(GPTDecoderNetConfig, RobertaEncoderNetConfig)
LM_NETS = {"lm": GPTDecoderNetConfig._target_, "mlm": RobertaEncoderNetConfig._target_}  # objective -> net


@dataclass
@from_code
class LanguageModelConfig(Checked):
    _target_: str = "attnbench.lit.lm.LanguageModelingModule"
    net: Any = MISSING  # a GPTDecoder (objective lm) or RobertaEncoder (mlm) node, checked by its schema
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    scheduler: dict[str, Any] | None = FROM_CODE
    scheduler_interval: Any = FROM_CODE
    objective: Any = FROM_CODE
    tokenizer: Any = FROM_CODE
    mask_prob: Any = FROM_CODE
    mask_seed: Any = FROM_CODE
    monitor: Any = FROM_CODE
    monitor_mode: Any = FROM_CODE

    def check(self) -> None:
        _choice("model.objective", self.objective, list(LM_NETS))
        _choice("model.tokenizer", self.tokenizer, list(VOCABS))
        _choice("model.monitor", self.monitor, ["val/ppl", "val/loss"])
        _choice("model.monitor_mode", self.monitor_mode, ["min"])
        _need(0 < self.mask_prob < 1, "model.mask_prob", self.mask_prob, "must lie in (0, 1)")
        target = self.net.get("_target_") if isinstance(self.net, dict) else None
        _choice("model.net._target_", str(target), list(LM_NET_SCHEMAS))
        if target != LM_NETS[self.objective]:
            raise ConfigError(f"model.objective={self.objective} trains {LM_NETS[self.objective]}, not "
                              f"model.net._target_={target}")
        check_schema("model.net", LM_NET_SCHEMAS[target], self.net)
        vocab = VOCABS[self.tokenizer].vocab_size
        _need(self.net.get("vocab_size") == vocab, "model.net.vocab_size", self.net.get("vocab_size"),
              f"must be {vocab}, the size of tokenizer {self.tokenizer!r}")
        _check_schedule(self, "torch.optim.lr_scheduler.CosineAnnealingLR")


# ----------------------------------------------------------------------------- MLM continued pre-training (HF)
@dataclass
@from_code
class WordPieceCorpusDataConfig(CorpusDataConfig):
    """``data=corpus_wordpiece``: a corpus in a pretrained model's WordPiece blocks (``data.wordpiece``)."""

    _target_: str = "attnbench.data.wordpiece.WordPieceCorpusDataModule"
    name: Any = FROM_CODE
    data_dir: Any = FROM_CODE
    block_len: Any = FROM_CODE
    tokenizer: Any = FROM_CODE
    mlm_probability: Any = FROM_CODE
    mask_seed: Any = FROM_CODE
    batch_size: Any = FROM_CODE
    eval_batch_size: Any = FROM_CODE
    num_workers: Any = FROM_CODE
    val_fraction: Any = FROM_CODE
    test_fraction: Any = FROM_CODE
    seed: Any = FROM_CODE
    download: Any = FROM_CODE
    verify: Any = FROM_CODE
    limit_docs: Any = FROM_CODE

    def check_tokenizer(self) -> None:  # a pretrained name (hub id, folder, minilm): checked when loaded
        _need(bool(self.tokenizer), "data.tokenizer", self.tokenizer, "the pretrained model's name (e.g. minilm)")
        _need(0 < self.mlm_probability < 1, "data.mlm_probability", self.mlm_probability, "must lie in (0, 1)")


@dataclass
@from_code
class HFMaskedLMNetConfig(Checked):
    _target_: str = "attnbench.models.hf_text.pretrained_masked_lm"
    pretrained: Any = FROM_CODE
    attention: Any = FROM_CODE
    dropout: Any = FROM_CODE
    trainable_attention: Any = FROM_CODE

    def check(self) -> None:
        _check_pretrained_encoder(self.dropout, self.attention, self.trainable_attention)


@dataclass
@from_code
class PretrainedMLMModelConfig(Checked):
    _target_: str = "attnbench.lit.hf_mlm.PretrainedMLMModule"
    net: HFMaskedLMNetConfig = field(default_factory=HFMaskedLMNetConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    scheduler: dict[str, Any] | None = FROM_CODE
    scheduler_interval: Any = FROM_CODE
    warmup_ratio: Any = FROM_CODE
    monitor: Any = FROM_CODE
    monitor_mode: Any = FROM_CODE

    def check(self) -> None:
        _need(0.0 <= self.warmup_ratio < 1.0, "model.warmup_ratio", self.warmup_ratio, "must lie in [0, 1)")
        _choice("model.monitor", self.monitor, ["val/loss", "val/ppl"])
        _choice("model.monitor_mode", self.monitor_mode, ["min"])
        _check_schedule(self, "transformers.get_linear_schedule_with_warmup")


# ----------------------------------------------------------------------------- Long Range Arena
def _lra_task(task: str, key: str) -> Any:
    """``${lra_task:task,key}``: a field of an LRA task (``data.catalog.lra``: vocab_size, num_classes, max_len,
    two_tower); an unknown task or field lists the known ones."""
    from attnbench.data.catalog.lra import LRA_TASKS

    _choice("data.task", task, list(LRA_TASKS))
    _choice("lra_task field", key, [f.name for f in fields(LRA_TASKS[task])])
    return getattr(LRA_TASKS[task], key)


@dataclass
@from_code
class LRAEncoderNetConfig(Checked):
    _target_: str = "attnbench.models.lra.LRAEncoder"
    vocab_size: Any = FROM_CODE
    n_classes: Any = FROM_CODE
    max_len: Any = FROM_CODE
    attention: Any = FROM_CODE
    d_model: Any = FROM_CODE
    n_heads: Any = FROM_CODE
    n_layers: Any = FROM_CODE
    d_mlp: Any = FROM_CODE
    qkv_dim: Any = FROM_CODE
    dropout: Any = FROM_CODE
    pos_emb: Any = FROM_CODE
    pooling: Any = FROM_CODE
    key_padding: Any = FROM_CODE
    two_tower: Any = FROM_CODE
    interaction: Any = FROM_CODE

    def check(self) -> None:
        for k in ("vocab_size", "n_classes", "max_len", "d_model", "n_heads", "n_layers", "d_mlp"):
            _need(getattr(self, k) >= 1, f"model.net.{k}", getattr(self, k), "must be >= 1")
        _need(0.0 <= self.dropout < 1.0, "model.net.dropout", self.dropout, "must lie in [0, 1)")
        qkv = self.d_model if self.qkv_dim is None else self.qkv_dim
        if qkv % self.n_heads:
            raise ConfigError(f"model.net.n_heads={self.n_heads} must divide the attention width "
                              f"(model.net.qkv_dim, else d_model)={qkv}")
        check_attention("model.net.attention", dict(self.attention))
        if self.key_padding and not attention.get(self.attention["name"]).caps["key_padding_mask"]:
            able = [n for n, e in attention.entries().items() if e.caps["key_padding_mask"]]
            raise ConfigError(f"model.net.attention.name={self.attention['name']!r} takes no key padding mask, and "
                              f"this task pads (model.net.key_padding=true); entries that do: {', '.join(able)}")


@dataclass
class AdamConfig(OptimizerConfig):
    """``torch.optim.AdamW`` with its ``eps`` (LRA: 1e-9)."""

    eps: float = 1e-8

    def check(self) -> None:
        super().check()
        _need(self.eps > 0, "model.optimizer.eps", self.eps, "must be > 0")


@dataclass
@from_code
class LRAModelConfig(ClassificationModelConfig):
    _target_: str = "attnbench.lit.lra.LRAModule"
    net: LRAEncoderNetConfig = field(default_factory=LRAEncoderNetConfig)
    optimizer: AdamConfig = field(default_factory=AdamConfig)
    scheduler: dict[str, Any] | None = FROM_CODE  # LRAModule's defaults, not ClassificationModule's
    scheduler_interval: Any = FROM_CODE
    class_weights: Any = FROM_CODE
    monitor: Any = FROM_CODE
    monitor_mode: Any = FROM_CODE

    def check(self) -> None:
        if self.net.n_classes != self.n_classes:
            raise ConfigError(f"model.net.n_classes={self.net.n_classes} must equal model.n_classes={self.n_classes}")
        _check_schedule(self, "attnbench.lit.schedules.lra_schedule")


# ----------------------------------------------------------------------------- sequence to sequence (CAB CS/NC/CC)
@dataclass
@from_code
class Seq2SeqDataConfig(Checked):
    _target_: str = "attnbench.data.seq2seq.Seq2SeqDataModule"
    data_dir: Any = FROM_CODE
    task: Any = FROM_CODE
    n_symbols: Any = FROM_CODE
    min_len: Any = FROM_CODE
    max_len: Any = FROM_CODE
    n_train: Any = FROM_CODE
    n_val: Any = FROM_CODE
    n_test: Any = FROM_CODE
    seed: Any = FROM_CODE
    generate: Any = FROM_CODE
    batch_size: Any = FROM_CODE
    eval_batch_size: Any = FROM_CODE
    num_workers: Any = FROM_CODE

    def check(self) -> None:
        _choice("data.task", self.task, list(SEQ2SEQ_TASKS))
        _need(self.n_symbols >= 2, "data.n_symbols", self.n_symbols, "must be >= 2")
        _need(1 <= self.min_len <= self.max_len, "data.min_len", self.min_len,
              f"must lie in [1, data.max_len={self.max_len}]")
        for k in ("n_train", "n_val", "n_test", "batch_size"):
            _need(getattr(self, k) >= 1, f"data.{k}", getattr(self, k), "must be >= 1")
        _need(self.eval_batch_size is None or self.eval_batch_size >= 1, "data.eval_batch_size",
              self.eval_batch_size, "must be >= 1 or null")
        _need(self.num_workers >= 0, "data.num_workers", self.num_workers, "must be >= 0")


def check_attention_position(key: str, att: dict, *needs: str) -> None:
    """An attention node for one position of a network: a registry entry with the capabilities ``needs``
    (``Caps`` fields); the error lists the entries that have them."""
    check_attention(key, att)
    entry = attention.get(att["name"])
    lacking = [c for c in needs if not entry.caps[c]]
    if lacking:
        fit = [n for n, e in attention.entries().items() if all(e.caps[c] for c in needs)]
        raise ConfigError(f"{key}.name={entry.name!r} lacks {', '.join(lacking)}, which this position needs "
                          f"({', '.join(needs)}); entries that have it: {', '.join(fit)}")


@dataclass
@from_code
class Seq2SeqNetConfig(Checked):
    _target_: str = "attnbench.models.seq2seq.Seq2SeqTransformer"
    n_symbols: Any = FROM_CODE
    encoder_attention: Any = FROM_CODE
    decoder_attention: Any = FROM_CODE
    cross_attention: Any = FROM_CODE
    d_model: Any = FROM_CODE
    n_heads: Any = FROM_CODE
    n_encoder_layers: Any = FROM_CODE
    n_decoder_layers: Any = FROM_CODE
    d_mlp: Any = FROM_CODE
    dropout: Any = FROM_CODE
    attn_dropout: Any = FROM_CODE
    norm: Any = FROM_CODE
    mlp: Any = FROM_CODE

    def check(self) -> None:
        for k in ("d_model", "n_heads", "n_encoder_layers", "n_decoder_layers", "d_mlp"):
            _need(getattr(self, k) >= 1, f"model.net.{k}", getattr(self, k), "must be >= 1")
        if self.d_model % self.n_heads or self.d_model % 2:
            raise ConfigError(f"model.net.d_model={self.d_model} must be even and divisible by "
                              f"model.net.n_heads={self.n_heads}")
        for k in ("dropout", "attn_dropout"):
            _need(0.0 <= getattr(self, k) < 1.0, f"model.net.{k}", getattr(self, k), "must lie in [0, 1)")
        check_attention_position("model.net.encoder_attention", dict(self.encoder_attention), "self_attention",
                                 "key_padding_mask")
        check_attention_position("model.net.decoder_attention", dict(self.decoder_attention), "self_attention",
                                 "causal", "key_padding_mask")
        # the decoder is autoregressive: its cross attention is CAB's causal cross (queries do not mix)
        check_attention_position("model.net.cross_attention", dict(self.cross_attention), "cross_attention",
                                 "key_padding_mask", "causal_cross")
        for key in ("encoder_attention", "decoder_attention", "cross_attention"):
            entry = attention.get(getattr(self, key)["name"])
            _need(not entry.caps["tensor"] and not entry.caps["fixed_len"], f"model.net.{key}.name", entry.name,
                  "a sequence attention without a fixed length (tensor and fixed_len entries are not supported)")


@dataclass
@from_code
class Seq2SeqModelConfig(Checked):
    _target_: str = "attnbench.lit.seq2seq.Seq2SeqModule"
    net: Seq2SeqNetConfig = field(default_factory=Seq2SeqNetConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    scheduler: dict[str, Any] | None = FROM_CODE
    scheduler_interval: Any = FROM_CODE
    label_smoothing: Any = FROM_CODE
    monitor: Any = FROM_CODE
    monitor_mode: Any = FROM_CODE

    def check(self) -> None:
        _need(0.0 <= self.label_smoothing < 1.0, "model.label_smoothing", self.label_smoothing, "must lie in [0, 1)")
        _choice("model.monitor", self.monitor, [f"val/{m}" for m in ("loss", "acc", "exact", "acc_tf")])
        _check_schedule(self, "torch.optim.lr_scheduler.CosineAnnealingLR")


# ----------------------------------------------------------------------------- trainer
def _check_limit(key: str, value: int | float | None) -> None:
    """Lightning's batch limits: an int is a number of batches, a float a fraction of the loader."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{key}={value!r} is invalid: an int (number of batches) or a float in [0.0, 1.0] "
                          "(fraction of the loader), or null")
    if isinstance(value, int):
        _need(value >= 0, key, value, "an int is a number of batches and must be >= 0 (0 disables the loop)")
    else:
        _need(0.0 <= value <= 1.0, key, value, "a float is a fraction of the loader and must lie in [0.0, 1.0]; "
              f"for a number of batches write an int ({key}={int(value)})")


def _check_devices(value: Any) -> None:
    """``trainer.devices``: a count >= 1, -1 (all), "auto", a list of device indices or a string of them."""
    allowed = 'an int >= 1, -1 (all), "auto", a list of device indices [0, 1] or a string "0,1"'
    if isinstance(value, bool):
        raise ConfigError(f"trainer.devices={value!r} is invalid: {allowed}")
    if isinstance(value, int):
        _need(value >= 1 or value == -1, "trainer.devices", value, allowed)
    elif isinstance(value, str):
        parts = [p.strip() for p in value.split(",") if p.strip()]
        _need(value == "auto" or (parts and all(p.lstrip("-").isdigit() for p in parts)), "trainer.devices",
              value, allowed)
    elif isinstance(value, list | tuple):
        _need(len(value) > 0 and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in value),
              "trainer.devices", list(value), allowed)
    else:
        raise ConfigError(f"trainer.devices={value!r} is invalid: {allowed}")


# "auto-mixed" (trainer=gpu) becomes bf16-mixed or 16-mixed when the run starts (``amp_precision``)
PRECISIONS = ["32-true", "32", "bf16-mixed", "16-mixed", "bf16-true", "16-true", "64-true", "64", "auto-mixed"]


@dataclass
class TrainerConfig(Checked):
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
    check_val_every_n_epoch: int | None = 1
    # int = every that many training batches, float = that fraction of an epoch (the user's type is kept)
    val_check_interval: int | float | None = None
    # int = that many batches, float in [0, 1] = that fraction of the loader (``limit_val_batches=1`` is 1 batch)
    limit_train_batches: int | float | None = None
    limit_val_batches: int | float | None = None
    limit_test_batches: int | float | None = None
    num_sanity_val_steps: int = 2
    log_every_n_steps: int = 50
    deterministic: bool = False
    benchmark: bool = False
    enable_progress_bar: bool = True
    enable_model_summary: bool = True
    detect_anomaly: bool = False
    sync_batchnorm: bool = False
    use_distributed_sampler: bool = True

    def check(self) -> None:
        _choice("trainer.accelerator", self.accelerator, ["cpu", "gpu", "cuda", "mps", "auto"])
        _choice("trainer.precision", self.precision, PRECISIONS)
        _need(self.max_epochs >= 1 or self.max_epochs == -1, "trainer.max_epochs", self.max_epochs, ">= 1 or -1")
        _need(self.min_epochs >= 0, "trainer.min_epochs", self.min_epochs, "must be >= 0")
        _need(self.max_steps >= 1 or self.max_steps == -1, "trainer.max_steps", self.max_steps, ">= 1 or -1")
        _need(self.num_nodes >= 1, "trainer.num_nodes", self.num_nodes, "must be >= 1")
        _need(self.accumulate_grad_batches >= 1, "trainer.accumulate_grad_batches", self.accumulate_grad_batches,
              "must be >= 1 (1 = no accumulation)")
        _need(self.check_val_every_n_epoch is None or self.check_val_every_n_epoch >= 1,
              "trainer.check_val_every_n_epoch", self.check_val_every_n_epoch, "must be >= 1 or null")
        _need(self.num_sanity_val_steps >= -1, "trainer.num_sanity_val_steps", self.num_sanity_val_steps,
              "must be >= 0, or -1 (the whole val loader)")
        _need(self.log_every_n_steps >= 1, "trainer.log_every_n_steps", self.log_every_n_steps, "must be >= 1")
        _need(self.gradient_clip_val is None or self.gradient_clip_val >= 0, "trainer.gradient_clip_val",
              self.gradient_clip_val, "must be >= 0 or null")
        _check_devices(self.devices)
        for k in ("limit_train_batches", "limit_val_batches", "limit_test_batches"):
            _check_limit(f"trainer.{k}", getattr(self, k))
        v = self.val_check_interval
        if isinstance(v, float):
            _check_limit("trainer.val_check_interval", v)
        elif v is not None:
            _need(v >= 1, "trainer.val_check_interval", v, "an int is a number of training batches and must be "
                  ">= 1; a float in (0, 1] is a fraction of an epoch")


# ----------------------------------------------------------------------------- callbacks and loggers
# The Lightning callbacks and loggers the config tree uses, with their constructor options (tests/test_cli.py
# checks them against the installed Lightning). Other ``_target_``s are allowed but only checked for a
# ``_target_``; their options are checked by their own constructor.
@dataclass
class ModelCheckpointConfig:
    _target_: str = "lightning.pytorch.callbacks.ModelCheckpoint"
    dirpath: str | None = None
    filename: str | None = None
    monitor: str | None = None
    verbose: bool = False
    save_last: Any = None  # true, false, null or "link"
    save_top_k: int = 1
    save_on_exception: bool = False
    save_weights_only: bool = False
    mode: str = "min"
    auto_insert_metric_name: bool = True
    every_n_train_steps: int | None = None
    train_time_interval: Any = None
    every_n_epochs: int | None = None
    save_on_train_epoch_end: bool | None = None
    enable_version_counter: bool = True

    def __post_init__(self) -> None:
        _choice("callbacks.<checkpoint>.mode", self.mode, ["min", "max"])
        _need(self.save_top_k >= -1, "callbacks.<checkpoint>.save_top_k", self.save_top_k,
              "must be >= 0, or -1 (keep all)")
        _need(self.save_last in (None, True, False, "link"), "callbacks.<checkpoint>.save_last", self.save_last,
              'true, false, null or "link"')
        for k in ("every_n_train_steps", "every_n_epochs"):
            v = getattr(self, k)
            _need(v is None or v >= 0, f"callbacks.<checkpoint>.{k}", v, "must be >= 0 or null")


@dataclass
class EarlyStoppingConfig(Checked):
    _target_: str = "lightning.pytorch.callbacks.EarlyStopping"
    monitor: str = MISSING
    min_delta: float = 0.0
    patience: int = 3
    verbose: bool = False
    mode: str = "min"
    strict: bool = True
    check_finite: bool = True
    stopping_threshold: float | None = None
    divergence_threshold: float | None = None
    check_on_train_epoch_end: bool | None = None
    log_rank_zero_only: bool = False

    def check(self) -> None:
        _choice("callbacks.early_stopping.mode", self.mode, ["min", "max"])
        _need(self.patience >= 0, "callbacks.early_stopping.patience", self.patience,
              "must be an int >= 0 (validation checks without improvement before stopping)")
        _need(self.min_delta >= 0, "callbacks.early_stopping.min_delta", self.min_delta, "must be >= 0")


@dataclass
@from_code
class ModelSummaryConfig:
    _target_: str = "attnbench.callbacks.ModelSummary"
    max_depth: int = 1

    def __post_init__(self) -> None:
        _need(self.max_depth >= -1, "callbacks.model_summary.max_depth", self.max_depth, "must be >= -1")


@dataclass
class RichProgressBarConfig:
    _target_: str = "lightning.pytorch.callbacks.RichProgressBar"
    refresh_rate: int = 100
    leave: bool = False
    theme: Any = None
    console_kwargs: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        _need(self.refresh_rate >= 0, "callbacks.rich_progress_bar.refresh_rate", self.refresh_rate, "must be >= 0")


@dataclass
class TQDMProgressBarConfig:
    _target_: str = "lightning.pytorch.callbacks.TQDMProgressBar"
    refresh_rate: int = 1
    process_position: int = 0
    leave: bool = False

    def __post_init__(self) -> None:
        _need(self.refresh_rate >= 0, "callbacks.<progress bar>.refresh_rate", self.refresh_rate, "must be >= 0")


@dataclass
class LearningRateMonitorConfig:
    _target_: str = "lightning.pytorch.callbacks.LearningRateMonitor"
    logging_interval: str | None = None
    log_momentum: bool = False
    log_weight_decay: bool = False

    def __post_init__(self) -> None:
        if self.logging_interval is not None:
            _choice("callbacks.lr_monitor.logging_interval", self.logging_interval, ["step", "epoch"])


@dataclass
class CSVLoggerConfig:
    _target_: str = "lightning.pytorch.loggers.CSVLogger"
    save_dir: str = MISSING
    name: str | None = "lightning_logs"
    version: Any = None  # int, str or null
    prefix: str = ""
    flush_logs_every_n_steps: int = 100

    def __post_init__(self) -> None:
        _need(self.flush_logs_every_n_steps >= 1, "logger.csv.flush_logs_every_n_steps",
              self.flush_logs_every_n_steps, "must be >= 1")


@dataclass
class WandbLoggerConfig:
    """WandbLogger's options plus the ``wandb.init`` arguments it forwards."""

    _target_: str = "lightning.pytorch.loggers.WandbLogger"
    name: str | None = None
    save_dir: str = "."
    version: str | None = None
    offline: bool = False
    dir: str | None = None
    id: str | None = None
    anonymous: bool | None = None
    project: str | None = None
    log_model: Any = False  # true, false or "all"
    experiment: Any = None
    prefix: str = ""
    checkpoint_name: str | None = None
    add_file_policy: str = "mutable"
    # wandb.init
    entity: str | None = None
    notes: str | None = None
    tags: list[str] | None = None
    config: Any = None
    config_exclude_keys: list[str] | None = None
    config_include_keys: list[str] | None = None
    allow_val_change: bool | None = None
    group: str | None = None
    job_type: str | None = None
    mode: str | None = None
    force: bool | None = None
    reinit: Any = None
    resume: Any = None
    resume_from: str | None = None
    fork_from: str | None = None
    save_code: bool | None = None
    tensorboard: bool | None = None
    sync_tensorboard: bool | None = None
    monitor_gym: bool | None = None
    settings: Any = None

    def __post_init__(self) -> None:
        _need(self.log_model in (True, False, "all"), "logger.wandb.log_model", self.log_model, 'true, false or "all"')
        if self.mode is not None:
            _choice("logger.wandb.mode", self.mode, ["online", "offline", "disabled", "shared"])


CALLBACK_SCHEMAS: dict[str, type] = {
    "lightning.pytorch.callbacks.ModelCheckpoint": ModelCheckpointConfig,
    "lightning.pytorch.callbacks.EarlyStopping": EarlyStoppingConfig,
    "lightning.pytorch.callbacks.RichModelSummary": ModelSummaryConfig,
    "lightning.pytorch.callbacks.ModelSummary": ModelSummaryConfig,
    "attnbench.callbacks.ModelSummary": ModelSummaryConfig,
    "lightning.pytorch.callbacks.RichProgressBar": RichProgressBarConfig,
    "lightning.pytorch.callbacks.TQDMProgressBar": TQDMProgressBarConfig,
    "lightning.pytorch.callbacks.LearningRateMonitor": LearningRateMonitorConfig,
}
LOGGER_SCHEMAS: dict[str, type] = {
    "lightning.pytorch.loggers.CSVLogger": CSVLoggerConfig,
    "lightning.pytorch.loggers.WandbLogger": WandbLoggerConfig,
}
PROGRESS_BARS = ("lightning.pytorch.callbacks.RichProgressBar", "lightning.pytorch.callbacks.TQDMProgressBar")


# ----------------------------------------------------------------------------- Treeformer bootstrapping callback
def check_tree_bootstrap(order: str, steps_per_stage: Any, start_height: int, layers_per_stage: int,
                         layer_order: str, key: str = "callbacks.tree_bootstrap") -> None:
    """The options of ``attnbench.lit.treeformer.TreeBootstrap`` (its constructor calls this too: one copy of the
    checks, here because ``config`` is torch-free); the allowed values are its constructor's Literals."""
    allowed = TreeBootstrapConfig.__choices__  # type: ignore[attr-defined]
    _choice(f"{key}.order", order, list(allowed["order"]))
    _choice(f"{key}.layer_order", layer_order, list(allowed["layer_order"]))
    is_int = isinstance(steps_per_stage, int) and not isinstance(steps_per_stage, bool)
    _need((is_int and steps_per_stage >= 1) or (isinstance(steps_per_stage, float) and 0 < steps_per_stage <= 1),
          f"{key}.steps_per_stage", steps_per_stage,
          "an int >= 1 (optimizer steps per stage) or a float in (0, 1] (fraction of the run's steps)")
    _need(start_height >= 0, f"{key}.start_height", start_height, "must be >= 0 (0: one leaf)")
    _need(layers_per_stage >= 1, f"{key}.layers_per_stage", layers_per_stage, "must be >= 1")


@dataclass
@from_code
class TreeBootstrapConfig(Checked):
    _target_: str = "attnbench.lit.treeformer.TreeBootstrap"
    order: Any = FROM_CODE
    steps_per_stage: Any = FROM_CODE
    start_height: Any = FROM_CODE
    layers_per_stage: Any = FROM_CODE
    layer_order: Any = FROM_CODE
    dense_checkpoint: Any = FROM_CODE

    def check(self) -> None:
        check_tree_bootstrap(self.order, self.steps_per_stage, self.start_height, self.layers_per_stage,
                             self.layer_order)


CALLBACK_SCHEMAS[TreeBootstrapConfig._target_] = TreeBootstrapConfig


def check_entries(group: str, node: Any, schemas: dict[str, type]) -> None:
    """Each entry of ``callbacks`` / ``logger``: a mapping with a ``_target_``; known targets checked by schema."""
    if node is None:
        return
    if not isinstance(node, dict):
        raise ConfigError(f"{group}={node!r} is invalid: a mapping of name -> {{_target_: ..., options}}, or null")
    for name, entry in node.items():
        key = f"{group}.{name}"
        if entry is None:  # disabled (e.g. callbacks.early_stopping=null)
            continue
        if not isinstance(entry, dict) or not isinstance(entry.get("_target_"), str) or "." not in entry["_target_"]:
            raise ConfigError(f"{key} needs a _target_ (a dotted class path, e.g. "
                              f"{next(iter(schemas))}); got {entry!r}")
        schema = schemas.get(entry["_target_"])
        if schema is not None:
            try:
                check_schema(key, schema, entry)
            except ConfigError as e:
                raise ConfigError(str(e).replace(f"{group}.<checkpoint>", key)
                                  .replace(f"{group}.<progress bar>", key)) from None
            except (ValidationError, ConfigKeyError) as e:
                sub = getattr(e, "full_key", None)
                allowed = ", ".join(f.name for f in fields(schema) if f.name != "_target_")
                raise ConfigError(f"{key}{'.' + sub if sub else ''}: {str(e).splitlines()[0]} (keys of "
                                  f"{entry['_target_'].rsplit('.', 1)[-1]}: {allowed})") from None


# ----------------------------------------------------------------------------- top level
@dataclass
class PathsConfig:
    root_dir: str = MISSING
    data_dir: str = MISSING
    log_dir: str = MISSING
    output_dir: str | None = MISSING  # Hydra's run dir (under --cfg: the one it would make)


# torch: nn.Dropout as built; packed: masks cut from packed random bits, ~4x cheaper on a CPU (layers/dropout.py)
DROPOUT_RNGS = ("torch", "packed")


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
    dropout_rng: str = "torch"  # one of DROPOUT_RNGS: how nn.Dropout draws its masks (attnbench.layers.dropout)
    optimized_metric: str | None = None
    fail: str | None = None  # testing hook: "before_fit" raises there, to exercise results.json on failure
    table: Any = None  # the paper table an experiment fills (conf/experiment/**: checked by analysis.spec)


def project_root() -> str:
    """The checkout holding ``conf/train.yaml``: above the package (editable install) or the cwd."""
    here = Path(__file__).resolve().parents[2]
    return str(here if (here / "conf" / "train.yaml").is_file() else Path.cwd())


def _ts_targets(name: str, features: str) -> int:
    """``${ts_targets:name,features}``: the scored variables (all of them under features M, else the target)."""
    _choice("data.name", name, list(TIME_SERIES))
    return TIME_SERIES[name].n_vars if features == "M" else 1


def _ts_inputs(name: str, features: str) -> int:
    """``${ts_inputs:name,features}``: the variables fed in (all of them under features M and MS, else the target)."""
    _choice("data.name", name, list(TIME_SERIES))
    return 1 if features == "S" else TIME_SERIES[name].n_vars


def _ts_time_features(name: str) -> int:
    """``${ts_time_features:name}``: how many calendar features the data set's frequency has (``time_features``)."""
    _choice("data.name", name, list(TIME_SERIES))
    return len(calendar_features(TIME_SERIES[name].freq))


def amp_precision() -> str:
    """bf16-mixed where the GPU supports it, else 16-mixed: what ``trainer.precision=auto-mixed`` runs with.

    Called when the run starts (it imports torch), not as a resolver: composing and checking stay torch-free.
    """
    import torch

    return "bf16-mixed" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "16-mixed"


def _or_else(value: Any, default: Any) -> Any:
    """``${or_else:a,b}``: a, or b where a is null (e.g. Hydra's output dir under ``--cfg``, where none is made)."""
    return default if value is None else value


def register_configs() -> None:
    """Put the schemas in the ConfigStore and the resolvers in OmegaConf (idempotent)."""
    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainConfig)
    cs.store(group="data", name="timeseries_schema", node=TimeSeriesDataConfig)
    cs.store(group="model", name="forecasting_schema", node=ForecastingModelConfig)
    for name, net in (("patch_forecaster_schema", ForecasterNetConfig), ("informer_schema", InformerNetConfig)):
        cs.store(group="model/net", name=name, node=net)  # model.net typed while composing (hot, informer yamls)
    cs.store(group="data", name="medmnist_schema", node=MedMNISTDataConfig)
    cs.store(group="data", name="nifti_schema", node=NiftiDataConfig)
    cs.store(group="model", name="classification_schema", node=ClassificationModelConfig)
    cs.store(group="data", name="glue_schema", node=GlueDataConfig)
    cs.store(group="data", name="imdb_schema", node=ImdbDataConfig)
    cs.store(group="data", name="lra_schema", node=LRADataConfig)
    cs.store(group="model", name="text_classification_schema", node=TextClassificationModelConfig)
    cs.store(group="data", name="corpus_schema", node=CorpusDataConfig)
    cs.store(group="model", name="lm_schema", node=LanguageModelConfig)
    cs.store(group="data", name="wordpiece_corpus_schema", node=WordPieceCorpusDataConfig)
    cs.store(group="model", name="hf_mlm_schema", node=PretrainedMLMModelConfig)
    cs.store(group="model", name="lra_schema", node=LRAModelConfig)
    cs.store(group="data", name="seq2seq_schema", node=Seq2SeqDataConfig)
    cs.store(group="model", name="seq2seq_schema", node=Seq2SeqModelConfig)
    cs.store(group="trainer", name="trainer_schema", node=TrainerConfig)
    cs.store(group="paths", name="paths_schema", node=PathsConfig)
    # resolvers run while composing: none may import torch (tests/test_cli.py checks)
    resolvers = {"project_root": project_root, "ts_targets": _ts_targets, "medmnist_classes": _medmnist_classes,
                 "glue_labels": _glue_labels, "or_else": _or_else,
                 "lra_task": _lra_task}  # attnbench_help: registered by attnbench.cli
    resolvers["corpus_vocab"] = _corpus_vocab
    resolvers |= {"ts_inputs": _ts_inputs, "ts_time_features": _ts_time_features}  # models/informer.py
    for name, fn in resolvers.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)
    names.register_resolvers()


def _medmnist_classes(name: str) -> int:
    """``${medmnist_classes:name}``: the classes of a MedMNIST 3D set; an unknown name lists the sets."""
    _choice("data.name", name, list(MEDMNIST3D))
    return MEDMNIST3D[name].n_classes


def _glue_labels(task: str) -> int:
    """``${glue_labels:task}``: the labels of a text task (1: regression); an unknown task lists the tasks."""
    _choice("data.task", task, list(TEXT_TASKS))
    return TEXT_TASKS[task].n_labels


def _corpus_vocab(tokenizer: str) -> int:
    """``${corpus_vocab:tokenizer}``: the ids of a language-modelling tokeniser; an unknown one lists them."""
    _choice("data.tokenizer", tokenizer, list(VOCABS))
    return VOCABS[tokenizer].vocab_size


# which data modules each LightningModule trains on
_TASKS: dict[type, tuple[type, ...]] = {
    ForecastingModelConfig: (TimeSeriesDataConfig,),
    ClassificationModelConfig: (MedMNISTDataConfig, NiftiDataConfig, LRADataConfig),
    TextClassificationModelConfig: (GlueDataConfig, ImdbDataConfig),
    LanguageModelConfig: (CorpusDataConfig,),
    Seq2SeqModelConfig: (Seq2SeqDataConfig,),
    LRAModelConfig: (LRADataConfig,),
    PretrainedMLMModelConfig: (WordPieceCorpusDataConfig,),
}
TASK_DATA = {m._target_: tuple(d._target_ for d in ds) for m, ds in _TASKS.items()}
SCHEMAS = by_target(*_TASKS, *(d for ds in _TASKS.values() for d in ds), TrainerConfig)


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
    check_choices(key, schema, merged)
    OmegaConf.to_object(merged)


def check_choices(key: str, schema: type, node: DictConfig) -> None:
    """The values of the fields whose constructor annotation is a ``Literal`` (``@from_code``), nested schemas
    included, before any ``check()`` runs: the error names the key and lists the allowed values."""
    choices = getattr(schema, "__choices__", {})
    for f in fields(schema):
        if f.name not in node or OmegaConf.is_missing(node, f.name):
            continue
        value = node[f.name]
        if f.name in choices and value not in choices[f.name]:
            _choice(f"{key}.{f.name}", value, ["null" if c is None else str(c) for c in choices[f.name]])
        if isinstance(f.type, type) and hasattr(f.type, "__dataclass_fields__") and isinstance(value, DictConfig):
            check_choices(f"{key}.{f.name}", f.type, value)


def resolved(node: DictConfig) -> Any:
    """``node`` as plain containers, interpolations resolved; a resolver's ConfigError (an unknown data set name)
    is raised as itself, not wrapped in OmegaConf's InterpolationResolutionError."""
    try:
        return OmegaConf.to_container(node, resolve=True)
    except InterpolationResolutionError as e:
        cause: BaseException | None = e
        while cause is not None and not isinstance(cause, ConfigError):
            cause = cause.__cause__ or cause.__context__
        if cause is not None:
            raise ConfigError(str(cause)) from None
        raise


def token_count(cfg: DictConfig) -> tuple[int, str] | None:
    """Tokens a sequence attention sees in one example, with how they arise; None where not known statically.

    Forecaster: variables x seq_len/patch_len (flattened); volume classifier: the product of side/patch_size;
    text: data.max_length.
    """
    net, data = cfg.model.get("net"), cfg.data
    if net is None:
        return None
    if "seq_len" in net and "patch_len" in net and "name" in data:
        n_vars = 1 if str(data.get("features")) == "S" else TIME_SERIES[data.name].n_vars
        n = n_vars * (net.seq_len // net.patch_len)
        return n, f"{n_vars} variables x data.seq_len/model.net.patch_len = {net.seq_len}/{net.patch_len} patches"
    if "img_size" in net and "patch_size" in net:
        sides = [net.img_size] * 3 if isinstance(net.img_size, int) else list(net.img_size)
        grid = [int(s) // net.patch_size for s in sides]
        return grid[0] * grid[1] * grid[2], f"patches {' x '.join(map(str, grid))} of model.net.img_size={sides}"
    if "max_length" in data:
        return data.max_length, "data.max_length"
    if "block_len" in data:
        return data.block_len, "data.block_len"
    return None


def _check_fixed_len(cfg: DictConfig) -> None:
    """A fixed-length attention (Linformer, Super) must be built for at least the run's token count."""
    att = cfg.model.get("net", {}).get("attention") if "net" in cfg.model else None
    if not att or att.get("name") not in attention.entries():
        return
    entry = attention.get(att.name)
    if not entry.caps["fixed_len"] or entry.caps["tensor"] or att.get("max_len") is None:
        return
    counted = token_count(cfg)
    if counted is not None and counted[0] > att.max_len:
        n, how = counted
        raise ConfigError(f"model.net.attention.max_len={att.max_len} is smaller than the {n} tokens of this run "
                          f"({how}): set model.net.attention.max_len={n} (or more)")


def drop_disabled_progress_bar(cfg: DictConfig, interactive: bool) -> list[str]:
    """With ``trainer.enable_progress_bar=false``, or when stdout is not a terminal (logs, SLURM), remove the
    progress-bar callbacks and switch the bar off (Lightning refuses a bar callback with the bar disabled, and a
    Rich bar in a log file prints one line per metric). Returns the removed callback names."""
    from omegaconf import open_dict

    if cfg.trainer.get("enable_progress_bar", True) and interactive:
        return []
    cbs = cfg.get("callbacks") or {}
    gone = [k for k, v in cbs.items() if v is not None and v.get("_target_") in PROGRESS_BARS]
    with open_dict(cfg):
        for k in gone:
            del cfg.callbacks[k]
        cfg.trainer.enable_progress_bar = False
    return gone


def validate(cfg: DictConfig) -> None:
    """Range and cross-group checks; raise ConfigError naming the key before anything is built."""
    known = [f.name for f in fields(TrainConfig)]
    unknown = [k for k in cfg if k not in known]
    if unknown:
        raise ConfigError(f"unknown top-level key {unknown[0]!r} (from +{unknown[0]}=... or an experiment file); "
                          f"allowed: {', '.join(known)}")
    for group in ("data", "model", "trainer"):
        if cfg.get(group) is None:
            raise ConfigError(f"config group {group!r} is missing")
    _need(cfg.seed is None or (isinstance(cfg.seed, int) and 0 <= cfg.seed <= 2**32 - 1), "seed", cfg.seed,
          "must be an int in [0, 2**32 - 1], or null for an unseeded run")
    wants = TASK_DATA.get(cfg.model.get("_target_"), ())
    if wants and cfg.data.get("_target_") not in wants:  # before resolving: cross-task interpolations fail
        raise ConfigError(f"model {cfg.model._target_} cannot train on data {cfg.data._target_}; it takes "
                          f"{', '.join(wants)} (forecasting: model=hot|full|informer with data=ett|weather|...; "
                          "3D classification: model=hot3d|vit3d|resnet3d with data=medmnist3d|nifti; GLUE: "
                          "model=bert|smyrf_bert with data=glue|imdb; LRA: model=lra_encoder with data=lra)")
    for group in ("data", "model", "trainer"):
        node = cfg.get(group)
        target = node.get("_target_")
        schema = SCHEMAS.get(target)
        if schema is None:
            raise ConfigError(f"{group}._target_={target!r} has no schema; known: {', '.join(SCHEMAS)}")
        check_schema(group, schema, resolved(node))  # resolved against the whole cfg
    _choice("test_ckpt", cfg.test_ckpt, ["best", "last"])
    _choice("dropout_rng", cfg.dropout_rng, list(DROPOUT_RNGS))
    path_keys = [f.name for f in fields(PathsConfig)]
    for k in cfg.paths:
        _choice("paths key", k, path_keys)
    check_entries("callbacks", OmegaConf.to_container(cfg.callbacks, resolve=True) if cfg.get("callbacks") else None,
                  CALLBACK_SCHEMAS)
    check_entries("logger", OmegaConf.to_container(cfg.logger, resolve=True) if cfg.get("logger") else None,
                  LOGGER_SCHEMAS)
    _check_fixed_len(cfg)
    forecasting = "seq_len" in cfg.data and "seq_len" in cfg.model.net
    if forecasting and (cfg.model.net.seq_len != cfg.data.seq_len or cfg.model.net.pred_len != cfg.data.pred_len):
        raise ConfigError(f"model.net.seq_len/pred_len ({cfg.model.net.seq_len}/{cfg.model.net.pred_len}) must "
                          f"equal data.seq_len/pred_len ({cfg.data.seq_len}/{cfg.data.pred_len})")
    if forecasting and "label_len" in cfg.model.net and cfg.model.net.label_len != cfg.data.label_len:
        raise ConfigError(f"model.net.label_len={cfg.model.net.label_len} must equal data.label_len="
                          f"{cfg.data.label_len}")
    lm_net = cfg.model.get("net") or {}
    if "block_len" in cfg.data and "max_len" in lm_net and lm_net.max_len < cfg.data.block_len:
        raise ConfigError(f"model.net.max_len={cfg.model.net.max_len} is shorter than data.block_len="
                          f"{cfg.data.block_len}: set model.net.max_len={cfg.data.block_len} (or more)")
