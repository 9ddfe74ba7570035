"""A weights file read and checked without torch: which file to load (`--model`,
$M2L_MODEL or the bundled one), that it is a regular file of bounded size, and its
safetensors header: the tensor table against the file's real size, the m2l metadata
and the model config, all before a byte of tensor data is read or a network built."""

from __future__ import annotations

import json
import math
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from .config import ModelConfig
from .errors import ModelError

FORMAT_TAG = "m2l-weights-1"
DEFAULT_MODEL_FILE = "default.safetensors"
MODEL_VARIABLE = "M2L_MODEL"
MAX_FILE_BYTES = 8 << 30
MAX_HEADER_BYTES = 16 << 20
MAX_METADATA_CHARS = 1 << 16
FLOAT_SIZES = {"F16": 2, "BF16": 2, "F32": 4, "F64": 8}
"""The tensor types a weights file may hold (every tensor of the model is a float)."""


@dataclass(frozen=True)
class TensorEntry:
    """One row of the safetensors table: type, shape and where its bytes lie."""

    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int

    @property
    def numbers(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class WeightsHeader:
    """What a weights file's header says, checked."""

    metadata: dict[str, str]
    config: ModelConfig
    tensors: dict[str, TensorEntry]

    @property
    def numbers(self) -> int:
        """How many numbers the tensors hold in all."""
        return sum(entry.numbers for entry in self.tensors.values())


def default_model_path() -> Path | None:
    """The model bundled with the package, if this build ships one."""
    path = Path(__file__).parent / "weights" / DEFAULT_MODEL_FILE
    return path if path.is_file() else None


def find_model(path: str | Path | None = None) -> Path:
    """The weights file to load: `path`, else the one $M2L_MODEL names, else the
    bundled default; a one-line ModelError when there is none."""
    chosen = path or os.environ.get(MODEL_VARIABLE) or default_model_path()
    if not chosen:
        raise ModelError(
            "no model: none given and no bundled default found; "
            f"pass --model PATH or set {MODEL_VARIABLE}"
        )
    return Path(chosen)


def read_file(path: str | Path) -> bytes:
    """The bytes of a weights file, once it is known to be a regular file of at most
    MAX_FILE_BYTES whose header checks out (a FIFO or device is refused unopened for
    reading, so it can neither block nor stream without end)."""
    with _checked_stream(path) as (stream, head, _):
        try:
            return head + stream.read()
        except OSError as error:
            raise ModelError(f"{path}: cannot read weights ({error.strerror})") from None


def check_file(path: str | Path) -> WeightsHeader:
    """The checked header of a weights file, without reading its tensors: a missing or
    broken model is reported in a moment, before torch is imported."""
    with _checked_stream(path) as (_, _, header):
        return header


@contextmanager
def _checked_stream(path: str | Path) -> Iterator[tuple[BinaryIO, bytes, WeightsHeader]]:
    """An open weights file, its header bytes and the header they hold, checked; the
    stream is left just after the header."""
    path = Path(path)
    try:
        handle = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise ModelError(f"{path}: no such weights file") from None
    except OSError as error:
        raise ModelError(f"{path}: cannot read weights ({error.strerror})") from None
    with os.fdopen(handle, "rb") as stream:
        status = os.fstat(stream.fileno())
        if stat.S_ISDIR(status.st_mode):
            raise ModelError(f"{path}: is a directory, not a weights file")
        if not stat.S_ISREG(status.st_mode):
            raise ModelError(f"{path}: not a regular file, so not a weights file")
        if status.st_size > MAX_FILE_BYTES:
            raise ModelError(f"{path}: {status.st_size} bytes, over the {MAX_FILE_BYTES} limit")
        head = stream.read(8)
        length = _header_length(head, status.st_size, str(path))
        head += stream.read(length)
        yield stream, head, parse_header(head, status.st_size, str(path))


def _header_length(head: bytes, size: int, name: str) -> int:
    if len(head) < 8:
        raise ModelError(f"{name}: not a safetensors weights file (too short)")
    length = int.from_bytes(head[:8], "little")
    if length > min(MAX_HEADER_BYTES, size - 8):
        raise ModelError(f"{name}: not a safetensors weights file (header length {length})")
    return length


def parse_header(data: bytes, size: int, name: str) -> WeightsHeader:
    """Checks the header at the start of `data` (of a file of `size` bytes): the
    tensor table must cover the data exactly, and the metadata must hold a valid
    config; ModelError otherwise."""
    length = _header_length(data, size, name)
    try:
        header = json.loads(data[8 : 8 + length].decode("utf-8"))
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeError too
        raise ModelError(f"{name}: not a safetensors weights file") from None
    if not isinstance(header, dict):
        raise ModelError(f"{name}: not a safetensors weights file")
    metadata = _metadata(header.pop("__metadata__", None), name)
    tensors = {key: _entry(key, value, name) for key, value in header.items()}
    _check_layout(tensors, size - 8 - length, name)
    return WeightsHeader(metadata, _config(metadata, name), tensors)


def _metadata(metadata: object, name: str) -> dict[str, str]:
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT_TAG:
        raise ModelError(f"{name}: safetensors file without m2l model metadata")
    for key, value in metadata.items():
        if not isinstance(value, str) or len(key) + len(value) > MAX_METADATA_CHARS:
            raise ModelError(f"{name}: bad m2l model metadata ({key!r:.40})")
    return metadata


def _config(metadata: dict[str, str], name: str) -> ModelConfig:
    try:
        return ModelConfig.from_json(metadata["config"])
    except (KeyError, ValueError, TypeError, RecursionError) as error:
        reason = "nested too deeply" if isinstance(error, RecursionError) else error
        raise ModelError(f"{name}: bad model config in weights metadata ({reason})") from None


def _entry(key: str, value: object, name: str) -> TensorEntry:
    """One tensor's row, checked for types, a float dtype and a consistent byte count."""
    bad = ModelError(f"{name}: corrupt safetensors header (tensor {key!r:.60})")
    if not isinstance(value, dict):
        raise bad
    dtype, shape, offsets = value.get("dtype"), value.get("shape"), value.get("data_offsets")
    if not isinstance(dtype, str) or dtype not in FLOAT_SIZES:
        raise ModelError(f"{name}: tensor {key!r:.60} has type {dtype!r:.20}; weights are floats")
    if not isinstance(shape, list) or len(shape) > 8 or not all(_natural(n) for n in shape):
        raise bad
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(map(_natural, offsets)):
        raise bad
    entry = TensorEntry(dtype, tuple(shape), offsets[0], offsets[1])
    if entry.end - entry.start != entry.numbers * FLOAT_SIZES[dtype]:
        raise bad
    return entry


def _natural(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1 << 40


def _check_layout(tensors: dict[str, TensorEntry], data_bytes: int, name: str) -> None:
    """The tensors' byte ranges must tile the data after the header, exactly."""
    position = 0
    for entry in sorted(tensors.values(), key=lambda entry: (entry.start, entry.end)):
        if entry.start != position:
            raise ModelError(f"{name}: corrupt safetensors header (tensor data overlap or gap)")
        position = entry.end
    if position != data_bytes:
        raise ModelError(
            f"{name}: tensors take {position} bytes but the file holds {data_bytes} after "
            "its header (truncated or padded)"
        )
