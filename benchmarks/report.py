"""The benchmark's report: shares of the machine's peaks, the table, memory flatness,
the machine, and the notes a reader needs."""

from __future__ import annotations

import argparse
import os
import platform

from common import STARVED_FRACTION, Result, cpu_model, starved

PEER_REFERENCE = [
    # Measured once, separately, with the official Music2Latent (v1) code on the same
    # machine (random weights, 30 s of audio): quoted, NOT measured by this script.
    {"measurement": "encode", "x_real_time": 2.0, "gflops": 90.0, "peak_rss_mib": 3.8 * 1024},
    {"measurement": "decode", "x_real_time": 0.28, "gflops": 90.0, "peak_rss_mib": 6.8 * 1024},
]

FLOP_NOTE = """\
How GFLOP/s and the share of peak are computed: the FLOPs (a multiply-add = 2 FLOPs) of
convolutions, matrix products and attention (torch.utils.flop_counter's formulas; the
CPU flash-attention kernels as full attention), split by the dtype they ran in, in:
  encode: one encoder call on one chunk (batch 1);
  decode: one decode step per chunk = one decoder call on one chunk + one consistency
          model call on two chunks (the steady-state step; over a file of N chunks this
          is exact up to attention: 2N chunk passes either way);
  train:  one whole optimizer step (forward, teacher, backward).
Element-wise ops, norms, the STFT and resampling are not counted.
FLOPs per audio second = FLOPs per chunk x (44100 / 32768) chunks per second;
GFLOP/s = FLOPs per audio second x x-real-time / 1e9 (per step / seconds per step).
Share of peak = the time the counted FLOPs would take at the machine's measured
channels_last 3x3 convolution peak of each dtype (bf16 FLOPs at the bf16 peak, float32
at the fp32 one) / the measured time: for one precision, GFLOP/s / that peak."""

PEAK_OF_DTYPE = {"bfloat16": "bf16", "float32": "fp32"}


def conv_peaks(results: list[Result]) -> dict[str, float]:
    """The measured conv peak, GFLOP/s, by precision."""
    return {
        result.task.precision: result.gflops
        for result in results
        if result.task.kind == "peak" and result.task.operation == "conv" and result.gflops
    }


def add_peak_shares(results: list[Result]) -> None:
    """Each row's share of the conv peak of the precisions its FLOPs ran in."""
    peaks = conv_peaks(results)
    for result in results:
        unit_seconds = unit_time(result)
        if not result.flops_by_dtype or unit_seconds is None or result.task.kind == "peak":
            continue
        at_peak = 0.0
        for dtype, flops in result.flops_by_dtype.items():
            peak = peaks.get(PEAK_OF_DTYPE.get(dtype, "fp32"))
            if not peak:
                break
            at_peak += flops / (peak * 1e9)
        else:
            result.peak_share = at_peak / unit_seconds


def unit_time(result: Result) -> float | None:
    """Seconds per unit of work: per audio second (coding), per step (training)."""
    if result.error:
        return None
    if result.x_real_time:
        return 1.0 / result.x_real_time
    return result.median_s if result.steps_per_s else None


def speed(result: Result) -> float | None:
    """Work per second, to compare a row with its baseline (higher is faster)."""
    if result.error or not result.median_s:
        return None
    return result.x_real_time or result.steps_per_s or result.gflops or 1.0 / result.median_s


def baseline_ratios(results: list[Result]) -> dict[int, float]:
    """Speed of each row over the speed of its --baseline twin, by row index."""
    ratios = {}
    for index, result in enumerate(results):
        if index == 0 or result.task.source:
            continue
        before = results[index - 1]
        same = {**vars(before.task), "source": ""} == vars(result.task)
        now, then = speed(result), speed(before)
        if before.task.source and same and now and then:
            ratios[index] = now / then
    return ratios


def fmt(value: float | None, digits: int = 2, suffix: str = "") -> str:
    return "-" if value is None else f"{value:.{digits}f}{suffix}"


def format_seconds(seconds: float) -> str:
    return f"{seconds / 60:g} min" if seconds >= 120 else f"{seconds:g} s"


def workload(result: Result) -> str:
    task = result.task
    if task.kind == "train":
        return f"batch {task.batch}"
    if task.kind == "peak" or not task.seconds:
        return ""
    each = format_seconds(task.seconds)
    return each if task.streams == 1 else f"{task.streams} x {each}"


def headline(result: Result) -> str:
    """The row's main number: x real time, steps/s, GFLOP/s of a peak, or seconds."""
    if result.x_real_time is not None:
        return f"{result.x_real_time:.2f}x real time"
    if result.steps_per_s is not None:
        return f"{result.steps_per_s:.3f} steps/s ({result.median_s:.2f} s)"
    if result.task.kind == "peak":
        return f"{result.gflops:.0f} GFLOP/s"
    return f"{result.median_s:.3f} s"


def spread(result: Result) -> str:
    """(slowest - fastest) / median of the timed runs: a noise indicator."""
    if len(result.times) < 2:
        return "1 run"
    return f"{(max(result.times) - min(result.times)) / result.median_s:.0%}"


def cores_used(result: Result) -> str:
    """CPU seconds of the measured work per wall second (at most --threads, plus a
    little for Python): far below the thread count means it was starved of CPU."""
    return f"{sum(result.own_cpu_s) / sum(result.times):.2f}" + (" !" if starved(result) else "")


