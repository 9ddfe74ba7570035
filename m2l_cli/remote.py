"""Files named by a URI that pyarrow understands (`s3://`, `gs://`, `hdfs://`, `file://`)
for the Ray engine: the batch plan of such a folder, a file copied in to the local disk,
and an output copied out atomically, so that workers need no shared disk. Plain paths
stay plain paths. pyarrow is imported only when a URI is used."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .atomic import remove_orphans, temporary_name
from .batch import (
    BatchPlan,
    input_suffixes,
    name_problem,
    output_suffix,
    plan_batch,
    sort_outputs,
)
from .errors import M2LError
from .paths import TEMPORARY_PREFIX

if TYPE_CHECKING:
    from pyarrow.fs import FileSystem

COPY_BLOCK = 1 << 20


def is_uri(location: str) -> bool:
    """True for `scheme://...`, False for a plain path."""
    return "://" in location


def resolve(location: str) -> tuple[FileSystem, str]:
    """The filesystem holding `location` and its path there (a plain path: the local
    disk, made absolute)."""
    from pyarrow import ArrowException
    from pyarrow.fs import FileSystem, LocalFileSystem

    if not is_uri(location):
        return LocalFileSystem(), os.path.abspath(location)
    try:
        return FileSystem.from_uri(location)
    except (ArrowException, OSError, ValueError) as error:
        raise M2LError(f"{location}: {first_line(error)}") from None


def join(location: str, relative: str) -> str:
    """`relative` (with / separators) under the folder `location`."""
    return f"{location.rstrip('/')}/{relative}" if relative else location


def plan(
    folder: str,
    *,
    decode: bool = False,
    output_dir: str | None = None,
    format_name: str = "wav",
    force: bool = False,
) -> BatchPlan:
    """`batch.plan_batch` for plain paths; for URIs the same plan (the same names coded
    and skipped, the same mirrored tree) from listings of the filesystem. Output
    folders are made when outputs are written."""
    if not is_uri(folder) and not (output_dir and is_uri(output_dir)):
        return plan_batch(
            folder, decode=decode, output_dir=output_dir, format_name=format_name, force=force
        )
    filesystem, root = resolve(folder)
    _check_folder(filesystem, root, folder)
    suffixes = input_suffixes(decode)
    suffix = output_suffix(decode, format_name)
    result = BatchPlan()
    planned = []
    for relative, is_file in _listing(filesystem, root):
        name = relative.rsplit("/", 1)[-1]
        if not is_file:
            if Path(name).suffix.lower() in suffixes:
                result.skipped.append((join(folder, relative), "a folder, not a file"))
            continue
        problem = name_problem(name, suffixes, decode)
        if problem is None:
            target = join(output_dir or folder, relative) + suffix
            planned.append((join(folder, relative), target))
        elif problem:
            result.skipped.append((join(folder, relative), problem))
        elif not name.startswith(TEMPORARY_PREFIX):
            result.others[Path(name).suffix.lower() or "(none)"] += 1
    existing = _existing(output_dir or folder)
    prepare = _no_folders if is_uri(output_dir or folder) else None
    sort_outputs(result, planned, exists=existing.__contains__, force=force, prepare=prepare)
    return result


def _no_folders(target: str) -> None:
    """Object stores need no folders made in advance: `store` makes them."""


def _check_folder(filesystem: FileSystem, path: str, name: str) -> None:
    from pyarrow.fs import FileType

    kind = _info(filesystem, path, name).type
    if kind == FileType.NotFound:
        raise M2LError(f"{name}: no such folder")
    if kind != FileType.Directory:
        raise M2LError(f"{name}: not a folder")


def _listing(filesystem: FileSystem, root: str) -> list[tuple[str, bool]]:
    """Every entry under `root`, recursively: (path relative to it, is a file), sorted."""
    from pyarrow import ArrowException
    from pyarrow.fs import FileSelector, FileType

    try:
        entries = filesystem.get_file_info(FileSelector(root, recursive=True))
    except (ArrowException, OSError) as error:
        raise M2LError(f"{root}: cannot list ({first_line(error)})") from None
    prefix = root.rstrip("/") + "/"
    return sorted(
        (entry.path.removeprefix(prefix), entry.type == FileType.File)
        for entry in entries
        if entry.path.startswith(prefix)
    )


def _existing(folder: str) -> set[str]:
    """The files under `folder` (none when it does not exist yet), as locations."""
    from pyarrow.fs import FileType

    filesystem, root = resolve(folder)
    if _info(filesystem, root, folder).type != FileType.Directory:
        return set()
    return {join(folder, relative) for relative, is_file in _listing(filesystem, root) if is_file}


def _info(filesystem: FileSystem, path: str, name: str) -> Any:
    from pyarrow import ArrowException

    try:
        return filesystem.get_file_info(path)
    except (ArrowException, OSError) as error:
        raise M2LError(f"{name}: {first_line(error)}") from None


def fetch(location: str, folder: Path) -> Path:
    """A local copy of the file at `location` in `folder`, under its own name."""
    from pyarrow import ArrowException

    filesystem, path = resolve(location)
    local = folder / path.rsplit("/", 1)[-1]
    try:
        with filesystem.open_input_stream(path) as stream, local.open("wb") as copy:
            shutil.copyfileobj(stream, copy, COPY_BLOCK)
    except (ArrowException, OSError) as error:
        raise M2LError(f"{location}: cannot read ({first_line(error)})") from None
    return local


def store(local: Path, location: str) -> None:
    """Copies `local` to `location` under a temporary name beside it, then moves it
    into place: the target appears only complete (on object stores, a whole object)."""
    from pyarrow import ArrowException
    from pyarrow.fs import LocalFileSystem

    filesystem, path = resolve(location)
    parent = path.rsplit("/", 1)[0]
    temporary = f"{parent}/{temporary_name()}"
    try:
        filesystem.create_dir(parent, recursive=True)
        if isinstance(filesystem, LocalFileSystem):
            remove_orphans(parent)
        with local.open("rb") as data, filesystem.open_output_stream(temporary) as stream:
            shutil.copyfileobj(data, stream, COPY_BLOCK)
        filesystem.move(temporary, path)
    except BaseException as error:  # Ctrl-C included: leave no temporary file behind
        _quietly(lambda: filesystem.delete_file(temporary))
        if isinstance(error, (ArrowException, OSError)):
            raise M2LError(f"{location}: cannot write ({first_line(error)})") from None
        raise


def _quietly(action: Callable[[], None]) -> None:
    from pyarrow import ArrowException

    try:
        action()
    except (ArrowException, OSError):
        return


def first_line(error: BaseException) -> str:
    """An exception's message in one line (pyarrow's and Ray's run to many)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
