"""The .m2l format below the latents (no numpy, so `m2l info` starts fast): the
preamble, the JSON header with its caps and checksum, and the payload read in checked
blocks. `container.Latents` builds on it.

Layout of version 2.0 (little-endian; docs/FORMAT.md has the details):
magic ``M2L\\x1a`` | major, minor (uint8 each) | header length (uint32) |
UTF-8 JSON header | CRC32 of everything before it (uint32) |
float16 payload, chunk by chunk | CRC32 of the payload (uint32).
Version 1.x files, without the header checksum, are still read.

A reader trusts nothing: the header is read first and every number in it is checked
against caps, against the other numbers and against the file's real size before
anything is allocated, and the payload is read in bounded blocks.
"""

from __future__ import annotations

import json
import os
import re
import stat
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from m2l_cli.config import ModelConfig
from m2l_cli.errors import ContainerError, ModelError
from m2l_cli.stdio import read_up_to

SUFFIX = ".m2l"
MAGIC = b"M2L\x1a"
VERSION = (2, 0)  # (major, minor) written; readers refuse an unknown major, accept any minor
READABLE_MAJORS = (1, 2)
PREAMBLE = struct.Struct("<4sBBI")  # magic, major, minor, header length
CHECKSUM = struct.Struct("<I")  # CRC32: of preamble + header (2.x), of the payload (all)
VALUE_BYTES = 2  # each latent is a little-endian float16
BLOCK_BYTES = 1 << 20  # payloads are read and checked this much at a time

# Caps on what a header may claim (docs/FORMAT.md, "Limits"): a corrupt or hostile
# header must fail in one line, not make a reader allocate or compute without bound.
MAX_HEADER_BYTES = 1 << 20
MAX_METADATA_ENTRIES = 1000
MAX_KEY_CHARS = 256
MAX_STRING_CHARS = {"model_id": 64, "model_name": 256, "tool_version": 64, "sample_format": 32}
_INT_RANGES = {  # key -> (smallest, largest)
    "sample_rate": (1, 768_000),
    "original_sample_rate": (1, 768_000),
    "channels": (1, 1024),
    "num_samples": (0, 1 << 40),
    "model_num_samples": (0, 1 << 40),
    "chunk_samples": (1, 1 << 20),
    "num_latents": (1, 4096),
    "latent_dim": (1, 4096),
    "chunks": (0, 1 << 32),
}
_STR_KEYS = ("model_id", "model_name", "tool_version", "dtype", "byte_order")
_FIXED = {"dtype": "float16", "byte_order": "little"}
_SAMPLE_FORMAT = re.compile(r"[A-Z0-9_]{1,32}")


def container_size(
    channels: int,
    chunks: int,
    header_len: int,
    num_latents: int = 8,
    latent_dim: int = 64,
    major: int = VERSION[0],
) -> int:
    """Exact size in bytes of a container with these dimensions and header length."""
    header_checksum = CHECKSUM.size if major >= 2 else 0
    payload = channels * chunks * num_latents * latent_dim * VALUE_BYTES
    return PREAMBLE.size + header_len + header_checksum + payload + CHECKSUM.size


