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

# Benchmark environment: the project's venv plus torch-lucent (the peer), kept out of the project's own venv.
BENCH_VENV := .venv-bench
$(BENCH_VENV)/.ok: $(STAMP)
	$(PYTHON) -m venv $(BENCH_VENV)
	$(PY) -c "import site; print(site.getsitepackages()[0])" > $(BENCH_VENV)/main-site.txt
	cp $(BENCH_VENV)/main-site.txt $$($(BENCH_VENV)/bin/python -c "import site; print(site.getsitepackages()[0])")/fv-main.pth
	$(BENCH_VENV)/bin/pip install -q --no-deps torch-lucent kornia==0.4.1
	$(BENCH_VENV)/bin/pip install -q decorator ipython
	touch $@

.PHONY: bench bench-lucent
bench: $(STAMP)
	$(PY) scripts/bench_render.py --layer mixed4a --units 8 --size 224 --steps 48

bench-lucent: $(BENCH_VENV)/.ok
	$(BENCH_VENV)/bin/python scripts/bench_render.py --layer mixed4a --units 8 --size 224 --steps 48 --vs-lucent
