"""What the command shows: one-line messages on stderr, progress bars and a status
line on a terminal, tables, and the numbers in them. Every user string is shown
escaped (`text.shown`) and never read as markup. Rich is imported only to draw."""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from io import StringIO
from typing import TYPE_CHECKING, Any

from .text import shown

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID
    from rich.text import Text

Row = Sequence[str]


def say(line: str) -> None:
    """One line on stderr (where every message goes; stdout carries only data)."""
    try:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass  # stderr itself is gone: the exit code still tells


def error(message: str) -> None:
    say(f"m2l: error: {shown(message)}")


def note(message: str) -> None:
    say(f"m2l: {shown(message)}")


def on_terminal() -> bool:
    """True when stderr is a terminal: progress and status lines only go there."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


@contextmanager
def status(message: str) -> Iterator[None]:
    """`message` on a terminal while the block runs (the first seconds of a model
    command: importing torch, loading weights); erased when it ends."""
    if not on_terminal():
        yield
        return
    say(f"m2l: {shown(message)} ...")
    try:
        yield
    finally:
        try:
            sys.stderr.write("\x1b[1A\x1b[2K")  # up one line, erase it
            sys.stderr.flush()
        except (OSError, ValueError):
            pass


def duration_text(seconds: float) -> str:
    """1:02:03.5, 2:03.5 or 3.5 s."""
    minutes, rest = divmod(seconds, 60)
    hours, minutes = divmod(int(minutes), 60)
    if hours:
        return f"{hours}:{minutes:02d}:{rest:04.1f}"
    return f"{minutes}:{rest:04.1f}" if minutes else f"{rest:.1f} s"


def size_text(size: float) -> str:
    """Decimal units: 950 B, 45.2 kB, 3.1 MB."""
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"


def speed_text(audio_seconds: float, wall_seconds: float) -> str:
    """Seconds of audio per wall second: '35.1x real time'."""
    return f"{audio_seconds / max(wall_seconds, 1e-6):.1f}x real time"


def written_line(target: str, seconds: float, channels: int, size: int, wall: float) -> str:
    """The line after a file is written: duration, channels, size, bitrate, speed."""
    bitrate = size * 8 / 1000 / seconds if seconds else 0.0
    return (
        f"wrote {'<stdout>' if target == '-' else target}: {duration_text(seconds)}, "
        f"{channels} channel{'s' if channels != 1 else ''}, {size_text(size)}, "
        f"{bitrate:.1f} kbit/s, {speed_text(seconds, wall)}"
    )


def table(
    title: str,
    headers: Row,
    rows: Sequence[Row],
    width: int | None = None,
    folding: Sequence[int] = (0,),
) -> str:
    """A table as text (no vertical lines, so ten columns fit 80 characters); the
    columns numbered in `folding` share the width left and fold long cells, the others
    keep their cells whole. Cells are shown escaped, never as markup."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    grid = Table(title=_plain(title), box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for index, header in enumerate(headers):
        if index in folding:
            grid.add_column(_plain(header), overflow="fold", ratio=1)
        else:
            grid.add_column(_plain(header), no_wrap=True)
    for row in rows:
        grid.add_row(*(_plain(cell) for cell in row))
    buffer = StringIO()
    Console(file=buffer, width=width or 80, color_system=None, highlight=False).print(grid)
    return buffer.getvalue().rstrip("\n")


def terminal_width(stream: Any) -> int | None:
    """The width of the terminal `stream` is, None when it is not one."""
    try:
        return shutil.get_terminal_size().columns if stream.isatty() else None
    except (AttributeError, ValueError, OSError):
        return None


def _plain(value: str) -> Text:
    from rich.text import Text

    return Text(shown(value))


@dataclass
class Bar:
    """A progress bar: percent, units done of all, x real time, time left.
    `duration` (seconds of audio in all) turns the share done into audio seconds;
    without it, `advance` is told the audio seconds each step finished."""

    progress: Progress
    task: TaskID
    duration: float | None
    started: float = field(default_factory=time.monotonic)
    audio: float = 0.0

    def advance(self, units: int, audio: float = 0.0) -> None:
        self.progress.advance(self.task, units)
        task = self.progress.tasks[0]
        if self.duration is not None and task.total:
            self.audio = self.duration * min(task.completed / task.total, 1.0)
        else:
            self.audio += audio
        wall = time.monotonic() - self.started
        self.progress.update(self.task, speed=speed_text(self.audio, wall) if self.audio else "")


@contextmanager
def progress_bar(
    description: str, total: int | None, quiet: bool, duration: float | None = None
) -> Iterator[Bar | None]:
    """A progress bar on stderr, only on a terminal and without --quiet."""
    if quiet or not on_terminal():
        yield None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        TaskProgressColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[speed]}", markup=False),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task(shown(description), total=total, speed="")
        yield Bar(progress, task, duration)
