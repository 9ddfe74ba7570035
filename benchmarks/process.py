"""Whole-process times, as users meet them: `m2l encode clip.wav`, `m2l decode clip.m2l`
(Python start, imports and model load included; the bundled model), `m2l --help` and
`m2l info clip.m2l`. Each run is a new `python -m m2l_cli` process; one untimed run
first puts the files in the page cache."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

from common import Result, Task, cpu_model, finish_timing, timed, write_wav

SAMPLE_RATE = 44100


def process_tasks(
    folder: Path, seconds: float, repeats: int, threads: int, source: str = ""
) -> list[Task]:
    """The whole-process rows for one source tree (this one, or --baseline's): encode
    and decode a mono clip of `seconds`, then --help and info on the container."""
    clip = folder / f"clip-{seconds:g}s.wav"
    if not clip.exists():
        write_wav(clip, seconds, SAMPLE_RATE, seed=0)
    tag = "baseline" if source else "current"
    container, decoded = folder / f"clip-{tag}.m2l", folder / f"clip-{tag}.wav"
    common = dict(kind="process", threads=threads, repeats=repeats, source=source)
    minutes = f"{seconds / 60:g} min" if seconds >= 120 else f"{seconds:g} s"
    return [
        Task(
            label=f"m2l encode ({minutes}, whole process)",
            command=["encode", str(clip), "-o", str(container), "--force", "--quiet"],
            seconds=seconds,
            **common,
        ),
        Task(
            label=f"m2l decode ({minutes}, whole process)",
            command=["decode", str(container), "-o", str(decoded), "--force", "--quiet"],
            seconds=seconds,
            **common,
        ),
        Task(label="m2l --help", command=["--help"], seconds=0.0, **common),
        Task(label="m2l info FILE", command=["info", str(container)], seconds=0.0, **common),
    ]


def measure_process(task: Task) -> Result:
    """Times `python -m m2l_cli COMMAND` (median of `repeats` after one untimed run)."""
    environment = {**os.environ, "OMP_NUM_THREADS": str(task.threads)}
    if task.source:
        environment["PYTHONPATH"] = task.source
    command = [sys.executable, "-m", "m2l_cli", *task.command]

    def run() -> None:
        subprocess.run(command, env=environment, check=True, capture_output=True)

    result = Result(task, cpu=cpu_model(), audio_seconds=task.seconds)
    try:
        run()
        runs = [timed(run, resource.RUSAGE_CHILDREN) for _ in range(task.repeats)]
    except subprocess.CalledProcessError as error:
        tail = (error.stderr or b"").decode(errors="replace").strip().splitlines()
        result.error = f"exit {error.returncode}: {(tail or ['no output'])[-1]}"
        return result
    finish_timing(result, runs)
    return result
