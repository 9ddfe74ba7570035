"""Input and output paths: `-` for stdin/stdout, default output names, the rule against
overwriting, and the recursive search of a folder for files with given suffixes."""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

from .errors import M2LError

STDIO = "-"
TEMPORARY_PREFIX = ".m2l-"
"""Names of our outputs while they are written (see `atomic`): searches skip them."""


def default_output(source: str, suffix: str) -> str:
    """IN beside itself with the other extension; stdin goes to stdout."""
    return STDIO if source == STDIO else str(Path(source).with_suffix(suffix))


def check_output(target: str, force: bool) -> None:
    """Refuses to overwrite an existing output without `force`."""
    if target == STDIO:
        return
    path = Path(target)
    if path.is_dir():
        raise M2LError(f"{target}: is a directory")
    if path.exists() and not force:
        raise M2LError(f"{target}: already exists (use --force to overwrite)")
    if not path.parent.exists():
        raise M2LError(f"{target}: folder {path.parent} does not exist")


def find_files(folder: str | Path, suffixes: Collection[str]) -> list[Path]:
    """Regular files under `folder`, recursively and sorted, whose suffix (in any case)
    is one of `suffixes`; our own temporary files are left out."""
    root = Path(folder)
    if not root.exists():
        raise M2LError(f"{folder}: no such folder")
    if not root.is_dir():
        raise M2LError(f"{folder}: not a folder")
    return sorted(
        path
        for path in root.rglob("*")
        if path.suffix.lower() in suffixes
        and not path.name.startswith(TEMPORARY_PREFIX)
        and path.is_file()
    )
