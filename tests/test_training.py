"""Consistency training: noise levels, curriculum, loss, crops, checkpoints and resume."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from commands import m2l
from safetensors.torch import save_file

from m2l_cli import Codec
from m2l_cli.config import PRESETS
from m2l_cli.errors import M2LError
from m2l_cli.model import Music2Latent2
from m2l_cli.model.consistency import edm_scalings, sigma_from_time
from m2l_cli.training import TrainConfig, TrainingPlan, export_checkpoint, train
from m2l_cli.training.data import CropDataset, find_tracks
from m2l_cli.training.loop import new_trainer, training_precision
from m2l_cli.training.objective import (
    STUDENT_FLOOR,
    TrainingPrecision,
    consistency_loss,
    curriculum_gap,
    noise_level_pairs,
    pseudo_huber,
    reduced_precision_limit,
    sample_student_sigma,
    teacher_sigma,
    time_from_sigma,
)
from m2l_cli.weights import file_metadata, serialize

TINY = PRESETS["tiny"]
FP32 = TrainingPrecision("cpu", torch.float32, torch.float32, torch.float32)

pytestmark = pytest.mark.usefixtures("single_torch_thread")


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


# Noise levels.


def test_time_from_sigma_inverts_sigma_from_time() -> None:
    t = torch.linspace(0, 1, 11, dtype=torch.float64)
    assert torch.allclose(time_from_sigma(sigma_from_time(t, TINY), TINY), t, atol=1e-9)


def time_weighted_density(t: np.ndarray, settings: TrainConfig) -> np.ndarray:
    """The reference's weights for t: the normal density of log sigma(t)."""
    log_sigma = np.log(sigma_from_time(torch.from_numpy(t), TINY).numpy())
    return np.exp(-0.5 * ((log_sigma - settings.p_mean) / settings.p_std) ** 2)


def test_time_weighted_sampling_draws_t_with_the_lognormal_weights_of_sigma_t() -> None:
    settings = TrainConfig()
    sigma = sample_student_sigma((200_000,), settings, TINY, torch.Generator().manual_seed(0))
    t = time_from_sigma(sigma.double(), TINY).numpy()
    t_low = float(time_from_sigma(torch.tensor(TINY.sigma_min * STUDENT_FLOOR), TINY))
    edges = np.linspace(t_low, 1.0, 21)
    grid = np.linspace(t_low, 1.0, 200_001)
    density = time_weighted_density(grid, settings)
    cumulative = np.concatenate([[0.0], np.cumsum((density[1:] + density[:-1]) / 2)])
    expected = np.diff(np.interp(edges, grid, cumulative / cumulative[-1]))
    observed = np.histogram(t, edges)[0] / t.size
    assert np.abs(observed - expected).max() < 0.004
    # The reference's weighting puts more draws at high noise than drawing log sigma directly.
    direct = sample_student_sigma(
        (200_000,), TrainConfig(sigma_sampling="lognormal"), TINY, torch.Generator()
    )
    assert (sigma >= 10).float().mean() > 1.3 * (direct >= 10).float().mean()


def test_lognormal_sampling_draws_log_sigma_from_the_normal() -> None:
    settings = TrainConfig(sigma_sampling="lognormal")
    sigma = sample_student_sigma((100_000,), settings, TINY, torch.Generator().manual_seed(0))
    log_sigma = sigma.log()  # clamping keeps the order, so the median is the normal's
    assert log_sigma.median().item() == pytest.approx(settings.p_mean, abs=0.03)
    assert log_sigma.std().item() == pytest.approx(settings.p_std, rel=0.1)
    assert sigma.min() >= TINY.sigma_min and sigma.max() <= TINY.sigma_max * 1.0001


# The curriculum.


def test_the_staged_curriculum_halves_the_gap_at_every_stage() -> None:
    settings = TrainConfig(total_steps=1000, curriculum_stages=5)
    gaps = [curriculum_gap(step, settings) for step in (0, 199, 200, 400, 600, 800, 999, 5000)]
    assert gaps == [1.0, 1.0, 0.5, 0.25, 0.125, 0.0625, 0.0625, 0.0625]


