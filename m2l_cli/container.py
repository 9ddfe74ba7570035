"""The .m2l container: the latents of one audio file, self-describing and checksummed.

Layout of version 2.0 (little-endian; docs/FORMAT.md has the details):
magic ``M2L\\x1a`` | major, minor (uint8 each) | header length (uint32) |
UTF-8 JSON header | CRC32 of everything before it (uint32) |
float16 payload, chunk by chunk | CRC32 of the payload (uint32).
Version 1.x files, without the header checksum, are still read. The bytes are
`container_format`'s job; this module holds the latents as arrays.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

from m2l_cli._version import __version__
from m2l_cli.config import ModelConfig
from m2l_cli.container_format import (
    MAX_HEADER_BYTES,
    SUFFIX,
    check_fit,
    check_model,
    container_bytes,
    container_size,
    expected_chunks,
    metadata_problem,
    read_container,
    read_header,
    verify,
)
from m2l_cli.errors import ContainerError

PAYLOAD_DTYPE = np.dtype("<f2")

__all__ = [
    "MAX_HEADER_BYTES",
    "PAYLOAD_DTYPE",
    "SUFFIX",
    "Latents",
    "check_fit",
    "check_model",
    "container_size",
    "expected_chunks",
    "metadata_problem",
    "read_header",
    "verify",
]


@dataclass
class Latents:
    """The latents of one audio file plus everything needed to decode them."""

    values: np.ndarray  # float16, shape [channels, chunks, num_latents, latent_dim]
    model_id: str
    model_name: str
    sample_rate: int  # model rate
    original_sample_rate: int
    num_samples: int  # at original rate, per channel
    model_num_samples: int  # at model rate, per channel
    chunk_samples: int
    metadata: dict[str, str] = field(default_factory=dict)
    tool_version: str = __version__
    sample_format: str = ""  # the source's libsndfile subtype (PCM_16, FLOAT, ...), if known

    def __post_init__(self) -> None:
        """Catch misuse early: values must be [channels, chunks, K, d_lat]."""
        if np.ndim(self.values) != 4:
            raise ValueError(
                f"latent values must have 4 dimensions [channels, chunks, K, d], "
                f"got shape {np.shape(self.values)}"
            )

    @property
    def channels(self) -> int:
        """Number of audio channels."""
        return self.values.shape[0]

    @property
    def chunks(self) -> int:
        """Number of chunks of chunk_samples model-rate samples."""
        return self.values.shape[1]

    @property
    def num_latents(self) -> int:
        """Latent vectors per chunk (K)."""
        return self.values.shape[2]

    @property
    def latent_dim(self) -> int:
        """Size of each latent vector (d_lat)."""
        return self.values.shape[3]

    @property
    def duration(self) -> float:
        """Length of the audio in seconds, at the original rate."""
        return self.num_samples / self.original_sample_rate

    def header(self) -> dict:
        """The JSON header describing these latents."""
        header = {
            "model_id": self.model_id,
            "model_name": self.model_name,
            "sample_rate": self.sample_rate,
            "original_sample_rate": self.original_sample_rate,
            "channels": self.channels,
            "num_samples": self.num_samples,
            "model_num_samples": self.model_num_samples,
            "chunk_samples": self.chunk_samples,
            "num_latents": self.num_latents,
            "latent_dim": self.latent_dim,
            "chunks": self.chunks,
            "dtype": "float16",
            "byte_order": "little",
            "tool_version": self.tool_version,
            "metadata": dict(self.metadata),
        }
        if self.sample_format:
            header["sample_format"] = self.sample_format
        return header

    def to_bytes(self) -> bytes:
        """Serialize to the .m2l format (values are stored as little-endian float16)."""
        # Time-major [chunks, channels, K, d]: readers can decode early chunks first.
        payload = np.asarray(self.values, dtype=PAYLOAD_DTYPE).transpose(1, 0, 2, 3).tobytes()
        return container_bytes(self.header(), payload)

    @classmethod
    def from_header(cls, header: dict, payload: bytes) -> Latents:
        """Latents from a checked header and its payload bytes."""
        shape = (header["chunks"], header["channels"], header["num_latents"], header["latent_dim"])
        values = np.frombuffer(payload, dtype=PAYLOAD_DTYPE).reshape(shape)
        return cls(
            values=values.transpose(1, 0, 2, 3).astype(np.float16),
            model_id=header["model_id"],
            model_name=header["model_name"],
            sample_rate=header["sample_rate"],
            original_sample_rate=header["original_sample_rate"],
            num_samples=header["num_samples"],
            model_num_samples=header["model_num_samples"],
            chunk_samples=header["chunk_samples"],
            metadata=dict(header["metadata"]),
            tool_version=header["tool_version"],
            sample_format=header.get("sample_format", ""),
        )

    @classmethod
    def from_bytes(
        cls, data: bytes, name: str = "<bytes>", expected_model_id: str | None = None
    ) -> Latents:
        """Parse and fully verify a container held in memory."""
        stream = io.BytesIO(data)
        stream.name = name
        return cls.load(stream, expected_model_id)

    def save(self, target: str | Path | BinaryIO) -> None:
        """Write the container to a path or a binary stream."""
        data = self.to_bytes()
        if not isinstance(target, (str, Path)):
            target.write(data)
            return
        try:
            Path(target).write_bytes(data)
        except OSError as exc:
            raise ContainerError(f"{target}: cannot write ({exc.strerror or exc})") from None

    @classmethod
    def load(
        cls,
        source: str | Path | BinaryIO,
        expected_model_id: str | None = None,
        model: ModelConfig | None = None,
    ) -> Latents:
        """Read and fully verify a container from a path or a binary stream. With
        `expected_model_id` (and `model`, the config the latents must fit), a container
        for another model is refused before its payload is read."""
        header, payload = read_container(source, expected_model_id, model)
        return cls.from_header(header, payload)
