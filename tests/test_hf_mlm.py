"""MLM continued pre-training of a pretrained HF encoder (issue 13's option): WordPiece blocks of the substitute
corpus, transformers' MLM collator, the MLM module, and its checkpoint starting GLUE fine-tuning (model.init_from).

The models are a tiny random BERT saved with MiniLM's tokenizer (fast); the tokenizer is the real MiniLM one."""

from __future__ import annotations

import logging
import types
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from attnbench.config import ConfigError, validate
from attnbench.data.corpus import IGNORE
from tests.conftest import ROOT, SHARED_DATA, needs_minilm

pytestmark = needs_minilm

TREES = {"name": "treeformer_tf", "height": 1, "capacity_factor": None, "dropout": 0.0, "data_init": True}
TEXT = "the film was a quiet delight , and the cast played it with care . " * 4


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> str:
    """A folder with a 2-layer BERT of width 32 (random weights, no MLM head) and MiniLM's tokenizer."""
    from transformers import BertConfig, BertModel

    from attnbench.pretrained import load_tokenizer

    d = tmp_path_factory.mktemp("tiny_bert")
    tok = load_tokenizer("minilm")
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=64, max_position_embeddings=64)
    BertModel(cfg).save_pretrained(d)
    tok.save_pretrained(d)
    return str(d)


def _blocks(block_len: int = 32):
    from attnbench.data.wordpiece import WordPieceBlocks, wordpiece_stream
    from attnbench.pretrained import load_tokenizer

    tok = load_tokenizer("minilm")
    stream = wordpiece_stream([TEXT] * 12, tok)
    return tok, WordPieceBlocks(stream, block_len, list(tok.all_special_ids))


def _mlm_module(path: str, lr: float = 1e-3):
    from functools import partial

    from attnbench.lit.hf_mlm import PretrainedMLMModule
    from attnbench.models.hf_text import pretrained_masked_lm

    net = pretrained_masked_lm(path, attention=dict(TREES), dropout=0.0, trainable_attention=True)
    return PretrainedMLMModule(net, partial(torch.optim.AdamW, lr=lr), scheduler=None)


def test_collator_labels_only_the_masked_positions_and_never_the_specials():
    from attnbench.data.wordpiece import mlm_collator

    tok, blocks = _blocks()
    examples = [blocks[i] for i in range(len(blocks))]
    ids = torch.stack([e["input_ids"] for e in examples])  # (N, 32)
    assert ids[0, 0] == tok.cls_token_id and (ids == tok.sep_token_id).any()  # [CLS] text [SEP], concatenated
    batch = mlm_collator(tok, 0.15, seed=0)(examples)
    x, y = batch["input_ids"], batch["labels"]
    picked = y != IGNORE
    assert torch.equal(y[picked], ids[picked])  # the label is the original token
    assert torch.equal(x[~picked], ids[~picked])  # every unpicked position is unchanged
    special = torch.isin(ids, torch.tensor(tok.all_special_ids))
    assert not (picked & special).any()
    rate = picked.sum().item() / (~special).sum().item()
    assert 0.10 < rate < 0.20, rate  # mlm_probability 0.15
    assert 0.65 < (x[picked] == tok.mask_token_id).float().mean().item() < 0.95  # 80 % [MASK]
    again = mlm_collator(tok, 0.15, seed=0)(examples)
    assert torch.equal(again["labels"], y)  # a seed fixes the masking (val/test)


def test_mlm_head_of_a_bare_encoder_is_tied_and_its_transform_is_fresh(tiny_bert, caplog):
    from attnbench.models.hf_text import pretrained_masked_lm

    with caplog.at_level("WARNING"):
        net = pretrained_masked_lm(tiny_bert)
    assert net.cls.predictions.decoder.weight is net.bert.embeddings.word_embeddings.weight
    assert "cls.predictions.transform.dense.weight" in caplog.text and "start fresh" in caplog.text
    assert not net.attnbench_trained_head


def test_mlm_loss_and_accuracy_improve_on_a_repeated_corpus(tiny_bert):
    from attnbench.data.wordpiece import mlm_collator
    from attnbench.lit.treeformer import tree_layers

    tok, blocks = _blocks()
    torch.manual_seed(0)
    module = _mlm_module(tiny_bert)
    assert len(tree_layers(module)) == 2  # the trees are swapped in
    opt = torch.optim.AdamW(module.parameters(), lr=3e-3)
    collate = mlm_collator(tok, 0.15, seed=1)
    examples = [blocks[i] for i in range(len(blocks))]
    losses, accs = [], []
    for _ in range(30):
        nll, n, correct = module.masked_scores(collate(examples))
        loss = nll / n
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        accs.append(correct.item() / n.item())
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5, losses
    assert sum(accs[-5:]) / 5 > 2 * sum(accs[:5]) / 5 + 0.01, accs  # masked-token accuracy up