def test_a_run_from_a_trained_model_can_skip_the_first_stages() -> None:
    settings = TrainConfig(total_steps=900, curriculum_stages=5, curriculum_first_stage=2)
    gaps = [curriculum_gap(step, settings) for step in (0, 299, 300, 600, 899, 5000)]
    assert gaps == [0.25, 0.25, 0.125, 0.0625, 0.0625, 0.0625]
    with pytest.raises(ValueError, match="curriculum_first_stage"):
        TrainConfig(curriculum_stages=5, curriculum_first_stage=5)


def test_the_first_stage_is_plain_denoising_towards_the_clean_input() -> None:
    settings = TrainConfig()
    student = sample_student_sigma((10_000,), settings, TINY, torch.Generator().manual_seed(0))
    assert torch.all(teacher_sigma(student, 1.0, settings, TINY) == TINY.sigma_min)


def test_later_stages_put_the_teacher_closer_to_the_student() -> None:
    settings = TrainConfig()
    student = torch.tensor([0.1, 1.0, 5.0, 20.0, 80.0])
    previous = torch.full_like(student, TINY.sigma_min)
    for gap in (0.5, 0.25, 0.125, 0.0625):
        teacher = teacher_sigma(student, gap, settings, TINY)
        assert torch.all(teacher < student) and torch.all(teacher >= previous)
        previous = teacher
    # At sigma_max, r = sigma (1 - g n(sigma)) with n(80) = 1 + 8 sigmoid(-80) ~ 1.
    assert teacher[-1].item() == pytest.approx(80 * (1 - 0.0625), rel=1e-5)


def test_the_exponential_curriculum_keeps_pairs_one_step_dt_apart_in_time() -> None:
    settings = TrainConfig(curriculum="exponential", sigma_sampling="lognormal")
    assert curriculum_gap(0, TrainConfig(curriculum="exponential", total_steps=10)) == 0.1
    assert curriculum_gap(10, TrainConfig(curriculum="exponential", total_steps=10)) == (
        pytest.approx(0.1**3)
    )
    generator = torch.Generator().manual_seed(0)
    teacher, student = noise_level_pairs((4096,), 0.05, settings, TINY, generator)
    gap = time_from_sigma(student, TINY) - time_from_sigma(teacher, TINY)
    assert torch.allclose(gap, torch.full_like(gap, 0.05), atol=1e-4)
    assert (student > teacher).all()


# The loss.


class Recorder:
    """Wraps the consistency model: records the inputs and outputs of every call."""

    def __init__(self, model: Music2Latent2) -> None:
        self.calls: list[dict[str, torch.Tensor]] = []
        forward = model.consistency.forward

        def recording(x, sigma, features):
            output = forward(x, sigma, features)
            self.calls.append({"x": x.detach(), "sigma": sigma, "output": output.detach()})
            return output

        model.consistency.forward = recording


def random_model(seed: int = 0) -> Music2Latent2:
    """The tiny model with every parameter random, so every path matters."""
    torch.manual_seed(seed)
    model = Music2Latent2(TINY)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(std=0.05)
    return model


def pairs_batch(batch: int = 3) -> torch.Tensor:
    return torch.randn(batch, 2, 2, 1024, 64, generator=torch.Generator().manual_seed(7)) * 0.3


def test_student_and_teacher_see_the_same_noise_sample_and_each_chunk_its_own_weight() -> None:
    model, pairs = random_model(), pairs_batch()
    recorder = Recorder(model)
    settings = TrainConfig()
    loss = consistency_loss(model, pairs, 0.25, settings, FP32, torch.Generator().manual_seed(3))
    student, teacher = recorder.calls
    sigma_s, sigma_t = student["sigma"], teacher["sigma"]
    assert (sigma_s[:, 0] != sigma_s[:, 1]).all()  # left and right draw independently
    noise_s = (student["x"] - pairs) / sigma_s[:, :, None, None, None]
    noise_t = (teacher["x"] - pairs) / sigma_t[:, :, None, None, None]
    assert torch.allclose(noise_s, noise_t, atol=1e-4)
    per_chunk = pseudo_huber(student["output"] - teacher["output"]) / (sigma_s - sigma_t)
    assert loss.item() == pytest.approx(per_chunk.mean().item(), rel=1e-5)


