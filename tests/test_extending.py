"""docs/extending.md's worked examples, run as written: the code blocks headed by a file path are read out of the
page and written into a copy of the repository (attention) or a temporary conf dir with the catalogue
monkeypatched (data set, table); nothing is left in the checkout."""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hydra.utils import instantiate

from attnbench import attention_spec, config
from attnbench.analysis import reference
from attnbench.analysis.spec import experiment_spec
from attnbench.data import catalog
from attnbench.data.download import DataError, sha256sum
from scripts.prepare_data import main as prepare_data
from tests.conftest import FAST, ROOT, results, write_ett_csv

DOC = ROOT / "docs" / "extending.md"


def doc_blocks() -> dict[str, str]:
    """The page's fenced code blocks by the line just above them (a header ending in ':', backticks kept)."""
    lines = DOC.read_text().splitlines()
    out: dict[str, str] = {}
    i = 0
    while i < len(lines):
        if lines[i].startswith("```") and i > 0 and lines[i - 1].endswith(":"):
            end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
            out[lines[i - 1].removesuffix(":")] = "\n".join(lines[i + 1:end]) + "\n"
            i = end
        i += 1
    return out


def block(header_start: str) -> str:
    """The one code block whose header starts with ``header_start``."""
    found = [text for header, text in doc_blocks().items() if header.startswith(header_start)]
    assert len(found) == 1, f"docs/extending.md: {len(found)} blocks headed {header_start!r}"
    return found[0]


