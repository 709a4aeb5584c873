"""Constructor signatures read from the source with ``ast`` (no torch import): the parameters of an in-house
``_target_`` or attention entry and their defaults. ``config`` takes the schemas' defaults from here, so the yaml,
the schema and the code state each default once (the code)."""

from __future__ import annotations

import ast
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


@functools.cache
def _defs(path: Path) -> dict[str, ast.ClassDef | ast.FunctionDef]:
    return {n.name: n for n in ast.parse(path.read_text()).body if isinstance(n, ast.ClassDef | ast.FunctionDef)}


def _params_of(defs: dict[str, ast.ClassDef | ast.FunctionDef], name: str, where: str) -> dict[str, Any]:
    node = defs.get(name)
    if node is None:
        raise ValueError(f"{name!r} is not defined in {where}")
    if isinstance(node, ast.FunctionDef):
        return _signature(node)
    for s in node.body:
        if isinstance(s, ast.FunctionDef) and s.name == "__init__":
            return _signature(s)
    for b in node.bases:  # no __init__ of its own: the first base defined alongside that has one
        base = getattr(b, "id", None)
        if base in defs:
            return _params_of(defs, base, where)
    if any(getattr(b, "id", None) != "object" for b in node.bases):
        return {"**": REQUIRED}  # a library base's __init__: not read here, any keyword may be one of its
    return {}


def constructor_params(target: str) -> dict[str, Any]:
    """The parameters of an in-house ``_target_`` (``attnbench.x.y.Name``) with their defaults, read from the
    source with ``ast`` (no torch import); ``REQUIRED`` where there is none, key ``"**"`` for ``**kwargs``."""
    module, _, name = target.rpartition(".")
    if not module.startswith("attnbench."):
        raise ValueError(f"{target!r} is not an attnbench target")
    path = _SRC.joinpath(*module.split(".")[1:]).with_suffix(".py")
    return _params_of(_defs(path), name, str(path))


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
