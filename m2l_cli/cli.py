"""The `m2l` command: a thin layer of options, progress and messages over the Python API."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from ._version import __version__
from .atomic import AtomicOutput
from .audio import OutputFormat
from .batch import BatchPlan, plan_batch
from .codec import Codec
from .container import SUFFIX as CONTAINER_SUFFIX
from .container import Latents
from .defaults import DEFAULT_BATCH_SIZE, DEFAULT_SIGMA_COND
from .errors import M2LError
from .evaluation import Report, compare_folders, evaluate_codec
from .evaluation.report import DIAGNOSTIC_COLUMNS, DIAGNOSTICS_TITLE, SCORE_COLUMNS, Column
from .files import (
    FileResult,
    decode_files,
    decode_progress_total,
    encode_files,
    encode_progress_total,
)
from .paths import STDIO, check_output, default_output
from .runtime import resolve_device, set_threads
from .training import TrainingPlan, export_checkpoint, make_validator
from .training import train as run_training
from .weights import MODEL_VARIABLE

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="m2l: compress audio into .m2l latent containers (Music2Latent2) and back.",
)
console = Console(stderr=True)
Advance = Callable[[int], None]

ModelOption = Annotated[
    Path | None,
    typer.Option("--model", "-m", envvar=MODEL_VARIABLE, help="Weights file (.safetensors)."),
]
DeviceOption = Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N, mps...")]
PrecisionOption = Annotated[str, typer.Option(help="auto, fp32, bf16 or fp16.")]
ThreadsOption = Annotated[int | None, typer.Option(min=1, help="CPU threads.")]
BatchOption = Annotated[
    int, typer.Option("--batch-size", min=1, help="Chunks (encode) or streams (decode) per call.")
]
ForceOption = Annotated[bool, typer.Option("--force", "-f", help="Overwrite existing outputs.")]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress or notes.")]
SigmaOption = Annotated[
    float, typer.Option("--sigma-cond", min=0.0, max=80.0, help="Noise on the previous chunk.")
]
SeedOption = Annotated[int, typer.Option(help="Noise seed: the same seed gives the same audio.")]
RateOption = Annotated[
    int | None, typer.Option("--sample-rate", min=1, help="Output rate (default: original).")
]
FormatOption = Annotated[
    OutputFormat | None,
    typer.Option("--format", case_sensitive=False, help="Default: from the extension."),
]
SubtypeOption = Annotated[
    str | None, typer.Option(help="Sample format, e.g. PCM_16, PCM_24, FLOAT.")
]
MetaOption = Annotated[
    list[str] | None, typer.Option("--meta", help="key=value stored in the header; repeatable.")
]


def fail(message: str) -> typer.Exit:
    console.print(f"m2l: error: {message}", markup=False, highlight=False, soft_wrap=True)
    return typer.Exit(1)


def load_codec(
    model: Path | None, device: str, precision: str, threads: int | None, quiet: bool
) -> Codec:
    """The codec for --model / M2L_MODEL / the bundled default; notes an untrained one."""
    if threads:
        set_threads(threads)
    codec = Codec.load(model, device=device, precision=precision)
    if not codec.trained and not quiet:
        console.print(
            f"m2l: note: model {codec.model_name} is untrained: its audio is not a real codec's",
            markup=False,
            highlight=False,
        )
    return codec


@contextmanager
def progress_bar(description: str, total: int | None, quiet: bool) -> Iterator[Advance | None]:
    """A rich progress bar on stderr, only on a terminal; yields an `advance` callback."""
    if quiet or not console.is_terminal:
        yield None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(description, total=total)
        yield lambda amount: progress.advance(task, amount)


def parse_metadata(items: list[str] | None) -> dict[str, str]:
    metadata = {}
    for item in items or []:
        key, separator, value = item.partition("=")
        if not separator or not key:
            raise typer.BadParameter(f"{item!r} is not key=value", param_hint="--meta")
        metadata[key] = value
    return metadata


def report(results: list[FileResult]) -> int:
    """Prints each failure on one line; returns the exit code."""
    failed = [result for result in results if result.error]
    for result in failed:
        console.print(f"m2l: error: {result.error}", markup=False, highlight=False, soft_wrap=True)
    return 1 if failed else 0


@app.command()
def encode(
    source: Annotated[str, typer.Argument(metavar="IN", help="Audio file, or - for stdin.")],
    output: Annotated[str | None, typer.Option("--output", "-o", help="Output .m2l, or -.")] = None,
    model: ModelOption = None,
    device: DeviceOption = "auto",
    precision: PrecisionOption = "auto",
    threads: ThreadsOption = None,
    batch_size: BatchOption = DEFAULT_BATCH_SIZE,
    meta: MetaOption = None,
    force: ForceOption = False,
    quiet: QuietOption = False,
) -> None:
    """Encode an audio file (wav, flac, ogg, opus, mp3, aiff...) into an .m2l container."""
    target = output or default_output(source, CONTAINER_SUFFIX)
    metadata = parse_metadata(meta)
    check_output(target, force)
    codec = load_codec(model, device, precision, threads, quiet)
    total = encode_progress_total(codec, source)
    with progress_bar("encoding", total, quiet) as advance:
        runs = encode_files(
            codec, [(source, target)], metadata=metadata, batch_size=batch_size, progress=advance
        )
        results = list(runs)
    raise typer.Exit(report(results))


@app.command()
def decode(
    source: Annotated[str, typer.Argument(metavar="IN", help=".m2l container, or - for stdin.")],
    output: Annotated[
        str | None, typer.Option("--output", "-o", help="Output audio, or -.")
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
    force: ForceOption = False,
    quiet: QuietOption = False,
) -> None:
    """Decode an .m2l container to WAV or FLAC, at the original sample rate by default."""
    target = output or default_output(source, OutputFormat.WAV.suffix)
    check_output(target, force)
    codec = load_codec(model, device, precision, threads, quiet)
    with progress_bar("decoding", decode_progress_total(source), quiet) as advance:
        pairs = [(source, target)]
        runs = decode_pairs(
            codec, pairs, sigma_cond, seed, sample_rate, format_name, subtype, batch_size, advance
        )
        results = list(runs)
    raise typer.Exit(report(results))


def decode_pairs(
    codec: Codec,
    pairs: list[tuple[str, str]],
    sigma_cond: float,
    seed: int,
    sample_rate: int | None,
    format_name: OutputFormat | None,
    subtype: str | None,
    batch_size: int,
    advance: Advance | None = None,
) -> Iterator[FileResult]:
    """`decode_files` with the options `decode` and `batch --decode` share."""
    return decode_files(
        codec,
        pairs,
        sigma_cond=sigma_cond,
        seed=seed,
        sample_rate=sample_rate,
        format_name=format_name,
        subtype=subtype,
        batch_size=batch_size,
        progress=advance,
    )


@app.command()
def info(
    path: Annotated[str, typer.Argument(metavar="FILE", help=".m2l container, or -.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the header as JSON.")] = False,
) -> None:
    """Show what an .m2l container holds (and check it is intact)."""
    latents = Latents.load(sys.stdin.buffer if path == STDIO else path)
    header = latents.header()
    if as_json:
        print(json.dumps(header, indent=2, sort_keys=True))
        return
    table = Table(show_header=False, box=None)
    for key, value in _info_rows(latents, path):
        table.add_row(key, value)
    Console().print(table)


def _info_rows(latents: Latents, path: str) -> list[tuple[str, str]]:
    size = os.path.getsize(path) if path != STDIO else None
    rows = [
        ("model", f"{latents.model_name} ({latents.model_id})"),
        ("duration", f"{latents.duration:.3f} s ({latents.num_samples} samples)"),
        ("sample rate", f"{latents.original_sample_rate} Hz (model {latents.sample_rate} Hz)"),
        ("channels", str(latents.channels)),
        ("chunks", f"{latents.chunks} x {latents.num_latents} x {latents.latent_dim} float16"),
        ("tool version", latents.tool_version),
    ]
    if size is not None:
        rows.append(("file size", f"{size} bytes"))
    rows += [(f"meta {key}", value) for key, value in sorted(latents.metadata.items())]
    return rows


@app.command()
def batch(
    folder: Annotated[Path, typer.Argument(metavar="DIR", help="Folder to process, recursively.")],
    decode_mode: Annotated[bool, typer.Option("--decode", help="Decode .m2l files.")] = False,
    output_dir: Annotated[
        Path | None, typer.Option("--output-dir", help="Mirror the tree here (default: beside).")
    ] = None,
    model: ModelOption = None,
    device: DeviceOption = "auto",
    precision: PrecisionOption = "auto",
    threads: ThreadsOption = None,
    batch_size: BatchOption = DEFAULT_BATCH_SIZE,
    sigma_cond: SigmaOption = DEFAULT_SIGMA_COND,
    seed: SeedOption = 0,
    sample_rate: RateOption = None,
    format_name: Annotated[
        OutputFormat, typer.Option("--format", case_sensitive=False, help="Decode output.")
    ] = OutputFormat.WAV,
    subtype: SubtypeOption = None,
    meta: MetaOption = None,
    force: ForceOption = False,
    quiet: QuietOption = False,
) -> None:
    """Encode every audio file in a folder (or decode every .m2l with --decode)."""
    metadata = parse_metadata(meta)
    plan = plan_batch(
        folder, decode=decode_mode, output_dir=output_dir, format_name=format_name, force=force
    )
    results: list[FileResult] = []
    if plan.pairs:
        codec = load_codec(model, device, precision, threads, quiet)
        if decode_mode:
            runs = decode_pairs(
                codec, plan.pairs, sigma_cond, seed, sample_rate, format_name, subtype, batch_size
            )
        else:
            runs = encode_files(codec, plan.pairs, metadata=metadata, batch_size=batch_size)
        with progress_bar(f"{len(plan.pairs)} files", len(plan.pairs), quiet) as advance:
            for result in runs:
                results.append(result)
                if advance:
                    advance(1)
    print_summary(results, plan, quiet)
    raise typer.Exit(1 if any(result.error for result in results) else 0)


def print_summary(results: list[FileResult], plan: BatchPlan, quiet: bool) -> None:
    """A table of every file's outcome, then one line of totals (on stderr)."""
    failed = [result for result in results if result.error]
    if not quiet:
        table = Table(title="m2l batch")
        for column in ("file", "status", "audio s", "output / error"):
            table.add_column(column)
        for result in results:
            status = "[red]failed[/red]" if result.error else "[green]ok[/green]"
            detail = result.error or result.target
            table.add_row(result.source, status, f"{result.seconds:.1f}", detail)
        for path in plan.skipped:
            table.add_row(path, "[yellow]skipped[/yellow]", "", "output exists (use --force)")
        console.print(table)
    else:
        for result in failed:
            console.print(f"m2l: error: {result.error}", markup=False, highlight=False)
    done = len(results) - len(failed)
    console.print(f"{done} ok, {len(failed)} failed, {len(plan.skipped)} skipped", highlight=False)