def test_masked_scores_equal_the_full_logits_loss(tiny_bert):
    """The head run on masked positions only gives the loss of HF's own (all-position) forward."""
    from attnbench.data.wordpiece import mlm_collator

    tok, blocks = _blocks()
    module = _mlm_module(tiny_bert).eval()
    batch = mlm_collator(tok, 0.15, seed=2)([blocks[i] for i in range(4)])
    nll, n, _ = module.masked_scores(batch)
    with torch.no_grad():
        ref = module.net(input_ids=batch["input_ids"], labels=batch["labels"]).loss
    assert (nll / n).item() == pytest.approx(ref.item(), rel=1e-5)


def _glue_module(path: str, init_from: str | None):
    from functools import partial

    from attnbench.lit.text_classification import TextClassificationModule
    from attnbench.models.hf_text import pretrained_classifier

    net = pretrained_classifier(path, 2, attention=dict(TREES), dropout=0.0, trainable_attention=True)
    module = TextClassificationModule(net, partial(torch.optim.AdamW, lr=1e-3), "rte", scheduler=None,
                                      init_from=init_from)
    module._trainer = types.SimpleNamespace(callbacks=[])  # setup reads the callbacks
    return module


def test_mlm_checkpoint_round_trips_into_the_glue_model(tiny_bert, tmp_path):
    from attnbench.data.wordpiece import mlm_collator

    tok, blocks = _blocks()
    torch.manual_seed(0)
    mlm = _mlm_module(tiny_bert)
    opt = torch.optim.AdamW(mlm.parameters(), lr=1e-2)
    for _ in range(2):  # move every weight (trees included) away from the pretrained folder's
        nll, n, _ = mlm.masked_scores(mlm_collator(tok, 0.15, seed=3)([blocks[i] for i in range(4)]))
        opt.zero_grad()
        (nll / n).backward()
        opt.step()
    ckpt = tmp_path / "mlm.ckpt"
    torch.save({"state_dict": mlm.state_dict()}, ckpt)

    glue = _glue_module(tiny_bert, str(ckpt))
    before = {k: v.clone() for k, v in glue.net.state_dict().items()}
    glue.setup("fit")
    got, want = glue.net.state_dict(), mlm.net.state_dict()
    encoder = [k for k in got if k.startswith("bert.") and not k.startswith("bert.pooler.")]
    assert any(".attnbench_attention." in k for k in encoder)  # the trees travel too
    for k in encoder:
        assert torch.equal(got[k], want[k]), k
        assert not k.endswith("query.weight") or not torch.equal(got[k], before[k]), k  # really replaced
    for k in [k for k in got if not k.startswith("bert.") or k.startswith("bert.pooler.")]:
        assert torch.equal(got[k], before[k]), k  # the pooler and the classifier keep their init
    untouched = _glue_module(tiny_bert, str(ckpt))
    untouched.setup("test")  # only fitting loads it
    assert torch.equal(untouched.net.state_dict()["bert.encoder.layer.0.attention.self.query.weight"],
                       before["bert.encoder.layer.0.attention.self.query.weight"])


def test_init_from_missing_or_foreign_checkpoint_names_the_key(tiny_bert, tmp_path):
    from attnbench.checkpoint import CheckpointError

    with pytest.raises(CheckpointError, match=r"^model\.init_from='.*nope\.ckpt': no such file"):
        _glue_module(tiny_bert, str(tmp_path / "nope.ckpt")).setup("fit")
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {"net.bert.embeddings.word_embeddings.weight": torch.zeros(7, 5)}}, foreign)
    with pytest.raises(CheckpointError, match=r"model\.init_from='.*foreign\.ckpt' does not fit this model's encoder: "
                                              r"1 tensors of another shape .*encoder tensors missing"):
        _glue_module(tiny_bert, str(foreign)).setup("fit")
    empty = tmp_path / "empty.ckpt"
    torch.save({"state_dict": {"net.classifier.weight": torch.zeros(2, 32)}}, empty)
    with pytest.raises(CheckpointError, match=r"model\.init_from=.* holds no encoder weights"):
        _glue_module(tiny_bert, str(empty)).setup("fit")
    glue = _glue_module(tiny_bert, str(foreign))
    from attnbench.lit.treeformer import TreeBootstrap

    bootstrap = TreeBootstrap(order="depth", steps_per_stage=1, dense_checkpoint="dense.ckpt")
    glue._trainer = types.SimpleNamespace(callbacks=[bootstrap])
    with pytest.raises(ConfigError, match="model.init_from=.* and callbacks.tree_bootstrap.dense_checkpoint"):
        glue.setup("fit")


