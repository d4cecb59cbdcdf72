# Two commands do all set-up on a fresh machine:
#   make run    set up, index the XP library (+ LAMOST=DIR if given) on the embedded store, start the app
#   make test   set up and run the whole test suite
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
# torch is installed first so that nothing pulls another build. These machines' pip
# configuration finds the CPU wheel locally; elsewhere PyPI's Linux wheel is the multi-GB CUDA
# one, so pass TORCH_INDEX=https://download.pytorch.org/whl/cpu for the CPU build.
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
STORE  ?= var/store
SOURCES ?= xp-library
LAMOST ?=
LAMOST_LABELS ?=
CROSSMATCH ?=
PORT   ?= 8501
# make run ADDRESS=0.0.0.0 serves the app to other machines (default: this machine only)
ADDRESS ?= 127.0.0.1

# e.g. make run LAMOST=../shared/data/pairs_lamost_xp CROSSMATCH=../shared/data/pairs_lamost_xp/pairs.csv
LAMOST_ARGS = $(if $(LAMOST),$(LAMOST)) $(if $(LAMOST_LABELS),--labels $(LAMOST_LABELS)) \
	$(if $(CROSSMATCH),--crossmatch $(CROSSMATCH))

.PHONY: setup run index app test test-fast bench bench-full bundle evaluate lint clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/python -m pip install --quiet -e ".[test,scale]"
	touch $@

index: setup
	$(BIN)/specclip -v index --store $(STORE) $(SOURCES) $(LAMOST_ARGS) --report var/index-report.json

app: setup
	$(BIN)/specclip app --store $(STORE) --port $(PORT) --address $(ADDRESS)

run: index app

test: setup
	$(BIN)/python -m pytest

test-fast: setup
	$(BIN)/python -m pytest -m "not slow and not browser"

# Benchmarks: JSON + PNG under benchmarks/results/. Default: the store up to 100k points,
# numpy and FAISS to 1M (~6-8 min quiet); bench-full builds the store at 1M too (~20+ min).
BENCH_ARGS ?=
bench: setup
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)

bench-full: setup
	$(BIN)/python benchmarks/run.py --edge-max-n 1000000 $(BENCH_ARGS)

# Reproduce the shipped small bundle from the real data in ../shared/data (CPU, minutes).
# TRAIN_WORKERS: how many of the config's 7 trainings run side by side (one torch thread each)
TRAIN_WORKERS ?= 2
bundle: setup
	$(BIN)/specclip -v train --config small --out engine/bundles/small --workers $(TRAIN_WORKERS)
	$(BIN)/specclip -v fit-reference --bundle engine/bundles/small
	$(BIN)/python -m training.cross_rank_fit --bundle engine/bundles/small
	$(BIN)/specclip -v evaluate --bundle engine/bundles/small --into-bundle \
		--lamost ../shared/data/lamost_dr10 --lamost-labels ../shared/data/lamost_dr10/labels.csv \
		--out var/metrics.json

evaluate: setup
	$(BIN)/specclip -v evaluate --lamost ../shared/data/lamost_dr10/spectra \
		--lamost-labels ../shared/data/lamost_dr10/labels.csv --out var/metrics.json

lint: setup
	$(BIN)/ruff check engine indexer training app tests benchmarks

clean:
	rm -rf var .pytest_cache