def expected_chunks(model_num_samples: int, chunk_samples: int) -> int:
    """Number of chunks that cover model_num_samples (the last one zero-padded)."""
    return -(-model_num_samples // chunk_samples)


def header_problem(header: object) -> str | None:
    """Describe the first thing wrong with a header dict; None if it is valid."""
    if not isinstance(header, dict):
        return "header is not a JSON object"
    for key in (*_STR_KEYS, *_INT_RANGES, "metadata"):
        if key not in header:
            return f"header key '{key}' is missing"
    return (
        _string_problem(header)
        or _integer_problem(header)
        or _metadata_problem(header["metadata"])
        or _length_problem(header)
        or _chunk_problem(header["chunks"], header["model_num_samples"], header["chunk_samples"])
    )


def _string_problem(header: dict) -> str | None:
    optional = ("sample_format",) if "sample_format" in header else ()
    for key in (*_STR_KEYS, *optional):
        value, longest = header[key], MAX_STRING_CHARS.get(key, 64)
        if not isinstance(value, str):
            return f"header key '{key}' must be a string, got {_brief(value)}"
        if len(value) > longest:
            return f"header key '{key}' is longer than {longest} characters"
    for key, wanted in _FIXED.items():
        if header[key] != wanted:
            return f"header key '{key}' must be '{wanted}', got {_brief(header[key])}"
    if optional and not _SAMPLE_FORMAT.fullmatch(header["sample_format"]):
        return f"header key 'sample_format' is not a sample format: {_brief(header[optional[0]])}"
    return None


def _integer_problem(header: dict) -> str | None:
    for key, (lowest, highest) in _INT_RANGES.items():
        value = header[key]
        if not isinstance(value, int) or isinstance(value, bool):
            return f"header key '{key}' must be an integer, got {_brief(value)}"
        if not lowest <= value <= highest:
            return f"header key '{key}' must be in {lowest}..{highest}, got {_brief(value)}"
    return None


def _metadata_problem(metadata: object) -> str | None:
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        return "header key 'metadata' must be an object mapping strings to strings"
    return metadata_problem(metadata)


def metadata_problem(metadata: dict[str, str]) -> str | None:
    """What is wrong with user metadata for a header (too many entries, a key too
    long or empty); None when it fits."""
    if len(metadata) > MAX_METADATA_ENTRIES:
        return f"metadata has {len(metadata)} entries, more than {MAX_METADATA_ENTRIES}"
    for key in metadata:
        if not key or len(key) > MAX_KEY_CHARS:
            return f"metadata key {_brief(key)} must have 1 to {MAX_KEY_CHARS} characters"
    return None


def _length_problem(header: dict) -> str | None:
    """The two sample counts must describe the same audio: the model-rate count is the
    original count resampled (rounded), give or take a sample."""
    original, model = header["original_sample_rate"], header["sample_rate"]
    num_samples, model_num_samples = header["num_samples"], header["model_num_samples"]
    if abs(model_num_samples * original - num_samples * model) <= 2 * original:
        return None
    return (
        f"header says {num_samples} samples at {original} Hz, which cannot be "
        f"{model_num_samples} samples at {model} Hz"
    )


def _chunk_problem(chunks: int, model_num_samples: int, chunk_samples: int) -> str | None:
    """Chunks must be ceil(model_num_samples / chunk_samples); 0 samples may be 1."""
    needed = expected_chunks(model_num_samples, chunk_samples)
    if chunks == needed or (model_num_samples == 0 and chunks == 1):
        return None
    return (
        f"header says {chunks} chunks, but {model_num_samples} samples "
        f"at {chunk_samples} per chunk need {needed}"
    )


def _brief(value: object) -> str:
    """A header value in a message: JSON, cut to 40 characters."""
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, int) else str(value)
    if len(text) > 40:
        return text[:37] + "..."
    return text


@dataclass(frozen=True)
class _Preamble:
    major: int
    minor: int
    header_len: int

    @property
    def header_checksum(self) -> bool:
        """Version 2 and later follow the header with its own CRC32."""
        return self.major >= 2


def _parse_preamble(head: bytes, name: str) -> _Preamble:
    """Check magic and version at the start of a container."""
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
    if major not in READABLE_MAJORS:
        raise ContainerError(
            f"{name}: unsupported format version {major}.{minor} "
            f"(this tool reads versions 1.x and 2.x; a newer m2l may read it)"
        )
    if header_len > MAX_HEADER_BYTES:
        raise ContainerError(
            f"{name}: header length {header_len} exceeds the {MAX_HEADER_BYTES}-byte limit"
        )
    return _Preamble(major, minor, header_len)


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number JSON allows")


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("a key appears twice")
    return result


def _parse_header(raw: bytes, name: str) -> dict:
    """Decode and validate the JSON header."""
    try:
        header = json.loads(
            raw.decode("utf-8"),
            object_pairs_hook=_unique_keys,
            parse_constant=_reject_constant,
        )
    except (ValueError, RecursionError) as error:  # JSONDecodeError and UnicodeError too
        reason = "nested too deeply" if isinstance(error, RecursionError) else error
        raise ContainerError(f"{name}: header is not valid UTF-8 JSON ({reason})") from None
    problem = header_problem(header)
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


def check_fit(name: str, header: dict, config: ModelConfig) -> None:
    """Refuses latents whose shape or rates are not the model's (a header that names
    the right model but not its numbers is corrupt or forged)."""
    wanted = {
        "sample_rate": config.sample_rate,
        "chunk_samples": config.chunk_samples,
        "num_latents": config.num_latents,
        "latent_dim": config.latent_dim,
    }
    for key, value in wanted.items():
        if header[key] != value:
            raise ModelError(f"{name}: header says {key} {header[key]}, but the model has {value}")


