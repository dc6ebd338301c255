# nmt: two commands set everything up on a fresh machine:
#   make test   creates .venv, installs torch then nmt with its test extras, runs the tests
#   make demo   installs, then runs the main job on Multi30k (prep -> train -> translate -> score)

PYTHON      ?= python3
VENV        ?= .venv
TORCH_SPEC  ?= torch==2.13.0
MULTI30K_DIR ?= ../shared/data/multi30k
WORK        ?= work
PYTEST_ARGS ?=

BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export MULTI30K_DIR

.PHONY: install test demo data bench bench-prep bench-train clean help

help:
	@echo "make test | demo | data | bench | bench-prep | clean   (see README.md)"

# torch first, pinned to the local CPU build, so the range in pyproject.toml is already
# satisfied and pip never pulls a CUDA build; then nmt itself, editable, with test extras.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/pip install --quiet -e ".[test]"
	@touch $@

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# Multi30k task 1: checksum-verified in MULTI30K_DIR, else downloaded into data/multi30k.
DATASETS := $(BIN)/python -m nmt_cli.datasets --dir "$(MULTI30K_DIR)" --download-to data/multi30k

data: $(STAMP)
	$(DATASETS)

# The main job. Each stage is a file target, so a second `make demo` skips what is done.
DEMO_MODEL := $(WORK)/demo-de-en
DEMO_TIME  ?= 10m

demo: $(DEMO_MODEL)/best.pt
	@echo "demo: prepared data in $(WORK)/prep-de-en, model in $(DEMO_MODEL) (best.pt, metrics.jsonl)." >&2
	@printf 'demo: ' >&2; $(BIN)/python -m nmt_cli.train.metrics $(DEMO_MODEL)
	@echo "demo: translate and score are not implemented yet (issues #4, #5)." >&2

$(DEMO_MODEL)/best.pt: $(WORK)/prep-de-en/manifest.json recipes/multi30k_de_en.yaml
	rm -rf $(DEMO_MODEL)
	$(BIN)/nmt train recipes/multi30k_de_en.yaml --data $(WORK)/prep-de-en --out $(DEMO_MODEL) --set train.max_time=$(DEMO_TIME)

bench: bench-prep bench-train

bench-prep: $(STAMP)
	$(BIN)/python bench/bench_prep.py --multi30k "$(MULTI30K_DIR)" --work $(WORK)/bench

bench-train: $(WORK)/prep-de-en/manifest.json
	$(BIN)/python bench/bench_train.py --prep $(WORK)/prep-de-en

# Multi30k de-en prepared with the de-en recipe (re-running prep is a no-op when up to date).
$(WORK)/prep-de-en/manifest.json: $(STAMP) recipes/multi30k_de_en.yaml
	@D=$$($(DATASETS) --print-dir) && $(BIN)/nmt prep --recipe recipes/multi30k_de_en.yaml \
	    --train $$D/train --valid $$D/val --test $$D/test_2016_flickr --out $(WORK)/prep-de-en

clean:
	rm -rf $(WORK) .pytest_cache
