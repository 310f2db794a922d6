# Everything a fresh machine with python3 needs: `make demo`, `make test`, `make bench`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test bench samples readme clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml setup.py xentcli/_ckernel.c xentcli/_ctally.c xentcli/_cmath.h | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml setup.py xentcli/_ckernel.c xentcli/_ctally.c xentcli/_cmath.h | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@ $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/xent score sample_data/cifar10_val.parquet --id-col id --worst 5

# The HTML report's browser test opens the page in Debian's headless Chromium: installed here when missing.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

test: $(VENV)/.installed-dev
	@command -v chromium >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium >/dev/null; }
	$(BIN)/python -m pytest

# torch (a pinned CPU wheel) only for the bench's reference scripts; if it cannot be installed the
# bench still runs and says "torch not available" in those cells.
bench: $(VENV)/.installed
	-$(BIN)/python -m pip install --quiet --disable-pip-version-check 'torch==2.13.0'
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dask]'
	$(BIN)/python bench/run_bench.py

# Rewrite the console examples in README.md from fresh runs (tests/test_readme.py checks them).
readme: $(VENV)/.installed
	$(BIN)/python tests/readme_blocks.py --update

samples: $(VENV)/.installed
	$(BIN)/python sample_data/make_samples.py

clean:
	rm -rf $(VENV) bench/data build *.egg-info xentcli/*.so
