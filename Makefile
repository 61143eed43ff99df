# The README's two commands: `make quickstart` (set up, then run the main job) and
# `make test` (set up, then run the test suite). Both build .venv once.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
# A CPU build of PyTorch: a plain `pip install torch` pulls several GB of CUDA packages.
# On a GPU machine, install the CUDA build of the same version into .venv first.
TORCH_VERSION ?= 2.13.0
TORCH_INDEX   ?= https://download.pytorch.org/whl/cpu

.PHONY: setup quickstart test test-fast bench bench-scale clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml $(BIN)/python
	$(BIN)/pip install --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || \
	  $(BIN)/pip install "torch==$(TORCH_VERSION)+cpu" 2>/dev/null || \
	  $(BIN)/pip install "torch==$(TORCH_VERSION)+cpu" --extra-index-url $(TORCH_INDEX)
	$(BIN)/pip install -e ".[test]"
	touch $@

setup: $(VENV)/.installed

quickstart: setup
	$(BIN)/ecgtransfer data verify ptbxl --sample
	$(BIN)/ecgtransfer run pipelines/quickstart.yaml

test: setup
	$(BIN)/python -m pytest

# The developer's loop: everything but the subprocess, torchrun, browser, notebook and
# whole-pipeline tests (marked slow), on two cores (pytest-xdist, one torch thread each; a test
# file stays on one worker, so its module fixtures are built once); `make test` (what CI runs)
# keeps them all, in one process.
test-fast: setup
	$(BIN)/python -m pytest -m "not slow" -n 2 --dist loadfile

# ECGdeli (GPL-3.0) is a baseline of the QT Database benchmark only: installed beside the
# benchmarks, never into the package's environment or its dependencies.
bench: setup
	$(BIN)/pip install --quiet --no-deps --target benchmarks/.gpl "ecgdeli==1.0.0"
	$(BIN)/python benchmarks/bench_store.py
	$(BIN)/python benchmarks/bench_synth.py
	$(BIN)/python benchmarks/synth_amplitude.py
	$(BIN)/python benchmarks/bench_label.py
	$(BIN)/python benchmarks/bench_waves.py
	$(BIN)/python benchmarks/label_realism.py
	$(BIN)/python benchmarks/label_vs_diagnosis.py
	$(BIN)/python benchmarks/bench_pretrain.py
	$(BIN)/python benchmarks/bench_tune.py
	$(BIN)/python benchmarks/bench_finetune.py
	$(BIN)/python benchmarks/ptbxl_tasks.py
	$(BIN)/python benchmarks/bench_data.py

# Every stage at 1/10 and at the study's full size (about 45 GB in WORK, 1-2 hours on 2 cores).
WORK ?= bench-scale
bench-scale: setup
	$(BIN)/python benchmarks/bench_scale.py --work $(WORK) --out $(WORK)/scale.json

clean:
	rm -rf $(VENV) runs build *.egg-info
