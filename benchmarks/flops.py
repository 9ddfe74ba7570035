"""Counting the FLOPs of a call, by operation and by the dtype it ran in.

torch.utils.flop_counter knows the FLOPs of convolutions, matrix products and
attention (a multiply-add is 2 FLOPs); this counter uses its formulas but also records
the dtype of each operation's inputs, so a mixed-precision call can be compared with
the peak of each precision. The CPU flash-attention kernels are unknown to torch's
table: they are counted with its own SDPA formulas (as full attention).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any
from unittest import mock

import torch
from torch.utils import flop_counter
from torch.utils._python_dispatch import TorchDispatchMode


def _cpu_attention(query, key, value, *args, out_val=None, **kwargs) -> int:
    return flop_counter.sdpa_flop_count(query.shape, key.shape, value.shape)


def _cpu_attention_backward(grad, query, key, value, *args, out_val=None, **kwargs) -> int:
    return flop_counter.sdpa_backward_flop_count(grad.shape, query.shape, key.shape, value.shape)


def _registry() -> dict[Any, Callable[..., int]]:
    table: dict[Any, Callable[..., int]] = dict(flop_counter.flop_registry)
    extra = {
        "_scaled_dot_product_flash_attention_for_cpu": _cpu_attention,
        "_scaled_dot_product_flash_attention_for_cpu_backward": _cpu_attention_backward,
    }
    for name, formula in extra.items():
        operation = getattr(torch.ops.aten, name, None)
        if operation is not None:
            table[operation] = formula
    return table


class FlopCounter(TorchDispatchMode):
    """Inside `with FlopCounter() as counter:`, counts FLOPs into `by_dtype` and `by_op`."""

    def __init__(self) -> None:
        super().__init__()
        self.registry = _registry()
        self.by_dtype: dict[str, float] = defaultdict(float)
        self.by_op: dict[str, float] = defaultdict(float)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        output = func(*args, **kwargs)
        formula = self.registry.get(func._overloadpacket)
        if formula is not None:
            count = float(formula(*args, **kwargs, out_val=output))
            dtype = next(
                (str(x.dtype).removeprefix("torch.") for x in args if isinstance(x, torch.Tensor)),
                "unknown",
            )
            self.by_dtype[dtype] += count
            self.by_op[f"{func._overloadpacket} {dtype}"] += count
        return output

    @property
    def total(self) -> float:
        return sum(self.by_dtype.values())


def count(function: Callable[[], object]) -> FlopCounter:
    """Runs `function` once under a counter and returns the counter. A dispatch mode
    sees no operation inside torch.inference_mode, so while counting, inference mode
    is replaced by no_grad (the same operations, without the inference tensors)."""
    with mock.patch.object(torch, "inference_mode", no_grad_instead), FlopCounter() as counter:
        function()
    return counter


def no_grad_instead(mode: bool = True) -> torch.no_grad:
    """Stands in for torch.inference_mode() while counting."""
    return torch.no_grad()
