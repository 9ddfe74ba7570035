"""The `m2l` command: a thin layer of options, progress and messages over the Python API.

The API is imported inside the commands that use it, so `--help`, `--version` and
`info` start without torch. Errors are one escaped line on stderr: exit 1 for a
failure, 2 for a usage error (`__main__` adds 130 for Ctrl-C, 143 for SIGTERM).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from .._version import __version__
from ..display import error, note, say, status, written_line
from ..errors import M2LError
from ..stdio import abandon_stdout, flush_stdout, print_text
from ..text import shown
from ..weights_header import MODEL_VARIABLE, check_file, find_model

if TYPE_CHECKING:
    from ..codec import Codec
    from ..files import FileResult

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
        "--sigma-cond",
        min=0.0,
        max=80.0,
        metavar="X",
        help="Noise on the previous chunk (more: softer chunk ticks, duller top octave).",
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
    from ..container_format import metadata_problem

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


def check_model(model: Path | None) -> None:
    """A missing or broken model file is reported at once, not after torch loads."""
    check_file(find_model(model))


def check_runtime(device: str, precision: str | None = None) -> None:
    """A bad --device or --precision is a usage error, before any work starts."""
    from ..runtime import resolve_device, resolve_precision

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
        from ..codec import Codec
        from ..runtime import set_threads

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
