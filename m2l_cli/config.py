"""The model's configuration: one dataclass, saved inside every weights file.

Shapes through a patchifier, for one chunk of 64 STFT frames ([2, 1024, 64] as
channels x frequency x time):

- the stem is a strided convolution (kernel = stride = `stem_stride`) that turns each
  frequency x time patch into one vector of `channels[0]` features;
- each later level first downsamples by its entry of `downsample` (again kernel =
  stride), then runs `blocks[level]` residual blocks;
- the last grid is flattened into tokens for the transformer.

`small` (CPU default): stem (4, 2) -> 256x32, then 128x16, 64x8, 32x4: 128 tokens
per chunk (256 for the consistency model's two chunks).
`paper`: stem (2, 1) -> 512x64, then 256x32, 128x16, 64x8, 32x8, 16x8: 128 tokens
per chunk, with the paper's layers [3,3,3,4,5,1] and channels [64,128,256,256,256,256].
The paper does not give its factors or token count; these are ours.

Two switches change the signal path and are recorded in every weights file:
`frequency_scaling` (Music2Latent's noise-dependent per-bin gains on the consistency
model's input and output) and `summary_index_embedding` (a learned embedding per summary
token in the decoder, so it can tell the K latents apart). Files written before they
existed lack the keys and load with both off.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields


@dataclass(frozen=True)
class ModelConfig:
    """Every number that fixes the model's shapes and its signal path."""

    name: str = "small"
    # Audio and spectral transform (both papers: hop 512, window 2048, 1024 bins).
    sample_rate: int = 44100
    hop_length: int = 512
    frequency_bins: int = 1024
    amplitude_alpha: float = 0.65
    amplitude_beta: float = 0.35
    chunk_frames: int = 64
    # Summary embeddings.
    num_latents: int = 8
    latent_dim: int = 64
    # Convolutional patchifier / de-patchifier (mirrored).
    stem_stride: tuple[int, int] = (4, 2)
    channels: tuple[int, ...] = (32, 64, 128, 128)
    blocks: tuple[int, ...] = (1, 1, 1, 1)
    downsample: tuple[tuple[int, int], ...] = ((2, 2), (2, 2), (2, 2))
    # Transformers.
    dim: int = 192
    heads: int = 4
    mlp_ratio: int = 4
    encoder_depth: int = 4
    decoder_depth: int = 4
    consistency_depth: int = 6
    noise_embedding_dim: int = 256
    group_norm_groups: int = 8
    # EDM / consistency parametrisation.
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    sigma_data: float = 0.5
    rho: float = 7.0
    # Signal-path switches (see the module docstring).
    frequency_scaling: bool = True
    summary_index_embedding: bool = True

    def __post_init__(self) -> None:
        """Checks types and ranges before anything is built: a config read from a file
        is data, and a hostile one must fail here in one line, not allocate without
        bound or build for minutes (`LIMITS` caps every size and depth)."""
        _check_types(self)
        _check_ranges(self)
        if len(self.channels) != len(self.blocks):
            raise ValueError("channels and blocks need one entry per level")
        if len(self.downsample) != len(self.channels) - 1:
            raise ValueError("downsample needs one entry per level after the first")
        freq, time = self.frequency_bins, self.chunk_frames
        for down_freq, down_time in (self.stem_stride, *self.downsample):
            if freq % down_freq or time % down_time:
                raise ValueError("the downsampling factors must divide the chunk shape")
            freq, time = freq // down_freq, time // down_time
        _check_shapes(self)

    @property
    def n_fft(self) -> int:
        """The STFT window: 4 hops, as in the papers."""
        return 4 * self.hop_length

    @property
    def chunk_samples(self) -> int:
        """Waveform samples one chunk covers: 64 * 512 = 32768."""
        return self.chunk_frames * self.hop_length

    @property
    def level_grids(self) -> list[tuple[int, int]]:
        """(frequency, time) size of the feature map at every level."""
        freq = self.frequency_bins // self.stem_stride[0]
        time = self.chunk_frames // self.stem_stride[1]
        grids = [(freq, time)]
        for down_freq, down_time in self.downsample:
            freq, time = freq // down_freq, time // down_time
            grids.append((freq, time))
        return grids

    @property
    def token_grid(self) -> tuple[int, int]:
        """(frequency, time) size of the last level: its cells become tokens."""
        return self.level_grids[-1]

    @property
    def tokens_per_chunk(self) -> int:
        freq, time = self.token_grid
        return freq * time

    @property
    def compression_ratio(self) -> float:
        """Waveform samples per latent number (64 for 32768 / (8 * 64))."""
        return self.chunk_samples / (self.num_latents * self.latent_dim)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelConfig:
        """Rebuild a config from `to_json`; unknown keys are an error, not ignored.
        Keys that older files lack take the value that reproduces those files' models."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("the config is not a JSON object")
        if data.get("extra", {}) == {}:  # an unused field of the first files
            data.pop("extra", None)
        known = {item.name for item in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown config keys: {', '.join(unknown)}")
        data = {**LEGACY_DEFAULTS, **data}
        for key in ("stem_stride", "channels", "blocks"):
            if key in data:
                data[key] = tuple(data[key])
        if "downsample" in data:
            data["downsample"] = tuple(tuple(pair) for pair in data["downsample"])
        return cls(**data)


LIMITS: dict[str, tuple[float, float]] = {
    "sample_rate": (1000, 768_000),
    "hop_length": (1, 4096),
    "frequency_bins": (1, 8192),
    "chunk_frames": (1, 1024),
    "num_latents": (1, 1024),
    "latent_dim": (1, 4096),
    "stride": (1, 64),
    "levels": (1, 8),
    "channels": (1, 1024),
    "blocks": (0, 16),
    "dim": (1, 2048),
    "heads": (1, 64),
    "mlp_ratio": (1, 8),
    "depth": (0, 64),
    "noise_embedding_dim": (2, 2048),
    "group_norm_groups": (1, 1024),
    "amplitude": (1e-3, 1e3),
    "sigma": (1e-9, 1e6),
}
"""(smallest, largest) of each number; `paper` sits well inside every range."""
_DEPTHS = ("encoder_depth", "decoder_depth", "consistency_depth")
_INTEGERS = (
    "sample_rate",
    "hop_length",
    "frequency_bins",
    "chunk_frames",
    "num_latents",
    "latent_dim",
    "dim",
    "heads",
    "mlp_ratio",
    *_DEPTHS,
    "noise_embedding_dim",
    "group_norm_groups",
)
_REALS = ("amplitude_alpha", "amplitude_beta", "sigma_min", "sigma_max", "sigma_data", "rho")


def _is_integer(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_pair(value: object) -> bool:
    return isinstance(value, tuple) and len(value) == 2 and all(map(_is_integer, value))


def _check_types(config: ModelConfig) -> None:
    if not isinstance(config.name, str) or len(config.name) > 128:
        raise ValueError("name must be a string of at most 128 characters")
    for key in _INTEGERS:
        if not _is_integer(getattr(config, key)):
            raise ValueError(f"{key} must be an integer, got {getattr(config, key)!r:.24}")
    for key in _REALS:
        value = getattr(config, key)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value != value:
            raise ValueError(f"{key} must be a number, got {value!r:.24}")
    for key in ("frequency_scaling", "summary_index_embedding"):
        if not isinstance(getattr(config, key), bool):
            raise ValueError(f"{key} must be true or false")
    for key in ("channels", "blocks"):
        value = getattr(config, key)
        if not isinstance(value, tuple) or not all(map(_is_integer, value)):
            raise ValueError(f"{key} must be a list of integers")
    strides = (
        (config.stem_stride, *config.downsample) if isinstance(config.downsample, tuple) else ()
    )
    if not strides or not all(map(_is_pair, strides)):
        raise ValueError("stem_stride and downsample must be [frequency, time] integer pairs")


def _check_range(key: str, value: float, limit: str | None = None) -> None:
    lowest, highest = LIMITS[limit or key]
    if not lowest <= value <= highest:
        got = str(value) if len(str(value)) <= 24 else f"{str(value)[:21]}..."
        raise ValueError(f"{key} must be in {lowest:g}..{highest:g}, got {got}")


def _check_ranges(config: ModelConfig) -> None:
    for key in _INTEGERS:
        _check_range(key, getattr(config, key), "depth" if key in _DEPTHS else None)
    _check_range("levels", len(config.channels))
    for value in config.channels:
        _check_range("channels", value)
    for value in config.blocks:
        _check_range("blocks", value)
    for pair in (config.stem_stride, *config.downsample):
        for value in pair:
            _check_range("stride", value)
    for key in ("amplitude_alpha", "amplitude_beta"):
        _check_range(key, getattr(config, key), "amplitude")
    for key in ("sigma_min", "sigma_max", "sigma_data", "rho"):
        _check_range(key, getattr(config, key), "sigma")


def _check_shapes(config: ModelConfig) -> None:
    """What the networks need of the numbers together."""
    if config.sigma_min >= config.sigma_max:
        raise ValueError("sigma_min must be below sigma_max")
    if config.frequency_bins > 2 * config.hop_length:
        raise ValueError("frequency_bins can be at most 2 * hop_length (the STFT's bins)")
    if config.dim % config.heads:
        raise ValueError(f"heads ({config.heads}) must divide dim ({config.dim})")
    if config.noise_embedding_dim % 2:
        raise ValueError("noise_embedding_dim must be even (sine and cosine halves)")
    if any(channels % config.group_norm_groups for channels in config.channels):
        raise ValueError(f"group_norm_groups ({config.group_norm_groups}) must divide channels")
    if config.tokens_per_chunk > 4096:
        raise ValueError(f"{config.tokens_per_chunk} tokens per chunk; at most 4096")


# What a file written before a key existed meant by its absence.
LEGACY_DEFAULTS = {"frequency_scaling": False, "summary_index_embedding": False}

PRESETS: dict[str, ModelConfig] = {
    "small": ModelConfig(),
    "paper": ModelConfig(
        name="paper",
        stem_stride=(2, 1),
        channels=(64, 128, 256, 256, 256, 256),
        blocks=(3, 3, 3, 4, 5, 1),
        downsample=((2, 2), (2, 2), (2, 2), (2, 1), (2, 1)),
        dim=256,
        encoder_depth=16,
        decoder_depth=16,
        consistency_depth=16,
    ),
    # A very small model for tests: same signal path, a fraction of the cost.
    "tiny": ModelConfig(
        name="tiny",
        stem_stride=(8, 4),
        channels=(8, 16),
        blocks=(1, 1),
        downsample=((8, 4),),
        dim=32,
        heads=2,
        mlp_ratio=2,
        encoder_depth=1,
        decoder_depth=1,
        consistency_depth=2,
        noise_embedding_dim=32,
        group_norm_groups=4,
    ),
}


def preset(name: str) -> ModelConfig:
    """The named preset; a clear error lists the names that exist."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]
