"""Training checkpoints in one safetensors file: weights, EMA weights, optimizer state,
random generator states, and (as metadata) the step and both configs.

No pickle: every tensor is a named tensor, everything else is JSON in the metadata.
Writes go to a temporary file renamed into place, so a crash never leaves half a file.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from .errors import ModelError

FORMAT_TAG = "m2l-checkpoint-1"


@dataclass
class Checkpoint:
    step: int
    model: dict[str, torch.Tensor]
    ema: dict[str, torch.Tensor]
    optimizer: dict
    generators: dict[str, torch.Tensor]
    metadata: dict[str, str]


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
    metadata = dict(
        checkpoint.metadata, format=FORMAT_TAG, step=str(checkpoint.step), param_groups=groups
    )
    path = Path(path)
    temporary = path.with_name(f".{path.name}.part")
    save_file(tensors, str(temporary), metadata=metadata)
    os.replace(temporary, path)


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
    groups = json.loads(metadata.pop("param_groups"))
    step = int(metadata.pop("step"))
    optimizer = {"state": optimizer_state, "param_groups": groups}
    return Checkpoint(step, parts["model"], parts["ema"], optimizer, parts["generator"], metadata)
