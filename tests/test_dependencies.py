"""Dependencies run downhill: entry points -> lit -> models | data -> layers -> attention -> foundation.

Every ``import`` in src/attnbench (module level and inside functions) is read with ast; a module may import its
own layer or a lower one, and ``data`` and ``models`` (side by side) never import each other.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "attnbench"

# (rank, module prefixes), the longest prefix decides; higher ranks may import lower ones
LAYERS: dict[str, tuple[int, tuple[str, ...]]] = {
    "entry": (6, ("attnbench.__main__", "attnbench.cli", "attnbench.train", "attnbench.sweep", "attnbench.bench",
                  "attnbench.analysis")),
    "lit": (5, ("attnbench.lit", "attnbench.callbacks")),
    "models": (4, ("attnbench.models",)),
    "data": (4, ("attnbench.data",)),
    "layers": (3, ("attnbench.layers",)),
    "attention": (2, ("attnbench.attention",)),
    # facts and checks every layer may use: config schemas, the registry's declarations, checkpoint format,
    # the data catalogues (names, sizes, files), where pretrained checkpoints come from
    "foundation": (1, ("attnbench", "attnbench.config", "attnbench.attention_spec", "attnbench.checkpoint",
                       "attnbench.data.catalog", "attnbench.pretrained", "attnbench.signatures",
                       "attnbench.names")),
}
# known exceptions, each with its reason (to remove, not to extend)
ALLOWED = {
}
SIBLINGS = {frozenset({"models", "data"})}  # the same rank, and still independent


def layer(module: str) -> str:
    best, n = None, -1
    for name, (_, prefixes) in LAYERS.items():
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > n:
                best, n = name, len(p)
    assert best is not None, f"{module} is in no layer"
    return best


def module_name(path: Path, src: Path) -> str:
    parts = path.relative_to(src.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, src: Path) -> list[tuple[int, str]]:
    """(line, absolute module) of every attnbench import in a file (relative imports resolved)."""
    mod = module_name(path, src)
    package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            # `from attnbench.data import catalog`: the submodule is what is imported
            subs = [f"{base}.{a.name}" for a in node.names]
            out += [(node.lineno, s if (src.parent / s.replace(".", "/")).with_suffix(".py").is_file()
                     or (src.parent / s.replace(".", "/")).is_dir() else base) for s in subs]
    return [(n, m) for n, m in out if m == "attnbench" or m.startswith("attnbench.")]


def uphill(path: Path, src: Path = SRC) -> list[str]:
    """``file:line: module (layer) imports module (layer)`` for each import of ``path`` that goes uphill."""
    mod = module_name(path, src)
    mine = layer(mod)
    bad = []
    for line, target in imports(path, src):
        theirs = layer(target)
        if (mod, target) in ALLOWED:
            continue
        if LAYERS[theirs][0] > LAYERS[mine][0] or (theirs != mine and frozenset({mine, theirs}) in SIBLINGS):
            bad.append(f"{path.relative_to(src.parent)}:{line}: {mod} ({mine}) imports {target} ({theirs})")
    return bad


def test_no_module_imports_uphill():
    bad = [b for p in sorted(SRC.rglob("*.py")) for b in uphill(p)]
    assert not bad, "uphill imports:\n" + "\n".join(bad)


@pytest.mark.parametrize(("source", "needle"), [
    ("from attnbench.models.hf_text import load_tokenizer\n", "(data) imports attnbench.models.hf_text (models)"),
    ("def f():\n    from attnbench.lit.base import plain\n", "(data) imports attnbench.lit.base (lit)"),
    ("from ..models import hf_swap\n", "(data) imports attnbench.models.hf_swap (models)"),
])
def test_an_uphill_import_is_reported(tmp_path, source, needle):
    """The walker sees module-level, function-level and relative imports (a fake data module under a copy)."""
    fake = tmp_path / "attnbench" / "data"
    fake.mkdir(parents=True)
    (tmp_path / "attnbench" / "models").mkdir()
    (tmp_path / "attnbench" / "models" / "hf_swap.py").write_text("")
    (tmp_path / "attnbench" / "models" / "hf_text.py").write_text("")
    (tmp_path / "attnbench" / "lit").mkdir()
    (tmp_path / "attnbench" / "lit" / "base.py").write_text("")
    (fake / "thing.py").write_text(source)
    (msg,) = uphill(fake / "thing.py", tmp_path / "attnbench")
    assert needle in msg


def test_one_catalogue_per_domain():
    """Each domain's catalogue imports only the shared records (Source, TextTask), never another domain's; IMDB
    is a text task of its own, not a GLUE task."""
    from attnbench.data.catalog import GLUE, IMDB, TEXT_TASKS, GlueTask, TextTask

    shared = {"attnbench.data.catalog.source", "attnbench.data.catalog.text"}
    domains = sorted(p for p in (SRC / "data" / "catalog").glob("*.py")
                     if p.stem not in ("__init__", "source", "text"))
    assert [p.stem for p in domains] == ["cifar", "corpus", "glue", "imdb", "lra", "medmnist", "seq2seq", "timeseries"]
    for p in domains:
        assert {m for _, m in imports(p, SRC)} <= shared, p.name
    assert not isinstance(IMDB, GlueTask) and "imdb" not in GLUE
    assert set(TEXT_TASKS) == {*GLUE, "imdb"} and all(isinstance(t, TextTask) for t in TEXT_TASKS.values())
    assert (IMDB.n_labels, GLUE["stsb"].n_labels, GLUE["cola"].folder) == (2, 1, "CoLA")
