"""File-to-file encode and decode jobs, which the CLI (and any script) runs: many files
batched together, every output written atomically, one result per file."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from .atomic import AtomicOutput
from .audio import (
    AudioSink,
    AudioSource,
    OutputFormat,
    WavStream,
    audio_info,
    output_format,
    restored_subtype,
    streams_as_wav,
)
from .codec import Codec
from .container import Latents, read_header
from .container_stream import StreamedLatents
from .decoding import DecodeJob, progress_total
from .defaults import DEFAULT_BATCH_SIZE, DEFAULT_SIGMA_COND
from .encoding import EncodeJob
from .errors import M2LError
from .paths import STDIO
from .ranges import TimeRange, output_span, range_job
from .stdio import stdin, write_stdout

Pairs = list[tuple[str, str]]


@dataclass
class FileResult:
    """How one file went: `error` is None on success; else the audio's length in
    seconds, its channels and the bytes written."""

    source: str
    target: str
    seconds: float = 0.0
    error: str | None = None
    channels: int = 0
    size: int = 0


@dataclass(frozen=True)
class Coding:
    """What to do with each file of a batch: encode, or decode with these options."""

    decode: bool = False
    batch_size: int = DEFAULT_BATCH_SIZE
    metadata: dict[str, str] = field(default_factory=dict)
    sigma_cond: float = DEFAULT_SIGMA_COND
    seed: int = 0
    sample_rate: int | None = None
    format_name: str | None = None
    subtype: str | None = None


def code_files(codec: Codec, pairs: Pairs, coding: Coding) -> Iterator[FileResult]:
    """`encode_files` or `decode_files` on (source, target) pairs, as `coding` says."""
    if not coding.decode:
        return encode_files(codec, pairs, metadata=coding.metadata, batch_size=coding.batch_size)
    return decode_files(
        codec,
        pairs,
        sigma_cond=coding.sigma_cond,
        seed=coding.seed,
        sample_rate=coding.sample_rate,
        format_name=coding.format_name,
        subtype=coding.subtype,
        batch_size=coding.batch_size,
    )


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
    """Encodes (input, output) pairs, batching chunks across files; one result per pair.
    Each container records its source's sample format, which decoding restores."""
    targets = dict(pairs)
    opened = {source: SourceOpener(source) for source, _ in pairs}
    jobs = (EncodeJob(opened[s], s, dict(metadata or {})) for s, _ in pairs)
    for job, result in codec.encode_jobs(jobs, batch_size=batch_size, progress=progress):
        target = targets[job.name]
        if isinstance(result, M2LError):
            yield FileResult(job.name, target, error=str(result))
            continue
        latents = replace(result, sample_format=opened[job.name].sample_format)
        try:
            size = write_container(latents, target)
        except (M2LError, OSError) as error:
            yield FileResult(job.name, target, error=_message(target, error))
            continue
        yield FileResult(job.name, target, latents.duration, None, latents.channels, size)


@dataclass
class SourceOpener:
    """Opens an input when the encoder's turn comes, and remembers its sample format."""

    source: str
    sample_format: str = ""

    def __call__(self) -> AudioSource:
        opened = AudioSource(self.source)
        self.sample_format = opened.sample_format
        return opened


def write_container(latents: Latents, target: str) -> int:
    """Writes the container atomically; returns its size in bytes."""
    with AtomicOutput(target) as temporary:
        latents.save(temporary)
        return temporary.stat().st_size


