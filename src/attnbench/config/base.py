"""What every schema is made of: ``from_code`` (a schema's fields are its constructor's parameters, read from the
source), ``Checked`` (range checks once every value is set), and the helpers the checks share (``need``,
``choice``, ``check_schema``).

A schema names its ``_target_`` and states only what the code cannot: a narrower type, a sub-schema, a check. The
fields, their types and defaults are the constructor's (``signatures`` reads them with ``ast``: nothing is
imported, torch least of all), for our classes and for a library's (Lightning's Trainer, W&B's ``init``) alike.
"""

import ast
import difflib
import functools
import operator
from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import Any

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, InterpolationResolutionError, ValidationError

from attnbench.errors import ConfigError
from attnbench.signatures import REQUIRED, Code, constructor_params, constructor_types


class Checked:
    """Base of the schemas with range checks: ``check()`` runs once every value is set, not while the
    ConfigStore builds the defaults (which still hold ``???``)."""

    def __post_init__(self) -> None:
        if not any(getattr(self, f.name) == MISSING for f in fields(self)):
            self.check()

    def check(self) -> None:
        """Raise ConfigError naming the key, value and what is allowed (subclasses)."""


ENTRY = "<entry>"  # where a callback's or logger's check names its node: check_entries puts in its key


def need(ok: bool, key: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"{key}={value!r} is invalid: {allowed}")


def choice(key: str, value: Any, allowed: Iterable[Any]) -> None:
    """``value`` is one of ``allowed``; else the error lists them, with the closest match."""
    allowed = list(allowed)
    if value not in allowed:
        shown = ["null" if a is None else str(a) for a in allowed]
        close = difflib.get_close_matches(str(value), shown, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"{key}={value!r} is invalid{hint}; allowed: {', '.join(shown)}")


def at_least_one(prefix: str, obj: Any, *keys: str, null: bool = False) -> None:
    """Each of ``keys`` of ``obj`` is >= 1 (or null, with ``null``); ``prefix`` names the node (``data``)."""
    for k in keys:
        v = getattr(obj, k)
        need((null and v is None) or (v is not None and v >= 1), f"{prefix}.{k}", v,
             "must be >= 1 or null" if null else "must be >= 1")


def below_one(prefix: str, obj: Any, *keys: str) -> None:
    """Each of ``keys`` lies in [0, 1) (a dropout, a smoothing, a warm-up share)."""
    for k in keys:
        need(0.0 <= getattr(obj, k) < 1.0, f"{prefix}.{k}", getattr(obj, k), "must lie in [0, 1)")


class _FromCode:
    def __repr__(self) -> str:
        return "FROM_CODE"


FROM_CODE: Any = _FromCode()  # a field stated with a narrower type, its default the constructor's (``from_code``)

_SCALARS = {"int": int, "float": float, "str": str, "bool": bool, "Any": Any}
_SEQUENCES = {"list", "Sequence", "tuple"}
_MAPPINGS = {"dict", "Mapping"}


def _name(node: ast.expr) -> str:
    return node.attr if isinstance(node, ast.Attribute) else getattr(node, "id", "")  # typing.Sequence: Sequence


