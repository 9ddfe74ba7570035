"""Weights files: safetensors with the config and model name in the metadata.

A model's id is the first 12 hex digits of a sha256 over its metadata (keys sorted)
and its tensors (names sorted; dtype, shape and bytes), so the same weights always
carry the same id, however the file's header happens to be ordered, and containers
can name the model that made them. Only safetensors is read: no pickle ever runs.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from .config import ModelConfig
from .errors import ModelError
from .model import Music2Latent2

FORMAT_TAG = "m2l-weights-1"
DEFAULT_MODEL_FILE = "default.safetensors"
MODEL_VARIABLE = "M2L_MODEL"


def model_id_of(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> str:
    """The canonical id of these weights (see the module docstring)."""
    digest = hashlib.sha256(json.dumps(metadata, sort_keys=True).encode())
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous().flatten()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensors[name].shape)}|".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:12]


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


def _metadata(data: bytes, name: str) -> dict[str, str]:
    """Reads the safetensors header's metadata without loading the tensors."""
    if len(data) < 8:
        raise ModelError(f"{name}: not a safetensors weights file")
    header_size = int.from_bytes(data[:8], "little")
    try:
        header = json.loads(data[8 : 8 + header_size])
    except (ValueError, UnicodeDecodeError):
        raise ModelError(f"{name}: not a safetensors weights file") from None
    metadata = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT_TAG:
        raise ModelError(f"{name}: safetensors file without m2l model metadata")
    return metadata


def deserialize(data: bytes, name: str) -> tuple[Music2Latent2, dict[str, str], str]:
    """Bytes of a weights file -> (model in float32, metadata, model id). Checks everything."""
    metadata = _metadata(data, name)
    try:
        config = ModelConfig.from_json(metadata["config"])
    except (KeyError, ValueError, TypeError) as error:
        raise ModelError(f"{name}: bad model config in weights metadata ({error})") from None
    try:
        tensors = load_tensors(data)
    except (SafetensorError, ValueError) as error:
        raise ModelError(f"{name}: corrupt safetensors data ({error})") from None
    model = Music2Latent2(config)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        first = (missing or unexpected)[0]
        kind = "missing" if missing else "unexpected"
        raise ModelError(f"{name}: weights do not match their config ({kind} tensor {first})")
    for key, value in expected.items():
        if tuple(tensors[key].shape) != tuple(value.shape):
            raise ModelError(
                f"{name}: weights do not match their config ({key} has shape "
                f"{tuple(tensors[key].shape)}, config needs {tuple(value.shape)})"
            )
    model.load_state_dict({key: value.float() for key, value in tensors.items()})
    return model, metadata, model_id_of(tensors, metadata)


def read_weights(path: str | Path) -> tuple[Music2Latent2, dict[str, str], str]:
    """Path -> (model, metadata, model id)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ModelError(f"{path}: no such weights file") from None
    except IsADirectoryError:
        raise ModelError(f"{path}: is a directory, not a weights file") from None
    except OSError as error:
        raise ModelError(f"{path}: cannot read weights ({error.strerror})") from None
    return deserialize(data, str(path))
