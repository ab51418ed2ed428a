# bids_enhance — two entry points: `make demo` and `make test` (see README.md).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
PY     := $(VENV)/bin/python
# The CPU build of PyTorch (installed only when torch is missing, so GPU users keep theirs).
TORCH_PIN ?= torch==2.13.0
DEMO_DIR ?= demo
NPROCS ?= 2

.PHONY: demo test install lint clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet "$(TORCH_PIN)"
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	rm -rf $(DEMO_DIR)
	$(PY) -m bids_enhance.demo $(DEMO_DIR)/bids
	$(VENV)/bin/bids_enhance $(DEMO_DIR)/bids $(DEMO_DIR)/out participant --participant-label 01 02 \
		-w $(DEMO_DIR)/work --nprocs $(NPROCS) --omp-nthreads $(NPROCS) --random-seed 42
	$(VENV)/bin/bids_enhance $(DEMO_DIR)/bids $(DEMO_DIR)/out participant --participant-label 03 \
		--enhance superres -w $(DEMO_DIR)/work --nprocs $(NPROCS) --omp-nthreads $(NPROCS) \
		--random-seed 42
	$(VENV)/bin/bids_enhance $(DEMO_DIR)/bids $(DEMO_DIR)/out group
	@echo
	@echo "Reports:"
	@ls -1 $(abspath $(DEMO_DIR))/out/sub-*.html $(abspath $(DEMO_DIR))/out/group_*.html
	@echo
	@echo "Open them in a browser. To run bids_enhance yourself: source $(VENV)/bin/activate"

test: $(VENV)/.installed
	$(PY) -m pytest -q

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check bids_enhance tests benchmarks

clean:
	rm -rf $(DEMO_DIR) .pytest_cache build dist *.egg-info
