"""Files on disk: output naming, atomic writes, and the file-to-file encode/decode jobs
that the CLI (and any script) runs. An output is written to a temporary file beside it
and renamed when complete, so an error or Ctrl-C never leaves a partial file."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import soundfile

from .audio import AudioSink, AudioSource, output_format
from .codec import Codec
from .container import Latents
from .decoding import DecodeJob
from .encoding import EncodeJob
from .errors import AudioError, M2LError

STDIO = "-"
AUDIO_SUFFIXES = {
    ".wav",
    ".flac",
    ".ogg",
    ".oga",
    ".opus",
    ".mp3",
    ".aiff",
    ".aif",
    ".aifc",
    ".w64",
    ".caf",
}
CONTAINER_SUFFIX = ".m2l"


def default_output(source: str, suffix: str) -> str:
    """IN beside itself with the other extension; stdin goes to stdout."""
    return STDIO if source == STDIO else str(Path(source).with_suffix(suffix))


def check_output(target: str, force: bool) -> None:
    """Refuses to overwrite an existing output without `force`."""
    if target == STDIO:
        return
    path = Path(target)
    if path.is_dir():
        raise M2LError(f"{target}: is a directory")
    if path.exists() and not force:
        raise M2LError(f"{target}: already exists (use --force to overwrite)")
    if not path.parent.exists():
        raise M2LError(f"{target}: folder {path.parent} does not exist")


class AtomicOutput:
    """A temporary file beside `target` that becomes `target` only on `commit`.

    Used as a context manager it commits on success and discards on any error
    (Ctrl-C included). `-` means stdout: the data are copied there on commit.
    """

    def __init__(self, target: str) -> None:
        self.target = target
        folder = Path(tempfile.gettempdir()) if target == STDIO else Path(target).parent
        handle, name = tempfile.mkstemp(prefix=".m2l-", suffix=".part", dir=folder)
        os.close(handle)
        self.path = Path(name)
        umask = os.umask(0)
        os.umask(umask)
        self.path.chmod(0o666 & ~umask)  # mkstemp makes 0600; outputs get the usual mode

    def commit(self) -> None:
        if self.target == STDIO:
            with self.path.open("rb") as stream:
                shutil.copyfileobj(stream, sys.stdout.buffer)
            sys.stdout.buffer.flush()
            self.discard()
        else:
            os.replace(self.path, self.target)

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> Path:
        return self.path

    def __exit__(self, kind: type | None, *_: object) -> None:
        if kind is None:
            self.commit()
        else:
            self.discard()


@dataclass
class FileResult:
    """How one file went: `error` is None on success."""

    source: str
    target: str
    seconds: float = 0.0
    error: str | None = None


def encode_files(
    codec: Codec,
    pairs: list[tuple[str, str]],
    metadata: dict[str, str] | None = None,
    batch_size: int = 16,
    progress: Callable[[float], None] | None = None,
) -> Iterator[FileResult]:
    """Encodes (input, output) pairs, batching chunks across files; one result per pair."""
    targets = dict(pairs)
    jobs = (EncodeJob(lambda s=s: AudioSource(s), s, dict(metadata or {})) for s, _ in pairs)
    for job, result in codec.encode_jobs(jobs, batch_size, progress):
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
    pairs: list[tuple[str, str]],
    sigma_cond: float = 0.4,
    seed: int = 0,
    sample_rate: int | None = None,
    format_name: str | None = None,
    subtype: str | None = None,
    batch_size: int = 16,
    progress: Callable[[int], None] | None = None,
) -> Iterator[FileResult]:
    """Decodes (container, output) pairs, stepping many files together."""
    failures: list[FileResult] = []
    open_targets: dict[int, DecodeTarget] = {}

    def jobs() -> Iterator[DecodeJob]:
        for source, target in pairs:
            try:
                latents = load_latents(codec, source)
                opened = _open_target(latents, source, target, sample_rate, format_name, subtype)
            except (M2LError, OSError) as error:
                failures.append(FileResult(source, target, error=_message(source, error)))
                continue
            job = DecodeJob(latents, opened.sink.write, source, sample_rate, seed)
            open_targets[id(job)] = opened
            yield job

    try:
        for job, error in codec.decode_jobs(jobs(), sigma_cond, batch_size, progress):
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
    sample_rate: int | None,
    format_name: str | None,
    subtype: str | None,
) -> DecodeTarget:
    name = "WAV" if target == STDIO and not format_name else output_format(target, format_name)
    output = AtomicOutput(target)
    rate = sample_rate or latents.original_sample_rate
    try:
        sink = AudioSink(output.path, rate, latents.channels, name.upper(), subtype)
    except (M2LError, soundfile.LibsndfileError, ValueError) as error:
        output.discard()
        raise AudioError(_message(target, error)) from None
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
