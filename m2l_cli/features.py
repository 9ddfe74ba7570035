"""MIR features: the encoder's pre-bottleneck summary embeddings of audio, the
representation the Music2Latent2 paper evaluates on downstream tasks, per chunk or
pooled per file; the same pooling serves a container's latents.

Per chunk they are [channels, chunks, K, dim]: K = 8 summary embeddings of each chunk,
an unordered set (not time steps inside the chunk). Pooled, as the paper's downstream
evaluation pools them, the K vectors of a chunk are stacked into one and the chunks are
averaged: [channels, K * dim].
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from .errors import M2LError
from .inference import ModelRunner

POOLS = ("mean", "none")
"""How features are pooled over a file's chunks: `mean`, or `none` (per chunk)."""


def summary_embedder(runner: ModelRunner) -> Callable[[torch.Tensor], torch.Tensor]:
    """Spectrograms [n, 2, F, T] -> summary embeddings [n, K, dim] float32 on the CPU,
    computed on the runner's device at its precision (the encode loop's `encode`)."""

    def embed(spectrograms: torch.Tensor) -> torch.Tensor:
        x = spectrograms.to(runner.device).contiguous(memory_format=torch.channels_last)
        with runner.calls() as network:
            return network.encoder.summary_embeddings(x).float().cpu()

    return embed


def pool_chunks(values: np.ndarray, pool: str | None = "mean") -> np.ndarray:
    """[channels, chunks, K, dim] -> [channels, K * dim] float32, the chunks averaged
    (`mean`); the values unchanged, as float32, for `none` or None."""
    if pool in (None, "none"):
        return np.asarray(values, dtype=np.float32)
    if pool != "mean":
        raise ValueError(f"pool must be one of {', '.join(POOLS)}, got {pool!r}")
    channels, chunks = values.shape[:2]
    if chunks == 0:
        raise M2LError("no chunks to pool: the audio is empty")
    stacked = np.asarray(values, dtype=np.float64).reshape(channels, chunks, -1)
    return stacked.mean(axis=1).astype(np.float32)
