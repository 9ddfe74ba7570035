"""The Codec API with the tiny model: lengths, rates, determinism, batching, weights files."""

import json
import math
from functools import cache

import numpy as np
import pytest
import torch
from rounding import assert_equal_to_float16_rounding
from safetensors import safe_open
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from m2l_cli import Codec, Latents, M2LError, ModelError, runtime, weights_header
from m2l_cli.decoding import DecodeJob
from m2l_cli.encoding import ArraySource, EncodeJob

CHUNK = 32768

pytestmark = pytest.mark.usefixtures("single_torch_thread")


@pytest.fixture(scope="module")
def codec() -> Codec:
    """An untrained tiny model in float32 on the CPU: fast and deterministic."""
    return Codec.create("tiny", precision="fp32", device="cpu")


@cache
def noise(channels: int, samples: int, seed: int = 0) -> np.ndarray:
    """Quiet white noise [channels, samples] float32 (cached: treat as read-only)."""
    rng = np.random.default_rng(seed)
    audio = (0.1 * rng.standard_normal((channels, samples))).astype(np.float32)
    audio.flags.writeable = False
    return audio


def array_job(name: str, audio: np.ndarray, rate: int = 44100) -> EncodeJob:
    """An EncodeJob reading `audio` from memory."""
    return EncodeJob(lambda: ArraySource(audio, rate), name)


# Lengths and chunks.


@pytest.mark.parametrize("samples", [1, 32767, 32768, 32769, 441000])
def test_decode_restores_the_exact_input_length(codec, samples):
    audio = noise(1, samples)
    decoded = codec.decode(codec.encode(audio, 44100))
    assert decoded.shape == audio.shape
    assert decoded.dtype == np.float32
    assert np.isfinite(decoded).all()


@pytest.mark.parametrize("samples", [1, 32767, 32768, 32769, 441000])
def test_one_chunk_per_32768_model_samples_rounded_up(codec, samples):
    latents = codec.encode(noise(1, samples), 44100)
    assert latents.model_num_samples == samples
    assert latents.chunks == math.ceil(samples / CHUNK)
    assert latents.values.shape == (1, latents.chunks, 8, 64)
    assert latents.values.dtype == np.float16


def test_stereo_in_gives_stereo_latents_and_stereo_out(codec):
    audio = noise(2, 40000)
    latents = codec.encode(audio, 44100)
    assert latents.channels == 2
    assert codec.decode(latents).shape == (2, 40000)


def test_48khz_input_is_coded_at_44100_and_decoded_back_to_48khz(codec):
    samples = 2 * 48000
    latents = codec.encode(noise(1, samples), 48000)
    assert latents.sample_rate == 44100
    assert latents.original_sample_rate == 48000
    assert latents.num_samples == samples
    assert abs(latents.model_num_samples - samples * 44100 / 48000) <= 2
    assert latents.chunks == math.ceil(latents.model_num_samples / CHUNK)
    assert codec.decode(latents).shape == (1, samples)


def test_decode_can_write_at_another_rate(codec):
    latents = codec.encode(noise(1, 2 * 48000), 48000)
    assert codec.decode(latents, sample_rate=44100).shape == (1, 2 * 44100)


# Determinism and the noise level of the conditioning chunk.


def test_same_seed_decodes_bit_identically(codec):
    latents = codec.encode(noise(1, 70000), 44100)
    assert np.array_equal(codec.decode(latents, seed=5), codec.decode(latents, seed=5))


def test_another_seed_decodes_differently(codec):
    latents = codec.encode(noise(1, 70000), 44100)
    assert not np.allclose(codec.decode(latents, seed=5), codec.decode(latents, seed=6))


def test_sigma_cond_changes_the_output_of_a_multi_chunk_file(codec):
    latents = codec.encode(noise(1, 3 * CHUNK), 44100)
    assert latents.chunks == 3
    low = codec.decode(latents, sigma_cond=0.1)
    high = codec.decode(latents, sigma_cond=0.9)
    assert not np.allclose(low, high)


# Batching across files.