def test_experiments_compose_validate_and_share_the_tree_options(compose_cfg):
    mlm = compose_cfg(["experiment=treeformer/mlm"])
    validate(mlm)
    assert mlm.model.net.pretrained == "minilm" and mlm.data.tokenizer == "minilm"
    glue = compose_cfg(["experiment=treeformer/glue", "data.task=rte", "model.init_from=/x/last.ckpt"])
    validate(glue)
    assert glue.model.init_from == "/x/last.ckpt"
    trees = OmegaConf.to_container(mlm.model.net.attention)
    assert trees == OmegaConf.to_container(glue.model.net.attention)  # the checkpoint's trees fit the GLUE model
    assert mlm.model.net.trainable_attention and mlm.callbacks.tree_bootstrap.order == "both"
    for override, needle in [("data.mlm_probability=1.5", "data.mlm_probability=1.5 is invalid"),
                             ("model.monitor=val/acc", "model.monitor='val/acc' is invalid"),
                             ("model.warmup_ratio=1.0", "model.warmup_ratio=1.0 is invalid")]:
        with pytest.raises(ConfigError, match=needle):
            validate(compose_cfg(["experiment=treeformer/mlm", override]))
    assert (ROOT / "conf" / "experiment" / "treeformer" / "mlm.yaml").is_file()


@pytest.mark.data
def test_substitute_corpus_in_minilm_blocks_with_fixed_eval_masks():
    from attnbench.data.wordpiece import WordPieceCorpusDataModule

    def make():
        dm = WordPieceCorpusDataModule("imdb_labelled", str(SHARED_DATA), 64, "minilm", batch_size=4,
                                       download=False, limit_docs=40)
        dm.setup("fit")
        return dm

    dm = make()
    train = next(iter(dm.train_dataloader()))
    assert train["input_ids"].shape == train["labels"].shape == (4, 64)
    assert (dm.datasets["train"][0]["input_ids"][0] == dm.tok.cls_token_id).item()
    val = next(iter(dm.val_dataloader()))
    assert torch.equal(val["labels"], next(iter(make().val_dataloader()))["labels"])  # masked once, seeded
    assert 0.1 < (val["labels"] != IGNORE).float().mean().item() < 0.2
    assert "minilm WordPiece" in dm.label and Path(SHARED_DATA).is_dir()


def test_glue_table_labels_runs_started_from_an_mlm_checkpoint():
    from attnbench.analysis.glue import glue_label

    choices = {"model": "tree_bert", "model/attention": "treeformer_tf"}
    config = {"model": {"net": {"pretrained": "minilm"}, "init_from": "/r/last.ckpt"},
              "callbacks": {"tree_bootstrap": {"order": "off"}}}
    assert glue_label(choices, config) == "tree_bert[treeformer_tf] (minilm) boot=off +MLM"
    config["model"]["init_from"] = None
    assert glue_label(choices, config) == "tree_bert[treeformer_tf] (minilm) boot=off"


@pytest.mark.slow
def test_mlm_then_glue_from_its_checkpoint(tmp_path, caplog):
    """experiment=treeformer/mlm writes last.ckpt; experiment=treeformer/glue model.init_from=<it> trains from it."""
    from tests.conftest import QUICK, train_run, write_imdb
    from tests.test_glue import SST2, write_glue

    data = write_imdb(tmp_path / "data", n=30, n_unsup=0)
    res = train_run([*QUICK, "experiment=treeformer/mlm", f"paths.data_dir={data}", "data.block_len=16",
                     "data.limit_docs=null", "data.val_fraction=0.2", "data.test_fraction=0.2",
                     "data.batch_size=4", "data.eval_batch_size=4"], tmp_path / "mlm")
    assert res["status"] == "ok" and res["metrics"]["test/tokens"] > 0 and 0 <= res["metrics"]["test/acc"] <= 100
    (ckpt,) = (tmp_path / "mlm").rglob("last.ckpt")
    glue_data = write_glue(tmp_path / "data", "SST-2", SST2, SST2)
    args = [*QUICK, "experiment=treeformer/glue", "data.task=sst2", "data.max_length=24", "data.batch_size=4",
            "data.eval_batch_size=4", f"paths.data_dir={glue_data}"]
    with caplog.at_level(logging.INFO):
        train_run([*args, f"model.init_from={ckpt}"], tmp_path / "glue")
    assert "model.init_from: encoder from" in caplog.text
    with pytest.raises(Exception) as e:
        train_run([*args, f"model.init_from={tmp_path / 'nope.ckpt'}"], tmp_path / "missing")
    assert "model.init_from=" in str(e.value) and "no such file" in str(e.value)
