"""`m2l batch`: every file in a folder, on this machine or on Ray, with a table of
every entry's outcome."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from ..defaults import DEFAULT_BATCH_SIZE, DEFAULT_SIGMA_COND
from ..display import (
    duration_text,
    error,
    progress_bar,
    say,
    speed_text,
    table,
    terminal_width,
)
from ..text import shown
from .common import (
    FORMATS,
    BatchOption,
    DeviceOption,
    ForceOption,
    FormatOption,
    MetaOption,
    ModelOption,
    PrecisionOption,
    QuietOption,
    RateOption,
    SeedOption,
    SigmaOption,
    SubtypeOption,
    ThreadsOption,
    app,
    check_runtime,
    load_codec,
    parse_metadata,
)

if TYPE_CHECKING:
    from pathlib import Path

    from ..batch import BatchPlan
    from ..distributed import Workers
    from ..files import Coding, FileResult


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
    metadata = parse_metadata(meta)
    check_engine_options(engine, ray_address, actors, gpus_per_actor)
    if engine == "local" or not gpus_per_actor:  # GPU workers may see devices we do not
        check_runtime(device, precision)
    from ..files import Coding

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
    if engine == "ray":
        from ..distributed import Workers

        workers = Workers(
            address=ray_address,
            actors=actors,
            gpus_per_actor=gpus_per_actor,
            threads=threads or 1,
            device=device,
            precision=precision,
            model=model,
        )
        batch_on_ray(folder, output_dir, force, coding, workers, quiet)
    batch_here(folder, output_dir, force, coding, quiet, (model, device, precision, threads))


def check_engine_options(
    engine: str, ray_address: str | None, actors: int | None, gpus_per_actor: float
) -> None:
    """The Ray options go with --engine ray only."""
    if engine not in ("local", "ray"):
        raise typer.BadParameter(f"{shown(engine)!r} is not local or ray", param_hint="--engine")
    if engine == "local" and (ray_address or actors or gpus_per_actor):
        raise typer.BadParameter("needs --engine ray", param_hint="--ray-address/--actors/--gpus")


def batch_on_ray(
    folder: str,
    output_dir: str | None,
    force: bool,
    coding: Coding,
    workers: Workers,
    quiet: bool,
) -> NoReturn:
    """The batch coded by Ray workers; exits as `show_batch` does."""
    from ..distributed import batch as ray_batch

    started = time.monotonic()
    run = ray_batch(folder, output_dir=output_dir, force=force, coding=coding, workers=workers)
    show_batch(run.plan, run.results, quiet, started)


def batch_here(
    folder: str,
    output_dir: str | None,
    force: bool,
    coding: Coding,
    quiet: bool,
    model_options: tuple[Path | None, str, str, int | None],
) -> NoReturn:
    """The batch coded in this process, the model loaded only if there is work; exits
    as `show_batch` does. `model_options`: model, device, precision, threads."""
    from ..batch import plan_batch
    from ..files import code_files

    plan = plan_batch(
        folder,
        decode=coding.decode,
        output_dir=output_dir,
        format_name=coding.format_name or FORMATS[0],
        force=force,
    )
    runs: Iterator[FileResult] = iter(())
    started = time.monotonic()
    if plan.pairs:
        codec = load_codec(*model_options, quiet)
        started = time.monotonic()
        runs = code_files(codec, plan.pairs, coding)
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
