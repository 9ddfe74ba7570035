"""File-to-file encode and decode jobs, which the CLI (and any script) runs: many files
batched together, every output written atomically, one result per file."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial

from .atomic import AtomicOutput
from .audio import AudioSink, AudioSource, audio_info, output_format
from .codec import Codec
from .container import Latents, read_header
from .decoding import DecodeJob, progress_total
from .defaults import DEFAULT_BATCH_SIZE, DEFAULT_SIGMA_COND
from .encoding import EncodeJob
from .errors import M2LError
from .paths import STDIO

Pairs = list[tuple[str, str]]


@dataclass
class FileResult:
    """How one file went: `error` is None on success."""

    source: str
    target: str
    seconds: float = 0.0
    error: str | None = None


def encode_progress_total(codec: Codec, source: str) -> int | None:
    """The progress units `encode_files` reports for `source`; None when its length
    cannot be told in advance (stdin, an unreadable file)."""
    if source == STDIO:
        return None
    try:
        info = audio_info(source)
    except M2LError:
        return None
    return codec.encode_progress_total(info.frames, info.sample_rate, info.channels)


def decode_progress_total(source: str) -> int | None:
    """The progress units `decode_files` reports for `source`; None when its header
    cannot be read in advance (stdin, a broken container)."""
    if source == STDIO:
        return None
    try:
        header, _ = read_header(source)
    except M2LError:
        return None
    return progress_total(header["channels"], header["chunks"])


def encode_files(
    codec: Codec,
    pairs: Pairs,
    *,
    metadata: dict[str, str] | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: Callable[[int], None] | None = None,
) -> Iterator[FileResult]:
    """Encodes (input, output) pairs, batching chunks across files; one result per pair."""
    targets = dict(pairs)
    jobs = (EncodeJob(partial(AudioSource, s), s, dict(metadata or {})) for s, _ in pairs)
    for job, result in codec.encode_jobs(jobs, batch_size=batch_size, progress=progress):
        target = targets[job.name]
        if isinstance(result, M2LError):
            yield FileResult(job.name, target, error=str(result))
            continue
        try:
            write_container(result, target)
        except (M2LError, OSError) as error:
            yield FileResult(job.name, target, error=_message(target, error))
            continue
        yield FileResult(job.name, target, seconds=result.duration)


def write_container(latents: Latents, target: str) -> None:
    with AtomicOutput(target) as temporary:
        latents.save(temporary)


@dataclass
class DecodeTarget:
    """An open decode output: the temporary file being written and its sink."""

    result: FileResult
    sink: AudioSink
    output: AtomicOutput


def decode_files(
    codec: Codec,
    pairs: Pairs,
    *,
    sigma_cond: float = DEFAULT_SIGMA_COND,
    seed: int = 0,
    sample_rate: int | None = None,
    format_name: str | None = None,
    subtype: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: Callable[[int], None] | None = None,
) -> Iterator[FileResult]:
    """Decodes (container, output) pairs, stepping many files together."""
    failures: list[FileResult] = []
    open_targets: dict[int, DecodeTarget] = {}

    def jobs() -> Iterator[DecodeJob]:
        for source, target in pairs:
            try:
                latents = load_latents(codec, source)
                opened = _open_target(latents, source, target, format_name, subtype, sample_rate)
            except (M2LError, OSError) as error:
                failures.append(FileResult(source, target, error=_message(source, error)))
                continue
            job = DecodeJob(latents, opened.sink.write, source, sample_rate, seed)
            open_targets[id(job)] = opened
            yield job

    runs = codec.decode_jobs(
        jobs(), sigma_cond=sigma_cond, batch_size=batch_size, progress=progress
    )
    try:
        for job, error in runs:
            yield from _drain(failures)
            yield _finish_target(open_targets.pop(id(job)), error)
        yield from _drain(failures)
    finally:  # interrupted: leave no partial output behind
        for opened in open_targets.values():
            opened.sink.close()
            opened.output.discard()


def load_latents(codec: Codec, source: str) -> Latents:
    stream = sys.stdin.buffer if source == STDIO else source
    return Latents.load(stream, expected_model_id=codec.model_id)


def _open_target(
    latents: Latents,
    source: str,
    target: str,
    format_name: str | None,
    subtype: str | None,
    sample_rate: int | None,
) -> DecodeTarget:
    file_format = output_format(target, format_name)
    output = AtomicOutput(target)
    try:
        sink = AudioSink(
            output.path,
            sample_rate=sample_rate or latents.original_sample_rate,
            channels=latents.channels,
            file_format=file_format,
            subtype=subtype,
            name=target,
        )
    except M2LError:
        output.discard()
        raise
    result = FileResult(source, target, seconds=latents.duration)
    return DecodeTarget(result, sink, output)


def _finish_target(opened: DecodeTarget, error: M2LError | None) -> FileResult:
    opened.sink.close()
    if error is not None:
        opened.output.discard()
        opened.result.error = str(error)
    else:
        opened.output.commit()
    return opened.result


def _drain(failures: list[FileResult]) -> Iterator[FileResult]:
    while failures:
        yield failures.pop(0)


def _message(name: str, error: Exception) -> str:
    text = str(error)
    if isinstance(error, OSError) and error.strerror:
        text = error.strerror
    return text if text.startswith(name) else f"{name}: {text}"
