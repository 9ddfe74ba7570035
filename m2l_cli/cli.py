"""The `m2l` command: a thin layer of options, progress and messages over the Python API.

The API is imported inside the commands that use it, so `--help`, `--version` and
`info` start without torch. Errors are one escaped line on stderr: exit 1 for a
failure, 2 for a usage error (`__main__` adds 130 for Ctrl-C, 143 for SIGTERM).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from ._version import __version__
from .defaults import DEFAULT_BATCH_SIZE, DEFAULT_SIGMA_COND
from .display import (
    Bar,
    duration_text,
    error,
    note,
    progress_bar,
    say,
    speed_text,
    status,
    table,
    terminal_width,
    written_line,
)
from .errors import M2LError
from .paths import STDIO, check_output, output_pairs
from .stdio import abandon_stdout, flush_stdout, print_text, stdin
from .text import shown
from .weights_header import MODEL_VARIABLE

if TYPE_CHECKING:
    from .batch import BatchPlan
    from .codec import Codec
    from .evaluation import Report
    from .files import FileResult

INTERRUPTED = 130
FORMATS = ("wav", "flac")

app = typer.Typer(
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
    help="m2l: compress audio into .m2l latent containers (Music2Latent2) and back.",
)

ModelOption = Annotated[
    Path | None,
    typer.Option(
        "--model", "-m", envvar=MODEL_VARIABLE, metavar="PATH", help="Weights file (.safetensors)."
    ),
]
DeviceOption = Annotated[
    str,
    typer.Option(metavar="DEVICE", help="auto, cpu, cuda, cuda:N, mps or another torch device."),
]
PrecisionOption = Annotated[
    str, typer.Option(metavar="NAME", help="auto, fp32, bf16 or fp16 (auto: bf16 on CPUs with it).")
]
ThreadsOption = Annotated[int | None, typer.Option(min=1, metavar="N", help="CPU threads.")]
BatchOption = Annotated[
    int,
    typer.Option(
        "--batch-size", min=1, metavar="N", help="Chunks (encode) or streams (decode) per call."
    ),
]
ForceOption = Annotated[bool, typer.Option("--force", "-f", help="Overwrite existing outputs.")]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress or notes.")]
SigmaOption = Annotated[
    float,
    typer.Option(
        "--sigma-cond", min=0.0, max=80.0, metavar="X", help="Noise on the previous chunk."
    ),
]
SeedOption = Annotated[
    int, typer.Option(metavar="N", help="Noise seed: the same seed gives the same audio.")
]
RateOption = Annotated[
    int | None,
    typer.Option("--sample-rate", min=1, metavar="HZ", help="Output rate (default: original)."),
]
SubtypeOption = Annotated[
    str | None,
    typer.Option(
        metavar="NAME", help="Sample format, e.g. PCM_16, PCM_24, FLOAT (default: the source's)."
    ),
]
StartOption = Annotated[
    float,
    typer.Option(min=0.0, metavar="SECONDS", help="Decode from here (random access)."),
]
DurationOption = Annotated[
    float | None,
    typer.Option(min=0.0, metavar="SECONDS", help="Decode this much (default: to the end)."),
]
MetaOption = Annotated[
    list[str] | None,
    typer.Option(
        "--meta",
        metavar="KEY=VALUE",
        help="Stored in the header; repeatable (`m2l info` shows it).",
    ),
]


def parse_format(name: str | None) -> str | None:
    """--format: wav or flac (any case)."""
    if name is not None and name.lower() not in FORMATS:
        raise typer.BadParameter(f"{name!r} is not wav or flac", param_hint="--format")
    return name.lower() if name else None


FormatOption = Annotated[
    str | None,
    typer.Option(
        "--format", metavar="FORMAT", callback=parse_format, help="wav or flac (default: by OUT)."
    ),
]


def parse_metadata(items: list[str] | None) -> dict[str, str]:
    """--meta key=value items as a dict, within the container's limits."""
    from .container_format import metadata_problem

    metadata = {}
    for item in items or []:
        key, separator, value = item.partition("=")
        if not separator or not key:
            raise typer.BadParameter(f"{shown(item)!r} is not key=value", param_hint="--meta")
        metadata[key] = value
    problem = metadata_problem(metadata)
    if problem:
        raise typer.BadParameter(problem, param_hint="--meta")
    return metadata


