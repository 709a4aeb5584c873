"""Yaml defaults and code defaults cannot disagree: every group option of conf/model, conf/data and
conf/callbacks is checked against the constructor it configures, and every schema's types and defaults against
its constructor's (read with ast: no torch import, fast), a library's (Lightning, W&B) read from its installed
source without importing it."""

from __future__ import annotations

import dataclasses
import re
import typing
from enum import Enum
from pathlib import Path
from typing import Any

import pytest
from omegaconf import DictConfig, ListConfig, OmegaConf

from attnbench import attention_spec, config
from attnbench.attention_spec import attention_params, attention_types
from attnbench.config import callbacks, data, logger, model, net
from attnbench.signatures import REQUIRED, constructor_params, constructor_types, source_of
from tests.conftest import ROOT

CONF = ROOT / "conf"
FILLED_BY_LAYER = {"head_dim", "n_heads"}  # attention options the layer fills in (layers.attention.LAYER_PROVIDED)
IGNORED = {"_target_", "_partial_"}


def _options(group: str) -> list[Path]:
    """The selectable options of a group (its top-level yamls)."""
    return sorted((CONF / group).glob("*.yaml"))


def _files(group: str) -> list[str]:
    """Every yaml of a group as ``group=`` would name it: the options and the shared parts they list in their
    defaults (``base/``, ``optim/``); the attention entries are checked on their own."""
    return sorted(str(p.relative_to(CONF / group).with_suffix("")) for p in (CONF / group).rglob("*.yaml")
                  if "attention" not in p.relative_to(CONF / group).parts[:-1])


def _plain(v: Any) -> Any:
    if isinstance(v, Enum):
        return v.value
    if isinstance(v, DictConfig | ListConfig):
        return OmegaConf.to_container(v)
    return v


def _owned_nodes(raw: DictConfig, root_owned: bool, prefix: str = "") -> list[str]:
    """Dotted paths of the nodes a yaml file defines (root: when it names a schema or a _target_; nested: when
    they have a _target_); the other keys it sets are deltas over an option it builds on."""
    out = [prefix.rstrip(".")] if (root_owned or "_target_" in raw) else []
    for k in raw:
        v = raw._get_node(k)
        if isinstance(v, DictConfig) and k != "defaults":
            out += _owned_nodes(v, False, f"{prefix}{k}.")
    return out


def _node(cfg: DictConfig, path: str) -> DictConfig:
    return OmegaConf.select(cfg, path) if path else cfg


def disagreements(node: DictConfig, params: dict[str, Any], where: str, ignored: set[str] = IGNORED) -> list[str]:
    """Keys of ``node`` (unresolved) that the constructor does not take, that differ from its default, or
    that it requires and the node leaves out."""
    bad = []
    for k in node:
        if k in ignored:
            continue
        if k not in params and "**" not in params:
            bad.append(f"{where}.{k}: not a parameter of the constructor ({', '.join(params)})")
            continue
        default = params.get(k, REQUIRED)
        if default is REQUIRED or OmegaConf.is_interpolation(node, k):
            continue  # set by the yaml (as the constructor requires), or tied to another key
        if OmegaConf.is_missing(node, k):
            bad.append(f"{where}.{k}: ??? in the yaml but the constructor defaults it to {default!r}")
            continue
        value = node[k]
        if isinstance(value, DictConfig) and default is None:
            continue  # an object or spec to build (a scheduler, an attention): a code default can only say none
        if _plain(value) != default:
            bad.append(f"{where}.{k}: yaml {_plain(value)!r} != code default {default!r}")
    missing = [k for k, d in params.items() if d is REQUIRED and k != "**" and k not in set(node)
               and k not in FILLED_BY_LAYER and not node.get("_partial_")]  # a partial's caller passes the rest
    bad += [f"{where}.{k}: the constructor requires it and the yaml does not set it" for k in missing]
    return bad


def _option_cases() -> list[tuple[str, str]]:
    return [(g, f) for g in ("model", "data", "callbacks") for f in _files(g)] + [
        ("model/attention", p.stem) for p in _options("model/attention")]


