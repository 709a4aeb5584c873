"""The import graph of src/attnbench runs downhill: no circle among its modules, and no module imports one of a
higher layer. Every ``import`` is read with ast: at module level and inside functions, relative ones resolved."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "attnbench"

# Bottom first. A module may import its own component (a package or module named here) or any component of a lower
# layer; components of one layer are independent of each other.
LAYERS: list[tuple[str, ...]] = [
    # the package itself and the errors every layer raises
    ("attnbench", "attnbench.errors"),
    # facts and tools without torch that every layer uses: names, the ast reader of signatures, where pretrained
    # checkpoints come from (its errors are DataErrors), the code version
    ("attnbench.names", "attnbench.signatures", "attnbench.pretrained", "attnbench.provenance"),
    # declarations read without torch: the data catalogues, the attention registry's entries (from their source)
    ("attnbench.data.catalog", "attnbench.attention_spec"),
    # the config schemas and checks: torch-free, so composing and checking answer in a second
    ("attnbench.config",),
    # torch from here on: the checkpoint format, what the CPU runs natively, the attention entries
    ("attnbench.checkpoint", "attnbench.hardware", "attnbench.attention"),
    # the blocks built of attentions
    ("attnbench.layers",),
    # datamodules and networks, side by side: the data never imports a model, nor a model the data
    ("attnbench.data", "attnbench.models"),
    # Lightning: the modules that train a network on a datamodule, and the callbacks (progress: log lines)
    ("attnbench.lit", "attnbench.callbacks", "attnbench.progress"),
    # reading finished runs into tables
    ("attnbench.analysis",),
    # W&B dashboards: a job's summary values, a sweep's summary run (torch-free)
    ("attnbench.wandb_log",),
    # what runs things: benchmarks, a training run, a sweep's hooks
    ("attnbench.bench", "attnbench.train", "attnbench.sweep"),
    # the command line
    ("attnbench.cli",),
    ("attnbench.__main__",),
]


def module_name(path: Path, src: Path = SRC) -> str:
    parts = path.relative_to(src.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(src: Path = SRC) -> dict[str, Path]:
    return {module_name(p, src): p for p in sorted(src.rglob("*.py"))}


def imports(path: Path, known: dict[str, Path], src: Path = SRC) -> list[tuple[int, str]]:
    """(line, module) of every import of one of ``known`` in ``path``: ``from pkg import name`` imports the module
    ``pkg.name`` where there is one, else ``pkg``."""
    mod = module_name(path, src)
    package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            names = [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            while name not in known and "." in name:
                name = name.rpartition(".")[0]
            if name in known and name != mod:
                out.append((node.lineno, name))
    return list(dict.fromkeys(out))


def graph(src: Path = SRC) -> dict[str, list[tuple[int, str]]]:
    known = modules(src)
    return {m: imports(p, known, src) for m, p in known.items()}


def component(module: str) -> tuple[int, str]:
    """(layer, component) of a module: the longest component that is it or holds it ("attnbench": only itself)."""
    found = [(len(c), i, c) for i, layer in enumerate(LAYERS) for c in layer
             if module == c or (c != "attnbench" and module.startswith(c + "."))]
    assert found, f"{module} is in no layer: add it to LAYERS"
    _, i, c = max(found)
    return i, c


def uphill(edges: dict[str, list[tuple[int, str]]], src: Path = SRC) -> list[str]:
    """``file:line: a (component, layer) imports b (component, layer)`` for each import not allowed by LAYERS."""
    bad = []
    for mod, targets in sorted(edges.items()):
        (mine, c), path = component(mod), modules(src)[mod]
        for line, target in targets:
            theirs, d = component(target)
            if theirs > mine or (theirs == mine and c != d):
                bad.append(f"{path.relative_to(src.parent)}:{line}: {mod} ({c}, layer {mine}) imports {target} "
                           f"({d}, layer {theirs})")
    return bad


def cycles(edges: dict[str, list[tuple[int, str]]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for _, w in edges.get(v, []):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            scc = []
            while True:
                w = stack.pop()
                scc.append(w)
                if w == v:
                    break
            if len(scc) > 1:
                out.append(sorted(scc))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def describe(scc: list[str], edges: dict[str, list[tuple[int, str]]], src: Path = SRC) -> str:
    """The imports that close a circle, as ``file:line: a imports b``."""
    where = modules(src)
    return "\n".join(f"  {where[m].relative_to(src.parent)}:{line}: {m} imports {t}" for m in scc
                     for line, t in edges[m] if t in scc)


def test_no_circles():
    edges = graph()
    found = cycles(edges)
    assert not found, "import circles:\n" + "\n".join(describe(c, edges) for c in found)


def test_no_import_runs_uphill():
    bad = uphill(graph())
    assert not bad, "uphill imports:\n" + "\n".join(bad)


def test_the_reader_sees_every_kind_of_import(tmp_path):
    """Module-level, function-level and relative imports; a circle and an uphill import are named by file:line."""
    pkg = tmp_path / "attnbench"
    for rel, text in {"__init__.py": "", "errors.py": "def f():\n    from attnbench.config import x\n",
                      "config/__init__.py": "from ..errors import ConfigError\n", "config/base.py": "",
                      "cli.py": "import attnbench.config.base\nfrom attnbench import errors\n"}.items():
        (pkg / rel).parent.mkdir(parents=True, exist_ok=True)
        (pkg / rel).write_text(text)
    edges = graph(pkg)
    assert edges["attnbench.cli"] == [(1, "attnbench.config.base"), (2, "attnbench.errors")]
    assert edges["attnbench.config"] == [(1, "attnbench.errors")]
    assert cycles(edges) == [["attnbench.config", "attnbench.errors"]]
    assert "attnbench/errors.py:2: attnbench.errors imports attnbench.config" in describe(cycles(edges)[0], edges, pkg)
    assert uphill(edges, pkg) == ["attnbench/errors.py:2: attnbench.errors (attnbench.errors, layer 0) imports "
                                  "attnbench.config (attnbench.config, layer 3)"]