def check_runtime(device: str, precision: str | None = None) -> None:
    """A bad --device or --precision is a usage error, before any work starts."""
    from .runtime import resolve_device, resolve_precision

    try:
        chosen = resolve_device(device)
    except M2LError as problem:
        raise typer.BadParameter(str(problem), param_hint="--device") from None
    try:
        if precision is not None:
            resolve_precision(precision, chosen)
    except M2LError as problem:
        raise typer.BadParameter(str(problem), param_hint="--precision") from None


def load_codec(
    model: Path | None, device: str, precision: str, threads: int | None, quiet: bool
) -> Codec:
    """The codec for --model / M2L_MODEL / the bundled default; notes an untrained one.
    On a terminal, says so while torch and the weights load."""
    with status(f"loading model {model or os.environ.get(MODEL_VARIABLE) or '(bundled)'}"):
        from .codec import Codec
        from .runtime import set_threads

        if threads:
            set_threads(threads)
        codec = Codec.load(model, device=device, precision=precision)
    if not codec.trained and not quiet:
        note(f"note: model {codec.model_name} is untrained: its audio is not a real codec's")
    return codec


def finish(results: list[FileResult], started: float, quiet: bool) -> None:
    """A line per file: what was written, or the error; exits 1 if any failed."""
    for result in results:
        if result.error:
            error(result.error)
        elif not quiet:
            wall = time.monotonic() - started
            line = written_line(result.target, result.seconds, result.channels, result.size, wall)
            note(line)
    raise typer.Exit(1 if any(result.error for result in results) else 0)


@app.command(short_help="Encode an audio file into an .m2l container.")
def encode(
    sources: Annotated[
        list[str], typer.Argument(metavar="IN...", help="Audio files, or - for stdin.")
    ],
    output: Annotated[
        str | None,
        typer.Option(
            "--output",
            "-o",
            metavar="OUT",
            help="Output .m2l, or - (default: IN.m2l); a folder for several inputs.",
        ),
    ] = None,
    model: ModelOption = None,
    device: DeviceOption = "auto",
    precision: PrecisionOption = "auto",
    threads: ThreadsOption = None,
    batch_size: BatchOption = DEFAULT_BATCH_SIZE,
    meta: MetaOption = None,
    force: ForceOption = False,
    quiet: QuietOption = False,
) -> None:
    """Encode audio files (wav, flac, ogg, opus, mp3, aiff...) into .m2l containers;
    several inputs are batched together and go beside themselves or into the folder -o."""
    from .container_format import SUFFIX

    pairs = output_pairs(sources, output, SUFFIX)
    metadata = parse_metadata(meta)
    for _, target in pairs:
        check_output(target, force, sources)
    check_runtime(device, precision)
    from .audio import audio_info
    from .files import encode_files, encode_progress_total

    single = sources[0] if len(sources) == 1 else None
    info = audio_info(single) if single and single != STDIO else None  # fails at once
    codec = load_codec(model, device, precision, threads, quiet)
    started = time.monotonic()
    total = known_sum(encode_progress_total(codec, source) for source in sources)
    with progress_bar("encoding", total, quiet, info.duration if info else None) as bar:
        progress = bar.advance if bar else None
        runs = encode_files(
            codec, pairs, metadata=metadata, batch_size=batch_size, progress=progress
        )
        results = list(runs)
    finish(results, started, quiet)


def known_sum(counts: Iterable[int | None]) -> int | None:
    """The total of progress counts, None if any is unknown."""
    listed = list(counts)
    return None if None in listed else sum(count or 0 for count in listed)


