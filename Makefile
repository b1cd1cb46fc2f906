# Two commands on a fresh machine: `make run` and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test browser lint bench gpu-check migrate demo clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

# torch/torchvision are pinned to the releases this machine keeps on disk, so pip takes them
# from there instead of downloading a CUDA build; everything else comes from pyproject.toml.
# (This machine's pip configuration warns about every missing local index folder: filtered.)
QUIET_PIP := 2>&1 | { grep -v "^WARNING: Location 'file://" || true; }

$(STAMP): pyproject.toml requirements-torch.txt | $(BIN)/python
	@echo "installing into $(VENV) (PyTorch is large: a minute or two)..."
	$(BIN)/pip install -q -r requirements-torch.txt $(QUIET_PIP)
	$(BIN)/pip install -q -e '.[test]' $(QUIET_PIP)
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/python -m app migrate
	$(BIN)/python -m app serve --host $(HOST) --port $(PORT) --demo-on-first-start

# The browser tests need Debian's chromium + chromium-driver: installed here when missing.
browser:
	@bash tests/ensure_browser.sh

# SLURM (one node) and PostgreSQL are started for the tests and stopped after (as root, no
# systemd; Debian's packages are installed when missing): see tests/run_suite.sh.
test: $(STAMP) browser
	bash tests/run_suite.sh $(BIN)/python

lint: $(STAMP)
	$(BIN)/ruff check app trainer tests bench migrations

# Each prints one JSON line. The trainer and metrics benches take minutes on a CPU
# (pass --device cuda on a GPU machine).
bench: $(STAMP)
	$(BIN)/python bench/slice_render.py
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/trainer_speed.py --res 32,64
	$(BIN)/python bench/metrics_speed.py
	$(BIN)/python bench/dicom_ingest.py
	$(BIN)/python bench/viewer_step.py
	$(BIN)/python bench/login_flood.py
	$(BIN)/python bench/utility.py  # about 10-20 min on 2 CPU cores
	$(BIN)/python bench/review_concurrency.py
	eval "$$(bash tests/services/slurm.sh start)" && $(BIN)/python bench/slurm_overhead.py; \
	rc=$$?; bash tests/services/slurm.sh stop; exit $$rc

# On a machine with an NVIDIA GPU: the one-call CUDA proof (<= 8 min on one H100/H200).
gpu-check: $(STAMP)
	$(BIN)/python bench/gpu_check.py --outdir data/gpu-check

migrate: $(STAMP)
	$(BIN)/python -m app migrate

demo: $(STAMP)
	$(BIN)/python -m app demo

clean:
	rm -rf $(VENV) data
