"""LRA ListOps: the generator against an independent evaluator and the official script, the official file layout,
the reader's tokenisation and errors, and the prepare_data command."""

from __future__ import annotations

import hashlib
import statistics
from collections import Counter
from pathlib import Path

import pytest
import torch

from attnbench.data.catalog.lra import LRA_TASKS
from attnbench.data.download import DataError
from attnbench.data.lra import listops
from attnbench.data.lra.common import PAD_ID
from attnbench.data.lra.listops import ListOpsSpec, generate, load_split, tokenize, write_splits

SPEC = ListOpsSpec(n_train=1000, n_val=100, n_test=100)  # the official lengths 501-1999, ~3 s


def evaluate(source: str) -> tuple[int, int]:
    """(value, length) of a serialised ListOps expression by a stack machine over its whitespace tokens, written
    without the generator: ``(`` and ``)`` carry no meaning; an operator opens a frame, ``]`` closes it."""
    ops = {"[MIN": min, "[MAX": max, "[MED": lambda a: int(statistics.median(a)), "[SM": lambda a: sum(a) % 10}
    stack: list[tuple[str, list[int]]] = [("top", [])]
    length = 0
    for tok in source.split():
        if tok in "()":
            continue
        length += 1
        if tok in ops:
            stack.append((tok, []))
        elif tok == "]":
            op, args = stack.pop()
            assert len(args) >= 2, f"{op} closed with {len(args)} arguments"
            stack[-1][1].append(ops[op](args))
        else:
            assert tok.isdigit() and len(tok) == 1, tok
            stack[-1][1].append(int(tok))
    assert len(stack) == 1 and len(stack[0][1]) == 1, "unbalanced expression"
    return stack[0][1][0], length


def depth_of(source: str) -> int:
    """Operator nesting depth (the root operator is at depth 1)."""
    d = best = 0
    for tok in source.split():
        if tok.startswith("["):
            d += 1
            best = max(best, d)
        elif tok == "]":
            d -= 1
    return best


def test_evaluator_on_hand_written_expressions():
    assert evaluate("( ( ( [MAX 2 ) 9 ) ] )") == (9, 4)
    assert evaluate("( ( ( ( [MED 1 ) 2 ) 8 ) ] )")[0] == 2
    assert evaluate("( ( ( ( ( [MED 1 ) 2 ) 8 ) 9 ) ] )")[0] == 5  # (2 + 8) / 2
    assert evaluate("( ( ( [MED 1 ) 2 ) ] )")[0] == 1  # 1.5 truncated
    assert evaluate("( ( ( ( [SM 9 ) 8 ) ( ( ( [MIN 3 ) 7 ) ] ) ) ] )") == (0, 8)  # (9 + 8 + 3) % 10


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    return write_splits(tmp_path_factory.mktemp("listops"), SPEC, seed=0)


def _read(path: Path) -> list[tuple[str, int]]:
    lines = path.read_text().split("\n")
    assert lines[0] == "Source\tTarget" and lines[-1] == ""  # header, one row per line, trailing newline
    rows = [line.split("\t") for line in lines[1:-1]]
    assert all(len(r) == 2 for r in rows)
    return [(s, int(t)) for s, t in rows]


def test_official_tsv_layout(files):
    assert {s: p.name for s, p in files.items()} == {"train": "basic_train.tsv", "val": "basic_val.tsv",
                                                     "test": "basic_test.tsv"}
    rows = {s: _read(p) for s, p in files.items()}
    assert [len(rows[s]) for s in ("train", "val", "test")] == [1000, 100, 100]
    src = rows["train"][0][0]
    assert src.startswith("( ") and src.endswith(" ] )")
    raw = files["val"].read_bytes()  # csv.writer's line ends, as the official script writes them
    assert raw.startswith(b"Source\tTarget\r\n") and raw.count(b"\r\n") == 101 and raw.count(b"\n") == 101


def test_every_label_is_the_value_of_its_expression(files):
    rows = [r for p in files.values() for r in _read(p)]
    lengths = []
    for source, target in rows:
        value, length = evaluate(source)
        assert target == value, source
        assert depth_of(source) <= SPEC.max_depth
        lengths.append(length)
    assert min(lengths) > 500 and max(lengths) < 2000
    assert len({s for s, _ in rows}) == len(rows)  # de-duplicated across the three splits
    assert 900 < statistics.mean(lengths) < 1250  # digest: mean 1064 over 3,000


def test_label_distribution_is_skewed_to_0_and_9(files):
    """Digest A.2: 0 and 9 about 17 % each, 1-8 about 8 % each (here 1,000 trees: sd about 1.2 points)."""
    c = Counter(t for _, t in _read(files["train"]))
    assert 0.12 < c[0] / 1000 < 0.23 and 0.12 < c[9] / 1000 < 0.23
    assert max(c[k] for k in range(1, 9)) < min(c[0], c[9])


def test_seeded_and_same_draws_as_the_official_script():
    """sha256 of the first 20 accepted trees (``source<TAB>target`` lines) that the official
    ``lra_benchmarks/data/listops.py`` draws after ``random.seed(s)`` (its generate_tree / to_string / to_value,
    run beside ours once; 11,000 draws of trees also matched one by one)."""
    official = {0: "482cb77049ad1e22208770fd79038e6879a584eeec1614454c50544ea5b9465f",
                1: "37d979d53564750380a18f0191793151a0ef93e348aa8e46f7f6ba43c7718e2b"}
    for seed, digest in official.items():
        rows = generate(ListOpsSpec(n_train=20, n_val=0, n_test=0), seed)["train"]
        assert hashlib.sha256("\n".join(f"{s}\t{v}" for s, v in rows).encode()).hexdigest() == digest
    small = ListOpsSpec(n_train=30, n_val=5, n_test=5, min_length=10, max_length=60)
    assert generate(small, 3) == generate(small, 3) != generate(small, 4)