@app.command(short_help="Decode an .m2l container to WAV or FLAC.")
def decode(
    sources: Annotated[
        list[str], typer.Argument(metavar="IN...", help=".m2l containers, or - for stdin.")
    ],
    output: Annotated[
        str | None,
        typer.Option(
            "--output",
            "-o",
            metavar="OUT",
            help="Output audio, or - (default: IN.wav); a folder for several inputs.",
        ),
    ] = None,
    model: ModelOption = None,
    device: DeviceOption = "auto",
    precision: PrecisionOption = "auto",
    threads: ThreadsOption = None,
    batch_size: BatchOption = DEFAULT_BATCH_SIZE,
    sigma_cond: SigmaOption = DEFAULT_SIGMA_COND,
    seed: SeedOption = 0,
    sample_rate: RateOption = None,
    format_name: FormatOption = None,
    subtype: SubtypeOption = None,
    start: StartOption = 0.0,
    duration: DurationOption = None,
    force: ForceOption = False,
    quiet: QuietOption = False,
) -> None:
    """Decode an .m2l container to WAV or FLAC, at the original sample rate and sample
    format by default. WAV to stdout (-o -) is written as it is decoded; --start and
    --duration decode only that range, from the chunks it needs."""
    from .container_format import read_header

    pairs = output_pairs(sources, output, f".{format_name or 'wav'}")
    for _, target in pairs:
        check_output(target, force, sources)
    check_runtime(device, precision)
    single = sources[0] if len(sources) == 1 else None
    header = read_header(single)[0] if single and single != STDIO else None  # fails at once
    from .files import decode_progress_total

    codec = load_codec(model, device, precision, threads, quiet)
    started = time.monotonic()
    ranged = bool(start) or duration is not None
    total = None if ranged else known_sum(decode_progress_total(source) for source in sources)
    seconds = header["num_samples"] / header["original_sample_rate"] if header else None
    with progress_bar("decoding", total, quiet, duration if ranged else seconds) as bar:
        runs = decode_pairs(
            codec, pairs, sigma_cond, seed, sample_rate, format_name, subtype,
            batch_size, bar, (start, duration) if ranged else None,
        )  # fmt: skip
        results = list(runs)
    finish(results, started, quiet)


def decode_pairs(
    codec: Codec,
    pairs: list[tuple[str, str]],
    sigma_cond: float,
    seed: int,
    sample_rate: int | None,
    format_name: str | None,
    subtype: str | None,
    batch_size: int,
    bar: Bar | None = None,
    time_range: tuple[float, float | None] | None = None,
) -> Iterator[FileResult]:
    """`decode_files` with the options `decode` and `batch --decode` share; only
    `time_range` (start, duration in seconds) of each, if given."""
    from .files import decode_files
    from .ranges import TimeRange

    return decode_files(
        codec,
        pairs,
        sigma_cond=sigma_cond,
        seed=seed,
        sample_rate=sample_rate,
        format_name=format_name,
        subtype=subtype,
        batch_size=batch_size,
        progress=bar.advance if bar else None,
        time_range=TimeRange(*time_range) if time_range else None,
    )


