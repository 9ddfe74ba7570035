"""The encode loop: audio streams -> chunks with STFT context -> batched encoder calls.

Chunks from many inputs share one batch, and every input is read block by block, so
memory stays flat however long (or however many) the inputs are.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch

from .config import ModelConfig
from .container import expected_chunks
from .errors import AudioError, M2LError
from .resampling import Resampler
from .spectral import SpectralTransform


class SampleSource(Protocol):
    """What the encoder reads: an AudioSource, or an array wrapped as one."""

    @property
    def name(self) -> str: ...

    @property
    def sample_rate(self) -> int: ...

    @property
    def channels(self) -> int: ...

    def blocks(self) -> Iterator[np.ndarray]: ...

    def close(self) -> None: ...


@dataclass(eq=False)
class ArraySource:
    """A waveform already in memory, [channels, samples]."""

    waveform: np.ndarray
    sample_rate: int
    name: str = "<array>"

    @property
    def channels(self) -> int:
        return self.waveform.shape[0]

    def blocks(self) -> Iterator[np.ndarray]:
        yield self.waveform

    def close(self) -> None:
        """Nothing to release."""


def check_finite(block: np.ndarray, name: str, offset: int, rate: int) -> None:
    """Refuses NaN or infinite samples in a [channels, n] block that starts `offset`
    samples in: the network would turn a handful of them into a whole file of noise."""
    finite = np.isfinite(block).all(axis=0)
    if not finite.all():
        first = (offset + int(np.argmin(finite))) / rate
        raise AudioError(
            f"{name}: NaN or infinite samples (the first at {first:.3f} s); "
            "audio must be finite numbers"
        )


class ChunkReader:
    """Cuts a source, resampled to the model rate, into chunks plus `context` samples of
    true neighbours on each side (zeros beyond the ends). Counts the samples it saw."""

    def __init__(self, source: SampleSource, model_rate: int, chunk: int, context: int) -> None:
        self.source, self.chunk, self.context = source, chunk, context
        self.resampler = Resampler(source.sample_rate, model_rate, source.channels)
        self.input_samples = 0
        self.model_samples = 0

    def _model_blocks(self) -> Iterator[np.ndarray]:
        for block in self.source.blocks():
            check_finite(block, self.source.name, self.input_samples, self.source.sample_rate)
            self.input_samples += block.shape[1]
            yield self.resampler(block)
        yield self.resampler(np.zeros((self.source.channels, 0), np.float32), last=True)

    def __iter__(self) -> Iterator[np.ndarray]:
        width = self.chunk + 2 * self.context
        buffer = np.zeros((self.source.channels, self.context), np.float32)
        for block in self._model_blocks():
            self.model_samples += block.shape[1]
            buffer = np.concatenate([buffer, block.astype(np.float32, copy=False)], axis=1)
            while buffer.shape[1] >= width:
                yield buffer[:, :width]
                buffer = buffer[:, self.chunk :]
        remaining = buffer.shape[1] - self.context
        while remaining > 0:
            padded = np.zeros((buffer.shape[0], width), np.float32)
            padded[:, : buffer.shape[1]] = buffer[:, :width]
            yield padded
            buffer, remaining = buffer[:, self.chunk :], remaining - self.chunk


@dataclass(eq=False)
class EncodeJob:
    """One input to encode. `open` is called when its turn comes (and may raise)."""

    open: Callable[[], SampleSource]
    name: str
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(eq=False)
class EncodedStream:
    """What an input gave: latents by chunk, and the sample counts the header needs."""

    job: EncodeJob
    source: SampleSource | None = None
    reader: ChunkReader | None = None
    latents: dict[tuple[int, int], np.ndarray] = field(default_factory=dict)  # (chunk, channel)
    outstanding: int = 0
    reading: bool = True
    error: M2LError | None = None

    def values(self) -> np.ndarray:
        """[channels, chunks, K, latent_dim] float32."""
        assert self.source is not None, "values of a stream that was never opened"
        channels = self.source.channels
        chunks = len(self.latents) // channels
        rows = [
            [self.latents[chunk, channel] for chunk in range(chunks)] for channel in range(channels)
        ]
        return np.array(rows, dtype=np.float32)


class BatchEncoder:
    """Collects (stream, chunk, channel) spectrograms and encodes them `batch_size` at a time."""

    def __init__(
        self,
        run: Callable[[torch.Tensor], torch.Tensor],
        batch_size: int,
        progress: Callable[[int], None] | None,
    ) -> None:
        self.run, self.batch_size, self.progress = run, batch_size, progress
        self.pending: list[tuple[EncodedStream, int, int, torch.Tensor]] = []

    def add(self, stream: EncodedStream, chunk_index: int, spectrogram: torch.Tensor) -> None:
        """Queue one chunk ([channels, 2, F, T]); encodes whenever a batch is full."""
        for channel in range(spectrogram.shape[0]):
            self.pending.append((stream, chunk_index, channel, spectrogram[channel]))
        stream.outstanding += spectrogram.shape[0]
        while len(self.pending) >= self.batch_size:
            self.flush(self.batch_size)

    def flush(self, count: int | None = None) -> None:
        batch, self.pending = self.pending[:count], self.pending[len(self.pending[:count]) :]
        if not batch:
            return
        latents = self.run(torch.stack([item[3] for item in batch])).float().cpu().numpy()
        for (stream, chunk_index, channel, _), values in zip(batch, latents, strict=True):
            if stream.error is not None:
                continue
            # A copy per (chunk, channel): small long-lived arrays allocated next to the
            # batch's big temporaries fragment the heap and make memory grow with length.
            stream.latents[chunk_index, channel] = values.copy()
            stream.outstanding -= 1
        if self.progress:
            self.progress(len(batch))

    def drop(self, stream: EncodedStream) -> None:
        self.pending = [item for item in self.pending if item[0] is not stream]


def progress_total(frames: int, sample_rate: int, channels: int, config: ModelConfig) -> int:
    """The progress units `encode_jobs` reports for an input of `frames` frames at
    `sample_rate`: one per chunk and channel (the count of chunks is estimated from the
    resampled length, so it may be off by one when the rates differ)."""
    model_frames = round(frames * config.sample_rate / sample_rate)
    return expected_chunks(model_frames, config.chunk_samples) * channels


def encode_jobs(
    jobs: Iterable[EncodeJob],
    *,
    config: ModelConfig,
    transform: SpectralTransform,
    encode: Callable[[torch.Tensor], torch.Tensor],
    batch_size: int,
    progress: Callable[[int], None] | None = None,
) -> Iterator[EncodedStream]:
    """Encodes every job, yielding each stream (finished or failed) as soon as it is done.
    `encode` maps spectrograms [n, 2, F, T] to latents; `progress` gets chunk-channels."""
    encoder = BatchEncoder(encode, batch_size, progress)
    streams: list[EncodedStream] = []
    for job in jobs:
        stream = EncodedStream(job)
        streams.append(stream)
        try:
            _read(stream, encoder, config, transform)
        except M2LError as error:
            stream.error = error
            encoder.drop(stream)
        stream.reading = False
        yield from _finished(streams)
    encoder.flush()
    yield from _finished(streams)


def _read(
    stream: EncodedStream, encoder: BatchEncoder, config: ModelConfig, transform: SpectralTransform
) -> None:
    """Opens the job's input, queues all its chunks, and closes it (on errors too)."""
    with closing(stream.job.open()) as source:
        stream.source = source
        stream.reader = ChunkReader(
            source, config.sample_rate, config.chunk_samples, transform.context
        )
        for index, window in enumerate(stream.reader):
            encoder.add(stream, index, transform.analyse(torch.from_numpy(window)))
    if stream.reader.input_samples == 0:
        raise AudioError(f"{stream.job.name}: contains no audio samples")


def _finished(streams: list[EncodedStream]) -> Iterator[EncodedStream]:
    """Pops and yields the streams that need nothing more from the encoder."""
    for stream in list(streams):
        if stream.error is not None or (not stream.reading and stream.outstanding == 0):
            streams.remove(stream)
            yield stream
