"""`TrainConfig`: every training setting, saved in each checkpoint.

The defaults are the recipe documented in docs/TRAINING.md: the papers' optimizer and
loss, with a curriculum, noise sampling, precision and EMA chosen for short runs on
small machines. A checkpoint written before a setting existed lacks its key; on resume
the key takes its `LEGACY` value, which is what that checkpoint's run was doing.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from ..config import ModelConfig, preset

SIGMA_SAMPLINGS = ("time-weighted", "lognormal")
CURRICULA = ("staged", "exponential")
CONSISTENCY_PRECISIONS = ("auto", "fp32", "bf16", "inherit")


@dataclass(frozen=True)
class TrainConfig:
    """Every training setting (see docs/TRAINING.md for what each one does)."""

    preset: str = "small"
    batch_size: int = 16
    total_steps: int = 100_000
    # RAdam with cosine decay, as in the papers.
    learning_rate: float = 1e-4
    final_learning_rate: float = 1e-6
    beta1: float = 0.9
    beta2: float = 0.999
    # EMA of the weights; with warm-up its decay is min(ema_decay, (1 + k) / (10 + k)).
    ema_decay: float = 0.999
    ema_warmup: bool = True
    # Student noise levels: log sigma ~ N(p_mean, p_std), weighted per time step
    # ("time-weighted", as the Music2Latent reference) or drawn directly ("lognormal").
    sigma_sampling: str = "time-weighted"
    p_mean: float = -1.1
    p_std: float = 2.0
    # Teacher noise levels: "staged" starts as plain denoising and halves the gap
    # (`curriculum_ratio`) at each of `curriculum_stages` equal stages of the run; a run
    # that goes on from a trained model may skip the first (`curriculum_first_stage`);
    # "exponential" is the paper's dt_k = dt_initial ^ ((k / K)(dt_exponent - 1) + 1).
    curriculum: str = "staged"
    curriculum_stages: int = 5
    curriculum_first_stage: int = 0
    curriculum_ratio: float = 2.0
    dt_initial: float = 0.1
    dt_exponent: float = 3.0
    # Precision: `precision` for the encoder and decoder (auto: bf16 where the device
    # computes it natively); the consistency model's own: "auto" is fp32 once the
    # teacher is a network output and `precision` while it is the clean input,
    # "inherit" is `precision` throughout (the first recipe).
    precision: str = "auto"
    consistency_precision: str = "auto"
    zero_init_head: bool = True
    seed: int = 0
    workers: int = 2
    log_every: int = 10
    validate_every: int = 500
    checkpoint_every: int = 100
    # Folder of clips reconstructed at each validation ("": none); a resumed run keeps it.
    validation_folder: str = ""

    # Settings that say how often things happen, not what is learned: they may change
    # when a run is resumed (on another machine, say) without changing its weights.
    ROUTINE = ("workers", "log_every", "validate_every", "checkpoint_every", "validation_folder")
    # What a checkpoint that lacks a key was doing (the recipe before the key existed).
    LEGACY = {
        "ema_warmup": False,
        "sigma_sampling": "lognormal",
        "curriculum": "exponential",
        "curriculum_stages": 5,
        "curriculum_first_stage": 0,
        "curriculum_ratio": 2.0,
        "consistency_precision": "inherit",
        "zero_init_head": False,
    }

    def __post_init__(self) -> None:
        choices = {
            "sigma_sampling": SIGMA_SAMPLINGS,
            "curriculum": CURRICULA,
            "consistency_precision": CONSISTENCY_PRECISIONS,
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}")
        if self.batch_size < 1 or self.total_steps < 1 or self.curriculum_stages < 1:
            raise ValueError("batch_size, total_steps and curriculum_stages must be >= 1")
        if not 0 <= self.curriculum_first_stage < self.curriculum_stages:
            raise ValueError("curriculum_first_stage must be in [0, curriculum_stages)")
        if not 0.0 <= self.ema_decay < 1.0 or self.curriculum_ratio <= 1.0:
            raise ValueError("ema_decay must be in [0, 1) and curriculum_ratio above 1")

    def with_routine(self, changes: Mapping[str, Any] | None) -> TrainConfig:
        """These settings with some routine settings replaced."""
        changes = changes or {}
        unknown = set(changes) - set(self.ROUTINE)
        if unknown:
            raise ValueError(f"not routine settings: {', '.join(sorted(unknown))}")
        return replace(self, **changes)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> TrainConfig:
        """Rebuild from `to_json`; unknown keys are an error, missing ones are `LEGACY`."""
        data = json.loads(text)
        known = {item.name for item in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown training settings: {', '.join(unknown)}")
        return cls(**{**cls.LEGACY, **data})

    def learning_rate_at(self, step: int) -> float:
        """Cosine decay from `learning_rate` to `final_learning_rate` over `total_steps`."""
        cosine = 0.5 * (1.0 + math.cos(math.pi * self.progress(step)))
        return self.final_learning_rate + (self.learning_rate - self.final_learning_rate) * cosine

    def ema_decay_at(self, step: int) -> float:
        """The EMA decay after `step` steps: warmed up, the EMA forgets its random start."""
        if not self.ema_warmup:
            return self.ema_decay
        return min(self.ema_decay, (1.0 + step) / (10.0 + step))

    def progress(self, step: int) -> float:
        """How far through the schedule `step` is, in [0, 1]."""
        return min(step / self.total_steps, 1.0)


@dataclass(frozen=True)
class TrainingPlan:
    """What the options of `m2l train` ask for: the settings and model of a new run, or
    the routine changes of a resumed one (which keeps everything else). A run that starts
    from a model file keeps its config, plus the `added_parts` switched on."""

    settings: TrainConfig | None
    model_config: ModelConfig | None
    routine: dict[str, Any]
    added_parts: dict[str, bool] = field(default_factory=dict)

    @classmethod
    def from_options(
        cls,
        given: Mapping[str, Any],
        switches: Mapping[str, bool | None],
        *,
        resume: bool,
        init: object | None,
    ) -> TrainingPlan:
        """Options left unset (None) take the defaults; ValueError names a bad one."""
        chosen: dict[str, Any] = {name: value for name, value in given.items() if value is not None}
        model_switches: dict[str, Any] = {
            name: value for name, value in switches.items() if value is not None
        }
        if resume:
            fixed = sorted(set(chosen) - set(TrainConfig.ROUTINE)) + sorted(model_switches)
            if fixed:
                raise ValueError(f"a resumed run keeps its settings: drop {', '.join(fixed)}")
            return cls(None, None, {name: chosen[name] for name in chosen})
        settings = TrainConfig(**chosen)
        if init is not None:
            removed = sorted(name for name, on in model_switches.items() if not on)
            if removed:
                raise ValueError(f"--init can add model parts, not remove them: {removed[0]}")
            return cls(settings, None, {}, model_switches)
        return cls(settings, replace(preset(settings.preset), **model_switches), {})
