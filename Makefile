# fv: everything runs from a local virtual environment created on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
FV := $(VENV)/bin/fv
STAMP := $(VENV)/.fv-installed
TORCH_PIN := torch==2.14.1 torchvision==0.29.1

.PHONY: install test demo demo-model clean docs fuzz chaos test-oldest test-isa

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip >/dev/null 2>&1 || true
	$(PY) -m pip install -q $(TORCH_PIN)
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

test: $(STAMP) chromium
	$(PY) -m pytest

# The oldest torch / torchvision that pyproject.toml allows (scripts/oldest_pins.py reads the floors), in a second
# virtual environment (.venv-oldest; ~3 GB of CUDA wheels from the package index on first use), and the whole suite
# on them. A failure here means the floor in pyproject.toml is a lie: raise it to the oldest release that passes.
OLDEST_VENV ?= .venv-oldest
test-oldest: chromium
	test -x $(OLDEST_VENV)/bin/python || $(PYTHON) -m venv $(OLDEST_VENV)
	$(OLDEST_VENV)/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
	$(OLDEST_VENV)/bin/python -m pip install -q $$($(PYTHON) scripts/oldest_pins.py)
	$(OLDEST_VENV)/bin/python -m pip install -q -e '.[test]'
	$(OLDEST_VENV)/bin/python -c "import torch, torchvision; print('test-oldest: torch', torch.__version__, 'torchvision', torchvision.__version__)"
	$(OLDEST_VENV)/bin/python -m pytest $(TEST_ARGS)

# The suite under other instruction sets on this machine (scripts/test_isa.sh): oneDNN capped with ONEDNN_MAX_CPU_ISA
# and ATen's kernels with ATEN_CPU_CAPABILITY, so a developer on one CPU sees what fails on another (AVX2-only,
# AVX-512 without bf16). ISA_TESTS=numerics (default) runs the tests that compare floats across batches, threads
# and runs; ISA_TESTS=all the whole suite per ISA. ISAS="avx2 avx512_core" picks the ISAs (default: both).
ISA_TESTS ?= numerics
ISAS ?= avx2 avx512_core
test-isa: $(STAMP)
	PY=$(PY) ISA_TESTS=$(ISA_TESTS) scripts/test_isa.sh $(ISAS)

# How far a unit's picture moves with its batch on this CPU, per emulated ISA (scripts/drift_report.py): the
# numbers behind the bounds in tests/drift.py, as a markdown table for docs/reports/guarantees.md.
.PHONY: drift-report
drift-report: $(STAMP)
	$(PY) scripts/drift_report.py

# Nightly fuzzing: the suite's fuzz files with every count x10 (FV_FUZZ_SCALE; >= 100,000 cases, the count is
# printed at the end). FV_FUZZ_SEED changes the seeded cases of tests/test_fuzz_bulk.py and test_fuzz_cli.py.
FUZZ_SCALE ?= 10
fuzz: $(STAMP)
	FV_FUZZ_SCALE=$(FUZZ_SCALE) $(PY) -m pytest tests/test_fuzz.py tests/test_fuzz_bulk.py tests/test_fuzz_cli.py tests/test_expr.py -q -p no:cacheprovider

# Chaos: a demo-model sweep over 3 concurrent shards (one double-submitted), its finalizer and an `fv examples` pass,
# killed >= 100 times at random (SIGKILL / SIGTERM / SIGINT, seeded), then compared byte for byte with an
# uninterrupted run (scripts/chaos.py). CHAOS_ARGS adds options, e.g. --seed 7 --kills 300.
CHAOS_ARGS ?=
chaos: $(STAMP)
	$(PY) scripts/chaos.py --kills 100 $(CHAOS_ARGS)

clean:
	rm -rf out runs site .pytest_cache

# The documentation site (mkdocs.yml, docs/): regenerate the reference pages from the code
# (scripts/gen_docs_reference.py: the CLI and the recipe keys), then build into site/ (open site/index.html).
docs: $(STAMP)
	$(PY) scripts/gen_docs_reference.py && $(PY) -m mkdocs build --strict -d site

# The offline demo (README's first command): fv's own demo model, shipped in the package (fvcli/weights), nothing
# downloaded. A sweep with the default recipe at the model's native 64 px: the 12 class logits and every channel of
# DEMO_LAYER, then contact sheets and the HTML gallery. Resumable (rerun to continue); DEMO_ARGS adds fv options.
DEMO_OUT ?= runs/demo
DEMO_LAYER ?= block3
DEMO_ARGS ?=
demo: $(STAMP)
	$(FV) sweep logit:all $(DEMO_LAYER) --model demo --size 64 --out $(DEMO_OUT) $(DEMO_ARGS)
	@echo "class visualizations: $(DEMO_OUT)/layers/fc/logit-000NN.png (sheet: $(DEMO_OUT)/layers/fc/sheet.png)"
	@echo "channels of $(DEMO_LAYER): $(DEMO_OUT)/layers/$(DEMO_LAYER)/sheet.png"
	@echo "gallery: open $(DEMO_OUT)/index.html in a browser"
	@echo "next, GoogLeNet (downloads its weights once): $(VENV)/bin/fv weights fetch inceptionv1 && $(VENV)/bin/fv render mixed4a:11"

