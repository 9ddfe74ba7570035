"""CPU speed and memory benchmark for m2l_cli, with random (untrained) weights.

    .venv/bin/python benchmarks/bench.py                 # full run (~20-30 min on 2 cores)
    .venv/bin/python benchmarks/bench.py --quick         # smoke check (~1-2 min)
    .venv/bin/python benchmarks/bench.py --presets small --precisions bf16

Every measurement runs in its own fresh Python process (this script started again with
--worker), so the peak RSS it reports (ru_maxrss) belongs to that measurement alone.
See benchmarks/README.md for what each number means.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

RESULTS_DIR = Path(__file__).resolve().parent / "results"
RESULT_MARKER = "BENCH-RESULT "
# A model id given to the codec up front: without one, the first encode of a codec
# made by Codec.create hashes a serialized copy of all its weights (a one-off cost of
# seconds and, for `paper`, over 1 GiB of peak RSS that a loaded model never pays).
BENCH_MODEL_ID = "bench0000000"
# A measurement whose process used less than this fraction of its threads' CPU time
# was starved by other processes (see `starved`).
STARVED_FRACTION = 0.8

PEER_REFERENCE = [
    # Measured once, separately, with the official Music2Latent (v1) code on the same
    # machine (random weights, 30 s of audio): quoted, NOT measured by this script.
    {"measurement": "encode", "x_real_time": 2.0, "gflops": 90.0, "peak_rss_mib": 3.8 * 1024},
    {"measurement": "decode", "x_real_time": 0.28, "gflops": 90.0, "peak_rss_mib": 6.8 * 1024},
]

FLOP_NOTE = """\
How GFLOP/s is computed: torch.utils.flop_counter.FlopCounterMode counts the FLOPs
(a multiply-add = 2 FLOPs) of convolutions, linear layers and attention (the CPU
flash-attention kernel is counted with torch's own SDPA formula, as full attention) in:
  encode: one encoder call on one chunk (batch 1);
  decode: one decode step per chunk = one decoder call on one chunk + one consistency
          model call on two chunks (the steady-state step; the first and last steps of
          a file run the consistency model on one chunk each, so over a file of N chunks
          this is exact up to attention: 2N chunk passes either way).
Element-wise ops, norms, the STFT and resampling are not counted.
FLOPs per audio second = FLOPs per chunk x (44100 / 32768) chunks per second;
GFLOP/s = FLOPs per audio second / measured wall seconds per audio second
        = FLOPs per audio second x x-real-time / 1e9."""


@dataclass
class Task:
    """One measurement, run in a fresh process."""

    kind: str  # encode | decode | file-encode | file-decode
    preset: str
    precision: str
    threads: int
    seed: int = 0
    repeats: int = 1
    seconds: float = 30.0  # audio per stream
    streams: int = 1
    input_path: str = ""
    output_path: str = ""
    label: str = ""

    def describe(self) -> str:
        return f"{self.preset} {self.precision} {self.label}"


@dataclass
class Result:
    """What a worker measured (times in seconds, memory in MiB)."""

    task: Task
    audio_seconds: float = 0.0  # total audio over all streams, per run
    times: list[float] = field(default_factory=list)
    own_cpu_s: list[float] = field(default_factory=list)
    others_cpu_share: float = 0.0  # of the machine's CPU capacity, during the timed runs
    median_s: float = 0.0
    x_real_time: float = 0.0
    flops_per_audio_second: float | None = None
    gflops: float | None = None
    flops_detail: dict[str, float] = field(default_factory=dict)
    rss_before_work_mib: float = 0.0
    load_average_before: float = 0.0  # 1-minute load average when the process started
    peak_rss_mib: float = 0.0
    error: str | None = None
    attempts: int = 1


# ----------------------------------------------------------------------------- worker


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def synthesize(num_samples: int, sample_rate: int, seed: int, offset: int = 0) -> np.ndarray:
    """A mono test signal [1, n]: three sines plus smoothed noise, peak below 1.

    `offset` (in samples) lets a long file be written block by block."""
    rng = np.random.default_rng(seed * 1_000_003 + offset)
    t = (offset + np.arange(num_samples)) / sample_rate
    tones = sum(0.2 * np.sin(2 * np.pi * freq * t) for freq in (220.0, 554.4, 1318.5))
    noise = np.convolve(rng.standard_normal(num_samples), np.ones(8) / 8, mode="same")
    return (tones + 0.1 * noise).astype(np.float32)[None]


def make_codec(task: Task):
    """A codec with random weights, on the CPU, at the task's precision and threads."""
    from m2l_cli.codec import Codec
    from m2l_cli.runtime import set_threads

    set_threads(task.threads)
    return Codec.create(
        task.preset,
        seed=task.seed,
        precision=task.precision,
        device="cpu",
        model_id=BENCH_MODEL_ID,
    )


def attention_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    """FLOPs of the CPU flash-attention kernel, which FlopCounterMode does not know."""
    from torch.utils.flop_counter import sdpa_flop_count

    return sdpa_flop_count(query_shape, key_shape, value_shape)


def count_flops(function: Callable[[], object]) -> tuple[float, dict[str, float]]:
    """Total FLOPs of one call, and the FLOPs by aten op."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    mapping = {}
    cpu_attention = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if cpu_attention is not None:
        mapping[cpu_attention] = attention_flops
    with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        function()
    by_op = {str(op): float(n) for op, n in counter.get_flop_counts().get("Global", {}).items()}
    return float(counter.get_total_flops()), by_op


def flops_per_chunk(codec, kind: str) -> tuple[float, dict[str, float]]:
    """FLOPs of encoding one chunk, or of one decode step (decoder on one chunk plus the
    consistency model on two chunks), counted on batch-1 model calls."""
    import torch

    from m2l_cli.defaults import DEFAULT_SIGMA_COND

    config, runner = codec.config, codec.runner
    generator = torch.Generator().manual_seed(0)
    spectrogram = torch.randn(1, 2, config.frequency_bins, config.chunk_frames, generator=generator)
    if kind == "encode":
        return count_flops(lambda: runner.encode(spectrogram))
    latents = torch.tanh(torch.randn(1, config.num_latents, config.latent_dim, generator=generator))
    decoder_flops, decoder_ops = count_flops(lambda: runner.decode_features(latents))
    features = [level.float() for level in runner.decode_features(latents)]
    two_chunk_features = [torch.cat([level, level]) for level in features]
    noisy = torch.randn(1, 2, 2, config.frequency_bins, config.chunk_frames, generator=generator)
    sigma = torch.tensor([[DEFAULT_SIGMA_COND, config.sigma_max]])
    consistency_flops, consistency_ops = count_flops(
        lambda: runner.denoise(noisy, sigma, two_chunk_features)
    )
    detail = {f"decoder {op}": n for op, n in decoder_ops.items()}
    detail |= {f"consistency (2 chunks) {op}": n for op, n in consistency_ops.items()}
    return decoder_flops + consistency_flops, detail


def add_flops(result: Result, codec, kind: str) -> None:
    """Fills FLOPs per audio second and achieved GFLOP/s from the measured speed."""
    per_chunk, detail = flops_per_chunk(codec, kind)
    config = codec.config
    per_second = per_chunk * config.sample_rate / config.chunk_samples
    result.flops_per_audio_second = per_second
    result.flops_detail = {"per_chunk": per_chunk, **detail}
    result.gflops = per_second * result.x_real_time / 1e9


def own_cpu_seconds() -> float:
    """CPU seconds (user + system) this process has used."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
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
    """One timed run: its wall time, and the CPU time of this process and of all others."""

    wall_s: float
    own_cpu_s: float
    others_cpu_s: float


def timed(run: Callable[[], object]) -> Run:
    wall, own, busy = time.perf_counter(), own_cpu_seconds(), machine_busy_seconds()
    run()
    own = own_cpu_seconds() - own
    return Run(time.perf_counter() - wall, own, max(machine_busy_seconds() - busy - own, 0.0))


def timed_runs(run: Callable[[], None], warm_up: Callable[[], None], repeats: int) -> list[Run]:
    """Runs `warm_up` once, then `run` `repeats` times."""
    warm_up()
    return [timed(run) for _ in range(repeats)]


def finish_timing(result: Result, runs: list[Run]) -> None:
    """Median wall time, x-real-time, and how much CPU other processes took meanwhile."""
    result.times = [item.wall_s for item in runs]
    result.own_cpu_s = [item.own_cpu_s for item in runs]
    result.median_s = statistics.median(result.times)
    result.x_real_time = result.audio_seconds / result.median_s
    capacity = sum(result.times) * (os.cpu_count() or 1)
    result.others_cpu_share = sum(item.others_cpu_s for item in runs) / capacity


def measure_encode(task: Task) -> Result:
    """Encode `seconds` of mono audio held in memory (codec.encode)."""
    codec = make_codec(task)
    rate = codec.config.sample_rate
    waveform = synthesize(round(task.seconds * rate), rate, task.seed)
    result = Result(task, audio_seconds=task.seconds, rss_before_work_mib=peak_rss_mib())
    run = lambda: codec.encode(waveform, rate)  # noqa: E731
    finish_timing(result, timed_runs(run, run, task.repeats))
    add_flops(result, codec, "encode")
    return result


def random_latents(config, seconds: float, seed: int):
    """Latents of `seconds` of mono audio with random values: the decoder's cost does
    not depend on the values, so this skips encoding (and its memory) entirely."""
    from m2l_cli.container import Latents, expected_chunks

    samples = round(seconds * config.sample_rate)
    chunks = expected_chunks(samples, config.chunk_samples)
    rng = np.random.default_rng(seed)
    values = np.tanh(rng.standard_normal((1, chunks, config.num_latents, config.latent_dim)))
    return Latents(
        values=values.astype(np.float16),
        model_id=BENCH_MODEL_ID,
        model_name="bench",
        sample_rate=config.sample_rate,
        original_sample_rate=config.sample_rate,
        num_samples=samples,
        model_num_samples=samples,
        chunk_samples=config.chunk_samples,
    )


class SampleCounter:
    """A DecodeJob writer that only counts the samples it is given."""

    def __init__(self) -> None:
        self.samples = 0

    def __call__(self, block: np.ndarray) -> None:
        self.samples += block.shape[1]


def decode_streams(codec, latents: list, batch_size: int) -> None:
    """Decodes all latents together through codec.decode_jobs; checks every length."""
    from m2l_cli.decoding import DecodeJob

    counters = [SampleCounter() for _ in latents]
    jobs = [
        DecodeJob(item, counter, f"stream{index}", None, index)
        for index, (item, counter) in enumerate(zip(latents, counters, strict=True))
    ]
    for job, error in codec.decode_jobs(jobs, batch_size=batch_size):
        if error is not None:
            raise RuntimeError(f"{job.name}: {error}")
    for item, counter in zip(latents, counters, strict=True):
        if counter.samples != item.num_samples:
            raise RuntimeError(f"decoded {counter.samples} samples, expected {item.num_samples}")


def measure_decode(task: Task) -> Result:
    """Decode `streams` mono latents of `seconds` each, batched together. The warm-up
    decodes the same number of 2-chunk latents (every kind of step, every batch size)."""
    from m2l_cli.defaults import DEFAULT_BATCH_SIZE

    codec = make_codec(task)
    config = codec.config
    batch_size = max(DEFAULT_BATCH_SIZE, task.streams)
    latents = [random_latents(config, task.seconds, task.seed + i) for i in range(task.streams)]
    short_seconds = 2 * config.chunk_samples / config.sample_rate
    short = [random_latents(config, short_seconds, task.seed + i) for i in range(task.streams)]
    result = Result(
        task, audio_seconds=task.seconds * task.streams, rss_before_work_mib=peak_rss_mib()
    )
    runs = timed_runs(
        lambda: decode_streams(codec, latents, batch_size),
        lambda: decode_streams(codec, short, batch_size),
        task.repeats,
    )
    finish_timing(result, runs)
    add_flops(result, codec, "decode")
    return result


def encode_file(codec, input_path: str, output_path: str) -> None:
    """WAV -> .m2l through AudioSource (read in blocks) and codec.encode_jobs."""
    from m2l_cli.audio import AudioSource
    from m2l_cli.encoding import EncodeJob

    job = EncodeJob(lambda: AudioSource(input_path), name=input_path)
    for _, latents in codec.encode_jobs([job]):
        if isinstance(latents, Exception):
            raise RuntimeError(f"{input_path}: {latents}")
        latents.save(output_path)


def decode_file(codec, input_path: str, output_path: str) -> None:
    """.m2l -> WAV through codec.decode_jobs and AudioSink (written block by block)."""
    from m2l_cli.audio import AudioSink, OutputFormat
    from m2l_cli.container import Latents
    from m2l_cli.decoding import DecodeJob

    latents = Latents.load(input_path)
    sink = AudioSink(
        output_path,
        sample_rate=latents.original_sample_rate,
        channels=latents.channels,
        file_format=OutputFormat.WAV,
    )
    job = DecodeJob(latents, sink.write, input_path, None, 0)
    for _, error in codec.decode_jobs([job]):
        if error is not None:
            raise RuntimeError(f"{input_path}: {error}")
    sink.close()


def measure_file(task: Task) -> Result:
    """One run (no warm-up) of encode_file or decode_file: for its peak RSS."""
    codec = make_codec(task)
    work = encode_file if task.kind == "file-encode" else decode_file
    result = Result(task, audio_seconds=task.seconds, rss_before_work_mib=peak_rss_mib())
    finish_timing(result, [timed(lambda: work(codec, task.input_path, task.output_path))])
    return result


MEASUREMENTS: dict[str, Callable[[Task], Result]] = {
    "encode": measure_encode,
    "decode": measure_decode,
    "file-encode": measure_file,
    "file-decode": measure_file,
}


def worker_main(task_json: str) -> None:
    """Entry point of a measurement process: prints its Result as one JSON line."""
    task = Task(**json.loads(task_json))
    load = os.getloadavg()[0]
    result = MEASUREMENTS[task.kind](task)
    result.peak_rss_mib = peak_rss_mib()
    result.load_average_before = load
    print(RESULT_MARKER + json.dumps(asdict(result)), flush=True)


# ----------------------------------------------------------------------------- parent


def run_task(task: Task) -> Result:
    """Runs one task in a fresh Python process and parses its result."""
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(asdict(task))]
    env = {**os.environ, "OMP_NUM_THREADS": str(task.threads)}
    completed = subprocess.run(command, capture_output=True, text=True, env=env)
    for line in reversed(completed.stdout.splitlines()):
        if line.startswith(RESULT_MARKER):
            data = json.loads(line[len(RESULT_MARKER) :])
            data["task"] = Task(**data["task"])
            return Result(**data)
    tail = (completed.stderr.strip().splitlines() or ["no output"])[-1]
    return Result(task, error=f"exit {completed.returncode}: {tail}")


