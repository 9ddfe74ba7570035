"""Running the real `m2l` command in tests: the helpers the command-line tests share."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import IO

M2L = str(Path(sys.executable).parent / "m2l")


@dataclass
class Run:
    """A finished run of m2l: exit code and output."""

    returncode: int
    stdout: bytes
    stderr: bytes


def environment(model: Path | None) -> dict[str, str]:
    """The environment with M2L_MODEL set to `model`, or unset."""
    names = {key: value for key, value in os.environ.items() if key != "M2L_MODEL"}
    return names | ({"M2L_MODEL": str(model)} if model is not None else {})


def start(*args: str, cwd: Path, model: Path | None) -> subprocess.Popen:
    """Starts `m2l args` in the background, stderr piped, with Ctrl-C's default action:
    a shell's background job inherits SIGINT ignored, and Python keeps ignoring it."""
    return subprocess.Popen(
        [M2L, *args],
        cwd=cwd,
        env=environment(model),
        stderr=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def m2l(
    *args: str,
    cwd: Path,
    model: Path | None,
    stdin: bytes | IO[bytes] | None = None,
    timeout: float = 300,
    memory_mib: int | None = None,
) -> Run:
    """Runs `m2l args` to its end. `stdin`: bytes, an open file, or None for /dev/null.
    With `memory_mib`, the process may not allocate more data than that: what would
    need more fails there (and a test sees a traceback, not a one-line error)."""

    def limit_memory() -> None:
        if memory_mib is not None:
            size = memory_mib << 20
            resource.setrlimit(resource.RLIMIT_DATA, (size, size))

    feed = subprocess.PIPE if isinstance(stdin, bytes) else stdin or subprocess.DEVNULL
    result = subprocess.run(
        [M2L, *args],
        cwd=cwd,
        env=environment(model),
        input=stdin if isinstance(stdin, bytes) else None,
        stdin=None if isinstance(stdin, bytes) else feed,
        capture_output=True,
        timeout=timeout,
        preexec_fn=limit_memory,
    )
    return Run(result.returncode, result.stdout, result.stderr)


def files_in(folder: Path) -> set[str]:
    return {str(path.relative_to(folder)) for path in folder.rglob("*")}


def assert_one_line_error(
    result: Run | subprocess.CompletedProcess[bytes], *words: str, code: int = 1
) -> str:
    """The run failed with `code` and one error line holding every word; no traceback.
    Returns that line."""
    stderr = result.stderr.decode(errors="replace")
    assert result.returncode == code, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("m2l: error:")]
    assert len(errors) == 1, stderr
    assert "Traceback" not in stderr
    for word in words:
        assert word in errors[0], errors[0]
    return errors[0]
