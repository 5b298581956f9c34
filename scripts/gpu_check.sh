#!/usr/bin/env bash
# fv's GPU check (`make gpu-check`, issue #28): one command for a fresh one-GPU machine without internet.
#
# Why a script: GPU time is scarce (minutes, one run at a time), so everything that must happen on the GPU is
# prepared here and tested end to end on the CPU first (`make gpu-check` on a CPU-only machine runs every phase at
# toy sizes with the CUDA parts skipped and says so). Each phase runs under its own `timeout`, inside one overall
# budget (GPU_CHECK_BUDGET seconds, default 450: under 8 minutes with the start-up); a failing or timed-out phase is
# recorded and the next one runs, so one failure does not waste the slot. The report is rewritten after every
# phase, so even a run killed from outside leaves one.
#
# What it does: installs fv from this checkout (no index: the machine's python must already have torch,
# torchvision, numpy, pillow, typer, pyyaml, tqdm; wheels in .whl/ -- `make gpu-prep` -- are installed first, e.g.
# torch-lucent for the comparison), prints the GPU, driver and torch build, runs the suite's CUDA tests
# (`pytest -m cuda`), renders and sweeps on CUDA through the CLI while sampling `nvidia-smi`, runs `fv sweep
# --estimate` for every GoogLeNet channel, benchmarks fv against lucent (scripts/bench_matrix.py), fv's CUDA
# paths and batch sizes (scripts/gpu_bench.py) and, with what time is left, the time to lucent's quality
# (scripts/bench_time_to_quality.py), then writes the report (scripts/gpu_report.py).
#
# Output, in $OUT (the device tool's folder; default runs/gpu-check): report.md, report.json, gpu-check.log,
# nvidia-smi.csv and artifacts.tar.gz (renders, sweep records, every phase's JSON and log) -- five files, so that
# everything comes back from a machine that returns at most eight.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
OUT="${OUT:-$ROOT/runs/gpu-check}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/fv-gpu-check.XXXXXX")"
BUDGET="${GPU_CHECK_BUDGET:-450}"
RESERVE=20  # seconds kept for the report and the archive
T0=$(date +%s)
LOG="$OUT/gpu-check.log"
: >"$LOG"
exec > >(tee -a "$LOG") 2>&1

if [ -n "${PYTHON:-}" ]; then PY="$PYTHON"
elif [ -x "$ROOT/.venv/bin/python" ]; then PY="$ROOT/.venv/bin/python"
else PY="$(command -v python3)"; fi
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 FV_CACHE_DIR="$WORK/cache" MPLBACKEND=Agg
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export ROOT PY WORK
PHASES="$WORK/phases.tsv"
: >"$PHASES"

elapsed() { echo $(( $(date +%s) - T0 )); }

report() {
  "$PY" "$ROOT/scripts/gpu_report.py" --work "$WORK" --out "$OUT" --mode "$MODE" --elapsed "$(elapsed)" \
    --finished "${FINISHED:-}" >/dev/null 2>>"$WORK/report.err" || echo "gpu_check: the report could not be written (see $WORK/report.err)"
}

# phase NAME SECONDS CMD...: run CMD under a timeout of min(SECONDS, what is left of the budget); record
# NAME, exit status, seconds and a verdict; never stop the script.
phase() {
  local name="$1" want="$2"; shift 2
  local left=$(( BUDGET - RESERVE - $(elapsed) ))
  local t=$(( want < left ? want : left ))
  echo "=== $name (limit ${t}s, ${left}s of the budget left) ==="
  if [ "$t" -lt 10 ]; then
    printf '%s\t-\t0\tskipped: no time left in the %ss budget\n' "$name" "$BUDGET" >>"$PHASES"
    echo "--- $name: skipped (no time left)"
    return 0
  fi
  local s=$(date +%s) rc=0
  timeout --kill-after=10 "$t" "$@" >"$WORK/$name.log" 2>&1 || rc=$?
  local d=$(( $(date +%s) - s )) verdict=ok
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then verdict="timed out after ${t}s"
  elif [ "$rc" -ne 0 ]; then verdict="failed (exit $rc)"; fi
  printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$d" "$verdict" >>"$PHASES"
  tail -n 25 "$WORK/$name.log"
  echo "--- $name: $verdict in ${d}s"
  report
}

skip() {  # skip NAME WHY
  printf '%s\t-\t0\tskipped: %s\n' "$1" "$2" >>"$PHASES"
  echo "=== $1: skipped ($2)"
}

MODE=unknown
echo "fv gpu check: $(date -u +%FT%TZ), checkout $ROOT, python $PY, budget ${BUDGET}s, work $WORK, report $OUT"

