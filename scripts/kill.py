"""Kill tests at scale: SIGINT, SIGTERM and SIGKILL at random moments of `m2l encode`,
`decode` and `batch`, each followed by a look for partial outputs and temporary files
(after SIGKILL, which no process can answer, only after the next run, which must also
finish the job).

    .venv/bin/python scripts/kill.py                 # 10 rounds of 9 cases (~10 min)
    .venv/bin/python scripts/kill.py --rounds 3 --seed 7

A moment is either a random time after the start (start-up included) or a random
time after the first temporary file appears (the output being written). The test suite
runs one round (tests/test_kill.py).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile

from m2l_cli import Codec, Latents
from m2l_cli.errors import M2LError

M2L = str(Path(sys.executable).parent / "m2l")
EARLIEST = 0.3  # seconds: before this, Python itself is starting and handles signals
EXPECTED_CODES = {  # 0: the run finished before the signal came
    signal.SIGINT: {130, 0},
    signal.SIGTERM: {143, 0},
    signal.SIGKILL: {-signal.SIGKILL, 0},
}
COMMANDS = {
    "encode": ["encode", "long.wav"],
    "decode": ["decode", "short.m2l"],
    "batch": ["batch", "album"],
}
OUTPUTS = {
    "encode": ["long.wav.m2l"],
    "decode": ["short.m2l.wav"],
    "batch": [f"album/{index}.wav.m2l" for index in range(3)],
}
DECODED_FRAMES = 6 * 44100


@dataclass
class Outcome:
    """What one kill left: its exit code, the next run's, temporary files and broken
    outputs."""

    command: str
    signal: str
    moment: str
    exit_code: int | None = None
    next_exit_code: int | None = None
    leftovers: list[str] = field(default_factory=list)
    incomplete: list[str] = field(default_factory=list)


def make_inputs(folder: Path, model: Path) -> None:
    """The inputs of the three commands, beside `model` (the tiny model's file)."""
    rng = np.random.default_rng(0)
    soundfile.write(folder / "long.wav", rng.uniform(-0.3, 0.3, 44100 * 12), 44100)
    album = folder / "album"
    album.mkdir()
    for index in range(3):
        soundfile.write(album / f"{index}.wav", rng.uniform(-0.3, 0.3, 44100 * 4), 44100)
    codec = Codec.load(model, device="cpu", precision="fp32")
    codec.encode(rng.uniform(-0.3, 0.3, DECODED_FRAMES), 44100).save(folder / "short.m2l")


def kill_once(inputs: Path, workdir: Path, command: str, number: int, seed: str) -> Outcome:
    """Runs `command` in a copy of `inputs`, signals it at a random moment, and looks
    at what is left (after one more run for SIGKILL)."""
    rng = random.Random(seed)
    for name in ("long.wav", "short.m2l", "album"):
        source = inputs / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, workdir / name)
    environment = {**os.environ, "M2L_MODEL": str(inputs / "tiny.safetensors")}
    arguments = [M2L, *COMMANDS[command], "--threads", "1", "--quiet"]
    process = subprocess.Popen(arguments, cwd=workdir, env=environment, stderr=subprocess.DEVNULL)
    moment = _wait_for_moment(rng, workdir, process)
    outcome = Outcome(command, signal.Signals(number).name, moment)
    if process.poll() is None:
        process.send_signal(number)
    outcome.exit_code = process.wait(timeout=120)
    if number == signal.SIGKILL:
        rerun = subprocess.run(
            [*arguments, "--force"], cwd=workdir, env=environment, capture_output=True, timeout=300
        )
        outcome.next_exit_code = rerun.returncode
    outcome.leftovers = sorted(str(path) for path in workdir.rglob(".m2l-*"))
    outcome.incomplete = [name for name in OUTPUTS[command] if _broken(workdir / name)]
    return outcome


def _wait_for_moment(rng: random.Random, workdir: Path, process: subprocess.Popen) -> str:
    """Sleeps until the moment to signal; says which kind of moment it was."""
    if rng.random() < 0.5:
        delay = rng.uniform(EARLIEST, 3.0)
        time.sleep(delay)
        return f"{delay:.2f} s after the start"
    started, deadline = time.monotonic(), time.monotonic() + 60
    time.sleep(EARLIEST)
    while not any(workdir.rglob(".m2l-*")) and time.monotonic() < deadline:
        if process.poll() is not None:
            return f"after the end ({time.monotonic() - started:.2f} s): no temporary file seen"
        time.sleep(0.002)
    delay = rng.uniform(0.0, 0.3)
    time.sleep(delay)
    return f"{delay:.2f} s after a temporary file appeared ({time.monotonic() - started:.2f} s)"


def _broken(path: Path) -> bool:
    """True for an output that exists but is not complete."""
    if not path.exists():
        return False
    if path.suffix == ".m2l":
        try:
            Latents.load(path)
        except M2LError:
            return True
        return False
    try:
        return soundfile.info(str(path)).frames != DECODED_FRAMES
    except (RuntimeError, soundfile.LibsndfileError):
        return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    options = parser.parse_args()
    runs, bad = 0, []
    with tempfile.TemporaryDirectory() as scratch:
        inputs = Path(scratch) / "inputs"
        inputs.mkdir()
        Codec.create("tiny", seed=0).save(inputs / "tiny.safetensors")
        make_inputs(inputs, inputs / "tiny.safetensors")
        for round_number in range(options.rounds):
            for command in COMMANDS:
                for number in EXPECTED_CODES:
                    workdir = Path(tempfile.mkdtemp(dir=scratch))
                    seed = f"{options.seed}-{round_number}-{command}-{number}"
                    outcome = kill_once(inputs, workdir, command, number, seed)
                    runs += 1 + (outcome.next_exit_code is not None)
                    ok = (
                        not outcome.leftovers
                        and not outcome.incomplete
                        and outcome.exit_code in EXPECTED_CODES[number]
                        and outcome.next_exit_code in (None, 0)
                    )
                    print(("ok  " if ok else "BAD ") + str(outcome), flush=True)
                    if not ok:
                        bad.append(outcome)
                    shutil.rmtree(workdir)
    cases = options.rounds * len(COMMANDS) * len(EXPECTED_CODES)
    print(f"{cases} kills, {runs} runs of m2l: {len(bad)} left a partial or temporary file")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
