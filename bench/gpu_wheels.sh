#!/usr/bin/env bash
# Packs into .whl/ (ignored by git) what bench/gpu.sh needs on a GPU machine whose Python
# already has torch, transformers, numpy, pillow, pyarrow, safetensors and pytest, but
# not the rest of videomem's dependencies, and that cannot reach a package registry:
#
#   * ffmpeg-python (and `future`, which it imports): pipeline/plan.py builds commands
#     with it;
#   * imageio-ffmpeg: its static ffmpeg 9 (NVDEC: -hwaccel cuda, scale_cuda) for machines
#     without one. Its wheel (68 MB) is over what may travel, so the binary goes apart,
#     xz-compressed (x86 filter, one 192 MiB window: about 46 MiB), and the wheel without
#     it; bench/gpu.sh unpacks the binary back into the installed package.
#
# Nothing else the GPU checks import is missing there: LanceDB, Ray, Rich and the other
# runtime dependencies are imported where they are used, and the checks do not use them.
# Run here, in the repository root, before the GPU run; it fails when .whl/ would
# exceed GPU_WHEELS_LIMIT_MIB (48: the working tree travels too, 64 MiB in all).
#
#   bash bench/gpu_wheels.sh                      # wheels for CPython 3.12 (the GPU image)
#   GPU_PYTHON_VERSION=3.11 bash bench/gpu_wheels.sh   # for another interpreter
set -euo pipefail
cd "$(dirname "$0")/.."
PYVER="${GPU_PYTHON_VERSION:-3.12}"
LIMIT_MIB="${GPU_WHEELS_LIMIT_MIB:-48}"
HOST_PY="${HOST_PYTHON:-python3}"
# pinned to the versions the project's environment runs
WHEELS=(ffmpeg-python==0.2.0 future==1.0.0)
IMAGEIO_FFMPEG=imageio-ffmpeg==0.8.1

mkdir -p .whl/ffmpeg
dl="$(mktemp -d)"
trap 'rm -rf "$dl"' EXIT
if ! "$HOST_PY" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
    --python-version "$PYVER" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux1_x86_64 -d "$dl" "${WHEELS[@]}" "$IMAGEIO_FFMPEG" >"$dl/pip.log" 2>&1; then
    grep -v 'is ignored: it is neither a file nor a directory' "$dl/pip.log" >&2
    exit 1
fi

rm -f .whl/*.whl
for w in "$dl"/*.whl; do
    case "$(basename "$w")" in
    imageio_ffmpeg-*) ;;
    *) cp "$w" .whl/ ;;
    esac
done

# imageio-ffmpeg: the wheel without its binary (RECORD without that line), and the
# binary as .whl/ffmpeg/<its name>.xz, compressed once (about 3 minutes) and kept
"$HOST_PY" - "$dl"/imageio_ffmpeg-*.whl .whl <<'EOF'
import lzma
import re
import sys
import zipfile
from pathlib import Path

src, out = Path(sys.argv[1]), Path(sys.argv[2])
binary = re.compile(r"^imageio_ffmpeg/binaries/(ffmpeg-[^/]+)$")
with zipfile.ZipFile(src) as zin, zipfile.ZipFile(out / src.name, "w", zipfile.ZIP_DEFLATED) as zout:
    names = [i.filename for i in zin.infolist() if binary.match(i.filename)]
    if len(names) != 1:
        sys.exit(f"{src.name}: expected one ffmpeg binary, found {names}")
    for info in zin.infolist():
        if info.filename in names:
            continue
        data = zin.read(info)
        if info.filename.endswith(".dist-info/RECORD"):
            lines = data.decode().splitlines(keepends=True)
            data = "".join(x for x in lines if x.split(",")[0] not in names).encode()
        zout.writestr(info, data)
    xz = out / "ffmpeg" / (binary.match(names[0]).group(1) + ".xz")
    if not xz.is_file():
        for old in xz.parent.glob("*.xz"):
            old.unlink()
        print(f"compressing {names[0]} (about 3 minutes) ...", flush=True)
        filters = [
            {"id": lzma.FILTER_X86},
            {"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME, "dict_size": 192 << 20},
        ]
        tmp = xz.with_suffix(".part")
        with zin.open(names[0]) as f, lzma.open(tmp, "wb", format=lzma.FORMAT_XZ, filters=filters) as g:
            while chunk := f.read(1 << 24):
                g.write(chunk)
        tmp.replace(xz)
EOF

ls -l .whl/*.whl .whl/ffmpeg/*.xz | awk '{printf "%10.1f MiB  %s\n", $5 / 1048576, $NF}'
total=$(du -cb .whl | tail -n 1 | cut -f1)
awk -v t="$total" -v l="$LIMIT_MIB" 'BEGIN { printf "%10.1f MiB  in all (limit %s MiB)\n", t / 1048576, l }'
if [ "$total" -gt $((LIMIT_MIB * 1048576)) ]; then
    echo "bench/gpu_wheels.sh: .whl/ is over ${LIMIT_MIB} MiB" >&2
    exit 1
fi
