"""`m2l encode`, `decode` and `info`: files to containers, containers to files, and what
a container holds."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Annotated

import typer

from ..defaults import DEFAULT_BATCH_SIZE, DEFAULT_SIGMA_COND
from ..display import Bar, error, progress_bar
from ..errors import M2LError
from ..paths import STDIO, check_output, output_pairs
from ..stdio import print_text, stdin
from ..text import shown
from .common import (
    BatchOption,
    DeviceOption,
    DurationOption,
    ForceOption,
    FormatOption,
    MetaOption,
    ModelOption,
    PrecisionOption,
    QuietOption,
    RateOption,
    SeedOption,
    SigmaOption,
    StartOption,
    SubtypeOption,
    ThreadsOption,
    app,
    check_model,
    check_runtime,
    finish,
    load_codec,
    parse_metadata,
)

if TYPE_CHECKING:
    from ..codec import Codec
    from ..files import FileResult


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
    from ..container_format import SUFFIX

    pairs = output_pairs(sources, output, SUFFIX)
    metadata = parse_metadata(meta)
    for _, target in pairs:
        check_output(target, force, sources)
    from ..audio import audio_info

    single = sources[0] if len(sources) == 1 else None
    info = audio_info(single) if single and single != STDIO else None  # fails before torch
    check_model(model)
    check_runtime(device, precision)
    from ..files import encode_files, encode_progress_total

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
    from ..container_format import read_header

    pairs = output_pairs(sources, output, f".{format_name or 'wav'}")
    for _, target in pairs:
        check_output(target, force, sources)
    single = sources[0] if len(sources) == 1 else None
    header = read_header(single)[0] if single and single != STDIO else None  # fails before torch
    check_model(model)
    check_runtime(device, precision)
    from ..files import decode_progress_total

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
    from ..files import decode_files
    from ..ranges import TimeRange

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
    from ..container_format import verify

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
