"""The decode loop follows the two-step schedule of the paper, written out by hand here."""

from __future__ import annotations

import numpy as np
import torch

from m2l_cli import Codec
from m2l_cli.spectral import OverlapAdd


def reference_decode(codec: Codec, latents: np.ndarray, sigma_cond: float, seed: int) -> np.ndarray:
    """One stream, no batching: chunk 0 from noise; then (noised previous, noise) pairs;
    then the last chunk refined alone. Returns the refined spectrogram of every chunk."""
    model, config = codec.model, codec.config
    generator = torch.Generator().manual_seed(seed)
    shape = (1, 2, config.frequency_bins, config.chunk_frames)
    high, chunks = config.sigma_max, latents.shape[0]
    with torch.inference_mode():
        features = model.decoder(torch.from_numpy(latents).float())

        def pair(*indices: int) -> list[torch.Tensor]:
            return [level[list(indices)] for level in features]

        estimate = model.consistency(
            high * torch.randn(shape, generator=generator)[:, None], torch.tensor([[high]]), pair(0)
        )[:, 0]
        refined = []
        for t in range(1, chunks):
            left = estimate + sigma_cond * torch.randn(shape, generator=generator)
            right = high * torch.randn(shape, generator=generator)
            sigma = torch.tensor([[sigma_cond, high]])
            output = model.consistency(torch.stack([left, right], 1), sigma, pair(t - 1, t))
            refined.append(output[:, 0])
            estimate = output[:, 1]
        left = estimate + sigma_cond * torch.randn(shape, generator=generator)
        refined.append(
            model.consistency(left[:, None], torch.tensor([[sigma_cond]]), pair(chunks - 1))[:, 0]
        )
    return torch.cat(refined, dim=-1)


def test_decode_matches_the_hand_written_schedule() -> None:
    codec = Codec.create("tiny", seed=3, precision="fp32")
    with torch.no_grad():
        for parameter in codec.model.parameters():  # leave no zero-initialised gate
            parameter.add_(torch.randn_like(parameter) * 0.05)
    waveform = np.random.default_rng(0).standard_normal((1, 3 * 32768)).astype(np.float32) * 0.1
    latents = codec.encode(waveform, 44100)
    spectrogram = reference_decode(codec, latents.values[0].astype(np.float32), 0.4, seed=7)
    overlap_add = OverlapAdd(codec.transform, (1,))
    expected = torch.cat([overlap_add.push(spectrogram), overlap_add.finish()], -1)[:, : 3 * 32768]
    decoded = codec.decode(latents, sigma_cond=0.4, seed=7)
    np.testing.assert_allclose(decoded, expected.numpy(), atol=1e-4, rtol=1e-4)


def test_splitting_model_calls_into_small_pieces_changes_nothing() -> None:
    """On a CPU big batches are cut into cache-sized calls; the audio must not change."""
    codec = Codec.create("tiny", seed=4, precision="fp32")
    waveform = np.random.default_rng(1).standard_normal((2, 3 * 32768)).astype(np.float32)
    latents = codec.encode(0.1 * waveform, 44100)
    whole = codec.decode(latents, seed=2)
    codec.runner.__dict__["chunks_per_call"] = 1
    assert codec.runner.chunks_per_call == 1
    np.testing.assert_allclose(codec.decode(latents, seed=2), whole, atol=1e-5)