@app.command()
def train(
    data: Annotated[Path, typer.Argument(help="Folder of 44.1 kHz audio to train on.")],
    run: Annotated[Path, typer.Option("--run", help="Folder for checkpoint and logs.")] = Path(
        "runs/default"
    ),
    resume: Annotated[bool, typer.Option(help="Continue the run's checkpoint.")] = False,
    init: Annotated[
        Path | None, typer.Option(help="Start a new run from these model weights.")
    ] = None,
    steps: Annotated[int | None, typer.Option(min=1, help="Steps to do now.")] = None,
    total_steps: Annotated[
        int | None, typer.Option(min=1, help="Schedule length (learning rate, curriculum).")
    ] = None,
    preset_name: Annotated[
        str | None, typer.Option("--preset", help="small, paper or tiny.")
    ] = None,
    batch_size: Annotated[int | None, typer.Option(min=1, help="Crops per step.")] = None,
    learning_rate: Annotated[float | None, typer.Option("--lr", help="Peak rate.")] = None,
    ema_decay: Annotated[float | None, typer.Option(min=0.0, max=0.9999999)] = None,
    ema_warmup: Annotated[
        bool | None, typer.Option("--ema-warmup/--no-ema-warmup", help="Warm the EMA up.")
    ] = None,
    sigma_sampling: Annotated[str | None, typer.Option(help="time-weighted or lognormal.")] = None,
    curriculum: Annotated[str | None, typer.Option(help="staged or exponential.")] = None,
    curriculum_stages: Annotated[int | None, typer.Option(min=1)] = None,
    consistency_precision: Annotated[
        str | None, typer.Option(help="fp32, bf16 or inherit (as --precision).")
    ] = None,
    zero_init_head: Annotated[
        bool | None, typer.Option("--zero-init-head/--no-zero-init-head")
    ] = None,
    frequency_scaling: Annotated[
        bool | None,
        typer.Option("--frequency-scaling/--no-frequency-scaling", help="New runs: model switch."),
    ] = None,
    summary_index: Annotated[
        bool | None,
        typer.Option("--summary-index/--no-summary-index", help="New runs: model switch."),
    ] = None,
    workers: Annotated[int | None, typer.Option(min=0, help="Data worker processes.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of weights, crops and noise.")] = None,
    device: DeviceOption = "auto",
    precision: Annotated[
        str | None, typer.Option(help="auto, bf16 or fp32 (encoder and decoder).")
    ] = None,
    threads: ThreadsOption = None,
    validation: Annotated[
        Path | None, typer.Option(help="Folder of clips reconstructed at each validation.")
    ] = None,
    validate_every: Annotated[int | None, typer.Option(min=1, help="Default 500.")] = None,
    checkpoint_every: Annotated[int | None, typer.Option(min=1, help="Default 100.")] = None,
    log_every: Annotated[int | None, typer.Option(min=1, help="Default 10.")] = None,
    quiet: QuietOption = False,
) -> None:
    """Train a model by consistency training (resumable; Ctrl-C saves and exits).

    Unset options take the defaults of docs/TRAINING.md. A resumed run keeps the
    settings it started with; only the worker count and how often it logs, validates
    and saves can be changed."""
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
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    validator = make_validator(validation) if validation else None

    def show(row: dict) -> None:
        if not quiet:
            console.print(
                f"step {row['step']}  loss {row['loss']:.4g}  lr {row['lr']:.3g}  "
                f"gap {row['gap']:.4g}  grad {row['grad_norm']:.3g}  "
                f"{row['samples_per_s']:.2f} samples/s",
                highlight=False,
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
        routine=plan.routine,
    )
    console.print(f"m2l: checkpoint at step {trainer.step} in {run}", highlight=False)