def _source_name(source: str | Path | BinaryIO) -> str:
    """Name to start error messages with: the path, or the stream's own name."""
    if isinstance(source, (str, Path)):
        return str(source)
    name = getattr(source, "name", None)
    return name if isinstance(name, str) else "<stream>"


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
class _Reader:
    """A container being read from a stream: header first, then the payload in blocks."""

    stream: BinaryIO
    name: str
    header: dict = field(default_factory=dict)
    preamble: _Preamble | None = None

    def read_header(self) -> tuple[dict, int]:
        head = read_up_to(self.stream, PREAMBLE.size)
        self.preamble = _parse_preamble(head, self.name)
        raw = read_up_to(self.stream, self.preamble.header_len)
        if len(raw) < self.preamble.header_len:
            raise ContainerError(
                f"{self.name}: truncated header: expected {self.preamble.header_len} bytes, "
                f"found {len(raw)}"
            )
        offset = PREAMBLE.size + len(raw)
        if self.preamble.header_checksum:
            self._check_header_checksum(head + raw)
            offset += CHECKSUM.size
        self.header = _parse_header(raw, self.name)
        return self.header, offset

    def _check_header_checksum(self, covered: bytes) -> None:
        stored = read_up_to(self.stream, CHECKSUM.size)
        if len(stored) < CHECKSUM.size:
            raise ContainerError(f"{self.name}: truncated header: its checksum is missing")
        (value,) = CHECKSUM.unpack(stored)
        if value != zlib.crc32(covered):
            raise ContainerError(
                f"{self.name}: header checksum mismatch, the header is corrupt "
                f"(stored CRC32 {value:08x}, computed {zlib.crc32(covered):08x})"
            )

    @property
    def payload_bytes(self) -> int:
        header = self.header
        count = header["channels"] * header["chunks"] * header["num_latents"]
        return count * header["latent_dim"] * VALUE_BYTES

    @property
    def size(self) -> int:
        """The whole container's size, as its header announces it."""
        assert self.preamble is not None
        header = self.header
        return container_size(
            header["channels"],
            header["chunks"],
            self.preamble.header_len,
            header["num_latents"],
            header["latent_dim"],
            self.preamble.major,
        )

    def check_size(self, file_size: int) -> None:
        """Compares the size the header announces with a file's real size, before
        any payload is read."""
        if file_size < self.size:
            after = file_size - (self.size - self.payload_bytes - CHECKSUM.size)
            raise self._truncated(max(after, 0))
        if file_size > self.size:
            raise self._trailing(file_size - self.size, f", file has {file_size}")

    def _truncated(self, found: int) -> ContainerError:
        return ContainerError(
            f"{self.name}: truncated payload: header announces {self.payload_bytes} bytes "
            f"of latents plus a {CHECKSUM.size}-byte checksum, "
            f"but only {found} bytes follow the header"
        )

    def _trailing(self, extra: int | str, found: str = "") -> ContainerError:
        return ContainerError(
            f"{self.name}: unexpected data after the checksum: {extra} extra "
            f"bytes (header announces a {self.size}-byte container{found})"
        )

    @property
    def chunk_bytes(self) -> int:
        """The bytes of one chunk, all its channels."""
        header = self.header
        return header["channels"] * header["num_latents"] * header["latent_dim"] * VALUE_BYTES

    def payload(self, block_bytes: int = BLOCK_BYTES) -> Iterator[bytes]:
        """Yields the payload in blocks of `block_bytes` (the last may be shorter);
        raises at the end if it is short, followed by more data, or fails its checksum."""
        left, crc, found = self.payload_bytes, 0, 0
        while left:
            block = read_up_to(self.stream, min(left, block_bytes))
            if not block:
                raise self._truncated(found)
            crc = zlib.crc32(block, crc)
            found += len(block)
            left -= len(block)
            yield block
        stored = read_up_to(self.stream, CHECKSUM.size)
        if len(stored) < CHECKSUM.size:
            raise self._truncated(found + len(stored))
        extra = self.stream.read(1)
        if extra:
            more = len(extra) + len(read_up_to(self.stream, BLOCK_BYTES))
            raise self._trailing(more if more <= BLOCK_BYTES else f"over {BLOCK_BYTES}")
        (value,) = CHECKSUM.unpack(stored)
        if value != crc:
            raise ContainerError(
                f"{self.name}: checksum mismatch, the latents are corrupt "
                f"(stored CRC32 {value:08x}, computed {crc:08x})"
            )


def _regular_size(stream: BinaryIO) -> int | None:
    """The size of the file behind `stream` when it is a regular file at its start."""
    try:
        status = os.fstat(stream.fileno())
        position = stream.tell()
    except (AttributeError, OSError, ValueError):
        return _memory_size(stream)
    return status.st_size - position if stat.S_ISREG(status.st_mode) else None


def _memory_size(stream: BinaryIO) -> int | None:
    getbuffer = getattr(stream, "getbuffer", None)
    if getbuffer is None:
        return None
    return getbuffer().nbytes - stream.tell()


