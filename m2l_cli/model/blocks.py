"""Building blocks shared by the encoder, decoder and consistency model."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .ops import attention, group_norm


def sinusoidal_embedding(values: torch.Tensor, dim: int) -> torch.Tensor:
    """Transformer-style sin/cos features of `values` ([N] -> [N, dim])."""
    half = dim // 2
    frequencies = torch.exp(
        -math.log(10000.0) * torch.arange(half, device=values.device, dtype=torch.float32) / half
    )
    angles = values.float()[:, None] * frequencies[None, :]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)


class NoiseEmbedding(nn.Module):
    """Embeds a noise level: sinusoidal features of log(sigma)/4, then an MLP."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, sigma: torch.Tensor) -> torch.Tensor:
        features = sinusoidal_embedding(torch.log(sigma) / 4.0, self.dim)
        return self.mlp(features.to(next(self.mlp.parameters()).dtype))


class Modulation(nn.Module):
    """Maps the noise embedding to per-channel (shift, scale, ...) terms: AdaLN in the
    transformer blocks, AdaGN in the residual blocks.

    Starts at zero, so a fresh block is the plain, unconditioned block. The terms of
    all of a network's modulations are computed together (`Conditioning`).
    """

    def __init__(self, condition_dim: int, channels: int, terms: int) -> None:
        super().__init__()
        self.terms = terms
        self.linear = nn.Linear(condition_dim, channels * terms)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)


class ModulationBank:
    """Every modulation of a network, computed together.

    The terms are silu(embedding) times each modulation's matrix: one matrix product
    over all of them (a network has ~15) instead of one small product each, whose
    fixed cost dominates on a CPU. Without gradients, the stacked matrix is kept for
    as long as no weight changes.
    """

    def __init__(self, modulations: Sequence[Modulation]) -> None:
        self.linears = [modulation.linear for modulation in modulations]
        self.offsets: dict[Modulation, int] = {}
        offset = 0
        for modulation in modulations:
            self.offsets[modulation] = offset
            offset += modulation.linear.out_features
        self.stacked: tuple[tuple, torch.Tensor, torch.Tensor] | None = None

    def weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The stacked matrix and bias: rebuilt each call while gradients are on (or
        for weights made in inference mode, which keep no version count)."""
        parameters = [p for linear in self.linears for p in (linear.weight, linear.bias)]
        if torch.is_grad_enabled() or any(p.is_inference() for p in parameters):
            self.stacked = None
            return self._stack()
        key = tuple((p.data_ptr(), p._version) for p in parameters)
        if self.stacked is None or self.stacked[0] != key:
            self.stacked = (key, *self._stack())
        return self.stacked[1], self.stacked[2]

    def _stack(self) -> tuple[torch.Tensor, torch.Tensor]:
        weights = torch.cat([linear.weight for linear in self.linears])
        return weights, torch.cat([linear.bias for linear in self.linears])

    def __call__(self, embedding: torch.Tensor) -> Conditioning:
        """The terms for noise embeddings [N, condition_dim]."""
        return Conditioning(F.linear(F.silu(embedding), *self.weights()), self.offsets)


@dataclass(frozen=True)
class Conditioning:
    """One call's noise condition: the terms of every modulation of the network."""

    values: torch.Tensor  # [N, all terms of all modulations]
    offsets: dict[Modulation, int]  # where each modulation's terms start

    def terms(self, modulation: Modulation) -> tuple[torch.Tensor, ...]:
        """That modulation's terms, each [N, channels]."""
        start = self.offsets[modulation]
        width = modulation.linear.out_features
        return self.values[:, start : start + width].chunk(modulation.terms, dim=-1)


def modulated_group_norm(
    x: torch.Tensor, norm: nn.GroupNorm, shift: torch.Tensor, scale: torch.Tensor
) -> torch.Tensor:
    """norm(x) * (1 + scale) + shift, with the norm's affine folded into the per-sample
    terms ([N, C]): one pass over the feature map instead of three."""
    assert norm.weight is not None and norm.bias is not None
    gain = 1 + scale
    weight = (norm.weight * gain)[:, :, None, None]
    bias = torch.addcmul(shift, norm.bias, gain)[:, :, None, None]
    return torch.addcmul(bias, group_norm(x, norm.num_groups, eps=norm.eps), weight)


