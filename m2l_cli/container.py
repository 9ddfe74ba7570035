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
from typing import BinaryIO, Protocol

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
    header_problem,
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
    "ModelInfo",
    "check_fit",
    "check_model",
    "container_size",
    "expected_chunks",
    "metadata_problem",
    "read_header",
    "verify",
]


@dataclass(frozen=True)
class ModelInfo:
    """What latents record of the model that makes and decodes them."""

    model_id: str
    model_name: str
    sample_rate: int
    chunk_samples: int
    num_latents: int
    latent_dim: int


class HasModelInfo(Protocol):
    """A codec, or latents it made: what `Latents.from_array` takes the model from."""

    @property
    def model_info(self) -> ModelInfo: ...


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

    @property
    def model_info(self) -> ModelInfo:
        """The model these latents are for."""
        shape = (self.sample_rate, self.chunk_samples, self.num_latents, self.latent_dim)
        return ModelInfo(self.model_id, self.model_name, *shape)

    def chunk_values(self, start: int, stop: int) -> np.ndarray:
        """The values of chunks [start, stop): [channels, stop - start, K, d_lat]."""
        return self.values[:, start:stop]

    @classmethod
    def from_array(
        cls,
        values: object,
        model: ModelInfo | HasModelInfo,
        *,
        sample_rate: int | None = None,
        num_samples: int | None = None,
        metadata: dict[str, str] | None = None,
    ) -> Latents:
        """Latents for values made elsewhere (a generative model's output), ready to
        decode or save: [chunks, K, d_lat] for one channel or [channels, chunks, K, d_lat],
        any float type (numpy, a CPU tensor, nested lists), for the model that `model`
        describes (a Codec, latents it made, or its ModelInfo). The audio is `sample_rate`
        Hz (default: the model's) and `num_samples` long (default: every chunk whole).
        ValueError when the values do not fit the model or the length."""
        info = model if isinstance(model, ModelInfo) else model.model_info
        array = _as_latent_array(values, info)
        rate = sample_rate or info.sample_rate
        chunks = array.shape[1]
        if num_samples is None:
            model_num_samples = chunks * info.chunk_samples
            num_samples = round(model_num_samples * rate / info.sample_rate)
        else:
            model_num_samples = round(num_samples * info.sample_rate / rate)
        latents = cls(
            values=array,
            model_id=info.model_id,
            model_name=info.model_name,
            sample_rate=info.sample_rate,
            original_sample_rate=rate,
            num_samples=num_samples,
            model_num_samples=model_num_samples,
            chunk_samples=info.chunk_samples,
            metadata=dict(metadata or {}),
        )
        problem = header_problem(latents.header())
        if problem:
            raise ValueError(f"cannot make latents: {problem}")
        return latents

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


def _as_latent_array(values: object, info: ModelInfo) -> np.ndarray:
    """`values` as finite float16 [channels, chunks, K, d_lat] for the model `info`."""
    if hasattr(values, "detach"):  # a torch tensor, perhaps on a GPU or needing grad
        values = values.detach().cpu()
    array = np.asarray(values, dtype=np.float32)
    array = array[None] if array.ndim == 3 else array
    wanted = (info.num_latents, info.latent_dim)
    if array.ndim != 4 or array.shape[2:] != wanted:
        raise ValueError(
            f"latent values must be [chunks, {wanted[0]}, {wanted[1]}] or "
            f"[channels, chunks, {wanted[0]}, {wanted[1]}] for this model, "
            f"got shape {array.shape}"
        )
    half = array.astype(np.float16)
    if not np.isfinite(half).all():
        raise ValueError("latent values must be finite numbers within float16's range")
    return half
