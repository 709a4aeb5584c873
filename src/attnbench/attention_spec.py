"""The attention registry read without importing torch: names, capabilities and constructor options.

``attnbench.attention`` imports torch (2-3 s); the config check and ``python -m attnbench list attention`` only
need what each entry declares, so this module reads it from the source with ``ast``: the ``@register("name")``
classes and their ``caps = Caps(...)`` (inherited along the base classes of the package); their ``__init__``
parameters are read by ``signatures``, the one ``ast`` reader of constructors. ``tests/test_cli.py`` checks that
it equals the live registry entry by entry.
"""

from __future__ import annotations

import ast
import difflib
import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attnbench import signatures

# Sizes the caller knows and an entry may need at build time, each with the Caps flag that declares it (a null
# option of that name in a config is filled in by the model, from its own sizes).
SIZES = {"head_dim": "needs_head_dim", "n_heads": "needs_n_heads", "max_len": "fixed_len"}

_PKG = Path(__file__).resolve().parent / "attention"


@dataclass(frozen=True)
class Entry:
    """One registry entry as declared in its source."""

    name: str
    caps: dict[str, bool | str]  # every Caps field, defaults filled in
    params: tuple[str, ...]  # constructor options (what check_kwargs accepts)
    required: tuple[str, ...]  # the options without a default
    choices: dict[str, tuple] = field(default_factory=dict)  # options annotated Literal[...]: their allowed values


@dataclass
class _Class:
    bases: list[str]
    caps: dict | None
    registered: str | None


def _caps_defaults(tree: ast.Module) -> dict[str, bool | str]:
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == "Caps":
            return {s.target.id: ast.literal_eval(s.value) for s in node.body
                    if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name) and s.value is not None}
    raise RuntimeError(f"no Caps dataclass in {_PKG / 'registry.py'}")


def _literal_choices(annotations: Mapping[str, str | None]) -> dict[str, tuple]:
    """The options annotated ``Literal[a, b, ...]`` (aliases spelt out by ``signatures``) and their values."""
    out = {}
    for name, ann in annotations.items():
        node = ast.parse(ann, mode="eval").body if ann else None
        if isinstance(node, ast.Subscript) and getattr(node.value, "id", None) == "Literal":
            values = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
            out[name] = tuple(ast.literal_eval(v) for v in values)
    return out


def _classes(tree: ast.Module) -> dict[str, _Class]:
    out = {}
    for node in tree.body:
        if not isinstance(node, ast.ClassDef):
            continue
        registered = None
        for d in node.decorator_list:
            if isinstance(d, ast.Call) and getattr(d.func, "id", None) == "register":
                registered = ast.literal_eval(d.args[0])
        caps = None
        for s in node.body:
            if (isinstance(s, ast.Assign) and any(getattr(t, "id", None) == "caps" for t in s.targets)
                    or isinstance(s, ast.AnnAssign) and getattr(s.target, "id", None) == "caps"):
                call = s.value
                if not (isinstance(call, ast.Call) and getattr(call.func, "id", None) == "Caps") or call.args:
                    raise RuntimeError(f"{node.name}.caps must be a literal Caps(key=value, ...) call")
                caps = {k.arg: ast.literal_eval(k.value) for k in call.keywords}
        out[node.name] = _Class([getattr(b, "id", getattr(b, "attr", "")) for b in node.bases], caps, registered)
    return out


@functools.cache
def _registered() -> tuple[dict[str, signatures.Def], dict[str, tuple[str, Path]]]:
    """The classes of the attention package, and each entry's class (the one decorated ``@register(name)``) with
    its file."""
    defs: dict[str, signatures.Def] = {}
    registered: dict[str, tuple[str, Path]] = {}
    for path in sorted(_PKG.glob("*.py")):
        for cls, node in signatures.module_defs(path).items():
            defs[cls] = node
            for d in getattr(node, "decorator_list", []):
                if isinstance(d, ast.Call) and getattr(d.func, "id", None) == "register":
                    registered[ast.literal_eval(d.args[0])] = (cls, path)
    return defs, registered


def _entry_class(name: str) -> tuple[str, Path]:
    """The class of attention entry ``name`` and its file; an unknown name raises as the registry does."""
    registered = _registered()[1]
    if name not in registered:
        get(name)  # raises KeyError, listing the entries and the closest name
    return registered[name]


def attention_params(name: str) -> dict[str, Any]:
    """The constructor parameters of attention registry entry ``name`` with their defaults (as
    ``signatures.constructor_params``); the entry's class is the one decorated ``@register(name)``."""
    cls, _ = _entry_class(name)
    return signatures.params_of(_registered()[0], cls, "attnbench.attention")


def attention_types(name: str) -> dict[str, str | None]:
    """The annotations of attention entry ``name``'s constructor parameters (as ``signatures.constructor_types``)."""
    cls, path = _entry_class(name)
    fn, _ = signatures.init_of(_registered()[0], cls, "attnbench.attention")
    return signatures.annotations_of(fn, f"attnbench.attention.{path.stem}") if isinstance(fn, ast.FunctionDef) \
        else {}


