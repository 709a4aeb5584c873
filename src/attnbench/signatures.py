"""Constructor signatures read from the source with ``ast`` (no torch import): the parameters of an in-house
``_target_`` or attention entry, their defaults and their annotations. ``config`` takes the schemas' defaults and
types from here, so the yaml, the schema and the code state each default and each type once (the code)."""

from __future__ import annotations

import ast
import copy
import functools
from pathlib import Path
from typing import Any

from attnbench import attention_spec


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
    """Replaces the module's type aliases (``Features = Literal["M", "S", "MS"]``) by what they stand for."""

    def __init__(self, aliases: dict[str, ast.expr]) -> None:
        self.aliases = aliases

    def visit_Name(self, node: ast.Name) -> ast.expr:
        return self.visit(self.aliases[node.id]) if node.id in self.aliases else node


def _annotations(fn: ast.FunctionDef, aliases: dict[str, ast.expr]) -> dict[str, str | None]:
    a = fn.args
    out: dict[str, str | None] = {}
    for p in a.posonlyargs + a.args + a.kwonlyargs:
        if p.arg != "self":
            ann = p.annotation
            if isinstance(ann, ast.Constant) and isinstance(ann.value, str):  # a quoted annotation
                ann = ast.parse(ann.value, mode="eval").body
            out[p.arg] = None if ann is None else ast.unparse(_Aliases(aliases).visit(copy.deepcopy(ann)))
    return out


@functools.cache
def _module(path: Path) -> tuple[dict[str, ast.ClassDef | ast.FunctionDef], dict[str, ast.expr]]:
    """A module's top-level classes and functions, and its type aliases (``Name = Literal[...]``)."""
    body = ast.parse(path.read_text()).body
    defs = {n.name: n for n in body if isinstance(n, ast.ClassDef | ast.FunctionDef)}
    aliases = {n.targets[0].id: n.value for n in body if isinstance(n, ast.Assign) and len(n.targets) == 1
               and isinstance(n.targets[0], ast.Name) and isinstance(n.value, ast.Subscript | ast.BinOp)}
    return defs, aliases


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
    defs, aliases = _module(path)
    fn = _init_of(defs, name, str(path))
    return _annotations(fn, aliases) if isinstance(fn, ast.FunctionDef) else {}


def attention_params(name: str) -> dict[str, Any]:
    """The constructor parameters of attention registry entry ``name`` with their defaults (as
    ``constructor_params``); the entry's class is the one decorated ``@register(name)``."""
    attention_spec.get(name)  # an unknown name raises, listing the entries
    defs: dict[str, ast.ClassDef | ast.FunctionDef] = {}
    registered: dict[str, str] = {}
    for path in sorted((_SRC / "attention").glob("*.py")):
        for cls, node in _defs(path).items():
            defs[cls] = node
            for d in getattr(node, "decorator_list", []):
                if isinstance(d, ast.Call) and getattr(d.func, "id", None) == "register":
                    registered[ast.literal_eval(d.args[0])] = cls
    return _params_of(defs, registered[name], "attnbench.attention")
