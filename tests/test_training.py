"""Consistency training: the noise schedule, the loss, crops, checkpoints and resume."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from m2l_cli import Codec
from m2l_cli.config import PRESETS
from m2l_cli.consistency_training import (
    NoiseSchedule,
    pseudo_huber,
    sample_noise_levels,
    time_from_sigma,
)
from m2l_cli.dataset import CropDataset, find_tracks
from m2l_cli.model.consistency import sigma_from_time
from m2l_cli.trainer import TrainConfig, export_checkpoint, train

TINY = PRESETS["tiny"]


@pytest.fixture(scope="module")
def music(tmp_path_factory) -> Path:
    """Three 3-second stereo 'songs' of random sines, and one silent file."""
    folder = tmp_path_factory.mktemp("music")
    rng = np.random.default_rng(0)
    t = np.arange(3 * 44100) / 44100
    for index in range(3):
        tones = sum(0.1 * np.sin(2 * np.pi * f * t) for f in rng.uniform(100, 4000, 4))
        soundfile.write(folder / f"song{index}.flac", np.stack([tones, -tones], 1), 44100)
    soundfile.write(folder / "silence.flac", np.zeros(3 * 44100), 44100)
    return folder


def test_step_size_shrinks_from_dt0_to_dt0_cubed() -> None:
    schedule = NoiseSchedule()
    assert schedule.step_size(0, 1000) == pytest.approx(0.1)
    assert schedule.step_size(500, 1000) == pytest.approx(0.1**2)
    assert schedule.step_size(1000, 1000) == pytest.approx(0.1**3)


def test_time_from_sigma_inverts_sigma_from_time() -> None:
    t = torch.linspace(0, 1, 11, dtype=torch.float64)
    assert torch.allclose(time_from_sigma(sigma_from_time(t, TINY), TINY), t, atol=1e-9)


def test_noise_level_pairs_are_one_step_apart_and_in_range() -> None:
    generator = torch.Generator().manual_seed(0)
    teacher, student = sample_noise_levels((4096,), 0.05, NoiseSchedule(), TINY, generator)
    gap = time_from_sigma(student, TINY) - time_from_sigma(teacher, TINY)
    assert torch.allclose(gap, torch.full_like(gap, 0.05), atol=1e-4)
    assert teacher.min() >= TINY.sigma_min * 0.999 and student.max() <= TINY.sigma_max * 1.001
    assert (student > teacher).all()


def test_pseudo_huber_is_zero_for_equal_outputs_and_grows_with_distance() -> None:
    zero = torch.zeros(2, 2, 2, 8, 8)
    assert torch.allclose(pseudo_huber(zero), torch.zeros(2, 2))
    small, large = pseudo_huber(zero + 0.01), pseudo_huber(zero + 0.1)
    assert (large > small).all() and (small > 0).all()


def test_learning_rate_decays_by_cosine_to_the_final_rate() -> None:
    settings = TrainConfig(total_steps=100)
    assert settings.learning_rate_at(0) == pytest.approx(1e-4)
    assert settings.learning_rate_at(50) == pytest.approx((1e-4 + 1e-6) / 2)
    assert settings.learning_rate_at(100) == pytest.approx(1e-6)


def test_crops_are_a_function_of_their_index_and_skip_silence(music: Path) -> None:
    tracks = find_tracks(music, 70000, 44100)
    first, second = CropDataset(tracks, TINY, seed=1), CropDataset(tracks, TINY, seed=1)
    assert torch.equal(first[5], second[5])
    assert not torch.equal(first[5], first[6])
    assert first[5].shape == (2, 2, 1024, 64)
    loudness = [np.sqrt(np.mean(first.waveform(index) ** 2)) for index in range(12)]
    assert min(loudness) > 1e-3  # the silent file's crops are redrawn


def settings() -> TrainConfig:
    return TrainConfig(
        preset="tiny",
        batch_size=2,
        total_steps=50,
        workers=0,
        precision="fp32",
        log_every=1,
        checkpoint_every=100,
    )


def test_resuming_continues_bit_for_bit(music: Path, tmp_path: Path) -> None:
    cpu = torch.device("cpu")
    straight = train(music, tmp_path / "straight", settings(), steps=4, device=cpu)
    train(music, tmp_path / "split", settings(), steps=2, device=cpu)
    resumed = train(
        music, tmp_path / "split", steps=2, device=cpu, resume=True, routine={"log_every": 2}
    )
    assert resumed.step == straight.step == 4
    for name, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[name]), name
    for name, value in straight.ema.state_dict().items():
        assert torch.equal(value, resumed.ema.state_dict()[name]), name
    log = (tmp_path / "split" / "train.csv").read_text().splitlines()
    assert log[0].startswith("loss,lr,dt,grad_norm,step") and len(log) == 4  # 1, 2, then 4


def test_only_routine_settings_change_on_resume() -> None:
    assert settings().with_routine({"validate_every": 7}).validate_every == 7
    with pytest.raises(ValueError, match="batch_size"):
        settings().with_routine({"batch_size": 2})


def test_a_new_run_refuses_a_folder_with_a_checkpoint(music: Path, tmp_path: Path) -> None:
    train(music, tmp_path / "run", settings(), steps=1, device=torch.device("cpu"))
    with pytest.raises(Exception, match="--resume"):
        train(music, tmp_path / "run", settings(), steps=1, device=torch.device("cpu"))


def test_export_writes_float16_ema_weights_that_load_as_a_codec(
    music: Path, tmp_path: Path
) -> None:
    trainer = train(music, tmp_path / "run", settings(), steps=2, device=torch.device("cpu"))
    model_id = export_checkpoint(
        tmp_path / "run" / "checkpoint.safetensors", tmp_path / "m.safetensors"
    )
    codec = Codec.load(tmp_path / "m.safetensors", precision="fp32")
    assert codec.model_id == model_id and codec.trained
    assert codec.model_name == "tiny-step2"
    ema = trainer.ema.state_dict()
    for name, value in codec.model.state_dict().items():
        assert torch.equal(value, ema[name].half().float()), name


def test_a_new_run_can_start_from_exported_weights(music: Path, tmp_path: Path) -> None:
    train(music, tmp_path / "first", settings(), steps=1, device=torch.device("cpu"))
    export_checkpoint(tmp_path / "first" / "checkpoint.safetensors", tmp_path / "m.safetensors")
    exported = Codec.load(tmp_path / "m.safetensors", precision="fp32").model.state_dict()
    second = train(
        music,
        tmp_path / "second",
        settings(),
        steps=1,
        device=torch.device("cpu"),
        initial_weights=tmp_path / "m.safetensors",
    )
    assert second.step == 1
    changed = [
        not torch.equal(value, exported[name]) for name, value in second.model.state_dict().items()
    ]
    assert any(changed)  # it trained on from there
    fresh = train(music, tmp_path / "third", settings(), steps=1, device=torch.device("cpu"))

    def distance_from_exported(trainer) -> torch.Tensor:
        state = trainer.model.state_dict()
        return sum((value - exported[name]).abs().sum() for name, value in state.items())

    assert distance_from_exported(second) < distance_from_exported(fresh)
