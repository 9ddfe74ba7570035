"""The consistency-training objective of Music2Latent2 for one batch of chunk pairs.

For each chunk (left and right draw independently, as in the paper):
1. the student's noise level sigma is drawn (`sample_student_sigma`);
2. the teacher's level r < sigma comes from the curriculum (`teacher_sigma`). "staged"
   follows "Consistency models made easy" (Geng et al.): r = sigma (1 - g n(sigma)) with
   n(sigma) = 1 + 8 sigmoid(-sigma) and a gap g that starts at 1 and is divided by
   `curriculum_ratio` at every stage. At g = 1 every r is <= 0, so the teacher is the
   clean input and the first stage is plain denoising; later stages tighten towards
   consistency training proper. Where r falls below sigma_min the teacher is the clean
   input, exactly: f(x + sigma_min z, sigma_min) = x + sigma_min z;
3. loss = pseudo-Huber(student - teacher) / (sigma - r), the teacher without gradient,
   student and teacher on the same noise sample z.
"""

from __future__ import annotations

import math
from contextlib import AbstractContextManager
from dataclasses import dataclass

import torch

from ..config import ModelConfig
from ..model import Music2Latent2
from ..model.consistency import sigma_from_time
from .config import TrainConfig

# The staged curriculum's n(sigma) = 1 + SCALE * sigmoid(-sigma), as in the ECT paper.
CURRICULUM_SIGMOID_SCALE = 8.0
# Student levels stay this factor above sigma_min, so 1 / (sigma - r) stays finite.
STUDENT_FLOOR = 1.01


def time_from_sigma(sigma: torch.Tensor, config: ModelConfig) -> torch.Tensor:
    """Inverse of `sigma_from_time`."""
    inverse_rho = 1.0 / config.rho
    low, high = config.sigma_min**inverse_rho, config.sigma_max**inverse_rho
    return (sigma.pow(inverse_rho) - low) / (high - low)


def time_weighted_log_mean(settings: TrainConfig, config: ModelConfig) -> float:
    """Mean of log sigma when t is drawn with weights N(log sigma(t); p_mean, p_std).

    With u = log sigma, dt/du is proportional to exp(u / rho), so the weights in u are
    N(u; p_mean, p_std) exp(u / rho): again a normal, with mean p_mean + p_std^2 / rho.
    """
    return settings.p_mean + settings.p_std**2 / config.rho


