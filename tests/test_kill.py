"""Kill tests: SIGINT, SIGTERM or SIGKILL at a random (seeded) moment of `m2l encode`,
`decode` and `batch` leaves no partial output and no temporary file; after SIGKILL,
which no process can answer, the next run removes what was left and finishes the job.
`scripts/kill.py` runs many more moments."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import script_modules

from m2l_cli import Codec

SIGNALS = {"SIGINT": signal.SIGINT, "SIGTERM": signal.SIGTERM, "SIGKILL": signal.SIGKILL}


@pytest.fixture(scope="module")
def kill():
    return script_modules.load("kill")


@pytest.fixture(scope="module")
def inputs(kill, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("inputs")
    model = folder / "tiny.safetensors"
    Codec.create("tiny", seed=0).save(model)
    kill.make_inputs(folder, model)
    return folder


@pytest.mark.parametrize("name", SIGNALS)
@pytest.mark.parametrize("command", ["encode", "decode", "batch"])
def test_a_signal_at_a_random_moment_leaves_no_partial_or_temporary_file(
    kill, inputs: Path, tmp_path: Path, command: str, name: str
) -> None:
    outcome = kill.kill_once(inputs, tmp_path, command, SIGNALS[name], seed=f"{command}-{name}")
    assert outcome.leftovers == [], outcome
    assert outcome.incomplete == [], outcome
    assert outcome.exit_code in kill.EXPECTED_CODES[SIGNALS[name]], outcome
    if SIGNALS[name] == signal.SIGKILL:
        assert outcome.next_exit_code == 0, outcome  # the next run finished the job