@app.command(short_help="Show what .m2l containers hold (checked).")
def info(
    paths: Annotated[
        list[str], typer.Argument(metavar="FILE...", help=".m2l containers, or - for stdin.")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print the headers as JSON.")] = False,
) -> None:
    """Show what .m2l containers hold, after checking that each is intact."""
    from .container_format import verify

    found = []
    for path in paths:
        try:
            found.append((path, verify(stdin() if path == STDIO else path)))
        except M2LError as problem:
            error(str(problem))
    if as_json and len(paths) == 1:
        texts = [json.dumps(header, indent=2, sort_keys=True) for _, header in found]
    elif as_json:
        listed = [{"file": path, "header": header} for path, header in found]
        texts = [json.dumps(listed, indent=2, sort_keys=True)]
    else:
        texts = ["\n".join(_info_lines(path, header, len(paths) > 1)) for path, header in found]
    if texts:
        print_text("\n\n".join(texts))
    raise typer.Exit(0 if len(found) == len(paths) else 1)


def _info_lines(path: str, header: dict, named: bool) -> list[str]:
    """A container's header as `key  value` lines, every value escaped."""
    rate, original = header["sample_rate"], header["original_sample_rate"]
    shape = f"{header['chunks']} x {header['num_latents']} x {header['latent_dim']} float16"
    rows = [("file", path)] if named else []
    rows += [
        ("model", f"{header['model_name']} ({header['model_id']})"),
        ("duration", f"{header['num_samples'] / original:.3f} s ({header['num_samples']} samples)"),
        ("sample rate", f"{original} Hz (model {rate} Hz)"),
        ("channels", str(header["channels"])),
        ("chunks", shape),
        ("sample format", header.get("sample_format", "unknown")),
        ("tool version", header["tool_version"]),
    ]
    if path != STDIO:
        rows.append(("file size", f"{os.path.getsize(path)} bytes"))
    rows += [(f"meta {key}", value) for key, value in sorted(header["metadata"].items())]
    return [f"{shown(key):<14}{shown(value)}" for key, value in rows]


@app.command(short_help="Mean and std per latent dimension of a folder's containers.")
def stats(
    root: Annotated[
        str, typer.Argument(metavar="DIR", help="Folder of .m2l containers (recursive), or one.")
    ],
    output: Annotated[
        str | None, typer.Option("--output", "-o", metavar="OUT", help="Write them as JSON here.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print them as JSON.")] = False,
    force: ForceOption = False,
) -> None:
    """Per-dimension mean and standard deviation of the latents of every container under
    DIR, in one streaming pass (for normalising latents; m2l_cli.dataset.LatentStats)."""
    if output is not None:
        check_output(output, force, [root])
    from .atomic import AtomicOutput
    from .dataset import latent_stats

    found = latent_stats(root).to_json()
    text = json.dumps(found, indent=1)
    if output is not None:
        with AtomicOutput(output) as temporary:
            temporary.write_text(text + "\n")
    if as_json:
        print_text(text)
    elif output is None or output != STDIO:
        rows = [
            (str(dimension), f"{mean:+.4f}", f"{std:.4f}")
            for dimension, (mean, std) in enumerate(zip(found["mean"], found["std"], strict=True))
        ]
        title = f"{found['files']} files, {found['vectors']} latent vectors"
        print_text(table(title, ("dimension", "mean", "std"), rows, terminal_width(sys.stdout)))


@app.command(short_help="MIR features of audio files or folders (or pooled latents).")
def embed(
    source: Annotated[
        str, typer.Argument(metavar="IN", help="Audio file, .m2l container, or a folder of them.")
    ],
    output: Annotated[
        str | None,
        typer.Option(
            "--output",
            "-o",
            metavar="OUT",
            help="A .npy (a file), a .npz or a folder of .npy (a folder; default: DIR.npz).",
        ),
    ] = None,
    pool: Annotated[
        str, typer.Option(metavar="HOW", help="mean (over chunks) or none (per chunk).")
    ] = "mean",
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
    model: ModelOption = None,
    device: DeviceOption = "auto",
    precision: PrecisionOption = "auto",
    threads: ThreadsOption = None,
    batch_size: BatchOption = DEFAULT_BATCH_SIZE,
    force: ForceOption = False,
    quiet: QuietOption = False,
) -> None:
    """The encoder's pre-bottleneck summary embeddings of audio ([channels, K x dim]
    pooled, [channels, chunks, K, dim] with --pool none), or a container's latents
    pooled the same way; one .npy per input (a folder's tree mirrored) or one .npz."""
    if pool not in ("mean", "none"):
        raise typer.BadParameter("must be mean or none", param_hint="--pool")
    from .feature_files import embed_files, feature_inputs, plan_outputs, save_features

    inputs = feature_inputs(source)
    plan = plan_outputs(source, inputs, output)
    plan.make_folders()
    for target in plan.targets():
        check_output(target, force, [str(path) for path in inputs])
    check_runtime(device, precision)
    needs_model = any(path.suffix.lower() != ".m2l" for path in inputs)
    codec = load_codec(model, device, precision, threads, quiet) if needs_model else None
    results = list(embed_files(codec, inputs, pool=pool, batch_size=batch_size))
    for result in results:
        if result.error:
            error(result.error)
    written = save_features(results, plan)
    if as_json:
        summary = [
            {
                "file": result.source,
                "kind": result.kind,
                "pool": pool,
                "output": written.get(result.source),
                "shape": list(result.features.shape) if result.features is not None else None,
                "error": result.error,
            }
            for result in results
        ]
        print_text(json.dumps(summary, indent=1))
    elif not quiet:
        for target in sorted(set(written.values())):
            note(f"wrote {shown(target)}")
    raise typer.Exit(1 if any(result.error for result in results) else 0)


@app.command(short_help="Encode (or decode) every file in a folder.")
def batch(
    folder: Annotated[
        str, typer.Argument(metavar="DIR", help="Folder to process, recursively (ray: or a URI).")
    ],
    decode_mode: Annotated[
        bool, typer.Option("--decode", help="Decode .m2l files (to NAME.m2l.wav).")
    ] = False,
    output_dir: Annotated[
        str | None,
        typer.Option("--output-dir", metavar="DIR", help="Mirror the tree here (default: beside)."),
    ] = None,
    model: ModelOption = None,
    device: DeviceOption = "auto",
    precision: PrecisionOption = "auto",
    threads: ThreadsOption = None,
    batch_size: BatchOption = DEFAULT_BATCH_SIZE,
    sigma_cond: SigmaOption = DEFAULT_SIGMA_COND,
    seed: SeedOption = 0,
    sample_rate: RateOption = None,
    format_name: FormatOption = None,
    subtype: SubtypeOption = None,
    meta: MetaOption = None,
    force: ForceOption = False,
    quiet: QuietOption = False,
    engine: Annotated[
        str, typer.Option(metavar="NAME", help="local, or ray (a Ray cluster; URIs allowed).")
    ] = "local",
    ray_address: Annotated[
        str | None, typer.Option(metavar="ADDR", help="ray: cluster to join (default: local).")
    ] = None,
    actors: Annotated[
        int | None, typer.Option(min=1, metavar="N", help="ray: workers (default: per CPU/GPU).")
    ] = None,
    gpus_per_actor: Annotated[
        float, typer.Option(min=0.0, metavar="F", help="ray: GPUs per worker (0: CPU).")
    ] = 0.0,
) -> None:
    """Encode every audio file in a folder (or decode every .m2l with --decode). Every
    entry not coded is reported with the reason. With --engine ray, the files are coded
    by Ray workers (--threads: each worker's), read and written through pyarrow."""
    from .batch import plan_batch
    from .files import encode_files

    metadata = parse_metadata(meta)
    if engine not in ("local", "ray"):
        raise typer.BadParameter(f"{shown(engine)!r} is not local or ray", param_hint="--engine")
    if engine == "local" and (ray_address or actors or gpus_per_actor):
        raise typer.BadParameter("needs --engine ray", param_hint="--ray-address/--actors/--gpus")
    if engine == "local" or not gpus_per_actor:  # GPU workers may see devices we do not
        check_runtime(device, precision)
    if engine == "ray":
        from .distributed import Coding, Workers
        from .distributed import batch as ray_batch

        coding = Coding(
            decode=decode_mode,
            batch_size=batch_size,
            metadata=metadata,
            sigma_cond=sigma_cond,
            seed=seed,
            sample_rate=sample_rate,
            format_name=format_name,
            subtype=subtype,
        )
        workers = Workers(
            address=ray_address,
            actors=actors,
            gpus_per_actor=gpus_per_actor,
            threads=threads or 1,
            device=device,
            precision=precision,
            model=model,
        )
        started = time.monotonic()
        run = ray_batch(folder, output_dir=output_dir, force=force, coding=coding, workers=workers)
        show_batch(run.plan, run.results, quiet, started)
    plan = plan_batch(
        folder,
        decode=decode_mode,
        output_dir=output_dir,
        format_name=format_name or FORMATS[0],
        force=force,
    )
    runs: Iterator[FileResult] = iter(())
    started = time.monotonic()
    if plan.pairs:
        codec = load_codec(model, device, precision, threads, quiet)
        started = time.monotonic()
        if decode_mode:
            runs = decode_pairs(
                codec, plan.pairs, sigma_cond, seed, sample_rate, format_name, subtype, batch_size
            )
        else:
            runs = encode_files(codec, plan.pairs, metadata=metadata, batch_size=batch_size)
    show_batch(plan, runs, quiet, started)


def show_batch(
    plan: BatchPlan, runs: Iterator[FileResult], quiet: bool, started: float
) -> NoReturn:
    """A progress bar over the results as they come, the summary, and the exit code:
    1 when any entry failed."""
    results: list[FileResult] = []
    if plan.pairs:
        with progress_bar(f"{len(plan.pairs)} files", len(plan.pairs), quiet) as bar:
            for result in runs:
                results.append(result)
                if bar:
                    bar.advance(1, result.seconds)
    print_summary(results, plan, quiet, time.monotonic() - started)
    failed = plan.failed or any(result.error for result in results)
    raise typer.Exit(1 if failed else 0)


def print_summary(results: list[FileResult], plan: BatchPlan, quiet: bool, wall: float) -> None:
    """A table of every entry's outcome (errors only with --quiet), then one line of
    totals and speed (on stderr)."""
    errors = [(r.source, r.error) for r in results if r.error] + plan.failed
    if quiet:
        for source, problem in errors:
            error(problem if problem.startswith(source) else f"{source}: {problem}")
    else:
        rows = [
            (r.source, "failed" if r.error else "ok", f"{r.seconds:.1f}", r.error or r.target)
            for r in results
        ]
        rows += [(path, "failed", "", reason) for path, reason in plan.failed]
        rows += [(path, "skipped", "", reason) for path, reason in sorted(plan.skipped)]
        if rows:
            headers = ("file", "status", "audio s", "output / reason")
            say(table("m2l batch", headers, rows, terminal_width(sys.stderr), folding=(0, 3)))
    done = [result for result in results if not result.error]
    line = f"{len(done)} ok, {len(errors)} failed, {len(plan.skipped)} skipped"
    if plan.others:
        kinds = ", ".join(f"{suffix} {count}" for suffix, count in plan.others.most_common(5))
        line += f", {sum(plan.others.values())} other files left alone ({kinds})"
    if done:
        audio = sum(result.seconds for result in done)
        line += f"; {duration_text(audio)} of audio, {speed_text(audio, wall)}"
    say(shown(line))


@app.command(short_help="Train a model (resumable; Ctrl-C saves).")
def train(
    data: Annotated[
        Path, typer.Argument(metavar="DIR", help="Folder of 44.1 kHz audio to train on.")
    ],
    run: Annotated[
        Path, typer.Option("--run", metavar="DIR", help="Folder for checkpoint and logs.")
    ] = Path("runs/default"),
    resume: Annotated[bool, typer.Option(help="Continue the run's checkpoint.")] = False,
    init: Annotated[
        Path | None,
        typer.Option(
            metavar="PATH",
            help="Start a new run from these model weights (model switches add parts).",
        ),
    ] = None,
    steps: Annotated[int | None, typer.Option(min=1, metavar="N", help="Steps to do now.")] = None,
    total_steps: Annotated[
        int | None,
        typer.Option(min=1, metavar="N", help="Schedule length (learning rate, curriculum)."),
    ] = None,
    preset_name: Annotated[
        str | None, typer.Option("--preset", metavar="NAME", help="small, paper or tiny.")
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option(min=1, metavar="N", help="Crops per step.")
    ] = None,
    learning_rate: Annotated[
        float | None, typer.Option("--lr", metavar="X", help="Peak learning rate.")
    ] = None,
    ema_decay: Annotated[
        float | None,
        typer.Option(
            min=0.0, max=0.9999999, metavar="X", help="Decay of the weights' moving average."
        ),
    ] = None,
    ema_warmup: Annotated[
        bool | None,
        typer.Option("--ema-warmup/--no-ema-warmup", help="Warm the moving average up."),
    ] = None,
    sigma_sampling: Annotated[
        str | None, typer.Option(metavar="NAME", help="time-weighted or lognormal.")
    ] = None,
    curriculum: Annotated[
        str | None, typer.Option(metavar="NAME", help="staged or exponential.")
    ] = None,
    curriculum_stages: Annotated[
        int | None,
        typer.Option(min=1, metavar="N", help="Stages of the staged curriculum."),
    ] = None,
    consistency_precision: Annotated[
        str | None,
        typer.Option(metavar="NAME", help="fp32, bf16 or inherit (as --precision)."),
    ] = None,
    zero_init_head: Annotated[
        bool | None,
        typer.Option("--zero-init-head/--no-zero-init-head", help="Start the output head at zero."),
    ] = None,
    frequency_scaling: Annotated[
        bool | None,
        typer.Option("--frequency-scaling/--no-frequency-scaling", help="New runs: model switch."),
    ] = None,
    summary_index: Annotated[
        bool | None,
        typer.Option("--summary-index/--no-summary-index", help="New runs: model switch."),
    ] = None,
    workers: Annotated[
        int | None, typer.Option(min=0, metavar="N", help="Data worker processes.")
    ] = None,
    seed: Annotated[
        int | None, typer.Option(metavar="N", help="Seed of weights, crops and noise.")
    ] = None,
    device: DeviceOption = "auto",
    precision: Annotated[
        str | None,
        typer.Option(metavar="NAME", help="auto, bf16 or fp32 (encoder and decoder)."),
    ] = None,
    threads: ThreadsOption = None,
    validation: Annotated[
        Path | None,
        typer.Option(metavar="DIR", help="Folder of clips reconstructed at each validation."),
    ] = None,
    validate_every: Annotated[
        int | None, typer.Option(min=1, metavar="N", help="Steps between validations (500).")
    ] = None,
    checkpoint_every: Annotated[
        int | None, typer.Option(min=1, metavar="N", help="Steps between checkpoints (100).")
    ] = None,
    log_every: Annotated[
        int | None, typer.Option(min=1, metavar="N", help="Steps between log lines (10).")
    ] = None,
    quiet: QuietOption = False,
) -> None:
    """Train a model by consistency training (resumable; Ctrl-C saves and exits).

    Unset options take the defaults of docs/TRAINING.md. A resumed run keeps the
    settings it started with; only the worker count and how often it logs, validates
    and saves can be changed."""
    from .runtime import resolve_device, set_threads
    from .training import TrainingPlan, make_validator
    from .training import train as run_training

    check_runtime(device)
    if threads:
        set_threads(threads)
    given = dict(
        preset=preset_name,
        batch_size=batch_size,
        total_steps=total_steps,
        learning_rate=learning_rate,
        ema_decay=ema_decay,
        ema_warmup=ema_warmup,
        sigma_sampling=sigma_sampling,
        curriculum=curriculum,
        curriculum_stages=curriculum_stages,
        consistency_precision=consistency_precision,
        zero_init_head=zero_init_head,
        seed=seed,
        precision=precision,
        workers=workers,
        log_every=log_every,
        validate_every=validate_every,
        checkpoint_every=checkpoint_every,
    )
    switches = dict(frequency_scaling=frequency_scaling, summary_index_embedding=summary_index)
    try:
        plan = TrainingPlan.from_options(given, switches, resume=resume, init=init)
    except ValueError as problem:
        raise typer.BadParameter(str(problem)) from None
    validator = make_validator(validation) if validation else None

    def show(row: dict) -> None:
        if not quiet:
            say(
                f"step {row['step']}  loss {row['loss']:.4g}  lr {row['lr']:.3g}  "
                f"gap {row['gap']:.4g}  grad {row['grad_norm']:.3g}  "
                f"{row['samples_per_s']:.2f} samples/s"
            )

    trainer = run_training(
        data,
        run,
        settings=plan.settings,
        model_config=plan.model_config,
        steps=steps,
        device=resolve_device(device),
        resume=resume,
        on_log=show,
        validate=validator,
        initial_weights=init,
        added_parts=plan.added_parts,
        routine=plan.routine,
    )
    note(f"checkpoint at step {trainer.step} in {run}")


@app.command(short_help="Export a checkpoint as a model file.")
def export(
    checkpoint: Annotated[
        Path, typer.Argument(metavar="CHECKPOINT", help="Training checkpoint (.safetensors).")
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", metavar="PATH", help="Weights file to write.")
    ],
    name: Annotated[
        str | None, typer.Option(metavar="NAME", help="Model name stored in the file.")
    ] = None,
    force: ForceOption = False,
) -> None:
    """Export a checkpoint's EMA weights as a float16 model file for --model."""
    from .training import export_checkpoint

    check_output(str(output), force, [str(checkpoint)])
    model_id = export_checkpoint(checkpoint, output, name)
    note(f"wrote {output} (model {model_id})")


@app.command(name="eval", short_help="Score decoded audio against its input.")
def evaluate(
    paths: Annotated[
        list[Path],
        typer.Argument(
            metavar="REF_DIR [TEST_DIR]",
            help="Compare two folders, or code one folder with the model and compare.",
        ),
    ],
    model: ModelOption = None,
    device: DeviceOption = "auto",
    precision: PrecisionOption = "auto",
    threads: ThreadsOption = None,
    sigma_cond: SigmaOption = DEFAULT_SIGMA_COND,
    seed: SeedOption = 0,
    max_seconds: Annotated[
        float | None, typer.Option(min=0.1, metavar="SECONDS", help="Crop each file.")
    ] = None,
    offset: Annotated[
        float, typer.Option(min=0.0, metavar="SECONDS", help="Crop start, seconds.")
    ] = 0.0,
    visqol: Annotated[
        bool, typer.Option(help="Also compute ViSQOL (slow; needs m2l_cli[eval]).")
    ] = True,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the report as JSON, not tables.")
    ] = False,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", metavar="PATH", help="Write the report here, not stdout."),
    ] = None,
    force: ForceOption = False,
    quiet: QuietOption = False,
) -> None:
    """Objective metrics (SI-SDR, log-mel, multi-resolution STFT, ViSQOL) and diagnostics
    (loudness, level per band, chunk-boundary ticks), with the equal-budget naive 689 Hz
    codec as the reference row. The report goes to stdout (tables, or --json)."""
    from .evaluation import compare_folders, evaluate_codec

    if len(paths) not in (1, 2):
        raise typer.BadParameter("give REF_DIR TEST_DIR, or one folder with --model")
    if len(paths) == 1:
        check_runtime(device, precision)
    if output:
        check_output(str(output), force)
    if len(paths) == 2:
        result = compare_folders(paths[0], paths[1], use_visqol=visqol, max_seconds=max_seconds)
    else:
        codec = load_codec(model, device, precision, threads, quiet)
        result = evaluate_codec(
            codec,
            paths[0],
            sigma_cond=sigma_cond,
            seed=seed,
            max_seconds=max_seconds,
            offset=offset,
            use_visqol=visqol,
        )
    width = None if output else terminal_width(sys.stdout)
    text = result.to_json() if as_json else report_tables(result, width)
    write_report(text, output)
    for line in result.errors + [f"no partner: {name}" for name in result.missing_test]:
        note(line)
    raise typer.Exit(1 if result.errors else 0)