# The Distill article's figures (fv article; fvcli/article/): InceptionV1 when its weights are cached, else the real
# MobileNetV2 in ../shared, else the demo model (the page and the log say which). Resumable: rerun to continue.
# ARTICLE_ARGS adds fv options, e.g. ARTICLE_ARGS="--quick" or "--size 128 --steps-scale 0.25 --images DIR".
ARTICLE_OUT ?= runs/article
ARTICLE_ARGS ?=
.PHONY: article
article: $(STAMP)
	$(FV) article --out $(ARTICLE_OUT) $(ARTICLE_ARGS)
	@echo "page: open $(ARTICLE_OUT)/index.html in a browser"

# Retrain the demo model and its judge (scripts/train_demo_model.py; deterministic, a few minutes on 2 cores).
demo-model: $(STAMP)
	$(PY) scripts/train_demo_model.py $(DEMO_MODEL_ARGS)

# Benchmark environment: the project's venv plus torch-lucent (the peer), kept out of the project's own venv.
BENCH_VENV := .venv-bench
$(BENCH_VENV)/.ok: $(STAMP)
	$(PYTHON) -m venv $(BENCH_VENV)
	$(PY) -c "import site; print(site.getsitepackages()[0])" > $(BENCH_VENV)/main-site.txt
	cp $(BENCH_VENV)/main-site.txt $$($(BENCH_VENV)/bin/python -c "import site; print(site.getsitepackages()[0])")/fv-main.pth
	$(BENCH_VENV)/bin/pip install -q --no-deps torch-lucent kornia==0.4.1
	$(BENCH_VENV)/bin/pip install -q decorator ipython
	touch $@

.PHONY: bench bench-lucent bench-matrix bench-startup
bench: $(STAMP)
	$(PY) scripts/bench_render.py --layer mixed4a --units 8 --size 224 --steps 48 --rounds 2 --precision fp32,bf16

bench-lucent: $(BENCH_VENV)/.ok
	$(BENCH_VENV)/bin/python scripts/bench_render.py --layer mixed4a --units 8 --size 224 --steps 40 --rounds 2 \
		--precision fp32,bf16 --vs-lucent --lucent-batch 1,8

# fv vs lucent on five models (scripts/bench_matrix.py), ends with a markdown table for docs/reports/performance.md.
# MATRIX_ARGS="--only resnet50,mobilenet_v2 --steps 24" for a subset; --device cuda when there is a GPU.
MATRIX_ARGS ?=
bench-matrix: $(BENCH_VENV)/.ok
	$(BENCH_VENV)/bin/python scripts/bench_matrix.py --steps 32 --rounds 2 --ab-rewrites $(MATRIX_ARGS)

# fv's own share of a one-step render (beyond `import torch, torchvision`), scripts/bench_startup.py.
bench-startup: $(STAMP)
	$(PY) scripts/bench_startup.py

# Render quality on real ImageNet classes (scripts/bench_imagenet_quality.py): the MobileNetV2 in ../shared renders
# class logits with every recipe and with lucent's defaults; the independent judge in ../shared/judges scores the
# 8-bit PNGs. Resumable (renders cached in runs/imagenet-quality-*); skips when ../shared is absent.
IMAGENET_QUALITY_ARGS ?=
.PHONY: bench-quality-imagenet
bench-quality-imagenet: $(BENCH_VENV)/.ok
	PYTHONPATH=$(CURDIR) $(BENCH_VENV)/bin/python scripts/bench_imagenet_quality.py --vs-lucent $(IMAGENET_QUALITY_ARGS)

# Time to quality (scripts/bench_time_to_quality.py, issues #20 and #29): per model of the matrix, quality (the unit's
# objective on the 8-bit PNG; on the MobileNetV2 classes also the open judge's top-1) vs wall seconds per unit for fv's
# rows (default, article, stop.converge, the levers of scripts/ttq_levers.py) and lucent (one render_vis per unit, and
# batched), in alternating fresh processes; the time-to-quality ratios, plots in docs/img/ttq-*.png. Resumable
# (renders cached in runs/ttq/). TTQ_ARGS e.g. TTQ_ARGS="--only mobilenet_v2 --set bench200 --size 224 --rows 'fv
# default,lucent'" (hours on a CPU), "--only mobilenet_v2 --classes 32", "--only resnet50,convnext_tiny --units 4".
# The schedules table of --deadline / --budget: scripts/ttq_schedules.py on TUNE200 runs (docs/guide/speed.md).
TTQ_ARGS ?=
.PHONY: bench-ttq
bench-ttq: $(BENCH_VENV)/.ok
	$(BENCH_VENV)/bin/python -c "import matplotlib" 2>/dev/null || $(BENCH_VENV)/bin/pip install -q matplotlib
	PYTHONPATH=$(CURDIR) $(BENCH_VENV)/bin/python scripts/bench_time_to_quality.py $(TTQ_ARGS)

