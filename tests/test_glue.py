"""GLUE: tsv reading, downloads (zip member, MRPC split), the datamodule, metrics, configs and an end-to-end run."""

from __future__ import annotations

import hashlib
import math
import zipfile
from pathlib import Path

import pandas as pd
import pytest
import torch

pytest.importorskip("transformers")

from attnbench.config import ConfigError, validate  # noqa: E402
from attnbench.data.catalog import GLUE, Source, glue_files  # noqa: E402
from attnbench.data.download import DataError, fetch, split_mrpc  # noqa: E402
from attnbench.data.glue import read_glue_tsv  # noqa: E402
from tests.conftest import QUICK, SHARED_DATA, needs_minilm, read_results, train_run  # noqa: E402

SST2 = "sentence\tlabel\n" + "".join(f"{w} movie , truly {w} . \t{int(w == 'great')}\n"
                                     for w in ["great", "awful", "dull", "great", "bad", "great"] * 2)
COLA = "".join(f"src{i}\t{i % 2}\t\t{'They' if i % 2 else 'Them'} sat down on a chair .\n" for i in range(10))
STSB = ("index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
        + "".join(f"{i}\tmain\tf\t2012\t{i:04d}\tnone\tnone\tA man is \"playing\" {i}.\tA man plays {i}.\t"
                  f"{i % 5}.{i}00\n" for i in range(8)))


def write_glue(root: Path, folder: str, train: str, dev: str) -> Path:
    d = root / "glue" / folder
    d.mkdir(parents=True, exist_ok=True)
    (d / "train.tsv").write_text(train, encoding="utf-8")
    (d / "dev.tsv").write_text(dev, encoding="utf-8")
    return root


def test_read_glue_tsv_header_headerless_regression_and_bom(tmp_path):
    write_glue(tmp_path, "SST-2", SST2, SST2)
    texts, labels = read_glue_tsv(tmp_path / "glue/SST-2/train.tsv", GLUE["sst2"])
    assert len(texts) == 12 and texts[0] == ("great movie , truly great . ",) and labels[:3] == [1, 0, 0]
    write_glue(tmp_path, "CoLA", COLA, COLA)
    texts, labels = read_glue_tsv(tmp_path / "glue/CoLA/dev.tsv", GLUE["cola"])
    assert texts[1] == ("They sat down on a chair .",) and labels[:4] == [0, 1, 0, 1]
    write_glue(tmp_path, "STS-B", STSB, STSB)
    texts, labels = read_glue_tsv(tmp_path / "glue/STS-B/dev.tsv", GLUE["stsb"])
    assert texts[0] == ('A man is "playing" 0.', "A man plays 0.") and labels[3] == pytest.approx(3.3)
    mrpc = "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t11\t12\tA b .\tA c .\n0\t13\t14\tX .\tY .\n"
    write_glue(tmp_path, "MRPC", mrpc, mrpc)
    texts, labels = read_glue_tsv(tmp_path / "glue/MRPC/train.tsv", GLUE["mrpc"])
    assert texts == [("A b .", "A c ."), ("X .", "Y .")] and labels == [1, 0]


def test_read_glue_tsv_errors_name_file_and_row(tmp_path):
    write_glue(tmp_path, "SST-2", SST2 + "oops\t7\n", "text\tlabel\nx\t1\n")
    with pytest.raises(DataError, match=r"train.tsv: row 14 has label '7'; allowed"):
        read_glue_tsv(tmp_path / "glue/SST-2/train.tsv", GLUE["sst2"])
    with pytest.raises(DataError, match="not a GLUE SST-2 file"):
        read_glue_tsv(tmp_path / "glue/SST-2/dev.tsv", GLUE["sst2"])


def test_split_mrpc_follows_the_dev_ids(tmp_path):
    msr = tmp_path / "msr.txt"
    msr.write_bytes("\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\r\n".encode()
                    + b"1\t1\t2\tA .\tB .\r\n0\t3\t4\tC .\tD .\r\n1\t5\t6\tE .\tF .\r\n")
    ids = tmp_path / "ids.tsv"
    ids.write_text("3\t4\n")
    split_mrpc(msr, ids, tmp_path / "MRPC")
    train = (tmp_path / "MRPC/train.tsv").read_bytes()
    dev = (tmp_path / "MRPC/dev.tsv").read_bytes()
    header = "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\r\n".encode()
    assert train == header + b"1\t1\t2\tA .\tB .\n1\t5\t6\tE .\tF .\n"
    assert dev == header + b"0\t3\t4\tC .\tD .\n"


