"""Music2Latent2: encoder, decoder and consistency model in one module."""

from __future__ import annotations

from torch import nn

from ..config import ModelConfig
from .consistency import ConsistencyModel
from .decoder import Decoder
from .encoder import Encoder


class Music2Latent2(nn.Module):
    """The whole autoencoder; the codec drives its three parts step by step."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        self.consistency = ConsistencyModel(config)

    def parameter_count(self) -> int:
        return sum(parameter.numel() for parameter in self.parameters())


__all__ = ["ConsistencyModel", "Decoder", "Encoder", "Music2Latent2"]
