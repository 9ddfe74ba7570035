"""Training on latents: a map-style torch Dataset over a folder of .m2l containers that
reads fixed-length crops of chunks in place (memory maps, no whole-folder read), a
`collate` for crops of different lengths, and per-dimension statistics for
normalisation computed in one streaming pass and kept as JSON.

Each channel of a container is its own stream of latents (the model codes channels one
by one), so a crop is [chunks, K, latent_dim]: `chunks` chunks in time order, each K
summary embeddings (an unordered set, not time steps) of `latent_dim` numbers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .container import PAYLOAD_DTYPE, SUFFIX, Latents
from .container_format import payload_offset
from .errors import ContainerError, M2LError
from .paths import find_files

STATS_KIND = "m2l latent statistics"


@dataclass(frozen=True)
class ContainerEntry:
    """One container of the folder: where its payload lies and its shape."""

    path: Path
    offset: int
    chunks: int
    channels: int
    num_latents: int
    latent_dim: int
    model_id: str

    @property
    def payload_shape(self) -> tuple[int, int, int, int]:
        """The payload's layout: [chunks, channels, K, latent_dim], time first."""
        return (self.chunks, self.channels, self.num_latents, self.latent_dim)


def container_files(root: str | Path) -> list[Path]:
    """The .m2l files under `root` (a folder, searched recursively) or `root` itself."""
    path = Path(root)
    if path.is_dir():
        return find_files(path, {SUFFIX})
    if path.is_file():
        return [path]
    raise M2LError(f"{root}: no such file or folder")


def scan(root: str | Path) -> list[ContainerEntry]:
    """The checked headers of every container under `root` (payloads not read), all
    of one model; M2LError names the first file that is not a container of it."""
    entries: list[ContainerEntry] = []
    for path in container_files(root):
        header, offset = payload_offset(path)
        entry = ContainerEntry(
            path,
            offset,
            header["chunks"],
            header["channels"],
            header["num_latents"],
            header["latent_dim"],
            header["model_id"],
        )
        if entries and entry.model_id != entries[0].model_id:
            raise ContainerError(
                f"{path}: latents of model {entry.model_id}, but {entries[0].path} has "
                f"{entries[0].model_id}: a dataset holds one model's latents"
            )
        entries.append(entry)
    if not entries:
        raise M2LError(f"{root}: no .m2l containers")
    return entries


@dataclass(frozen=True)
class LatentStats:
    """Per-dimension mean and standard deviation of latent values, over every value of
    every chunk, K and channel of a set of containers (`count` vectors)."""

    mean: np.ndarray  # [latent_dim] float64
    std: np.ndarray  # [latent_dim] float64
    count: int
    files: int
    model_id: str

    def normalize(self, values: torch.Tensor) -> torch.Tensor:
        """(values - mean) / std over the last axis."""
        mean, std = (torch.as_tensor(x, dtype=values.dtype) for x in (self.mean, self.std))
        return (values - mean) / std

    def denormalize(self, values: torch.Tensor) -> torch.Tensor:
        """The inverse of `normalize`: a model's output back to latent values."""
        mean, std = (torch.as_tensor(x, dtype=values.dtype) for x in (self.mean, self.std))
        return values * std + mean

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": STATS_KIND,
            "model_id": self.model_id,
            "files": self.files,
            "vectors": self.count,
            "mean": [float(x) for x in self.mean],
            "std": [float(x) for x in self.std],
        }

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=1) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> LatentStats:
        """Statistics saved by `save`; M2LError if the file holds something else."""
        try:
            data = json.loads(Path(path).read_text())
            if data.get("kind") != STATS_KIND:
                raise ValueError("not latent statistics")
            mean, std = (np.array(data[key], dtype=np.float64) for key in ("mean", "std"))
            return cls(mean, std, int(data["vectors"]), int(data["files"]), str(data["model_id"]))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            raise M2LError(f"{path}: cannot read latent statistics ({error})") from None