@dataclass(eq=False)
class DecodeTarget:
    """A decode output: its result, and once opened, the temporary file being written
    and its sink. Registered before it is opened, so an interrupt leaves nothing.
    WAV for stdout is streamed instead: written as it is decoded, with no file."""

    result: FileResult
    output: AtomicOutput | None = None
    sink: AudioSink | WavStream | None = None

    def open(
        self, channels: int, file_format: OutputFormat, subtype: str | None, rate: int, frames: int
    ) -> AudioSink | WavStream:
        """Creates the temporary file and the sink writing into it (or the stream)."""
        target = self.result.target
        if target == STDIO and streams_as_wav(file_format, subtype):
            self.sink = WavStream(
                write_stdout, sample_rate=rate, channels=channels, frames=frames, subtype=subtype
            )
            return self.sink
        self.output = AtomicOutput(target)
        self.sink = AudioSink(
            self.output.path,
            sample_rate=rate,
            channels=channels,
            file_format=file_format,
            subtype=subtype,
            name=target,
        )
        return self.sink

    def finish(self, error: M2LError | None) -> FileResult:
        """Closes the file; it becomes the target if the decode succeeded."""
        if error is not None:
            self.result.error = str(error)
            self.abandon()
            return self.result
        assert self.sink is not None
        self.sink.close()
        if isinstance(self.sink, WavStream):
            self.result.size = self.sink.size
            return self.result
        assert self.output is not None
        self.result.size = self.output.path.stat().st_size
        self.output.commit()
        return self.result

    def abandon(self) -> None:
        """Closes and deletes whatever was opened; the target stays as it was."""
        if self.sink is not None:
            self.sink.close()
        if self.output is not None:
            self.output.discard()


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
    time_range: TimeRange | None = None,
) -> Iterator[FileResult]:
    """Decodes (container, output) pairs, stepping many files together; only
    `time_range` of each, if given (`ranges`). A container on stdin is decoded as it
    arrives, and WAV for stdout is written as it is decoded."""
    failures: list[FileResult] = []
    unfinished: list[DecodeTarget] = []
    by_job: dict[int, DecodeTarget] = {}

    def jobs() -> Iterator[DecodeJob]:
        for source, target in pairs:
            opened = DecodeTarget(FileResult(source, target))
            unfinished.append(opened)
            try:
                latents = load_latents(codec, source, streamed=time_range is None)
                file_format = output_format(target, format_name)
                rate = sample_rate or latents.original_sample_rate
                first, stop = output_span(latents, source, time_range or TimeRange(), rate)
                chosen = subtype or restored_subtype(latents.sample_format, file_format)
                sink = opened.open(latents.channels, file_format, chosen, rate, stop - first)
            except (M2LError, OSError) as error:
                opened.abandon()
                unfinished.remove(opened)
                failures.append(FileResult(source, target, error=_message(source, error)))
                continue
            opened.result.seconds = (stop - first) / rate
            opened.result.channels = latents.channels
            job = DecodeJob(latents, sink.write, source, sample_rate, seed)
            if time_range is not None:
                job = range_job(job, time_range, codec.config)
            by_job[id(job)] = opened
            yield job

    runs = codec.decode_jobs(
        jobs(), sigma_cond=sigma_cond, batch_size=batch_size, progress=progress
    )
    try:
        for job, error in runs:
            yield from _drain(failures)
            opened = by_job.pop(id(job))
            result = opened.finish(error)
            unfinished.remove(opened)
            yield result
        yield from _drain(failures)
    finally:  # an error or Ctrl-C: leave no partial output behind
        for opened in unfinished:
            opened.abandon()


def load_latents(codec: Codec, source: str, streamed: bool = False) -> Latents | StreamedLatents:
    """The container at `source` (or stdin), refused unless it is the codec's model's
    and fits its shapes; checked before its payload is read. With `streamed`, stdin is
    read as the decoder goes (its checksum checked at the end); files are read whole."""
    if source == STDIO and streamed:
        return StreamedLatents.open(stdin(), codec.model_id, codec.config)
    stream = stdin() if source == STDIO else Path(source)
    return Latents.load(stream, expected_model_id=codec.model_id, model=codec.config)


def _drain(failures: list[FileResult]) -> Iterator[FileResult]:
    while failures:
        yield failures.pop(0)


def _message(name: str, error: Exception) -> str:
    """The error's one line, starting with the file it is about."""
    text = str(error)
    if isinstance(error, OSError) and error.strerror:
        text = error.strerror
    if isinstance(error, M2LError) or text.startswith(name):
        return text
    return f"{'<stdin>' if name == STDIO else name}: {text}"
