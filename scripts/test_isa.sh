#!/usr/bin/env bash
# `make test-isa`: the suite under other instruction sets on this machine, so that a developer on one CPU kind sees
# what would fail on another. oneDNN (convolutions, matmuls) is capped with ONEDNN_MAX_CPU_ISA and ATen's vectorized
# kernels with ATEN_CPU_CAPABILITY; both only go down from what the CPU has (an AMX machine can be made to behave
# like an AVX-512 or AVX2 one, not the reverse), and each run checks that its cap took effect.
#
#   scripts/test_isa.sh [ISA ...]        ISAs: avx2, avx512_core (default: both)
#   ISA_TESTS=numerics (default)         the tests that compare floats across batches, threads and runs, and the
#                                        bitwise promises (same command, shards, resume)
#   ISA_TESTS=all                        the whole suite per ISA (about as long as `make test` each)
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
ISA_TESTS=${ISA_TESTS:-numerics}
NUMERICS=(tests/test_render.py tests/test_diversity.py tests/test_coarse.py tests/test_lr_schedule.py
          tests/test_reliability.py tests/test_stream.py tests/test_faults.py tests/test_fast_paths.py
          tests/test_rewrites.py tests/test_inceptionv1.py tests/test_maco.py tests/test_objectives.py
          tests/test_examples_into_sweep.py "tests/test_sweep.py")
case "$ISA_TESTS" in
  numerics) targets=("${NUMERICS[@]}") ;;
  all) targets=() ;;
  *) echo "test-isa: ISA_TESTS must be numerics or all (got '$ISA_TESTS')" >&2; exit 2 ;;
esac
isas=("$@")
[ ${#isas[@]} -gt 0 ] || isas=(avx2 avx512_core)
failed=()
for isa in "${isas[@]}"; do
  case "$isa" in
    avx2) onednn=AVX2; aten=avx2; want_aten=AVX2 ;;
    avx512_core) onednn=AVX512_CORE; aten=avx512; want_aten=AVX512 ;;
    *) echo "test-isa: unknown ISA '$isa': valid avx2, avx512_core" >&2; exit 2 ;;
  esac
  got=$(ONEDNN_MAX_CPU_ISA=$onednn ATEN_CPU_CAPABILITY=$aten ONEDNN_VERBOSE=1 "$PY" -c "
import torch
print('aten', torch.backends.cpu.get_cpu_capability())
torch.nn.functional.conv2d(torch.ones(2, 8, 16, 16), torch.ones(8, 8, 3, 3))  # large enough for oneDNN" 2>&1 | grep -Eo "aten [A-Z0-9_]+|isa:[^,]+" | tr '\n' ' ')
  echo "test-isa: $isa (ONEDNN_MAX_CPU_ISA=$onednn ATEN_CPU_CAPABILITY=$aten): $got"
  case "$got" in
    *"aten $want_aten"*"isa:"*) ;;
    *) echo "test-isa: $isa: this CPU cannot run at $isa (ATen / oneDNN report: $got); skipped" >&2; continue ;;
  esac
  if ONEDNN_MAX_CPU_ISA=$onednn ATEN_CPU_CAPABILITY=$aten "$PY" -m pytest -q -p no:cacheprovider "${targets[@]}"; then
    echo "test-isa: $isa: passed"
  else
    failed+=("$isa")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then echo "test-isa: FAILED under: ${failed[*]}" >&2; exit 1; fi
echo "test-isa: passed under: ${isas[*]}"
