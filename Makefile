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

.PHONY: install test demo multi30k multi30k-de-en multi30k-en-de data bench bench-prep bench-train bench-distributed bench-translate bench-architectures clean help

help:
	@echo "make test | demo | multi30k PAIR=de-en|en-de | data | bench | bench-prep | bench-train | bench-distributed | bench-translate | bench-architectures | clean   (see README.md)"

# torch first, pinned to the local CPU build, so the range in pyproject.toml is already
# satisfied and pip never pulls a CUDA build; then nmt itself, editable, with test extras.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/pip install --quiet -e ".[test]"
	@touch $@

install: $(STAMP)

test: $(STAMP)
	$(BIN)/ruff format --check --quiet .
	$(BIN)/ruff check --quiet .
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# Multi30k task 1: checksum-verified in MULTI30K_DIR, else downloaded into data/multi30k.
DATASETS := $(BIN)/python -m nmt_cli.datasets --dir "$(MULTI30K_DIR)" --download-to data/multi30k

data: $(STAMP)
	$(DATASETS)

# The main job. Each stage is a file target, so a second `make demo` skips what is done.
DEMO_MODEL  := $(WORK)/demo-de-en
DEMO_RECIPE ?= recipes/multi30k_de_en_quick.yaml
DEMO_TIME   ?= 10m
DEMO_TEST  := $(WORK)/prep-de-en/test_2016_flickr

demo: $(DEMO_MODEL)/test.score.txt
	@echo "demo: test_2016_flickr (de->en), beam 5, sacreBLEU on detokenized output:" >&2
	@cat $(DEMO_MODEL)/test.score.txt >&2
	@printf 'demo: validation: ' >&2; $(BIN)/python -m nmt_cli.train.metrics $(DEMO_MODEL)
	@echo "demo: five examples (source / translation / reference):" >&2
	@for i in 1 2 3 4 5; do \
	    echo "  de:  $$(sed -n "$${i}p" $(DEMO_TEST).de.txt)"; \
	    echo "  hyp: $$(sed -n "$${i}p" $(DEMO_MODEL)/test.hyp.en)"; \
	    echo "  ref: $$(sed -n "$${i}p" $(DEMO_TEST).en.txt)"; echo; done >&2
	@echo "demo: files: prep $(WORK)/prep-de-en, model $(DEMO_MODEL)/best.pt (metrics.jsonl beside it)," >&2
	@echo "      translations $(DEMO_MODEL)/test.hyp.en, scores $(DEMO_MODEL)/test.score.txt" >&2

$(DEMO_MODEL)/best.pt: $(WORK)/prep-de-en/manifest.json $(DEMO_RECIPE) recipes/multi30k_de_en.yaml  # the quick recipe's base
	rm -rf $(DEMO_MODEL)
	$(BIN)/nmt train $(DEMO_RECIPE) --data $(WORK)/prep-de-en --out $(DEMO_MODEL) --set train.max_time=$(DEMO_TIME)

$(DEMO_MODEL)/test.hyp.en: $(DEMO_MODEL)/best.pt
	$(BIN)/nmt translate -m $(DEMO_MODEL)/best.pt --beam 5 $(DEMO_TEST).de.txt -o $@

$(DEMO_MODEL)/test.score.txt: $(DEMO_MODEL)/test.hyp.en
	$(BIN)/nmt score -r $(DEMO_TEST).en.txt $< --metrics bleu,chrf,ter > $@.tmp && mv $@.tmp $@

bench: bench-prep bench-train bench-distributed bench-translate

bench-prep: $(STAMP)
	$(BIN)/python bench/bench_prep.py --multi30k "$(MULTI30K_DIR)" --work $(WORK)/bench

bench-train: $(WORK)/prep-de-en/manifest.json
	$(BIN)/python bench/bench_train.py --prep $(WORK)/prep-de-en

bench-distributed: $(WORK)/prep-de-en/manifest.json
	$(BIN)/python bench/bench_distributed.py --prep $(WORK)/prep-de-en --ranks 2 --threads 1 --steps 30 --log-every 5

# The course's cell x attention grid and recipes, 20 minutes each, 3 at a time: 2 hours (not in `make bench`)
bench-architectures: $(WORK)/prep-de-en/manifest.json
	$(BIN)/python bench/bench_architectures.py --prep $(WORK)/prep-de-en --grid --jobs 3 --threads 1 --minutes 20 \
		--work $(WORK)/grid --results $(WORK)/grid/results.md