def speed_tasks(args: argparse.Namespace) -> list[Task]:
    """Encode, decode x1 and decode x`streams` for every preset and precision."""
    tasks = []
    for preset in args.presets:
        encode_seconds = args.paper_encode_seconds if preset == "paper" else args.seconds
        decode_seconds = args.paper_decode_seconds if preset == "paper" else args.seconds
        for precision in args.precisions:
            common = dict(
                preset=preset,
                precision=precision,
                threads=args.threads,
                seed=args.seed,
                repeats=args.repeats,
            )
            tasks += [
                Task("encode", seconds=encode_seconds, label="encode", **common),
                Task("decode", seconds=decode_seconds, label="decode 1 stream", **common),
                Task(
                    "decode",
                    seconds=decode_seconds,
                    streams=args.streams,
                    label=f"decode {args.streams} streams",
                    **common,
                ),
            ]
    return tasks


def write_wav(path: Path, seconds: float, sample_rate: int, seed: int) -> None:
    """A mono 16-bit WAV of the test signal, written 10 s at a time."""
    import soundfile

    total = round(seconds * sample_rate)
    block = 10 * sample_rate
    with soundfile.SoundFile(path, "w", sample_rate, 1, subtype="PCM_16") as file:
        for offset in range(0, total, block):
            count = min(block, total - offset)
            file.write(synthesize(count, sample_rate, seed, offset)[0])


