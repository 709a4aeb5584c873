"""CAB's LM (causal) and MLM (non-causal) tasks: corpora, byte tokens, blocks, masking, models, perplexity, runs."""

from __future__ import annotations

import io
import math

import pytest
import torch

from attnbench.attention.registry import CapabilityError
from attnbench.config import ConfigError, validate
from attnbench.data.catalog.corpus import BYTE, PG19_HUB, PG19_SPLITS
from attnbench.data.corpus import (
    IGNORE,
    BlockDataset,
    ByteTokenizer,
    CorpusDataModule,
    mask_tokens,
    seeded_split,
    token_stream,
)
from attnbench.data.download import DataError
from attnbench.data.imdb import read_imdb
from attnbench.models.lm import GPTDecoder, RobertaEncoder
from tests.conftest import QUICK, train_multirun, write_imdb

TINY = {"d_model": 16, "n_heads": 2, "n_layers": 2, "d_mlp": 32, "dropout": 0.0}


# ----------------------------------------------------------------------------- data
def test_read_imdb_yields_unsup_only_when_asked(tmp_path):
    path = write_imdb(tmp_path, n=2, n_unsup=11) / "imdb" / "aclImdb_v1.tar.gz"
    plain = read_imdb(path)
    assert set(plain) == {"train", "test"} and len(plain["train"][0]) == 4  # unsup stays out of train
    data = read_imdb(path, unsup=True)
    texts, labels = data["unsup"]
    assert len(texts) == 11 and labels == [] and texts[2][0].startswith("Unlabelled review number 2:")
    assert len(data["train"][0]) == 4 and data["train"][1] == [0, 0, 1, 1]


def test_imdb_unsup_missing_names_the_offline_copy_and_the_labelled_substitute(tmp_path):
    write_imdb(tmp_path, n_unsup=0)
    dm = CorpusDataModule("imdb_unsup", str(tmp_path), 16, download=False, verify=False)
    with pytest.raises(DataError, match=r"no aclImdb/train/unsup/\*\.txt reviews.*shared/data(.|\n)*"
                                        r"data\.name=imdb_labelled"):
        dm.setup()


