# Two commands do all the set-up on a fresh machine:
#   make demo   installs into .venv and runs the main job on the embedded default data
#   make test   installs into .venv and runs the whole test suite
# make test-fast runs the suite without the slow and browser tests (seconds, for editing loops).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.reclens-installed

.PHONY: install demo test test-fast lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch 2.13.0 is the CPU wheel this machine carries; elsewhere any torch>=2.4 will do.
	$(PY) -m pip install -q "torch==2.13.0" || $(PY) -m pip install -q "torch>=2.4"
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/reclens demo

test: $(STAMP)
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow and not ui"

lint: $(STAMP)
	$(VENV)/bin/ruff check .

bench: $(STAMP)
	for b in bench/*_bench.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
