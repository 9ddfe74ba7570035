"""Atomic outputs: a file is written under a temporary name beside its target and
renamed into place when complete, so an error, Ctrl-C or SIGTERM never leaves a
partial file. A process killed outright (SIGKILL, a crash) leaves its temporary file;
the next run that writes to that folder removes it (`remove_orphans`)."""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import socket
import stat
import tempfile
import time
from pathlib import Path

from .paths import STDIO, TEMPORARY_PREFIX
from .stdio import copy_to_stdout

SUFFIX = ".part"
HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:6]
"""Temporary names carry the host and process id: `.m2l-<host>-<pid>-<random>.part`."""
_OURS = re.compile(rf"{re.escape(TEMPORARY_PREFIX)}([0-9a-f]{{6}})-(\d+)-\w+{re.escape(SUFFIX)}")
_EARLIER = re.compile(rf"{re.escape(TEMPORARY_PREFIX)}\w{{8}}{re.escape(SUFFIX)}")
EARLIER_NAMES_AGE = 24 * 3600.0
"""Temporary files named by earlier versions (no process id) are orphans after a day."""
_cleaned: set[str] = set()


class AtomicOutput:
    """A temporary file beside `target` that becomes `target` only on `commit`.

    As a context manager it yields the temporary path, commits on success and discards
    on any error (Ctrl-C included). `-` means stdout: the data are copied there on commit.
    """

    def __init__(self, target: str | Path) -> None:
        self.target = str(target)
        folder = Path(tempfile.gettempdir()) if self.target == STDIO else Path(target).parent
        remove_orphans(folder)
        handle, name = tempfile.mkstemp(prefix=_temporary_prefix(), suffix=SUFFIX, dir=folder)
        try:
            os.close(handle)
            self.path = Path(name)
            umask = os.umask(0)
            os.umask(umask)
            self.path.chmod(0o666 & ~umask)  # mkstemp makes 0600; outputs get the usual mode
        except BaseException:  # Ctrl-C included: leave no temporary file behind
            os.unlink(name)
            raise

    def commit(self) -> None:
        """Moves the finished file into place (or copies it to stdout)."""
        if self.target != STDIO:
            os.replace(self.path, self.target)
            return
        try:
            with self.path.open("rb") as stream:
                copy_to_stdout(stream)
        finally:
            self.discard()

    def discard(self) -> None:
        """Deletes the temporary file; the target is left as it was."""
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> Path:
        return self.path

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if kind is None:
            self.commit()
        else:
            self.discard()


def temporary_name() -> str:
    """A new temporary name of ours for a file made through another filesystem than
    this one (an object store): `.m2l-<host>-<pid>-<random>.part`."""
    return f"{_temporary_prefix()}{secrets.token_hex(4)}{SUFFIX}"


def _temporary_prefix() -> str:
    return f"{TEMPORARY_PREFIX}{HOST}-{os.getpid()}-"


def remove_orphans(folder: str | Path) -> list[str]:
    """Deletes the temporary files in `folder` that no running process of ours will
    finish: ours (by name, owner and kind of file), made on this host by a process
    that is gone, or named by an earlier version and a day old. Each folder is looked
    at once per process; returns the names removed."""
    key = os.path.realpath(folder)
    if key in _cleaned:
        return []
    _cleaned.add(key)
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    for entry in entries:
        if entry.name.startswith(TEMPORARY_PREFIX) and _orphaned(entry):
            try:
                os.unlink(entry.path)
                removed.append(entry.name)
            except OSError:
                continue
    return removed


def _orphaned(entry: os.DirEntry) -> bool:
    try:
        status = entry.stat(follow_symlinks=False)
    except OSError:
        return False
    if not stat.S_ISREG(status.st_mode) or status.st_uid != os.getuid():
        return False
    ours = _OURS.fullmatch(entry.name)
    if ours:
        host, pid = ours.group(1), int(ours.group(2))
        return host == HOST and not _running(pid)
    earlier = _EARLIER.fullmatch(entry.name)
    return bool(earlier) and time.time() - status.st_mtime > EARLIER_NAMES_AGE


def _running(pid: int) -> bool:
    """True when a process with this id exists (ours or another user's)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True
