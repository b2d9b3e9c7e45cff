# Two commands do all the set-up on a fresh machine:
#   make app    create .venv if missing, install, start the Streamlit app
#   make test   create .venv if missing, install (with dev extras), run the test suite
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: app test test-quick lint install bench results clean-venv

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# torch==2.13.0 first: it is the CPU wheel; an unpinned torch would pull a multi-GB CUDA build.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# Localhost only: any visitor of the app can start long trainings.  To expose it deliberately, see
# docs/hardening.md (e.g. `make app ADDRESS=0.0.0.0` behind an authenticating proxy).
ADDRESS ?= 127.0.0.1
app: $(STAMP)
	$(BIN)/streamlit run app --server.address $(ADDRESS)

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-quick: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow and not browser"

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python benchmarks/throughput.py

results: $(STAMP)
	$(BIN)/python benchmarks/results.py
