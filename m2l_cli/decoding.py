"""The decode loop: autoregressive two-step consistency decoding of many streams at once.

For a file of N chunks (every channel is a stream, all in step):
- step 0: chunk 0 from pure noise at sigma_max, alone (its first estimate);
- step t in 1..N-1: the first estimate of chunk t-1 plus noise at sigma_cond goes in the
  left slot, pure noise in the right slot; one call gives the refined chunk t-1 (kept)
  and the first estimate of chunk t;
- step N: the last chunk, noised at sigma_cond, alone: its refined version.
Every step of every active file runs in one batched call per kind of step; a file that
finishes makes room for the next (so a batch of many files keeps the batch full).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol

import numpy as np
import torch

from .config import ModelConfig
from .errors import M2LError
from .resampling import Resampler
from .spectral import OverlapAdd, SpectralTransform

Features = list[torch.Tensor]


class Phase(Enum):
    """The three kinds of decode step (see the module docstring)."""

    FIRST = "first"
    MIDDLE = "middle"
    LAST = "last"


def steps_per_stream(chunks: int) -> int:
    """Model steps that decode a stream of `chunks` chunks: one per chunk plus the last
    chunk's refinement; none without chunks."""
    return chunks + 1 if chunks else 0


def progress_total(channels: int, chunks: int) -> int:
    """The progress units `DecodeScheduler.run` reports for a file: its channels at
    every step."""
    return channels * steps_per_stream(chunks)


class DecodableLatents(Protocol):
    """What the loop reads of a container: `container.Latents`, or one still arriving
    (`container_stream.StreamedLatents`), whose chunks are asked for in time order."""

    @property
    def channels(self) -> int: ...

    @property
    def chunks(self) -> int: ...

    @property
    def num_samples(self) -> int: ...

    @property
    def model_num_samples(self) -> int: ...

    @property
    def original_sample_rate(self) -> int: ...

    def chunk_values(self, start: int, stop: int) -> np.ndarray:
        """[channels, stop - start, K, D] values of chunks [start, stop)."""
        ...


@dataclass(eq=False)
class DecodeJob:
    """One container to decode; `write` receives [channels, n] float32 blocks in order."""

    latents: DecodableLatents
    write: Callable[[np.ndarray], None]
    name: str
    output_rate: int | None = None
    seed: int = 0


class OutputWriter:
    """Writes a job's audio: resamples model-rate samples to the output rate and cuts or
    pads them to the exact original length."""

    def __init__(self, job: DecodeJob, model_rate: int) -> None:
        latents = job.latents
        self.rate = job.output_rate or latents.original_sample_rate
        self.model_left = latents.model_num_samples
        self.resampler = Resampler(model_rate, self.rate, latents.channels)
        self.target = round(latents.num_samples * self.rate / latents.original_sample_rate)
        self.written = 0
        self.write = job.write

    def push(self, samples: np.ndarray, last: bool = False) -> None:
        samples = samples[:, : max(self.model_left, 0)]
        self.model_left -= samples.shape[1]
        block = self.resampler(samples, last=last)[:, : self.target - self.written]
        if last and self.written + block.shape[1] < self.target:
            missing = self.target - self.written - block.shape[1]
            block = np.concatenate([block, np.zeros((block.shape[0], missing), np.float32)], 1)
        if block.shape[1]:
            self.write(np.ascontiguousarray(block, dtype=np.float32))
            self.written += block.shape[1]


@dataclass(eq=False)
class StreamState:
    """A file being decoded: its step, cached decoder features and noise generator."""

    job: DecodeJob
    generator: torch.Generator
    overlap_add: OverlapAdd
    output: OutputWriter
    step: int = 0
    features: dict[int, Features] = field(default_factory=dict)
    estimate: torch.Tensor | None = None  # first estimate of the chunk before `step`

    @property
    def channels(self) -> int:
        return self.job.latents.channels

    @property
    def chunks(self) -> int:
        return self.job.latents.chunks

    def values(self, span: range) -> torch.Tensor:
        """The latents of the chunks in `span`, float32 [channels, len(span), K, D]."""
        values = self.job.latents.chunk_values(span.start, span.stop)
        return torch.from_numpy(values.astype(np.float32))

    @property
    def done(self) -> bool:
        return self.step >= steps_per_stream(self.chunks)

    def phase(self) -> Phase:
        if self.step == 0:
            return Phase.FIRST
        return Phase.LAST if self.step == self.chunks else Phase.MIDDLE

    def needed_chunks(self) -> list[int]:
        phase = self.phase()
        if phase is Phase.FIRST:
            return [0]
        return [self.step - 1] if phase is Phase.LAST else [self.step - 1, self.step]

    def noise(self, shape: torch.Size) -> torch.Tensor:
        return torch.randn((self.channels, *shape), generator=self.generator)