# Translation speed needs a trained de-en model: the demo's (make demo), or BENCH_MODEL=...
BENCH_MODEL ?= $(DEMO_MODEL)/best.pt
bench-translate: $(BENCH_MODEL)
	$(BIN)/python bench/bench_translate.py --model $(BENCH_MODEL)

# Full runs: a pair's recipe (recipes/multi30k_de_en.yaml, ..._en_de.yaml) trained until it
# stops (early stopping or its max_time), test_2016_flickr translated greedy and beam 5, both
# scored. `make multi30k PAIR=en-de`, or `make multi30k-de-en` / `make multi30k-en-de`.
# TRAIN_ARGS adds nmt train options (e.g. TRAIN_ARGS="--set train.max_time=60m"); RECIPE
# replaces the pair's recipe. A run stopped by Ctrl-C continues from its newest checkpoint.
PAIR       ?= de-en
RECIPE     ?=
TRAIN_ARGS ?=
recipe_of = recipes/multi30k_$(subst -,_,$(1)).yaml
pair_recipe = $(or $(RECIPE),$(call recipe_of,$(1)))
src_of = $(firstword $(subst -, ,$(1)))
tgt_of = $(lastword $(subst -, ,$(1)))

multi30k: multi30k-$(PAIR)

multi30k-de-en multi30k-en-de: multi30k-%: $(WORK)/multi30k-%/test.scores.txt
	@cat $< >&2
	@printf 'multi30k-$*: validation: ' >&2; $(BIN)/python -m nmt_cli.train.metrics $(WORK)/multi30k-$*
	@echo "multi30k-$*: model $(WORK)/multi30k-$*/best.pt; test translations test.beam1.txt (greedy)" \
	    "and test.beam5.txt and their scores test.scores.txt beside it" >&2

.SECONDEXPANSION:
.SECONDARY:  # keep every stage's output: each is a result, and the next make skips it
# train.done marks a finished run (best.pt exists from the first validation on).
$(WORK)/multi30k-%/train.done: $(WORK)/prep-%/manifest.json $$(call pair_recipe,$$*)
	$(BIN)/nmt train $(call pair_recipe,$*) --data $(WORK)/prep-$* --out $(@D) \
	    $(if $(wildcard $(@D)/ckpt-*.pt),--resume) $(TRAIN_ARGS)
	@touch $@

# $(call translate_test,BEAM): the run's test source, translated by its best checkpoint
translate_test = $(BIN)/nmt translate -m $(@D)/best.pt --beam $(1) $(WORK)/prep-$*/test_2016_flickr.$(call src_of,$*).txt -o $@

$(WORK)/multi30k-%/test.beam1.txt: $(WORK)/multi30k-%/train.done
	$(call translate_test,1)

$(WORK)/multi30k-%/test.beam5.txt: $(WORK)/multi30k-%/train.done
	$(call translate_test,5)

$(WORK)/multi30k-%/test.scores.txt: $(WORK)/multi30k-%/test.beam1.txt $(WORK)/multi30k-%/test.beam5.txt
	$(BIN)/nmt score -r $(WORK)/prep-$*/test_2016_flickr.$(call tgt_of,$*).txt $^ --metrics bleu,chrf,ter > $@.tmp && mv $@.tmp $@

# Multi30k prepared for a pair with the data section of its recipe (re-running prep is a
# no-op when up to date); the demo's de-en and the full de-en run share one directory.
# PREP_RECIPE replaces the recipe; DATA_DIR: a directory of train/val/test_2016_flickr.{de,en}[.gz]
# used as it is, unverified (the tests run the stages on a slice with recipes/tiny.yaml).
PREP_RECIPE ?=
DATA_DIR    ?=
prep_recipe = $(or $(PREP_RECIPE),$(call recipe_of,$(1)))
$(WORK)/prep-%/manifest.json: $(STAMP) $$(call prep_recipe,$$*)
	@D=$(or $(DATA_DIR),$$($(DATASETS) --print-dir)) && $(BIN)/nmt prep --recipe $(call prep_recipe,$*) \
	    --src-lang $(call src_of,$*) --tgt-lang $(call tgt_of,$*) \
	    --train $$D/train --valid $$D/val --test $$D/test_2016_flickr --out $(WORK)/prep-$*

clean:
	rm -rf $(WORK) .pytest_cache
