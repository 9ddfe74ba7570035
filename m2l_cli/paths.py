"""Input and output paths: `-` for stdin/stdout, default output names, the rules
against overwriting (never without `force`, never an input), and the recursive search
of a folder for files with given suffixes."""

from __future__ import annotations

import os
from collections.abc import Collection, Iterable
from pathlib import Path

from .errors import M2LError

STDIO = "-"
TEMPORARY_PREFIX = ".m2l-"
"""Names of our outputs while they are written (see `atomic`): searches skip them."""
DECODED_MARK = ".m2l"
"""What a decoded file's name ends in before its audio suffix (`song.flac.m2l.wav`)."""


def default_output(source: str, suffix: str) -> str:
    """IN with `suffix` appended, beside it (`song.flac` -> `song.flac.m2l` ->
    `song.flac.m2l.wav`): never the name of an input, so no two inputs share an
    output; stdin goes to stdout."""
    return STDIO if source == STDIO else source + suffix


def is_decoded_output(path: str | Path) -> bool:
    """True for names our decoder gives (`x.m2l.wav`): a folder run skips them, so it
    never encodes its own reconstructions."""
    return Path(path).stem.lower().endswith(DECODED_MARK)


def same_file(first: str | Path, second: str | Path) -> bool:
    """True when both name one file (the same path, a link, or a hard link)."""
    try:
        return os.path.samefile(first, second)
    except (OSError, ValueError):
        return False


def check_output(target: str, force: bool, sources: Iterable[str] = ()) -> None:
    """Refuses an output that is one of `sources` (even with `force`), a folder, in a
    folder that does not exist, or that exists without `force`."""
    if target == STDIO:
        return
    path = Path(target)
    for source in sources:
        if source != STDIO and same_file(source, target):
            raise M2LError(f"{target}: is the input {source}; choose another output")
    if path.is_dir():
        raise M2LError(f"{target}: is a directory")
    if path.exists() and not force:
        raise M2LError(f"{target}: already exists (use --force to overwrite)")
    if not path.parent.exists():
        raise M2LError(f"{target}: folder {path.parent} does not exist")


def check_folder(folder: str | Path) -> Path:
    """`folder` as a Path, once it is known to be an existing folder."""
    root = Path(folder)
    if not root.exists():
        raise M2LError(f"{folder}: no such folder")
    if not root.is_dir():
        raise M2LError(f"{folder}: not a folder")
    return root


def find_files(folder: str | Path, suffixes: Collection[str]) -> list[Path]:
    """Regular files under `folder`, recursively and sorted, whose suffix (in any case)
    is one of `suffixes`; our own temporary files are left out."""
    return sorted(
        path
        for path in check_folder(folder).rglob("*")
        if path.suffix.lower() in suffixes
        and not path.name.startswith(TEMPORARY_PREFIX)
        and path.is_file()
    )


def output_pairs(sources: list[str], output: str | None, suffix: str) -> list[tuple[str, str]]:
    """(input, output) pairs for a command given several inputs: one input goes to
    `output` (default: IN + `suffix`); several go beside themselves, or into the folder
    `output` as their name + `suffix`. Stdin can only be the one input, and two inputs
    that would share an output are refused."""
    if len(sources) == 1:
        return [(sources[0], output or default_output(sources[0], suffix))]
    if STDIO in sources:
        raise M2LError("- (stdin) can only be given alone")
    if output is None:
        targets = [default_output(source, suffix) for source in sources]
    elif output == STDIO:
        raise M2LError("several inputs cannot go to stdout: give a folder with -o")
    else:
        folder = check_folder(output)
        targets = [str(folder / (Path(source).name + suffix)) for source in sources]
    first_with: dict[str, str] = {}
    for source, target in zip(sources, targets, strict=True):
        key = os.path.normcase(os.path.abspath(target))
        if key in first_with:
            raise M2LError(f"{first_with[key]} and {source} would both be written to {target}")
        first_with[key] = source
    return list(zip(sources, targets, strict=True))
