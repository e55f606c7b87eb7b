"""The package installs as one ``videomem`` namespace, editable and as a wheel."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from importlib.metadata import distributions
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FOLDERS = ("pipeline", "encoders", "memory", "qa", "jobs")


def test_imports_resolve_to_repo_folders_when_editable() -> None:
    # (a source checkout can also hold a videomem.egg-info: look at every distribution)
    directs = [d.read_text("direct_url.json") or "{}" for d in distributions(name="videomem")]
    if not any(json.loads(d).get("dir_info", {}).get("editable") for d in directs):
        pytest.skip("videomem is not installed in editable mode here")
    import importlib

    for name in FOLDERS:
        mod = importlib.import_module(f"videomem.{name}")
        assert Path(mod.__file__).resolve().parent == REPO / name


def test_no_bare_top_level_packages_installed() -> None:
    # `import memory` must not work from outside the repo: nothing bare is installed.
    code = f"import importlib.util as u; print([m for m in {FOLDERS!r} if u.find_spec(m)])"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd="/", capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


@pytest.mark.slow
def test_wheel_builds_and_installs(tmp_path: Path) -> None:
    wheel_dir = tmp_path / "wheel"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(wheel_dir),
            str(REPO),
        ],
        check=True,
        capture_output=True,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )
    (wheel,) = wheel_dir.glob("videomem-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    # every module of the five folders, sub-packages included, is in the wheel
    modules = {
        f"videomem/{p.relative_to(REPO).as_posix()}"
        for folder in FOLDERS
        for p in (REPO / folder).rglob("*.py")
    }
    assert not sorted(modules - set(names)), "modules missing from the wheel"
    # the web app's package data: its templates, JS, CSS and icon
    assets = {
        f"videomem/{p.relative_to(REPO).as_posix()}"
        for sub in ("templates", "static")
        for p in (REPO / "jobs" / "serve" / sub).iterdir()
    }
    assert assets and not sorted(assets - set(names)), "serve's templates/static missing"
    assert not [n for n in names if n.split("/")[0] in FOLDERS], "bare package in wheel"
    assert not [n for n in names if n.startswith("tests/") or n.startswith("bench/")]

    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "-q",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        capture_output=True,
    )
    # Import from the installed wheel (PYTHONPATH wins over the editable finder) and run
    # the console entry point's app.
    code = (
        "import videomem.pipeline.types as t, videomem.jobs.cli as c;"
        "print(t.__file__);"
        "from typer.testing import CliRunner;"
        "print(CliRunner().invoke(c.app, ['version']).output)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(target)},
        capture_output=True,
        text=True,
        check=True,
    )
    first, rest = out.stdout.split("\n", 1)
    assert Path(first).is_relative_to(target)
    assert "videomem " in rest


def test_console_script_version() -> None:
    # the script installed beside this interpreter, not whatever `videomem` PATH holds
    # (under `make test` the venv's bin is not on PATH)
    script = Path(sys.executable).parent / "videomem"
    assert script.is_file(), f"no console script at {script}"
    out = subprocess.run([str(script), "version"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("videomem ")
