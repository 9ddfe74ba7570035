"""Consistency training of Music2Latent2 models: settings, objective, crops,
checkpoints, the loop and validation (docs/TRAINING.md)."""

from .checkpoint import CHECKPOINT_NAME, export_checkpoint
from .config import TrainConfig, TrainingPlan
from .loop import Trainer, train
from .validation import make_validator

__all__ = [
    "CHECKPOINT_NAME",
    "TrainConfig",
    "Trainer",
    "TrainingPlan",
    "export_checkpoint",
    "make_validator",
    "train",
]