# ---- install: the wheels brought along (.whl/, `make gpu-prep`), then fv itself, from this checkout only
install() {
  set -euo pipefail
  if compgen -G "$ROOT/.whl/*.whl" >/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$WORK/site" "$ROOT"/.whl/*.whl
    echo "installed into $WORK/site: $(ls "$ROOT"/.whl)"
  else
    echo "no wheels in .whl/ (make gpu-prep brings torch-lucent and its needs): lucent rows will be left out"
  fi
  "$PY" -c "import torch, torchvision, numpy, PIL, typer, yaml, tqdm; print('run-time dependencies present:', \
torch.__version__, torchvision.__version__, numpy.__version__)"
  # fv itself: an installed copy proves the package builds from this checkout; runs use the checkout (PYTHONPATH)
  "$PY" -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --target "$WORK/fv-install" "$ROOT" \
    && "$PY" -c "import sys; sys.path.insert(0, '$WORK/fv-install'); import fvcli; print('fv', fvcli.__version__, \
'installed from the checkout')"
}
export -f install
phase install 90 bash -c install
[ -d "$WORK/site" ] && export PYTHONPATH="$PYTHONPATH:$WORK/site"

# The real MobileNetV2 for the benchmark is read from ../shared (configs/mobilenet_v2.yaml); a machine that only
# has the copy `make gpu-prep` put in .gpu-shared/ gets ../shared pointing there.
if [ ! -e "$ROOT/../shared" ] && [ -d "$ROOT/.gpu-shared/weights" ]; then
  ln -s "$ROOT/.gpu-shared" "$ROOT/../shared" && echo "../shared -> .gpu-shared (the MobileNetV2's weights)"
fi