def report_tables(result: Report, width: int | None) -> str:
    """Per system, a table of scores and one of diagnostics for every file; then the
    means of both side by side."""
    from .evaluation.report import DIAGNOSTIC_COLUMNS, DIAGNOSTICS_TITLE, SCORE_COLUMNS

    kinds = ((SCORE_COLUMNS, ""), (DIAGNOSTIC_COLUMNS, f": {DIAGNOSTICS_TITLE}"))
    tables = []
    for system in result.systems:
        for columns, subtitle in kinds:
            headers = ("file", *(column.title for column in columns))
            tables.append(
                table(f"{system}{subtitle}", headers, result.table_rows(system, columns), width)
            )
    for columns, subtitle in kinds:
        headers = ("system", *(column.title for column in columns))
        tables.append(table(f"means{subtitle}", headers, result.summary_rows(columns), width))
    return "\n\n".join(tables)


def write_report(text: str, output: Path | None) -> None:
    """The report on stdout, or atomically into `output`."""
    if output is None:
        print_text(text)
        return
    from .atomic import AtomicOutput

    with AtomicOutput(output) as temporary:
        temporary.write_text(text + "\n", encoding="utf-8")


def version_callback(value: bool) -> None:
    if value:
        print_text(f"m2l {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", "-V", callback=version_callback, is_eager=True, help="Show the version."
        ),
    ] = False,
) -> None:
    """m2l: compress audio into .m2l latent containers (Music2Latent2) and back."""


