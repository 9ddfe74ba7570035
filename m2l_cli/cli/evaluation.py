"""`m2l eval`: scores of decoded audio against its input, as tables or JSON."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ..defaults import DEFAULT_SIGMA_COND
from ..display import note, table, terminal_width
from ..paths import check_output
from ..stdio import print_text
from .common import (
    DeviceOption,
    ForceOption,
    ModelOption,
    PrecisionOption,
    QuietOption,
    SeedOption,
    SigmaOption,
    ThreadsOption,
    app,
    check_model,
    check_runtime,
    load_codec,
)

if TYPE_CHECKING:
    from ..evaluation import Report


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
    if len(paths) not in (1, 2):
        raise typer.BadParameter("give REF_DIR TEST_DIR, or one folder with --model")
    if len(paths) == 1:
        check_model(model)
        check_runtime(device, precision)
    if output:
        check_output(str(output), force)
    from ..evaluation import compare_folders, evaluate_codec

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
    from ..evaluation.report import DIAGNOSTIC_COLUMNS, DIAGNOSTICS_TITLE, SCORE_COLUMNS

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
    from ..atomic import AtomicOutput

    with AtomicOutput(output) as temporary:
        temporary.write_text(text + "\n", encoding="utf-8")