def test_fetch_extracts_and_verifies_a_zip_member(tmp_path):
    body = SST2.encode()
    archive = tmp_path / "SST-2.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("SST-2/train.tsv", body)
    good = Source("glue/SST-2/train.tsv", archive.as_uri(), (hashlib.sha256(body).hexdigest(),),
                  member="SST-2/train.tsv")
    path = fetch("glue_sst2_train", good, tmp_path / "data")
    assert path.read_bytes() == body and not list((tmp_path / "data/glue/SST-2").glob("*.zip"))
    bad = Source("glue/SST-2/train.tsv", archive.as_uri(), ("0" * 64,), member="SST-2/train.tsv")
    with pytest.raises(DataError, match="corrupt or not the official file"):
        fetch("glue_sst2_train", bad, tmp_path / "other")
    assert not (tmp_path / "other/glue/SST-2/train.tsv").exists()
    missing = Source("glue/SST-2/dev.tsv", archive.as_uri(), ("0" * 64,), member="SST-2/dev.tsv")
    with pytest.raises(DataError, match="not a zip holding SST-2/dev.tsv"):
        fetch("glue_sst2_dev", missing, tmp_path / "third")


def test_catalogue_lists_train_and_dev_of_every_task():
    files = glue_files()
    assert len(GLUE) == 10 and len(files) == 2 * len(GLUE) - 1 == 19  # mnli_m and mnli_mm share MNLI's train.tsv
    assert files["glue_sst2_dev"].member == "SST-2/dev.tsv" and files["glue_mrpc_train"].builder == "glue_mrpc"
    assert files["glue_mnli_dev_mismatched"].path == "glue/MNLI/dev_mismatched.tsv"
    unpinned = {k for k, s in files.items() if not s.sha256}
    assert unpinned == {k for k in files if k.startswith(("glue_mnli_", "glue_qnli_", "glue_qqp_"))}
    assert all(len(s.sha256[0]) == 64 for k, s in files.items() if k not in unpinned)
    assert {t.hub().config for t in GLUE.values()} == {"cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte",
                                                       "wnli"}


def test_glue_metrics_and_score():
    from attnbench.lit.text_classification import glue_metrics

    pred, y = torch.tensor([1, 1, 0, 0, 1]), torch.tensor([1, 0, 0, 1, 1])
    m = glue_metrics("mrpc")
    for v in m.values():
        v.update(pred, y)
    assert float(m["acc"].compute()) == pytest.approx(0.6)
    assert float(m["f1"].compute()) == pytest.approx(2 / 3)  # precision 2/3, recall 2/3
    mcc = glue_metrics("cola")["mcc"]
    mcc.update(pred, y)  # tp 2, tn 1, fp 1, fn 1
    assert float(mcc.compute()) == pytest.approx((2 * 1 - 1 * 1) / math.sqrt(3 * 3 * 2 * 2))
    assert set(glue_metrics("stsb")) == {"pearson", "spearman"}


@needs_minilm
def test_datamodule_tokenizes_pairs_and_pads_per_batch(tmp_path):
    from attnbench.data.glue import GlueDataModule

    write_glue(tmp_path, "STS-B", STSB, STSB)
    dm = GlueDataModule("stsb", str(tmp_path), "minilm", max_length=16, batch_size=3, eval_batch_size=3,
                        download=False, verify=False, cache_dir=str(tmp_path / "cache"))
    dm.setup("fit")
    assert dm.n_labels == 1 and len(dm.datasets["train"]) == 8 and dm.datasets["val"] is dm.datasets["test"]
    b = next(iter(dm.val_dataloader()))
    assert set(b) >= {"input_ids", "attention_mask", "labels"} and b["labels"].dtype == torch.float32
    assert b["input_ids"].shape[0] == 3 and b["input_ids"].shape[1] <= 16
    assert (b["input_ids"] == 102).sum(1).tolist() == [2, 2, 2]  # [SEP] after each sentence of the pair


def test_missing_glue_file_says_how_to_get_it(tmp_path):
    from attnbench.data.glue import GlueDataModule

    dm = GlueDataModule("rte", str(tmp_path), "minilm", download=False)
    with pytest.raises(DataError, match=r"prepare_data.py glue_rte_train"):
        dm.prepare_data()


