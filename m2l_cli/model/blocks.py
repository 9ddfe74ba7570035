"""Building blocks shared by the encoder, decoder and consistency model."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


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

    Starts at zero, so a fresh block is the plain, unconditioned block.
    """

    def __init__(self, condition_dim: int, channels: int, terms: int) -> None:
        super().__init__()
        self.terms = terms
        self.linear = nn.Linear(condition_dim, channels * terms)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, condition: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.linear(F.silu(condition)).chunk(self.terms, dim=-1)


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

    def forward(self, x: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.norm2(h)
        if self.modulation is not None:
            shift, scale = self.modulation(condition)
            h = h * (1 + scale[:, :, None, None]) + shift[:, :, None, None]
        return x + self.conv2(F.silu(h))


class TransformerBlock(nn.Module):
    """Pre-LN transformer block; with `condition_dim`, AdaLN with zero-init gates.

    The condition is given per chunk ([B, chunks, condition_dim]) and applies to
    that chunk's `tokens_per_chunk` tokens, so two chunks can sit at two noise levels.
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

    def attention(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        batch, length, dim = x.shape
        qkv = self.qkv(x).view(batch, length, 3, self.heads, dim // self.heads)
        query, key, value = qkv.permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(query, key, value, attn_mask=mask)
        return self.out(attended.transpose(1, 2).reshape(batch, length, dim))

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None = None,
        condition: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if self.modulation is None:
            x = x + self.attention(self.norm1(x), mask)
            return x + self.mlp(self.norm2(x))
        assert condition is not None, "a conditioned block needs its noise condition"
        tokens_per_chunk = x.shape[1] // condition.shape[1]
        terms = [
            term.repeat_interleave(tokens_per_chunk, dim=1) for term in self.modulation(condition)
        ]
        shift1, scale1, gate1, shift2, scale2, gate2 = terms
        x = x + gate1 * self.attention(self.norm1(x) * (1 + scale1) + shift1, mask)
        return x + gate2 * self.mlp(self.norm2(x) * (1 + scale2) + shift2)


def chunk_causal_mask(chunks: int, tokens_per_chunk: int, device: torch.device) -> torch.Tensor:
    """Boolean attention mask: a token sees every token of its own and earlier chunks."""
    chunk_of_token = torch.arange(chunks, device=device).repeat_interleave(tokens_per_chunk)
    return chunk_of_token[:, None] >= chunk_of_token[None, :]