# Sweeps: every channel of some layers into runs/MODEL-RECIPEHASH (resumable: rerun the same target to continue).
#   make sweep LAYERS=mixed4a                          make sweep LAYERS="mixed4a mixed4b" SWEEP_ARGS="--recipe article"
#   make sweep-googlenet                               every channel of mixed3a..mixed5b (5,484 channels)
#   make sweep-googlenet SWEEP_ARGS="--shard 0/4"      one of 4 shards (run 0/4..3/4 anywhere that shares runs/)
#   make sweep-finalize SWEEP_ARGS="--out runs/DIR"    sheets, manifest and gallery from what the shards wrote
LAYERS ?= mixed4a
SWEEP_ARGS ?=
GOOGLENET_LAYERS := mixed3a mixed3b mixed4a mixed4b mixed4c mixed4d mixed4e mixed5a mixed5b
.PHONY: sweep sweep-googlenet sweep-finalize bench-sweep test-browser test-cluster
sweep: $(STAMP)
	$(FV) sweep $(LAYERS) $(SWEEP_ARGS)

sweep-googlenet: $(STAMP)
	$(FV) sweep $(GOOGLENET_LAYERS) $(SWEEP_ARGS)

sweep-finalize: $(STAMP)
	$(FV) sweep --finalize $(SWEEP_ARGS)

bench-sweep: $(STAMP)
	$(PY) scripts/bench_sweep.py --layer mixed4a --units 16 --size 224 --steps 64

# The gallery in headless Chromium (tests/test_gallery_browser.py; part of `make test`). `make chromium` installs
# Debian's chromium when it is missing and apt-get can run as root (~1 min); it never fails: without chromium the
# browser test is skipped and says why. FV_NO_APT=1 skips the install.
.PHONY: chromium
chromium:
	@if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then :; \
	elif [ -n "$$FV_NO_APT" ]; then echo "chromium: not installed (FV_NO_APT set); the browser test will be skipped"; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  echo "chromium: installing Debian's chromium for the gallery browser test"; \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
	    || echo "chromium: apt-get install failed; the browser test will be skipped"; \
	else echo "chromium: not installed and no apt-get as root; the browser test will be skipped"; fi

test-browser: $(STAMP) chromium
	FV_BROWSER_TEST_OUT=runs/test-browser $(PY) -m pytest tests/test_gallery_browser.py

# A real one-node SLURM cluster on localhost (root; installs slurmctld, slurmd, munge): an array sweep through
# scripts/slurm_sweep.sbatch, checked after its finalize job. Not part of `make test`. `scripts/cluster_test.sh down`
# stops the daemons.
test-cluster: $(STAMP)
	FV_CLUSTER_TEST=1 $(PY) -m pytest -s tests/test_cluster.py

# GPU check (issue #28, scripts/gpu_check.sh): on a one-GPU machine without internet, installs fv from this checkout,
# prints the GPU, runs `pytest -m cuda`, renders, sweeps (nvidia-smi sampled), estimates every GoogLeNet channel,
# benchmarks fv's CUDA paths and fv vs lucent; report in $$OUT (default runs/gpu-check): report.md, report.json,
# gpu-check.log, nvidia-smi.csv, artifacts.tar.gz. Under 8 minutes (GPU_CHECK_BUDGET=450 s). Without a GPU it runs
# every phase at toy sizes on the CPU (CUDA parts skipped, and it says so). No venv needed: the machine's python3
# with torch, torchvision, numpy, pillow, typer, pyyaml, tqdm; `make gpu-prep` beforehand (where PyPI and ../shared
# are reachable) puts torch-lucent's wheels in .whl/ and the real MobileNetV2 in .gpu-shared/: carry both.
.PHONY: gpu-check gpu-prep
gpu-check:
	bash scripts/gpu_check.sh

GPU_WHEEL_PLATFORM := --only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux2014_x86_64
gpu-prep:
	rm -rf .whl && mkdir -p .whl .gpu-shared/weights/mobilenet_v2_imagenet
	$(PYTHON) -m pip download -q --no-deps $(GPU_WHEEL_PLATFORM) -d .whl torch-lucent==0.1.8 kornia==0.4.1
	$(PYTHON) -m pip download -q $(GPU_WHEEL_PLATFORM) -d .whl ipython==8.37.0 decorator
	cp ../shared/weights/mobilenet_v2_imagenet/mobilenet_v2_1001_torchvision_state_dict.pt \
	   ../shared/weights/mobilenet_v2_imagenet/imagenet_labels.txt .gpu-shared/weights/mobilenet_v2_imagenet/ \
	   || echo "gpu-prep: no ../shared MobileNetV2: the benchmark will list it as unavailable"
	du -sh .whl .gpu-shared