def flatness_tasks(args: argparse.Namespace, folder: Path) -> list[Task]:
    """File-path encode and decode of a short and a long WAV (small preset, bf16)."""
    from m2l_cli.config import preset

    rate = preset("small").sample_rate
    tasks = []
    for seconds in (args.seconds, args.long_seconds):
        wav, m2l = folder / f"in-{seconds:g}s.wav", folder / f"{seconds:g}s.m2l"
        write_wav(wav, seconds, rate, args.seed)
        common = dict(
            preset="small", precision="bf16", threads=args.threads, seed=args.seed, seconds=seconds
        )
        tasks += [
            Task(
                "file-encode",
                input_path=str(wav),
                output_path=str(m2l),
                label=f"file encode {format_seconds(seconds)}",
                **common,
            ),
            Task(
                "file-decode",
                input_path=str(m2l),
                output_path=str(folder / f"out-{seconds:g}s.wav"),
                label=f"file decode {format_seconds(seconds)}",
                **common,
            ),
        ]
    return tasks


def format_seconds(seconds: float) -> str:
    return f"{seconds / 60:g} min" if seconds >= 120 else f"{seconds:g} s"


def audio_label(task: Task) -> str:
    each = format_seconds(task.seconds)
    return each if task.streams == 1 else f"{task.streams} x {each}"


def fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def spread(result: Result) -> str:
    """(slowest - fastest) / median of the timed runs: a noise indicator."""
    if len(result.times) < 2:
        return "1 run"
    return f"{(max(result.times) - min(result.times)) / result.median_s:.0%}"


def cores_used(result: Result) -> str:
    """This process's CPU seconds per wall second over the timed runs (at most --threads,
    plus a little for Python): far below the thread count means it was starved of CPU."""
    return f"{sum(result.own_cpu_s) / sum(result.times):.2f}" + (" !" if starved(result) else "")


def table(results: list[Result]) -> str:
    """The plain results table, one row per measurement."""
    header = (
        "preset",
        "precision",
        "measurement",
        "audio",
        "x-real-time",
        "GFLOP/s",
        "peak RSS MiB",
        "spread",
        "cores used",
        "others",
    )
    rows = [header]
    for result in results:
        task = result.task
        if result.error:
            rows.append(
                (
                    task.preset,
                    task.precision,
                    task.label,
                    audio_label(task),
                    "ERROR",
                    result.error[:60],
                    "",
                    "",
                    "",
                    "",
                )
            )
            continue
        rows.append(
            (
                task.preset,
                task.precision,
                task.label,
                audio_label(task),
                fmt(result.x_real_time),
                fmt(result.gflops, 1),
                fmt(result.peak_rss_mib, 0),
                spread(result),
                cores_used(result),
                f"{result.others_cpu_share:.0%}",
            )
        )
    for peer in PEER_REFERENCE:
        rows.append(
            (
                "peer*",
                "fp32",
                f"Music2Latent v1 {peer['measurement']}",
                "30 s",
                fmt(peer["x_real_time"]),
                f"~{peer['gflops']:.0f}",
                fmt(peer["peak_rss_mib"], 0),
                "quoted",
                "",
                "",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def flatness_summary(results: list[Result]) -> dict[str, dict[str, float]]:
    """Peak RSS of the short and the long file, and their ratio, per direction."""
    summary = {}
    for kind in ("file-encode", "file-decode"):
        runs = sorted(
            (r for r in results if r.task.kind == kind and not r.error),
            key=lambda r: r.task.seconds,
        )
        if len(runs) == 2:
            short, long = runs
            summary[kind] = {
                "short_seconds": short.task.seconds,
                "short_peak_rss_mib": short.peak_rss_mib,
                "long_seconds": long.task.seconds,
                "long_peak_rss_mib": long.peak_rss_mib,
                "ratio_long_over_short": long.peak_rss_mib / short.peak_rss_mib,
                "short_growth_during_work_mib": short.peak_rss_mib - short.rss_before_work_mib,
                "long_growth_during_work_mib": long.peak_rss_mib - long.rss_before_work_mib,
            }
    return summary


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info(threads: int) -> dict[str, object]:
    import torch

    from m2l_cli import _version
    from m2l_cli.runtime import cpu_has_fast_bf16

    return {
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_has_avx512_bf16_or_amx": cpu_has_fast_bf16(),
        "load_average_at_start": os.getloadavg(),
        "torch_version": torch.__version__,
        "threads": threads,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "m2l_cli_version": _version.__version__,
    }


def notes(args: argparse.Namespace) -> list[str]:
    """What the reader must know to read the table."""
    lines = [
        f"Random weights, CPU, {args.threads} torch threads, each row in a fresh process.",
        f"Timings: one warm-up, then the median of {args.repeats} runs; x-real-time = total "
        "audio seconds processed / wall seconds (decode with N streams counts N x the audio).",
        "Encode: codec.encode on a mono array (includes the STFT). Decode: codec.decode_jobs "
        "on random mono latents (values do not change the cost), batch size max(16, streams); "
        "its warm-up decodes 2-chunk latents.",
        "Peak RSS: ru_maxrss of the measurement's own process (includes Python + torch, "
        "~250 MiB, and the model weights).",
        "The machine is shared and has 2 cores: expect +-10-20% noise between runs. "
        "spread = (slowest - fastest) / median run; cores used = this process's CPU "
        "seconds per wall second; others = share of the machine's CPU that other processes "
        "used meanwhile. '!' marks a row starved of CPU (cores used < "
        f"{STARVED_FRACTION:g} x threads, even after --retries): its speed is not "
        "representative (with 2 threads and one core taken, torch's OpenMP threads "
        "spin-wait and run up to ~50x slower).",
        "peer* rows are QUOTED, NOT measured by this script: the official Music2Latent v1 "
        "code, measured once on the same machine (random weights, 30 s).",
    ]
    if "paper" in args.presets:
        lines.insert(
            3,
            f"paper is slow on CPU: it encodes {args.paper_encode_seconds:g} s and "
            f"decodes {args.paper_decode_seconds:g} s per stream instead of "
            f"{args.seconds:g} s (x-real-time does not depend on the length).",
        )
    if not args.no_flatness:
        lines.append(
            "file encode/decode rows: small bf16 through AudioSource/AudioSink and a "
            "saved .m2l, one run each (no warm-up, so their x-real-time includes "
            "first-call costs); they are there for the peak RSS, short vs long."
        )
    return lines


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--presets", nargs="+", default=["small", "paper"], choices=["small", "paper", "tiny"]
    )
    parser.add_argument(
        "--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"]
    )
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs after a warm-up")
    parser.add_argument("--seconds", type=float, default=30.0, help="audio length (small)")
    parser.add_argument("--paper-encode-seconds", type=float, default=10.0)
    parser.add_argument(
        "--paper-decode-seconds",
        type=float,
        default=5.0,
        help="audio per stream when decoding with the paper preset",
    )
    parser.add_argument("--streams", type=int, default=8, help="streams in the batched decode")
    parser.add_argument(
        "--long-seconds",
        type=float,
        default=600.0,
        help="the long file of the memory-flatness check",
    )
    parser.add_argument("--no-flatness", action="store_true", help="skip the file-path check")
    parser.add_argument(
        "--retries",
        type=int,
        default=1,
        help="re-runs of a measurement starved of CPU by other processes",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke check: small only, 1 repeat, 10 s audio, 60 s long file",
    )
    parser.add_argument("--output", type=Path, help="JSON path (default benchmarks/results/)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.presets, args.repeats, args.seconds, args.long_seconds = ["small"], 1, 10.0, 60.0
    return args


def default_output(quick: bool) -> Path:
    stamp = datetime.now().strftime("%Y-%m-%d")
    return RESULTS_DIR / f"bench-{stamp}{'-quick' if quick else ''}.json"


def starved(result: Result) -> bool:
    """True when the process got clearly less CPU than its threads: another process
    took a core, which (with OpenMP spin-waiting) can slow torch down many times over."""
    if result.error or not result.times:
        return False
    return sum(result.own_cpu_s) / sum(result.times) < STARVED_FRACTION * result.task.threads


def run_all(tasks: list[Task], retries: int) -> list[Result]:
    """Runs the tasks one after the other, printing progress to stderr; a measurement
    that was starved of CPU is run again, up to `retries` times."""
    results = []
    for index, task in enumerate(tasks, 1):
        for attempt in range(retries + 1):
            start = time.perf_counter()
            print(
                f"[{index}/{len(tasks)}] {task.describe()} ({audio_label(task)}) ...",
                end=" ",
                file=sys.stderr,
                flush=True,
            )
            result = run_task(task)
            result.attempts = attempt + 1
            outcome = result.error or f"{result.x_real_time:.2f}x, {result.peak_rss_mib:.0f} MiB"
            flag = ", STARVED of CPU" if starved(result) else ""
            print(
                f"{outcome}{flag} [{time.perf_counter() - start:.0f} s]",
                file=sys.stderr,
                flush=True,
            )
            if not starved(result):
                break
        results.append(result)
    return results


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.worker:
        worker_main(args.worker)
        return
    started, machine = datetime.now(), machine_info(args.threads)
    with tempfile.TemporaryDirectory(prefix="m2l-bench-") as folder:
        tasks = speed_tasks(args)
        if not args.no_flatness:
            tasks += flatness_tasks(args, Path(folder))
        results = run_all(tasks, args.retries)
    flatness = flatness_summary(results)
    print(table(results))
    for kind, item in flatness.items():
        print(
            f"\nmemory flatness, {kind} (small bf16): peak RSS "
            f"{item['short_peak_rss_mib']:.0f} MiB for {format_seconds(item['short_seconds'])}, "
            f"{item['long_peak_rss_mib']:.0f} MiB for {format_seconds(item['long_seconds'])}: "
            f"ratio {item['ratio_long_over_short']:.2f} (growth during the work: "
            f"{item['short_growth_during_work_mib']:.0f} vs "
            f"{item['long_growth_during_work_mib']:.0f} MiB)"
        )
    print("\nnotes:\n" + "\n".join(f"- {line}" for line in notes(args)))
    print("\n" + FLOP_NOTE)
    output = args.output or default_output(args.quick)
    output.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "started": started.isoformat(timespec="seconds"),
        "wall_seconds": round((datetime.now() - started).total_seconds(), 1),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": machine,
        "settings": {key: value for key, value in vars(args).items() if key != "worker"},
        "results": [asdict(result) for result in results],
        "memory_flatness": flatness,
        "peer_reference": {
            "source": "quoted: measured once on the same machine, not by this script",
            "model": "official Music2Latent (v1), random weights, 30 s of audio, fp32",
            "rows": PEER_REFERENCE,
        },
        "notes": notes(args),
        "flop_counting": FLOP_NOTE,
    }
    output.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"\nJSON written to {output}")


if __name__ == "__main__":
    main()
