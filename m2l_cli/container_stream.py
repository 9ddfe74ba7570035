"""A container decoded while it arrives (a pipe): its header at once, then its latents
chunk by chunk as the decoder asks for them, so audio comes out before the input has
ended and memory does not grow with its length. The payload's checksum is checked when
the last chunk is read (docs/FORMAT.md, "Streaming")."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

from m2l_cli.config import ModelConfig
from m2l_cli.container import PAYLOAD_DTYPE
from m2l_cli.container_format import read_chunks


class StreamedLatents:
    """The latents of a container being read: the header's numbers, and `chunk_values`
    for chunks asked for in time order (the ones before the last request are dropped)."""

    def __init__(self, header: dict, blocks: Iterator[bytes]) -> None:
        self.header = header
        self.blocks = blocks
        self.shape = (header["channels"], header["num_latents"], header["latent_dim"])
        self.read = 0  # chunks read so far
        self.kept: dict[int, np.ndarray] = {}
        if self.chunks == 0:
            self._finish()

    @classmethod
    def open(
        cls,
        source: str | Path | BinaryIO,
        expected_model_id: str | None = None,
        model: ModelConfig | None = None,
    ) -> StreamedLatents:
        """Reads and checks the header (refused if not for `expected_model_id` and the
        shapes of `model`, when given); the payload is read later, as it is asked for."""
        header, blocks = read_chunks(source, expected_model_id, model)
        return cls(header, blocks)

    @property
    def channels(self) -> int:
        return int(self.header["channels"])

    @property
    def chunks(self) -> int:
        return int(self.header["chunks"])

    @property
    def num_samples(self) -> int:
        return int(self.header["num_samples"])

    @property
    def model_num_samples(self) -> int:
        return int(self.header["model_num_samples"])

    @property
    def original_sample_rate(self) -> int:
        return int(self.header["original_sample_rate"])

    @property
    def sample_format(self) -> str:
        return str(self.header.get("sample_format", ""))

    @property
    def duration(self) -> float:
        """Length of the audio in seconds, at the original rate."""
        return self.num_samples / self.original_sample_rate

    def chunk_values(self, start: int, stop: int) -> np.ndarray:
        """[channels, stop - start, K, d_lat] float16 values of chunks [start, stop),
        read from the stream as far as needed; reading the last chunk checks the rest
        of the container (ContainerError if it is corrupt, short or too long)."""
        if start < min(self.kept, default=self.read):
            raise ValueError(f"chunk {start} was asked for after later ones")
        for index in [index for index in self.kept if index < start]:
            del self.kept[index]
        while self.read < min(stop, self.chunks):
            block = next(self.blocks)
            self.kept[self.read] = np.frombuffer(block, PAYLOAD_DTYPE).reshape(self.shape)
            self.read += 1
        if self.read == self.chunks:
            self._finish()
        return np.stack([self.kept[index] for index in range(start, stop)], axis=1)

    def _finish(self) -> None:
        """Reads to the end of the stream: the checks after the payload."""
        for _ in self.blocks:
            raise AssertionError("a container stream had more chunks than its header says")
