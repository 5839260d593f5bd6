# Two commands a fresh machine needs: `make demo` and `make test`. Each builds .venv if it is missing.
PYTHON ?= python3
VENV ?= .venv
# The CPU build of torch (CI and laptops). For a CUDA build, see docs/install.md.
TORCH_SPEC ?= torch==2.13.0
PIP_TORCH_ARGS ?=

PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo bench train study test lint clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet $(PIP_TORCH_ARGS) "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@

demo: $(STAMP)
	$(PY) jobs/eval_revos.py

bench: $(STAMP)
	$(PY) benchmarks/pruning.py
	$(PY) benchmarks/flops.py
	$(PY) benchmarks/data.py

# The training recipe (the shipped v5, 5e8ee3d: 70 min on 2 cores shared with other work; rerun to resume), then the pruning study (hours; resumable), speed on trained weights and the outside check.
train: $(STAMP)
	$(PY) jobs/train.py --out runs/train-synth --copy-to checkpoints/synth-hyperseg

study: $(STAMP)
	$(PY) benchmarks/study.py
	$(PY) benchmarks/trained_speed.py
	$(PY) benchmarks/outside.py

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(PY) -m ruff check pipeline tests benchmarks jobs
	$(PY) -m ruff format --check pipeline tests benchmarks jobs

clean:
	rm -rf $(VENV)
