#!/usr/bin/env bash
# Every GPU check of videomem in one go, for whenever a GPU machine is at hand:
#   1. the tests marked `gpu` (pytest -m gpu), at most 4 minutes;
#   2. bench/gpu.py: decode (CPU, segments, keyframes, NVDEC), encode against the bare
#      forward, end to end on a 1000 s 1280x720 video; at most 4 minutes;
# then one table. Under 8 minutes on one H100/H200. Without CUDA it prints
# "no CUDA, skipped" and exits 0 (tests/test_gpu_script.py checks that on CPU).
#
#   bash bench/gpu.sh                 # PYTHON=... to use another interpreter
#   GPU_BENCH_SECONDS=300 bash bench/gpu.sh   # a shorter video
set -u
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY=python3

if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    echo "no CUDA, skipped: bench/gpu.sh needs an NVIDIA GPU with a CUDA build of torch"
    exit 0
fi
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
start=$(date +%s)
timeout 240 "$PY" -m pytest -m gpu -q -p no:cacheprovider tests/ >"$log" 2>&1
tests_rc=$?
tail -n 25 "$log"
summary="$(grep -E '(passed|failed|error|skipped|no tests ran)' "$log" | tail -n 1 | tr -d '=' | xargs)"
[ "$tests_rc" = 124 ] && summary="timed out after 240 s; $summary"
echo "tests marked gpu: ${summary:-no summary} ($(( $(date +%s) - start )) s)"

VIDEOMEM_GPU_TESTS="${summary:-exit code $tests_rc}" timeout 300 "$PY" bench/gpu.py \
    --seconds "${GPU_BENCH_SECONDS:-1000}"
bench_rc=$?
[ "$bench_rc" = 124 ] && echo "bench/gpu.py timed out after 300 s"
echo "bench/gpu.sh: $(( $(date +%s) - start )) s in all"
# tests that fail (or no test summary) make the script fail; pytest's 5 = none selected
if [ "$tests_rc" != 0 ] && [ "$tests_rc" != 5 ]; then exit 1; fi
exit "$bench_rc"
