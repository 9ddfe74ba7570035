"""stdin and stdout, the streams `-` names: a closed stream or a failed write (a full
disk, a closed pipe) is a one-line error, never a traceback."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO

from .errors import M2LError

_closed: set[str] = set()


def guard_standard_streams() -> None:
    """For a process started with stdin, stdout or stderr closed: remembers which, and
    puts /dev/null in their place, so no file we open later takes their numbers."""
    for name in ("stdin", "stdout", "stderr"):
        if getattr(sys, name) is None:
            _closed.add(name)
            os.open(os.devnull, os.O_RDWR)  # the lowest free number: the closed one
    if "stderr" in _closed:
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115 (open for the process's life)


def _stream(name: str) -> BinaryIO:
    stream = getattr(sys, name)
    if name in _closed or stream is None:
        raise M2LError(f"{name} is closed")
    return stream.buffer


def read_up_to(stream: BinaryIO, size: int, block: int = 1 << 20) -> bytes:
    """`size` bytes, fewer only at the end of the stream (pipes read short); read a
    block at a time, so a size the data never reach allocates only what arrived."""
    parts, got = [], 0
    while got < size and (part := stream.read(min(size - got, block))):
        parts.append(part)
        got += len(part)
    return b"".join(parts)


def stdin() -> BinaryIO:
    """The binary stdin; M2LError when it is closed."""
    return _stream("stdin")


@contextmanager
def writing_stdout() -> Iterator[BinaryIO]:
    """The binary stdout, for writes that fail as one M2LError (flushed on success)."""
    stream = _stream("stdout")
    try:
        yield stream
        stream.flush()
    except OSError as error:
        abandon_stdout()
        raise M2LError(f"cannot write to stdout ({error.strerror or error})") from None


def write_stdout(data: bytes) -> None:
    """Writes `data` to stdout and flushes it, for output that streams as it is made."""
    with writing_stdout() as stream:
        stream.write(data)


def copy_to_stdout(source: BinaryIO) -> None:
    """Copies a binary stream to stdout."""
    with writing_stdout() as stream:
        shutil.copyfileobj(source, stream)


def print_text(text: str) -> None:
    """Writes `text` and a newline to stdout (UTF-8; undecodable names escaped)."""
    data = (text + "\n").encode("utf-8", "backslashreplace")
    with writing_stdout() as stream:
        stream.write(data)


def flush_stdout() -> None:
    """Flushes what Python still buffers for stdout, before the process exits."""
    if sys.stdout is not None and "stdout" not in _closed:
        with writing_stdout():
            sys.stdout.flush()


def abandon_stdout() -> None:
    """After a failed write to stdout: it becomes /dev/null, so the interpreter's own
    flush at exit cannot fail again with a traceback."""
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno() if sys.stdout is not None else 1)
        os.close(null)
    except (OSError, ValueError):
        pass