@pytest.mark.parametrize(("group", "option"), _option_cases())
def test_yaml_values_equal_constructor_defaults(compose_cfg, group, option):
    """For the nodes an option defines: keys with a code default hold it; keys without one are set."""
    raw = OmegaConf.load(CONF / group / f"{option}.yaml")
    defaults = raw.get("defaults", [])
    names_schema = any(isinstance(d, str) and d.split("@")[0].endswith("_schema") for d in defaults)
    if group == "model/attention":
        cfg = compose_cfg(["model=hot", f"model/attention={option}"])
        node = cfg.model.net.attention
        params = attention_params(node.name)
        bad = disagreements(node, params, f"{group}/{option}", IGNORED | {"name"})
        # an attention option sets no key the layer fills in
        bad += [f"{group}/{option}.{k}: filled in by the layer" for k in FILLED_BY_LAYER if k in node]
    else:
        cfg = compose_cfg([f"{group}={option}"] + (["data.n_classes=2"] if option == "nifti" else []))
        bad = []
        for path in _owned_nodes(raw, names_schema):
            node = _node(cfg[group], path)
            if not str(node._target_).startswith("attnbench."):
                continue  # a library's class (optimizer, scheduler): its defaults are not ours to match
            where = f"{group}/{option}:{group}{'.' + path if path else ''}"
            bad += disagreements(node, constructor_params(node._target_), where)
    assert not bad, "\n".join(bad)


def test_every_option_defines_or_builds_on_another():
    """An option either defines its nodes (names a schema) or lists the option it is a delta of."""
    for group in ("model", "data"):
        for p in _options(group):
            defaults = OmegaConf.load(p).get("defaults", [])
            assert defaults, f"{p} has no defaults list (a schema or the option it builds on)"


def _schemas() -> list[type]:
    """The schema dataclasses of in-house targets: the registries' (group roots, ``model.net`` nodes, callbacks)
    and the sub-schemas their fields declare; every such schema in ``config`` is among them."""
    maps = (config.SCHEMAS, config.NET_SCHEMAS, config.FORECAST_NET_SCHEMAS, config.LM_NET_SCHEMAS,
            config.CALLBACK_SCHEMAS, config.LOGGER_SCHEMAS)
    todo = [s for m in maps for s in m.values()]
    seen: list[type] = []
    while todo:
        s = todo.pop()
        if s not in seen:
            seen.append(s)
            todo += [f.type for f in dataclasses.fields(s) if dataclasses.is_dataclass(f.type)]
    out = [s for s in seen if str(getattr(s, "_target_", "")).startswith("attnbench.")]
    in_config = {c for m in (data, model, net, callbacks, logger) for c in vars(m).values()
                 if dataclasses.is_dataclass(c) and isinstance(c, type)
                 and str(getattr(c, "_target_", "")).startswith("attnbench.")}
    assert in_config <= set(out), f"schemas no registry reaches: {in_config - set(out)}"
    return sorted(out, key=lambda c: c.__name__)


def type_disagreements(schema_cls: type) -> list[str]:
    """Fields mirroring a constructor parameter whose type (or allowed values) differ from the code's annotation
    (``config.field_type``); a field whose code type has no structured-config form (``nn.Module``, ``Callable``)
    states its own."""
    target = schema_cls._target_
    types = constructor_types(target)
    hints = typing.get_type_hints(schema_cls)
    choices = getattr(schema_cls, "__choices__", {})
    bad = []
    for f in dataclasses.fields(schema_cls):
        if f.name in IGNORED or f.name not in types:
            continue
        if types[f.name] is None:
            bad.append(f"{target}: parameter {f.name!r} has no annotation")
            continue
        try:
            want, values = config.field_type(types[f.name])
        except TypeError:
            continue
        if hints[f.name] != want:
            bad.append(f"{schema_cls.__name__}.{f.name}: schema {hints[f.name]} != code {types[f.name]} ({want})")
        if choices.get(f.name) != values:
            bad.append(f"{schema_cls.__name__}.{f.name}: allowed {choices.get(f.name)} != code {values}")
    return bad


@pytest.mark.parametrize("schema_cls", _schemas(), ids=lambda c: c.__name__)
def test_schema_types_equal_constructor_types(schema_cls):
    """Each schema field that mirrors a constructor parameter has the parameter's type (and a Literal's values)."""
    bad = type_disagreements(schema_cls)
    assert not bad, "\n".join(bad)


