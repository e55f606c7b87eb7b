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


def test_script_parses() -> None:
    subprocess.run(["bash", "-n", str(REPO / "bench" / "gpu.sh")], check=True)


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
