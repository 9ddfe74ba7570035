"""The package's layout: which module may import what, and a module map that lists
every module."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "m2l_cli"
MODULES = sorted(PACKAGE.rglob("*.py"))
READS_AUDIO_ITSELF = {"audio.py"}


def imports(path: Path) -> set[str]:
    """Every module `path` imports, relative ones resolved against the package."""
    package = path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else ()
            module = ".".join((*base, node.module or ""))
            found.update(f"{module}.{alias.name}".strip(".") for alias in node.names)
            found.add(module.strip("."))
    return found


@pytest.mark.parametrize("path", sorted((PACKAGE / "cli").glob("*.py")), ids=lambda path: path.name)
def test_the_cli_imports_neither_torch_nor_soundfile(path):
    names = imports(path)
    assert not {name for name in names if name.split(".")[0] in ("torch", "soundfile")}


@pytest.mark.parametrize("path", MODULES, ids=lambda path: str(path.relative_to(PACKAGE)))
def test_only_the_audio_module_opens_audio_files(path):
    if path.name not in READS_AUDIO_ITSELF:
        assert "soundfile" not in {name.split(".")[0] for name in imports(path)}


def test_metrics_are_pure_math_below_files_and_the_codec():
    names = imports(PACKAGE / "evaluation" / "metrics.py")
    for module in ("audio", "files", "codec", "paths", "batch"):
        assert not any(name.startswith(f"m2l_cli.{module}") for name in names), module


def module_map() -> list[str]:
    """The modules of docs/ARCHITECTURE.md's module map, in its order."""
    architecture = (PACKAGE.parent / "docs" / "ARCHITECTURE.md").read_text()
    table = architecture[architecture.index("## Module map") :]
    return re.findall(r"^\| `(m2l_cli/[^`]+\.py)` \|", table, flags=re.MULTILINE)


def module_name(path: str) -> str:
    """m2l_cli/model/__init__.py -> m2l_cli.model"""
    return path.removesuffix(".py").removesuffix("/__init__").replace("/", ".")


def test_the_module_map_lists_every_module():
    listed = module_map()
    assert sorted(listed) == sorted(path.relative_to(PACKAGE.parent).as_posix() for path in MODULES)


def test_modules_import_only_modules_listed_before_them_in_the_map():
    order = {module_name(path): index for index, path in enumerate(module_map())}
    for path in module_map():
        for name in imports(PACKAGE.parent / path):
            if name in order and module_name(path) not in (name, "m2l_cli"):
                assert order[name] < order[module_name(path)], f"{path} imports {name}"
