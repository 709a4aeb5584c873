"""Constructor signatures read from the source with ``ast`` (no torch import): the parameters of an in-house
``_target_`` or attention entry, their defaults and their annotations. ``config`` takes the schemas' defaults and
types from here, so the yaml, the schema and the code state each default and each type once (the code)."""

from __future__ import annotations

import ast
import copy
import functools
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any


class _Required:
    """Marks a constructor parameter without a default (see ``constructor_params``)."""

    def __repr__(self) -> str:
        return "<required>"


REQUIRED = _Required()
_SRC = Path(__file__).resolve().parent  # src/attnbench


def _literal(node: ast.expr) -> Any:
    try:
        return ast.literal_eval(node)
    except ValueError:
        return ast.unparse(node)  # not a literal (a name, a call): its source text, which equals no yaml value


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
    """Replaces type aliases (``Features = Literal["M", "S", "MS"]``, in the module or imported from an in-house
    one) by what they stand for."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def visit_Name(self, node: ast.Name) -> ast.expr:
        alias = _alias(self.path, node.id)
        return node if alias is None else _Aliases(alias[0]).visit(copy.deepcopy(alias[1]))


def _alias(path: Path, name: str) -> tuple[Path, ast.expr] | None:
    """Where ``name`` is a type alias of module ``path`` (or imported there from an in-house module): the module
    that defines it and its value."""
    _, aliases, imported = _module(path)
    if name in aliases:
        return path, aliases[name]
    if name in imported:
        source = _SRC.joinpath(*imported[name].split(".")[1:]).with_suffix(".py")
        return _alias(source, name) if source.is_file() else None
    return None


def _annotations(fn: ast.FunctionDef, path: Path) -> dict[str, str | None]:
    a = fn.args
    out: dict[str, str | None] = {}
    for p in a.posonlyargs + a.args + a.kwonlyargs:
        if p.arg != "self":
            ann = p.annotation
            if isinstance(ann, ast.Constant) and isinstance(ann.value, str):  # a quoted annotation
                ann = ast.parse(ann.value, mode="eval").body
            out[p.arg] = None if ann is None else ast.unparse(_Aliases(path).visit(copy.deepcopy(ann)))
    return out


@functools.cache
def _module(path: Path) -> tuple[dict[str, ast.ClassDef | ast.FunctionDef], dict[str, ast.expr], dict[str, str]]:
    """A module's top-level classes and functions, its type aliases (``Name = Literal[...]``) and the names it
    imports from in-house modules (name -> module)."""
    body = ast.parse(path.read_text()).body
    defs = {n.name: n for n in body if isinstance(n, ast.ClassDef | ast.FunctionDef)}
    aliases = {n.targets[0].id: n.value for n in body if isinstance(n, ast.Assign) and len(n.targets) == 1
               and isinstance(n.targets[0], ast.Name) and isinstance(n.value, ast.Subscript | ast.BinOp)}
    imported = {a.asname or a.name: n.module for n in body if isinstance(n, ast.ImportFrom) and n.module
                and n.module.startswith("attnbench.") for a in n.names}
    return defs, aliases, imported


def _defs(path: Path) -> dict[str, ast.ClassDef | ast.FunctionDef]:
    return _module(path)[0]


def _init_of(defs: dict[str, ast.ClassDef | ast.FunctionDef], name: str, where: str) -> ast.FunctionDef | str | None:
    """The function that takes ``name``'s parameters: itself, its ``__init__`` or the first base's defined alongside;
    ``"**"`` for a library base's ``__init__`` (not read here), None for no parameters."""
    node = defs.get(name)
    if node is None:
        raise ValueError(f"{name!r} is not defined in {where}")
    if isinstance(node, ast.FunctionDef):
        return node
    for s in node.body:
        if isinstance(s, ast.FunctionDef) and s.name == "__init__":
            return s
    for b in node.bases:  # no __init__ of its own: the first base defined alongside that has one
        base = getattr(b, "id", None)
        if base in defs:
            return _init_of(defs, base, where)
    if any(getattr(b, "id", None) != "object" for b in node.bases):
        return "**"  # a library base's __init__: not read here, any keyword may be one of its
    return None


def _params_of(defs: dict[str, ast.ClassDef | ast.FunctionDef], name: str, where: str) -> dict[str, Any]:
    fn = _init_of(defs, name, where)
    if fn == "**":
        return {"**": REQUIRED}
    return {} if fn is None else _signature(fn)


def _target_path(target: str) -> tuple[Path, str]:
    module, _, name = target.rpartition(".")
    if not module.startswith("attnbench."):
        raise ValueError(f"{target!r} is not an attnbench target")
    return _SRC.joinpath(*module.split(".")[1:]).with_suffix(".py"), name


def constructor_params(target: str) -> dict[str, Any]:
    """The parameters of an in-house ``_target_`` (``attnbench.x.y.Name``) with their defaults, read from the
    source with ``ast`` (no torch import); ``REQUIRED`` where there is none, key ``"**"`` for ``**kwargs``."""
    path, name = _target_path(target)
    return _params_of(_defs(path), name, str(path))


def constructor_types(target: str) -> dict[str, str | None]:
    """The annotations of ``target``'s constructor parameters as source text, the module's type aliases spelt out
    (``features: Features`` gives ``"Literal['M', 'S', 'MS']"``); None where a parameter has none, and no entry for a
    library base's ``__init__``. ``config`` maps them to the schema's field types."""
    path, name = _target_path(target)
    fn = _init_of(_defs(path), name, str(path))
    return _annotations(fn, path) if isinstance(fn, ast.FunctionDef) else {}


@functools.cache
def _registered() -> tuple[dict[str, ast.ClassDef | ast.FunctionDef], dict[str, tuple[str, Path]]]:
    """The classes of the attention package, and each entry's class (the one decorated ``@register(name)``) with
    its file."""
    defs: dict[str, ast.ClassDef | ast.FunctionDef] = {}
    registered: dict[str, tuple[str, Path]] = {}
    for path in sorted((_SRC / "attention").glob("*.py")):
        for cls, node in _defs(path).items():
            defs[cls] = node
            for d in getattr(node, "decorator_list", []):
                if isinstance(d, ast.Call) and getattr(d.func, "id", None) == "register":
                    registered[ast.literal_eval(d.args[0])] = (cls, path)
    return defs, registered


def _entry_class(name: str) -> tuple[str, Path]:
    """The class of attention entry ``name`` and its file; an unknown name raises as the registry does."""
    registered = _registered()[1]
    if name not in registered:
        from attnbench import attention_spec  # here: attention_spec reads its entries' parameters from this module

        attention_spec.get(name)  # raises KeyError, listing the entries and the closest name
    return registered[name]


def attention_params(name: str) -> dict[str, Any]:
    """The constructor parameters of attention registry entry ``name`` with their defaults (as
    ``constructor_params``); the entry's class is the one decorated ``@register(name)``."""
    cls, _ = _entry_class(name)
    defs, _ = _registered()
    return _params_of(defs, cls, "attnbench.attention")


def attention_types(name: str) -> dict[str, str | None]:
    """The annotations of attention entry ``name``'s constructor parameters (as ``constructor_types``)."""
    cls, path = _entry_class(name)
    defs, _ = _registered()
    fn = _init_of(defs, cls, "attnbench.attention")
    return _annotations(fn, path) if isinstance(fn, ast.FunctionDef) else {}


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