def apply_group_norm(norm: nn.GroupNorm, x: torch.Tensor) -> torch.Tensor:
    """`norm(x)` through `ops.group_norm` (fast backward on channels_last maps)."""
    return group_norm(x, norm.num_groups, norm.weight, norm.bias, norm.eps)


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions with GroupNorm and SiLU around an additive shortcut.

    With `condition_dim`, the second norm is modulated by the noise level (AdaGN).
    """

    def __init__(self, channels: int, groups: int, condition_dim: int | None = None) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, channels)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.norm2 = nn.GroupNorm(groups, channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.modulation = Modulation(condition_dim, channels, 2) if condition_dim else None

    def forward(self, x: torch.Tensor, condition: Conditioning | None = None) -> torch.Tensor:
        h = self.conv1(F.silu(apply_group_norm(self.norm1, x)))
        if self.modulation is None:
            h = apply_group_norm(self.norm2, h)
        else:
            assert condition is not None, "a conditioned block needs its noise condition"
            shift, scale = condition.terms(self.modulation)
            h = modulated_group_norm(h, self.norm2, shift, scale)
        return x + self.conv2(F.silu(h))


def chunk_causal_attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, chunks: int
) -> torch.Tensor:
    """Attention over [..., chunks * tokens, head_dim] where a token sees every token of
    its own and earlier chunks: one unmasked call per chunk, each chunk's queries
    against the keys they may see (no mask, and no work on keys they may not)."""
    if chunks == 1:
        return attention(query, key, value)
    size = query.shape[-2] // chunks
    return torch.cat(
        [
            attention(
                query[..., index * size : (index + 1) * size, :],
                key[..., : (index + 1) * size, :],
                value[..., : (index + 1) * size, :],
            )
            for index in range(chunks)
        ],
        dim=-2,
    )


class TransformerBlock(nn.Module):
    """Pre-LN transformer block; with `condition_dim`, AdaLN with zero-init gates.

    The input holds `chunks` chunks of equal length; attention is chunk-causal (a
    token sees its own and earlier chunks). The condition applies per chunk, so two
    chunks can sit at two noise levels.
    """

    def __init__(
        self, dim: int, heads: int, mlp_ratio: int, condition_dim: int | None = None
    ) -> None:
        super().__init__()
        self.heads = heads
        affine = condition_dim is None
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=affine)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=affine)
        self.mlp = nn.Sequential(
            nn.Linear(dim, dim * mlp_ratio), nn.GELU(), nn.Linear(dim * mlp_ratio, dim)
        )
        self.modulation = Modulation(condition_dim, dim, 6) if condition_dim else None

    def attention(self, x: torch.Tensor, chunks: int) -> torch.Tensor:
        batch, length, dim = x.shape
        qkv = self.qkv(x).view(batch, length, 3, self.heads, dim // self.heads)
        query, key, value = qkv.permute(2, 0, 3, 1, 4)
        attended = chunk_causal_attention(query, key, value, chunks)
        return self.out(attended.transpose(1, 2).reshape(batch, length, dim))

    def forward(
        self, x: torch.Tensor, chunks: int = 1, condition: Conditioning | None = None
    ) -> torch.Tensor:
        if self.modulation is None:
            x = x + self.attention(self.norm1(x), chunks)
            return x + self.mlp(self.norm2(x))
        assert condition is not None, "a conditioned block needs its noise condition"
        batch, length, dim = x.shape
        per_chunk = (batch, chunks, length // chunks, dim)
        shift1, scale1, gate1, shift2, scale2, gate2 = (
            term.reshape(batch, chunks, 1, dim) for term in condition.terms(self.modulation)
        )
        x = x.reshape(per_chunk)
        h = torch.addcmul(shift1, F.layer_norm(x, (dim,), eps=self.norm1.eps), 1 + scale1)
        x = torch.addcmul(
            x, gate1, self.attention(h.view(batch, length, dim), chunks).view(x.shape)
        )
        h = torch.addcmul(shift2, F.layer_norm(x, (dim,), eps=self.norm2.eps), 1 + scale2)
        return torch.addcmul(x, gate2, self.mlp(h)).view(batch, length, dim)