def run(args: list[str]) -> int:
    """Runs the command line `args`; returns the exit code. Ctrl-C and SIGTERM are
    raised on, for `__main__` to report."""
    try:
        code = app(args=args, prog_name="m2l", standalone_mode=False)
        flush_stdout()
    except typer.TyperException as problem:  # usage errors (exit 2), from click
        usage_error(problem)
        return problem.exit_code
    except typer.Abort:
        raise KeyboardInterrupt from None
    except M2LError as problem:
        error(str(problem))
        return 1
    except OSError as problem:  # help text on a full disk or a closed pipe, mostly
        if problem.filename is not None:
            error(f"{problem.filename}: {problem.strerror or problem}")
        else:
            abandon_stdout()
            error(f"cannot write to stdout ({problem.strerror or problem})")
        return 1
    if code == INTERRUPTED:  # typer's way of reporting Ctrl-C
        raise KeyboardInterrupt
    return code if isinstance(code, int) else 0


def usage_error(problem: typer.TyperException) -> None:
    """One line: the message, and where help is."""
    context = getattr(problem, "ctx", None)
    if type(problem).__name__ == "NoArgsIsHelpError":
        say(problem.format_message())
        return
    command = context.command_path if context is not None else "m2l"
    error(f"{problem.format_message().rstrip('.')} (see '{command} --help')")
