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

.PHONY: install demo demo-live test test-all bench evaluate care-peer lint clean

install: $(STAMP)

# torch is installed first at an exact CPU pin so that pip does not resolve the training
# package's open `torch>=` range to several GB of CUDA wheels on dev/CI machines. Users' own
# installs stay free to bring whichever torch build suits their GPU.
$(STAMP): runtime/pyproject.toml training/pyproject.toml acquisition/pyproject.toml napari/pyproject.toml requirements-dev.txt constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -c constraints.txt -e ./runtime -e './training[semireal]' -e ./acquisition -e ./napari -r requirements-dev.txt
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

# ~20 min on 2 CPU cores. Unseen structure (mitochondria) for the widefield model (never trained on
# it), on seeds 700000+ (500000+ served as the development set while the v3.0 recipe was tuned,
# 600000+ for the v2.0 report); the semi-real set (real specimens from PyPI packages, another optical
# and camera model); confocal→STED beads for the PSF-FWHM table; held-out TIRF time-lapses (drift,
# turnover, bleaching) at nine camera settings. The camera-bound v3.0 / v1.0 models (models/legacy)
# run beside the new ones. docs/evaluation.md shows the results.
WF_MODEL := models/widefield-10x0.4-to-20x0.75.onnx
WF_ABLATION := models/ablation/widefield-10x0.4-to-20x0.75-cnn-only.onnx
WF_LEGACY := models/legacy/widefield-10x0.4-to-20x0.75-v3.0.onnx
WF_V40 := models/legacy/widefield-10x0.4-to-20x0.75-v4.0.onnx
evaluate: $(STAMP)
	$(BIN)/srtrain evaluate $(WF_MODEL) out/eval-widefield --ablation $(WF_ABLATION) --compare v3.0=$(WF_LEGACY) --compare v4.0=$(WF_V40) \
		--structure mitochondria -n 8 --seed 700000
	$(BIN)/srtrain evaluate $(WF_MODEL) out/eval-semireal --semireal --ablation $(WF_ABLATION) --compare v3.0=$(WF_LEGACY) --compare v4.0=$(WF_V40)
	$(BIN)/srtrain evaluate models/confocal-to-sted.onnx out/eval-beads --structure beads -n 9 --hr-size 1024 --tile 1024 \
		--compare v1.0=models/legacy/confocal-to-sted-beads-v1.0.onnx
	$(BIN)/python -m srscope.training.evaluation.timelapse models/tirf-100x1.49-to-tirf-sim.onnx out/eval-timelapse

# The CARE peer for bench_robustness (~35 min; its own venv, bench/peers/README.md): CAREamics CARE
# trained for 30 min on the same domain-randomised data as the v4.1 widefield models (green band).
CARE_DATA := runs/wf-green.zarr
care-peer: $(STAMP)
	bash bench/peers/setup_care_env.sh
	test -d $(CARE_DATA) || $(BIN)/python -m srscope.training.gan.simdataset widefield \
		filaments,actin,ccps,nuclei,vesicles,er,cells,membranes,dense_filaments $(CARE_DATA) \
		--train 144 --val 18 --test 9 --fov 512 --patch 128 --randomise --emission-nm 500,570
	bench/peers/.venv-care/bin/python bench/peers/care_peer.py train $(CARE_DATA) runs/care/wf-green --minutes 30 --seed 0

lint: $(STAMP)
	$(BIN)/ruff check runtime training acquisition napari tests bench

clean:
	rm -rf $(VENV) out .pytest_cache