def sample_student_sigma(
    shape: tuple[int, ...],
    settings: TrainConfig,
    config: ModelConfig,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Student noise levels in [sigma_min * STUDENT_FLOOR, sigma_max]."""
    low, high = math.log(config.sigma_min * STUDENT_FLOOR), math.log(config.sigma_max)
    if settings.sigma_sampling == "lognormal":
        log_sigma = settings.p_mean + settings.p_std * torch.randn(shape, generator=generator)
        return log_sigma.clamp(low, high).exp()
    # A normal truncated to [low, high], drawn by inverting its distribution function.
    mean, std = time_weighted_log_mean(settings, config), settings.p_std
    normal = torch.distributions.Normal(0.0, 1.0)
    cdf_low, cdf_high = (normal.cdf(torch.tensor((bound - mean) / std)) for bound in (low, high))
    uniform = torch.rand(shape, generator=generator, dtype=torch.float64)
    quantile = cdf_low + uniform * (cdf_high - cdf_low)
    return (mean + std * torch.special.ndtri(quantile)).exp().float()


def curriculum_gap(step: int, settings: TrainConfig) -> float:
    """The curriculum's gap at `step`: g of the staged curriculum, dt_k of the paper's."""
    if settings.curriculum == "exponential":
        exponent = settings.progress(step) * (settings.dt_exponent - 1.0) + 1.0
        return settings.dt_initial**exponent
    first, stages = settings.curriculum_first_stage, settings.curriculum_stages
    stage = first + min(int(settings.progress(step) * (stages - first)), stages - first - 1)
    return settings.curriculum_ratio**-stage


def teacher_sigma(
    student: torch.Tensor, gap: float, settings: TrainConfig, config: ModelConfig
) -> torch.Tensor:
    """The teacher's noise level for each student level (sigma_min: the clean input)."""
    if settings.curriculum == "exponential":  # one step dt = gap earlier in time
        teacher_time = (time_from_sigma(student, config) - gap).clamp_min(0.0)
        return sigma_from_time(teacher_time, config)
    shrink = 1.0 + CURRICULUM_SIGMOID_SCALE * torch.sigmoid(-student)
    return (student * (1.0 - gap * shrink)).clamp_min(config.sigma_min)


def noise_level_pairs(
    shape: tuple[int, ...],
    gap: float,
    settings: TrainConfig,
    config: ModelConfig,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(teacher, student) noise levels, one pair per chunk."""
    student = sample_student_sigma(shape, settings, config, generator)
    if settings.curriculum == "exponential":  # the paper: the student's t is at least dt
        student = student.clamp_min(float(sigma_from_time(torch.tensor(gap), config)))
    return teacher_sigma(student, gap, settings, config), student


def pseudo_huber(difference: torch.Tensor) -> torch.Tensor:
    """sqrt(|d|^2 + c^2) - c over each chunk (all but the first two axes),
    c = 0.00054 * sqrt(number of values), as in improved consistency training."""
    values = math.prod(difference.shape[2:])
    c = 0.00054 * math.sqrt(values)
    squared = difference.float().pow(2).flatten(2).sum(-1)
    return torch.sqrt(squared + c * c) - c


# The largest student noise level at which running the consistency model in bf16 kept
# its rounding under 10% of the training signal (student - teacher), per gap of the
# staged curriculum (docs/TRAINING.md, "Precision"): the rounding grows with sigma and
# as the gap shrinks. Clean teachers keep it under 5% at every sigma.
REDUCED_PRECISION_SIGMA_LIMITS = {0.5: 10.0, 0.25: 2.5, 0.125: 1.0}


def reduced_precision_limit(gap: float, settings: TrainConfig) -> float:
    """Student levels up to this may run in reduced precision at this gap: the limit of
    the largest measured gap not above it (a smaller gap rounds worse); 0 below every
    measured gap, and for the exponential curriculum (whose gap means something else)."""
    if settings.curriculum != "staged":
        return 0.0
    measured = [measured for measured in REDUCED_PRECISION_SIGMA_LIMITS if measured <= gap]
    return REDUCED_PRECISION_SIGMA_LIMITS[max(measured)] if measured else 0.0


@dataclass(frozen=True)
class TrainingPrecision:
    """Autocast dtypes for the two parts: encoder + decoder, and consistency model.

    The difference between the student's and the teacher's outputs is the training
    signal. Run in bf16, the consistency model's rounding is 70% to 700% of that
    difference at high noise once the teacher is a network output (docs/TRAINING.md),
    so it has its own dtype, and a second, `reduced`, for the pairs of chunks whose
    rounding stays under 10% of the signal: every teacher clean, or every student level
    within `reduced_precision_limit`. The encoder's and decoder's features are shared
    by student and teacher: their rounding cancels.
    """

    device_type: str
    encoder_decoder: torch.dtype
    consistency: torch.dtype
    reduced: torch.dtype  # the consistency model's for pairs where rounding stays small

    def autocast(self, dtype: torch.dtype) -> AbstractContextManager:
        enabled = dtype != torch.float32
        return torch.autocast(self.device_type, dtype=dtype, enabled=enabled)


@dataclass(frozen=True)
class NoisedPairs:
    """Chunk pairs [B, 2, 2, F, T] with one noise sample, the two noise levels of each
    chunk [B, 2] and the decoder's features of every chunk (B * 2 per level)."""

    clean: torch.Tensor
    noise: torch.Tensor
    teacher_level: torch.Tensor
    student_level: torch.Tensor
    features: list[torch.Tensor]

    def rows(self, selected: torch.Tensor) -> NoisedPairs:
        """The pairs where `selected` [B] is true."""
        chunks = selected.repeat_interleave(2)
        return NoisedPairs(
            self.clean[selected],
            self.noise[selected],
            self.teacher_level[selected],
            self.student_level[selected],
            [level[chunks] for level in self.features],
        )


def consistency_loss(
    model: Music2Latent2,
    pairs: torch.Tensor,
    gap: float,
    settings: TrainConfig,
    precision: TrainingPrecision,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Mean weighted consistency loss of a batch of chunk pairs [B, 2, 2, F, T]."""
    config = model.config
    with precision.autocast(precision.encoder_decoder):
        chunks = pairs.flatten(0, 1).contiguous(memory_format=torch.channels_last)
        features = model.decoder(model.encoder(chunks))
    teacher_level, student_level = (
        level.to(pairs.device)
        for level in noise_level_pairs((pairs.shape[0], 2), gap, settings, config, generator)
    )
    noise = torch.randn(pairs.shape, generator=generator).to(pairs.device)
    batch = NoisedPairs(pairs, noise, teacher_level, student_level, features)
    small = (teacher_level <= config.sigma_min) | (
        student_level <= reduced_precision_limit(gap, settings)
    )
    reduced = small.all(dim=1)
    if precision.reduced == precision.consistency or reduced.all() or not reduced.any():
        dtype = precision.reduced if bool(reduced.all()) else precision.consistency
        return _chunk_losses(model, batch, precision, dtype).mean()
    losses = [
        _chunk_losses(model, batch.rows(rows), precision, dtype)
        for rows, dtype in ((reduced, precision.reduced), (~reduced, precision.consistency))
        if rows.any()
    ]
    return torch.cat(losses).mean()


def _chunk_losses(
    model: Music2Latent2, batch: NoisedPairs, precision: TrainingPrecision, dtype: torch.dtype
) -> torch.Tensor:
    """The weighted loss of every chunk [B, 2], the consistency model run in `dtype`."""
    features = batch.features
    if dtype == torch.float32:
        features = [level.float() for level in features]
    student_level, teacher_level = batch.student_level, batch.teacher_level
    with precision.autocast(dtype):
        noisy = batch.clean + _expand(student_level) * batch.noise
        student = model.consistency(noisy, student_level, features)
        with torch.no_grad():
            teacher = _teacher(model, batch.clean, batch.noise, teacher_level, features)
    return pseudo_huber(student - teacher) / (student_level - teacher_level)


def _teacher(
    model: Music2Latent2,
    pairs: torch.Tensor,
    noise: torch.Tensor,
    level: torch.Tensor,
    features: list[torch.Tensor],
) -> torch.Tensor:
    """The teacher's outputs; no network call when every teacher is the clean input."""
    if bool((level <= model.config.sigma_min).all()):
        return pairs + model.config.sigma_min * noise
    detached = [feature.detach() for feature in features]
    return model.consistency(pairs + _expand(level) * noise, level, detached)


def _expand(sigma: torch.Tensor) -> torch.Tensor:
    return sigma[:, :, None, None, None]