def test_unloadable_pretrained_model_error_points_at_offline_options():
    from attnbench.models.hf_text import pretrained_classifier

    with pytest.raises(OSError, match="model.net.pretrained=minilm") as e:
        pretrained_classifier("/nonexistent/folder/model", 2)
    assert isinstance(e.value, DataError)  # an error of ours: one paragraph, exit 2 (test_cli)


@pytest.mark.parametrize(("overrides", "message"), [
    (["data=ett"], "cannot train on data"),
    (["model=bert", "model/attention=optimised"], "cannot replace a pretrained self-attention: .*that do: .*full"),
    (["data.task=mnli"], "data.task='mnli' is invalid"),
    (["model.net.n_labels=3"], "model.net.n_labels=3 but task 'sst2' has 2"),
    (["~model.scheduler._target_"], "model.scheduler needs a _target_ \\(e.g. transformers"),
])
def test_config_errors_name_the_key(compose_cfg, overrides, message):
    cfg = compose_cfg(["model=smyrf_bert", "data=glue", *overrides])  # later overrides win
    with pytest.raises(ConfigError, match=message):
        validate(cfg)


@needs_minilm
@pytest.mark.slow
@pytest.mark.parametrize(("model", "task", "files"), [("smyrf_bert", "sst2", ("SST-2", SST2)),
                                                      ("bert", "stsb", ("STS-B", STSB))])
def test_glue_end_to_end(tmp_path, model, task, files):
    data = write_glue(tmp_path / "data", files[0], files[1], files[1])
    args = [*QUICK, f"model={model}", "data=glue", f"data.task={task}", "model.net.pretrained=minilm",
            "data.max_length=24", "data.batch_size=4", "data.eval_batch_size=4", f"paths.data_dir={data}",
            f"data.cache_dir={tmp_path / 'cache'}"]
    if model == "smyrf_bert":
        args.append("model.net.attention.cluster_size=8")
    res = train_run(args, tmp_path / "run")
    m = res["metrics"]
    assert res["status"] == "ok" and res["choices"]["model"] == model
    assert math.isfinite(m["train/loss"]) and math.isfinite(m["val/score"]) and math.isfinite(m["test/score"])
    keys = {"sst2": ["test/acc"], "stsb": ["test/pearson", "test/spearman"]}[task]
    assert m["test/score"] == pytest.approx(sum(m[k] for k in keys) / len(keys), rel=1e-5)
    assert m["n_params"] > 20_000_000  # the pretrained MiniLM (22.7 M) with a new head


@pytest.mark.data
def test_real_glue_dev_files_verify_and_read():
    from attnbench.data.download import locate

    for task, n in [("rte", 277), ("sst2", 872), ("cola", 1043), ("mrpc", 408), ("stsb", 1500), ("wnli", 71)]:
        path = locate(GLUE[task].file_key("dev"), GLUE[task].source("dev"), SHARED_DATA, check=True)
        texts, labels = read_glue_tsv(path, GLUE[task])
        assert len(texts) == len(labels) == n, task


@needs_minilm
@pytest.mark.data
def test_real_glue_through_the_datamodule(tmp_path):
    """The verified local copies as datasets: train and dev rows, labels in range, tokens cached once."""
    from attnbench.data.glue import GlueDataModule

    sizes = {"rte": (2490, 277), "sst2": (67349, 872), "cola": (8551, 1043), "mrpc": (3668, 408),
             "stsb": (5749, 1500), "wnli": (635, 71)}
    for task, (n_train, n_dev) in sizes.items():
        dm = GlueDataModule(task, str(SHARED_DATA), "minilm", max_length=64, download=False,
                            cache_dir=str(tmp_path / "cache"))
        dm.setup("fit")
        assert (len(dm.datasets["train"]), len(dm.datasets["test"])) == (n_train, n_dev), task
        labels = dm.datasets["test"][:]["labels"]
        assert (labels.min() >= 0 and labels.max() <= 5) if task == "stsb" else set(labels.tolist()) == {0, 1}


