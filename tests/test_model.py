"""Music2Latent2's three networks: shapes, causality, chunk independence, EDM boundary."""

import pytest
import torch

from m2l_cli.config import PRESETS, ModelConfig
from m2l_cli.model import Music2Latent2, ops
from m2l_cli.model import blocks as blocks_module
from m2l_cli.model.blocks import chunk_causal_attention
from m2l_cli.model.consistency import edm_scalings, sigma_from_time

TINY = PRESETS["tiny"]

pytestmark = pytest.mark.usefixtures("single_torch_thread")


def chunk_input(config: ModelConfig, batch: int, *, seed: int = 0) -> torch.Tensor:
    """Random spectrogram chunks [batch, 2, F, T]."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 2, config.frequency_bins, config.chunk_frames, generator=generator)


def random_latents(config: ModelConfig, count: int, *, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(count, config.num_latents, config.latent_dim, generator=generator) * 2 - 1


@pytest.fixture(scope="module")
def tiny_random_model() -> Music2Latent2:
    """The tiny model with EVERY parameter random (the zero-init AdaLN gates too).

    A fresh model's conditioned transformer blocks are identities, which would let
    causality tests pass whatever the attention mask does. std 0.2 makes the
    cross-chunk path strong (~1e-3 and up), far above the tolerances used below.
    """
    torch.manual_seed(1234)
    model = Music2Latent2(TINY).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            torch.nn.init.normal_(parameter, std=0.2)
    return model


def denoise(model, x, sigma, features):
    with torch.no_grad():
        return model.consistency(x, sigma, features)


def random_features(config: ModelConfig, count: int, *, seed: int = 0) -> list[torch.Tensor]:
    """Stand-ins for decoder features: one random map per level, [count, C, F, T]."""
    generator = torch.Generator().manual_seed(seed)
    return [
        torch.randn(count, channels, *grid, generator=generator)
        for channels, grid in zip(config.channels, config.level_grids, strict=True)
    ]


def two_chunk_inputs(model, *, seed: int = 0):
    """x [1, 2, 2, F, T], sigma [1, 2], features [2, ...] for a left and a right chunk."""
    config = model.config
    x = chunk_input(config, 2, seed=seed)[None]
    sigma = torch.tensor([[0.4, 2.0]])
    return x, sigma, random_features(config, 2, seed=seed)


# Shapes.


@pytest.mark.parametrize("name", ["tiny", "small"])
def test_encoder_gives_k_latents_of_latent_dim_in_open_unit_interval(name):
    config = PRESETS[name]
    torch.manual_seed(0)
    model = Music2Latent2(config).eval()
    with torch.no_grad():
        latents = model.encoder(chunk_input(config, 1))
    assert latents.shape == (1, 8, 64)
    assert latents.abs().max() < 1


@pytest.mark.parametrize("name", ["tiny", "small"])
def test_decoder_gives_one_feature_map_per_level(name):
    config = PRESETS[name]
    torch.manual_seed(0)
    model = Music2Latent2(config).eval()
    with torch.no_grad():
        features = model.decoder(random_latents(config, 1))
    assert len(features) == len(config.channels)
    for level, (channels, grid) in enumerate(zip(config.channels, config.level_grids, strict=True)):
        assert features[level].shape == (1, channels, *grid)


@pytest.mark.parametrize(("name", "chunks"), [("tiny", 1), ("tiny", 2), ("small", 2)])
def test_consistency_output_has_the_input_shape(name, chunks):
    config = PRESETS[name]
    torch.manual_seed(0)
    model = Music2Latent2(config).eval()
    x = chunk_input(config, chunks)[None]
    sigma = torch.full((1, chunks), 1.0)
    with torch.no_grad():
        features = model.decoder(random_latents(config, chunks))
        output = model.consistency(x, sigma, features)
    assert output.shape == x.shape
    assert torch.isfinite(output).all()


def test_paper_preset_has_about_100m_parameters():
    """Built on the meta device: no memory, never run."""
    with torch.device("meta"):
        model = Music2Latent2(PRESETS["paper"])
    assert 80_000_000 < model.parameter_count() < 130_000_000


def test_tiny_is_much_smaller_than_small():
    with torch.device("meta"):
        tiny, small = Music2Latent2(PRESETS["tiny"]), Music2Latent2(PRESETS["small"])
    assert tiny.parameter_count() * 10 < small.parameter_count()


# Causality of the consistency model.


def test_chunk_causal_attention_is_attention_masked_to_own_and_earlier_chunks():
    generator = torch.Generator().manual_seed(0)
    query, key, value = torch.randn(3, 2, 4, 3 * 5, 8, generator=generator)
    chunk_of_token = torch.arange(3).repeat_interleave(5)
    mask = chunk_of_token[:, None] >= chunk_of_token[None, :]
    expected = torch.nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=mask)
    assert torch.allclose(chunk_causal_attention(query, key, value, 3), expected, atol=1e-6)


def test_right_chunk_never_changes_the_left_chunk_output(tiny_random_model):
    """New noise, sigma and decoder features in the right slot leave the left output alone."""
    model = tiny_random_model
    x, sigma, features = two_chunk_inputs(model)
    before = denoise(model, x, sigma, features)

    other_x, _, other_features = two_chunk_inputs(model, seed=7)
    x2 = torch.stack([x[:, 0], other_x[:, 1]], 1)
    sigma2 = torch.tensor([[0.4, 80.0]])
    features2 = [
        torch.stack([mine[0], theirs[1]])
        for mine, theirs in zip(features, other_features, strict=True)
    ]
    after = denoise(model, x2, sigma2, features2)

    assert torch.equal(after[:, 0], before[:, 0])
    assert not torch.allclose(after[:, 1], before[:, 1], atol=1e-3)


def test_without_the_causal_mask_the_right_chunk_would_reach_the_left(
    tiny_random_model, monkeypatch
):
    """Guards the test above: with full attention, the same change does show on the left."""
    monkeypatch.setattr(
        blocks_module,
        "chunk_causal_attention",
        lambda query, key, value, chunks: torch.nn.functional.scaled_dot_product_attention(
            query, key, value
        ),
    )
    model = tiny_random_model
    x, sigma, features = two_chunk_inputs(model)
    before = denoise(model, x, sigma, features)
    x2 = x.clone()
    x2[:, 1] = chunk_input(model.config, 1, seed=99)[0]
    after = denoise(model, x2, sigma, features)
    assert (after[:, 0] - before[:, 0]).abs().max() > 1e-5


def test_left_chunk_changes_the_right_chunk_output(tiny_random_model):
    """The right slot attends to the left one: that is how chunks are stitched together."""
    model = tiny_random_model
    x, sigma, features = two_chunk_inputs(model)
    before = denoise(model, x, sigma, features)
    x2 = x.clone()
    x2[:, 0] = chunk_input(model.config, 1, seed=99)[0]
    after = denoise(model, x2, sigma, features)
    assert (after[:, 1] - before[:, 1]).abs().max() > 1e-5


def test_left_features_change_the_right_chunk_output(tiny_random_model):
    model = tiny_random_model
    x, sigma, features = two_chunk_inputs(model)
    before = denoise(model, x, sigma, features)
    _, _, other = two_chunk_inputs(model, seed=5)
    features2 = [
        torch.stack([theirs[0], mine[1]]) for mine, theirs in zip(features, other, strict=True)
    ]
    after = denoise(model, x, sigma, features2)
    assert (after[:, 1] - before[:, 1]).abs().max() > 1e-5


def test_left_output_of_two_chunks_equals_one_chunk_call_on_left_alone(tiny_random_model):
    model = tiny_random_model
    x, sigma, features = two_chunk_inputs(model)
    both = denoise(model, x, sigma, features)
    alone = denoise(model, x[:, :1], sigma[:, :1], [level[:1] for level in features])
    assert alone.shape == x[:, :1].shape
    assert torch.allclose(both[:, 0], alone[:, 0], rtol=0, atol=1e-5)


def test_batch_rows_do_not_mix_in_the_consistency_model(tiny_random_model):
    model = tiny_random_model
    x, sigma, features = two_chunk_inputs(model)
    single = denoise(model, x, sigma, features)
    other_x, _, other_features = two_chunk_inputs(model, seed=3)
    batched_x = torch.cat([x, other_x])
    batched_sigma = torch.cat([sigma, torch.tensor([[1.0, 2.0]])])
    batched_features = [
        torch.cat([mine, theirs]) for mine, theirs in zip(features, other_features, strict=True)
    ]
    batched = denoise(model, batched_x, batched_sigma, batched_features)
    assert torch.allclose(batched[:1], single, rtol=0, atol=1e-5)


# The encoder and decoder work on each chunk alone.


def test_encoder_latents_of_a_chunk_ignore_the_other_chunks_in_the_batch(tiny_random_model):
    model = tiny_random_model
    chunks = chunk_input(model.config, 4)
    with torch.no_grad():
        before = model.encoder(chunks)
        changed = chunks.clone()
        changed[[0, 1, 3]] = chunk_input(model.config, 3, seed=42)
        after = model.encoder(changed)
    assert torch.allclose(after[2], before[2], rtol=0, atol=1e-6)
    assert not torch.allclose(after[0], before[0], atol=1e-4)


def test_decoder_features_of_a_chunk_ignore_the_other_chunks_in_the_batch(tiny_random_model):
    model = tiny_random_model
    latents = random_latents(model.config, 3)
    with torch.no_grad():
        before = model.decoder(latents)
        changed = latents.clone()
        changed[0] = random_latents(model.config, 1, seed=8)[0]
        after = model.decoder(changed)
    for level_before, level_after in zip(before, after, strict=True):
        assert torch.allclose(level_after[1:], level_before[1:], rtol=0, atol=1e-6)
        assert not torch.allclose(level_after[0], level_before[0], atol=1e-4)


# EDM parametrisation.


def test_edm_scalings_at_sigma_min_are_skip_one_and_out_zero():
    sigma = torch.tensor([TINY.sigma_min], dtype=torch.float64)
    c_skip, c_out, _ = edm_scalings(sigma, TINY)
    assert c_skip.item() == 1.0
    assert c_out.item() == 0.0


def test_edm_scalings_match_the_spec_formulas_at_sigma_data():
    sigma = torch.tensor([0.5], dtype=torch.float64)
    c_skip, c_out, c_in = edm_scalings(sigma, TINY)
    data, minimum = TINY.sigma_data, TINY.sigma_min
    assert c_skip.item() == pytest.approx(data**2 / ((0.5 - minimum) ** 2 + data**2))
    assert c_out.item() == pytest.approx(data * (0.5 - minimum) / (2 * data**2) ** 0.5)
    assert c_in.item() == pytest.approx(1 / (2 * data**2) ** 0.5)


def test_consistency_function_is_the_identity_at_sigma_min(tiny_random_model):
    """f(x, sigma_min) == x: the boundary condition of a consistency model."""
    model = tiny_random_model
    x, _, features = two_chunk_inputs(model)
    sigma = torch.full((1, 2), TINY.sigma_min)
    assert torch.equal(denoise(model, x, sigma, features), x)


def test_sigma_from_time_spans_sigma_min_to_sigma_max():
    t = torch.tensor([0.0, 1.0], dtype=torch.float64)
    low, high = sigma_from_time(t, TINY).tolist()
    assert low == pytest.approx(TINY.sigma_min, rel=1e-9)
    assert high == pytest.approx(TINY.sigma_max, rel=1e-9)


def test_sigma_from_time_increases_with_time():
    sigma = sigma_from_time(torch.linspace(0, 1, 11, dtype=torch.float64), TINY)
    assert (sigma[1:] > sigma[:-1]).all()


# Hand-written backward passes (model/ops.py) against torch's own.


def test_attention_gradients_match_torch():
    generator = torch.Generator().manual_seed(0)
    inputs = [
        torch.randn(2, 3, 6, 8, generator=generator, dtype=torch.float64, requires_grad=True)
        for _ in range(3)
    ]
    assert torch.autograd.gradcheck(ops.attention, inputs)


@pytest.mark.parametrize("affine", [True, False])
def test_channels_last_group_norm_gradients_match_torch(affine):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 6, 5, 4, generator=generator, dtype=torch.float64)
    x = x.contiguous(memory_format=torch.channels_last).requires_grad_()
    weight, bias = (
        torch.randn(6, generator=generator, dtype=torch.float64, requires_grad=True)
        for _ in range(2)
    )
    parameters = (weight, bias) if affine else (None, None)

    def group_norm(x: torch.Tensor) -> torch.Tensor:  # the path bf16 maps take
        return ops._ChannelsLastGroupNorm.apply(x, 3, *parameters, 1e-5)

    assert torch.autograd.gradcheck(group_norm, (x,))
    output = group_norm(x)
    expected = torch.nn.functional.group_norm(x, 3, *parameters)
    assert torch.allclose(output, expected)
    if affine:
        grads = torch.autograd.grad(output.sum() * 2, (x, weight, bias))
        wanted = torch.autograd.grad(expected.sum() * 2, (x, weight, bias))
        for got, want in zip(grads, wanted, strict=True):
            assert torch.allclose(got, want)
        assert grads[0].is_contiguous(memory_format=torch.channels_last)


def test_group_norm_takes_the_copying_backward_only_for_reduced_precision():
    x = torch.randn(2, 4, 3, 3).contiguous(memory_format=torch.channels_last)
    for dtype, custom in ((torch.float32, False), (torch.bfloat16, True)):
        output = ops.group_norm(x.to(dtype).requires_grad_(), 2)
        assert (type(output.grad_fn).__name__ == "_ChannelsLastGroupNormBackward") == custom