def manual_gradient(pairs: torch.Tensor, settings: TrainConfig, detach: bool) -> torch.Tensor:
    """The loss's gradient on one weight, computed by hand from the paper's formula."""
    model = random_model()
    generator = torch.Generator().manual_seed(3)
    features = model.decoder(model.encoder(pairs.flatten(0, 1)))
    teacher_level, student_level = noise_level_pairs((3, 2), 0.25, settings, TINY, generator)
    noise = torch.randn(pairs.shape, generator=generator)
    outputs = [
        model.consistency(pairs + level[:, :, None, None, None] * noise, level, features)
        for level in (student_level, teacher_level)
    ]
    student, teacher = outputs[0], outputs[1].detach() if detach else outputs[1]
    (pseudo_huber(student - teacher) / (student_level - teacher_level)).mean().backward()
    return model.consistency.blocks[0].qkv.weight.grad.clone()


def test_the_teacher_passes_no_gradient() -> None:
    pairs, settings = pairs_batch(), TrainConfig()
    model = random_model()
    consistency_loss(
        model, pairs, 0.25, settings, FP32, torch.Generator().manual_seed(3)
    ).backward()
    # The same loss by hand, once with the teacher detached and once without.
    grads = {detach: manual_gradient(pairs, settings, detach) for detach in (True, False)}
    actual = model.consistency.blocks[0].qkv.weight.grad

    def relative_distance(other: torch.Tensor) -> float:
        return ((actual - other).norm() / actual.norm()).item()

    assert relative_distance(grads[True]) < 1e-4
    assert relative_distance(grads[False]) > 1e-2


def test_in_the_denoising_stage_the_target_is_the_clean_input_without_a_teacher_call() -> None:
    model, pairs = random_model(), pairs_batch()
    recorder = Recorder(model)
    loss = consistency_loss(model, pairs, 1.0, TrainConfig(), FP32, torch.Generator())
    (student,) = recorder.calls
    sigma = student["sigma"]
    target = pairs + TINY.sigma_min * (student["x"] - pairs) / sigma[:, :, None, None, None]
    expected = pseudo_huber(student["output"] - target) / (sigma - TINY.sigma_min)
    assert loss.item() == pytest.approx(expected.mean().item(), rel=1e-4)


def test_the_consistency_model_can_run_in_fp32_while_the_encoder_runs_in_bf16() -> None:
    """With a network teacher the consistency model uses its own dtype; in pure
    denoising (every teacher clean) the `reduced` one."""
    model, pairs = random_model(), pairs_batch(1)
    seen = []
    model.consistency.blocks[0].qkv.register_forward_hook(
        lambda module, inputs, output: seen.append(output.dtype)
    )
    model.encoder.blocks[0].qkv.register_forward_hook(
        lambda module, inputs, output: seen.append(output.dtype)
    )
    mixed = TrainingPrecision("cpu", torch.bfloat16, torch.float32, torch.bfloat16)
    generator = torch.Generator().manual_seed(0)
    consistency_loss(model, pairs, 0.0625, TrainConfig(), mixed, generator)
    assert seen == [torch.bfloat16, torch.float32, torch.float32]  # encoder, student, teacher
    seen.clear()
    consistency_loss(model, pairs, 1.0, TrainConfig(), mixed, torch.Generator().manual_seed(0))
    assert seen == [torch.bfloat16, torch.bfloat16]  # encoder, student: no teacher call


def test_reduced_precision_is_allowed_where_the_rounding_was_measured_small() -> None:
    staged = TrainConfig()
    assert reduced_precision_limit(0.25, staged) == 2.5
    assert reduced_precision_limit(0.3, staged) == 2.5  # a larger gap rounds less
    assert reduced_precision_limit(1.0, staged) == 10.0
    assert reduced_precision_limit(0.0625, staged) == 0.0  # never measured under 10%
    assert reduced_precision_limit(0.25, TrainConfig(curriculum="exponential")) == 0.0


def test_pairs_with_small_noise_run_in_reduced_precision_the_rest_in_fp32() -> None:
    model, pairs = random_model(), pairs_batch(8)
    calls: list[tuple[torch.dtype, int]] = []
    model.consistency.blocks[0].qkv.register_forward_hook(
        lambda module, inputs, output: calls.append((output.dtype, output.shape[0]))
    )
    mixed = TrainingPrecision("cpu", torch.float32, torch.float32, torch.bfloat16)
    settings = TrainConfig()

    def seeded() -> torch.Generator:
        return torch.Generator().manual_seed(3)

    loss = consistency_loss(model, pairs, 0.25, settings, mixed, seeded())
    teacher, student = noise_level_pairs((8, 2), 0.25, settings, TINY, seeded())
    small = ((teacher <= TINY.sigma_min) | (student <= 2.5)).all(dim=1)
    assert 0 < small.sum() < 8, "the seed should give both kinds of pair"
    reduced, full = int(small.sum()), int((~small).sum())
    assert calls == [(torch.bfloat16, reduced)] * 2 + [(torch.float32, full)] * 2
    all_fp32 = consistency_loss(model, pairs, 0.25, settings, FP32, seeded())
    assert loss.item() == pytest.approx(all_fp32.item(), rel=0.05)


