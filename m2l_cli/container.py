"""The .m2l container: the latents of one audio file, self-describing and checksummed.

Layout (little-endian; docs/FORMAT.md has the details):
magic ``M2L\\x1a`` | major, minor (uint8 each) | header length (uint32) |
UTF-8 JSON header | float16 payload, chunk by chunk | CRC32 of the payload (uint32).
"""

from __future__ import annotations

import json
import math
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

from m2l_cli._version import __version__
from m2l_cli.errors import ContainerError, ModelError

SUFFIX = ".m2l"
MAGIC = b"M2L\x1a"
VERSION = (1, 0)  # (major, minor): readers refuse another major, accept any minor
PREAMBLE = struct.Struct("<4sBBI")  # magic, major, minor, header length
TRAILER = struct.Struct("<I")  # CRC32 of the payload
# A corrupt length must not make us read gigabytes; real headers are ~400 bytes.
MAX_HEADER_BYTES = 16 * 1024 * 1024
PAYLOAD_DTYPE = np.dtype("<f2")

_INT_KEYS = {  # key -> smallest allowed value
    "sample_rate": 1,
    "original_sample_rate": 1,
    "channels": 1,
    "num_samples": 0,
    "model_num_samples": 0,
    "chunk_samples": 1,
    "num_latents": 1,
    "latent_dim": 1,
    "chunks": 0,
}
_STR_KEYS = ("model_id", "model_name", "tool_version", "dtype", "byte_order")
_FIXED = {"dtype": "float16", "byte_order": "little"}


def container_size(
    channels: int,
    chunks: int,
    header_len: int,
    num_latents: int = 8,
    latent_dim: int = 64,
) -> int:
    """Exact size in bytes of a container with these dimensions and header length."""
    return (
        PREAMBLE.size + header_len + channels * chunks * num_latents * latent_dim * 2 + TRAILER.size
    )


def expected_chunks(model_num_samples: int, chunk_samples: int) -> int:
    """Number of chunks that cover model_num_samples (the last one zero-padded)."""
    return math.ceil(model_num_samples / chunk_samples)


def _header_problem(header: object) -> str | None:
    """Describe the first thing wrong with a header dict; None if it is valid."""
    if not isinstance(header, dict):
        return "header is not a JSON object"
    for key in (*_STR_KEYS, *_INT_KEYS, "metadata"):
        if key not in header:
            return f"header key '{key}' is missing"
    for key in _STR_KEYS:
        if not isinstance(header[key], str):
            return f"header key '{key}' must be a string, got {json.dumps(header[key])}"
    for key, lowest in _INT_KEYS.items():
        value = header[key]
        if not isinstance(value, int) or isinstance(value, bool):
            return f"header key '{key}' must be an integer, got {json.dumps(value)}"
        if value < lowest:
            return f"header key '{key}' must be >= {lowest}, got {value}"
    for key, wanted in _FIXED.items():
        if header[key] != wanted:
            return f"header key '{key}' must be '{wanted}', got '{header[key]}'"
    meta = header["metadata"]
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        return "header key 'metadata' must be an object mapping strings to strings"
    return _chunk_problem(header["chunks"], header["model_num_samples"], header["chunk_samples"])


def _chunk_problem(chunks: int, model_num_samples: int, chunk_samples: int) -> str | None:
    """Chunks must be ceil(model_num_samples / chunk_samples); 0 samples may be 1."""
    needed = expected_chunks(model_num_samples, chunk_samples)
    if chunks == needed or (model_num_samples == 0 and chunks == 1):
        return None
    return (
        f"header says {chunks} chunks, but {model_num_samples} samples "
        f"at {chunk_samples} per chunk need {needed}"
    )


def _parse_preamble(head: bytes, name: str) -> int:
    """Check magic and version at the start of a container; return the header length."""
    if not head:
        raise ContainerError(f"{name}: empty file")
    if head[:4] != MAGIC[: len(head[:4])]:
        raise ContainerError(
            f"{name}: not an .m2l container (starts with {head[:4]!r}, expected {MAGIC!r})"
        )
    if len(head) < PREAMBLE.size:
        raise ContainerError(
            f"{name}: truncated header: file is {len(head)} bytes, "
            f"shorter than the {PREAMBLE.size}-byte preamble"
        )
    _, major, minor, header_len = PREAMBLE.unpack(head[: PREAMBLE.size])
    if major != VERSION[0]:
        raise ContainerError(
            f"{name}: unsupported format version {major}.{minor} "
            f"(this tool reads version {VERSION[0]}.x; a newer m2l may read it)"
        )
    if header_len > MAX_HEADER_BYTES:
        raise ContainerError(
            f"{name}: header length {header_len} exceeds the {MAX_HEADER_BYTES}-byte limit"
        )
    return header_len


