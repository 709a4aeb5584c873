"""Constructor signatures read from the source with ``ast``, nothing imported: the parameters of a ``_target_``
(ours, or a library's such as ``lightning.pytorch.Trainer``), their defaults and their annotations. ``config``
takes the schemas' defaults and types from here, so the yaml, the schema and the code state each default and each
type once (the code); ``attention_spec`` reads the attention entries' constructors with it.

A library module is found without running it: ``importlib.util.find_spec`` on the top-level package's name only
(which locates it and executes nothing), then the path down. A name a package re-exports (``lightning.pytorch.
Trainer``, ``wandb.init``) is followed through its ``from ... import`` and ``name = module.attr`` lines to the
module that defines it; a class without an ``__init__`` of its own takes its first base's, in its module or in the
one it is imported from.
"""

from __future__ import annotations

import ast
import copy
import functools
import importlib.util
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Def = ast.ClassDef | ast.FunctionDef


class _Required:
    """Marks a constructor parameter without a default (see ``constructor_params``)."""

    def __repr__(self) -> str:
        return "<required>"


REQUIRED = _Required()


class Code(str):
    """A default that is code, not a literal (``theme=RichProgressBarTheme()``): its source text, which equals no
    yaml value."""


_SRC = Path(__file__).resolve().parent  # src/attnbench: the checkout's own sources, whichever copy is installed


