"""Convolutional patchifier and de-patchifier: spectrogram grid <-> token sequence.

Level 0 is the stem's grid; each later level is downsampled by a strided
convolution (kernel = stride), so no level mixes patches it should not see.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig
from .blocks import Conditioning, ResidualBlock, apply_group_norm


class Level(nn.Module):
    """The residual blocks of one resolution level."""

    def __init__(self, channels: int, count: int, groups: int, condition_dim: int | None) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            ResidualBlock(channels, groups, condition_dim) for _ in range(count)
        )

    def forward(self, x: torch.Tensor, condition: Conditioning | None) -> torch.Tensor:
        for block in self.blocks:
            x = block(x, condition)
        return x


def _levels(config: ModelConfig, condition_dim: int | None) -> nn.ModuleList:
    return nn.ModuleList(
        Level(channels, count, config.group_norm_groups, condition_dim)
        for channels, count in zip(config.channels, config.blocks, strict=True)
    )


class Patchifier(nn.Module):
    """[N, 2, F, T] spectrogram chunks -> [N, tokens, dim], keeping every level's output.

    `cross_connections` adds a 1x1 projection of the decoder's features at each level
    (the consistency model's way of seeing the latents from its first layer on).
    """

    def __init__(
        self,
        config: ModelConfig,
        condition_dim: int | None = None,
        cross_connections: bool = False,
    ) -> None:
        super().__init__()
        channels = config.channels
        frequency_size = config.level_grids[0][0]
        self.stem = nn.Conv2d(2, channels[0], config.stem_stride, stride=config.stem_stride)
        self.frequency_position = nn.Parameter(torch.zeros(1, channels[0], frequency_size, 1))
        self.downsamplers = nn.ModuleList(
            nn.Conv2d(channels[i], channels[i + 1], factor, stride=factor)
            for i, factor in enumerate(config.downsample)
        )
        self.levels = _levels(config, condition_dim)
        self.cross = (
            nn.ModuleList(nn.Conv2d(c, c, 1) for c in channels) if cross_connections else None
        )
        self.to_tokens = nn.Linear(channels[-1], config.dim)
        self.token_position = nn.Parameter(
            torch.randn(1, config.tokens_per_chunk, config.dim) * 0.02
        )

    def forward(
        self,
        x: torch.Tensor,
        condition: Conditioning | None = None,
        features: list[torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x = self.stem(x) + self.frequency_position
        outputs = []
        for index, level in enumerate(self.levels):
            if index > 0:
                x = self.downsamplers[index - 1](x)
            if self.cross is not None:
                assert features is not None, "cross-connections need the decoder's features"
                x = x + self.cross[index](features[index])
            x = level(x, condition)
            outputs.append(x)
        tokens = self.to_tokens(x.flatten(2).transpose(1, 2)) + self.token_position
        return tokens, outputs


class DePatchifier(nn.Module):
    """[N, tokens, dim] -> feature maps at every level (computed coarse to fine, returned
    fine first) and, with `output_head`, a [N, 2, F, T] spectrogram. `skips` (fine first,
    as the patchifier returns them) are added level by level."""

    def __init__(
        self,
        config: ModelConfig,
        condition_dim: int | None = None,
        output_head: bool = False,
    ) -> None:
        super().__init__()
        channels = config.channels
        self.grid = config.token_grid
        self.from_tokens = nn.Linear(config.dim, channels[-1])
        self.upsamplers = nn.ModuleList(
            nn.ConvTranspose2d(channels[i + 1], channels[i], factor, stride=factor)
            for i, factor in enumerate(config.downsample)
        )
        self.levels = _levels(config, condition_dim)
        self.head = (
            nn.Sequential(
                nn.GroupNorm(config.group_norm_groups, channels[0]),
                nn.SiLU(),
                nn.ConvTranspose2d(channels[0], 2, config.stem_stride, stride=config.stem_stride),
            )
            if output_head
            else None
        )

    def forward(
        self,
        tokens: torch.Tensor,
        condition: Conditioning | None = None,
        skips: list[torch.Tensor] | None = None,
    ) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        """Returns (features by level, fine first) and the head's output or None."""
        x = self.from_tokens(tokens).transpose(1, 2).reshape(tokens.shape[0], -1, *self.grid)
        x = x.contiguous(memory_format=torch.channels_last)
        features: list[torch.Tensor] = [x] * len(self.levels)
        for index in reversed(range(len(self.levels))):
            if index < len(self.levels) - 1:
                x = self.upsamplers[index](x)
            if skips is not None:
                x = x + skips[index]
            x = self.levels[index](x, condition)
            features[index] = x
        if self.head is None:
            return features, None
        norm, _, convolution = self.head
        assert isinstance(norm, nn.GroupNorm)
        return features, convolution(F.silu(apply_group_norm(norm, x)))
