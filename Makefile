# Two commands do all set-up on a fresh machine (only Python 3.11-3.13 + pip needed):
#   make demo   -> venv, install, Adult quickstart (DP + fairness + pruning) -> runs/quickstart
#   make test   -> venv, install, pip check, test suite
# Installs use constraints.txt (the pinned versions CI and docker/Dockerfile.gpu install); setup.cfg has the ranges.
# CONSTRAINTS=other.txt picks another file (.ci/run's TensorFlow 2.20 leg).
# Choose the interpreter with PY (default python3.11); each Python version gets its own venv:
#   make test PY=python3.13          -> .venv-3.13 (python3.11 keeps .venv)
#   make test PY=python3.13 TESTS="tests/privacy tests/foundation"
# With pyenv, a version that is installed but not active (the shim says "command not found") is found
# under $(pyenv root)/versions.
PY ?= python3.11
PYEXE := $(shell $(PY) -V >/dev/null 2>&1 && command -v $(PY) || \
           ls -d $$(pyenv root 2>/dev/null)/versions/$(patsubst python%,%,$(notdir $(PY)))*/bin/$(notdir $(PY)) \
           2>/dev/null | tail -1)
PYVER := $(if $(PYEXE),$(shell $(PYEXE) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null))
VENV ?= $(if $(filter 3.11,$(PYVER)),.venv,.venv-$(PYVER))
BIN = $(VENV)/bin
STAMP = $(VENV)/.tfresp-installed
TESTS ?=
CONSTRAINTS ?= constraints.txt
# `make test` runs the suite on 2 pytest-xdist workers (CI has 2 cores; one process used one core). --dist loadfile
# keeps every test file on one worker, so a module's fitted fixtures are built once. Plain `pytest` (one file, -x,
# --pdb) stays in one process; `make test PYTEST_XDIST=` does the same here, PYTEST_XDIST="-n 4 --dist loadfile" more.
PYTEST_XDIST ?= -n 2 --dist loadfile

.PHONY: demo test test-all bench install check-python clean

check-python:
	@test -n "$(PYVER)" || { echo "PY=$(PY): no such Python interpreter (need 3.11-3.13)"; exit 2; }

$(STAMP): setup.cfg pyproject.toml setup.py $(CONSTRAINTS) | check-python
	test -x $(BIN)/python || $(PYEXE) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -c $(CONSTRAINTS) -e '.[dev]'
	$(BIN)/python -m pip check
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/tfresp fit quickstart --out runs/quickstart --overwrite

test: $(STAMP)
	$(BIN)/python -m pip check
	$(BIN)/python -m pytest -q -p no:cacheprovider $(PYTEST_XDIST) $(TESTS)

# test-all stays in one process: the slow Flower deployments (real SuperLink/SuperNode processes) were not checked
# under xdist.
test-all: $(STAMP)
	$(BIN)/python -m pytest -q -m "slow or not slow" $(TESTS)

bench: $(STAMP)
	for b in benchmarks/*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf .venv .venv-3.* .venv-tf* runs build dist *.egg-info