@functools.cache
def entries() -> dict[str, Entry]:
    """Every registered attention by name (sorted), read from ``src/attnbench/attention/*.py``."""
    defaults = _caps_defaults(signatures.parse(_PKG / "registry.py"))
    classes: dict[str, _Class] = {"AttentionBase": _Class([], {}, None)}
    for path in sorted(_PKG.glob("*.py")):
        if path.name not in ("__init__.py", "registry.py"):
            classes.update(_classes(signatures.parse(path)))

    def lookup(cls: str, attr: str):
        c = classes.get(cls)
        if c is None:
            raise RuntimeError(f"attention base class {cls!r} is not defined in {_PKG}")
        if getattr(c, attr) is not None:
            return getattr(c, attr)
        for b in c.bases:
            if b in classes:
                return lookup(b, attr)
        raise RuntimeError(f"attention class {cls!r}: no {attr} found along its bases {c.bases}")

    out = {}
    for cls, c in classes.items():
        if c.registered:
            params = {k: v for k, v in attention_params(c.registered).items() if k != "**"}
            out[c.registered] = Entry(c.registered, {**defaults, **lookup(cls, "caps")}, tuple(params),
                                      tuple(k for k, v in params.items() if v is signatures.REQUIRED),
                                      _literal_choices(attention_types(c.registered)))
    return dict(sorted(out.items()))


def available() -> list[str]:
    """Names of all registered attentions, sorted (as ``attnbench.attention.available``)."""
    return list(entries())


def get(name: str) -> Entry:
    """Entry ``name``; an unknown name lists the keys and the closest match (as the registry's ``get``)."""
    if name not in entries():
        close = difflib.get_close_matches(name, entries(), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise KeyError(f"unknown attention {name!r}; available: {', '.join(available())}.{hint}")
    return entries()[name]


def check_kwargs(name: str, kwargs: dict) -> None:
    """Raise TypeError if ``kwargs`` holds a key the constructor of ``name`` does not accept (as the registry)."""
    accepted = get(name).params
    for key in kwargs:
        if key not in accepted:
            raise TypeError(
                f"attention {name!r} got unknown option {key!r}; accepted: {', '.join(accepted) or 'none'}"
            )


# CAB's four attention patterns (Zhang et al., 2023) and the Caps flags each needs (the registry's ``patterns``).
PATTERNS = {"NS": ("self_attention",), "CS": ("self_attention", "causal"), "NC": ("cross_attention",),
            "CC": ("cross_attention", "causal_cross")}


def patterns_of(caps: Mapping[str, bool | str]) -> set[str]:
    """The CAB patterns a Caps declaration (as a dict) supports: NS, CS, NC, CC."""
    return {p for p, need in PATTERNS.items() if all(caps[c] for c in need)}


def caps_table() -> str:
    """Markdown table of every entry's capabilities and patterns (the registry's ``caps_table``, without torch)."""
    cols = list(next(iter(entries().values())).caps)
    lines = ["| entry | " + " | ".join(cols) + " | patterns |", "|---|" + "---|" * (len(cols) + 1)]
    for name, e in entries().items():
        cells = [("yes" if v else "-") if isinstance(v, bool) else str(v) for v in (e.caps[c] for c in cols)]
        cells.append(" ".join(p for p in PATTERNS if p in patterns_of(e.caps)))
        lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def drop_in_problem(name: str, allow_trainable: bool = False) -> str | None:
    """Why entry ``name`` cannot replace a pretrained dense self-attention, or None if it can: the rule of
    ``models.hf_swap.check_drop_in`` on the declarations (tests/test_cli.py checks they agree on every entry).
    ``allow_trainable``: entries with learned parameters of their own are admitted (to be fine-tuned)."""
    e = get(name)
    waived = "pretrained_drop_in" if allow_trainable and e.caps["learned_params"] else None
    for cap in ("self_attention", "key_padding_mask", "pretrained_drop_in"):
        if not e.caps[cap] and cap != waived:
            able = [n for n, x in entries().items() if x.caps[cap]]
            hint = (" (it has learned parameters of its own: fine-tune them with allow_trainable=True, config "
                    "model.net.trainable_attention=true)") if cap == "pretrained_drop_in" and e.caps["learned_params"] \
                else ""  # models.hf_swap.TRAINABLE_HINT
            return f"attention {name!r} does not support {cap}=True{hint}; entries that do: {', '.join(able)}"
    if e.caps["tensor"] or e.caps["per_axis_qk"] or e.caps["projections"] != "qkv":
        return (f"attention {name!r} needs tensor / per-axis inputs or its own projections; a pretrained encoder "
                "supplies (B, H, L, D) q, k, v from its q/k/v projections")
    return None