def test_small_lengths_for_quick_sets():
    data = generate(ListOpsSpec(n_train=40, n_val=5, n_test=5, min_length=10, max_length=30), seed=1)
    assert [len(data[s]) for s in ("train", "val", "test")] == [40, 5, 5]
    for source, target in (r for rows in data.values() for r in rows):
        value, length = evaluate(source)
        assert value == target and 10 < length < 30
    with pytest.raises(ValueError, match="strictly between"):
        ListOpsSpec(min_length=10, max_length=11)


def test_tokenisation_drops_parentheses_keeps_close_bracket():
    # ids: digits 1-10, [MIN 11, [MAX 12, [MED 13, [SM 14, ] 15, pad 0
    assert tokenize("( ( ( [MAX 2 ) 9 ) ] )") == [12, 3, 10, 15]
    assert tokenize("( ( ( ( [SM 0 ) ( ( ( [MIN 3 ) 7 ) ] ) ) ( ( ( [MED 1 ) 8 ) ] ) ) ] )") == \
        [14, 1, 11, 4, 8, 15, 13, 2, 9, 15, 15]
    assert listops.VOCAB[:10] == tuple("0123456789") and len(listops.VOCAB) == 15
    assert LRA_TASKS["listops"] == listops.INFO and listops.INFO.vocab_size == 16
    with pytest.raises(ValueError, match=r"token 'X' is not one of the 15"):
        tokenize("( ( ( [MAX 2 ) 9 ) X )")  # the official pipeline's renamed ']' is not in the files


def test_load_split_ids_truncation_padding(tmp_path):
    listops.write_tsv(tmp_path / "basic_val.tsv", [("( ( ( [MAX 2 ) 9 ) ] )", 9),
                                                   ("( ( ( ( [SM 9 ) 8 ) 4 ) ] )", 1)])
    x, y = load_split(tmp_path, "val", max_len=5)
    assert x.dtype == y.dtype == torch.int64 and x.shape == (2, 5)
    assert x.tolist() == [[12, 3, 10, 15, PAD_ID], [14, 10, 9, 5, 15]] and y.tolist() == [9, 1]
    x, _ = load_split(tmp_path, "val", max_len=3)
    assert x.tolist() == [[12, 3, 10], [14, 10, 9]]  # truncated as the official [:max_length]


def test_reader_errors_say_what_and_how(tmp_path):
    root = tmp_path / "lra" / "listops"
    with pytest.raises(DataError) as e:
        load_split(root, "train", 2000)
    msg = str(e.value)
    assert f"{root / 'basic_train.tsv'} not found" in msg
    assert f"python scripts/prepare_data.py listops --generate --data-dir {tmp_path}" in msg
    root.mkdir(parents=True)
    (root / "basic_test.tsv").write_text("source\ttarget\n( ( ( [MAX 2 ) 9 ) ] )\t9\n")
    with pytest.raises(DataError, match="header 'Source"):
        load_split(root, "test", 2000)
    (root / "basic_test.tsv").write_text("Source\tTarget\n( ( ( [MAX 2 ) 9 ) ] )\t9\n( ( ( [MAX 2 ) 19 ) ] )\t9\n")
    with pytest.raises(DataError, match="line 3: listops: token '19'"):
        load_split(root, "test", 2000)


def test_prepare_data_generates_the_official_files(tmp_path, capsys):
    from scripts.prepare_data import main as prepare_data

    args = ["listops", "--generate", "--n-train", "12", "--n-val", "3", "--n-test", "3", "--seed", "5",
            "--min-length", "10", "--max-length", "40", "--data-dir", str(tmp_path)]
    assert prepare_data(args) == 0
    root = tmp_path / "lra" / "listops"
    rows = {s: _read(root / f"basic_{s}.tsv") for s in ("train", "val", "test")}
    assert [len(rows[s]) for s in ("train", "val", "test")] == [12, 3, 3]
    spec = ListOpsSpec(n_train=12, n_val=3, n_test=3, min_length=10, max_length=40)
    assert rows == {s: [(a, int(b)) for a, b in r] for s, r in generate(spec, 5).items()}
    capsys.readouterr()
    assert prepare_data(["listops", "--data-dir", str(tmp_path)]) == 2
    assert "add --generate" in capsys.readouterr().err


def test_load_split_limit_stops_reading_after_the_first_rows(tmp_path):
    rows = [("( ( ( [MAX 2 ) 9 ) ] )", 9), ("( ( ( ( [SM 9 ) 8 ) 4 ) ] )", 1), ("( ( [MIN 3 ) 7 ] )", 3)]
    listops.write_tsv(tmp_path / "basic_val.tsv", rows)
    x, y = load_split(tmp_path, "val", max_len=8)
    x2, y2 = load_split(tmp_path, "val", max_len=8, limit=2)
    assert torch.equal(x2, x[:2]) and y2.tolist() == [9, 1]
    # a malformed row after the limit is never read
    with open(tmp_path / "basic_val.tsv", "a") as f:
        f.write("( ( [MAX X ) ] )\t4\n")
    assert load_split(tmp_path, "val", max_len=8, limit=3)[1].tolist() == [9, 1, 3]
    with pytest.raises(DataError, match="line 5"):
        load_split(tmp_path, "val", max_len=8)
