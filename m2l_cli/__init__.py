"""m2l: a neural audio codec (Music2Latent2) with a command-line tool."""

from ._version import __version__
from .codec import Codec
from .config import PRESETS, ModelConfig
from .container import Latents
from .errors import AudioError, ContainerError, M2LError, ModelError

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
