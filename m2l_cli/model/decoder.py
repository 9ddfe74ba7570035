"""Decoder: K summary embeddings -> features at every level for the consistency model."""

from __future__ import annotations

import torch
from torch import nn

from ..config import ModelConfig
from .blocks import TransformerBlock
from .patchify import DePatchifier


class Decoder(nn.Module):
    """Mask tokens stand in for the audio patches; the transformer fills them from the
    latents, and a de-patchifier upsamples them to every resolution level."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.from_latents = nn.Linear(config.latent_dim, config.dim)
        self.summary_index = (
            nn.Parameter(torch.randn(1, config.num_latents, config.dim) * 0.02)
            if config.summary_index_embedding
            else None
        )
        self.mask_tokens = nn.Parameter(torch.randn(1, config.tokens_per_chunk, config.dim) * 0.02)
        self.blocks = nn.ModuleList(
            TransformerBlock(config.dim, config.heads, config.mlp_ratio)
            for _ in range(config.decoder_depth)
        )
        self.norm = nn.LayerNorm(config.dim)
        self.depatchifier = DePatchifier(config)

    def forward(self, latents: torch.Tensor) -> list[torch.Tensor]:
        """[N, K, latent_dim] -> one [N, C_level, F_level, T_level] map per level, fine first."""
        summary = self.from_latents(latents.to(self.mask_tokens.dtype))
        if self.summary_index is not None:  # which of the K summary tokens each one is
            summary = summary + self.summary_index.to(summary.dtype)
        masks = self.mask_tokens.expand(latents.shape[0], -1, -1).to(summary.dtype)
        x = torch.cat([masks, summary], dim=1)
        for block in self.blocks:
            x = block(x)
        features, _ = self.depatchifier(self.norm(x[:, : masks.shape[1]]))
        return features
