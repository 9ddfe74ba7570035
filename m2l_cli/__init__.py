"""m2l: a neural audio codec (Music2Latent2) with a command-line tool.

The public names load on first use, so importing the package (as `m2l --help` does)
does not import torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from ._version import __version__
from .errors import AudioError, ContainerError, M2LError, ModelError

if TYPE_CHECKING:
    from .codec import Codec
    from .config import PRESETS, ModelConfig
    from .container import Latents

_LAZY = {"Codec": ".codec", "Latents": ".container", "ModelConfig": ".config", "PRESETS": ".config"}

__all__ = [
    "PRESETS",
    "AudioError",
    "Codec",
    "ContainerError",
    "Latents",
    "M2LError",
    "ModelConfig",
    "ModelError",
    "__version__",
]


def __getattr__(name: str) -> Any:
    """Imports `Codec`, `Latents`, `ModelConfig` and `PRESETS` when first asked for."""
    if name in _LAZY:
        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