def test_type_drift_is_reported():
    @config.from_code
    class Drifted:
        _target_: str = "attnbench.models.forecaster.PatchForecaster"
        d_model: float = config.FROM_CODE  # the code says int
        head: str = config.FROM_CODE  # the code's Literal values are not checked
        patch_len: Any = config.FROM_CODE

    assert type_disagreements(Drifted) == [
        "Drifted.d_model: schema <class 'float'> != code int (<class 'int'>)",
        "Drifted.head: allowed None != code ('mean', 'flatten')"]


@pytest.mark.parametrize(("annotation", "expected"), [
    ("int", (int, None)), ("float | None", (float | None, None)), ("int | float", (int | float, None)),
    ("Literal['a', 'b']", (str, ("a", "b"))), ("Literal['a'] | None", (str | None, ("a", None))),
    ("Sequence[int] | None", (list[int] | None, None)), ("tuple[float, ...]", (list[float], None)),
    ("Mapping[str, Any]", (dict[str, Any], None)), ("int | Sequence[int]", (Any, None)),
    # a library's spelling (Lightning)
    ("Optional[int]", (int | None, None)), ("Optional[Union[int, float]]", (int | float | None, None)),
    ("Optional[Literal['step', 'epoch']]", (str | None, ("step", "epoch", None))),
    ("Union[list[int], str, int]", (Any, None)),
])
def test_field_type_maps_annotations(annotation, expected):
    assert config.field_type(annotation) == expected


@pytest.mark.parametrize("annotation", ["nn.Module", "Callable[..., torch.optim.Optimizer]", "Callable | None",
                                        "Union[str, Accelerator]"])
def test_field_type_refuses_what_omegaconf_cannot_hold(annotation):
    with pytest.raises(TypeError, match="has no structured-config type|is not a scalar type"):
        config.field_type(annotation)


@pytest.mark.parametrize("schema_cls", _schemas(), ids=lambda c: c.__name__)
def test_schema_defaults_equal_constructor_defaults(schema_cls):
    """The structured-config schemas' defaults (what a key the yaml leaves out gets) equal the code's."""
    schema = OmegaConf.structured(schema_cls)
    target = schema._target_
    params = constructor_params(target)
    keys = {k for k in schema if k not in IGNORED}
    if "**" not in params:  # the same keys: an unknown key fails while composing exactly when the code refuses it
        assert keys == set(params), f"{target}: schema-only {keys - set(params)}, code-only {set(params) - keys}"
    bad = []
    for k in schema:
        if k in IGNORED or OmegaConf.is_missing(schema, k) or k not in params:
            continue
        v = schema[k]
        if isinstance(v, DictConfig) and ("_target_" in v or k == "net"):
            continue
        if params[k] is REQUIRED:  # no default of the schema's own: the yaml states it (a required value stays ???)
            bad.append(f"{target}.{k}: schema default {_plain(v)!r} but the constructor requires it")
        elif _plain(v) != params[k]:
            bad.append(f"{target}.{k}: schema {_plain(v)!r} != code default {params[k]!r}")
    assert not bad, "\n".join(bad)


def test_disagreement_is_reported_with_key_and_both_values():
    node = OmegaConf.create({"_target_": "x", "head": "flatten", "d_model": 128, "bogus": 1})
    bad = disagreements(node, {"head": "mean", "d_model": 128, "seq_len": REQUIRED}, "model/hot:model.net")
    assert bad == ["model/hot:model.net.head: yaml 'flatten' != code default 'mean'",
                   "model/hot:model.net.bogus: not a parameter of the constructor (head, d_model, seq_len)",
                   "model/hot:model.net.seq_len: the constructor requires it and the yaml does not set it"]


@pytest.mark.parametrize(("expr", "needle"), [
    ("${ts_targets:ETTh3,M}", "data.name='ETTh3' is invalid (did you mean 'ETTh2'?); allowed: ETTh1, ETTh2"),
    ("${medmnist_classes:organmnist}", "data.name='organmnist' is invalid (did you mean 'organmnist3d'?); allowed: "),
    ("${glue_labels:sst}", "data.task='sst' is invalid (did you mean 'sst2'?); allowed: cola, sst2"),
])
def test_resolvers_refuse_unknown_names(expr, needle):
    """No resolver falls back to a made-up value: an unknown name fails, listing the known ones."""
    config.register_configs()
    with pytest.raises(Exception, match=re.escape(needle)):
        _ = OmegaConf.create({"x": expr}).x