# ---- the machine
machine() {
  set -uo pipefail
  if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi || true
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit --format=csv || true
  else
    echo "nvidia-smi: not found"
  fi
  "$PY" - <<'EOF'
import json, os, platform, torch
info = {"python": platform.python_version(), "torch": torch.__version__, "cuda_build": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "cuda_available": torch.cuda.is_available(), "cpu_threads": torch.get_num_threads(),
        "cpu": next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")}
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    free, total = torch.cuda.mem_get_info()
    info |= {"gpu": p.name, "capability": f"{p.major}.{p.minor}", "multiprocessors": p.multi_processor_count,
             "memory_gib": round(total / 2**30, 1), "free_gib": round(free / 2**30, 1),
             "bf16_supported": torch.cuda.is_bf16_supported()}
print(json.dumps(info, indent=1))
json.dump(info, open(os.path.join(os.environ["WORK"], "machine.json"), "w"))
EOF
}
export -f machine
phase machine 60 bash -c machine
if "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  MODE=cuda DEV=cuda
else
  MODE=cpu DEV=cpu
  echo "NO CUDA: the CUDA tests skip, and every render, sweep and benchmark below runs on the CPU at toy sizes" \
       "only to prove the script; none of its numbers is a GPU figure"
fi
report

# ---- nvidia-smi sampling for the whole run (utilisation, memory, power, 5 per second)
SMI_PID=""
if [ "$MODE" = cuda ] && command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=timestamp,utilization.gpu,utilization.memory,memory.used,power.draw \
    --format=csv,noheader,nounits -lms 200 >"$OUT/nvidia-smi.csv" 2>/dev/null &
  SMI_PID=$!
fi
stop_smi() { if [ -n "$SMI_PID" ]; then kill "$SMI_PID" 2>/dev/null || true; wait "$SMI_PID" 2>/dev/null || true; SMI_PID=""; fi; }
trap stop_smi EXIT
mark() { date +%s.%N >"$WORK/$1.t"; }  # phase windows for the utilisation summary

# ---- the suite's CUDA tests (marker `cuda`; they skip cleanly without CUDA), then test_cuda_guards.py, whose
# checks of the CUDA paths' logic take their CUDA branches on a GPU
phase pytest-cuda 150 "$PY" -m pytest -m cuda tests/test_cuda.py -q -p no:cacheprovider -rs \
  --junitxml="$WORK/pytest-cuda.xml"
phase pytest-guards 40 "$PY" -m pytest tests/test_cuda_guards.py tests/test_host_sync.py -q -p no:cacheprovider

# ---- render and sweep through the CLI
FV=("$PY" -m fvcli.cli)
if [ "$MODE" = cuda ]; then
  NET=(--model inceptionv1 --weights random:0); RENDER_UNITS="mixed4a:0-15"; SWEEP_UNITS="mixed4a"
  SIZE=(); TL=1.0; SWEEP_BATCH=128
  GOOGLENET=(mixed3a mixed3b mixed4a mixed4b mixed4c mixed4d mixed4e mixed5a mixed5b)
else
  NET=(--model demo); RENDER_UNITS="block2:0-3"; SWEEP_UNITS="block2:0-7"
  SIZE=(--size 32 --steps 16); TL=0.5; SWEEP_BATCH=4
  GOOGLENET=(block1 block2 block3)
fi
phase render 90 "${FV[@]}" render "$RENDER_UNITS" "${NET[@]}" "${SIZE[@]}" --device "$DEV" --batch-size 16 \
  --out "$WORK/render" -q
mark sweep.start
# the sweep stops starting batches after TL minutes; its records give seconds per unit at its batch size (fixed,
# so that one batch cannot outlast the phase; `--batch-size auto` is the GoogLeNet estimate's and the tests')
phase sweep 150 "${FV[@]}" sweep "$SWEEP_UNITS" "${NET[@]}" "${SIZE[@]}" --device "$DEV" --batch-size "$SWEEP_BATCH" \
  --out "$WORK/sweep" --time-limit "$TL" --no-finalize -q
mark sweep.end
phase estimate 90 "${FV[@]}" sweep "${GOOGLENET[@]}" "${NET[@]}" "${SIZE[@]}" --device "$DEV" --batch-size auto \
  --out "$WORK/estimate-dir" --estimate
# the same estimate for the one layer the sweep rendered, to check the estimate against it
phase estimate-layer 60 "${FV[@]}" sweep "$SWEEP_UNITS" "${NET[@]}" "${SIZE[@]}" --device "$DEV" \
  --batch-size "$SWEEP_BATCH" \
  --out "$WORK/estimate-dir" --estimate

# ---- fv vs lucent (one unit per render_vis), InceptionV1 mixed4a, the real MobileNetV2, ViT-B/16
LUCENT=(--no-lucent)
if "$PY" -c "import lucent" >/dev/null 2>&1; then LUCENT=(--lucent-python "$PY"); fi
if [ "$MODE" = cuda ]; then
  # fp32 only (bf16 is gpu_bench's): six fresh processes in about two minutes
  MATRIX=(--only inceptionv1,mobilenet_v2,vit_b_16 --units 8 --batch-size 8 --steps 48 --rounds 1 --device cuda
          --precision fp32)
else
  MATRIX=(--only inceptionv1 --units 2 --batch-size 2 --steps 2 --rounds 1 --device cpu --precision fp32)
fi
[ "${LUCENT[0]}" = --no-lucent ] && echo "lucent: not importable (no .whl/ wheels): fv rows only"
phase bench-matrix 140 "$PY" scripts/bench_matrix.py "${MATRIX[@]}" "${LUCENT[@]}" --json-out "$WORK/matrix.json"

# ---- fv's CUDA paths, batch sizes, CPU vs GPU (JSON + markdown)
mark bench.start
LEFT=$(( BUDGET - RESERVE - $(elapsed) - 15 ))
phase gpu-bench 150 "$PY" scripts/gpu_bench.py --device "$DEV" --out "$WORK/gpu-bench" \
  --budget "$(( LEFT < 120 ? LEFT : 120 ))"
mark bench.end

# ---- time to lucent's quality (scripts/bench_time_to_quality.py): fv default vs lucent, the unit's objective on
# each snapshot's 8-bit PNG against wall seconds per unit; last, and only with what is left of the budget
if [ "${LUCENT[0]}" = --no-lucent ]; then
  skip ttq "lucent not importable (no .whl/ wheels)"
else
  if [ "$MODE" = cuda ]; then
    TTQ=(--units 8 --batch 8 --steps 512 --thresholds 32,64,128,256 --threads 4)
  else
    TTQ=(--units 2 --batch 2 --steps 4 --thresholds 2 --threads 1)
  fi
  phase ttq 120 "$PY" scripts/bench_time_to_quality.py --only inceptionv1 --size 224 --rows "fv default,lucent" \
    "${TTQ[@]}" --device "$DEV" --out "$WORK/ttq" --json-out "$WORK/ttq.json" --no-plot
fi

stop_smi
trap - EXIT
FINISHED="$(date -u +%FT%TZ)"
report
tar -czf "$OUT/artifacts.tar.gz" -C "$WORK" --exclude=cache --exclude=site --exclude=fv-install . 2>/dev/null \
  || echo "gpu_check: the archive could not be written"
echo "gpu check done in $(elapsed)s ($MODE): $OUT/report.md"
rm -rf "$WORK"
