"""Objective metrics between a reference and an estimate (a decoded recording): pure
math on arrays, no files. Arrays are [channels, samples] float32, as everywhere in m2l.

Scores: SI-SDR, log-mel distance, multi-resolution STFT distance, ViSQOL (optional).

The naive codec, resampling to 44100/64 Hz and back, keeps as many numbers per second
as the model's latents (64x fewer than 44.1 kHz audio): a floor any codec must beat.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import numpy as np
import torch

from ..errors import EvaluationError
from ..resampling import resample

MEL_BANDS = 128
MEL_FFT = 2048
MEL_HOP = 512
MEL_FLOOR = 1e-5
STFT_SIZES = (512, 1024, 2048)
MAGNITUDE_FLOOR = 1e-7
SDR_EPS = 1e-10
NAIVE_RATE = 44100 / 64  # 689.0625 Hz, exact in binary; soxr takes it as is
VISQOL_RATE = 48000
VISQOL_MIN_SECONDS = 1.0  # audio mode needs 45 frames of 20 ms hop + 80 ms window

Scores = dict[str, float | None]


# Alignment.
def align(reference: np.ndarray, estimate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both as [channels, samples] over their common length; channel counts must match."""
    ref, est = as_2d(reference), as_2d(estimate)
    if ref.shape[0] != est.shape[0]:
        raise EvaluationError(
            f"channel counts differ (reference {ref.shape[0]}, test {est.shape[0]})"
        )
    length = min(ref.shape[1], est.shape[1])
    if length == 0:
        raise EvaluationError("no samples to compare (a signal is empty)")
    return ref[:, :length], est[:, :length]


def as_2d(audio: np.ndarray) -> np.ndarray:
    """float32 [channels, samples], from [samples] or [channels, samples]."""
    array = np.asarray(audio, dtype=np.float32)
    return array[None] if array.ndim == 1 else array


