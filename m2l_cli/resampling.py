"""Sample-rate conversion of arrays (soxr, high quality): whole, or as a stream of
blocks. Arrays are [channels, samples]; no files here."""

from __future__ import annotations

import numpy as np
import soxr

QUALITY = "HQ"


class Resampler:
    """Streaming resampler between two rates; a no-op when they are equal."""

    def __init__(self, input_rate: int, output_rate: int, channels: int) -> None:
        self.identity = input_rate == output_rate
        if not self.identity:
            self.stream = soxr.ResampleStream(
                input_rate, output_rate, channels, dtype="float32", quality=QUALITY
            )

    def __call__(self, block: np.ndarray, last: bool = False) -> np.ndarray:
        """[channels, n] -> [channels, m]; `last` flushes what the filter still holds."""
        if self.identity:
            return block
        resampled = self.stream.resample_chunk(np.ascontiguousarray(block.T), last=last)
        return np.ascontiguousarray(resampled.T)


def resample(waveform: np.ndarray, input_rate: float, output_rate: float) -> np.ndarray:
    """Whole-array resampling, [channels, n] -> [channels, m], in the input's dtype."""
    if input_rate == output_rate:
        return waveform
    return np.ascontiguousarray(soxr.resample(waveform.T, input_rate, output_rate, QUALITY).T)