def _union(node: ast.expr) -> list[ast.expr]:
    """The members of ``a | b``, ``Union[a, b]`` and ``Optional[a]`` (``None`` among them), flattened."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _union(node.left) + _union(node.right)
    if isinstance(node, ast.Subscript) and _name(node.value) in ("Union", "Optional"):
        items = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        none = [ast.Constant(None)] if _name(node.value) == "Optional" else []
        return [m for i in items for m in _union(i)] + none
    return [node]


def field_type(annotation: str) -> tuple[Any, tuple | None]:
    """The structured-config type of a constructor annotation (source text, see ``signatures.constructor_types``)
    and, for a ``Literal``, its allowed values: int, float, str, bool, Any; ``X | None`` (``Optional[X]``); a union
    of scalars (``Union[int, float]``); ``Sequence[X]`` / ``list[X]`` / ``tuple[X, ...]`` -> ``list[X]``;
    ``Mapping[str, X]`` / ``dict`` -> ``dict[str, X]``; ``Literal["a", "b"]`` -> str with allowed values ("a",
    "b"); another union (``int | Sequence[int]``) -> Any. Raises TypeError for what OmegaConf cannot hold
    (``nn.Module``, ``Callable``)."""

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
                return list[scalar(items[0])], None
            elif base in _MAPPINGS and len(items) == 2 and _name(items[0]) == "str":
                return dict[str, scalar(items[1])], None
        raise TypeError(f"{ast.unparse(node)!r} has no structured-config type")

    members = _union(ast.parse(annotation, mode="eval").body)
    optional = any(isinstance(m, ast.Constant) and m.value is None for m in members)
    members = [m for m in members if not (isinstance(m, ast.Constant) and m.value is None)]
    if len(members) == 1:
        t, values = one(members[0])
        return (t | None if optional and t is not Any else t), (values + (None,) if optional and values else values)
    try:
        ts = list(dict.fromkeys(scalar(m) for m in members))
    except TypeError:
        if not any(isinstance(m, ast.Subscript) and _name(m.value) in _SEQUENCES | _MAPPINGS for m in members):
            raise
        return Any, None  # a scalar or a container: OmegaConf holds either only untyped (the schema's check narrows)
    return functools.reduce(operator.or_, ts + [type(None)] * optional), None


def _code(cls: type) -> tuple[dict[str, Any], dict[str, str | None]]:
    """The parameters and annotations of ``cls._target_``; with ``__forwards__`` (the function its ``**kwargs``
    go to, e.g. ``wandb.init`` for W&B's logger), that function's too, the target's own taking precedence."""
    params, types = {}, {}
    if cls.__forwards__:
        params, types = constructor_params(cls.__forwards__), constructor_types(cls.__forwards__)
    own = constructor_params(cls._target_)
    params |= {k: v for k, v in own.items() if k != "**" or not cls.__forwards__}
    return params, types | constructor_types(cls._target_)


def _typed(cls: type, name: str, annotation: str | None, library: bool) -> tuple[Any, tuple | None]:
    """A parameter's field type (``field_type``). Our own code must annotate it with a type a config can hold (or
    the schema states one); a library's annotation without one gives Any (its own checks and ours narrow)."""
    where = f"{cls.__name__}.{name}: {cls._target_}"
    if annotation is None:
        if library:
            return Any, None
        raise TypeError(f"{where} does not annotate {name!r}; annotate it there (or state the field's type in the "
                        "schema)")
    try:
        return field_type(annotation)
    except TypeError as e:
        if library:
            return Any, None
        raise TypeError(f"{where}: {e}; state the field's type in the schema") from None


def from_code(target: Any = None, *, omit: tuple[str, ...] = (), forwards: str | None = None) -> Any:
    """Class decorator making a schema dataclass of every parameter of ``target``'s constructor (``@from_code(
    "attnbench.data.glue.GlueDataModule")``; bare ``@from_code`` reads the class's ``_target_``), but ``omit``:
    each field has the parameter's default (``???`` where it has none) and the type of its annotation
    (``field_type``; a ``Literal``'s values go to ``__choices__``, checked by ``check_schema``). ``forwards``: the
    function the constructor's ``**kwargs`` go to, whose parameters are fields too.

    The class states only what the code cannot: a field with its own value (``net: Any = MISSING``, a sub-schema),
    or a narrower type with the code's default (``lr: float = FROM_CODE``). A parameter whose default is code (not
    a literal) is left out of a library's schema (a yaml cannot state it). Fields a base schema took from its own
    constructor are taken again from this one, which must have them."""

    def build(cls: type) -> type:
        if target is not None:
            cls._target_ = target
        cls.__forwards__ = forwards
        library = not cls._target_.startswith("attnbench.")
        params, types = _code(cls)
        declared = dict(cls.__dict__.get("__annotations__", {}))
        own = {"_target_": str, **declared} if "_target_" not in declared and target is not None else declared
        coded = {n: t for b in reversed(cls.__mro__[1:]) for n, t in b.__dict__.get("__from_code__", {}).items()}
        based = {f.name: f for b in reversed(cls.__mro__[1:]) for f in getattr(b, "__dataclass_fields__", {}).values()}
        stray = [n for n in [*coded, *(n for n, f in based.items() if f.default is FROM_CODE)]
                 if n not in params and n not in declared]
        if stray:
            raise TypeError(f"{cls.__name__} inherits {stray} but {cls._target_} has no such parameter")
        choices = dict(getattr(cls, "__choices__", {}))
        done = {}
        for name, default in params.items():
            if name == "**" or name in omit:
                continue
            if name in declared:  # stated here: its own value, or a narrower type with the code's default
                if cls.__dict__.get(name) is not FROM_CODE:
                    continue
                kind = declared[name]
            elif name in coded:  # a base schema's field from its constructor: taken again from this one
                kind = coded[name]
            elif name in based:  # stated by a base schema
                if based[name].default is not FROM_CODE:
                    continue
                kind = based[name].type
            else:
                kind = Any
            if isinstance(default, Code):
                if library:
                    continue
                raise TypeError(f"{cls.__name__}.{name}: the default of {cls._target_} is code ({default}); "
                                "give the constructor a literal default")
            done[name] = kind
            choices.pop(name, None)
            if kind is Any or kind == "Any":  # (a string under ``from __future__ import annotations``)
                kind, values = _typed(cls, name, types.get(name), library)
                if values is not None:
                    choices[name] = values
            own[name] = kind
            setattr(cls, name, MISSING if default is REQUIRED else default)
        stated = [n for n, v in cls.__dict__.items() if v is FROM_CODE and n not in done]
        if stated:
            raise TypeError(f"{cls.__name__}.{stated[0]} = FROM_CODE but {cls._target_} has no parameter "
                            f"{stated[0]!r}")
        cls.__annotations__ = own
        cls.__from_code__ = {**coded, **done}
        cls.__choices__ = choices
        return dataclass(cls)

    if isinstance(target, type):  # bare @from_code
        cls, target = target, None
        return build(cls)
    return build


def by_target(*schemas: type) -> dict[str, type]:
    """Schemas keyed by the ``_target_`` each declares (the one place a target's dotted path is written)."""
    return {s._target_: s for s in schemas}


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
    """The values of the fields whose constructor annotation is a ``Literal`` (``from_code``), nested schemas
    included, before any ``check()`` runs: the error names the key and lists the allowed values."""
    choices = getattr(schema, "__choices__", {})
    for f in fields(schema):
        if f.name not in node or OmegaConf.is_missing(node, f.name):
            continue
        value = node[f.name]
        if f.name in choices:
            choice(f"{key}.{f.name}", value, choices[f.name])
        if isinstance(f.type, type) and hasattr(f.type, "__dataclass_fields__") and isinstance(value, DictConfig):
            check_choices(f"{key}.{f.name}", f.type, value)


def check_entries(group: str, node: Any, schemas: dict[str, type]) -> None:
    """Each entry of ``callbacks`` / ``logger``: a mapping with a ``_target_``; known targets checked by schema
    (an unknown or mistyped key is refused naming it and the keys the constructor takes)."""
    if node is None:
        return
    if not isinstance(node, dict):
        raise ConfigError(f"{group}={node!r} is invalid: a mapping of name -> {{_target_: ..., options}}, or null")
    for name, entry in node.items():
        key = f"{group}.{name}"
        if entry is None:  # disabled (e.g. callbacks.early_stopping=null)
            continue
        if not isinstance(entry, dict) or not isinstance(entry.get("_target_"), str) or "." not in entry["_target_"]:
            raise ConfigError(f"{key} needs a _target_ (a dotted class path, e.g. {next(iter(schemas))}); got "
                              f"{entry!r}")
        schema = schemas.get(entry["_target_"])
        if schema is None:
            continue  # another class: its own constructor checks its options
        try:
            check_schema(key, schema, entry)
        except ConfigError as e:
            raise ConfigError(str(e).replace(ENTRY, key)) from None
        except (ValidationError, ConfigKeyError) as e:
            sub = getattr(e, "full_key", None)
            allowed = [f.name for f in fields(schema) if f.name != "_target_"]
            close = difflib.get_close_matches(str(sub), allowed, n=1) if sub else []
            hint = f"; did you mean {key}.{close[0]}?" if close and close[0] != sub else ""
            keys = (f" (keys of {entry['_target_'].rsplit('.', 1)[-1]}: {', '.join(allowed)})"
                    if isinstance(e, ConfigKeyError) else "")  # a wrong type: the key is right
            raise ConfigError(f"{key}{'.' + sub if sub else ''}: {str(e).splitlines()[0]}{hint}{keys}") from None


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