def test_resolvers_answer_known_names():
    config.register_configs()
    node = OmegaConf.create({"a": "${ts_targets:weather,M}", "b": "${ts_targets:weather,S}",
                             "c": "${medmnist_classes:organmnist3d}", "d": "${glue_labels:stsb}"})
    assert (node.a, node.b, node.c, node.d) == (21, 1, 11, 1)


@pytest.mark.parametrize("overrides", [["model=hot3d", "data=medmnist3d", "data.name=organ"],
                                       ["model=bert", "data=glue", "data.task=sst"]])
def test_unknown_names_fail_validation_naming_the_key(compose_cfg, overrides):
    with pytest.raises(config.ConfigError, match="allowed: "):
        config.validate(compose_cfg(overrides))


def test_shared_parts_are_stated_once():
    """A time-series option states only what differs from conf/data/base/timeseries.yaml, and the models that
    share an optimizer and schedule list conf/model/optim/<name>.yaml instead of a copy."""
    series = [p for p in _options("data") if "base/timeseries@_here_" in OmegaConf.load(p).get("defaults", [])]
    assert len(series) == 7
    for p in series:
        keys = {k for k in OmegaConf.load(p) if k != "defaults"}
        assert keys <= {"name", "seq_len", "label_len", "pred_len"}, f"{p.name} repeats {keys - {'name'}}"
    for p in _options("model"):
        raw = OmegaConf.load(p)
        if any(str(d).startswith("optim/") and str(d).endswith("@_here_") for d in raw.get("defaults", [])):
            assert not {"optimizer", "scheduler", "scheduler_interval"} & set(raw), p.name
        else:  # builds on another option, or has its own schedule (bert: linear warm-up)
            assert p.stem in {"bert", "bert_mlm", "full", "vit3d"} or p.stem.startswith("smyrf_bert") \
                or {"bert", "bert_mlm"} & {str(d) for d in raw.get("defaults", [])}, p.name


def test_schema_defaults_are_read_from_the_code():
    """A schema's fields are its constructor's parameters in their order, with their defaults; a parameter the
    constructor requires stays ???; a field stated FROM_CODE that the constructor lacks fails at import."""
    net = OmegaConf.structured(config.ForecasterNetConfig)
    assert (net.head, net.d_model, net.patch_len) == ("flatten", 128, 4)
    assert list(net) == ["_target_", *constructor_params(config.ForecasterNetConfig._target_)]
    assert OmegaConf.is_missing(net, "seq_len")

    @config.from_code
    class Probe:
        _target_: str = "attnbench.models.classifier3d.resnet3d"
        conv1_kernel: float = config.FROM_CODE  # a narrower type of its own, the code's default
        widen_factor: float = 2.0  # a value of its own stays

    p = OmegaConf.structured(Probe)
    assert OmegaConf.is_missing(p, "depth") and (p.conv1_kernel, p.widen_factor, p.conv1_stride) == (7, 2.0, 2)
    assert typing.get_type_hints(Probe)["conv1_kernel"] is float
    with pytest.raises(TypeError, match="resnet3d has no parameter 'kernel'"):
        @config.from_code
        class Bad:
            _target_: str = "attnbench.models.classifier3d.resnet3d"
            kernel: int = config.FROM_CODE


def test_a_subclass_schema_takes_its_own_constructors_defaults():
    """WordPiece's datamodule shares the corpus datamodule's parameters; its schema inherits the corpus checks and
    declares no field, yet every default is its own constructor's."""
    wordpiece = OmegaConf.structured(data.WordPieceCorpusDataConfig)
    params = constructor_params(wordpiece._target_)
    assert set(wordpiece) - {"_target_"} == set(params)
    assert OmegaConf.is_missing(wordpiece, "tokenizer") and wordpiece.mlm_probability == params["mlm_probability"]
    assert not OmegaConf.is_missing(OmegaConf.structured(data.CorpusDataConfig), "tokenizer")  # byte