def test_imdb_corpora_split_by_document_with_a_seed(tmp_path):
    write_imdb(tmp_path, n=2, n_unsup=40)
    dm = CorpusDataModule("imdb_unsup", str(tmp_path), 16, val_fraction=0.1, test_fraction=0.2, seed=3,
                          download=False, verify=False)
    docs = dm.documents()
    assert [len(docs[s]) for s in ("train", "val", "test")] == [28, 4, 8]
    assert len({d for s in docs.values() for d in s}) == 40  # disjoint, all reviews used
    assert docs == CorpusDataModule("imdb_unsup", str(tmp_path), 16, val_fraction=0.1, test_fraction=0.2, seed=3,
                                    download=False, verify=False).documents()
    assert docs["val"] != CorpusDataModule("imdb_unsup", str(tmp_path), 16, val_fraction=0.1, test_fraction=0.2,
                                           seed=4, download=False, verify=False).documents()["val"]
    parts = seeded_split(1000, 0.05, 0.05, 0)
    assert [len(parts[s]) for s in ("train", "val", "test")] == [900, 50, 50]
    labelled = CorpusDataModule("imdb_labelled", str(tmp_path), 16, val_fraction=0.25, test_fraction=0.25,
                                download=False, verify=False).documents()
    assert sum(map(len, labelled.values())) == 8 and dm.label == "substitute corpus: aclImdb unsup"


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    """datasets' cache (the Arrow copies load_dataset writes) under tmp_path."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf")


def pg19_dm(root, block_len: int = 64, **kw) -> CorpusDataModule:
    return CorpusDataModule("pg19", str(root), block_len, val_fraction=None, test_fraction=None, **kw)


@pytest.mark.parametrize("download", [False, True])
def test_pg19_missing_names_both_ways_in_one_error(tmp_path, monkeypatch, download):
    import datasets

    def unreachable(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'deepmind/pg19' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(datasets, "load_dataset", unreachable)
    dm = pg19_dm(tmp_path, download=download)
    with pytest.raises(DataError) as e:
        dm.setup()
    msg = str(e.value)
    for part in (str(tmp_path / "pg19"), "{train,validation,test}/<id>.txt", "gs://deepmind-gutenberg",
                 "python scripts/prepare_data.py pg19", "emozilla/pg19", "data.name=imdb_unsup",
                 f"the Hub: deepmind/pg19 at revision {PG19_HUB.revision}", "no books for split train, val, test",
                 "not tried (data.download=false)" if download is False else
                 "could not be loaded (split train: ConnectionError: Couldn't reach 'deepmind/pg19'"):
        assert part in msg, part
    with pytest.raises(ValueError, match="official splits: set data.val_fraction=null"):
        CorpusDataModule("pg19", str(tmp_path), 64)


def test_pg19_a_split_missing_locally_comes_from_the_hub(tmp_path, monkeypatch, hf_cache):
    import datasets

    real, calls = datasets.load_dataset, []

    def hub(path, *args, **kwargs):
        if path != PG19_HUB.repo:
            return real(path, *args, **kwargs)
        calls.append((path, kwargs["revision"], kwargs["split"]))
        return datasets.Dataset.from_dict({"short_book_title": ["T"], "text": ["hub train book " * 10]})

    monkeypatch.setattr(datasets, "load_dataset", hub)
    for folder in ("validation", "test"):
        (tmp_path / "pg19" / folder).mkdir(parents=True)
        (tmp_path / "pg19" / folder / "1.txt").write_text(f"{folder} book " * 10)
    with pytest.raises(DataError, match=r"no books for split train:(.|\n)*not tried \(data.download=false\)"):
        pg19_dm(tmp_path, download=False).prepare_data()
    docs = pg19_dm(tmp_path, 16, download=True).documents()
    assert docs == {"train": ["hub train book " * 10], "val": ["validation book " * 10], "test": ["test book " * 10]}
    assert calls == [(PG19_HUB.repo, PG19_HUB.revision, "train")]


def read_pg19_reference(root, split: str) -> list[str]:
    """The hand-written reader PG-19 had before ``datasets`` (the oracle of the test below)."""
    import pandas as pd

    folder = PG19_SPLITS[split]
    books = sorted((root / folder).glob("*.txt"))
    if books:
        return [b.read_text(encoding="utf-8") for b in books]
    parquet = sorted((root / "data").glob(f"{folder}-*.parquet")) + sorted(root.glob(f"{folder}-*.parquet"))
    return [t for p in parquet for t in pd.read_parquet(p, columns=["text"])["text"].tolist()]


@pytest.mark.parametrize("layout", ["txt", "parquet"])
def test_pg19_through_datasets_gives_the_old_readers_blocks(tmp_path, hf_cache, layout):
    """Both layouts: the same books in the same order (file names sorted as strings: 10 before 2; CRLF read as LF;
    UTF-8; an empty book) and so the same byte blocks as the old reader."""
    import pandas as pd

    root = tmp_path / "pg19"
    books = {"train": ["Caf\u00e9 \u2603 line\r\nnext line\n" * 9, "", "third \U0001d11e book\n\n" * 7,
                       "fourth"],
             "val": ["validation book\r\n" * 12], "test": ["test one " * 8, "test two\n" * 5]}
    for split, texts in books.items():
        folder = PG19_SPLITS[split]
        if layout == "txt":
            (root / folder).mkdir(parents=True)
            for i, text in zip((2, 10, 3, 41), texts, strict=False):
                (root / folder / f"{i}.txt").write_bytes(text.encode("utf-8"))
        else:  # two shards under data/ (and one at the top, as some copies have them), extra columns
            (root / "data").mkdir(parents=True, exist_ok=True)
            shards = [(root / "data" / f"{folder}-00001-of-00002.parquet", texts[1::2]),
                      (root / "data" / f"{folder}-00000-of-00002.parquet", texts[0::2][:1]),
                      (root / f"{folder}-00000-of-00001.parquet", texts[0::2][1:])]
            for path, part in filter(lambda shard: shard[1], shards):
                pd.DataFrame({"short_book_title": ["t"] * len(part), "text": part,
                              "publication_date": [1900] * len(part)}).to_parquet(path)
    dm = pg19_dm(tmp_path, 16, download=False)
    dm.setup()
    docs = dm.documents()
    for split in ("train", "val", "test"):
        old = read_pg19_reference(root, split)
        assert docs[split] == old and len(old) == len(books[split]), split
        ref = BlockDataset(token_stream(old, dm.tok), 16)
        new = dm.datasets[split]
        assert len(new) == len(ref) > 0 and torch.equal(new.stream, ref.stream), split
        assert all(torch.equal(new[i], ref[i]) for i in range(len(ref)))
    if layout == "txt":
        assert docs["train"][0] == books["train"][1] and "\r" not in docs["val"][0]  # 10.txt first; CRLF -> LF
    assert pg19_dm(tmp_path, 16, download=False, limit_docs=1).documents()["train"] == docs["train"][:1]


def test_pg19_reads_the_gcs_layout(tmp_path, hf_cache):
    for folder, n in (("train", 3), ("validation", 1), ("test", 2)):
        (tmp_path / "pg19" / folder).mkdir(parents=True)
        for i in range(n):
            (tmp_path / "pg19" / folder / f"{100 + i}.txt").write_text(f"{folder} book {i} " * 20)
    dm = CorpusDataModule("pg19", str(tmp_path), 32, val_fraction=None, test_fraction=None, download=False)
    dm.setup()
    docs = dm.documents()
    assert [len(docs[s]) for s in ("train", "val", "test")] == [3, 1, 2] and docs["val"][0].startswith("validation")
    assert len(dm.datasets["test"]) == (2 * (len("test book 0 ") * 20 + 1) - 1) // 32


def test_fetch_pg19_pages_the_bucket_listing_checks_md5_and_fails_offline(tmp_path, monkeypatch, capsys, hf_cache):
    import base64
    import hashlib
    import json
    import urllib.error
    import urllib.parse

    from scripts.prepare_data import main as prepare_data

    books = {"validation/1.txt": b"book one", "validation/2.txt": b"book two", "test/3.txt": b"book three"}
    md5 = {k: base64.b64encode(hashlib.md5(v).digest()).decode() for k, v in books.items()}
    calls = []

    def urlopen(url, timeout=None):
        calls.append(url)
        if "/storage/v1/b/" in url:
            q = dict(urllib.parse.parse_qsl(url.split("?", 1)[1]))
            names = sorted(k for k in books if k.startswith(q["prefix"]))
            page = names[1:] if q.get("pageToken") else names[:1]  # one book per page
            body = {"items": [{"name": n, "md5Hash": md5[n]} for n in page],
                    **({"nextPageToken": "p2"} if not q.get("pageToken") and len(names) > 1 else {})}
            return io.BytesIO(json.dumps(body).encode())
        return io.BytesIO(books[urllib.parse.unquote(url.split("deepmind-gutenberg/", 1)[1])])

    monkeypatch.setattr("urllib.request.urlopen", urlopen)
    assert prepare_data(["pg19", "--data-dir", str(tmp_path)]) == 0
    for name, body in books.items():
        assert (tmp_path / "pg19" / name).read_bytes() == body
    n = len(calls)
    assert prepare_data(["pg19", "--data-dir", str(tmp_path)]) == 0
    assert len(calls) - n == 3  # listings only: the books on disk match their md5
    dm = CorpusDataModule("pg19", str(tmp_path), 4, val_fraction=None, test_fraction=None, download=False)
    (tmp_path / "pg19" / "train").mkdir()
    (tmp_path / "pg19" / "train" / "9.txt").write_text("train book")
    assert dm.documents()["val"] == ["book one", "book two"]

    def offline(url, timeout=None):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr("urllib.request.urlopen", offline)
    assert prepare_data(["pg19", "--data-dir", str(tmp_path / "x"), "--pg19-splits", "train"]) == 1
    err = capsys.readouterr().err
    assert "download from gs://deepmind-gutenberg failed" in err and "gsutil -m cp -r" in err


def test_byte_tokens_round_trip_and_stream_layout():
    tok = ByteTokenizer()
    text = "Na\u00efve caf\u00e9 \u2014 \u2603 \U0001d11e <br />\n"
    ids = tok.encode(text)
    assert ids.max() < 256 and len(ids) == len(text.encode("utf-8")) and tok.decode(ids) == text
    stream = token_stream(["ab", "\u00e9"], tok)
    assert stream.tolist() == [97, 98, BYTE.eos_id, 0xC3, 0xA9, BYTE.eos_id]
    assert tok.decode(stream) == "ab\u00e9" and BYTE.vocab_size == 258


def test_blocks_are_contiguous_windows_sharing_one_token():
    stream = torch.arange(23, dtype=torch.int16)
    ds = BlockDataset(stream, 5)
    assert len(ds) == 4  # (23 - 1) // 5; the remainder is dropped
    assert ds[0].tolist() == [0, 1, 2, 3, 4, 5] and ds[3].tolist() == [15, 16, 17, 18, 19, 20]
    assert ds[0].dtype == torch.int64
    targets = torch.cat([ds[i][1:] for i in range(len(ds))])
    assert targets.tolist() == list(range(1, 21))  # every token after the first predicted exactly once
    inputs = torch.cat([ds[i][:-1] for i in range(len(ds))])
    assert inputs.tolist() == list(range(20))  # MLM blocks: contiguous, non-overlapping
    with pytest.raises(IndexError):
        ds[4]


def test_mlm_masking_rates_labels_and_seed():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(256, (64, 4096), generator=g)
    ids[:, ::50] = BYTE.eos_id  # specials are never selected
    inputs, labels = mask_tokens(ids, BYTE, torch.Generator().manual_seed(1))
    sel = labels != IGNORE
    regular = ids < 256
    assert not sel[~regular].any() and (labels[sel] == ids[sel]).all()
    assert (inputs[~sel] == ids[~sel]).all()  # unselected tokens untouched
    rate = sel.sum().item() / regular.sum().item()
    assert abs(rate - 0.15) < 0.003, rate
    n = sel.sum().item()
    masked = (inputs[sel] == BYTE.mask_id).sum().item() / n
    kept = (inputs[sel] == ids[sel]).sum().item() / n
    replaced = ((inputs[sel] != ids[sel]) & (inputs[sel] != BYTE.mask_id)).sum().item() / n
    assert abs(masked - 0.8) < 0.006 and abs(kept - (0.1 + 0.1 / 256)) < 0.006
    assert abs(replaced - 0.1 * 255 / 256) < 0.006  # a random token may draw itself
    assert (inputs[sel] <= BYTE.mask_id).all() and not (inputs == BYTE.eos_id).logical_and(sel).any()
    again = mask_tokens(ids, BYTE, torch.Generator().manual_seed(1))
    assert torch.equal(again[0], inputs) and torch.equal(again[1], labels)
    other = mask_tokens(ids, BYTE, torch.Generator().manual_seed(2))
    assert not torch.equal(other[1], labels)


# ----------------------------------------------------------------------------- models
@pytest.mark.parametrize("attention", [{"name": "full"}, {"name": "linear"}, {"name": "local", "window": 3},
                                       {"name": "performer", "n_features": 16}])
def test_causal_lm_ignores_future_tokens(attention):
    torch.manual_seed(0)
    net = GPTDecoder(BYTE.vocab_size, 24, attention, **TINY).eval()
    x = torch.randint(256, (2, 24))
    y = x.clone()
    y[:, 13:] = torch.randint(256, (2, 11))
    with torch.no_grad():
        a, b = net(x), net(y)
    assert a.shape == (2, 24, BYTE.vocab_size)
    assert torch.allclose(a[:, :13], b[:, :13], atol=1e-5)
    assert not torch.allclose(a[:, 13:], b[:, 13:], atol=1e-3)


def test_mlm_encoder_sees_both_sides_and_ties_its_decoder():
    torch.manual_seed(0)
    net = RobertaEncoder(BYTE.vocab_size, 16, {"name": "full"}, **TINY).eval()
    x = torch.randint(256, (1, 16))
    y = x.clone()
    y[0, 10] = (x[0, 10] + 1) % 256
    with torch.no_grad():
        assert not torch.allclose(net(x)[:, :10], net(y)[:, :10], atol=1e-4)  # the future matters
    names = [n for n, _ in net.named_parameters()]
    assert "tok_emb.weight" in names and not any("decoder" in n for n in names)  # the decoder is the embedding


def test_lm_refuses_an_attention_without_causal_support(compose_cfg):
    with pytest.raises(CapabilityError, match="'nystrom' does not support causal=True; entries that do: .*linear"):
        GPTDecoder(BYTE.vocab_size, 16, {"name": "nystrom"}, **TINY)
    RobertaEncoder(BYTE.vocab_size, 16, {"name": "nystrom", "n_landmarks": 4}, **TINY)  # MLM: fine
    with pytest.raises(ConfigError, match="'nystrom' cannot run causally.*entries that can: .*local"):
        validate(compose_cfg(["model=cab_lm", "data=corpus", "model/attention=nystrom"]))
    validate(compose_cfg(["model=cab_mlm", "data=corpus", "model/attention=nystrom"]))
    with pytest.raises(ConfigError, match="model.net.max_len=64 is shorter than data.block_len=256"):
        validate(compose_cfg(["model=cab_lm", "data=corpus", "model.net.max_len=64"]))
    with pytest.raises(ConfigError, match="data.val_fraction=0.01 is invalid: must be null for data.name=pg19"):
        validate(compose_cfg(["model=cab_lm", "data=corpus", "data.name=pg19"]))


@pytest.mark.parametrize("experiment", ["cab/lm", "cab/mlm"])
def test_experiments_sweep_attentions_their_pattern_allows(compose_cfg, experiment):
    """(Every job composes and validates: tests/test_experiments.py.)"""
    from attnbench import attention_spec

    cfg = compose_cfg([f"experiment={experiment}"], hydra=True)
    attentions = str(cfg.hydra.sweeper.params["model/attention"]).split(",")
    assert len(attentions) >= 5 and "full" in attentions
    if experiment == "cab/lm":
        assert all(attention_spec.get(a).caps["causal"] for a in attentions)
    assert cfg.data.block_len == 256 and cfg.model.net.max_len == 256 and cfg.data.name == "imdb_unsup"


# ----------------------------------------------------------------------------- perplexity
class _TableNet(torch.nn.Module):
    """logits[b, t] = table[ids[b, t]]: a fixed bigram model."""

    causal, vocab_size = True, BYTE.vocab_size

    def __init__(self) -> None:
        super().__init__()
        self.table = torch.nn.Parameter(torch.randn(BYTE.vocab_size, BYTE.vocab_size,
                                                    generator=torch.Generator().manual_seed(0)))

    def forward(self, ids):
        return self.table[ids]


def test_perplexity_is_exp_of_the_token_weighted_nll_over_the_split():
    import functools

    import lightning as L

    from attnbench.lit.lm import LanguageModelingModule

    module = LanguageModelingModule(_TableNet(), functools.partial(torch.optim.SGD, lr=0.1), "lm", "byte")
    big = torch.randint(256, (3, 9), generator=torch.Generator().manual_seed(1))  # 3 x 8 scored tokens
    small = torch.randint(256, (1, 3), generator=torch.Generator().manual_seed(2))  # 1 x 2 scored tokens
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False)
    batches = torch.utils.data.DataLoader([big, small], batch_size=None)  # two batches of unequal size
    (out,) = trainer.validate(module, batches, verbose=False)
    table = module.net.table.detach().double()
    nlls = []
    for w in (big, small):
        for row in w.tolist():
            for a, b in zip(row[:-1], row[1:], strict=True):
                z = table[a]
                nlls.append(float(torch.logsumexp(z, 0) - z[b]))
    assert len(nlls) == 26 and out["val/tokens"] == 26
    assert out["val/ppl"] == pytest.approx(math.exp(sum(nlls) / len(nlls)), rel=1e-5)
    assert out["val/loss"] == pytest.approx(sum(nlls) / len(nlls), rel=1e-5)
    per_batch = [math.exp(sum(nlls[:24]) / 24), math.exp(sum(nlls[24:]) / 2)]
    assert abs(out["val/ppl"] - sum(per_batch) / 2) > 1e-3  # not a batch mean of perplexities


def test_mlm_scores_only_masked_tokens_with_fixed_eval_masks():
    import functools

    from attnbench.lit.lm import LanguageModelingModule

    net = RobertaEncoder(BYTE.vocab_size, 32, {"name": "full"}, **TINY)
    module = LanguageModelingModule(net, functools.partial(torch.optim.SGD, lr=0.1), "mlm", "byte")
    w = torch.randint(256, (4, 33))
    x, y = module.inputs_targets(w, "val", 0)
    assert x.shape == y.shape == (4, 32) and 0 < (y != IGNORE).sum() < 4 * 32
    assert torch.equal(module.inputs_targets(w, "val", 0)[1], y)  # same batch, same masks every epoch
    assert not torch.equal(module.inputs_targets(w, "val", 1)[1], y)
    with pytest.raises(ValueError, match="objective='lm' needs a causal net"):
        LanguageModelingModule(net, functools.partial(torch.optim.SGD, lr=0.1), "lm", "byte")


# ----------------------------------------------------------------------------- end to end
SMALL = [*QUICK, "data=corpus", "data.block_len=64", "data.batch_size=4", "data.eval_batch_size=4",
         "data.val_fraction=0.2", "data.test_fraction=0.2", "model.net.d_model=16", "model.net.n_heads=2",
         "model.net.n_layers=1", "model.net.d_mlp=32"]


@pytest.mark.slow
@pytest.mark.parametrize("model, attentions", [("cab_lm", "full,linear,reformer"),  # exact, linear, clustering
                                               ("cab_mlm", "full,performer,smyrf")])
def test_debug_fast_runs_on_the_tiny_corpus(tmp_path, model, attentions):
    data = write_imdb(tmp_path / "data", n_unsup=30)
    jobs = train_multirun([*SMALL, f"model={model}", f"model/attention={attentions}", f"paths.data_dir={data}"],
                          tmp_path / "sweep")
    assert sorted(r["config"]["model"]["net"]["attention"]["name"] for r in jobs) == sorted(attentions.split(","))
    for res in jobs:
        m = res["metrics"]
        assert res["status"] == "ok" and 1.0 < m["test/ppl"] < 2 * BYTE.vocab_size, m
        assert m["test/loss"] == pytest.approx(math.log(m["test/ppl"]), rel=1e-4) and m["test/tokens"] > 0
        assert math.isfinite(m["val/ppl"]) and res["config"]["data"]["name"] == "imdb_unsup"


# ----------------------------------------------------------------------------- table
def test_perplexity_table_labels_our_corpus_and_cab_rows(tmp_path):
    import json

    from attnbench.analysis.report import write_table
    from attnbench.analysis.spec import experiment_spec

    spec = experiment_spec("cab/lm")
    assert (spec.kind, spec.metrics, spec.direction, spec.reference) == ("perplexity", ["ppl"], "lower", "cab_lm")
    block = {"kind": "perplexity", "rows": ["task"], "columns": "model", "metrics": ["ppl"], "direction": "lower",
             "reference": "cab_lm", "notes": ["a note"]}
    for num, (att, seed, ppl) in enumerate([("full", 1, 3.0), ("full", 2, 4.0), ("linear", 1, 5.0)]):
        d = tmp_path / str(num)
        d.mkdir()
        config = {"seed": seed, "table": block, "data": {"name": "imdb_unsup", "block_len": 256},
                  "model": {"objective": "lm", "net": {"attention": {"name": att}}}}
        (d / "results.json").write_text(json.dumps({
            "status": "ok", "metrics": {"test/ppl": ppl}, "config": config,
            "choices": {"model": "cab_lm", "model/attention": att}, "overrides": [f"seed={seed}"]}))
    md, paths = write_table(tmp_path)
    assert "| model | LM (CS) PPL |" in md
    assert "| ours: full [substitute corpus: aclImdb unsup, 256 tokens] | 3.50 ± 0.71 (n=2) |" in md
    assert "| ours: linear [substitute corpus: aclImdb unsup, 256 tokens] | 5.00 (n=1) |" in md
    assert "| CAB: local | 19.73 |" in md and "Performer" not in md  # MLM-only rows stay out of an LM table
    assert "tasks/LM/README.md" in md and "a note" in md
    assert {p.name for p in paths} >= {"table.md", "table.tex", "table.csv", "runs.csv"}