def _parse_header(raw: bytes, header_len: int, name: str) -> dict:
    """Decode and validate the JSON header (raw holds the bytes actually available)."""
    if len(raw) < header_len:
        raise ContainerError(
            f"{name}: truncated header: expected {header_len} bytes, found {len(raw)}"
        )
    try:
        header = json.loads(raw[:header_len].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ContainerError(f"{name}: header is not valid UTF-8 JSON ({exc})") from None
    problem = _header_problem(header)
    if problem:
        raise ContainerError(f"{name}: {problem}")
    return header


def check_model(name: str, model_id: str, model_name: str, expected_model_id: str) -> None:
    """Refuses latents made by model `model_id` (`model_name`) when the model that
    will decode them is `expected_model_id`."""
    if model_id != expected_model_id:
        raise ModelError(
            f"{name}: latents were made by model {model_id} ({model_name}), "
            f"but the loaded model is {expected_model_id}"
        )


def _source_name(source: str | Path | BinaryIO) -> str:
    """Name to start error messages with: the path, or the stream's own name."""
    if isinstance(source, (str, Path)):
        return str(source)
    name = getattr(source, "name", None)
    return name if isinstance(name, str) else "<stream>"


def read_header(source: str | Path | BinaryIO) -> tuple[dict, int]:
    """Read and check only preamble and header (for `m2l info`); no payload."""
    name = _source_name(source)
    if isinstance(source, (str, Path)):
        with _open_for_read(Path(source)) as f:
            return _read_header_from(f, name)
    return _read_header_from(source, name)


def _read_header_from(stream: BinaryIO, name: str) -> tuple[dict, int]:
    """Read preamble and header from a stream positioned at the container start."""
    header_len = _parse_preamble(_read_up_to(stream, PREAMBLE.size), name)
    header = _parse_header(_read_up_to(stream, header_len), header_len, name)
    return header, PREAMBLE.size + header_len


def _read_up_to(stream: BinaryIO, size: int) -> bytes:
    """Read size bytes, fewer only at end of stream (pipes may return short reads)."""
    parts, got = [], 0
    while got < size:
        part = stream.read(size - got)
        if not part:
            break
        parts.append(part)
        got += len(part)
    return b"".join(parts)


def _open_for_read(path: Path) -> BinaryIO:
    """Open a path for reading, with the container's error messages."""
    if path.is_dir():
        raise ContainerError(f"{path}: is a directory")
    try:
        return path.open("rb")
    except FileNotFoundError:
        raise ContainerError(f"{path}: no such file") from None
    except OSError as exc:
        raise ContainerError(f"{path}: cannot read ({exc.strerror or exc})") from None


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
        return {
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

    def to_bytes(self) -> bytes:
        """Serialize to the .m2l format (values are stored as little-endian float16)."""
        header = self.header()
        problem = _header_problem(header)
        if problem:
            raise ValueError(f"cannot write latents: {problem}")
        raw = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        raw_header = raw.encode("utf-8")
        # Time-major [chunks, channels, K, d]: readers can decode early chunks first.
        payload = np.asarray(self.values, dtype=PAYLOAD_DTYPE).transpose(1, 0, 2, 3).tobytes()
        preamble = PREAMBLE.pack(MAGIC, *VERSION, len(raw_header))
        return preamble + raw_header + payload + TRAILER.pack(zlib.crc32(payload))

    @classmethod
    def from_bytes(
        cls, data: bytes, name: str = "<bytes>", expected_model_id: str | None = None
    ) -> Latents:
        """Parse and fully verify a container held in memory."""
        header_len = _parse_preamble(bytes(data[: PREAMBLE.size]), name)
        header = _parse_header(data[PREAMBLE.size : PREAMBLE.size + header_len], header_len, name)
        offset = PREAMBLE.size + header_len
        payload = _payload(data, offset, header, name)
        if expected_model_id is not None:
            check_model(name, header["model_id"], header["model_name"], expected_model_id)
        shape = (
            header["chunks"],
            header["channels"],
            header["num_latents"],
            header["latent_dim"],
        )
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
        )

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
    def load(cls, source: str | Path | BinaryIO, expected_model_id: str | None = None) -> Latents:
        """Read and fully verify a container from a path or a binary stream."""
        name = _source_name(source)
        if isinstance(source, (str, Path)):
            with _open_for_read(Path(source)) as f:
                data = f.read()
        else:
            data = source.read()
        return cls.from_bytes(data, name, expected_model_id)


def _payload(data: bytes, offset: int, header: dict, name: str) -> bytes:
    """Return the payload once its size (per the header) and checksum are right."""
    size = container_size(
        header["channels"],
        header["chunks"],
        offset - PREAMBLE.size,
        header["num_latents"],
        header["latent_dim"],
    )
    payload_len = size - offset - TRAILER.size
    if len(data) < size:
        raise ContainerError(
            f"{name}: truncated payload: header announces {payload_len} bytes "
            f"of latents plus a {TRAILER.size}-byte checksum, "
            f"but only {len(data) - offset} bytes follow the header"
        )
    if len(data) > size:
        raise ContainerError(
            f"{name}: unexpected data after the checksum: {len(data) - size} extra "
            f"bytes (header announces a {size}-byte container, file has {len(data)})"
        )
    payload = bytes(data[offset : offset + payload_len])
    (stored,) = TRAILER.unpack(data[offset + payload_len :])
    computed = zlib.crc32(payload)
    if stored != computed:
        raise ContainerError(
            f"{name}: checksum mismatch, the latents are corrupt "
            f"(stored CRC32 {stored:08x}, computed {computed:08x})"
        )
    return payload
