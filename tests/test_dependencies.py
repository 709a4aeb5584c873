"""The data catalogues depend on nothing but their shared records: one catalogue per domain (the import graph of
the whole package, its layers and circles: tests/test_imports.py, whose reader this uses)."""

from __future__ import annotations

from tests.test_imports import SRC, imports, modules


def test_one_catalogue_per_domain():
    """Each domain's catalogue imports only the shared records (Source, TextTask), never another domain's; IMDB
    is a text task of its own, not a GLUE task."""
    from attnbench.data.catalog import GLUE, IMDB, TEXT_TASKS, GlueTask, TextTask

    shared = {"attnbench.data.catalog.source", "attnbench.data.catalog.text"}
    domains = sorted(p for p in (SRC / "data" / "catalog").glob("*.py")
                     if p.stem not in ("__init__", "source", "text"))
    assert [p.stem for p in domains] == ["cifar", "corpus", "glue", "imdb", "lra", "medmnist", "seq2seq", "timeseries"]
    known = modules()
    for p in domains:
        assert {m for _, m in imports(p, known)} <= shared, p.name
    assert not isinstance(IMDB, GlueTask) and "imdb" not in GLUE
    assert set(TEXT_TASKS) == {*GLUE, "imdb"} and all(isinstance(t, TextTask) for t in TEXT_TASKS.values())
    assert (IMDB.n_labels, GLUE["stsb"].n_labels, GLUE["cola"].folder) == (2, 1, "CoLA")
