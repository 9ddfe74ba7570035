"""ModelRunner: the bf16 path (weights converted once, no autocast) against the fp32
path, and the fused modulations against their plain formulas."""

import pytest
import torch
import torch.nn.functional as F

from m2l_cli.config import PRESETS
from m2l_cli.inference import ModelRunner
from m2l_cli.model import Music2Latent2
from m2l_cli.model.blocks import ModulationBank, TransformerBlock, modulated_group_norm
from m2l_cli.runtime import autocast

TINY = PRESETS["tiny"]
CPU = torch.device("cpu")
# bf16 keeps 8 significant bits (relative rounding 2^-9): through a dozen layers the
# outputs differ from float32 by ~0.1-1.5%; a wrong fused formula differs by ~100%.
BF16_RELATIVE_ERROR = 3e-2


@pytest.fixture(scope="module")
def runners(single_torch_thread) -> tuple[Music2Latent2, ModelRunner, ModelRunner]:
    """The tiny model with its zero-initialised gates and heads made random (else the
    conditioned blocks are identities), and an fp32 and a bf16 runner over it."""
    torch.manual_seed(0)
    model = Music2Latent2(TINY).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            if not parameter.any():
                torch.nn.init.normal_(parameter, std=0.05)
    return model, ModelRunner(model, CPU, "fp32"), ModelRunner(model, CPU, "bf16")


def relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    return ((got.float() - want.float()).norm() / want.float().norm()).item()


def inputs(count: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Spectrograms [count], latents [2 count], noisy pairs [count, 2] and their sigmas."""
    generator = torch.Generator().manual_seed(1)
    shape = (2, TINY.frequency_bins, TINY.chunk_frames)
    spectrograms = torch.randn(count, *shape, generator=generator)
    latents = torch.rand(2 * count, TINY.num_latents, TINY.latent_dim, generator=generator)
    noisy = torch.randn(count, 2, *shape, generator=generator)
    sigma = torch.logspace(-2, 1.9, 2 * count).reshape(count, 2)
    return spectrograms, latents * 2 - 1, noisy, sigma


def test_bf16_runner_converts_a_copy_of_the_weights_once(runners):
    model, _, bf16 = runners
    assert bf16.network is not model and bf16.network is bf16.network
    assert {p.dtype for p in bf16.network.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in model.parameters()} == {torch.float32}


def test_bf16_path_matches_fp32_within_bf16_rounding(runners):
    """Each call's output against fp32: off by rounding only (not zero: it ran in
    bf16), and no further off than the same model under bf16 autocast."""
    model, fp32, bf16 = runners
    spectrograms, latents, noisy, sigma = inputs(3)
    with torch.inference_mode(), autocast(CPU, "bf16"):
        reference_latents = model.encoder(spectrograms)
        reference_features = model.decoder(latents)
        reference_clean = model.consistency(noisy, sigma, reference_features)
    features = fp32.decode_features(latents)
    pairs = [
        (bf16.encode(spectrograms), fp32.encode(spectrograms), reference_latents),
        *zip(bf16.decode_features(latents), features, reference_features, strict=True),
        (
            bf16.denoise(noisy, sigma, bf16.decode_features(latents)),
            fp32.denoise(noisy, sigma, features),
            reference_clean,
        ),
    ]
    for fast, exact, autocast_output in pairs:
        error = relative_error(fast, exact)
        assert 0 < error < BF16_RELATIVE_ERROR
        assert error < 2 * relative_error(autocast_output, exact) + 1e-3


def test_modulated_group_norm_is_norm_then_scale_and_shift():
    generator = torch.Generator().manual_seed(2)
    norm = torch.nn.GroupNorm(2, 4)
    with torch.no_grad():
        norm.weight.normal_(generator=generator)
        norm.bias.normal_(generator=generator)
    x = torch.randn(3, 4, 5, 6, generator=generator).contiguous(memory_format=torch.channels_last)
    shift, scale = torch.randn(2, 3, 4, generator=generator)
    expected = norm(x) * (1 + scale[:, :, None, None]) + shift[:, :, None, None]
    assert torch.allclose(modulated_group_norm(x, norm, shift, scale), expected, atol=1e-5)
    swapped = modulated_group_norm(x, norm, scale, shift)
    assert not torch.allclose(swapped, expected, atol=1e-2)


def test_conditioned_transformer_block_is_adaln_per_chunk():
    """The fused block against the plain AdaLN formula, each chunk with its own terms."""
    torch.manual_seed(3)
    dim, chunks, tokens = 8, 2, 5
    block = TransformerBlock(dim, heads=2, mlp_ratio=2, condition_dim=6)
    bank = ModulationBank([block.modulation])
    with torch.no_grad():
        block.modulation.linear.weight.normal_()
        block.modulation.linear.bias.normal_()
        embedding = torch.randn(3 * chunks, 6)
        x = torch.randn(3, chunks * tokens, dim)
        got = block(x, chunks, bank(embedding))
        terms = block.modulation.linear(F.silu(embedding)).chunk(6, dim=-1)
        shift1, scale1, gate1, shift2, scale2, gate2 = (
            term.reshape(3, chunks, 1, dim).repeat_interleave(tokens, 2).flatten(1, 2)
            for term in terms
        )
        h = block.norm1(x) * (1 + scale1) + shift1
        expected = x + gate1 * block.attention(h, chunks)
        h = block.norm2(expected) * (1 + scale2) + shift2
        expected = expected + gate2 * block.mlp(h)
    assert torch.allclose(got, expected, atol=1e-5)