def test_decoding_two_files_in_one_batch_equals_decoding_each_alone(codec):
    """Files of different lengths step together; each keeps its own noise and result."""
    short = codec.encode(noise(1, 20000, seed=1), 44100)
    long = codec.encode(noise(2, 3 * CHUNK + 5, seed=2), 44100)
    outputs: dict[str, list[np.ndarray]] = {"short": [], "long": []}
    jobs = [
        DecodeJob(short, outputs["short"].append, "short", seed=3),
        DecodeJob(long, outputs["long"].append, "long", seed=4),
    ]
    results = list(codec.decode_jobs(jobs, batch_size=16))
    assert [error for _, error in results] == [None, None]
    together_short = np.concatenate(outputs["short"], axis=1)
    together_long = np.concatenate(outputs["long"], axis=1)
    np.testing.assert_allclose(together_short, codec.decode(short, seed=3), rtol=0, atol=1e-4)
    np.testing.assert_allclose(together_long, codec.decode(long, seed=4), rtol=0, atol=1e-4)


def test_decode_jobs_steps_several_files_in_one_model_call(codec, monkeypatch):
    rows_per_call: list[int] = []
    denoise = codec.runner.denoise

    def recording(x, sigma, features):
        rows_per_call.append(x.shape[0])
        return denoise(x, sigma, features)

    monkeypatch.setattr(codec.runner, "denoise", recording)
    mono = codec.encode(noise(1, 1000, seed=1), 44100)
    stereo = codec.encode(noise(2, 1000, seed=2), 44100)
    jobs = [DecodeJob(mono, [].append, "mono"), DecodeJob(stereo, [].append, "stereo")]
    list(codec.decode_jobs(jobs, batch_size=16))
    # One chunk each: a first step and a last step, both files (3 rows) together.
    assert rows_per_call == [3, 3]


def test_encode_jobs_puts_chunks_of_several_inputs_in_one_batch(codec, monkeypatch):
    batch_sizes: list[int] = []
    encode_batch = codec.runner.encode

    def recording(spectrograms: torch.Tensor) -> torch.Tensor:
        batch_sizes.append(spectrograms.shape[0])
        return encode_batch(spectrograms)

    monkeypatch.setattr(codec.runner, "encode", recording)
    jobs = [
        array_job("mono", noise(1, 10000, seed=1)),
        array_job("stereo", noise(2, 40000, seed=2)),
    ]
    results = {job.name: result for job, result in codec.encode_jobs(jobs, batch_size=16)}
    assert batch_sizes == [1 + 2 * 2]
    assert results["mono"].channels == 1
    assert results["stereo"].channels == 2


def test_encode_jobs_gives_the_same_latents_as_encoding_alone(codec):
    inputs = [noise(1, 10000, seed=1), noise(2, 40000, seed=2), noise(1, 70000, seed=3)]
    jobs = [array_job(f"input {index}", audio) for index, audio in enumerate(inputs)]
    together = {job.name: result for job, result in codec.encode_jobs(jobs, batch_size=3)}
    for job, audio in zip(jobs, inputs, strict=True):
        alone = codec.encode(audio, 44100, batch_size=1)
        assert together[job.name].values.shape == alone.values.shape
        assert_equal_to_float16_rounding(together[job.name].values, alone.values)


# Weights files.


def test_saved_weights_load_with_the_file_model_id_and_give_the_same_latents(codec, tmp_path):
    path = tmp_path / "tiny.safetensors"
    saved_id = codec.save(path)
    loaded = Codec.load(path, precision="fp32", device="cpu")
    assert loaded.model_id == saved_id
    audio = noise(1, 40000)
    latents = loaded.encode(audio, 44100)
    assert latents.model_id == saved_id
    assert np.array_equal(latents.values, codec.encode(audio, 44100).values)


def test_saving_the_same_weights_again_gives_the_same_model_id(codec, tmp_path):
    """The model id names the weights, so equal weights must give equal ids (safetensors
    writes the metadata in a random key order: the id must not depend on it)."""
    ids = {codec.save(tmp_path / f"copy{index}.safetensors") for index in range(5)}
    assert len(ids) == 1


def test_a_created_codec_has_the_model_id_of_the_file_it_saves(codec, tmp_path):
    """Latents made before saving must decode with the saved weights."""
    ids = {codec.save(tmp_path / f"copy{index}.safetensors") for index in range(3)}
    assert ids == {codec.model_id}


def test_different_weights_have_different_model_ids(codec):
    assert Codec.create("tiny", seed=1, precision="fp32", device="cpu").model_id != codec.model_id