# Scores.
def si_sdr(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Scale-invariant SDR in dB (higher is better), averaged over channels."""
    ref, est = (x.astype(np.float64) for x in align(reference, estimate))
    ref = ref - ref.mean(axis=1, keepdims=True)
    est = est - est.mean(axis=1, keepdims=True)
    scale = (ref * est).sum(axis=1, keepdims=True) / ((ref**2).sum(axis=1, keepdims=True) + SDR_EPS)
    target = scale * ref
    ratio = ((target**2).sum(axis=1) + SDR_EPS) / (((est - target) ** 2).sum(axis=1) + SDR_EPS)
    return float(np.mean(10 * np.log10(ratio)))


@cache
def mel_filterbank(sample_rate: int, n_fft: int = MEL_FFT, n_mels: int = MEL_BANDS) -> np.ndarray:
    """Slaney-style mel filters [n_mels, n_fft // 2 + 1], 0 to sr/2, area-normalised."""
    edges = _mel_to_hz(np.linspace(0.0, _hz_to_mel(sample_rate / 2), n_mels + 2))
    bins = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins - lower) / (centre - lower)
    falling = (upper - bins) / (upper - centre)
    filters = np.maximum(0.0, np.minimum(rising, falling)) * (2.0 / (upper - lower))
    filters = filters.astype(np.float32)
    filters.flags.writeable = False
    return filters


def _hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    """Slaney's mel scale: linear (3 mels per 200 Hz) below 1 kHz, logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    linear = hz / (200.0 / 3)
    log = 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) / (np.log(6.4) / 27)
    return np.where(hz < 1000.0, linear, log)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    """The inverse of `_hz_to_mel`."""
    return np.where(mel < 15.0, mel * (200.0 / 3), 1000.0 * np.exp((mel - 15.0) * np.log(6.4) / 27))


def _magnitudes(audio: np.ndarray, n_fft: int, hop: int) -> torch.Tensor:
    """|STFT| [channels, bins, frames]: periodic Hann window, centred, zero-padded ends."""
    signal = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))
    spectrum = torch.stft(
        signal,
        n_fft,
        hop,
        window=torch.hann_window(n_fft),
        center=True,
        pad_mode="constant",
        return_complex=True,
    )
    return spectrum.abs()


def log_mel(audio: np.ndarray, sample_rate: int) -> torch.Tensor:
    """log10(mel power + 1e-5) [channels, 128, frames] (n_fft 2048, hop 512)."""
    power = _magnitudes(as_2d(audio), MEL_FFT, MEL_HOP) ** 2
    filters = torch.from_numpy(mel_filterbank(int(sample_rate)).copy())
    return torch.log10(torch.matmul(filters, power) + MEL_FLOOR)


def log_mel_distance(reference: np.ndarray, estimate: np.ndarray, sample_rate: int) -> float:
    """Mean absolute difference of log-mel spectrograms (lower is better)."""
    ref, est = align(reference, estimate)
    return float((log_mel(ref, sample_rate) - log_mel(est, sample_rate)).abs().mean())


def multi_resolution_stft_distance(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Spectral convergence + log-magnitude L1, averaged over FFT sizes 512/1024/2048."""
    ref, est = align(reference, estimate)
    total = 0.0
    for n_fft in STFT_SIZES:
        ref_mag, est_mag = _magnitudes(ref, n_fft, n_fft // 4), _magnitudes(est, n_fft, n_fft // 4)
        convergence = torch.linalg.norm(ref_mag - est_mag) / torch.linalg.norm(ref_mag).clamp_min(
            MAGNITUDE_FLOOR
        )
        log_ref = ref_mag.clamp_min(MAGNITUDE_FLOOR).log()
        log_est = est_mag.clamp_min(MAGNITUDE_FLOOR).log()
        total += float(convergence) + float((log_ref - log_est).abs().mean())
    return total / len(STFT_SIZES)


@cache
def _visqol_api() -> Any:
    """The ViSQOL audio-mode scorer, or None when `visqol-python` is not installed."""
    try:
        from visqol import VisqolApi
    except ImportError:
        return None
    api = VisqolApi()
    api.create(mode="audio")
    return api


def visqol_available() -> bool:
    """True when the optional `visqol-python` package can be imported."""
    return _visqol_api() is not None


def visqol(reference: np.ndarray, estimate: np.ndarray, sample_rate: int) -> float | None:
    """ViSQOL audio-mode MOS-LQO (1 to 5) of the mono mixes at 48 kHz; None if unavailable.

    None too for clips shorter than one second, which audio mode cannot score.
    """
    api = _visqol_api()
    ref, est = align(reference, estimate)
    if api is None or ref.shape[1] < VISQOL_MIN_SECONDS * sample_rate:
        return None
    ref_mono, est_mono = (
        resample(x.mean(axis=0, keepdims=True, dtype=np.float64), sample_rate, VISQOL_RATE)[0]
        for x in (ref, est)
    )
    try:
        result = api.measure_from_arrays(ref_mono, est_mono, VISQOL_RATE)
    except ValueError as error:
        raise EvaluationError(f"ViSQOL failed: {error}") from None
    return float(result.moslqo)


# Everything for one pair.
def score(
    reference: np.ndarray, estimate: np.ndarray, sample_rate: int, *, use_visqol: bool = True
) -> Scores:
    """Every score for one pair at one rate, compared over their common length (ViSQOL
    is None when skipped)."""
    ref, est = align(reference, estimate)
    return {
        "seconds": ref.shape[1] / sample_rate,
        "si_sdr": si_sdr(ref, est),
        "log_mel": log_mel_distance(ref, est, sample_rate),
        "mr_stft": multi_resolution_stft_distance(ref, est),
        "visqol": visqol(ref, est, sample_rate) if use_visqol else None,
    }


# The equal-budget baseline.
def naive_codec(waveform: np.ndarray, sample_rate: int, rate: float = NAIVE_RATE) -> np.ndarray:
    """Resamples to `rate` (44100/64 Hz: the latents' budget) and back, same length."""
    audio = as_2d(waveform)
    back = resample(resample(audio, sample_rate, rate), rate, sample_rate)
    length = audio.shape[1]
    if back.shape[1] < length:
        back = np.pad(back, ((0, 0), (0, length - back.shape[1])))
    return back[:, :length].astype(np.float32)
