# zs2020: `make all` builds a validated submission on the embedded demo corpus;
# `make all DATASET=/path/to/zerospeech2020 CONFIG=full` does the same on the real data.
# Every stage checks its own outputs and is skipped when they are up to date.

SHELL     := /bin/bash
PYTHON    ?= python3
VENV      ?= .venv
BIN       := $(VENV)/bin
ZS        := $(BIN)/zs2020
CONFIG    ?= demo
DATASET   ?= data/corpus
RUN       ?= data/runs/$(CONFIG)
JOBS      ?= 2
# Extra key=value config overrides for the training stages, e.g. OVERRIDES="vqvae.train.steps=500".
OVERRIDES ?=
# Official file lists (share/2019/<language> of the official package), when you have them.
FILELISTS ?=
# Demo corpus size (tiny, demo or N); empty = corpus.scale of the config.
CORPUS_SCALE ?=

FILELIST_OPT := $(if $(FILELISTS),--filelists $(FILELISTS),)

.PHONY: all setup venv system-deps corpus features vqvae melgan melgan-universal submission validate evaluate test bench clean help

help:
	@echo "make all        corpus -> features -> vqvae -> melgan -> submission -> validate (demo corpus by default)"
	@echo "make test       the test suite (installs what it needs)"
	@echo "make evaluate   ABX, bitrate and converted-speech measures of the submission"
	@echo "variables: CONFIG=$(CONFIG) DATASET=$(DATASET) RUN=$(RUN) JOBS=$(JOBS) OVERRIDES=... FILELISTS=..."

all: validate

# The Debian TTS engines (apt) only build the demo corpus: with DATASET set to real data, no
# target installs them (`make test` builds the tiny demo corpus, so it always needs them).
DEMO_DEPS := $(if $(filter data/corpus,$(DATASET)),system-deps,)

setup: venv $(DEMO_DEPS)

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -e '.[dev]'
	@touch $@

system-deps:
	@bash scripts/install_system_deps.sh

# The embedded demo corpus is only built when DATASET is the default.
corpus: setup
ifeq ($(DATASET),data/corpus)
	$(ZS) corpus --out data/corpus --config $(CONFIG) $(if $(CORPUS_SCALE),--scale $(CORPUS_SCALE),) --jobs $(JOBS)
endif

features: corpus
	$(ZS) features --dataset $(DATASET) --out $(RUN)/features --config $(CONFIG) --jobs $(JOBS)

vqvae: features
	$(ZS) train-vqvae --features $(RUN)/features --out $(RUN)/vqvae --config $(CONFIG) $(OVERRIDES)

# The vocoder trains on the VQ-VAE-2's reconstructions of the target voices (melgan.train.input_mels).
melgan: vqvae
	$(ZS) train-melgan --features $(RUN)/features --dataset $(DATASET) --out $(RUN)/melgan --vqvae $(RUN)/vqvae/checkpoint.pt --config $(CONFIG) $(OVERRIDES)

# A vocoder for every training voice, for one-shot conversion (`zs2020 convert --reference`, vqmivc runs).
melgan-universal: vqvae
	$(ZS) train-melgan --features $(RUN)/features --dataset $(DATASET) --out $(RUN)/melgan_universal --vqvae $(RUN)/vqvae/checkpoint.pt --config $(CONFIG) $(OVERRIDES) melgan.train.speakers=all

submission: vqvae melgan
	$(ZS) submit --dataset $(DATASET) --run $(RUN) --out $(RUN)/submission --config $(CONFIG) $(FILELIST_OPT) $(OVERRIDES)

validate: submission
	$(ZS) validate $(RUN)/submission --dataset $(DATASET) $(FILELIST_OPT)
	$(ZS) validate $(RUN)/submission.zip --dataset $(DATASET) $(FILELIST_OPT)

evaluate: venv
	$(ZS) evaluate $(RUN)/submission --dataset $(DATASET) --out $(RUN)/evaluation --run $(RUN) --config $(CONFIG) --jobs $(JOBS) $(FILELIST_OPT) $(OVERRIDES)

test: venv system-deps
	$(BIN)/python -m pytest -q tests

bench: setup
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf data/runs