def _glue_job(d: Path, model: str, task: str, score: float | None, status: str = "ok", cluster: int = 32,
              pretrained: str = "bert-base-uncased", experiment: str = "smyrf/glue") -> None:
    import json

    d.mkdir(parents=True)
    att = {"name": "smyrf", "n_hashes": 2, "cluster_size": cluster} if "smyrf" in model else {"name": "full"}
    res = {"status": status, "error": None if status == "ok" else "RuntimeError: boom",
           "metrics": {} if score is None else {"test/score": score, "epochs": 3, "n_params": 1e8},
           "choices": {"model": model, "model/attention": att["name"], "data": "glue", "experiment": experiment},
           "config": {"model": {"_target_": "attnbench.lit.text_classification.TextClassificationModule",
                                "net": {"pretrained": pretrained, "attention": att}},
                      "data": {"task": task}}, "wall_time_s": 10.0}
    (d / "results.json").write_text(json.dumps(res))


def test_glue_table_beside_the_paper_and_make_table(tmp_path):
    from attnbench.analysis import glue
    from scripts.make_table import main as make_table

    sweep = tmp_path / "sweep"
    _glue_job(sweep / "0", "bert", "rte", 66.0)
    _glue_job(sweep / "1", "bert", "sst2", 92.0)
    _glue_job(sweep / "2", "smyrf_bert", "rte", 64.0)
    _glue_job(sweep / "3", "smyrf_bert", "sst2", None, status="failed")
    _glue_job(sweep / "4", "bert", "rte", 68.0)  # a second seed: averaged
    runs = glue.load_runs(sweep)
    table = glue.glue_table(runs, glue.load_reference("smyrf_glue"))
    assert list(table.columns[:3]) == ["rte", "sst2", "Avg"]
    assert table.loc["ours: bert", "rte"] == pytest.approx(67.0) and table.loc["ours: bert", "Avg"] == 79.5
    assert table.loc["ours: smyrf_bert 2x32", "sst2"] == "failed"
    assert pd.isna(table.loc["ours: smyrf_bert 2x32", "Avg"])  # no Avg over an incomplete row
    assert table.loc["SMYRF-BERT_2x32", "rte"] == 68.59
    assert table.loc["BERT_128", "Avg"] == pytest.approx((65.70 + 93.46) / 2)
    rc = make_table([str(sweep), "--out", str(tmp_path / "out")])
    md = (tmp_path / "out" / "table.md").read_text()
    assert rc == 0 and "| model | RTE | SST-2 | Avg |" in md and "SMYRF-BERT_2x16" in md
    assert "smyrf_bert 2x32 / sst2: failed: RuntimeError: boom" in md
    assert (tmp_path / "out" / "runs.csv").is_file()


def test_mnli_qnli_qqp_columns_beside_the_papers_numbers(tmp_path):
    """data.task mnli_m / mnli_mm / qnli / qqp are the SMYRF table's column keys: ours sit beside the paper's."""
    from attnbench.analysis import glue

    sweep = tmp_path / "sweep"
    for i, (task, score) in enumerate([("qqp", 88.0), ("mnli_mm", 83.0), ("qnli", 90.0), ("mnli_m", 84.0)]):
        _glue_job(sweep / str(i), "bert", task, score)
    table = glue.glue_table(glue.load_runs(sweep), glue.load_reference("smyrf_glue"))
    assert list(table.columns[:5]) == ["mnli_m", "mnli_mm", "qnli", "qqp", "Avg"]  # the paper's order
    assert table.loc["ours: bert", "mnli_mm"] == 83.0 and table.loc["BERT_128", "mnli_mm"] == 84.68
    assert table.loc["BERT_128", "qqp"] == 89.70
    tree = glue.glue_table(glue.load_runs(sweep), glue.load_reference("treeformer_glue"))
    assert list(tree.columns[:4]) == ["mnli_m", "mnli_mm", "qnli", "qqp"]


def test_glue_label_names_pretrained_and_budget():
    from attnbench.analysis.glue import glue_label

    cfg = {"model": {"net": {"pretrained": "/x/site-packages/gt/model", "attention": {
        "name": "smyrf", "n_hashes": 2, "cluster_size": 16}}}}
    assert glue_label({"model": "smyrf_bert_2x16", "model/attention": "smyrf"}, cfg) == "smyrf_bert_2x16 2x16 (model)"
    assert glue_label({"model": "bert", "model/attention": "local"}, {}) == "bert[local]"
    assert glue_label({"model": "bert", "model/attention": "full"}, {"model": {"net": {
        "pretrained": "bert-base-uncased", "attention": {"name": "full"}}}}) == "bert"


