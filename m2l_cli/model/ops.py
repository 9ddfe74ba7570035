"""Attention and GroupNorm with backward passes that are fast on a CPU.

torch's CPU kernels are fast forwards, but two backwards are not: the flash-attention
backward (~3x slower than recomputing the probabilities with matrix products), and
GroupNorm's backward on channels_last bf16 maps (~7x slower than on contiguous ones).
These functions keep torch's forward and give each a faster backward; without
gradients (and for float32 maps, whose channels_last backward is fast) they are the
plain torch calls. The numbers are the same up to rounding.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch.autograd import Function


def attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v over [..., tokens, head_dim]."""
    if query.requires_grad or key.requires_grad or value.requires_grad:
        return _Attention.apply(query, key, value)
    return F.scaled_dot_product_attention(query, key, value)


class _Attention(Function):
    """The flash-attention forward; the backward recomputes the probabilities in
    float32 and uses four matrix products (dP = dO V^T, dS = P (dP - rowsum(P dP)))."""

    @staticmethod
    def forward(
        ctx: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor
    ) -> torch.Tensor:
        ctx.save_for_backward(query, key, value)
        return F.scaled_dot_product_attention(query, key, value)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, ...]:
        query, key, value = ctx.saved_tensors
        scale = query.shape[-1] ** -0.5
        q, k, v, g = query.float(), key.float(), value.float(), grad.float()
        probabilities = torch.softmax(q @ k.transpose(-1, -2) * scale, dim=-1)
        grad_probabilities = g @ v.transpose(-1, -2)
        row = (probabilities * grad_probabilities).sum(-1, keepdim=True)
        grad_scores = probabilities * (grad_probabilities - row) * scale
        return (
            (grad_scores @ k).to(query.dtype),
            (grad_scores.transpose(-1, -2) @ q).to(key.dtype),
            (probabilities.transpose(-1, -2) @ g).to(value.dtype),
        )


def group_norm(
    x: torch.Tensor,
    groups: int,
    weight: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    eps: float = 1e-5,
) -> torch.Tensor:
    """F.group_norm; on a reduced-precision channels_last map that needs gradients, its
    backward runs on contiguous copies (float32 maps are ~1.5x faster without them)."""
    channels_last = x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)
    channels_last = channels_last and x.dtype in (torch.bfloat16, torch.float16)
    needs_grad = torch.is_grad_enabled() and any(
        tensor is not None and tensor.requires_grad for tensor in (x, weight, bias)
    )
    if channels_last and needs_grad and not x.is_contiguous():
        return _ChannelsLastGroupNorm.apply(x, groups, weight, bias, eps)
    return F.group_norm(x, groups, weight, bias, eps)


class _ChannelsLastGroupNorm(Function):
    """torch's GroupNorm forward; its backward on contiguous copies of the map and its
    gradient, the input's gradient returned channels_last again."""

    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        groups: int,
        weight: torch.Tensor | None,
        bias: torch.Tensor | None,
        eps: float,
    ) -> torch.Tensor:
        batch, channels = x.shape[:2]
        size = x.numel() // (batch * channels)
        output, mean, rstd = torch.ops.aten.native_group_norm(
            x, weight, bias, batch, channels, size, groups, eps
        )
        ctx.save_for_backward(x, weight, mean, rstd)
        ctx.shape = (batch, channels, size, groups)
        ctx.has_bias = bias is not None
        return output

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight, mean, rstd = ctx.saved_tensors
        batch, channels, size, groups = ctx.shape
        needs = (
            ctx.needs_input_grad[0],
            weight is not None and ctx.needs_input_grad[2],
            ctx.has_bias and ctx.needs_input_grad[3],
        )
        grad_x, grad_weight, grad_bias = torch.ops.aten.native_group_norm_backward(
            grad.contiguous(),
            x.contiguous(),
            mean,
            rstd,
            weight,
            batch,
            channels,
            size,
            groups,
            list(needs),
        )
        if grad_x is not None:
            grad_x = grad_x.contiguous(memory_format=torch.channels_last)
        return grad_x, None, grad_weight, grad_bias, None
