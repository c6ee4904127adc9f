# Two commands do everything on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PORT   ?= 8501
ADDRESS ?= 127.0.0.1
BIN    := $(VENV)/bin
# Marker files: reinstall only when the requirement files change.
RUN_STAMP := $(VENV)/.run-deps
DEV_STAMP := $(VENV)/.dev-deps
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test lint bench assets table classroom screenshots reliability chromium clean-venv gpu-check

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The project itself is installed editable with its extras (the `kd-core` command included).
$(RUN_STAMP): requirements.txt pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet -e '.[app]'
	touch $@

$(DEV_STAMP): requirements-dev.txt $(RUN_STAMP)
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet -e '.[app,dev]'
	touch $@

## run: start the app on http://$(ADDRESS):$(PORT) (override with PORT=... ADDRESS=...)
run: $(RUN_STAMP)
	$(BIN)/python -m streamlit run serve.py --server.address $(ADDRESS) --server.port $(PORT) \
		--server.headless true --browser.gatherUsageStats false

## chromium: Debian's Chromium for the real-browser tests (installed when missing)
chromium:
	@[ -x /usr/bin/chromium ] || ($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium)

## test: every test, browser tests included
test: $(DEV_STAMP) chromium
	$(BIN)/python -m pytest

## lint: ruff check and format check
lint: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

## reliability: the hardening tests at full size (long load test, more fault trials)
reliability: $(DEV_STAMP) chromium
	KD_CORE_RELIABILITY=full $(BIN)/python -m pytest tests/reliability

## screenshots: regenerate docs/screenshots/ (every page, in headless Chromium)
screenshots: $(DEV_STAMP) chromium
	KD_CORE_SCREENSHOTS=docs/screenshots $(BIN)/python -m pytest tests/browser/test_pages_render.py

## bench: run every benchmark in benchmarks/ (prints figures; the app's in a real browser)
bench: $(DEV_STAMP) chromium
	@for f in benchmarks/bench_*.py; do echo "== $$f"; PYTHONPATH=. $(BIN)/python $$f || exit 1; done

## assets: retrain the bundled teacher and its six students on shapes (about 95 minutes on 2 CPU cores)
assets: $(RUN_STAMP)
	PYTHONPATH=. $(BIN)/python scripts/make_assets.py

## table: the results table in docs/results.md (about 50 minutes per seed on 2 CPU cores, resumable; needs assets)
table: $(RUN_STAMP)
	PYTHONPATH=. $(BIN)/python scripts/make_table.py

## classroom: the Distill page's classroom group measured over 3 seeds and 3 budgets (4 to 16 minutes a budget on 2 CPU cores; needs assets)
classroom: $(RUN_STAMP)
	PYTHONPATH=. $(BIN)/python scripts/classroom.py

## gpu-check: on a GPU machine, with its own python3 (PyTorch; no install, no network): the CUDA tests, benchmarks/bench_gpu.py and docs/gpu.md, in under 8 minutes
gpu-check:
	PYTHONPATH=. $(PYTHON) scripts/gpu_check.py

clean-venv:
	rm -rf $(VENV)
