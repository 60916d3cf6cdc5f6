# srscope — every target sets itself up on a fresh machine.
#   make demo    run the shipped default model on a generated sample (figure + OME-Zarr in out/demo)
#   make test    the test suite (what CI runs)
#   make bench   benchmarks, JSON in bench/results/
#   make evaluate  the paper's comparisons (GAN vs bilinear / Lucy–Richardson / NNLS / CNN-only), reports in out/eval-*
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.srscope-installed
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: install demo demo-live test test-all bench evaluate lint clean

install: $(STAMP)

# torch is installed first at an exact CPU pin so that pip does not resolve the training
# package's open `torch>=` range to several GB of CUDA wheels on dev/CI machines. Users' own
# installs stay free to bring whichever torch build suits their GPU.
$(STAMP): runtime/pyproject.toml training/pyproject.toml acquisition/pyproject.toml requirements-dev.txt constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -c constraints.txt -e ./runtime -e './training[semireal]' -e ./acquisition -r requirements-dev.txt
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m srscope.training.demo --out out/demo

demo-live: $(STAMP)
	$(BIN)/python -m srscope.acquisition.demo --out out/demo-live

test: $(STAMP)
	$(BIN)/python -m pytest tests

test-all: $(STAMP)
	$(BIN)/python -m pytest tests --runslow

bench: $(STAMP)
	mkdir -p bench/results
	$(BIN)/python bench/run_bench.py --out bench/results

# ~10 min on 2 CPU cores. Unseen structure (mitochondria) for the widefield model (trained on filaments,
# actin, CCPs and nuclei), on seeds 700000+ (500000+ served as the development set while the training
# recipe was tuned, 600000+ for the v2.0 report);
# confocal→STED beads for the PSF-FWHM table. docs/evaluation.md shows the results.
evaluate: $(STAMP)
	$(BIN)/srtrain evaluate models/widefield-10x0.4-to-20x0.75.onnx out/eval-widefield \
		--ablation models/ablation/widefield-10x0.4-to-20x0.75-cnn-only.onnx --structure mitochondria -n 8 \
		--seed 700000
	$(BIN)/srtrain evaluate models/confocal-to-sted-beads.onnx out/eval-beads --structure beads -n 9 --hr-size 1024 --tile 1024

lint: $(STAMP)
	$(BIN)/ruff check runtime training acquisition tests bench

clean:
	rm -rf $(VENV) out .pytest_cache