class DecodeScheduler:
    """Drives the model's decoder and consistency model over many files, step by step."""

    def __init__(
        self,
        config: ModelConfig,
        *,
        decode_features: Callable[[torch.Tensor], Features],
        denoise: Callable[[torch.Tensor, torch.Tensor, Features], torch.Tensor],
        sigma_cond: float,
        batch_size: int,
        lookahead: int = 4,
    ) -> None:
        self.config = config
        self.transform = SpectralTransform(config)
        self.decode_features, self.denoise = decode_features, denoise
        self.sigma_cond = max(float(sigma_cond), config.sigma_min)
        self.batch_size, self.lookahead = batch_size, lookahead
        self.chunk_shape = torch.Size((2, config.frequency_bins, config.chunk_frames))

    def start(self, job: DecodeJob) -> StreamState:
        generator = torch.Generator().manual_seed(job.seed)
        return StreamState(
            job=job,
            generator=generator,
            overlap_add=OverlapAdd(self.transform, (job.latents.channels,)),
            output=OutputWriter(job, self.config.sample_rate),
        )

    def run(
        self, jobs: Iterable[DecodeJob], progress: Callable[[int], None] | None = None
    ) -> Iterator[tuple[DecodeJob, M2LError | None]]:
        """Decodes every job; yields (job, None) when written, (job, error) if it failed.
        `progress` gets each step's channels (`progress_total` per file in all)."""
        queue, active = iter(jobs), list[StreamState]()
        while True:
            admitted, empty = self._admit(queue, sum(state.channels for state in active))
            active += admitted
            yield from ((job, None) for job in empty)
            if not active:
                return
            for state, error in self._step(active):
                if progress and error is None:
                    progress(state.channels)
                if error is not None or state.done:
                    active.remove(state)
                    yield state.job, error

    def _admit(
        self, queue: Iterator[DecodeJob], rows: int
    ) -> tuple[list[StreamState], list[DecodeJob]]:
        """Starts files until the batch has `batch_size` rows (at least one file).
        Files without chunks are finished at once and returned apart."""
        admitted, empty = [], []
        while rows < self.batch_size:
            job = next(queue, None)
            if job is None:
                break
            if job.latents.chunks == 0:
                silence = np.zeros((job.latents.channels, 0), np.float32)
                OutputWriter(job, self.config.sample_rate).push(silence, last=True)
                empty.append(job)
                continue
            admitted.append(self.start(job))
            rows += job.latents.channels
        return admitted, empty

    def _step(self, active: list[StreamState]) -> Iterator[tuple[StreamState, M2LError | None]]:
        self._fill_features(active)
        for phase in Phase:
            group = [state for state in active if state.phase() == phase]
            if group:
                yield from self._run_group(phase, group)

    def _fill_features(self, active: list[StreamState]) -> None:
        """Runs the decoder, batched over files, for chunks that will soon be needed."""
        wanted: list[tuple[StreamState, range]] = []
        for state in active:
            for index in list(state.features):
                if index < state.step - 1:
                    del state.features[index]
            missing = [i for i in state.needed_chunks() if i not in state.features]
            if missing:
                wanted.append(
                    (state, range(missing[0], min(missing[0] + self.lookahead, state.chunks)))
                )
        if not wanted:
            return
        latents = torch.cat(
            [state.values(span).transpose(0, 1).flatten(0, 1) for state, span in wanted]
        )
        features = self.decode_features(latents)
        offset = 0
        for state, span in wanted:
            for index in span:
                rows = slice(offset, offset + state.channels)
                state.features[index] = [level[rows] for level in features]
                offset += state.channels

    def _run_group(
        self, phase: Phase, group: list[StreamState]
    ) -> Iterator[tuple[StreamState, M2LError | None]]:
        noisy, sigmas, features = [], [], []
        for state in group:
            x, sigma = self._inputs(phase, state)
            noisy.append(x)
            sigmas.append(sigma)
            slots = [state.features[index] for index in state.needed_chunks()]
            by_level = zip(*slots, strict=True)
            features.append([torch.stack(levels, 1).flatten(0, 1) for levels in by_level])
        batched_features = [torch.cat(levels) for levels in zip(*features, strict=True)]
        output = self.denoise(torch.cat(noisy), torch.cat(sigmas), batched_features)
        offset = 0
        for state in group:
            rows = output[offset : offset + state.channels].float()
            offset += state.channels
            try:
                self._advance(phase, state, rows)
            except M2LError as error:
                yield state, error
                continue
            yield state, None

    def _inputs(self, phase: Phase, state: StreamState) -> tuple[torch.Tensor, torch.Tensor]:
        """Noisy input [channels, slots, 2, F, T] and noise levels [channels, slots]."""
        high, cond = self.config.sigma_max, self.sigma_cond
        if phase is Phase.FIRST:
            x = (high * state.noise(self.chunk_shape))[:, None]
            return x, torch.full((state.channels, 1), high)
        assert state.estimate is not None, "a step after the first has a first estimate"
        left = state.estimate + cond * state.noise(self.chunk_shape)
        if phase is Phase.LAST:
            return left[:, None], torch.full((state.channels, 1), cond)
        right = high * state.noise(self.chunk_shape)
        sigma = torch.tensor([cond, high]).expand(state.channels, 2)
        return torch.stack([left, right], 1), sigma

    def _advance(self, phase: Phase, state: StreamState, output: torch.Tensor) -> None:
        """Keeps the refined chunk (written out) and the new first estimate."""
        if phase is not Phase.FIRST:
            samples = state.overlap_add.push(output[:, 0]).numpy()
            state.output.push(samples)
        state.estimate = output[:, -1] if phase is not Phase.LAST else None
        state.step += 1
        if state.done:
            state.output.push(state.overlap_add.finish().numpy(), last=True)
