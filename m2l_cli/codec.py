"""The Python API: a loaded model plus the encode and decode loops around it.

codec = Codec.load("model.safetensors")
latents = codec.encode(waveform, sample_rate)        # [channels, samples] float
latents.save("song.m2l")
audio = codec.decode(Latents.load("song.m2l"))        # at the original rate
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from ._version import __version__
from .config import ModelConfig, preset
from .container import Latents
from .decoding import DecodeJob, Decoder
from .encoding import ArraySource, EncodedStream, EncodeJob, encode_jobs
from .errors import M2LError, ModelError
from .model import Music2Latent2
from .spectral import SpectralTransform
from .weights import file_metadata, model_id_of, read_weights, serialize

DEFAULT_BATCH_SIZE = 16
PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' picks CUDA, then MPS, then the CPU; a named device must exist."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    available = {
        "cpu": True,
        "cuda": torch.cuda.is_available(),
        "mps": torch.backends.mps.is_available(),
    }
    if name not in available:
        raise M2LError(f"unknown device {name!r}; choose auto, cpu, cuda or mps")
    if not available[name]:
        raise M2LError(f"device {name} is not available on this machine")
    return torch.device(name)


def cpu_has_fast_bf16() -> bool:
    """True when the CPU computes bfloat16 natively (AVX512-BF16 or AMX)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(name: str, device: torch.device) -> str:
    """'auto': half precision on a GPU, bf16 on a CPU that has it, else fp32."""
    if name == "auto":
        if device.type in ("cuda", "mps"):
            return "fp16"
        return "bf16" if cpu_has_fast_bf16() else "fp32"
    if name not in PRECISIONS:
        raise M2LError(f"unknown precision {name!r}; choose auto, fp32, bf16 or fp16")
    return name


