"""The `m2l` command: one module per group of commands, imported in `m2l --help`'s order."""

from . import coding, latents, batch, training, evaluation  # noqa: F401  # isort: skip
from .common import app, run

__all__ = ["app", "run"]