def test_precision_settings_resolve_per_part() -> None:
    cpu = torch.device("cpu")
    split = training_precision(TrainConfig(precision="bf16", consistency_precision="fp32"), cpu)
    assert (split.encoder_decoder, split.consistency) == (torch.bfloat16, torch.float32)
    assert split.reduced == torch.float32
    shared = training_precision(TrainConfig(precision="bf16", consistency_precision="inherit"), cpu)
    assert shared.consistency == shared.reduced == torch.bfloat16
    auto = training_precision(TrainConfig(precision="bf16"), cpu)
    assert (auto.consistency, auto.reduced) == (torch.float32, torch.bfloat16)
    with pytest.raises(M2LError, match="fp16"):
        training_precision(TrainConfig(precision="fp16"), cpu)


def test_pseudo_huber_is_zero_for_equal_outputs_and_grows_with_distance() -> None:
    zero = torch.zeros(2, 2, 2, 8, 8)
    assert torch.allclose(pseudo_huber(zero), torch.zeros(2, 2))
    small, large = pseudo_huber(zero + 0.01), pseudo_huber(zero + 0.1)
    assert (large > small).all() and (small > 0).all()


# Settings.


def test_learning_rate_decays_by_cosine_to_the_final_rate() -> None:
    settings = TrainConfig(total_steps=100)
    assert settings.learning_rate_at(0) == pytest.approx(1e-4)
    assert settings.learning_rate_at(50) == pytest.approx((1e-4 + 1e-6) / 2)
    assert settings.learning_rate_at(100) == pytest.approx(1e-6)


def test_the_ema_warms_up_then_keeps_its_decay() -> None:
    settings = TrainConfig(ema_decay=0.999)
    assert settings.ema_decay_at(0) == pytest.approx(0.1)
    assert settings.ema_decay_at(90) == pytest.approx(91 / 100)
    assert settings.ema_decay_at(100_000) == 0.999
    assert TrainConfig(ema_warmup=False).ema_decay_at(0) == 0.999


def test_a_checkpoint_without_the_new_keys_resumes_with_the_recipe_it_had() -> None:
    old = '{"preset": "small", "batch_size": 8, "total_steps": 50000, "dt_initial": 0.1}'
    settings = TrainConfig.from_json(old)
    assert (settings.curriculum, settings.sigma_sampling) == ("exponential", "lognormal")
    assert (settings.consistency_precision, settings.ema_warmup) == ("inherit", False)
    with pytest.raises(ValueError, match="unknown training settings: colour"):
        TrainConfig.from_json('{"colour": 1}')


def test_only_routine_settings_change_on_resume() -> None:
    assert TrainConfig().with_routine({"validate_every": 7}).validate_every == 7
    with pytest.raises(ValueError, match="batch_size"):
        TrainConfig().with_routine({"batch_size": 2})
    plan = TrainingPlan.from_options({"workers": 3}, {}, resume=True, init=None)
    assert plan.routine == {"workers": 3} and plan.settings is None
    with pytest.raises(ValueError, match="curriculum"):
        TrainingPlan.from_options({"curriculum": "staged"}, {}, resume=True, init=None)


def test_model_switches_reach_a_new_runs_model() -> None:
    plan = TrainingPlan.from_options(
        {"preset": "tiny"}, {"frequency_scaling": False}, resume=False, init=None
    )
    assert plan.model_config.name == "tiny" and not plan.model_config.frequency_scaling
    assert plan.model_config.summary_index_embedding


# Crops, runs, checkpoints.