@app.command()
def export(
    checkpoint: Annotated[Path, typer.Argument(help="Training checkpoint (.safetensors).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Weights file to write.")],
    name: Annotated[str | None, typer.Option(help="Model name stored in the file.")] = None,
    force: ForceOption = False,
) -> None:
    """Export a checkpoint's EMA weights as a float16 model file for --model."""
    check_output(str(output), force)
    model_id = export_checkpoint(checkpoint, output, name)
    console.print(f"m2l: wrote {output} (model {model_id})", highlight=False)


@app.command(name="eval")
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
    max_seconds: Annotated[float | None, typer.Option(min=0.1, help="Crop each file.")] = None,
    offset: Annotated[float, typer.Option(min=0.0, help="Crop start, seconds.")] = 0.0,
    visqol: Annotated[bool, typer.Option(help="Also compute ViSQOL (slow; m2l_cli[eval]).")] = True,
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the report here.")] = None,
    force: ForceOption = False,
    quiet: QuietOption = False,
) -> None:
    """Objective metrics (SI-SDR, log-mel, multi-resolution STFT, ViSQOL) and diagnostics
    (loudness, level per band, chunk-boundary ticks), with the equal-budget naive 689 Hz
    codec as the reference row."""
    if len(paths) not in (1, 2):
        raise typer.BadParameter("give REF_DIR TEST_DIR, or one folder with --model")
    if json_path:
        check_output(str(json_path), force)
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
    print_report(result)
    if json_path:
        with AtomicOutput(json_path) as temporary:
            temporary.write_text(result.to_json())
    raise typer.Exit(1 if result.errors else 0)


