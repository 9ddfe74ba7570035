"""`m2l embed` and `m2l stats` on files and folders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile
from commands import m2l

from m2l_cli import Codec, Latents
from m2l_cli.dataset import latent_stats


@pytest.fixture(scope="module")
def codec(model_file: Path) -> Codec:
    return Codec.load(model_file, device="cpu", precision="fp32")


@pytest.fixture
def folder(tmp_path: Path, codec: Codec) -> Path:
    """music/a.wav (stereo, 1.5 s), music/sub/b.flac (mono, 1 s at 48 kHz), and the
    container of a.wav, music/sub/a.wav.m2l."""
    root = tmp_path / "music"
    (root / "sub").mkdir(parents=True)
    time_axis = np.arange(66150) / 44100
    stereo = 0.3 * np.stack(
        [np.sin(2 * np.pi * 220 * time_axis), np.sin(2 * np.pi * 330 * time_axis)]
    )
    soundfile.write(root / "a.wav", stereo.T, 44100, subtype="FLOAT")
    soundfile.write(root / "sub" / "b.flac", 0.2 * np.sin(np.arange(48000) * 0.03), 48000)
    codec.encode(stereo, 44100).save(root / "sub" / "a.wav.m2l")
    return root


def test_a_folder_gives_one_npz_of_features_and_pooled_latents(folder, codec, model_file):
    result = m2l(
        "embed", "music", "--json", "--precision", "fp32", cwd=folder.parent, model=model_file
    )
    assert result.returncode == 0, result.stderr
    summary = {entry["file"]: entry for entry in json.loads(result.stdout)}
    assert {entry["kind"] for entry in summary.values()} == {"summary embeddings", "latents"}
    archive = np.load(folder.parent / "music.npz")
    audio, rate = soundfile.read(folder / "a.wav", dtype="float32", always_2d=True)
    expected = codec.embed(audio.T, rate)
    np.testing.assert_allclose(archive["a.wav"], expected, rtol=1e-4, atol=1e-5)
    assert archive["sub/b.flac"].shape == (1, codec.config.num_latents * codec.config.dim)
    latents = Latents.load(folder / "sub" / "a.wav.m2l").values.astype(np.float64)
    pooled = latents.reshape(2, latents.shape[1], -1).mean(axis=1)
    np.testing.assert_allclose(archive["sub/a.wav.m2l"], pooled, rtol=1e-6)
    assert list(archive["__kind__"]) == [
        summary[f"music/{n}"]["kind"] for n in ("a.wav", "sub/a.wav.m2l", "sub/b.flac")
    ]


def test_a_folder_to_a_folder_mirrors_the_tree_per_chunk(folder, codec, model_file):
    args = ["embed", "music", "-o", "features", "--pool", "none"]
    assert m2l(*args, cwd=folder.parent, model=model_file).returncode == 0
    per_chunk = np.load(folder.parent / "features" / "sub" / "b.flac.npy")
    assert per_chunk.shape == (1, 2, codec.config.num_latents, codec.config.dim)
    again = m2l(*args, cwd=folder.parent, model=model_file)
    assert again.returncode == 1 and "exists" in again.stderr.decode()
    assert (
        m2l("embed", "music", "--pool", "max", cwd=folder.parent, model=model_file).returncode == 2
    )


def test_stats_of_a_folder_are_the_api_statistics(folder, model_file):
    result = m2l("stats", "music", "--json", "-o", "stats.json", cwd=folder.parent, model=None)
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    assert printed == json.loads((folder.parent / "stats.json").read_text())
    expected = latent_stats(folder)
    assert printed["mean"] == pytest.approx(list(expected.mean), abs=1e-12)
    assert printed["vectors"] == expected.count
    table = m2l("stats", "music", cwd=folder.parent, model=None)
    assert table.returncode == 0 and b"latent vectors" in table.stdout
    empty = m2l("stats", "music/sub/b.flac", cwd=folder.parent, model=None)
    assert empty.returncode == 1 and empty.stderr.decode().count("\n") == 1
