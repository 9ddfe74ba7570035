"""Audio in and out: reading any libsndfile format in blocks, resampling as a stream
(soxr), and writing WAV or FLAC. Arrays are [channels, samples] float32."""

from __future__ import annotations

import io
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soundfile
import soxr

from .errors import AudioError

OUTPUT_FORMATS = {".wav": "WAV", ".flac": "FLAC"}
DEFAULT_SUBTYPE = {"WAV": "PCM_16", "FLAC": "PCM_16"}
BLOCK_FRAMES = 1 << 16


class AudioSource:
    """An audio file (or stdin, read whole first: pipes cannot seek) read in blocks."""

    def __init__(self, source: str | Path | BinaryIO, name: str | None = None) -> None:
        self.name = name or ("<stdin>" if source == "-" else str(source))
        if source == "-":
            source = io.BytesIO(sys.stdin.buffer.read())
        if isinstance(source, (str, Path)):
            path = Path(source)
            if not path.exists():
                raise AudioError(f"{self.name}: no such file")
            if path.is_dir():
                raise AudioError(f"{self.name}: is a directory")
            if path.stat().st_size == 0:
                raise AudioError(f"{self.name}: empty file")
        elif isinstance(source, io.BytesIO) and not source.getbuffer().nbytes:
            raise AudioError(f"{self.name}: empty input")
        try:
            self.file = soundfile.SoundFile(source)
        except (soundfile.LibsndfileError, RuntimeError, TypeError) as error:
            raise AudioError(f"{self.name}: not a readable audio file ({_reason(error)})") from None
        self.sample_rate: int = self.file.samplerate
        self.channels: int = self.file.channels
        self.frames: int = max(self.file.frames, 0)

    def blocks(self, frames: int = BLOCK_FRAMES) -> Iterator[np.ndarray]:
        """Yields [channels, n] float32 blocks until the end of the file."""
        try:
            while True:
                block = self.file.read(frames, dtype="float32", always_2d=True)
                if not len(block):
                    return
                yield np.ascontiguousarray(block.T)
        except (soundfile.LibsndfileError, RuntimeError) as error:
            raise AudioError(f"{self.name}: cannot decode audio ({_reason(error)})") from None

    def close(self) -> None:
        self.file.close()


def _reason(error: Exception) -> str:
    text = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
    return text.split(": ", 1)[-1] if text.startswith("Error opening") else text


class Resampler:
    """Streaming resampler between two rates; a no-op when they are equal."""

    def __init__(self, input_rate: int, output_rate: int, channels: int) -> None:
        self.identity = input_rate == output_rate
        if not self.identity:
            self.stream = soxr.ResampleStream(
                input_rate, output_rate, channels, dtype="float32", quality="HQ"
            )

    def __call__(self, block: np.ndarray, last: bool = False) -> np.ndarray:
        """[channels, n] -> [channels, m]; `last` flushes what the filter still holds."""
        if self.identity:
            return block
        resampled = self.stream.resample_chunk(np.ascontiguousarray(block.T), last=last)
        return np.ascontiguousarray(resampled.T)


def resample(waveform: np.ndarray, input_rate: int, output_rate: int) -> np.ndarray:
    """Whole-array resampling, [channels, n] -> [channels, m]."""
    if input_rate == output_rate:
        return waveform
    return np.ascontiguousarray(soxr.resample(waveform.T, input_rate, output_rate, "HQ").T)


def output_format(path: str | Path, format_name: str | None = None) -> str:
    """'WAV' or 'FLAC', from `format_name` or else from the file extension."""
    if format_name:
        if format_name.upper() not in OUTPUT_FORMATS.values():
            raise AudioError(f"unknown output format {format_name!r}; choose wav or flac")
        return format_name.upper()
    suffix = Path(path).suffix.lower()
    if suffix not in OUTPUT_FORMATS:
        raise AudioError(
            f"{path}: cannot tell the output format from the extension; use .wav or .flac"
        )
    return OUTPUT_FORMATS[suffix]


class AudioSink:
    """Writes [channels, n] blocks to a WAV or FLAC file; integer subtypes are clipped."""

    def __init__(
        self,
        target: str | Path | BinaryIO,
        sample_rate: int,
        channels: int,
        format_name: str,
        subtype: str | None = None,
    ) -> None:
        subtype = (subtype or DEFAULT_SUBTYPE[format_name]).upper()
        if not soundfile.check_format(format_name, subtype):
            raise AudioError(f"subtype {subtype} is not available for {format_name}")
        self.clip = not subtype.startswith(("FLOAT", "DOUBLE"))
        self.file = soundfile.SoundFile(
            target,
            "w",
            samplerate=sample_rate,
            channels=channels,
            format=format_name,
            subtype=subtype,
        )

    def write(self, block: np.ndarray) -> None:
        if self.clip:
            block = np.clip(block, -1.0, 1.0)
        try:
            self.file.write(block.T)
        except (soundfile.LibsndfileError, RuntimeError) as error:
            raise AudioError(f"{self.file.name}: cannot write audio ({_reason(error)})") from None

    def close(self) -> None:
        self.file.close()
