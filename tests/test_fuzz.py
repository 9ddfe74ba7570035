"""Seeded fuzzing of what m2l reads: thousands of mutated containers and weights files,
each of which must load or be refused with the project's own error, in bounded time
and memory. `scripts/fuzz.py` runs the same cases by the hundred thousand."""

from __future__ import annotations

import pytest
import script_modules

pytestmark = pytest.mark.usefixtures("single_torch_thread")

HANG_SECONDS = 20.0  # far beyond any case (milliseconds): only a hang reaches it


@pytest.fixture(scope="module")
def fuzz():
    return script_modules.load("fuzz")


def test_mutated_containers_load_or_are_refused_in_one_line(fuzz):
    tally = fuzz.run_cases(
        fuzz.container_cases(seed=1, count=3000),
        fuzz.check_container,
        fuzz.Tally(),
        HANG_SECONDS,
        measure_memory=True,
    )
    assert tally.cases == 3000
    assert tally.failures == [] and tally.hangs == 0
    assert tally.refused > 2000  # most mutations break a file; and some keep it valid:
    assert tally.loaded > 10
    assert tally.peak_bytes < 4 << 20  # nothing a header claims is allocated before it is seen
    assert tally.peak_ratio < 16  # memory follows the file's real size


def test_mutated_weights_files_load_or_are_refused_in_one_line(fuzz):
    cases = fuzz.weights_cases(fuzz.tiny_weights(), seed=1, count=400)
    tally = fuzz.run_cases(cases, fuzz.check_weights, fuzz.Tally(), HANG_SECONDS)
    assert tally.cases == 400
    assert tally.failures == [] and tally.hangs == 0
    assert tally.refused > 300 and tally.loaded > 5


def test_the_fuzzer_finds_what_it_looks_for(fuzz):
    """A reader that raises something else is caught, and so is one that hangs."""

    def broken(data: bytes) -> bool:
        raise IndexError("a reader bug")

    def stuck(data: bytes) -> bool:
        while True:
            pass

    tally = fuzz.run_cases(iter([b"x", b"y"]), broken, fuzz.Tally(), HANG_SECONDS)
    assert [line.split(":")[1].strip() for line in tally.failures] == ["IndexError"] * 2
    assert fuzz.run_cases(iter([b"x"]), stuck, fuzz.Tally(), 0.2).hangs == 1
