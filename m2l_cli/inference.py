"""Calls into the three networks for the encode and decode loops: on the chosen device
and precision, in batches cut to a size the device handles well, with inputs and
outputs on the CPU."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from functools import cached_property

import torch

from .model import Music2Latent2
from .runtime import PRECISIONS, autocast

CPU_CALL_BYTES = 16 << 20


class ModelRunner:
    """A model on a device at a precision; each method is one kind of batched call."""

    def __init__(self, model: Music2Latent2, device: torch.device, precision: str) -> None:
        # torch's stubs lack Module.to's memory_format, which it takes and applies.
        self.model = model.eval().to(device, memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.device, self.precision = device, precision

    @cached_property
    def network(self) -> Music2Latent2:
        """The model the calls run. For bf16, a copy with every weight converted once to
        bf16 (made on the first call): no per-call casts. fp32 runs the model itself;
        fp16 (GPUs) keeps float32 weights under autocast, whose norms need them."""
        if self.precision != "bf16":
            return self.model
        converted = copy.deepcopy(self.model).to(PRECISIONS[self.precision])
        return converted.requires_grad_(False)

    def autocast(self) -> AbstractContextManager:
        if self.precision == "bf16":
            return nullcontext()
        return autocast(self.device, self.precision)

    @contextmanager
    def calls(self) -> Iterator[Music2Latent2]:
        """The network, for calls in inference mode at the runner's precision. The
        network is made before inference mode starts, so its weights are ordinary
        tensors (a cache keyed on their versions can see them change)."""
        network = self.network
        with torch.inference_mode(), self.autocast():
            yield network

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
        with self.calls() as network:
            return network.encoder(x).float().cpu()

    def decode_features(self, latents: torch.Tensor) -> list[torch.Tensor]:
        """Latents [n, K, D] -> the decoder's feature maps, one tensor per level."""
        pieces = []
        with self.calls() as network:
            for part in latents.split(self.chunks_per_call):
                pieces.append(network.decoder(part.to(self.device)))
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
        with self.calls() as network:
            for start in range(0, x.shape[0], rows):
                part = slice(start, start + rows)
                part_features = [
                    level[start * slots : (start + rows) * slots] for level in features
                ]
                output = network.consistency(
                    x[part].to(self.device), sigma[part].to(self.device), part_features
                )
                outputs.append(output.float().cpu())
        return torch.cat(outputs)
