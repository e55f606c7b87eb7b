"""bench/gpu.sh, the one prepared GPU run: on a machine without CUDA it must skip
cleanly (exit 0, say so); its Python half is syntax- and logic-checked here."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
NO_CUDA = pytest.mark.skipif(
    torch.cuda.is_available(), reason="with CUDA the script runs for real: bash bench/gpu.sh"
)


def load_bench_gpu():  # noqa: ANN201
    spec = importlib.util.spec_from_file_location("bench_gpu", REPO / "bench" / "gpu.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_scripts_parse() -> None:
    for script in ("gpu.sh", "gpu_wheels.sh"):
        subprocess.run(["bash", "-n", str(REPO / "bench" / script)], check=True)


def test_script_runs_every_test_marked_gpu() -> None:
    """gpu.sh collects only the test files that use the mark (a module importing a
    development-only package cannot stop the GPU run): they must be exactly the files
    that hold tests marked gpu."""
    listed = subprocess.run(
        ["bash", str(REPO / "bench" / "gpu.sh"), "--list-tests"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout.split()  # fmt: skip
    collected = subprocess.run(
        [sys.executable, "-m", "pytest", "-m", "gpu", "--collect-only", "-q",
         "-p", "no:cacheprovider", "tests/"],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=True,
    ).stdout.splitlines()  # fmt: skip
    marked = {line.split("::")[0] for line in collected if "::" in line}
    assert marked, "no test marked gpu was collected"
    assert set(listed) == marked


def test_setup_makes_videomem_importable_from_the_tree() -> None:
    """Without an install of videomem (a lent GPU machine): the setup puts the tree's
    folders on PYTHONPATH as the package and removes its temporary folder afterwards."""
    res = subprocess.run(
        ["bash", str(REPO / "bench" / "gpu.sh"), "--setup-only"],
        env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable, "HOME": str(Path.home())},
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    where = [ln for ln in res.stdout.splitlines() if ln.startswith("videomem.pipeline from ")]
    assert len(where) == 1, res.stdout
    path = Path(where[0].removeprefix("videomem.pipeline from "))
    assert path.parent.name == "videomem" and path.parent.parent.name == "src"
    assert path.parents[2].name.startswith("videomem-gpu.")
    assert not path.parents[2].exists(), "the temporary folder was left behind"


@NO_CUDA
def test_script_skips_cleanly_without_cuda() -> None:
    res = subprocess.run(
        ["bash", str(REPO / "bench" / "gpu.sh")],
        env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable, "HOME": str(Path.home())},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "no CUDA, skipped" in res.stdout
    assert "Traceback" not in res.stdout + res.stderr


@NO_CUDA
def test_bench_skips_cleanly_without_cuda() -> None:
    res = subprocess.run(
        [sys.executable, str(REPO / "bench" / "gpu.py")],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "no CUDA, skipped" in res.stdout


def test_overlap_and_table() -> None:
    g = load_bench_gpu()
    assert g.overlap(4.0, 10.0, 10.0) == 1.0  # decode fully hidden under encode
    assert g.overlap(4.0, 10.0, 14.0) == 0.0  # one after the other
    assert g.overlap(4.0, 10.0, 12.0) == pytest.approx(0.5)
    assert g.overlap(0.0, 10.0, 10.0) == 1.0
    text = g.table([("what", "figure", "target", ""), ("a", "1.0 s", "< 3 s", "ok")])
    lines = text.splitlines()
    assert len(lines) == 5 and lines[1].startswith("what") and "ok" in lines[3]
