"""CPU speed and memory benchmark for m2l_cli, with random (untrained) weights, beside
the machine's own peaks.

    .venv/bin/python benchmarks/bench.py                 # everything (~30-40 min on 2 cores)
    .venv/bin/python benchmarks/bench.py --quick         # smoke check (~3-4 min)
    .venv/bin/python benchmarks/bench.py --presets small --precisions bf16
    .venv/bin/python benchmarks/bench.py --baseline ../old-checkout   # before/after

Every in-process measurement runs in its own fresh Python process (benchmarks/
measure.py), so the peak RSS it reports belongs to that measurement alone; the
whole-process rows time `python -m m2l_cli ...` itself (benchmarks/process.py).
See benchmarks/README.md for what each number means.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from datetime import datetime
from pathlib import Path

from common import RESULT_MARKER, Result, Task, starved, write_wav
from process import measure_process, process_tasks
from report import (
    FLOP_NOTE,
    PEER_REFERENCE,
    add_peak_shares,
    flatness_lines,
    flatness_summary,
    format_seconds,
    machine_info,
    notes,
    table,
)

HERE = Path(__file__).resolve().parent
RESULTS_DIR = HERE / "results"


def run_task(task: Task) -> Result:
    """Runs one task: a whole-process row here, any other in a fresh Python process."""
    if task.kind == "process":
        return measure_process(task)
    command = [sys.executable, str(HERE / "measure.py"), json.dumps(asdict(task))]
    env = {**os.environ, "OMP_NUM_THREADS": str(task.threads)}
    if task.source:
        env["PYTHONPATH"] = task.source
    completed = subprocess.run(command, capture_output=True, text=True, env=env)
    for line in reversed(completed.stdout.splitlines()):
        if line.startswith(RESULT_MARKER):
            data = json.loads(line[len(RESULT_MARKER) :])
            data["task"] = Task(**data["task"])
            return Result(**data)
    tail = (completed.stderr.strip().splitlines() or ["no output"])[-1]
    return Result(task, error=f"exit {completed.returncode}: {tail}")


def peak_tasks(args: argparse.Namespace) -> list[Task]:
    """The machine's peaks: matrix product and channels_last 3x3 convolution, per precision."""
    return [
        Task(
            "peak",
            precision=precision,
            threads=args.threads,
            repeats=args.repeats,
            operation=operation,
            label=f"peak: {operation}",
        )
        for precision in ("bf16", "fp32")
        for operation in ("matmul", "conv")
    ]


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


def train_tasks(args: argparse.Namespace) -> list[Task]:
    """One training step of `small` (batch --train-batch) per consistency precision
    and curriculum stage: with the default "auto", stage 0 runs the consistency model
    in bf16 with a clean teacher, later stages in float32 with a teacher pass."""
    return [
        Task(
            "train",
            preset="small",
            precision="bf16",
            threads=args.threads,
            seed=args.seed,
            repeats=args.train_repeats,
            policy=policy,
            stage=stage,
            batch=args.train_batch,
            label=f"train step, consistency {policy}, stage {stage}",
        )
        for policy in args.train_policies
        for stage in args.train_stages
    ]


def flatness_tasks(args: argparse.Namespace, folder: Path) -> list[Task]:
    """File-path encode and decode of a short and a long WAV (small preset, bf16)."""
    tasks = []
    for seconds in (args.seconds, args.long_seconds):
        wav, m2l = folder / f"in-{seconds:g}s.wav", folder / f"{seconds:g}s.m2l"
        write_wav(wav, seconds, 44100, args.seed)
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


def with_baseline(tasks: list[Task], baseline: Path | None) -> list[Task]:
    """Each task, preceded by the same task on the --baseline source tree."""
    if baseline is None:
        return tasks
    paired = []
    for task in tasks:
        paired += [Task(**{**asdict(task), "source": str(baseline.resolve())}), task]
    return paired


