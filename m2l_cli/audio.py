"""Audio files, the only module that opens them: reading any libsndfile format (whole,
in blocks or an excerpt), file info, writing WAV or FLAC, the one list of audio
suffixes and the search of a folder for audio files. Arrays are [channels, samples]
float32, except `read_excerpt`, which returns soundfile's [frames, channels]."""

from __future__ import annotations

import io
import stat
import struct
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soundfile

from .errors import AudioError
from .paths import STDIO, find_files
from .stdio import read_up_to, stdin

AUDIO_SUFFIXES = frozenset(
    {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif", ".aifc", ".w64", ".caf"}
)
UNREADABLE_AUDIO_SUFFIXES = frozenset(
    {".m4a", ".mp4", ".aac", ".alac", ".wma", ".ape", ".wv", ".mka", ".webm", ".ac3", ".dts"}
    | {".amr", ".mpc", ".tta", ".dsf", ".dff", ".ra"}
)
"""Audio formats libsndfile cannot read: a folder run names them instead of passing
over them in silence."""
BLOCK_FRAMES = 1 << 16
DEFAULT_SUBTYPE = "PCM_16"
WIDE_SUBTYPES = ("FLOAT", "DOUBLE", "PCM_32")
"""Sample formats FLAC cannot hold: their sound is restored in PCM_24 there."""
PROBE_BYTES = 1 << 20
STDIN_LIMIT = 8 << 30
"""Audio read from stdin is kept in an unnamed temporary file (pipes cannot seek),
at most this many bytes of it: a file argument has no limit."""
SOUNDFILE_ERRORS = (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError)
STREAMED_SAMPLE_BYTES = {
    "PCM_U8": 1, "ULAW": 1, "ALAW": 1, "PCM_16": 2, "PCM_24": 3, "PCM_32": 4, "FLOAT": 4,
    "DOUBLE": 8,
}  # fmt: skip
"""The WAV sample formats `WavStream` writes: a fixed number of bytes per sample."""
MAX_WAV_DATA_BYTES = (1 << 32) - (1 << 16)
"""What a WAV file's 32-bit sizes can hold, less room for the header."""


class OutputFormat(str, Enum):
    """The formats decoded audio is written in; the value is the file extension."""

    WAV = "wav"
    FLAC = "flac"

    @classmethod
    def parse(cls, name: str) -> OutputFormat:
        """The format called `name` (any case); AudioError for any other name."""
        try:
            return cls(name.lower())
        except ValueError:
            choices = " or ".join(item.value for item in cls)
            raise AudioError(f"unknown output format {name!r}; choose {choices}") from None

    @property
    def suffix(self) -> str:
        return f".{self.value}"


def output_format(path: str | Path, format_name: str | None = None) -> OutputFormat:
    """The format `format_name` names, or else the one `path`'s extension names (WAV
    for stdout)."""
    if format_name:
        return OutputFormat.parse(format_name)
    if path == STDIO:
        return OutputFormat.WAV
    suffix = Path(path).suffix.lower()
    for item in OutputFormat:
        if suffix == item.suffix:
            return item
    raise AudioError(f"{path}: cannot tell the output format from the extension; use .wav or .flac")


@dataclass(frozen=True)
class AudioInfo:
    """What an audio file's header says."""

    frames: int
    sample_rate: int
    channels: int

    @property
    def duration(self) -> float:
        """Seconds."""
        return self.frames / self.sample_rate


def find_audio_files(folder: str | Path) -> list[Path]:
    """Audio files (by suffix) under `folder`, recursively and sorted, without our own
    temporary files."""
    return find_files(folder, AUDIO_SUFFIXES)


def audio_info(path: str | Path) -> AudioInfo:
    """The file's length, rate and channel count, from its header."""
    _check_file(Path(path), str(path))
    try:
        info = soundfile.info(str(path))
    except SOUNDFILE_ERRORS as error:
        raise AudioError(f"{path}: not a readable audio file ({_reason(error)})") from None
    return AudioInfo(max(info.frames, 0), info.samplerate, info.channels)


def read_excerpt(path: str | Path, start: int = 0, frames: int = -1) -> np.ndarray:
    """`frames` frames (-1: to the end) from frame `start`, [frames, channels] float32;
    fewer where the file ends sooner."""
    _check_file(Path(path), str(path))
    try:
        audio, _ = soundfile.read(
            str(path), frames=frames, start=start, dtype="float32", always_2d=True
        )
    except SOUNDFILE_ERRORS as error:
        raise AudioError(f"{path}: cannot read audio ({_reason(error)})") from None
    return audio


class AudioSource:
    """An audio file, or stdin, read in blocks. Close it when done, or use it as a
    context manager. `sample_format` is the file's libsndfile subtype (PCM_16, ...).
    """

    def __init__(self, source: str | Path | BinaryIO, name: str | None = None) -> None:
        self.name = name or ("<stdin>" if source == STDIO else str(source))
        if source == STDIO:
            source = _buffer_stdin(self.name)
        if isinstance(source, (str, Path)):
            _check_file(Path(source), self.name)
        elif isinstance(source, io.BytesIO) and not source.getbuffer().nbytes:
            raise AudioError(f"{self.name}: empty input")
        try:
            self.file = soundfile.SoundFile(source)
        except SOUNDFILE_ERRORS as error:
            raise AudioError(f"{self.name}: not a readable audio file ({_reason(error)})") from None
        self.sample_rate: int = self.file.samplerate
        self.channels: int = self.file.channels
        self.frames: int = max(self.file.frames, 0)
        self.sample_format: str = self.file.subtype or ""

    def blocks(self, frames: int = BLOCK_FRAMES) -> Iterator[np.ndarray]:
        """Yields [channels, n] float32 blocks until the end of the file."""
        try:
            while True:
                block = self.file.read(frames, dtype="float32", always_2d=True)
                if not len(block):
                    return
                yield np.ascontiguousarray(block.T)
        except SOUNDFILE_ERRORS as error:
            raise AudioError(f"{self.name}: cannot decode audio ({_reason(error)})") from None

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> AudioSource:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class AudioSink:
    """Writes [channels, n] blocks to a WAV or FLAC file; integer subtypes are clipped.
    Errors name the file `name` (default: the target)."""

    def __init__(
        self,
        target: str | Path | BinaryIO,
        *,
        sample_rate: int,
        channels: int,
        file_format: OutputFormat,
        subtype: str | None = None,
        name: str | None = None,
    ) -> None:
        self.name = name or str(target)
        subtype = (subtype or DEFAULT_SUBTYPE).upper()
        if not soundfile.check_format(file_format.name, subtype):
            raise AudioError(
                f"{self.name}: subtype {subtype} is not available for {file_format.name}"
            )
        self.clip = clips(subtype)
        try:
            self.file = soundfile.SoundFile(
                target,
                "w",
                samplerate=sample_rate,
                channels=channels,
                format=file_format.name,
                subtype=subtype,
            )
        except SOUNDFILE_ERRORS as error:
            raise AudioError(f"{self.name}: cannot write audio ({_reason(error)})") from None

    def write(self, block: np.ndarray) -> None:
        if self.clip:
            block = np.clip(block, -1.0, 1.0)
        try:
            self.file.write(block.T)
        except SOUNDFILE_ERRORS as error:
            raise AudioError(f"{self.name}: cannot write audio ({_reason(error)})") from None

    def close(self) -> None:
        self.file.close()


def clips(subtype: str) -> bool:
    """True for the sample formats that hold only -1..1 (all but float): samples are
    clipped there, not wrapped around."""
    return not subtype.upper().startswith(("FLOAT", "DOUBLE"))


def streams_as_wav(file_format: OutputFormat, subtype: str | None) -> bool:
    """True when `WavStream` can write this format and sample format."""
    return file_format is OutputFormat.WAV and (subtype or DEFAULT_SUBTYPE).upper() in (
        STREAMED_SAMPLE_BYTES
    )


class WavStream:
    """A WAV file written to a stream that cannot seek (stdout) as its samples come:
    the header first, with the sizes of all `frames` frames already in it, then each
    block at once. Samples are converted by libsndfile, as `AudioSink` converts them."""

    def __init__(
        self,
        write: Callable[[bytes], None],
        *,
        sample_rate: int,
        channels: int,
        frames: int,
        subtype: str | None = None,
        name: str = "<stdout>",
    ) -> None:
        self.subtype = (subtype or DEFAULT_SUBTYPE).upper()
        self.channels, self.sample_rate, self.name = channels, sample_rate, name
        self.data_bytes = frames * channels * STREAMED_SAMPLE_BYTES[self.subtype]
        if self.data_bytes > MAX_WAV_DATA_BYTES:
            raise AudioError(f"{name}: too long for a WAV file; decode to a FLAC file instead")
        self.send = write
        header = self._header(frames)
        self.send(header)
        self.size = len(header)

    def _header(self, frames: int) -> bytes:
        """libsndfile's header for this format, with the sizes filled in."""
        empty = io.BytesIO()
        with soundfile.SoundFile(
            empty, "w", self.sample_rate, self.channels, self.subtype, format="WAV"
        ):
            pass
        header = bytearray(empty.getvalue())
        padding = self.data_bytes % 2
        struct.pack_into("<I", header, 4, len(header) - 8 + self.data_bytes + padding)
        offset = 12
        while offset + 8 <= len(header):
            kind, size = (
                header[offset : offset + 4],
                struct.unpack_from("<I", header, offset + 4)[0],
            )
            if kind == b"fact":
                struct.pack_into("<I", header, offset + 8, frames)
            if kind == b"data":
                struct.pack_into("<I", header, offset + 4, self.data_bytes)
                return bytes(header)
            offset += 8 + size + size % 2
        raise AudioError(f"{self.name}: cannot write a {self.subtype} WAV header")

    def write(self, block: np.ndarray) -> None:
        """Writes [channels, n] float32 samples."""
        if clips(self.subtype):
            block = np.clip(block, -1.0, 1.0)
        encoded = io.BytesIO()
        with soundfile.SoundFile(
            encoded, "w", self.sample_rate, self.channels, self.subtype, format="RAW"
        ) as raw:
            raw.write(np.ascontiguousarray(block.T))
        self.send(encoded.getvalue())
        self.size += encoded.tell()

    def close(self) -> None:
        """Ends the data chunk (a pad byte after an odd number of bytes)."""
        if self.data_bytes % 2:
            self.send(b"\0")
            self.size += 1


def _check_file(path: Path, name: str) -> None:
    """The one-line errors for a path that cannot hold audio."""
    try:
        status = path.stat()
    except FileNotFoundError:
        raise AudioError(f"{name}: no such file") from None
    except OSError as error:
        raise AudioError(f"{name}: cannot read ({error.strerror or error})") from None
    if stat.S_ISDIR(status.st_mode):
        raise AudioError(f"{name}: is a directory")
    if not stat.S_ISREG(status.st_mode):
        raise AudioError(f"{name}: not a regular file (give a file, or - for stdin)")
    if status.st_size == 0:
        raise AudioError(f"{name}: empty file")


def _buffer_stdin(name: str) -> BinaryIO:
    """stdin, made seekable: in memory when short; else, once its first megabyte reads
    as audio (so an endless stream of noise fails at once), in an unnamed temporary
    file that vanishes with the process, up to STDIN_LIMIT bytes."""
    stream = stdin()
    probe = read_up_to(stream, PROBE_BYTES)
    if len(probe) < PROBE_BYTES:
        return io.BytesIO(probe)
    try:
        soundfile.info(io.BytesIO(probe))
    except SOUNDFILE_ERRORS as error:
        raise AudioError(f"{name}: not a readable audio file ({_reason(error)})") from None
    spool = tempfile.TemporaryFile()  # noqa: SIM115 (the AudioSource owns it)
    try:
        spool.write(probe)
        while block := stream.read(PROBE_BYTES):
            if spool.tell() + len(block) > STDIN_LIMIT:
                raise AudioError(f"{name}: more than {STDIN_LIMIT >> 30} GiB; give a file")
            spool.write(block)
        spool.seek(0)
    except OSError as error:
        spool.close()
        raise AudioError(f"{name}: cannot buffer stdin ({error.strerror or error})") from None
    except BaseException:
        spool.close()
        raise
    return spool


def restored_subtype(sample_format: str, file_format: OutputFormat) -> str:
    """The sample format to decode to: the source's (`sample_format`) when the output
    format holds it, PCM_24 for a wider one in FLAC, else the default PCM_16."""
    if sample_format and soundfile.check_format(file_format.name, sample_format):
        return sample_format
    if sample_format in WIDE_SUBTYPES and soundfile.check_format(file_format.name, "PCM_24"):
        return "PCM_24"
    return DEFAULT_SUBTYPE


def _reason(error: Exception) -> str:
    text = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
    return text.split(": ", 1)[-1] if text.startswith("Error opening") else text
