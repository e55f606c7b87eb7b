#!/usr/bin/env bash
# Every GPU check of videomem in one go, for whenever a GPU machine is at hand:
#   1. the tests marked `gpu` (pytest -m gpu on the files that use the mark), at most 3 min;
#   2. bench/gpu.py on a 1000 s 1280x720 video: encode against the bare forward, end to
#      end (NVDEC and CPU decode), decode alone (CPU, segments, keyframes, NVDEC), in the
#      time left (GPU_BUDGET_S, 480 s in all); cut short, it prints the table of what it
#      measured until then.
# Without CUDA it prints "no CUDA, skipped" and exits 0 (tests/test_gpu_script.py checks
# that on CPU).
#
# It needs no install of videomem: the repository's folders are put on PYTHONPATH as the
# package `videomem` (symbolic links in a temporary folder), and when .whl/ exists (made
# by bench/gpu_wheels.sh) its wheels are installed into a temporary folder on PYTHONPATH
# and its ffmpeg binary unpacked there. The interpreter: $PYTHON, else .venv/bin/python
# when its torch sees CUDA, else python3.
#
# On a lent GPU machine (Python 3.12, torch with CUDA, no registry):
#   here, in the checkout that the device tool sends:
#          bash bench/gpu_wheels.sh                     # once (3 min); about 46 MiB in .whl/
#   there: the device tool's run, carry [".whl"], timeout_s 540, command
#          set -o pipefail; bash bench/gpu.sh 2>&1 | tee $OUT/gpu.log
#
#   bash bench/gpu.sh                        # PYTHON=... to use another interpreter
#   GPU_BENCH_SECONDS=300 bash bench/gpu.sh  # a shorter video
#   bash bench/gpu.sh --list-tests           # the test files it runs, and exit
#   bash bench/gpu.sh --setup-only           # the setup and its report alone, CUDA or not
set -u
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1

# the test files that use the gpu mark: only they are collected, so a test module that
# imports a development-only package (duckdb, moto, ...) cannot stop the GPU run
gpu_test_files() {
    grep -lE 'pytest\.mark\.gpu|pytestmark.*\bgpu\b' $(find tests -name 'test_*.py')
}
case "${1:-}" in
--list-tests) gpu_test_files; exit 0 ;;
--setup-only | "") ;;
*) echo "usage: bash bench/gpu.sh [--list-tests | --setup-only]" >&2; exit 2 ;;
esac

has_cuda() {
    "$1" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null
}
if [ -n "${PYTHON:-}" ]; then
    PY="$PYTHON"
elif [ -x .venv/bin/python ] && has_cuda .venv/bin/python; then
    PY=.venv/bin/python
else
    PY=python3
fi
if [ "${1:-}" != --setup-only ] && ! has_cuda "$PY"; then
    echo "no CUDA, skipped: bench/gpu.sh needs an NVIDIA GPU with a CUDA build of torch ($PY)"
    exit 0
fi
start=$(date +%s)
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader

tmp="$(mktemp -d /tmp/videomem-gpu.XXXXXX)"
trap 'rm -rf "$tmp"' EXIT
# videomem without an install: pyproject maps videomem.<folder> to <folder>/
mkdir -p "$tmp/src/videomem"
for d in pipeline encoders memory qa jobs; do ln -s "$PWD/$d" "$tmp/src/videomem/$d"; done
pythonpath="$tmp/src"
if ls .whl/*.whl >/dev/null 2>&1; then
    if ! "$PY" -m pip install -q --disable-pip-version-check --no-index --no-deps --no-compile \
        --no-cache-dir --upgrade --target "$tmp/site" .whl/*.whl; then
        echo "bench/gpu.sh: could not install .whl/*.whl"
        exit 1
    fi
    for xz in .whl/ffmpeg/*.xz; do
        [ -f "$xz" ] || continue
        exe="$tmp/site/imageio_ffmpeg/binaries/$(basename "$xz" .xz)"
        "$PY" -c 'import lzma, shutil, sys
with lzma.open(sys.argv[1]) as f, open(sys.argv[2], "wb") as g:
    shutil.copyfileobj(f, g, 1 << 24)' "$xz" "$exe" && chmod 755 "$exe" || exit 1
    done
    pythonpath="$pythonpath:$tmp/site"
fi
export PYTHONPATH="$pythonpath${PYTHONPATH:+:$PYTHONPATH}"
# where container images mount the driver's libraries (libcuda, libnvcuvid for NVDEC)
for d in /usr/local/nvidia/lib64 /usr/local/nvidia/lib; do
    [ -d "$d" ] && export LD_LIBRARY_PATH="$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
done
"$PY" - <<'EOF'
import ctypes, sys
import videomem.pipeline
from videomem.pipeline.ffmpeg_choice import ffmpeg_info
print(f"python {sys.version.split()[0]} ({sys.executable})")
print(f"videomem.pipeline from {list(videomem.pipeline.__path__)[0]}")
print(f"ffmpeg: {ffmpeg_info()}")
for lib in ("libcuda.so.1", "libnvcuvid.so.1"):
    try:
        ctypes.CDLL(lib)
        print(f"{lib}: found")
    except OSError as err:
        print(f"{lib}: MISSING ({err}); NVDEC decode will fall back to the CPU")
EOF
echo "set up in $(( $(date +%s) - start )) s"
[ "${1:-}" = --setup-only ] && exit 0

budget="${GPU_BUDGET_S:-480}"
log="$tmp/tests.log"
# shellcheck disable=SC2046  # one word per file
timeout 180 "$PY" -m pytest -m gpu -q -p no:cacheprovider $(gpu_test_files) >"$log" 2>&1
tests_rc=$?
tail -n 25 "$log"
summary="$(grep -E '(passed|failed|error|skipped|no tests ran)' "$log" | tail -n 1 | tr -d '=' | xargs)"
[ "$tests_rc" = 124 ] && summary="timed out after 180 s; $summary"
echo "tests marked gpu: ${summary:-no summary} ($(( $(date +%s) - start )) s)"

left=$(( budget - ($(date +%s) - start) ))
[ "$left" -lt 60 ] && left=60
# SIGTERM at the limit: bench/gpu.py then prints the table of what it measured so far
VIDEOMEM_GPU_TESTS="${summary:-exit code $tests_rc}" timeout "$left" "$PY" bench/gpu.py \
    --seconds "${GPU_BENCH_SECONDS:-1000}"
bench_rc=$?
[ "$bench_rc" = 124 ] && echo "bench/gpu.py was stopped after $left s (GPU_BUDGET_S=$budget)"
echo "bench/gpu.sh: $(( $(date +%s) - start )) s in all"
# tests that fail (or no test summary) make the script fail; pytest's 5 = none selected
if [ "$tests_rc" != 0 ] && [ "$tests_rc" != 5 ]; then exit 1; fi
exit "$bench_rc"
