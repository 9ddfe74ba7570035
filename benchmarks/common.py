"""What the benchmark's parent and its measurement processes share: the task and result
records, wall-clock and CPU timing, the machine's load, the test signal."""

from __future__ import annotations

import os
import platform
import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# A model id given to the codec up front: without one, the first encode of a codec
# made by Codec.create hashes a serialized copy of all its weights (a one-off cost of
# seconds and, for `paper`, over 1 GiB of peak RSS that a loaded model never pays).
BENCH_MODEL_ID = "bench0000000"
RESULT_MARKER = "BENCH-RESULT "  # starts the line a measurement process prints its result on
# A measurement whose process used less than this fraction of its threads' CPU time
# was starved by other processes (see `starved`).
STARVED_FRACTION = 0.8


@dataclass
class Task:
    """One measurement. Every kind but `process` runs in a fresh Python process."""

    kind: str  # peak | encode | decode | file-encode | file-decode | train | process
    preset: str = "small"
    precision: str = "bf16"
    threads: int = 2
    seed: int = 0
    repeats: int = 1
    seconds: float = 30.0  # audio per stream
    streams: int = 1
    input_path: str = ""
    output_path: str = ""
    label: str = ""
    operation: str = ""  # peak: matmul | conv
    policy: str = ""  # train: the consistency_precision setting
    stage: int = 0  # train: the curriculum stage the step is taken in
    batch: int = 8  # train: chunk pairs per step
    command: list[str] = field(default_factory=list)  # process: m2l's arguments
    source: str = ""  # a source tree to measure instead of this one (--baseline)

    def describe(self) -> str:
        origin = " [baseline]" if self.source else ""
        return f"{self.preset} {self.precision} {self.label}{origin}"


@dataclass
class Result:
    """What a measurement gave (times in seconds, memory in MiB, FLOPs per unit: per
    audio second for coding rows, per step for training, per call for peaks)."""

    task: Task
    cpu: str = ""
    audio_seconds: float = 0.0  # total audio over all streams, per run
    times: list[float] = field(default_factory=list)
    own_cpu_s: list[float] = field(default_factory=list)
    others_cpu_share: float = 0.0  # of the machine's CPU capacity, during the timed runs
    median_s: float = 0.0
    x_real_time: float | None = None
    steps_per_s: float | None = None
    flops_per_unit: float | None = None
    flops_by_dtype: dict[str, float] = field(default_factory=dict)
    gflops: float | None = None
    peak_share: float | None = None  # of the conv peak of the precisions used
    flops_detail: dict[str, float] = field(default_factory=dict)
    rss_before_work_mib: float = 0.0
    load_average_before: float = 0.0  # 1-minute load average when the process started
    peak_rss_mib: float = 0.0
    error: str | None = None
    attempts: int = 1


def cpu_model() -> str:
    """The CPU's model name, as /proc/cpuinfo gives it."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_seconds(who: int = resource.RUSAGE_SELF) -> float:
    """CPU seconds (user + system) this process (or its finished children) used."""
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def machine_busy_seconds() -> float:
    """CPU seconds every process on the machine has used since boot (from /proc/stat),
    counting steal (time the hypervisor gave to others) as busy; 0 if unreadable."""
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = values
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


@dataclass
class Run:
    """One timed run: its wall time, and the CPU time of the measured work and of all
    other processes."""

    wall_s: float
    own_cpu_s: float
    others_cpu_s: float


def timed(run: Callable[[], object], who: int = resource.RUSAGE_SELF) -> Run:
    """Times `run`; its CPU time is this process's, or its children's (RUSAGE_CHILDREN)."""
    wall, own, busy = time.perf_counter(), cpu_seconds(who), machine_busy_seconds()
    run()
    own = cpu_seconds(who) - own
    return Run(time.perf_counter() - wall, own, max(machine_busy_seconds() - busy - own, 0.0))


def timed_runs(run: Callable[[], object], warm_up: Callable[[], object], repeats: int) -> list[Run]:
    """Runs `warm_up` once, then `run` `repeats` times."""
    warm_up()
    return [timed(run) for _ in range(repeats)]


def finish_timing(result: Result, runs: list[Run]) -> None:
    """Median wall time, and how much CPU other processes took meanwhile."""
    result.times = [item.wall_s for item in runs]
    result.own_cpu_s = [item.own_cpu_s for item in runs]
    result.median_s = statistics.median(result.times)
    if result.audio_seconds:
        result.x_real_time = result.audio_seconds / result.median_s
    capacity = sum(result.times) * (os.cpu_count() or 1)
    result.others_cpu_share = sum(item.others_cpu_s for item in runs) / capacity


def synthesize(num_samples: int, sample_rate: int, seed: int, offset: int = 0) -> np.ndarray:
    """A mono test signal [1, n]: three sines plus smoothed noise, peak below 1.

    `offset` (in samples) lets a long file be written block by block."""
    rng = np.random.default_rng(seed * 1_000_003 + offset)
    t = (offset + np.arange(num_samples)) / sample_rate
    tones = sum(0.2 * np.sin(2 * np.pi * freq * t) for freq in (220.0, 554.4, 1318.5))
    noise = np.convolve(rng.standard_normal(num_samples), np.ones(8) / 8, mode="same")
    return (tones + 0.1 * noise).astype(np.float32)[None]


def write_wav(path: Path, seconds: float, sample_rate: int, seed: int) -> None:
    """A mono 16-bit WAV of the test signal, written 10 s at a time."""
    import soundfile

    total = round(seconds * sample_rate)
    block = 10 * sample_rate
    with soundfile.SoundFile(path, "w", sample_rate, 1, subtype="PCM_16") as file:
        for offset in range(0, total, block):
            count = min(block, total - offset)
            file.write(synthesize(count, sample_rate, seed, offset)[0])


def starved(result: Result) -> bool:
    """True when the work got clearly less CPU than its threads: another process took
    a core, which (with OpenMP spin-waiting) can slow torch down many times over."""
    if result.error or not result.times or result.task.kind == "process":
        return False
    return sum(result.own_cpu_s) / sum(result.times) < STARVED_FRACTION * result.task.threads
