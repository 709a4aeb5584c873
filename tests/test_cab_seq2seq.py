"""The CPU sequence-to-sequence task of CAB's causal and cross patterns: generator and files, the encoder-decoder's
causality in its decoder-self and cross positions, greedy decoding, config checks, a debug run."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from attnbench.attention.registry import CapabilityError
from attnbench.config import ConfigError, Seq2SeqDataConfig, validate
from attnbench.data import seq2seq as data
from attnbench.data.download import DataError
from attnbench.data.lra.common import PAD_ID
from attnbench.models.seq2seq import Seq2SeqTransformer
from scripts.prepare_data import main as prepare_data
from tests.conftest import QUICK, train_multirun

SIZES = {"train": 200, "val": 20, "test": 30}
V = 10


def _read_plain(path) -> list[tuple[list[int], list[int]]]:
    """The TSV read without the module's reader: header, then 'a b c<TAB>x y z' lines."""
    lines = path.read_text().split("\n")
    assert lines[0] == "Source\tTarget" and lines[-1] == ""
    return [tuple([int(t) for t in part.split(" ")] for part in line.split("\t")) for line in lines[1:-1]]


@pytest.mark.parametrize("task", data.TASKS)
def test_generated_files_hold_correct_targets(tmp_path, task):
    meta = data.params(task, V, 3, 12, *SIZES.values(), seed=5)
    folder = data.prepare(tmp_path, meta)
    seen = set()
    for split, n in SIZES.items():
        pairs = _read_plain(folder / f"{split}.tsv")
        assert pairs == data.read_split(folder / f"{split}.tsv") and len(pairs) == n
        for src, tgt in pairs:
            s = np.array(src)
            assert 3 <= len(s) <= 12 and s.min() >= 0 and s.max() < V
            want = {"reverse": s[::-1], "sort": np.sort(s),
                    "pairsum": (s + np.concatenate([[0], s[:-1]])) % V}[task]
            assert tgt == want.tolist()
            seen.add(tuple(src))
    assert len(seen) == sum(SIZES.values())  # no source twice, within or across splits


def test_generator_is_deterministic_in_its_seed(tmp_path):
    a = data.generate("reverse", SIZES, V, 3, 12, seed=1)
    assert a == data.generate("reverse", SIZES, V, 3, 12, seed=1)
    assert a != data.generate("reverse", SIZES, V, 3, 12, seed=2)


def test_data_generated_with_other_parameters_sits_beside_in_its_own_folder(tmp_path, capsys):
    """Folders are named by the non-default parameters: two README commands with other sizes never collide."""
    small = ["--n-train", "50", "--n-val", "5", "--n-test", "5", "--data-dir", str(tmp_path)]
    assert prepare_data(["seq2seq", "--generate", "--task", "pairsum", *small]) == 0
    first = tmp_path / "seq2seq" / "pairsum-n_train50-n_val5-n_test5"
    assert (first / "meta.json").is_file() and json.loads((first / "meta.json").read_text())["n_train"] == 50
    before = (first / "train.tsv").read_bytes()
    assert prepare_data(["seq2seq", "--generate", "--task", "pairsum", *small, "--n-train", "60"]) == 0
    second = tmp_path / "seq2seq" / "pairsum-n_train60-n_val5-n_test5"
    assert len(data.read_split(second / "train.tsv")) == 60 and (first / "train.tsv").read_bytes() == before
    # the data module finds the folder its parameters name
    dm = data.Seq2SeqDataModule(str(tmp_path), "pairsum", n_train=60, n_val=5, n_test=5, generate=False)
    dm.setup("fit")
    assert len(dm.datasets["train"]) == 60
    assert data.folder_name(data.params("reverse", 10, 4, 16, 10000, 500, 1000, 0)) == "reverse"  # the defaults
    # an edited meta.json is still refused
    meta = json.loads((first / "meta.json").read_text())
    (first / "meta.json").write_text(json.dumps({**meta, "generator_version": -1}))
    assert prepare_data(["seq2seq", "--generate", "--task", "pairsum", *small]) == 1
    assert "other parameters ({'generator_version': (-1," in capsys.readouterr().err
    # missing: the command that makes exactly this folder
    dm = data.Seq2SeqDataModule(str(tmp_path), "sort", max_len=12, generate=False)
    with pytest.raises(DataError, match=r"prepare_data.py seq2seq --generate --task sort --max-len 12 "):
        dm.setup("fit")
    with pytest.raises(ValueError, match="distinct sources asked of a space of"):
        data.generate("reverse", {"train": 100}, 2, 1, 3, seed=0)