def test_crops_are_a_function_of_their_index_and_skip_silence(music: Path) -> None:
    tracks = find_tracks(music, 70000, 44100)
    first, second = CropDataset(tracks, TINY, seed=1), CropDataset(tracks, TINY, seed=1)
    assert torch.equal(first[5], second[5])
    assert not torch.equal(first[5], first[6])
    assert first[5].shape == (2, 2, 1024, 64)
    loudness = [np.sqrt(np.mean(first.waveform(index) ** 2)) for index in range(12)]
    assert min(loudness) > 1e-3  # the silent file's crops are redrawn


def settings(**changes) -> TrainConfig:
    values = dict(
        preset="tiny",
        batch_size=2,
        total_steps=4,  # with 5 stages: a new curriculum stage every step
        curriculum_stages=4,
        workers=0,
        precision="fp32",
        log_every=1,
        checkpoint_every=100,
    )
    return TrainConfig(**{**values, **changes})


CPU = torch.device("cpu")


def test_a_fresh_model_outputs_the_skip_term_only(music: Path, tmp_path: Path) -> None:
    trainer = train(music, tmp_path / "run", settings=settings(), steps=1, device=CPU)
    fresh = type(trainer)(settings(), TINY, CPU).model
    x, sigma = pairs_batch(1), torch.tensor([[3.0, 0.5]])
    grids = zip(TINY.channels, TINY.level_grids, strict=True)
    features = [torch.randn(2, channels, *grid) for channels, grid in grids]
    c_skip = edm_scalings(sigma, TINY)[0][:, :, None, None, None]
    with torch.no_grad():
        assert torch.allclose(fresh.consistency(x, sigma, features), c_skip * x)


def test_resuming_continues_bit_for_bit(music: Path, tmp_path: Path) -> None:
    straight = train(music, tmp_path / "straight", settings=settings(), steps=4, device=CPU)
    train(music, tmp_path / "split", settings=settings(), steps=2, device=CPU)
    resumed = train(
        music, tmp_path / "split", steps=2, device=CPU, resume=True, routine={"log_every": 2}
    )
    assert resumed.step == straight.step == 4
    for name, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[name]), name
    for name, value in straight.ema.state_dict().items():
        assert torch.equal(value, resumed.ema.state_dict()[name]), name
    log = (tmp_path / "split" / "train.csv").read_text().splitlines()
    assert log[0].startswith("loss,lr,gap,grad_norm,ema_decay,step") and len(log) == 4  # 1, 2, 4
    gaps = [float(line.split(",")[2]) for line in log[1:]]
    assert gaps == [1.0, 0.5, 0.125]  # the curriculum went on where it stopped


