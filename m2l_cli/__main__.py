"""The `m2l` command starts here (as does `python -m m2l_cli`). Signals are handled
before anything heavy is imported: Ctrl-C or SIGTERM at any moment, start-up included,
ends the process with one line and exit 130 or 143, never a traceback."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from types import FrameType

from .errors import Terminated

STOPPED = {KeyboardInterrupt: ("interrupted", 130), Terminated: ("terminated", 143)}


_MAIN_PROCESS = os.getpid()


def _terminate(number: int, frame: FrameType | None) -> None:
    """SIGTERM or SIGHUP in the command's process unwinds it; in a child it forked
    (a data loader worker), the signal does what it did before: end the child."""
    if os.getpid() != _MAIN_PROCESS:
        signal.signal(number, signal.SIG_DFL)
        os.kill(os.getpid(), number)
        return
    raise Terminated


def main() -> None:
    """Entry point: the command's exit code; 130 on Ctrl-C, 143 on SIGTERM or SIGHUP."""
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    try:
        from .cli import run
        from .stdio import guard_standard_streams

        guard_standard_streams()
        code = run(sys.argv[1:])
    except (KeyboardInterrupt, Terminated) as stop:
        word, code = STOPPED[Terminated if isinstance(stop, Terminated) else KeyboardInterrupt]
        with contextlib.suppress(AttributeError, OSError, ValueError):
            sys.stderr.write(f"m2l: {word}\n")
    for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(number, signal.SIG_IGN)  # the work is done: shutting down is not undone
    sys.exit(code)


if __name__ == "__main__":
    main()
