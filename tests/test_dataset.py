"""Training on a folder of latents: crops read in place, collate, statistics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from m2l_cli import Latents
from m2l_cli.container import ModelInfo
from m2l_cli.dataset import LatentDataset, LatentStats, collate, latent_stats
from m2l_cli.errors import M2LError

MODEL = ModelInfo("0123456789ab", "test-model", 44100, 32768, 8, 64)


@pytest.fixture
def folder(tmp_path: Path) -> dict[str, np.ndarray]:
    """Three containers in a tree, 2, 7 (stereo) and 12 chunks, different per dimension."""
    rng = np.random.default_rng(0)
    scale = np.linspace(0.05, 0.7, 64)
    arrays = {
        "a.m2l": rng.normal(0.1, scale, (1, 2, 8, 64)),
        "sub/b.m2l": rng.normal(-0.2, scale, (2, 7, 8, 64)),
        "sub/deeper/c.m2l": rng.normal(0.0, scale, (1, 12, 8, 64)),
    }
    for name, values in arrays.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        Latents.from_array(np.clip(values, -0.99, 0.99), MODEL).save(tmp_path / name)
    (tmp_path / "notes.txt").write_text("not a container")
    return {
        str(tmp_path / name): np.clip(values, -0.99, 0.99).astype(np.float16)
        for name, values in arrays.items()
    }


def test_crops_are_the_containers_chunks_with_their_file_and_offset(folder, tmp_path):
    dataset = LatentDataset(tmp_path, crop_chunks=4, hop_chunks=3)
    # a: one short item; b: offsets 0 and 3, for each of 2 channels; c: offsets 0, 3, 6, ...
    assert len(dataset) == 1 + 2 * 2 + 3
    for item in (dataset[index] for index in range(len(dataset))):
        values = folder[item["file"]][item["channel"], item["offset"] : item["offset"] + 4]
        assert item["latents"].dtype == torch.float32
        assert item["chunks"] == item["latents"].shape[0] == values.shape[0]
        assert np.array_equal(item["latents"].numpy(), values.astype(np.float32))
    assert sorted({dataset[i]["offset"] for i in range(len(dataset))}) == [0, 3, 6]


def test_collate_pads_short_crops_and_masks_them(folder, tmp_path):
    dataset = LatentDataset(tmp_path, crop_chunks=4)
    loader = torch.utils.data.DataLoader(dataset, batch_size=len(dataset), collate_fn=collate)
    batch = next(iter(loader))
    assert batch["latents"].shape == (len(dataset), 4, 8, 64)
    assert batch["mask"].sum(dim=1).tolist() == batch["chunks"].tolist()
    short = batch["chunks"].tolist().index(2)
    assert not batch["latents"][short, 2:].any() and not batch["mask"][short, 2:].any()


def test_a_dataset_can_go_to_worker_processes(folder, tmp_path):
    dataset = LatentDataset(tmp_path, crop_chunks=4)
    dataset[0]  # opens a memory map, which must not travel to the workers
    loader = torch.utils.data.DataLoader(dataset, batch_size=2, collate_fn=collate, num_workers=1)
    assert sum(len(batch["file"]) for batch in loader) == len(dataset)


def test_statistics_match_numpy_over_the_whole_set(folder, tmp_path):
    stats = latent_stats(tmp_path)
    everything = np.concatenate([v.reshape(-1, 64).astype(np.float64) for v in folder.values()])
    np.testing.assert_allclose(stats.mean, everything.mean(axis=0), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(stats.std, everything.std(axis=0), rtol=1e-10)
    assert (stats.count, stats.files, stats.model_id) == (len(everything), 3, MODEL.model_id)
    stats.save(tmp_path / "stats.json")
    loaded = LatentStats.load(tmp_path / "stats.json")
    assert np.array_equal(loaded.mean, stats.mean) and np.array_equal(loaded.std, stats.std)


def test_normalised_crops_have_zero_mean_and_unit_std_over_the_set(folder, tmp_path):
    dataset = LatentDataset(tmp_path, crop_chunks=1, stats=latent_stats(tmp_path))
    values = torch.stack([dataset[i]["latents"] for i in range(len(dataset))]).reshape(-1, 64)
    assert values.mean(dim=0).abs().max() < 1e-4
    assert (values.std(dim=0, correction=0) - 1).abs().max() < 1e-4
    back = dataset.stats.denormalize(dataset[0]["latents"])
    assert torch.allclose(back, LatentDataset(tmp_path, crop_chunks=1)[0]["latents"], atol=1e-5)


def test_a_folder_of_two_models_or_of_nothing_is_refused(folder, tmp_path):
    other = ModelInfo("ba9876543210", "other", 44100, 32768, 8, 64)
    Latents.from_array(np.zeros((3, 8, 64)), other).save(tmp_path / "z.m2l")
    with pytest.raises(M2LError, match="one model"):
        LatentDataset(tmp_path, crop_chunks=2)
    (tmp_path / "empty").mkdir()
    with pytest.raises(M2LError, match="no .m2l containers"):
        latent_stats(tmp_path / "empty")
    with pytest.raises(M2LError, match="cannot read latent statistics"):
        LatentStats.load(tmp_path / "notes.txt")