def latent_stats(root: str | Path) -> LatentStats:
    """Per-dimension mean and std of the latents under `root`, in one pass: file by file
    (each loaded and checksum-checked on its own), merged with Chan's parallel update
    in float64, so memory holds one file at a time."""
    entries = scan(root)
    dim = entries[0].latent_dim
    count, mean, squares = 0, np.zeros(dim), np.zeros(dim)
    for entry in entries:
        values = Latents.load(entry.path).values.reshape(-1, dim).astype(np.float64)
        if not len(values):
            continue
        part_mean = values.mean(axis=0)
        part_squares = ((values - part_mean) ** 2).sum(axis=0)
        total = count + len(values)
        delta = part_mean - mean
        mean = mean + delta * len(values) / total
        squares = squares + part_squares + delta**2 * count * len(values) / total
        count = total
    if count == 0:
        raise M2LError(f"{root}: the containers hold no chunks")
    return LatentStats(mean, np.sqrt(squares / count), count, len(entries), entries[0].model_id)


class LatentDataset(torch.utils.data.Dataset):
    """Crops of `crop_chunks` chunks, every `hop_chunks` (default: no overlap), of every
    channel of every container under `root`. A stream shorter than a crop gives one
    shorter item (`collate` pads it). Items are dicts: `latents` float32
    [chunks, K, latent_dim] (normalised by `stats` when given), `file`, `channel`,
    `offset` (the crop's first chunk) and `chunks`. Headers are read once here;
    payloads are memory-mapped in `__getitem__` (in each DataLoader worker), so only
    the crops asked for are read. The payload's checksum is not checked here
    (`m2l info` checks a file)."""

    def __init__(
        self,
        root: str | Path,
        *,
        crop_chunks: int,
        hop_chunks: int | None = None,
        stats: LatentStats | None = None,
    ) -> None:
        if crop_chunks < 1 or (hop_chunks is not None and hop_chunks < 1):
            raise ValueError("crop_chunks and hop_chunks must be at least 1")
        self.entries = scan(root)
        self.crop_chunks, self.stats = crop_chunks, stats
        hop = hop_chunks or crop_chunks
        self.items = [
            (index, channel, offset)
            for index, entry in enumerate(self.entries)
            for channel in range(entry.channels)
            for offset in range(0, max(entry.chunks - crop_chunks, 0) + 1, hop)
            if entry.chunks
        ]
        self.maps: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, item: int) -> dict[str, Any]:
        index, channel, offset = self.items[item]
        entry = self.entries[index]
        crop = self._payload(index)[offset : offset + self.crop_chunks, channel]
        latents = torch.from_numpy(crop.astype(np.float32))
        if self.stats is not None:
            latents = self.stats.normalize(latents)
        return {
            "latents": latents,
            "file": str(entry.path),
            "channel": channel,
            "offset": offset,
            "chunks": latents.shape[0],
        }

    def _payload(self, index: int) -> np.ndarray:
        """The container's payload as a read-only memory map, opened once per process."""
        if index not in self.maps:
            entry = self.entries[index]
            self.maps[index] = np.memmap(
                entry.path, PAYLOAD_DTYPE, "r", entry.offset, entry.payload_shape
            )
        return self.maps[index]

    def __getstate__(self) -> dict[str, Any]:
        """Pickled for DataLoader workers without the open maps (each opens its own)."""
        return {**self.__dict__, "maps": {}}


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """A batch of dataset items: `latents` [batch, longest, K, latent_dim] zero-padded at
    the end, `mask` [batch, longest] True where a chunk is real, and the items' `file`
    (a list), `channel`, `offset` and `chunks` (tensors)."""
    longest = max(item["chunks"] for item in items)
    first = items[0]["latents"]
    latents = first.new_zeros((len(items), longest, *first.shape[1:]))
    mask = torch.zeros((len(items), longest), dtype=torch.bool)
    for row, item in enumerate(items):
        latents[row, : item["chunks"]] = item["latents"]
        mask[row, : item["chunks"]] = True
    return {
        "latents": latents,
        "mask": mask,
        "file": [item["file"] for item in items],
        "channel": torch.tensor([item["channel"] for item in items]),
        "offset": torch.tensor([item["offset"] for item in items]),
        "chunks": torch.tensor([item["chunks"] for item in items]),
    }