def test_a_resumed_run_validates_on_the_folder_it_started_with(music: Path, tmp_path: Path) -> None:
    clips, run = tmp_path / "clips", tmp_path / "run"
    clips.mkdir()
    soundfile.write(clips / "clip.flac", soundfile.read(music / "song0.flac")[0][:22050], 44100)
    validating = settings(validate_every=1, validation_folder=str(clips))
    train(music, run, settings=validating, steps=1, device=CPU)
    train(music, run, steps=1, device=CPU, resume=True)
    train(music, run, steps=1, device=CPU, resume=True, routine={"validation_folder": ""})
    rows = (run / "validation.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in rows] == ["step", "1", "2"]


def test_a_missing_validation_folder_stops_a_run_before_it_starts(
    music: Path, tmp_path: Path
) -> None:
    missing = settings(validation_folder=str(tmp_path / "gone"))
    with pytest.raises(M2LError, match="gone"):
        train(music, tmp_path / "run", settings=missing, steps=1, device=CPU)
    assert not (tmp_path / "run").exists()


def test_a_new_run_refuses_a_folder_with_a_checkpoint(music: Path, tmp_path: Path) -> None:
    train(music, tmp_path / "run", settings=settings(), steps=1, device=CPU)
    with pytest.raises(M2LError, match="--resume"):
        train(music, tmp_path / "run", settings=settings(), steps=1, device=CPU)


def test_export_writes_float16_ema_weights_that_load_as_a_codec(
    music: Path, tmp_path: Path
) -> None:
    trainer = train(music, tmp_path / "run", settings=settings(), steps=2, device=CPU)
    model_id = export_checkpoint(
        tmp_path / "run" / "checkpoint.safetensors", tmp_path / "m.safetensors"
    )
    codec = Codec.load(tmp_path / "m.safetensors", precision="fp32")
    assert codec.model_id == model_id and codec.trained
    assert codec.model_name == "tiny-step2"
    assert codec.config.frequency_scaling and codec.config.summary_index_embedding
    ema = trainer.ema.state_dict()
    for name, value in codec.model.state_dict().items():
        assert torch.equal(value, ema[name].half().float()), name


def test_m2l_export_writes_a_model_quietly_and_keeps_an_existing_one(
    music: Path, tmp_path: Path
) -> None:
    train(music, tmp_path / "run", settings=settings(), steps=1, device=CPU)
    export = ("export", "run/checkpoint.safetensors", "-o", "m.safetensors", "-q")
    first = m2l(*export, cwd=tmp_path, model=None)
    assert first.returncode == 0 and first.stderr == b""
    assert Codec.load(tmp_path / "m.safetensors").model_name == "tiny-step1"
    assert m2l(*export, cwd=tmp_path, model=None).returncode != 0
    assert m2l(*export, "--force", cwd=tmp_path, model=None).returncode == 0


def test_a_new_run_can_start_from_exported_weights(music: Path, tmp_path: Path) -> None:
    train(music, tmp_path / "first", settings=settings(), steps=1, device=CPU)
    export_checkpoint(tmp_path / "first" / "checkpoint.safetensors", tmp_path / "m.safetensors")
    exported = Codec.load(tmp_path / "m.safetensors", precision="fp32").model.state_dict()
    second = train(
        music,
        tmp_path / "second",
        settings=settings(),
        steps=1,
        device=CPU,
        initial_weights=tmp_path / "m.safetensors",
    )
    assert second.step == 1
    changed = [
        not torch.equal(value, exported[name]) for name, value in second.model.state_dict().items()
    ]
    assert any(changed)  # it trained on from there
    fresh = train(music, tmp_path / "third", settings=settings(), steps=1, device=CPU)

    def distance_from_exported(trainer) -> torch.Tensor:
        state = trainer.model.state_dict()
        return sum((value - exported[name]).abs().sum() for name, value in state.items())

    assert distance_from_exported(second) < distance_from_exported(fresh)


def test_weights_from_before_the_model_switches_load_with_them_off(tmp_path: Path) -> None:
    old = Music2Latent2(replace(TINY, frequency_scaling=False, summary_index_embedding=False))
    config = json.loads(old.config.to_json())
    del config["frequency_scaling"], config["summary_index_embedding"]  # as files then were
    tensors = {key: value.contiguous() for key, value in old.state_dict().items()}
    metadata = {**file_metadata(old, "tiny-old", True), "config": json.dumps(config)}
    save_file(tensors, tmp_path / "old.safetensors", metadata=metadata)
    codec = Codec.load(tmp_path / "old.safetensors")
    assert not codec.config.frequency_scaling and not codec.config.summary_index_embedding
    assert math.isfinite(codec.config.sigma_max)


def test_a_model_file_grows_the_parts_it_lacks_and_computes_the_same(tmp_path: Path) -> None:
    small = Music2Latent2(replace(TINY, frequency_scaling=False, summary_index_embedding=False))
    (tmp_path / "m.safetensors").write_bytes(serialize(small, "tiny")[0])
    parts = {"frequency_scaling": True, "summary_index_embedding": True}
    trainer = new_trainer(TrainConfig(preset="tiny"), CPU, tmp_path / "m.safetensors", None, parts)
    grown = trainer.model.eval()
    assert grown.config.frequency_scaling and grown.config.summary_index_embedding
    latents = torch.randn(3, TINY.num_latents, TINY.latent_dim)
    shape = (1, 2, 2, TINY.frequency_bins, TINY.chunk_frames)
    x, sigma = torch.randn(shape), torch.tensor([[0.5, 3.0]])
    with torch.no_grad():
        features = small.decoder(latents[:2])
        assert all(
            torch.equal(a, b) for a, b in zip(features, grown.decoder(latents[:2]), strict=True)
        )
        denoised = small.consistency(x, sigma, features)
        assert torch.equal(denoised, grown.consistency(x, sigma, features))


def test_a_run_from_a_model_file_can_add_parts_but_not_remove_them() -> None:
    plan = TrainingPlan.from_options({}, {"frequency_scaling": True}, resume=False, init="m")
    assert plan.added_parts == {"frequency_scaling": True} and plan.model_config is None
    with pytest.raises(ValueError, match="not remove them: summary_index_embedding"):
        TrainingPlan.from_options({}, {"summary_index_embedding": False}, resume=False, init="m")
