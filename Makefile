# trainctl developer targets. `make demo` and `make test` set everything up on a fresh machine.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
PYTHON ?= python3

.PHONY: setup demo test smoke lint bench bench-deps clean

setup: $(STAMP)

# Re-installs only when the project's requirements change; torch is pinned to the local CPU build.
$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test]'
	@touch $(STAMP)

demo: setup
	$(VENV)/bin/trainctl train

# Two test processes, a test file each at a time (a file's module fixtures are built once).
test: setup
	$(VENV)/bin/python -m pytest -q -n 2 --dist loadfile

# A few steps of every preset: finite, falling loss; resume and determinism bit for bit (CI runs it).
# Data sets: $TRAINCTL_DATA_DIR, else ../shared/data.
smoke: setup
	TRAINCTL_DATA_DIR="$${TRAINCTL_DATA_DIR:-$(abspath ../shared/data)}" \
		$(VENV)/bin/trainctl smoke --check-resume --check-determinism

lint: setup
	$(VENV)/bin/ruff check .

bench: setup
	$(PY) -m bench

# The peers of `python -m bench topn` (the bench extra). LightFM 1.17's setup.py fails in pip's isolated
# build environment, so it is built first against the venv's own setuptools and numpy.
bench-deps: setup
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt setuptools wheel
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt --no-build-isolation lightfm
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test,bench]'

clean:
	rm -rf runs .pytest_cache .ruff_cache