def test_encoding_aligns_source_and_target():
    src, tgt_in, labels = data.encode([([3, 0, 9], [9, 0, 3])], length=5, n_symbols=V)
    s = data.N_SPECIAL
    assert src.tolist() == [[3 + s, 0 + s, 9 + s, data.EOS_ID, PAD_ID]]
    assert tgt_in.tolist() == [[data.BOS_ID, 9 + s, 0 + s, 3 + s, PAD_ID]]
    assert labels.tolist() == [[9 + s, 0 + s, 3 + s, data.EOS_ID, PAD_ID]]
    with pytest.raises(DataError, match="at most 4 fit"):
        data.encode([([1] * 5, [1] * 5)], length=5, n_symbols=V)


def test_schema_tasks_are_the_generators():
    with pytest.raises(ConfigError, match="data.task='copy' is invalid; allowed: " + ", ".join(data.TASKS)):
        Seq2SeqDataConfig(data_dir="d", task="copy")


def _model(decoder="full", cross="full") -> Seq2SeqTransformer:
    torch.manual_seed(0)
    opts = {"local": {"window": 2}}
    return Seq2SeqTransformer(V, {"name": "full"}, {"name": decoder, **opts.get(decoder, {})},
                              {"name": cross, **opts.get(cross, {})}, d_model=32,
                              n_heads=4, n_encoder_layers=1, n_decoder_layers=2, d_mlp=64, dropout=0.0).eval()


def _batch(n=4, length=9, task="pairsum"):
    pairs = data.generate(task, {"x": n}, V, 3, length - 1, seed=3)["x"]
    return data.encode(pairs, length, V)


@pytest.mark.parametrize(("decoder", "cross"), [
    ("full", "full"), ("local", "performer"), ("linear", "linear"), ("performer", "performer"),
    ("treeformer_tf", "treeformer_tc")])
