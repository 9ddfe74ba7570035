"""Training crops: random two-chunk excerpts of a folder of audio files.

Crop n is a pure function of (seed, n): which file, where, which channel (or the mid
of the channels). So any number of worker processes gives the same batches in the same
order, and a resumed run continues with exactly the crops it would have seen. Crops
quieter than `silence_rms` are redrawn (deterministically too).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..audio import audio_info, find_audio_files, read_excerpt
from ..config import ModelConfig
from ..errors import M2LError
from ..spectral import SpectralTransform


@dataclass(frozen=True)
class Track:
    path: str
    frames: int
    channels: int


def find_tracks(folder: str | Path, min_frames: int, sample_rate: int) -> list[Track]:
    """Audio files under `folder` at the model rate and long enough for one crop."""
    tracks = []
    for path in find_audio_files(folder):
        info = audio_info(path)
        if info.sample_rate == sample_rate and info.frames >= min_frames:
            tracks.append(Track(str(path), info.frames, info.channels))
    if not tracks:
        raise M2LError(
            f"{folder}: no {sample_rate} Hz audio files of at least {min_frames} samples"
        )
    return tracks


class CropDataset(Dataset):
    """Item n: a [2 chunks, 2, F, T] spectrogram pair from a random crop."""

    def __init__(
        self, tracks: list[Track], config: ModelConfig, seed: int, silence_rms: float = 1e-3
    ) -> None:
        self.tracks, self.config, self.seed, self.silence_rms = tracks, config, seed, silence_rms
        self.transform = SpectralTransform(config)
        self.crop = 2 * config.chunk_samples + 2 * self.transform.context
        lengths = np.array([track.frames - self.crop + 1 for track in tracks], dtype=np.float64)
        self.weights = lengths / lengths.sum()  # long tracks are drawn more often

    def __len__(self) -> int:
        return 2**62

    def waveform(self, index: int) -> np.ndarray:
        """The crop's samples [crop], mono."""
        rng = np.random.default_rng([self.seed, index])
        for _ in range(20):
            track = self.tracks[rng.choice(len(self.tracks), p=self.weights)]
            start = int(rng.integers(0, track.frames - self.crop + 1))
            audio = read_excerpt(track.path, start, self.crop)
            choice = int(rng.integers(0, track.channels + 1))
            mono = audio.mean(axis=1) if choice == track.channels else audio[:, choice]
            if np.sqrt(np.mean(mono**2)) >= self.silence_rms:
                break
        return mono

    def __getitem__(self, index: int) -> torch.Tensor:
        spectrogram = self.transform.analyse(torch.from_numpy(self.waveform(index)))
        frames = self.config.chunk_frames
        return torch.stack([spectrogram[..., :frames], spectrogram[..., frames:]])


class CountingSampler(Sampler):
    """Indices start, start + 1, ... forever: crop numbers in training order."""

    def __init__(self, start: int) -> None:
        self.start = start

    def __iter__(self) -> Iterator[int]:
        index = self.start
        while True:
            yield index
            index += 1


def crop_loader(
    dataset: CropDataset, batch_size: int, start_sample: int, workers: int
) -> DataLoader:
    """Batches of crops from `start_sample` on, decoded in worker processes."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=CountingSampler(start_sample),
        num_workers=workers,
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers > 0 else None,
    )
