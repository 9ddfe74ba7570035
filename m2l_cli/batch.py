"""Planning a folder's worth of work: which files to encode (or decode), where each
output goes (beside its input, or in a mirrored tree), and every entry that is not
coded, with the reason: an existing output, a folder or link that only looks like
audio, a format we cannot read, our own decoded output, a name two inputs share."""

from __future__ import annotations

import errno
import os
import stat
import unicodedata
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .audio import AUDIO_SUFFIXES, UNREADABLE_AUDIO_SUFFIXES, OutputFormat
from .container import SUFFIX as CONTAINER_SUFFIX
from .errors import M2LError
from .paths import TEMPORARY_PREFIX, check_folder, default_output, is_decoded_output

Entry = tuple[str, str]  # (path, reason)


@dataclass
class BatchPlan:
    """(input, output) pairs to run; entries skipped (not an error) and refused (an
    error), each with its reason; and how many other files there are, by suffix."""

    pairs: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[Entry] = field(default_factory=list)
    failed: list[Entry] = field(default_factory=list)
    others: Counter[str] = field(default_factory=Counter)


def plan_batch(
    folder: str | Path,
    *,
    decode: bool = False,
    output_dir: str | Path | None = None,
    format_name: str = OutputFormat.WAV.value,
    force: bool = False,
) -> BatchPlan:
    """Every audio file under `folder`, recursively (with `decode`: every container),
        paired with its output (`paths.default_output`): beside it, or at the same
        relative path under `output_dir` (folders are made). Existing outputs are skipped
        unless `force`; decoded outputs (`x.m2l.wav`) are never encoded again; inputs whose
    outputs would share a name (in any case) are refused."""
    root = check_folder(folder)
    suffix = output_suffix(decode, format_name)
    if output_dir is not None:
        _make_folder(Path(output_dir))
    plan = BatchPlan()
    planned = []
    for path in _inputs(root, plan, input_suffixes(decode), decode):
        base = Path(output_dir) / path.relative_to(root) if output_dir else path
        planned.append((str(path), default_output(str(base), suffix)))
    sort_outputs(plan, planned, exists=lambda target: Path(target).exists(), force=force)
    return plan


def input_suffixes(decode: bool) -> frozenset[str]:
    """The suffixes of the files a batch codes: audio, or containers with `decode`."""
    return frozenset({CONTAINER_SUFFIX}) if decode else AUDIO_SUFFIXES


def output_suffix(decode: bool, format_name: str) -> str:
    """What a batch appends to an input's name: `.m2l`, or `.wav`/`.flac` with `decode`."""
    return OutputFormat.parse(format_name).suffix if decode else CONTAINER_SUFFIX


def sort_outputs(
    plan: BatchPlan,
    planned: list[tuple[str, str]],
    *,
    exists: Callable[[str], bool],
    force: bool,
    prepare: Callable[[str], None] | None = None,
) -> None:
    """Puts each (input, output) pair into `plan`: refused when another input has the
    same output (in any case), skipped when its output `exists` (unless `force`), else
    to run once `prepare` (default: make its output's folder) succeeds."""
    shared = Counter(_folded(target) for _, target in planned)
    for source, target in planned:
        if shared[_folded(target)] > 1:
            plan.failed.append((source, f"another input has the same output {target}"))
        elif not force and exists(target):
            plan.skipped.append((source, "output exists (use --force)"))
        else:
            _add(plan, source, target, prepare or _make_parent)


def _folded(path: str) -> str:
    """A name as case-insensitive disks compare it: two outputs equal here would
    overwrite each other there, so both are refused."""
    return unicodedata.normalize("NFC", path).casefold()


def _add(plan: BatchPlan, source: str, target: str, prepare: Callable[[str], None]) -> None:
    try:
        prepare(target)
    except M2LError as error:
        plan.failed.append((source, str(error)))
        return
    plan.pairs.append((source, target))


def _make_parent(target: str) -> None:
    _make_folder(Path(target).parent)


def _make_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise M2LError(f"{folder}: cannot create folder ({error.strerror or error})") from None


def _inputs(
    root: Path, plan: BatchPlan, suffixes: frozenset[str] | set[str], decode: bool
) -> list[Path]:
    """The files to code under `root`, sorted; what is not coded goes into `plan`."""
    found: list[Path] = []

    def unreadable(error: OSError) -> None:
        plan.failed.append((str(error.filename), f"cannot read folder ({error.strerror})"))

    for top, folders, files in os.walk(root, onerror=unreadable):
        for name in sorted(folders):
            _folder_entry(Path(top) / name, plan, suffixes)
        for name in sorted(files):
            path = Path(top) / name
            reason = _file_problem(path, suffixes, decode)
            if reason is None:
                found.append(path)
            elif reason:
                plan.skipped.append((str(path), reason))
            elif not name.startswith(TEMPORARY_PREFIX):
                plan.others[path.suffix.lower() or "(none)"] += 1
    return sorted(found)


def _folder_entry(path: Path, plan: BatchPlan, suffixes: frozenset[str] | set[str]) -> None:
    if path.is_symlink():
        plan.skipped.append((str(path), "a link to a folder (not followed)"))
    elif path.suffix.lower() in suffixes:
        plan.skipped.append((str(path), "a folder, not a file"))


def _file_problem(path: Path, suffixes: frozenset[str] | set[str], decode: bool) -> str | None:
    """None for a file to code; else why not ('' for a file that is no concern of
    this run: not audio, or our own temporary file)."""
    problem = name_problem(path.name, suffixes, decode)
    if problem is not None:
        return problem
    try:
        status = path.stat()
    except OSError as error:
        return _link_problem(error)
    if not stat.S_ISREG(status.st_mode):
        return "not a regular file"
    return None


def name_problem(name: str, suffixes: frozenset[str] | set[str], decode: bool) -> str | None:
    """What a file's name alone says (as `_file_problem`): None for a name to code."""
    suffix = Path(name).suffix.lower()
    if name.startswith(TEMPORARY_PREFIX):
        return ""
    if suffix not in suffixes:
        if not decode and suffix in UNREADABLE_AUDIO_SUFFIXES:
            return f"{suffix} is not a format m2l reads (convert it to FLAC or WAV)"
        return ""
    if not decode and is_decoded_output(name):
        return "decoded by m2l (encode it by name if you mean to)"
    return None


def _link_problem(error: OSError) -> str:
    if error.errno == errno.ELOOP:
        return "a symbolic link loop"
    if error.errno == errno.ENOENT:
        return "a broken symbolic link"
    return f"cannot read ({error.strerror})"
