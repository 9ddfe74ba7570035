"""Consistency model over one or two consecutive chunks, and the EDM parametrisation.

f(x, sigma) = c_skip(sigma) x + c_out(sigma) F(c_in(sigma) x, sigma), applied per chunk
with that chunk's own sigma. In the transformer the second chunk sees the first, the
first never sees the second (chunked causal attention).
"""

from __future__ import annotations

from functools import cached_property

import torch
from torch import nn

from ..config import ModelConfig
from .blocks import (
    Modulation,
    ModulationBank,
    NoiseEmbedding,
    TransformerBlock,
    sinusoidal_embedding,
)
from .patchify import DePatchifier, Patchifier


def edm_scalings(
    sigma: torch.Tensor, config: ModelConfig
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(c_skip, c_out, c_in) for noise levels `sigma` (any shape)."""
    data, minimum = config.sigma_data, config.sigma_min
    c_skip = data**2 / ((sigma - minimum) ** 2 + data**2)
    c_out = data * (sigma - minimum) / torch.sqrt(data**2 + sigma**2)
    c_in = 1.0 / torch.sqrt(sigma**2 + data**2)
    return c_skip, c_out, c_in


def sigma_from_time(t: torch.Tensor, config: ModelConfig) -> torch.Tensor:
    """Continuous time t in [0, 1] -> noise level (EDM's rho schedule)."""
    inverse_rho = 1.0 / config.rho
    low, high = config.sigma_min**inverse_rho, config.sigma_max**inverse_rho
    return (low + t * (high - low)) ** config.rho


class FrequencyScaling(nn.Module):
    """Music2Latent's adaptive frequency scaling: an MLP maps the noise level to one gain
    per frequency bin for the network's input and another for its output.

    At low noise the spectrogram's low bins are far louder than its high ones; at high
    noise every bin is alike. The gains let the network see and emit every band at a
    workable scale. They are exp(MLP), so they are positive, and start at exactly 1.
    """

    def __init__(self, frequency_bins: int, hidden: int) -> None:
        super().__init__()
        self.hidden = hidden
        last = nn.Linear(hidden, 2 * frequency_bins)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.mlp = nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU(), last)

    def forward(self, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """sigma [B, n] -> (input gains, output gains), each [B, n, 1, F, 1], float32."""
        features = sinusoidal_embedding(torch.log(sigma.reshape(-1)) / 4.0, self.hidden)
        gains = self.mlp(features.to(next(self.mlp.parameters()).dtype)).float().exp()
        gains = gains.reshape(*sigma.shape, 2, 1, -1, 1)
        return gains[:, :, 0], gains[:, :, 1]


class ConsistencyModel(nn.Module):
    """Noisy chunks + noise levels + decoder features -> denoised chunks."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        condition_dim = config.noise_embedding_dim
        self.noise_embedding = NoiseEmbedding(condition_dim)
        self.patchifier = Patchifier(config, condition_dim, cross_connections=True)
        self.chunk_slot = nn.Parameter(torch.zeros(1, 2, 1, config.dim))
        self.blocks = nn.ModuleList(
            TransformerBlock(config.dim, config.heads, config.mlp_ratio, condition_dim)
            for _ in range(config.consistency_depth)
        )
        self.norm = nn.LayerNorm(config.dim)
        self.depatchifier = DePatchifier(config, condition_dim, output_head=True)
        self.frequency_scaling = (
            FrequencyScaling(config.frequency_bins, condition_dim)
            if config.frequency_scaling
            else None
        )

    def zero_output_head(self) -> None:
        """Zeroes the last layer, so a fresh model's output is exactly c_skip * x."""
        assert self.depatchifier.head is not None
        for parameter in self.depatchifier.head[-1].parameters():
            torch.nn.init.zeros_(parameter)

    @cached_property
    def modulations(self) -> ModulationBank:
        """Every AdaGN and AdaLN modulation of the network, computed together."""
        return ModulationBank(
            [module for module in self.modules() if isinstance(module, Modulation)]
        )

    def network(
        self, x: torch.Tensor, sigma: torch.Tensor, features: list[torch.Tensor]
    ) -> torch.Tensor:
        """The raw network F. x: [B, n, 2, F, T], sigma: [B, n], features: [B*n, ...] per level."""
        batch, chunks = sigma.shape
        condition = self.modulations(self.noise_embedding(sigma.reshape(-1)))
        flat = x.flatten(0, 1).to(self.chunk_slot.dtype, memory_format=torch.channels_last)
        tokens, skips = self.patchifier(flat, condition, features)
        tokens = tokens.reshape(batch, chunks, *tokens.shape[1:]) + self.chunk_slot[:, :chunks]
        tokens = tokens.reshape(batch, -1, tokens.shape[-1])
        for block in self.blocks:
            tokens = block(tokens, chunks, condition)
        tokens = self.norm(tokens).reshape(batch * chunks, -1, tokens.shape[-1])
        _, output = self.depatchifier(tokens, condition, skips)
        assert output is not None
        return output.unflatten(0, (batch, chunks))

    def forward(
        self, x: torch.Tensor, sigma: torch.Tensor, features: list[torch.Tensor]
    ) -> torch.Tensor:
        """f(x, sigma): the consistency function, one sigma per chunk."""
        c_skip, c_out, c_in = (
            scale[:, :, None, None, None] for scale in edm_scalings(sigma, self.config)
        )
        if self.frequency_scaling is not None:
            input_gain, output_gain = self.frequency_scaling(sigma)
            c_in, c_out = c_in * input_gain, c_out * output_gain
        # The scalings are folded into per-chunk (and per-bin) factors first, so the big
        # tensors are read once on the way in and once on the way out, in float32.
        raw = self.network(x * c_in, sigma, features)
        return torch.addcmul(c_skip * x, c_out, raw)
