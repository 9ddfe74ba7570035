"""Random access: a time range of a container decoded from only the chunks it needs,
plus a few warm-up chunks before them, and cut to exactly that range.

Decoding is autoregressive: each chunk is made next to the first estimate of the one
before it. A range that started from nothing would decode its first chunk the way a
file's first chunk is decoded, without context; `WARMUP_CHUNKS` chunks decoded first
and thrown away give it the context a full decode gives it (README, "Random access and
streaming", has the measurement behind the number). The noise differs from a full decode's (it is
drawn from the start of what is decoded), so a range matches a full decode as closely
as two full decodes with different seeds match each other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from math import ceil, gcd

import numpy as np

from .config import ModelConfig
from .decoding import DecodableLatents, DecodeJob
from .errors import M2LError
from .resampling import Resampler

WARMUP_CHUNKS = 2
"""Chunks decoded before a range's first chunk, for its autoregressive context."""
MARGIN = 2048
"""Model-rate samples decoded beyond each end of a range: more than the resampler's
filter reaches, and past the 1536 samples at a chunk's edge that overlap-add finishes
only with the next chunk."""


@dataclass(frozen=True)
class TimeRange:
    """`duration` seconds from `start` (None: to the end); cut at the end of the audio."""

    start: float = 0.0
    duration: float | None = None


@dataclass(frozen=True)
class Excerpt:
    """Chunks [first, stop) of a container, as a container of their own at the model
    rate (so the decode loop writes their model-rate samples unchanged)."""

    latents: DecodableLatents
    first: int
    stop: int
    num_samples: int
    original_sample_rate: int  # the model's

    @property
    def channels(self) -> int:
        return self.latents.channels

    @property
    def chunks(self) -> int:
        return self.stop - self.first

    @property
    def model_num_samples(self) -> int:
        return self.num_samples

    def chunk_values(self, start: int, stop: int) -> np.ndarray:
        return self.latents.chunk_values(self.first + start, self.first + stop)


def range_job(
    job: DecodeJob, time_range: TimeRange, config: ModelConfig, warmup: int = WARMUP_CHUNKS
) -> DecodeJob:
    """A job that decodes only what `time_range` of `job` needs, writing to `job.write`
    exactly the samples a full decode would write there (its length, at its rate)."""
    latents, chunk = job.latents, config.chunk_samples
    rate = job.output_rate or latents.original_sample_rate
    first_out, stop_out = output_span(latents, job.name, time_range, rate)
    to_model = config.sample_rate / rate
    step = config.sample_rate // gcd(config.sample_rate, rate)
    resample_from = max(int(first_out * to_model) - MARGIN, 0) // step * step
    first = max(resample_from // chunk - warmup, 0)
    stop = min(ceil((ceil(stop_out * to_model) + MARGIN) / chunk), latents.chunks)
    samples = min(latents.model_num_samples, stop * chunk) - first * chunk
    writer = RangeWriter(
        job.write,
        Resampler(config.sample_rate, rate, latents.channels),
        model_skip=resample_from - first * chunk,
        model_samples=samples - (resample_from - first * chunk),
        output_skip=first_out - resample_from * rate // config.sample_rate,
        length=stop_out - first_out,
    )
    excerpt = Excerpt(latents, first, stop, samples, config.sample_rate)
    return DecodeJob(excerpt, writer, job.name, None, job.seed)


def output_span(
    latents: DecodableLatents, name: str, time_range: TimeRange, rate: int
) -> tuple[int, int]:
    """The range of `latents` (named `name` in errors) as output samples [first, stop)
    at `rate`, cut at the end of the audio."""
    total = round(latents.num_samples * rate / latents.original_sample_rate)
    if time_range == TimeRange():
        return 0, total
    first = round(time_range.start * rate)
    if time_range.start < 0 or first >= total:
        length = total / rate
        raise M2LError(
            f"{name}: the range starts at {time_range.start:.3f} s, "
            f"outside the audio (0 to {length:.3f} s)"
        )
    if time_range.duration is None:
        return first, total
    if time_range.duration <= 0:
        raise M2LError(f"{name}: the range must last more than 0 s")
    return first, min(first + round(time_range.duration * rate), total)


class RangeWriter:
    """Cuts a range out of the model-rate audio of an excerpt: drops `model_skip`
    samples, resamples the next `model_samples` (the resampler's start is aligned with
    an output sample), drops `output_skip` output samples and writes `length`, padded
    with silence where the audio ends sooner (as a full decode pads)."""

    def __init__(
        self,
        write: Callable[[np.ndarray], None],
        resampler: Resampler,
        *,
        model_skip: int,
        model_samples: int,
        output_skip: int,
        length: int,
    ) -> None:
        self.write, self.resampler = write, resampler
        self.model_skip, self.model_left = model_skip, model_samples
        self.output_skip, self.left = output_skip, length

    def __call__(self, block: np.ndarray) -> None:
        drop = min(self.model_skip, block.shape[1])
        self.model_skip -= drop
        block = block[:, drop:]
        self.model_left -= block.shape[1]
        last = self.model_left <= 0
        resampled = self.resampler(block, last=last)
        cut = min(self.output_skip, resampled.shape[1])
        self.output_skip -= cut
        self._emit(resampled[:, cut : cut + self.left])
        if last and self.left > 0:
            self._emit(np.zeros((block.shape[0], self.left), np.float32))

    def _emit(self, samples: np.ndarray) -> None:
        if samples.shape[1]:
            self.write(np.ascontiguousarray(samples, dtype=np.float32))
            self.left -= samples.shape[1]