def _read(
    source: str | Path | BinaryIO,
    expected_model_id: str | None,
    model: ModelConfig | None,
    keep: bool,
) -> tuple[dict, bytes]:
    """Reads and verifies a whole container; returns its header and (when `keep`) its
    payload. Checks the model and the file's size before reading the payload."""
    name = _source_name(source)
    if isinstance(source, (str, Path)):
        with _open_for_read(Path(source)) as stream:
            return _verify(_Reader(stream, name), expected_model_id, model, keep)
    return _verify(_Reader(source, name), expected_model_id, model, keep)


def _verify(
    reader: _Reader, expected_model_id: str | None, model: ModelConfig | None, keep: bool
) -> tuple[dict, bytes]:
    header, _ = _start(reader, expected_model_id, model)
    blocks = [block for block in reader.payload() if keep]
    return header, b"".join(blocks)


def _start(
    reader: _Reader, expected_model_id: str | None, model: ModelConfig | None
) -> tuple[dict, int]:
    """Reads the header and checks all that can be checked before the payload: the
    model, and the file's size when it is a regular file. Returns the header and the
    payload's offset."""
    size = _regular_size(reader.stream)
    header, offset = reader.read_header()
    if expected_model_id is not None:
        check_model(reader.name, header["model_id"], header["model_name"], expected_model_id)
    if model is not None:
        check_fit(reader.name, header, model)
    if size is not None:
        reader.check_size(size)
    return header, offset


def read_chunks(
    source: str | Path | BinaryIO,
    expected_model_id: str | None = None,
    model: ModelConfig | None = None,
    chunks_per_block: int = 1,
) -> tuple[dict, Iterator[bytes]]:
    """A container read as it arrives: the header, checked as `read_container` checks
    it, and then the payload in blocks of `chunks_per_block` whole chunks (the last
    block may hold fewer). The payload's checksum and the end of the container are
    checked after the last block, so a stream's corruption is found only there."""
    name = _source_name(source)
    owned = isinstance(source, (str, Path))
    stream = _open_for_read(Path(source)) if isinstance(source, (str, Path)) else source
    try:
        reader = _Reader(stream, name)
        header, _ = _start(reader, expected_model_id, model)
    except BaseException:
        if owned:
            stream.close()
        raise
    return header, _blocks(reader, reader.chunk_bytes * max(chunks_per_block, 1), owned)


def _blocks(reader: _Reader, block_bytes: int, owned: bool) -> Iterator[bytes]:
    """The payload's blocks; the stream is closed at the end when it is ours."""
    try:
        yield from reader.payload(block_bytes)
    finally:
        if owned:
            reader.stream.close()


def payload_offset(
    path: str | Path, expected_model_id: str | None = None, model: ModelConfig | None = None
) -> tuple[dict, int]:
    """A container file's checked header and where its payload starts, once the file's
    size is the one the header announces: for reading chunks in place (a memory map).
    The payload itself is not read, so its checksum is not checked."""
    with _open_for_read(Path(path)) as stream:
        if _regular_size(stream) is None:
            raise ContainerError(f"{path}: not a regular file")
        return _start(_Reader(stream, str(path)), expected_model_id, model)


def read_container(
    source: str | Path | BinaryIO,
    expected_model_id: str | None = None,
    model: ModelConfig | None = None,
) -> tuple[dict, bytes]:
    """A whole container's header and payload, verified (see `Latents.load`)."""
    return _read(source, expected_model_id, model, keep=True)


def container_bytes(header: dict, payload: bytes) -> bytes:
    """A container of the current version: header (checked) and payload, checksummed."""
    problem = header_problem(header)
    if problem:
        raise ValueError(f"cannot write latents: {problem}")
    raw = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    raw_header = raw.encode("utf-8")
    if len(raw_header) > MAX_HEADER_BYTES:
        raise ValueError(f"cannot write latents: header over {MAX_HEADER_BYTES} bytes")
    head = PREAMBLE.pack(MAGIC, *VERSION, len(raw_header)) + raw_header
    return head + CHECKSUM.pack(zlib.crc32(head)) + payload + CHECKSUM.pack(zlib.crc32(payload))


def read_header(source: str | Path | BinaryIO) -> tuple[dict, int]:
    """Read and check only preamble and header; no payload. Returns the header and
    the payload's offset."""
    name = _source_name(source)
    if isinstance(source, (str, Path)):
        with _open_for_read(Path(source)) as stream:
            return _Reader(stream, name).read_header()
    return _Reader(source, name).read_header()


def verify(source: str | Path | BinaryIO) -> dict:
    """Reads a whole container and checks it is intact (for `m2l info`); returns its
    header. The payload is checked block by block and not kept."""
    return _read(source, None, None, keep=False)[0]
