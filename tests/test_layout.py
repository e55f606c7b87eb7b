"""The folder graph runs one way: jobs -> qa -> memory, encoders -> pipeline; and the
Store is the only way into the tables.

Every import of every module (top-level and inside functions) is read from its source,
so a lazy import that points back up fails here too.

Outside ``memory/store/`` no code folder (nor ``bench/``) imports ``lancedb`` or
``lance``, or reads a private attribute of the Store (a ``_name`` its class defines).
``tests/`` is exempt: tests fabricate what a crash or a damaged disk leaves behind
(orphan rows, dropped columns, truncated files) by reaching under the Store on purpose.
"""

from __future__ import annotations

import ast
import re
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


#: the persistence layer, the only code that may touch LanceDB
STORE_PACKAGE = REPO / "memory" / "store"
LANCE_MODULES = {"lancedb", "lance"}


def outside_store() -> list[Path]:
    """Every module of the code folders and bench/ outside memory/store/."""
    paths = [p for folder in (*FOLDERS, "bench") for p in modules(folder)]
    return [p for p in paths if not p.is_relative_to(STORE_PACKAGE)]


def store_private_names() -> set[str]:
    """The ``_name`` attributes and methods the Store class defines (dunders aside)."""
    tree = ast.parse((STORE_PACKAGE / "store.py").read_text())
    (cls,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Store"]
    names: set[str] = set()
    for node in ast.walk(cls):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(node.name)
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.ctx, ast.Store)
            and isinstance(node.value, ast.Name)
            and node.value.id == "self"
        ):
            names.add(node.attr)
    return {n for n in names if n.startswith("_") and not n.startswith("__")}


def private_store_uses(path: Path, private: set[str]) -> list[str]:
    """``x._name`` reads of a Store private name, where ``x`` is not the module's own
    ``self`` (another class may have an attribute of the same name)."""
    bad = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        own = isinstance(node, ast.Attribute) and (
            isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")
        )
        if isinstance(node, ast.Attribute) and node.attr in private and not own:
            bad.append(f"{path.relative_to(REPO)}:{node.lineno} uses Store.{node.attr}")
    return bad


def test_only_the_store_imports_lancedb() -> None:
    bad = [
        f"{path.relative_to(REPO)} imports {name}"
        for path in outside_store()
        for name in imports_of(path)
        if name.split(".")[0] in LANCE_MODULES
    ]
    assert not bad, "\n".join(bad)


def test_no_private_store_attribute_outside_the_store() -> None:
    private = store_private_names()
    # the check must have something to check: names the Store really has
    assert {"_db", "_videos", "_memories", "_batches", "_lance_error"} <= private
    bad = [b for path in outside_store() for b in private_store_uses(path, private)]
    assert not bad, "\n".join(bad)


def test_every_folder_has_modules() -> None:
    # the check above must have something to check
    for folder in ("pipeline", "encoders", "memory", "jobs"):
        assert len(modules(folder)) >= 3, folder
    assert (
        len(outside_store()) > 40 and (REPO / "memory" / "search" / "query.py") in outside_store()
    )


def layout_rows() -> dict[str, list[tuple[str, str]]]:
    """The README's Layout table: per code folder, its rows as (first cell, whole row)."""
    text = (REPO / "README.md").read_text()
    section = text.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, list[tuple[str, str]]] = {}
    folder = None
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not line.startswith("|") or len(cells) < 2:
            continue
        heading = re.fullmatch(r"\*\*`(\w+)/`\*\*", cells[0])
        if heading:
            folder = heading.group(1)
            rows[folder] = []
        elif folder is not None:
            rows[folder].append((cells[0], line))
    return rows


@pytest.mark.parametrize("folder", FOLDERS)
def test_the_readme_layout_names_every_module(folder: str) -> None:
    """Every module has a row (or is named in its sub-package's row) of the README's
    Layout table, so the table cannot fall behind the code."""
    rows = layout_rows().get(folder, [])
    assert rows, f"the README's Layout table has no **`{folder}/`** section"
    missing = []
    for path in modules(folder):
        if path.name == "__init__.py" or path.name == "__main__.py":
            continue
        rel = path.relative_to(REPO / folder)
        parts = rel.parts
        named = f"`{rel.as_posix()}`"
        if len(parts) == 1:
            ok = any(named in first for first, _ in rows)
        else:  # in a sub-package: its own row, or named in the sub-package's row
            sub = f"`{'/'.join(parts[:-1])}/`"
            ok = any(named in first for first, _ in rows) or any(
                first.startswith(sub) and f"`{parts[-1]}`" in row for first, row in rows
            )
        if not ok:
            missing.append(f"{folder}/{rel.as_posix()}")
    assert not missing, "modules the README's Layout table does not name: " + ", ".join(missing)