def test_a_library_constructor_is_found_where_it_is_defined():
    """``lightning.pytorch.Trainer`` and ``wandb.init`` are read where they are defined, their packages' re-exports
    followed (nothing is imported: tests/test_cli.py checks a fresh interpreter validates without Lightning)."""
    assert source_of("lightning.pytorch.trainer.trainer").parts[-3:] == ("pytorch", "trainer", "trainer.py")
    assert source_of("wandb").name == "__init__.py"
    assert constructor_params("lightning.pytorch.Trainer")["max_steps"] == -1  # lightning/pytorch/__init__.py
    assert constructor_types("wandb.init")["mode"].startswith("Literal[")  # wandb/__init__.py: init = wandb_sdk.init
    assert "**" in constructor_params("lightning.pytorch.loggers.WandbLogger")  # the rest goes to wandb.init
    assert constructor_params("attnbench.callbacks.ModelSummary") == {"max_depth": 1, "**": REQUIRED}  # Lightning's
    with pytest.raises(ModuleNotFoundError, match="nosuchpackage"):
        source_of("nosuchpackage.x")


def test_library_schemas_take_every_option_typed():
    """Lightning's Trainer, callbacks and loggers (W&B's logger with the ``wandb.init`` keywords it forwards) have
    a field per constructor option, typed where the annotation maps (Any where it does not: ``devices``), a Literal's
    values as the allowed ones; a default that is code (RichProgressBar's theme) and the options the groups fill
    (the Trainer's logger and callbacks) are left out."""
    trainer = typing.get_type_hints(config.TrainerConfig)
    assert (trainer["max_epochs"], trainer["limit_val_batches"], trainer["devices"]) == (int | None,
                                                                                        int | float | None, Any)
    assert {"overfit_batches", "inference_mode", "fast_dev_run"} <= set(trainer)
    assert not {"logger", "callbacks"} & set(trainer)
    assert "theme" not in typing.get_type_hints(callbacks.RichProgressBarConfig)
    assert callbacks.LearningRateMonitorConfig.__choices__["logging_interval"] == ("step", "epoch", None)
    wandb = logger.WandbLoggerConfig
    assert {"notes", "job_type", "save_dir", "log_model"} <= set(typing.get_type_hints(wandb))
    assert wandb.__choices__["mode"] == ("online", "offline", "disabled", "shared", None)


def test_literal_values_are_stated_once_in_the_code():
    """A Literal (through a module alias, or one imported from another in-house module) gives the schema its
    allowed values and the constructor its run-time check, with the same message."""
    from attnbench.models.forecaster import PatchForecaster
    from attnbench.signatures import check_literals

    types = constructor_types("attnbench.lit.lra.LRAModule")  # ClassWeights from lit.classification, Mode from base
    assert (types["class_weights"], types["monitor_mode"]) == ("Literal['none', 'inverse']", "Literal['min', 'max']")
    assert constructor_types("attnbench.data.timeseries.TimeSeriesDataModule")["features"] == "Literal['M', 'S', 'MS']"
    assert config.LRAModelConfig.__choices__["class_weights"] == ("none", "inverse")
    with pytest.raises(ValueError, match=re.escape("head='avg'; allowed: mean, flatten")):
        check_literals(PatchForecaster.__init__, head="avg")
    with pytest.raises(TypeError, match="'seq_len' is not annotated with a Literal"):
        check_literals(PatchForecaster.__init__, seq_len=3)


@pytest.mark.parametrize("name", attention_spec.available())
def test_attention_options_are_typed_from_the_code(name):
    """Every option of every attention entry has an annotation with a structured-config type, so an attention node
    (``model.net.attention``) is type-checked before anything is built; a Literal's values are its allowed ones."""
    types = attention_types(name)
    params = {k for k in attention_params(name) if k != "**"}
    assert set(types) == params
    schema = config.attention_schema(name)
    hints = typing.get_type_hints(schema)
    for k, annotation in types.items():
        assert annotation is not None, f"attention {name!r}: option {k!r} has no annotation"
        want, values = config.field_type(annotation)  # raises for a type OmegaConf cannot hold
        assert hints[k] == want, (name, k)
        assert attention_spec.get(name).choices.get(k) == values, (name, k)  # the registry reader agrees
