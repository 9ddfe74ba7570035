"""Encoder: one spectrogram chunk -> K summary embeddings (tanh-bounded latents)."""

from __future__ import annotations

import torch
from torch import nn

from ..config import ModelConfig
from .blocks import TransformerBlock
from .patchify import Patchifier


class Encoder(nn.Module):
    """Patchifier, K learned latent tokens appended, transformer, keep the K outputs.

    Each chunk is encoded on its own: nothing here mixes chunks of a batch.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.patchifier = Patchifier(config)
        self.latent_tokens = nn.Parameter(torch.randn(1, config.num_latents, config.dim) * 0.02)
        self.blocks = nn.ModuleList(
            TransformerBlock(config.dim, config.heads, config.mlp_ratio)
            for _ in range(config.encoder_depth)
        )
        self.norm = nn.LayerNorm(config.dim)
        self.bottleneck = nn.Linear(config.dim, config.latent_dim)

    def summary_embeddings(self, spectrogram: torch.Tensor) -> torch.Tensor:
        """[N, 2, F, T] -> [N, K, dim]: the pre-bottleneck summary embeddings (MIR features)."""
        tokens, _ = self.patchifier(spectrogram.to(self.latent_tokens.dtype))
        latent_tokens = self.latent_tokens.expand(tokens.shape[0], -1, -1).to(tokens.dtype)
        x = torch.cat([tokens, latent_tokens], dim=1)
        for block in self.blocks:
            x = block(x)
        return self.norm(x[:, -latent_tokens.shape[1] :])

    def forward(self, spectrogram: torch.Tensor) -> torch.Tensor:
        """[N, 2, F, T] -> [N, K, latent_dim] in (-1, 1)."""
        return torch.tanh(self.bottleneck(self.summary_embeddings(spectrogram)))
