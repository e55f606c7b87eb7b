"""The folder graph runs one way: jobs -> qa -> memory, encoders -> pipeline.

Every import of every module (top-level and inside functions) is read from its source,
so a lazy import that points back up fails here too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FOLDERS = ("pipeline", "encoders", "memory", "qa", "jobs")

#: what each folder may import of the others
ALLOWED: dict[str, set[str]] = {
    "pipeline": set(),
    "encoders": {"pipeline"},
    "memory": {"pipeline"},
    "qa": {"pipeline", "encoders", "memory"},
    "jobs": {"pipeline", "encoders", "memory", "qa"},
}
#: third-party packages a folder must not import
FORBIDDEN: dict[str, set[str]] = {
    "pipeline": {"ray", "typer", "transformers", "lancedb"},
    "encoders": {"ray", "typer", "lancedb"},
    "memory": {"ray", "typer", "transformers"},
    "qa": {"ray", "typer"},
    "jobs": set(),
}


def imports_of(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def modules(folder: str) -> list[Path]:
    return sorted((REPO / folder).rglob("*.py"))


@pytest.mark.parametrize("folder", FOLDERS)
def test_imports_run_one_way(folder: str) -> None:
    bad = []
    for path in modules(folder):
        for name in imports_of(path):
            parts = name.split(".")
            if parts[0] == "videomem" and len(parts) > 1:
                target = parts[1]
                if target != folder and target not in ALLOWED[folder]:
                    bad.append(f"{path.relative_to(REPO)} imports {name}")
            elif parts[0] in FORBIDDEN[folder]:
                bad.append(f"{path.relative_to(REPO)} imports {name}")
    assert not bad, "\n".join(bad)


def test_every_folder_has_modules() -> None:
    # the check above must have something to check
    for folder in ("pipeline", "encoders", "memory", "jobs"):
        assert len(modules(folder)) >= 3, folder