@pytest.mark.parametrize("model", ["bert", "smyrf_bert", "smyrf_bert_2x16"])
def test_smyrf_glue_experiment_composes(compose_cfg, model):
    cfg = compose_cfg(["experiment=smyrf/glue", f"model={model}", "data.task=stsb"])
    validate(cfg)
    assert cfg.model.net.n_labels == 1 and cfg.trainer.max_epochs == 3 and cfg.callbacks.early_stopping is None
    assert cfg.model.net.attention.name == ("full" if model == "bert" else "smyrf")


@needs_minilm
@pytest.mark.slow
def test_a_fine_tuned_checkpoint_is_evaluated_as_it_is_with_smyrf(tmp_path):
    """train=false without ckpt_path tests a pretrained classifier whose head came with it (SMYRF's "no
    retraining" experiment); a checkpoint without a trained head is refused."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from attnbench.models.hf_text import resolve_pretrained

    src = resolve_pretrained("minilm")
    tuned = tmp_path / "tuned"
    AutoModelForSequenceClassification.from_pretrained(src, num_labels=2).save_pretrained(tuned)
    AutoTokenizer.from_pretrained(src).save_pretrained(tuned)
    data = write_glue(tmp_path / "data", "SST-2", SST2, SST2)
    base = [*QUICK, "model=smyrf_bert", "data=glue", "train=false", "data.max_length=24", f"paths.data_dir={data}",
            "model.net.attention.cluster_size=8"]
    res = train_run([*base, f"model.net.pretrained={tuned}"], tmp_path / "a")
    assert res["status"] == "ok" and 0.0 <= res["metrics"]["test/acc"] <= 100.0 and res["best_checkpoint"] is None
    with pytest.raises(ValueError, match="fine-tuned for the task"):
        train_run([*base, "model.net.pretrained=minilm"], tmp_path / "b")
    assert "fine-tuned for the task" in read_results(tmp_path / "b")["error"]


@needs_minilm
@pytest.mark.slow
def test_interchangeability_train_with_smyrf_test_dense(tmp_path):
    """SMYRF's IMDB table: a model trained with SMYRF is tested with dense attention (and the reverse)."""
    data = write_glue(tmp_path / "data", "SST-2", SST2, SST2)
    base = [*QUICK, "data=glue", "model.net.pretrained=minilm", "data.max_length=24", "data.batch_size=4",
            "data.eval_batch_size=4", f"paths.data_dir={data}"]
    trained = train_run([*base, "model=smyrf_bert", "model.net.attention.cluster_size=8"], tmp_path / "smyrf")
    dense = train_run([*base, "model=bert", "train=false", f"ckpt_path={trained['best_checkpoint']}"],
                      tmp_path / "dense")
    assert dense["status"] == "ok" and math.isfinite(dense["metrics"]["test/acc"])
    again = train_run([*base, "model=smyrf_bert", "model.net.attention.cluster_size=8", "train=false",
                       f"ckpt_path={trained['best_checkpoint']}"], tmp_path / "again")
    assert again["metrics"]["test/acc"] == pytest.approx(trained["metrics"]["test/acc"])  # same weights, same swap


def test_imdb_sweep_table_uses_the_imdb_reference(tmp_path):
    from scripts.make_table import main as make_table

    sweep = tmp_path / "sweep"
    _glue_job(sweep / "0", "bert", "imdb", 93.0, experiment="smyrf/imdb")
    _glue_job(sweep / "1", "smyrf_bert_8x32", "imdb", 91.5, experiment="smyrf/imdb")
    assert make_table([str(sweep)]) == 0
    md = (sweep / "table.md").read_text()
    assert "| model | IMDB | Avg |" in md and "| ours: bert | 93.00 (n=1) | 93.00 |" in md
    # the README's boxes and prose disagree on which SMYRF row is dense inference: unconfirmed ("?")
    assert "SMYRF-BERT (SMYRF Inference: yes)? | 93.54" in md and "GLUE dev" not in md


@pytest.mark.parametrize("model", ["bert", "smyrf_bert_8x32"])
def test_smyrf_imdb_experiment_composes(compose_cfg, model):
    cfg = compose_cfg(["experiment=smyrf/imdb", f"model={model}"])
    validate(cfg)
    assert cfg.data.max_length == 512 and cfg.model.optimizer.lr == 3e-5 and cfg.model.task == "imdb"
    if model != "bert":
        assert (cfg.model.net.attention.n_hashes, cfg.model.net.attention.cluster_size) == (8, 32)