def test_weights_whose_config_does_not_match_their_tensors_are_refused(codec, tmp_path):
    """A channel count edited in the metadata: shapes disagree, and the message says which."""
    original = tmp_path / "tiny.safetensors"
    codec.save(original)
    with safe_open(str(original), framework="pt") as handle:
        metadata = dict(handle.metadata())
    config = json.loads(metadata["config"])
    config["channels"] = [8, 24]
    metadata["config"] = json.dumps(config)
    edited = tmp_path / "edited.safetensors"
    edited.write_bytes(save_tensors(load_tensors(original.read_bytes()), metadata=metadata))
    with pytest.raises(ModelError, match=r"edited\.safetensors: weights do not match their config"):
        Codec.load(edited, precision="fp32", device="cpu")


def test_a_file_that_is_not_safetensors_is_refused(tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"\x80\x04 this is a pickle, not safetensors" * 10)
    with pytest.raises(ModelError, match="not a safetensors weights file"):
        Codec.load(path)


def test_a_missing_weights_file_is_refused(tmp_path):
    with pytest.raises(ModelError, match="no such weights file"):
        Codec.load(tmp_path / "absent.safetensors")


def test_latents_from_another_model_are_refused(codec):
    other = Codec.create("tiny", seed=1, precision="fp32", device="cpu")
    latents = other.encode(noise(1, 1000), 44100)
    with pytest.raises(ModelError, match=f"made by model {latents.model_id}"):
        codec.decode(latents)


# Containers.


def test_saved_and_loaded_latents_decode_like_the_ones_in_memory(codec, tmp_path):
    latents = codec.encode(noise(2, 50000), 44100, metadata={"title": "noise"})
    path = tmp_path / "noise.m2l"
    latents.save(path)
    loaded = Latents.load(path, expected_model_id=codec.model_id)
    assert loaded.values.dtype == latents.values.dtype == np.float16
    assert np.array_equal(loaded.values, latents.values)
    assert loaded.metadata == {"title": "noise"}
    assert np.array_equal(codec.decode(loaded), codec.decode(latents))


# Which model, device, precision and threads; no global state changed behind the back.


def test_load_without_a_path_takes_m2l_model_then_the_bundled_model(codec, tmp_path, monkeypatch):
    path = tmp_path / "tiny.safetensors"
    saved_id = codec.save(path)
    monkeypatch.setenv("M2L_MODEL", str(path))
    assert Codec.load(device="cpu").model_id == saved_id
    monkeypatch.delenv("M2L_MODEL")
    assert Codec.load(device="cpu").model_name == "m2l-small-s8422"  # the bundled one
    monkeypatch.setattr(weights_header, "default_model_path", lambda: None)
    with pytest.raises(ModelError, match="no model: .* pass --model PATH or set M2L_MODEL"):
        Codec.load()


def test_creating_a_codec_leaves_the_global_random_state_and_threads_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    threads = torch.get_num_threads()
    torch.manual_seed(123)
    first = Codec.create("tiny", seed=5, precision="fp32", device="cpu")
    assert torch.equal(torch.rand(3), expected)
    assert torch.get_num_threads() == threads
    again = Codec.create("tiny", seed=5, precision="fp32", device="cpu")
    assert again.model_id == first.model_id  # the seed alone fixes the weights


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("cuda:7", "device cuda:7 is not available on this machine"),
        ("toaster", "unknown device 'toaster'; choose auto, cpu, cuda, cuda:N, mps"),
    ],
)
def test_devices_are_any_torch_device_that_exists(name, message):
    assert runtime.resolve_device("cpu") == torch.device("cpu")
    assert runtime.resolve_device("auto").type in ("cpu", "cuda", "mps")
    with pytest.raises(M2LError, match=message):
        runtime.resolve_device(name)


def test_precision_auto_is_half_on_gpus_and_named_ones_are_checked():
    assert runtime.resolve_precision("auto", torch.device("cuda")) == "fp16"
    assert runtime.resolve_precision("auto", torch.device("cpu")) in ("bf16", "fp32")
    assert runtime.resolve_precision("bf16", torch.device("cpu")) == "bf16"
    with pytest.raises(M2LError, match="unknown precision 'fp8'"):
        runtime.resolve_precision("fp8", torch.device("cpu"))


def test_set_threads_is_the_one_explicit_way_to_change_the_thread_count():
    previous = torch.get_num_threads()
    try:
        runtime.set_threads(1)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(previous)
    with pytest.raises(M2LError, match="threads must be at least 1"):
        runtime.set_threads(0)