def copy_repo(dst: Path) -> Path:
    """The parts of the checkout a run and the tests read (no caches, outputs or data)."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for d in ("src", "conf", "tests", "scripts"):
        shutil.copytree(ROOT / d, dst / d, ignore=ignore)
    for f in ("train.py", "pyproject.toml", "README.md"):
        shutil.copy2(ROOT / f, dst / f)
    return dst


def run_in(repo: Path, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """``python ARGS`` with ``repo/src`` first on the path (the copy's package, not the checkout's)."""
    env = {**os.environ, "PYTHONPATH": str(repo / "src"), "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline",
           "HYDRA_FULL_ERROR": "1"}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


# ----------------------------------------------------------------------------- attention
@pytest.mark.slow
def test_a_new_attention_is_one_file_and_one_yaml(tmp_path, synth_data_dir):
    """The page's two files, nothing else edited but README's generated table: the contract tests run on the
    entry, and ``model=full model/attention=tempered`` trains."""
    repo = copy_repo(tmp_path / "repo")
    (repo / "src/attnbench/attention/tempered.py").write_text(block("`src/attnbench/attention/tempered.py`"))
    (repo / "conf/model/attention/tempered.yaml").write_text(block("`conf/model/attention/tempered.yaml`"))

    # README's table: the page's command (`make readme` = scripts/update_readme.py), run in the copy (torch-free)
    assert attention_spec.caps_table() in (repo / "README.md").read_text()
    p = run_in(repo, ["scripts/update_readme.py"], repo)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "| `tempered` | yes | yes | yes | yes | - |" in (repo / "README.md").read_text()

    p = run_in(repo, ["-m", "pytest", "-v", "-p", "no:cacheprovider", "tests/test_attention_contract.py",
                      "tests/test_cli.py", "-k", "tempered or one_yaml_per_registry_key or readme_capability_table "
                      "or attention_spec_equals_the_registry"], repo)
    assert p.returncode == 0, p.stdout[-4000:]
    ran = re.findall(r"::(\w+)\[tempered\] PASSED", p.stdout)
    assert len(ran) >= 9, p.stdout[-4000:]  # every name-parametrized contract test, none skipped
    for name in ("one_yaml_per_registry_key", "readme_capability_table_is_current",
                 "attention_spec_equals_the_registry"):
        assert re.search(rf"::test_{name} PASSED", p.stdout), name

    p = run_in(repo, [str(repo / "train.py"), f"paths.log_dir={tmp_path / 'outputs'}", *FAST,
                      f"paths.data_dir={synth_data_dir}", "model=full", "model/attention=tempered"], tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    (res,) = results(tmp_path)
    assert res["status"] == "ok", res["error"]
    assert res["config"]["model"]["net"]["attention"] == {"name": "tempered", "temperature": 2.0, "dropout": 0.0}
    assert math.isfinite(res["metrics"]["test/mse"])
    assert not (ROOT / "src/attnbench/attention/tempered.py").exists()  # the checkout is untouched


# ----------------------------------------------------------------------------- data set
def test_a_new_data_set_is_one_catalog_entry_and_one_yaml(tmp_path, monkeypatch, compose_cfg):
    """The page's catalogue entry and yaml: the config check takes the name, a missing file names itself and
    the prepare command (as the page shows), prepare_data.py copies it, and the data module windows it."""
    elsewhere, data_dir = tmp_path / "elsewhere", tmp_path / "data"
    write_ett_csv(elsewhere / "toy.csv", n_rows=2000)
    code = block("`src/attnbench/data/catalog/timeseries.py`")
    code = code.replace("<sha256 of toy.csv>", sha256sum(elsewhere / "toy.csv"))
    (entry,) = eval(code, vars(catalog.timeseries))  # the page's line is a list item: `TimeSeriesSpec(...),`
    monkeypatch.setitem(catalog.TIME_SERIES, entry.name, entry)
    (tmp_path / "conf/data").mkdir(parents=True)
    (tmp_path / "conf/data/toy.yaml").write_text(block("`conf/data/toy.yaml`"))

    cfg = compose_cfg([f"hydra.searchpath=[file://{tmp_path / 'conf'}]", "data=toy", f"paths.data_dir={data_dir}",
                       "data.download=false"])
    config.validate(cfg)
    assert cfg.data.name == "toy" and cfg.data.seq_len == 96 and cfg.model.n_targets == 7
    dm = instantiate(cfg.data)
    dm.prepare_data()
    with pytest.raises(DataError) as err:
        dm.setup("fit")
    shown = block("Without the file").replace("<data_dir>", str(data_dir))
    assert str(err.value) == shown.rstrip("\n")

    assert prepare_data(["toy", "--from", str(elsewhere), "--data-dir", str(data_dir)]) == 0
    dm.setup("fit")
    x, y, _, _ = next(iter(dm.train_dataloader()))
    assert x.shape == (32, 96, 7) and y.shape == (32, 48 + 96, 7)
    assert len(dm.datasets["train"]) == 1400 - 96 - 96 + 1  # ratio split: the first 70 % of 2000 rows


# ----------------------------------------------------------------------------- table
def test_a_new_table_block_and_reference_fit(tmp_path, compose_cfg):
    """The page's experiment and reference file: the block checks, the reference fills its rows, and the composed
    config carries the block (what make_table reads back from results.json; rendering such a table is
    tests/test_make_table_spec.py::test_a_new_table_is_one_block_and_one_reference_file)."""
    conf = tmp_path / "conf"
    (conf / "experiment/newpaper").mkdir(parents=True)
    (conf / "experiment/newpaper/table2.yaml").write_text(block("`conf/experiment/newpaper/table2.yaml`"))
    ref = tmp_path / "newpaper_table2.csv"
    ref.write_text(block("`src/attnbench/analysis/reference/newpaper_table2.csv`"))

    spec = experiment_spec("newpaper/table2", conf_dir=conf)
    assert (spec.kind, spec.reference, spec.baseline) == ("glue", "newpaper_table2", [])
    wide = reference.for_kind(str(ref), spec.kind)
    assert sorted(wide["task"]) == ["rte", "sst2"] and set(wide["model"]) == {"NewFormer"}

    cfg = compose_cfg([f"hydra.searchpath=[file://{conf}]", "experiment=newpaper/table2"])
    assert cfg.table.reference == "newpaper_table2" and cfg.data._target_ == "attnbench.data.glue.GlueDataModule"


# ----------------------------------------------------------------------------- the page tells the truth
def test_every_path_and_name_the_page_cites_exists():
    """Paths (but the examples the page adds), test ids and config.py names: a refactor that moves one fails here."""
    text = DOC.read_text()
    examples = ("tempered", "toy", "newpaper", "<")
    paths = {m for m in re.findall(r"`((?:src|conf|tests|scripts|docs)/[^`\s]+)`", text)
             if not any(e in m for e in examples)}
    assert len(paths) >= 10
    for path in sorted(paths):
        file, _, test = path.partition("::")
        assert (ROOT / file).exists(), path
        if test:
            assert f"def {test}(" in (ROOT / file).read_text(), path
    for name in ("NET_SCHEMAS", "SCHEMAS", "TASK_DATA", "register_configs", "ResNet3DNetConfig",
                 "TransformerNetConfig", "ForecastingModelConfig", "ForecasterNetConfig", "ClassificationModelConfig",
                 "MedMNISTDataConfig"):
        assert name in text and hasattr(config, name), name
    for name in ("TIME_SERIES", "MEDMNIST3D", "GLUE", "TimeSeriesSpec", "VolumeSpec", "GlueTask"):
        assert name in text and hasattr(catalog, name), name
    for file, name in (("analysis/spec.py", "KINDS"), ("analysis/report.py", "LAYOUTS"),
                       ("lit/text_classification.py", "def glue_metrics("), ("lit/base.py", "class ConfiguredModule(")):
        assert name.removeprefix("def ").removeprefix("class ").rstrip("(") in text, name
        assert name in (ROOT / "src/attnbench" / file).read_text(), (file, name)
