"""The API for people who use latents: MIR features, latents from arrays, time ranges."""

import re
from pathlib import Path

import numpy as np
import pytest

from m2l_cli import Codec, Latents, M2LError
from m2l_cli.encoding import ArraySource, EncodeJob
from m2l_cli.evaluation import log_mel_distance
from m2l_cli.ranges import WARMUP_CHUNKS

pytestmark = pytest.mark.usefixtures("single_torch_thread")

RATE = 44100
CHUNK = 32768


@pytest.fixture(scope="module")
def codec() -> Codec:
    """An untrained tiny model in float32 on the CPU: fast and deterministic."""
    return Codec.create("tiny", precision="fp32", device="cpu")


def tones(channels: int, seconds: float, rate: int = RATE, seed: int = 0) -> np.ndarray:
    """A few sines plus quiet noise, [channels, samples] float32."""
    rng = np.random.default_rng(seed)
    time = np.arange(round(seconds * rate)) / rate
    audio = [
        0.3 * np.sin(2 * np.pi * rng.uniform(100, 2000) * time)
        + 0.02 * rng.standard_normal(time.size)
        for _ in range(channels)
    ]
    return np.array(audio, dtype=np.float32)


# MIR features.


def test_features_per_chunk_have_the_summary_embeddings_shape(codec):
    audio = tones(2, 3.0)
    features = codec.embed(audio, RATE, pool=None)
    chunks = codec.encode(audio, RATE).chunks
    config = codec.config
    assert features.shape == (2, chunks, config.num_latents, config.dim)
    assert features.dtype == np.float32


def test_pooled_features_stack_k_and_average_the_chunks(codec):
    audio = tones(1, 3.0)
    per_chunk = codec.embed(audio, RATE, pool=None)
    pooled = codec.embed(audio, RATE)
    expected = per_chunk.reshape(1, per_chunk.shape[1], -1).mean(axis=1)
    assert pooled.shape == (1, codec.config.num_latents * codec.config.dim)
    np.testing.assert_allclose(pooled, expected, rtol=1e-5, atol=1e-6)


def test_features_are_pre_bottleneck_not_the_latents(codec):
    audio = tones(1, 2.0)
    features = codec.embed(audio, RATE, pool=None)
    latents = codec.encode(audio, RATE).values.astype(np.float32)
    assert features.shape[-1] == codec.config.dim != latents.shape[-1]
    assert np.abs(features).max() > 1.0  # not tanh-bounded: before the bottleneck


def test_features_are_deterministic_and_batch_invariant(codec):
    first, second = tones(2, 2.5, seed=1), tones(1, 4.0, seed=2)
    alone = [codec.embed(audio, RATE, pool=None) for audio in (first, second)]
    again = codec.embed(first, RATE, pool=None)
    assert np.array_equal(alone[0], again)
    jobs = [
        EncodeJob(lambda a=a: ArraySource(a, RATE), f"{i}") for i, a in enumerate([first, second])
    ]
    together = {job.name: values for job, values in codec.embed_jobs(jobs, batch_size=5)}
    for index, values in enumerate(alone):
        np.testing.assert_allclose(together[str(index)], values, rtol=1e-4, atol=1e-5)


def test_features_refuse_an_unknown_pool_and_empty_audio(codec):
    with pytest.raises(ValueError, match="pool"):
        codec.embed(tones(1, 1.0), RATE, pool="max")
    with pytest.raises(M2LError):
        codec.embed(np.zeros((1, 0), np.float32), RATE)


# Latents from arrays.


def test_latents_from_an_array_round_trip_through_a_container(codec, tmp_path):
    values = np.random.default_rng(0).uniform(-0.9, 0.9, (2, 5, 8, 64)).astype(np.float32)
    latents = Latents.from_array(values, codec, sample_rate=48000, num_samples=150000)
    latents.save(tmp_path / "generated.m2l")
    loaded = Latents.load(tmp_path / "generated.m2l", expected_model_id=codec.model_id)
    assert np.array_equal(loaded.values, values.astype(np.float16))
    assert (loaded.original_sample_rate, loaded.num_samples) == (48000, 150000)
    assert codec.decode(loaded).shape == (2, 150000)


def test_an_array_decodes_every_chunk_whole_at_the_model_rate(codec):
    encoded = codec.encode(tones(1, 2.0), RATE)
    values = encoded.values[0]  # [chunks, K, D], one channel
    decoded = codec.decode(values)
    assert decoded.shape == (1, encoded.chunks * CHUNK)
    again = codec.decode(Latents.from_array(values, encoded))
    assert np.array_equal(decoded, again)