def source_of(module: str) -> Path:
    """The file of ``module`` (``lightning.pytorch.trainer.trainer``), found without importing anything."""
    top, *rest = module.split(".")
    if top == "attnbench":
        base = _SRC
    else:
        spec = importlib.util.find_spec(top)  # a top-level name: located, not executed
        if spec is None:
            raise ModuleNotFoundError(f"{module}: package {top!r} is not installed")
        if not spec.submodule_search_locations:  # a one-file module
            if rest or spec.origin is None:
                raise ModuleNotFoundError(f"{module}: {top} is not a package")
            return Path(spec.origin)
        base = Path(next(iter(spec.submodule_search_locations)))
    path = base.joinpath(*rest)
    for candidate in (path / "__init__.py", path.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    raise ModuleNotFoundError(f"{module}: neither {path}.py nor {path}/__init__.py exists")


@functools.cache
def parse(path: Path) -> ast.Module:
    """A source file's syntax tree (each file read once)."""
    return ast.parse(path.read_text(encoding="utf-8"))


@dataclass(frozen=True)
class _Module:
    name: str
    path: Path
    defs: dict[str, Def]  # top-level classes and functions
    aliases: dict[str, ast.expr]  # type aliases: Name = Literal[...] / X | Y
    imports: dict[str, tuple[str, str | None]]  # local name -> (absolute module, name there; None: the module)
    assigned: dict[str, tuple[str, str]]  # re-exports ``name = alias.attr`` -> (alias, attr)


@functools.cache
def _module(name: str) -> _Module:
    path = source_of(name)
    body = parse(path).body
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    imports: dict[str, tuple[str, str | None]] = {}
    for n in body:
        if isinstance(n, ast.ImportFrom):
            parts = package.split(".")
            base = ".".join(parts[: len(parts) - n.level + 1] + [n.module or ""]).strip(".") if n.level \
                else n.module or ""
            imports |= {a.asname or a.name: (base, a.name) for a in n.names if a.name != "*"}
        elif isinstance(n, ast.Import):
            imports |= {a.asname: (a.name, None) if a.asname else (a.name.split(".")[0], None) for a in n.names}
    assign = [n for n in body if isinstance(n, ast.Assign) and len(n.targets) == 1 and isinstance(n.targets[0],
                                                                                                ast.Name)]
    return _Module(name, path, {n.name: n for n in body if isinstance(n, Def)},
                   {n.targets[0].id: n.value for n in assign if isinstance(n.value, ast.Subscript | ast.BinOp)},
                   imports,
                   {n.targets[0].id: (n.value.value.id, n.value.attr) for n in assign if isinstance(n.value,
                    ast.Attribute) and isinstance(n.value.value, ast.Name)})


def _module_named(m: _Module, local: str) -> str:
    """The module a name of ``m`` stands for (``from wandb import sdk as wandb_sdk``: ``wandb.sdk``)."""
    src, orig = m.imports[local]
    return src if orig is None else f"{src}.{orig}"


def find(module: str, name: str, _depth: int = 0) -> tuple[_Module, str]:
    """The module that defines ``name`` as ``module`` exports it, and its name there (re-exports followed)."""
    m = _module(module)
    if name in m.defs:
        return m, name
    if _depth < 16 and name in m.imports and m.imports[name][1] is not None:
        src, orig = m.imports[name]
        return find(src, orig, _depth + 1)  # type: ignore[arg-type]
    if _depth < 16 and name in m.assigned and m.assigned[name][0] in m.imports:
        alias, attr = m.assigned[name]
        return find(_module_named(m, alias), attr, _depth + 1)
    raise ValueError(f"{name!r} is not defined in {module} ({m.path})")


def _literal(node: ast.expr) -> Any:
    try:
        return ast.literal_eval(node)
    except ValueError:
        return Code(ast.unparse(node))


def _signature(fn: ast.FunctionDef) -> dict[str, Any]:
    a = fn.args
    pos = [p for p in a.posonlyargs + a.args if p.arg != "self"]
    defaults = [REQUIRED] * (len(pos) - len(a.defaults)) + [_literal(d) for d in a.defaults]
    out = {p.arg: d for p, d in zip(pos, defaults, strict=True)}
    out.update({p.arg: REQUIRED if d is None else _literal(d) for p, d in zip(a.kwonlyargs, a.kw_defaults,
                                                                               strict=True)})
    if a.kwarg is not None:
        out["**"] = REQUIRED  # takes any further keyword
    return out


class _Aliases(ast.NodeTransformer):
    """Replaces type aliases (``Features = Literal["M", "S", "MS"]``, in the module or imported from one of ours)
    by what they stand for."""

    def __init__(self, module: str | None) -> None:
        self.module = module

    def visit_Name(self, node: ast.Name) -> ast.expr:
        alias = _alias(self.module, node.id) if self.module else None
        return node if alias is None else _Aliases(alias[0]).visit(copy.deepcopy(alias[1]))


def _alias(module: str, name: str) -> tuple[str, ast.expr] | None:
    """Where ``name`` is a type alias of ``module`` (or imported there from one of our modules): the module that
    defines it and its value. A library's aliases are left as they are (what they name has no config type)."""
    m = _module(module)
    if name in m.aliases:
        return module, m.aliases[name]
    src, orig = m.imports.get(name, ("", None))
    if src.startswith("attnbench.") and orig is not None:
        try:
            return _alias(src, orig)
        except ModuleNotFoundError:
            return None
    return None


def annotations_of(fn: ast.FunctionDef, module: str | None) -> dict[str, str | None]:
    """The annotations of ``fn``'s parameters as source text, ``module``'s type aliases spelt out."""
    a = fn.args
    out: dict[str, str | None] = {}
    for p in a.posonlyargs + a.args + a.kwonlyargs:
        if p.arg != "self":
            ann = p.annotation
            if isinstance(ann, ast.Constant) and isinstance(ann.value, str):  # a quoted annotation
                ann = ast.parse(ann.value, mode="eval").body
            out[p.arg] = None if ann is None else ast.unparse(_Aliases(module).visit(copy.deepcopy(ann)))
    return out


def module_defs(path: Path) -> dict[str, Def]:
    """The top-level classes and functions of a source file."""
    return {n.name: n for n in parse(path).body if isinstance(n, Def)}


def init_of(defs: dict[str, Def], name: str, where: str,
            module: str | None = None) -> tuple[ast.FunctionDef | str | None, str | None]:
    """The function that takes ``name``'s parameters and the module it is in: itself, its ``__init__`` or its
    first base's (a base of ``defs``, or, given ``module``, one imported there); ``"**"`` for a base that cannot be
    read (any keyword may be one of its), None for no parameters."""
    node = defs.get(name)
    if node is None:
        raise ValueError(f"{name!r} is not defined in {where}")
    if isinstance(node, ast.FunctionDef):
        return node, module
    for s in node.body:
        if isinstance(s, ast.FunctionDef) and s.name == "__init__":
            return s, module
    bases = [getattr(b, "id", None) for b in node.bases]
    for base in bases:
        if base in defs:
            return init_of(defs, base, where, module)
    for base in bases:
        if module is not None and base in _module(module).imports:
            try:
                m, cls = find(module, base)
            except (ValueError, ModuleNotFoundError):
                continue
            return init_of(m.defs, cls, str(m.path), m.name)
    return ("**" if any(b != "object" for b in bases) else None), module


def params_of(defs: dict[str, Def], name: str, where: str, module: str | None = None) -> dict[str, Any]:
    """``name``'s parameters with their defaults: ``REQUIRED`` where there is none, key ``"**"`` for
    ``**kwargs``; a default that is code is its source text as ``Code``."""
    fn, _ = init_of(defs, name, where, module)
    if fn == "**":
        return {"**": REQUIRED}
    return _signature(fn) if isinstance(fn, ast.FunctionDef) else {}


def _located(target: str) -> tuple[_Module, str]:
    module, _, name = target.rpartition(".")
    if not module:
        raise ValueError(f"{target!r} is not a dotted path (module.Name)")
    return find(module, name)


def constructor_params(target: str) -> dict[str, Any]:
    """The parameters of ``_target_`` ``target`` (``attnbench.x.y.Name``, ``lightning.pytorch.Trainer``) with their
    defaults (``params_of``), read from its source with ``ast``: no import, no torch."""
    m, name = _located(target)
    return params_of(m.defs, name, str(m.path), m.name)


def constructor_types(target: str) -> dict[str, str | None]:
    """The annotations of ``target``'s constructor parameters as source text, our modules' type aliases spelt out
    (``features: Features`` gives ``"Literal['M', 'S', 'MS']"``); None where a parameter has none, no entry for a
    base that cannot be read. ``config`` maps them to the schema's field types."""
    m, name = _located(target)
    fn, module = init_of(m.defs, name, str(m.path), m.name)
    return annotations_of(fn, module) if isinstance(fn, ast.FunctionDef) else {}


def literal_values(fn: Callable, name: str) -> tuple:
    """The values parameter ``name`` of ``fn`` allows by its ``Literal`` annotation (through a module alias and
    ``| None``); empty where it has none."""
    ann = fn.__annotations__[name]
    if isinstance(ann, str):  # ``from __future__ import annotations``: the source text, read in fn's module
        ann = eval(ann, fn.__globals__)  # our own annotation, e.g. "Literal['mean', 'flatten']"
    args = typing.get_args(ann)
    if typing.get_origin(ann) is typing.Literal:
        return args
    return tuple(v for a in args for v in (typing.get_args(a) if typing.get_origin(a) is typing.Literal else ()))


def check_literals(fn: Callable, **values: Any) -> None:
    """Raise ValueError for a value outside its parameter's ``Literal`` annotation: a constructor's run-time check
    for a Python caller, with the values stated once, in the annotation (the config schema derives its check from
    the same annotation, see ``config.field_type``)."""
    for name, value in values.items():
        allowed = literal_values(fn, name)
        if not allowed:
            raise TypeError(f"{fn.__qualname__}: parameter {name!r} is not annotated with a Literal")
        if value not in allowed:
            shown = ", ".join("null" if a is None else str(a) for a in allowed)
            raise ValueError(f"{name}={value!r}; allowed: {shown}")
