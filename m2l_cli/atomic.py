"""Atomic outputs: a file is written under a temporary name beside its target and
renamed into place when complete, so an error or Ctrl-C never leaves a partial file."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

from .paths import STDIO, TEMPORARY_PREFIX


class AtomicOutput:
    """A temporary file beside `target` that becomes `target` only on `commit`.

    As a context manager it yields the temporary path, commits on success and discards
    on any error (Ctrl-C included). `-` means stdout: the data are copied there on commit.
    """

    def __init__(self, target: str | Path) -> None:
        self.target = str(target)
        folder = Path(tempfile.gettempdir()) if self.target == STDIO else Path(target).parent
        handle, name = tempfile.mkstemp(prefix=TEMPORARY_PREFIX, suffix=".part", dir=folder)
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
        if self.target == STDIO:
            with self.path.open("rb") as stream:
                shutil.copyfileobj(stream, sys.stdout.buffer)
            sys.stdout.buffer.flush()
            self.discard()
        else:
            os.replace(self.path, self.target)

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