def test_latents_from_an_array_refuse_wrong_shapes_and_values(codec):
    with pytest.raises(ValueError, match="shape"):
        Latents.from_array(np.zeros((3, 8, 32)), codec)
    with pytest.raises(ValueError, match="finite"):
        Latents.from_array(np.full((1, 8, 64), np.nan), codec)
    with pytest.raises(ValueError, match="cannot make latents"):
        Latents.from_array(np.zeros((2, 8, 64)), codec, num_samples=10 * CHUNK)


# Time ranges.


@pytest.mark.parametrize(
    ("rate", "start", "duration"), [(RATE, 4.0, 2.0), (48000, 3.3, 1.7), (22050, 0.0, 1.0)]
)
def test_a_range_has_the_length_of_the_same_range_of_a_full_decode(codec, rate, start, duration):
    latents = codec.encode(tones(2, 8.0, rate), rate)
    excerpt = codec.decode(latents, start=start, duration=duration)
    assert excerpt.shape == (2, round(duration * rate))


def test_a_range_whose_warm_up_reaches_the_start_is_the_full_decode_exactly(codec):
    for rate in (RATE, 48000):
        latents = codec.encode(tones(2, 8.0, rate), rate)
        full = codec.decode(latents, seed=3)
        excerpt = codec.decode(latents, start=0.5, duration=3.0, seed=3)
        first = round(0.5 * rate)
        np.testing.assert_allclose(excerpt, full[:, first : first + excerpt.shape[1]], atol=1e-6)


def test_a_range_is_as_close_to_a_full_decode_as_other_seeds_are(codec):
    latents = codec.encode(tones(1, 12.0), RATE)
    first, last = 6 * RATE, 8 * RATE
    full = codec.decode(latents, seed=0)[:, first:last]
    excerpt = codec.decode(latents, start=6.0, duration=2.0)
    seeds = [
        log_mel_distance(full, codec.decode(latents, seed=seed)[:, first:last], RATE)
        for seed in (1, 2, 3)
    ]
    assert log_mel_distance(full, excerpt, RATE) <= max(seeds)


def test_a_range_decodes_only_its_chunks_plus_the_warm_up(codec, monkeypatch):
    latents = codec.encode(tones(1, 30.0), RATE)
    asked: list[int] = []
    original = Latents.chunk_values

    def recording(self: Latents, start: int, stop: int) -> np.ndarray:
        asked.extend(range(start, stop))
        return original(self, start, stop)

    monkeypatch.setattr(Latents, "chunk_values", recording)
    codec.decode(latents, start=15.0, duration=2.0)
    first_needed, last_needed = int(15.0 * RATE) // CHUNK, int(17.0 * RATE) // CHUNK
    assert min(asked) >= first_needed - WARMUP_CHUNKS - 1
    assert max(asked) <= last_needed + 1
    assert len(set(asked)) < latents.chunks / 4


def test_a_range_to_the_end_and_ranges_outside_the_audio(codec):
    latents = codec.encode(tones(1, 3.0), RATE)
    assert codec.decode(latents, start=2.0).shape == (1, RATE)
    assert codec.decode(latents, start=2.0, duration=5.0).shape == (1, RATE)
    with pytest.raises(M2LError, match="outside the audio"):
        codec.decode(latents, start=3.5)
    with pytest.raises(M2LError, match="more than 0 s"):
        codec.decode(latents, start=1.0, duration=0.0)


# The README's examples, verbatim.


def readme_examples(*sections: str) -> list[str]:
    """The ```python blocks of these README sections, in order."""
    text = (Path(__file__).parents[1] / "README.md").read_text()
    blocks = []
    for section in sections:
        body = text.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
        blocks += re.findall(r"```python\n(.*?)```", body, flags=re.DOTALL)
    assert blocks, f"no Python examples in {sections}"
    return blocks


def test_the_readme_examples_run_verbatim_on_the_bundled_model_and_clip(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("M2L_MODEL", raising=False)
    namespace: dict = {}
    for block in readme_examples("Python API", "MIR features", "Using latents"):
        exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102
    assert namespace["decoded"].shape == namespace["audio"].T.shape
    assert namespace["middle"].shape == (2, round(1.5 * namespace["rate"]))
    assert namespace["features"].shape == (2, 8 * namespace["codec"].config.dim)
    assert namespace["generated_audio"].shape == (1, 3 * CHUNK)
