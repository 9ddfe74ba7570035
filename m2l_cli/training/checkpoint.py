"""Training checkpoints in one safetensors file: weights, EMA weights, optimizer state,
random generator states, and (as metadata) the step and both configs; and the export of
a checkpoint's EMA weights as a model file.

No pickle: every tensor is a named tensor, everything else is JSON in the metadata.
Writes go to a temporary file renamed into place, so a crash never leaves half a file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from ..atomic import AtomicOutput
from ..config import ModelConfig
from ..errors import ModelError
from ..model import Music2Latent2
from ..weights import serialize
from .config import TrainConfig

FORMAT_TAG = "m2l-checkpoint-1"
CHECKPOINT_NAME = "checkpoint.safetensors"


@dataclass
class Checkpoint:
    step: int
    model: dict[str, torch.Tensor]
    ema: dict[str, torch.Tensor]
    optimizer: dict
    generators: dict[str, torch.Tensor]
    model_config: ModelConfig
    train_config: TrainConfig


def _optimizer_tensors(state: dict) -> tuple[dict[str, torch.Tensor], str]:
    tensors = {}
    for index, values in state["state"].items():
        for key, value in values.items():
            tensors[f"optimizer.{index}.{key}"] = torch.as_tensor(value).clone()
    return tensors, json.dumps(state["param_groups"])


def save_checkpoint(path: str | Path, checkpoint: Checkpoint) -> None:
    """Writes atomically (temporary file, then rename)."""
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in checkpoint.model.items()}
    tensors.update({f"ema.{k}": v.detach().cpu().contiguous() for k, v in checkpoint.ema.items()})
    optimizer_tensors, groups = _optimizer_tensors(checkpoint.optimizer)
    tensors.update({k: v.cpu().contiguous() for k, v in optimizer_tensors.items()})
    tensors.update({f"generator.{k}": v for k, v in checkpoint.generators.items()})
    metadata = {
        "format": FORMAT_TAG,
        "step": str(checkpoint.step),
        "param_groups": groups,
        "model_config": checkpoint.model_config.to_json(),
        "train_config": checkpoint.train_config.to_json(),
    }
    with AtomicOutput(path) as temporary:
        save_file(tensors, str(temporary), metadata=metadata)


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Reads a checkpoint written by `save_checkpoint`; one-line errors otherwise."""
    try:
        tensors = load_file(str(path))
        with safe_open(str(path), "pt") as handle:
            metadata = handle.metadata() or {}
    except FileNotFoundError:
        raise ModelError(f"{path}: no such checkpoint") from None
    except (SafetensorError, OSError, ValueError) as error:
        raise ModelError(f"{path}: not a readable checkpoint ({error})") from None
    if metadata.get("format") != FORMAT_TAG:
        raise ModelError(f"{path}: not an m2l training checkpoint")
    parts: dict[str, dict[str, torch.Tensor]] = {"model": {}, "ema": {}, "generator": {}}
    optimizer_state: dict[int, dict[str, torch.Tensor]] = {}
    for name, tensor in tensors.items():
        kind, rest = name.split(".", 1)
        if kind == "optimizer":
            index, key = rest.split(".", 1)
            optimizer_state.setdefault(int(index), {})[key] = tensor
        else:
            parts[kind][rest] = tensor
    try:
        model_config = ModelConfig.from_json(metadata["model_config"])
        train_config = TrainConfig.from_json(metadata["train_config"])
        groups = json.loads(metadata["param_groups"])
        step = int(metadata["step"])
    except (KeyError, ValueError, TypeError) as error:
        raise ModelError(f"{path}: bad checkpoint metadata ({error})") from None
    optimizer = {"state": optimizer_state, "param_groups": groups}
    return Checkpoint(
        step,
        parts["model"],
        parts["ema"],
        optimizer,
        parts["generator"],
        model_config,
        train_config,
    )


def export_checkpoint(checkpoint: Path, output: Path, name: str | None = None) -> str:
    """Writes the checkpoint's EMA weights as a float16 weights file; returns its model id."""
    state = load_checkpoint(checkpoint)
    model = Music2Latent2(state.model_config)
    model.load_state_dict(state.ema)
    data, model_id = serialize(
        model, name or f"{state.model_config.name}-step{state.step}", torch.float16
    )
    with AtomicOutput(output) as temporary:
        temporary.write_bytes(data)
    return model_id
