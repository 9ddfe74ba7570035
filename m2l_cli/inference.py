"""Calls into the three networks for the encode and decode loops: on the chosen device
and precision, in batches cut to a size the device handles well, with inputs and
outputs on the CPU."""

from __future__ import annotations

from contextlib import AbstractContextManager
from functools import cached_property

import torch

from .model import Music2Latent2
from .runtime import autocast

CPU_CALL_BYTES = 16 << 20


class ModelRunner:
    """A model on a device at a precision; each method is one kind of batched call."""

    def __init__(self, model: Music2Latent2, device: torch.device, precision: str) -> None:
        # torch's stubs lack Module.to's memory_format, which it takes and applies.
        self.model = model.eval().to(device, memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.device, self.precision = device, precision

    def autocast(self) -> AbstractContextManager:
        return autocast(self.device, self.precision)

    @cached_property
    def chunks_per_call(self) -> int:
        """On a CPU, how many chunks one call may hold so its finest feature maps stay
        within ~16 MiB (cache-sized: bigger batches ran slower there). Unlimited on GPUs."""
        if self.device.type != "cpu":
            return 1 << 30
        config = self.model.config
        frequency, time = config.level_grids[0]
        bytes_per_chunk = config.channels[0] * frequency * time * 4
        return max(1, CPU_CALL_BYTES // bytes_per_chunk)

    def encode(self, spectrograms: torch.Tensor) -> torch.Tensor:
        """Spectrograms [n, 2, F, T] -> latents [n, K, D] (float32)."""
        x = spectrograms.to(self.device).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), self.autocast():
            return self.model.encoder(x).float().cpu()

    def decode_features(self, latents: torch.Tensor) -> list[torch.Tensor]:
        """Latents [n, K, D] -> the decoder's feature maps, one tensor per level."""
        pieces = []
        with torch.inference_mode(), self.autocast():
            for part in latents.split(self.chunks_per_call):
                pieces.append(self.model.decoder(part.to(self.device)))
        if len(pieces) == 1:
            return pieces[0]
        return [torch.cat(levels) for levels in zip(*pieces, strict=True)]

    def denoise(
        self, x: torch.Tensor, sigma: torch.Tensor, features: list[torch.Tensor]
    ) -> torch.Tensor:
        """One consistency step: noisy chunks [rows, slots, 2, F, T] at noise levels
        [rows, slots], with their decoder features -> clean estimates (float32)."""
        slots = x.shape[1]
        rows = max(1, self.chunks_per_call // slots)
        outputs = []
        with torch.inference_mode(), self.autocast():
            for start in range(0, x.shape[0], rows):
                part = slice(start, start + rows)
                part_features = [
                    level[start * slots : (start + rows) * slots] for level in features
                ]
                output = self.model.consistency(
                    x[part].to(self.device), sigma[part].to(self.device), part_features
                )
                outputs.append(output.float().cpu())
        return torch.cat(outputs)