HEADER = (
    "preset",
    "precision",
    "measurement",
    "work",
    "result",
    "GFLOP/s",
    "% conv peak",
    "vs baseline",
    "peak RSS MiB",
    "spread",
    "cores used",
    "others",
)


def row(result: Result, ratio: float | None) -> tuple[str, ...]:
    task = result.task
    name = task.label + (" [baseline]" if task.source else "")
    if result.error:
        return (task.preset, task.precision, name, workload(result), "ERROR", result.error[:60])
    share = None if result.peak_share is None else 100 * result.peak_share
    return (
        "" if task.kind in ("peak", "process") else task.preset,
        "" if task.kind == "process" else task.precision,
        name,
        workload(result),
        headline(result),
        fmt(result.gflops, 0) if task.kind != "process" else "",
        fmt(share, 0, "%") if share is not None else "",
        fmt(ratio, 2, "x") if ratio is not None else "",
        fmt(result.peak_rss_mib, 0) if result.peak_rss_mib else "",
        spread(result),
        cores_used(result),
        f"{result.others_cpu_share:.0%}",
    )


def table(results: list[Result]) -> str:
    """The plain results table, one row per measurement."""
    ratios = baseline_ratios(results)
    rows = [HEADER] + [row(result, ratios.get(index)) for index, result in enumerate(results)]
    for peer in PEER_REFERENCE:
        rows.append(
            (
                "peer*",
                "fp32",
                f"Music2Latent v1 {peer['measurement']}",
                "30 s",
                f"{peer['x_real_time']:.2f}x real time",
                f"~{peer['gflops']:.0f}",
                "",
                "",
                fmt(peer["peak_rss_mib"], 0),
                "quoted",
                "",
                "",
            )
        )
    widths = [max(len(line[i]) for line in rows if i < len(line)) for i in range(len(HEADER))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=False)).rstrip()
        for line in rows
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


def flatness_lines(flatness: dict[str, dict[str, float]]) -> list[str]:
    return [
        f"\nmemory flatness, {kind} (small bf16): peak RSS "
        f"{item['short_peak_rss_mib']:.0f} MiB for {format_seconds(item['short_seconds'])}, "
        f"{item['long_peak_rss_mib']:.0f} MiB for {format_seconds(item['long_seconds'])}: "
        f"ratio {item['ratio_long_over_short']:.2f} (growth during the work: "
        f"{item['short_growth_during_work_mib']:.0f} vs "
        f"{item['long_growth_during_work_mib']:.0f} MiB)"
        for kind, item in flatness.items()
    ]


def machine_info(threads: int) -> dict[str, object]:
    import torch

    from m2l_cli import _version
    from m2l_cli.runtime import cpu_has_fast_bf16

    return {
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_has_avx512_bf16_or_amx": cpu_has_fast_bf16(),
        "cpu_has_amx": "amx_bf16" in _cpu_flags(),
        "load_average_at_start": os.getloadavg(),
        "torch_version": torch.__version__,
        "threads": threads,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "m2l_cli_version": _version.__version__,
    }


def _cpu_flags() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            return info.read()
    except OSError:
        return ""


def notes(args: argparse.Namespace) -> list[str]:
    """What the reader must know to read the table."""
    lines = [
        f"CPU: {cpu_model()}; {args.threads} torch threads; random weights except the "
        "whole-process rows (the bundled model); each in-process row in a fresh process.",
        "peak rows: a 2048^3 matrix product and a channels_last 3x3 convolution 64 -> 64 "
        "on [16, 64, 128, 64], repeated ~1 s per run; '% conv peak' is measured against "
        "the conv peak of the precision used.",
        f"Timings: one warm-up, then the median of {args.repeats} runs "
        f"({args.train_repeats} training steps); x real time = total audio seconds "
        "processed / wall seconds (decode with N streams counts N x the audio).",
        "Encode: codec.encode on a mono array (includes the STFT). Decode: codec.decode_jobs "
        "on random mono latents (values do not change the cost), batch size max(16, streams); "
        "its warm-up decodes 2-chunk latents.",
        f"train: one optimizer step of small, batch {args.train_batch} pairs of chunks of "
        "the test signal, at a step of the given curriculum stage of 5 (stage 0: the "
        "teacher is the clean input; stage >= 1: a network call, and with 'auto' the "
        "consistency model runs in float32).",
        "whole-process rows: `python -m m2l_cli ...` (what `m2l` runs) on a mono 16-bit "
        "WAV, model load included, one untimed run first, then the median; "
        "--help and info as the command line gives them.",
        "Peak RSS: ru_maxrss of the measurement's own process (includes Python + torch, "
        "~250 MiB, and the model weights).",
        "The machine may be shared: spread = (slowest - fastest) / median run; cores used = "
        "the work's CPU seconds per wall second; others = share of the machine's CPU that "
        "other processes used meanwhile. '!' marks a row starved of CPU (cores used < "
        f"{STARVED_FRACTION:g} x threads, even after --retries): its speed is not "
        "representative (with 2 threads and one core taken, torch's OpenMP threads "
        "spin-wait and run up to ~50x slower).",
        "peer* rows are QUOTED, NOT measured by this script: the official Music2Latent v1 "
        "code, measured once by hand (random weights, 30 s), on an earlier machine.",
    ]
    if args.baseline is not None:
        lines.append(
            f"[baseline] rows: the same measurement on {args.baseline}'s m2l_cli, run just "
            "before; 'vs baseline' = this row's speed / the baseline's."
        )
    if "paper" in args.presets:
        lines.insert(
            4,
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
