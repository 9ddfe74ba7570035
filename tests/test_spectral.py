"""The complex STFT representation: framing, amplitude compression, exact inverse."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from m2l_cli.config import PRESETS
from m2l_cli.spectral import OverlapAdd, SpectralTransform

CONFIG = PRESETS["small"]
CHUNK = CONFIG.chunk_samples  # 32768
CONTEXT = CONFIG.n_fft // 2  # 1024

pytestmark = pytest.mark.usefixtures("single_torch_thread")


@pytest.fixture(scope="module")
def transform() -> SpectralTransform:
    return SpectralTransform(CONFIG)


def band_limited(channels: int, samples: int, seed: int = 0) -> torch.Tensor:
    """A sum of sines between 50 Hz and 15 kHz with random phases: [channels, samples]."""
    rng = np.random.default_rng(seed)
    time = np.arange(samples) / CONFIG.sample_rate
    signal = np.zeros((channels, samples))
    for channel in range(channels):
        for frequency in rng.uniform(50, 15000, size=12):
            phase = rng.uniform(0, 2 * math.pi)
            signal[channel] += 0.08 * np.sin(2 * math.pi * frequency * time + phase)
    return torch.from_numpy(signal).float()


def with_context(samples: torch.Tensor) -> torch.Tensor:
    """The whole signal with `context` zeros on each side, as `analyse` expects."""
    return F.pad(samples, (CONTEXT, CONTEXT))


def test_output_shape_is_channels_by_real_imag_by_bins_by_frames(transform):
    audio = torch.zeros(3, 2, 2 * CHUNK)
    spectrogram = transform.analyse(with_context(audio))
    assert spectrogram.shape == (3, 2, 2, 1024, 128)
    assert spectrogram.dtype == torch.float32


def test_n_chunks_of_samples_give_n_times_64_frames(transform):
    for chunks in (1, 3):
        spectrogram = transform.analyse(with_context(torch.zeros(1, chunks * CHUNK)))
        assert spectrogram.shape[-1] == chunks * CONFIG.chunk_frames


def test_analyse_then_overlap_add_in_pieces_inverts_a_band_limited_signal(transform):
    """Several seconds of stereo audio come back through OverlapAdd pushed 64 frames at a time."""
    length = 4 * CHUNK  # ~3 s
    audio = band_limited(channels=2, samples=length)
    spectrogram = transform.analyse(with_context(audio))
    overlap_add = OverlapAdd(transform, (2,))
    pieces = [overlap_add.push(spectrogram[..., start : start + 64]) for start in range(0, 256, 64)]
    pieces.append(overlap_add.finish())
    restored = torch.cat(pieces, dim=-1)
    assert restored.shape[0] == 2
    assert restored.shape[-1] >= length
    inner = slice(2048, length - 2048)
    error = (restored[:, inner] - audio[:, inner]).abs().max().item()
    assert error < 1e-4


def test_overlap_add_push_returns_only_finished_samples(transform):
    """Each push of 64 frames releases 64 hops of audio (minus the dropped left context)."""
    spectrogram = transform.analyse(with_context(band_limited(1, 2 * CHUNK)))
    overlap_add = OverlapAdd(transform, (1,))
    first = overlap_add.push(spectrogram[..., :64])
    second = overlap_add.push(spectrogram[..., 64:])
    assert first.shape[-1] == CHUNK - CONTEXT
    assert second.shape[-1] == CHUNK


def test_one_chunk_window_alone_equals_its_frames_in_the_whole_signal(transform):
    """A chunk with 1024 true neighbours on each side analyses exactly as in the full file."""
    audio = band_limited(channels=2, samples=3 * CHUNK, seed=1)
    padded = with_context(audio)
    whole = transform.analyse(padded)
    for index in range(3):
        window = padded[:, index * CHUNK : (index + 1) * CHUNK + 2 * CONTEXT]
        alone = transform.analyse(window)
        assert alone.shape[-1] == 64
        assert torch.equal(alone, whole[..., index * 64 : (index + 1) * 64])


def test_each_bin_is_compressed_to_beta_times_magnitude_to_the_alpha(transform):
    audio = band_limited(channels=1, samples=CHUNK, seed=2)[0]
    padded = with_context(audio)
    spectrogram = transform.analyse(padded)
    reference = torch.stft(
        padded.double(),
        CONFIG.n_fft,
        CONFIG.hop_length,
        window=torch.hann_window(CONFIG.n_fft, periodic=True, dtype=torch.float64),
        center=False,
        return_complex=True,
    )
    frame = 17
    for bin_index in (3, 100, 700):
        c = reference[bin_index, frame]
        real, imag = spectrogram[0, bin_index, frame], spectrogram[1, bin_index, frame]
        magnitude = torch.hypot(real.double(), imag.double())
        expected = CONFIG.amplitude_beta * c.abs() ** CONFIG.amplitude_alpha
        assert magnitude.item() == pytest.approx(expected.item(), rel=1e-5)
        # The phase is kept: the compressed bin points the same way as the raw one.
        assert torch.angle(torch.complex(real, imag)).item() == pytest.approx(
            torch.angle(c).item(), abs=1e-4
        )


def test_to_complex_undoes_the_compression(transform):
    spectrogram = transform.analyse(with_context(band_limited(1, CHUNK, seed=3)))
    raw = transform.to_complex(spectrogram)
    recompressed = CONFIG.amplitude_beta * raw.abs() ** CONFIG.amplitude_alpha
    magnitude = torch.hypot(spectrogram[..., 0, :, :], spectrogram[..., 1, :, :]).double()
    assert torch.allclose(recompressed, magnitude, rtol=1e-5, atol=1e-7)