def print_report(result: Report) -> None:
    """Per system, a table of scores and one of diagnostics for every file; then the
    means of both side by side (on stderr)."""
    tables = ((SCORE_COLUMNS, ""), (DIAGNOSTIC_COLUMNS, f": {DIAGNOSTICS_TITLE}"))
    for system in result.systems:
        for columns, subtitle in tables:
            rows = result.table_rows(system, columns)
            _print_table(f"{system}{subtitle}", "file", columns, rows)
    for columns, subtitle in tables:
        _print_table(f"means{subtitle}", "system", columns, result.summary_rows(columns))
    for line in result.errors + [f"no partner: {name}" for name in result.missing_test]:
        console.print(f"m2l: {line}", markup=False, highlight=False)


def _print_table(
    title: str, first: str, columns: tuple[Column, ...], rows: list[tuple[str, ...]]
) -> None:
    """A table headed `first` and the columns' titles, on stderr (no vertical lines, so
    ten columns fit 80 characters)."""
    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    table.add_column(first, overflow="fold")
    for column in columns:
        table.add_column(column.title, no_wrap=True)
    for row in rows:
        table.add_row(*row)
    console.print(table)


def version_callback(value: bool) -> None:
    if value:
        print(f"m2l {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=version_callback, is_eager=True, help="Show the version."
        ),
    ] = False,
) -> None:
    """m2l: compress audio into .m2l latent containers (Music2Latent2) and back."""


def main() -> None:
    """Entry point: one-line errors, exit 1 on failure, 2 on usage, 130 on Ctrl-C."""
    try:
        app(standalone_mode=True)
    except M2LError as error:
        fail(str(error))
        sys.exit(1)
    except KeyboardInterrupt:
        console.print("m2l: interrupted", highlight=False)
        sys.exit(130)
