"""Where and how the networks run: the device, the numeric precision, CPU threads.

One policy for the codec and the trainer, so both pick devices and precisions alike.
Nothing here runs on import or behind a constructor: changing process-wide state (the
thread count) is an explicit call.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch

from .errors import M2LError

AUTO = "auto"
PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(name: str | torch.device = AUTO) -> torch.device:
    """'auto' picks CUDA, then MPS, then the CPU; any other torch device string
    ('cpu', 'cuda', 'cuda:1', 'mps', ...) must name a device this machine has."""
    if str(name) == AUTO:
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise M2LError(
            f"unknown device {str(name)!r}; choose auto, cpu, cuda, cuda:N, mps "
            "or another torch device"
        ) from None
    if not device_available(device):
        raise M2LError(f"device {name} is not available on this machine")
    return device


def device_available(device: torch.device) -> bool:
    """True when this machine (and this torch build) can run on `device`."""
    if device.type == "cpu":
        return True
    if device.type == "mps":
        return torch.backends.mps.is_available()
    backend = getattr(torch, device.type, None)
    if backend is None or not hasattr(backend, "is_available") or not backend.is_available():
        return False
    return device.index is None or device.index < backend.device_count()


def cpu_has_fast_bf16() -> bool:
    """True when the CPU computes bfloat16 natively (AVX512-BF16 or AMX)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(name: str, device: torch.device) -> str:
    """'auto': half precision on a GPU, bf16 on a CPU that has it, else fp32."""
    if name == AUTO:
        if device.type in ("cuda", "mps"):
            return "fp16"
        return "bf16" if cpu_has_fast_bf16() else "fp32"
    if name not in PRECISIONS:
        raise M2LError(f"unknown precision {name!r}; choose auto, fp32, bf16 or fp16")
    return name


def resolve_training_precision(name: str, device: torch.device) -> str:
    """Training's precision. 'auto': bf16 on CUDA and on CPUs that compute it natively,
    else fp32. fp16 would need loss scaling, which training does not do: refused."""
    if name == AUTO:
        native = device.type == "cuda" or (device.type == "cpu" and cpu_has_fast_bf16())
        return "bf16" if native else "fp32"
    if name not in ("fp32", "bf16"):
        raise M2LError(f"training precision {name!r}: choose auto, fp32 or bf16")
    return name


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The autocast context for a resolved precision ('fp32': none)."""
    dtype = PRECISIONS[precision]
    return torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)


def set_threads(count: int) -> None:
    """Sets the number of CPU threads torch uses, for the whole process."""
    if count < 1:
        raise M2LError(f"threads must be at least 1, got {count}")
    torch.set_num_threads(count)
