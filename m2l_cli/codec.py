"""The Python API: a loaded model plus the encode and decode loops around it.

codec = Codec.load()                                 # $M2L_MODEL, else the bundled model
latents = codec.encode(waveform, sample_rate)        # waveform: [channels, samples]
latents.save("song.m2l")
audio = codec.decode(Latents.load("song.m2l"))        # at the original rate
features = codec.embed(waveform, sample_rate)        # MIR features, [channels, K * dim]
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ._version import __version__
from .config import ModelConfig, preset
from .container import Latents, ModelInfo, check_fit, check_model
from .decoding import DecodeJob, DecodeScheduler
from .defaults import DEFAULT_BATCH_SIZE, DEFAULT_SIGMA_COND
from .encoding import ArraySource, EncodedStream, EncodeJob, encode_jobs, progress_total
from .errors import M2LError, ModelError
from .features import pool_chunks, summary_embedder
from .inference import ModelRunner
from .model import Music2Latent2
from .ranges import TimeRange, range_job
from .runtime import AUTO, resolve_device, resolve_precision
from .spectral import SpectralTransform
from .weights import file_metadata, find_model, model_id_of, read_weights, serialize


class Codec:
    """A Music2Latent2 model ready to encode audio to latents and decode them back."""

    def __init__(
        self,
        model: Music2Latent2,
        model_name: str,
        *,
        model_id: str | None = None,
        trained: bool = True,
        device: str | torch.device = AUTO,
        precision: str = AUTO,
    ) -> None:
        chosen = resolve_device(device)
        self.runner = ModelRunner(model, chosen, resolve_precision(precision, chosen))
        self.model_name = model_name
        self.trained = trained
        if model_id is not None:
            self.__dict__["model_id"] = model_id
        self.transform = SpectralTransform(model.config)

    @property
    def model(self) -> Music2Latent2:
        return self.runner.model

    @property
    def device(self) -> torch.device:
        return self.runner.device

    @property
    def precision(self) -> str:
        """The resolved precision: 'fp32', 'bf16' or 'fp16'."""
        return self.runner.precision

    @property
    def config(self) -> ModelConfig:
        return self.model.config

    @property
    def model_info(self) -> ModelInfo:
        """What latents record of this model (for `Latents.from_array`)."""
        config = self.config
        shape = (config.sample_rate, config.chunk_samples, config.num_latents, config.latent_dim)
        return ModelInfo(self.model_id, self.model_name, *shape)

    @cached_property
    def model_id(self) -> str:
        """The id written into the latents this codec makes (see `weights`): for a loaded
        codec, the id of the file it was loaded from, which covers the tensors as stored
        there (float32, or float16 after `save(path, torch.float16)`); for a created one,
        the id of its float32 weights, the id `save(path)` returns. A float16 save of the
        same weights has another id, and a codec loaded from it carries that one."""
        metadata = file_metadata(self.model, self.model_name, self.trained)
        return model_id_of(self.model.state_dict(), metadata)

    @classmethod
    def load(cls, path: str | Path | None = None, **options: Any) -> Codec:
        """Loads a safetensors weights file: `path`, else the one $M2L_MODEL names, else
        the bundled default model (options: device, precision)."""
        model, metadata, model_id = read_weights(find_model(path))
        name = metadata.get("model_name", model.config.name)
        trained = metadata.get("trained") != "no"
        return cls(model, name, model_id=model_id, trained=trained, **options)

    @classmethod
    def create(
        cls, preset_name: str = "small", *, seed: int = 0, name: str | None = None, **options: Any
    ) -> Codec:
        """A new, untrained model: for training and tests, never for coding audio. The
        weights come from `seed`; the global random state is left as it was."""
        try:
            config = preset(preset_name)
        except ValueError as error:
            raise ModelError(str(error)) from None
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = Music2Latent2(config)
        return cls(model, name or f"{config.name}-untrained", trained=False, **options)

    def save(self, path: str | Path, dtype: torch.dtype | None = None) -> str:
        """Writes the weights (optionally as float16); returns the file's model id."""
        data, model_id = serialize(self.model, self.model_name, dtype, self.trained)
        Path(path).write_bytes(data)
        return model_id

    # Streams of inputs.
    def encode_progress_total(self, frames: int, sample_rate: int, channels: int) -> int:
        """The progress units `encode_jobs` reports for such an input."""
        return progress_total(frames, sample_rate, channels, self.config)

    def encode_jobs(
        self,
        jobs: Iterable[EncodeJob],
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        progress: Callable[[int], None] | None = None,
    ) -> Iterator[tuple[EncodeJob, Latents | M2LError]]:
        """Encodes many inputs, batching chunks across them; yields each as it finishes.
        `progress` gets the chunk-channels done (`encode_progress_total` per input)."""
        for stream in self._streams(jobs, self.runner.encode, batch_size, progress):
            yield stream.job, stream.error or self._latents(stream)

    def embed_jobs(
        self,
        jobs: Iterable[EncodeJob],
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        progress: Callable[[int], None] | None = None,
    ) -> Iterator[tuple[EncodeJob, np.ndarray | M2LError]]:
        """The summary embeddings of many inputs, [channels, chunks, K, dim] float32 each,
        chunked and batched as `encode_jobs` does (the same progress units)."""
        embedder = summary_embedder(self.runner)
        for stream in self._streams(jobs, embedder, batch_size, progress):
            yield stream.job, stream.error or stream.values()

    def _streams(
        self,
        jobs: Iterable[EncodeJob],
        network: Callable[[torch.Tensor], torch.Tensor],
        batch_size: int,
        progress: Callable[[int], None] | None,
    ) -> Iterator[EncodedStream]:
        """The encode loop over `jobs`, with `network` run on each batch of chunks."""
        return encode_jobs(
            jobs,
            config=self.config,
            transform=self.transform,
            encode=network,
            batch_size=batch_size,
            progress=progress,
        )

    def _latents(self, stream: EncodedStream) -> Latents:
        assert stream.source is not None and stream.reader is not None
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
        *,
        sigma_cond: float = DEFAULT_SIGMA_COND,
        batch_size: int = DEFAULT_BATCH_SIZE,
        progress: Callable[[int], None] | None = None,
    ) -> Iterator[tuple[DecodeJob, M2LError | None]]:
        """Decodes many containers, stepping all of them together; yields each when written.
        `progress` gets the channels of each step (`decoding.progress_total` per file)."""
        scheduler = DecodeScheduler(
            self.config,
            decode_features=self.runner.decode_features,
            denoise=self.runner.denoise,
            sigma_cond=sigma_cond,
            batch_size=batch_size,
        )
        return scheduler.run(jobs, progress)

    def check_latents(self, latents: Latents, name: str = "latents") -> None:
        """Refuses latents made by another model (compared by model id) or not of its
        shapes and rates."""
        check_model(name, latents.model_id, latents.model_name, self.model_id)
        check_fit(name, latents.header(), self.config)

    # One waveform in memory.
    def encode(
        self,
        waveform: np.ndarray | torch.Tensor,
        sample_rate: int,
        *,
        metadata: dict[str, str] | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> Latents:
        """[channels, samples] or [samples] audio at any rate -> Latents."""
        job = _array_job(waveform, sample_rate, metadata)
        _, result = next(self.encode_jobs([job], batch_size=batch_size))
        if isinstance(result, M2LError):
            raise result
        return result

    def embed(
        self,
        waveform: np.ndarray | torch.Tensor,
        sample_rate: int,
        *,
        pool: str | None = "mean",
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> np.ndarray:
        """MIR features of [channels, samples] or [samples] audio at any rate: the
        pre-bottleneck summary embeddings, [channels, K * dim] float32 pooled over the
        file (`pool="mean"`), or [channels, chunks, K, dim] per chunk (`pool=None`)."""
        job = _array_job(waveform, sample_rate)
        _, result = next(self.embed_jobs([job], batch_size=batch_size))
        if isinstance(result, M2LError):
            raise result
        return pool_chunks(result, pool)

    def decode(
        self,
        latents: Latents | np.ndarray | torch.Tensor,
        *,
        sigma_cond: float = DEFAULT_SIGMA_COND,
        seed: int = 0,
        sample_rate: int | None = None,
        start: float = 0.0,
        duration: float | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> np.ndarray:
        """Latents -> [channels, samples] float32 at the original rate (or `sample_rate`).
        An array of latent values ([chunks, K, D] or [channels, chunks, K, D], a
        generative model's output) decodes as `Latents.from_array(values, codec)`: every
        chunk whole, at the model's rate. With `start` or `duration` (seconds), only that
        range is decoded (`ranges`)."""
        if not isinstance(latents, Latents):
            latents = Latents.from_array(latents, self)
        self.check_latents(latents)
        blocks: list[np.ndarray] = []
        job = DecodeJob(latents, blocks.append, "<latents>", sample_rate, seed)
        if start or duration is not None:
            job = range_job(job, TimeRange(start, duration), self.config)
        for _, error in self.decode_jobs([job], sigma_cond=sigma_cond, batch_size=batch_size):
            if error is not None:
                raise error
        if not blocks:
            return np.zeros((latents.channels, 0), np.float32)
        return np.concatenate(blocks, axis=1)


def _array_job(
    waveform: np.ndarray | torch.Tensor, sample_rate: int, metadata: dict[str, str] | None = None
) -> EncodeJob:
    """An encode job reading [channels, samples] or [samples] audio from memory."""
    array = np.asarray(waveform, dtype=np.float32)
    array = array[None] if array.ndim == 1 else array
    if array.ndim != 2 or array.shape[1] == 0:
        raise M2LError("waveform must be [channels, samples] with at least one sample")
    return EncodeJob(lambda: ArraySource(array, int(sample_rate)), "<array>", metadata or {})