def all_tasks(args: argparse.Namespace, folder: Path) -> list[Task]:
    tasks = peak_tasks(args)
    compared = [] if args.no_coding else speed_tasks(args)
    compared += [] if args.no_train else train_tasks(args)
    tasks += with_baseline(compared, args.baseline)
    if not args.no_process:
        if args.baseline is not None:
            tasks += process_tasks(
                folder,
                args.process_seconds,
                args.process_repeats,
                args.threads,
                str(args.baseline.resolve()),
            )
        tasks += process_tasks(folder, args.process_seconds, args.process_repeats, args.threads)
    if not args.no_flatness:
        tasks += flatness_tasks(args, folder)
    return tasks


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
        "--train-policies",
        nargs="+",
        default=["auto"],
        help="consistency_precision settings to time a training step with",
    )
    parser.add_argument(
        "--train-stages", nargs="+", type=int, default=[0, 1], help="curriculum stages (0-4)"
    )
    parser.add_argument("--train-batch", type=int, default=8, help="chunk pairs per step")
    parser.add_argument("--train-repeats", type=int, default=5, help="timed training steps")
    parser.add_argument("--no-coding", action="store_true", help="skip encode and decode rows")
    parser.add_argument("--no-train", action="store_true", help="skip the training rows")
    parser.add_argument(
        "--process-seconds", type=float, default=120.0, help="clip length, whole-process rows"
    )
    parser.add_argument("--process-repeats", type=int, default=3)
    parser.add_argument("--no-process", action="store_true", help="skip the whole-process rows")
    parser.add_argument(
        "--long-seconds",
        type=float,
        default=600.0,
        help="the long file of the memory-flatness check",
    )
    parser.add_argument("--no-flatness", action="store_true", help="skip the file-path check")
    parser.add_argument(
        "--baseline",
        type=Path,
        help="another checkout's root: its m2l_cli is measured too, row by row, for ratios",
    )
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
        help="smoke check: small only, 1 repeat, 10 s audio, 60 s long and 30 s process clips",
    )
    parser.add_argument("--output", type=Path, help="JSON path (default benchmarks/results/)")
    args = parser.parse_args(argv)
    if args.quick:
        args.presets, args.repeats, args.seconds, args.long_seconds = ["small"], 1, 10.0, 60.0
        args.train_repeats, args.process_seconds, args.process_repeats = 2, 30.0, 1
    return args


def default_output(quick: bool) -> Path:
    stamp = datetime.now().strftime("%Y-%m-%d")
    return RESULTS_DIR / f"bench-{stamp}{'-quick' if quick else ''}.json"


def outcome(result: Result) -> str:
    if result.error:
        return result.error
    if result.x_real_time is not None:
        return f"{result.x_real_time:.2f}x, {result.peak_rss_mib:.0f} MiB"
    if result.steps_per_s is not None:
        return f"{result.steps_per_s:.3f} steps/s"
    if result.task.kind == "peak":
        return f"{result.gflops:.0f} GFLOP/s"
    return f"{result.median_s:.3f} s"


def run_all(tasks: list[Task], retries: int) -> list[Result]:
    """Runs the tasks one after the other, printing progress to stderr; a measurement
    that was starved of CPU is run again, up to `retries` times."""
    results = []
    for index, task in enumerate(tasks, 1):
        for attempt in range(retries + 1):
            start = time.perf_counter()
            print(f"[{index}/{len(tasks)}] {task.describe()} ...", end=" ", file=sys.stderr)
            result = run_task(task)
            result.attempts = attempt + 1
            flag = ", STARVED of CPU" if starved(result) else ""
            elapsed = time.perf_counter() - start
            print(f"{outcome(result)}{flag} [{elapsed:.0f} s]", file=sys.stderr, flush=True)
            if not starved(result):
                break
        results.append(result)
    return results


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    started, machine = datetime.now(), machine_info(args.threads)
    print(f"CPU: {machine['cpu_model']}, {args.threads} threads", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="m2l-bench-") as folder:
        results = run_all(all_tasks(args, Path(folder)), args.retries)
    add_peak_shares(results)
    flatness = flatness_summary(results)
    print(f"CPU: {machine['cpu_model']} ({machine['cpu_count']} cores), {args.threads} threads\n")
    print(table(results))
    print("".join(flatness_lines(flatness)))
    print("\nnotes:\n" + "\n".join(f"- {line}" for line in notes(args)))
    print("\n" + FLOP_NOTE)
    output = args.output or default_output(args.quick)
    output.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "started": started.isoformat(timespec="seconds"),
        "wall_seconds": round((datetime.now() - started).total_seconds(), 1),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": machine,
        "settings": vars(args),
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
