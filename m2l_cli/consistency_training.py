"""The consistency-training objective of Music2Latent2 (improved consistency training,
continuous noise levels), for one batch of two-chunk spectrogram pairs.

- Noise levels live on a time axis t in [0, 1] (`sigma_from_time`). The student's t is
  drawn from the lognormal distribution of sigma (P_mean, P_std) mapped to t; the
  teacher's t is one step dt_k earlier. dt_k shrinks exponentially over training:
  dt_k = dt_0 ^ ((k / K)(e_K - 1) + 1). We clamp the student's t to at least dt_k, so
  every pair is exactly one step apart (the teacher at t = 0 is the clean input).
- The left and right chunk get independent noise levels, as in the paper.
- Loss per chunk: pseudo-Huber distance between student and stop-gradient teacher
  outputs (same noise sample), weighted by 1 / (sigma_student - sigma_teacher).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .config import ModelConfig
from .model import Music2Latent2
from .model.consistency import sigma_from_time


@dataclass(frozen=True)
class NoiseSchedule:
    """Sampling of noise-level pairs (SPEC: P_mean -1.1, P_std 2.0, dt_0 0.1, e_K 3)."""

    p_mean: float = -1.1
    p_std: float = 2.0
    dt_initial: float = 0.1
    dt_exponent: float = 3.0

    def step_size(self, step: int, total_steps: int) -> float:
        """dt_k: the gap between the teacher's and the student's t at training step k."""
        progress = min(step / max(total_steps, 1), 1.0)
        return self.dt_initial ** (progress * (self.dt_exponent - 1.0) + 1.0)


def time_from_sigma(sigma: torch.Tensor, config: ModelConfig) -> torch.Tensor:
    """Inverse of `sigma_from_time`."""
    inverse_rho = 1.0 / config.rho
    low, high = config.sigma_min**inverse_rho, config.sigma_max**inverse_rho
    return (sigma.pow(inverse_rho) - low) / (high - low)


def sample_noise_levels(
    shape: tuple[int, ...],
    dt: float,
    schedule: NoiseSchedule,
    config: ModelConfig,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(sigma_teacher, sigma_student) pairs, one per chunk, exactly dt apart in t."""
    log_sigma = schedule.p_mean + schedule.p_std * torch.randn(shape, generator=generator)
    sigma = log_sigma.exp().clamp(config.sigma_min, config.sigma_max)
    t_student = time_from_sigma(sigma, config).clamp(dt, 1.0)
    t_teacher = (t_student - dt).clamp_min(0.0)
    return sigma_from_time(t_teacher, config), sigma_from_time(t_student, config)


def pseudo_huber(difference: torch.Tensor) -> torch.Tensor:
    """sqrt(|d|^2 + c^2) - c over each chunk (all but the first two axes),
    c = 0.00054 * sqrt(number of values), as in improved consistency training."""
    values = math.prod(difference.shape[2:])
    c = 0.00054 * math.sqrt(values)
    squared = difference.float().pow(2).flatten(2).sum(-1)
    return torch.sqrt(squared + c * c) - c


def consistency_loss(
    model: Music2Latent2,
    pairs: torch.Tensor,
    dt: float,
    schedule: NoiseSchedule,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Mean weighted consistency loss of a batch of chunk pairs [B, 2, 2, F, T]."""
    config = model.config
    batch = pairs.shape[0]
    chunks = pairs.flatten(0, 1).contiguous(memory_format=torch.channels_last)
    features = model.decoder(model.encoder(chunks))
    sigma_teacher, sigma_student = (
        level.to(pairs.device)
        for level in sample_noise_levels((batch, 2), dt, schedule, config, generator)
    )
    noise = torch.randn(pairs.shape, generator=generator).to(pairs.device)
    student = model.consistency(pairs + _expand(sigma_student) * noise, sigma_student, features)
    with torch.no_grad():
        detached = [level.detach() for level in features]
        teacher = model.consistency(pairs + _expand(sigma_teacher) * noise, sigma_teacher, detached)
    weight = 1.0 / (sigma_student - sigma_teacher)
    return (weight * pseudo_huber(student - teacher)).mean()


def _expand(sigma: torch.Tensor) -> torch.Tensor:
    return sigma[:, :, None, None, None]