class Codec:
    """A Music2Latent2 model ready to encode audio to latents and decode them back."""

    def __init__(
        self,
        model: Music2Latent2,
        model_name: str,
        model_id: str | None = None,
        trained: bool = True,
        device: str = "auto",
        precision: str = "auto",
        threads: int | None = None,
    ) -> None:
        if threads:
            torch.set_num_threads(threads)
        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device)
        self.model = model.eval().to(self.device, memory_format=torch.channels_last)
        self.model_name = model_name
        self.trained = trained
        if model_id is not None:
            self.__dict__["model_id"] = model_id
        self.transform = SpectralTransform(model.config)

    @property
    def config(self) -> ModelConfig:
        return self.model.config

    @cached_property
    def model_id(self) -> str:
        """sha256 prefix of the weights file these weights save to."""
        metadata = file_metadata(self.model, self.model_name, self.trained)
        return model_id_of(self.model.state_dict(), metadata)

    @classmethod
    def load(cls, path: str | Path, **options) -> Codec:
        """Loads a safetensors weights file (options: device, precision, threads)."""
        model, metadata, model_id = read_weights(path)
        name = metadata.get("model_name", model.config.name)
        return cls(model, name, model_id, metadata.get("trained") != "no", **options)

    @classmethod
    def create(
        cls, preset_name: str = "small", seed: int = 0, name: str | None = None, **options
    ) -> Codec:
        """A new, untrained model: for training and tests, never for coding audio."""
        try:
            config = preset(preset_name)
        except ValueError as error:
            raise ModelError(str(error)) from None
        torch.manual_seed(seed)
        model = Music2Latent2(config)
        return cls(model, name or f"{config.name}-untrained", trained=False, **options)

    def save(self, path: str | Path, dtype: torch.dtype | None = None) -> str:
        """Writes the weights (optionally as float16); returns the file's model id."""
        data, model_id = serialize(self.model, self.model_name, dtype, self.trained)
        Path(path).write_bytes(data)
        return model_id

    def autocast(self) -> contextlib.AbstractContextManager:
        dtype = PRECISIONS[self.precision]
        enabled = dtype != torch.float32
        return torch.autocast(self.device.type, dtype=dtype, enabled=enabled)

    # Model calls, batched; inputs and outputs on the CPU.
    def _encode_batch(self, spectrograms: torch.Tensor) -> torch.Tensor:
        x = spectrograms.to(self.device).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), self.autocast():
            return self.model.encoder(x).float().cpu()

    @cached_property
    def chunks_per_call(self) -> int:
        """On a CPU, how many chunks one call may hold so its finest feature maps stay
        within ~16 MiB (cache-sized: bigger batches ran slower there). Unlimited on GPUs."""
        if self.device.type != "cpu":
            return 1 << 30
        frequency, time = self.config.level_grids[0]
        bytes_per_chunk = self.config.channels[0] * frequency * time * 4
        return max(1, (16 << 20) // bytes_per_chunk)

    def _decode_features(self, latents: torch.Tensor) -> list[torch.Tensor]:
        pieces = []
        with torch.inference_mode(), self.autocast():
            for part in latents.split(self.chunks_per_call):
                pieces.append(self.model.decoder(part.to(self.device)))
        if len(pieces) == 1:
            return pieces[0]
        return [torch.cat(levels) for levels in zip(*pieces, strict=True)]

    def _denoise(
        self, x: torch.Tensor, sigma: torch.Tensor, features: list[torch.Tensor]
    ) -> torch.Tensor:
        slots = x.shape[1]
        rows = max(1, self.chunks_per_call // slots)
        outputs = []
        with torch.inference_mode(), self.autocast():
            for start in range(0, x.shape[0], rows):
                part = slice(start, start + rows)
                part_features = [
                    level[start * slots : (start + rows) * slots] for level in features
                ]
                output = self.model.consistency(
                    x[part].to(self.device), sigma[part].to(self.device), part_features
                )
                outputs.append(output.float().cpu())
        return torch.cat(outputs)

    def _analyse(self, window: np.ndarray) -> torch.Tensor:
        return self.transform.analyse(torch.from_numpy(window))

    # Streams of files.
    def encode_jobs(
        self,
        jobs: Iterable[EncodeJob],
        batch_size: int = DEFAULT_BATCH_SIZE,
        progress: Callable[[float], None] | None = None,
    ) -> Iterator[tuple[EncodeJob, Latents | M2LError]]:
        """Encodes many inputs, batching chunks across them; yields each as it finishes."""
        config = self.config
        streams = encode_jobs(
            jobs,
            self._analyse,
            self._encode_batch,
            config.sample_rate,
            config.chunk_samples,
            self.transform.context,
            batch_size,
            progress,
        )
        for stream in streams:
            yield stream.job, stream.error or self._latents(stream)

    def _latents(self, stream: EncodedStream) -> Latents:
        return Latents(
            values=stream.values().astype(np.float16),
            model_id=self.model_id,
            model_name=self.model_name,
            sample_rate=self.config.sample_rate,
            original_sample_rate=stream.source.sample_rate,
            num_samples=stream.reader.input_samples,
            model_num_samples=stream.reader.model_samples,
            chunk_samples=self.config.chunk_samples,
            metadata=dict(stream.job.metadata),
            tool_version=__version__,
        )

    def decode_jobs(
        self,
        jobs: Iterable[DecodeJob],
        sigma_cond: float = 0.4,
        batch_size: int = DEFAULT_BATCH_SIZE,
        progress: Callable[[int], None] | None = None,
    ) -> Iterator[tuple[DecodeJob, M2LError | None]]:
        """Decodes many containers, stepping all of them together; yields each when written."""
        decoder = Decoder(self.config, self._decode_features, self._denoise, sigma_cond, batch_size)
        return decoder.run(jobs, progress)

    def check_latents(self, latents: Latents, name: str = "latents") -> None:
        """Refuses latents made by another model (compared by model id)."""
        if latents.model_id != self.model_id:
            raise ModelError(
                f"{name}: latents were made by model {latents.model_id} ({latents.model_name}), "
                f"but the loaded model is {self.model_id} ({self.model_name})"
            )

    # One waveform in memory.
    def encode(
        self,
        waveform: np.ndarray | torch.Tensor,
        sample_rate: int,
        metadata: dict[str, str] | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> Latents:
        """[channels, samples] or [samples] audio at any rate -> Latents."""
        array = np.asarray(waveform, dtype=np.float32)
        array = array[None] if array.ndim == 1 else array
        if array.ndim != 2 or array.shape[1] == 0:
            raise M2LError("waveform must be [channels, samples] with at least one sample")
        job = EncodeJob(lambda: ArraySource(array, int(sample_rate)), "<array>", metadata or {})
        _, result = next(self.encode_jobs([job], batch_size))
        if isinstance(result, M2LError):
            raise result
        return result

    def decode(
        self,
        latents: Latents,
        sigma_cond: float = 0.4,
        seed: int = 0,
        sample_rate: int | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> np.ndarray:
        """Latents -> [channels, samples] float32 at the original rate (or `sample_rate`)."""
        self.check_latents(latents)
        blocks: list[np.ndarray] = []
        job = DecodeJob(latents, blocks.append, "<latents>", sample_rate, seed)
        for _, error in self.decode_jobs([job], sigma_cond, batch_size):
            if error is not None:
                raise error
        if not blocks:
            return np.zeros((latents.channels, 0), np.float32)
        return np.concatenate(blocks, axis=1)
