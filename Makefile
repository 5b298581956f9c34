# fv: everything runs from a local virtual environment created on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
FV := $(VENV)/bin/fv
STAMP := $(VENV)/.fv-installed
TORCH_PIN := torch==2.14.1 torchvision==0.29.1

.PHONY: install test demo demo-model clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip >/dev/null 2>&1 || true
	$(PY) -m pip install -q $(TORCH_PIN)
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest

clean:
	rm -rf out runs .pytest_cache
