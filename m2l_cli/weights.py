"""Weights files: safetensors with the config and model name in the metadata.

A model's id is the first 12 hex digits of a sha256 over its metadata (keys sorted)
and its tensors (names sorted; dtype, shape and bytes), so the same weights always
carry the same id, however the file's header happens to be ordered, and containers
can name the model that made them. Only safetensors is read: no pickle ever runs.
A file's header and config are checked first (`weights_header`), and building its
network may allocate no more than its tensors justify.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors
from torch.overrides import TorchFunctionMode

from .errors import ModelError
from .model import Music2Latent2
from .weights_header import (
    FORMAT_TAG,
    MODEL_VARIABLE,
    WeightsHeader,
    default_model_path,
    find_model,
    parse_header,
    read_file,
)

BUILD_SLACK = 1 << 20
"""Numbers a model's construction may allocate beyond twice its file's (small
temporaries: masks, ranges)."""

__all__ = [
    "FORMAT_TAG",
    "MODEL_VARIABLE",
    "default_model_path",
    "deserialize",
    "file_metadata",
    "find_model",
    "model_id_of",
    "read_weights",
    "serialize",
]


def model_id_of(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> str:
    """The canonical id of these weights (see the module docstring)."""
    digest = hashlib.sha256(json.dumps(metadata, sort_keys=True).encode())
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous().flatten()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensors[name].shape)}|".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:12]


def file_metadata(model: Music2Latent2, model_name: str, trained: bool) -> dict[str, str]:
    """What a weights file says about its model, besides the tensors."""
    return {
        "format": FORMAT_TAG,
        "config": model.config.to_json(),
        "model_name": model_name,
        "trained": "yes" if trained else "no",
    }


def serialize(
    model: Music2Latent2, model_name: str, dtype: torch.dtype | None = None, trained: bool = True
) -> tuple[bytes, str]:
    """The weights file's bytes (optionally cast, e.g. to float16) and its model id."""
    tensors = {
        key: (value.to(dtype) if dtype is not None and value.is_floating_point() else value)
        .detach()
        .cpu()
        .contiguous()
        for key, value in model.state_dict().items()
    }
    metadata = file_metadata(model, model_name, trained)
    return save_tensors(tensors, metadata=metadata), model_id_of(tensors, metadata)


class AllocationBudget(TorchFunctionMode):
    """Counts what tensor factories are asked to allocate while a model is built and
    refuses, before allocating, whatever goes past `numbers`: a config that claims
    more than its file holds fails at once instead of taking the machine's memory."""

    FACTORIES = frozenset(
        {torch.empty, torch.zeros, torch.ones, torch.full, torch.rand, torch.randn}
    )

    def __init__(self, numbers: int, name: str) -> None:
        super().__init__()
        self.left, self.name = numbers, name

    def __torch_function__(
        self, func: Callable, types: object, args: tuple = (), kwargs: dict | None = None
    ) -> object:
        kwargs = kwargs or {}
        if func in self.FACTORIES:
            self.left -= _requested(args, kwargs)
            if self.left < 0:
                raise ModelError(
                    f"{self.name}: its config describes a bigger model than its tensors hold"
                )
        return func(*args, **kwargs)


def _requested(args: tuple, kwargs: dict) -> int:
    """The number of elements a factory call asks for (`empty(2, 3)`, `full((2, 3), x)`)."""
    size = kwargs.get("size", args[0] if args else ())
    if isinstance(size, int):
        size = tuple(value for value in args if isinstance(value, int))
    return math.prod(int(value) for value in size)


def build_model(header: WeightsHeader, name: str) -> Music2Latent2:
    """The network the header's config describes, built within the allocation its
    file's tensors justify."""
    with AllocationBudget(2 * header.numbers + BUILD_SLACK, name):
        return Music2Latent2(header.config)


def deserialize(data: bytes, name: str) -> tuple[Music2Latent2, dict[str, str], str]:
    """Bytes of a weights file -> (model in float32, metadata, model id). Checks everything,
    the header and config before building anything."""
    header = parse_header(data, len(data), name)
    model = build_model(header, name)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(header.tensors))
    unexpected = sorted(set(header.tensors) - set(expected))
    if missing or unexpected:
        first = (missing or unexpected)[0]
        kind = "missing" if missing else "unexpected"
        raise ModelError(f"{name}: weights do not match their config ({kind} tensor {first})")
    for key, value in expected.items():
        if header.tensors[key].shape != tuple(value.shape):
            raise ModelError(
                f"{name}: weights do not match their config ({key} has shape "
                f"{header.tensors[key].shape}, config needs {tuple(value.shape)})"
            )
    try:
        tensors = load_tensors(data)
    except (SafetensorError, ValueError) as error:
        raise ModelError(f"{name}: corrupt safetensors data ({error})") from None
    model.load_state_dict({key: value.float() for key, value in tensors.items()})
    return model, header.metadata, model_id_of(tensors, header.metadata)


def read_weights(path: str | Path) -> tuple[Music2Latent2, dict[str, str], str]:
    """Path -> (model, metadata, model id)."""
    return deserialize(read_file(path), str(path))