def test_decoder_is_causal_and_reads_the_source(decoder, cross):
    """Logits at position i do not change when decoder inputs after i change; they do when the source does."""
    m = _model(decoder, cross)
    src, tgt_in, _ = _batch()
    logits = m(src, tgt_in)
    assert logits.shape == (4, 9, data.vocab_size(V)) and torch.isfinite(logits).all()
    i = 4
    other = tgt_in.clone()
    other[:, i + 1:] = torch.randint(data.N_SPECIAL, data.vocab_size(V), other[:, i + 1:].shape)
    changed = m(src, other)
    torch.testing.assert_close(changed[:, : i + 1], logits[:, : i + 1], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(changed[:, i + 1:], logits[:, i + 1:])
    src2 = src.clone()
    src2[:, 0] = data.N_SPECIAL + (src[:, 0] - data.N_SPECIAL + 1) % V  # another first symbol
    assert (m(src2, tgt_in) - logits).abs().amax() > 1e-3  # cross attention carries the source


@pytest.mark.parametrize("cross", ["full", "linear", "performer", "treeformer_tf"])
def test_cross_attention_is_causal_cross_with_the_whole_memory(cross):
    """CAB's CC with a fixed memory: the first i+1 decoder positions alone give the logits of the full pass
    (queries do not mix), while every memory position still counts (the memory is not masked)."""
    m = _model("full", cross)
    src, tgt_in, _ = _batch()
    memory, mask = m.encode(src)
    logits = m.decode(tgt_in, memory, mask)
    i = 3
    torch.testing.assert_close(m.decode(tgt_in[:, : i + 1], memory, mask), logits[:, : i + 1], atol=1e-5,
                               rtol=1e-5)
    last = mask.sum(1) - 1  # (B,) the EOS position of each source
    noisy = memory.clone()
    noisy[torch.arange(len(last)), last] += 3 * torch.randn_like(noisy[:, 0])
    assert (m.decode(tgt_in, noisy, mask)[:, 0] - logits[:, 0]).abs().amax() > 1e-3  # query 0 reads the end


def test_cross_entries_whose_queries_mix_are_refused():
    """Nyström's landmarks are means of query segments and SMYRF clusters queries with keys: earlier outputs
    depend on later queries, which an autoregressive decoder cannot have (caps.causal_cross=False)."""
    for name in ("nystrom", "smyrf"):
        with pytest.raises(CapabilityError, match=f"{name}"):
            _model("full", name)


def test_greedy_decoding_is_self_consistent():
    """Feeding the greedy output back as teacher-forced input reproduces it position by position (up to EOS),
    and nothing follows the first EOS."""
    m = _model()
    src, _, labels = _batch(n=16)
    out = m.greedy(src, labels.shape[1])
    assert out.shape == labels.shape
    tgt_in = torch.cat([torch.full_like(out[:, :1], data.BOS_ID), out[:, :-1]], dim=1)
    ended = torch.cumsum((out == data.EOS_ID).int(), dim=1) - (out == data.EOS_ID).int() > 0  # after an EOS
    assert (out[ended] == PAD_ID).all()
    tf = m(src, tgt_in).argmax(-1)
    assert (tf[~ended] == out[~ended]).all()


def test_config_refuses_an_entry_a_position_cannot_take(compose_cfg):
    base = ["model=seq2seq", "data=seq2seq"]
    validate(compose_cfg([*base, "model/attention@model.net.decoder_attention=local"]))
    with pytest.raises(ConfigError, match="cross_attention.name='local' lacks cross_attention"):
        validate(compose_cfg([*base, "model/attention@model.net.cross_attention=local"]))
    with pytest.raises(ConfigError, match="cross_attention.name='nystrom' lacks causal_cross, which this position"):
        validate(compose_cfg([*base, "model/attention@model.net.cross_attention=nystrom"]))
    with pytest.raises(ConfigError, match="decoder_attention.name='smyrf' lacks causal"):
        validate(compose_cfg([*base, "model/attention@model.net.decoder_attention=smyrf"]))
    # the experiments, and local with a window that cuts as the experiment's comment says
    local = compose_cfg(["experiment=cab/seq2seq", "model/attention@model.net.decoder_attention=local",
                         "model.net.decoder_attention.window=4"])
    validate(local)
    assert local.model.net.decoder_attention == {"name": "local", "window": 4, "dropout": 0.0}


@pytest.mark.slow
def test_debug_sweep_and_its_table(tmp_path):
    """Three decoder-self entries (full, linear, treeformer_tf: dense, kernel, tree buckets) with a performer
    cross attention on pairsum, one multirun of the experiment (in-process); its end-of-sweep table renders."""
    quick = [a for a in QUICK if not a.startswith("data.")]  # generated data: nothing to verify or download
    args = [*quick, "experiment=cab/seq2seq", "data.task=pairsum",
            "model/attention@model.net.decoder_attention=full,linear,treeformer_tf",
            "model/attention@model.net.cross_attention=performer", "data.n_train=300",
            "data.n_val=40", "data.n_test=40", "data.max_len=8", f"paths.data_dir={tmp_path / 'd'}", "seed=0"]
    res = train_multirun(args, tmp_path / "sweep")
    assert [r["status"] for r in res] == ["ok"] * 3
    assert {r["config"]["model"]["net"]["decoder_attention"]["name"] for r in res} == {"full", "linear",
                                                                                         "treeformer_tf"}
    for r in res:
        m = r["metrics"]
        for key in ("test/loss", "test/acc", "test/exact", "test/acc_tf", "val/loss", "train/loss"):
            assert math.isfinite(m[key]), key
        assert 0.0 <= m["test/exact"] <= m["test/acc"] + 1e-6 <= 1.0 + 1e-6
        assert m["test/loss"] < 5.0  # O(1) at initialisation: log(13) = 2.56
    assert (tmp_path / "d" / "seq2seq" / "pairsum-max_len8-n_train300-n_val40-n_test40" / "train.tsv").is_file()
    md = (tmp_path / "sweep" / "table.md").read_text()  # written at the end of the sweep (the experiment declares it)
    assert "| pairsum | treeformer_tf | performer | dec treeformer_tf / cross performer‡ |" in md
    assert "### CC (causal cross)" in md
