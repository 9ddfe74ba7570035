"""Objective metrics between a reference and an estimate (a decoded recording): pure
math on arrays, no files. Arrays are [channels, samples] float32, as everywhere in m2l.

Scores: SI-SDR, log-mel distance, multi-resolution STFT distance, ViSQOL (optional).
Diagnostics: integrated loudness difference (ITU-R BS.1770), the level error in six
frequency bands, and the chunk-boundary tick ratio of each signal.

The naive codec, resampling to 44100/64 Hz and back, keeps as many numbers per second
as the model's latents (64x fewer than 44.1 kHz audio): a floor any codec must beat.
"""

from __future__ import annotations

import math
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

BAND_EDGES = (0, 250, 1000, 2500, 5000, 10000, 22050)  # Hz
BANDS = tuple(zip(BAND_EDGES[:-1], BAND_EDGES[1:], strict=True))
BAND_FLOOR_DB = -150.0  # a band the estimate leaves silent reads this, not -infinity
TICK_FFT = 2048
TICK_HOP = 512
TICK_MIN_HZ = 8000.0
TICK_SILENCE = 1e-9  # less energy above TICK_MIN_HZ than this share of the total: no ratio

# ITU-R BS.1770-4 K-weighting: a high shelf (+4 dB above ~1.7 kHz), then a high-pass at
# ~38 Hz, as analogue prototypes mapped to any rate by the bilinear transform; at 48 kHz
# they give the standard's coefficients. The prototypes are those of "Evaluation of
# Implementations of the EBU R128 Loudness Measurement" (De Man, 2018).
SHELF_HZ, SHELF_GAIN_DB, SHELF_Q = 1681.9744509555319, 3.99984385397, 0.7071752369554193
SHELF_BAND_EXPONENT = 0.499666774155
HIGHPASS_HZ, HIGHPASS_Q = 38.13547087613982, 0.5003270373253953
LOUDNESS_FFT = 1 << 17  # K-weighting in the frequency domain, in blocks of half this
LOUDNESS_OFFSET = -0.691  # LKFS of the weighted mean square, per BS.1770
LOUDNESS_BLOCK_SECONDS = 0.4
LOUDNESS_STEP_SECONDS = 0.1  # blocks overlap by 75%
ABSOLUTE_GATE_LKFS = -70.0
RELATIVE_GATE_LU = -10.0

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


def _magnitudes(audio: np.ndarray, n_fft: int, hop: int, center: bool = True) -> torch.Tensor:
    """|STFT| [channels, bins, frames], periodic Hann window. Centred: frame j is centred
    on sample j * hop, with zeros beyond the ends; else frame j starts there."""
    signal = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))
    spectrum = torch.stft(
        signal,
        n_fft,
        hop,
        window=torch.hann_window(n_fft),
        center=center,
        pad_mode="constant",
        return_complex=True,
    )
    return spectrum.abs()


def _power(audio: np.ndarray, n_fft: int, hop: int, center: bool = True) -> np.ndarray:
    """|STFT|^2 [channels, bins, frames] in float64."""
    return _magnitudes(audio, n_fft, hop, center).numpy().astype(np.float64) ** 2


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


# Diagnostics: level per band.
def band_key(low: int, high: int) -> str:
    """The name of a band's level error in reports: band_error_db_<low>_<high>hz."""
    return f"band_error_db_{low}_{high}hz"


def band_energies(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """The energy in each of BANDS: the sum of |STFT|^2 (n_fft 2048, hop 512) over the
    bins centred in [low, high) Hz, over all frames and channels."""
    power = _power(as_2d(audio), MEL_FFT, MEL_HOP).sum(axis=(0, 2))
    frequencies = np.arange(power.shape[0]) * sample_rate / MEL_FFT
    return np.array(
        [power[(frequencies >= low) & (frequencies < high)].sum() for low, high in BANDS]
    )


def band_level_errors(reference: np.ndarray, estimate: np.ndarray, sample_rate: int) -> Scores:
    """10 log10(estimate's band energy / reference's) in dB for each of BANDS (positive:
    too loud), keyed by `band_key`; None for a band the reference has nothing in."""
    ref, est = align(reference, estimate)
    wanted, got = band_energies(ref, sample_rate), band_energies(est, sample_rate)
    return {
        band_key(low, high): _level_error(reference_energy, estimate_energy)
        for (low, high), reference_energy, estimate_energy in zip(BANDS, wanted, got, strict=True)
    }


def _level_error(reference_energy: float, estimate_energy: float) -> float | None:
    """10 log10(estimate / reference), at least BAND_FLOOR_DB; None without reference."""
    if reference_energy <= 0:
        return None
    floor = reference_energy * 10 ** (BAND_FLOOR_DB / 10)
    return 10 * math.log10(max(estimate_energy, floor) / reference_energy)


# Diagnostics: ticks at chunk boundaries.
def tick_ratio(audio: np.ndarray, sample_rate: int, period_seconds: float) -> float | None:
    """How much the energy above 8 kHz peaks at one place in every period (the codec's
    chunk: 32768 samples at 44.1 kHz): the energy of each STFT frame (hop 512) folded on
    the period, i.e. averaged at each position in it, then max / mean over positions.
    About 1 for stationary sound, high for a click every period. None for a signal
    shorter than one period or without content above 8 kHz."""
    signal = as_2d(audio)
    period = period_seconds * sample_rate
    if signal.shape[1] < max(period, TICK_FFT):
        return None
    power = _power(signal, TICK_FFT, TICK_HOP, center=False).sum(axis=0)
    frequencies = np.arange(power.shape[0]) * sample_rate / TICK_FFT
    high = power[frequencies > TICK_MIN_HZ].sum(axis=0)
    if high.mean() <= TICK_SILENCE * power.sum(axis=0).mean():
        return None
    positions = max(1, round(period / TICK_HOP))
    centres = np.arange(high.shape[0]) * TICK_HOP + TICK_FFT // 2
    slot = np.rint(centres / period * positions).astype(int) % positions
    counts = np.bincount(slot, minlength=positions)
    means = np.bincount(slot, weights=high, minlength=positions)[counts > 0] / counts[counts > 0]
    return float(means.max() / means.mean())


# Diagnostics: loudness (ITU-R BS.1770-4).
@cache
def k_weighting(sample_rate: int) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """The two K-weighting biquads (b, a), each with a[0] = 1, at `sample_rate`: the
    high shelf, then the high-pass (whose numerator is the standard's 1, -2, 1)."""
    k = math.tan(math.pi * SHELF_HZ / sample_rate)
    high = 10 ** (SHELF_GAIN_DB / 20)
    band = high**SHELF_BAND_EXPONENT
    shelf = np.array(
        [high + band * k / SHELF_Q + k * k, 2 * (k * k - high), high - band * k / SHELF_Q + k * k]
    )
    shelf_poles = _poles(k, SHELF_Q)
    highpass_poles = _poles(math.tan(math.pi * HIGHPASS_HZ / sample_rate), HIGHPASS_Q)
    return (
        (shelf / shelf_poles[0], shelf_poles / shelf_poles[0]),
        (np.array([1.0, -2.0, 1.0]), highpass_poles / highpass_poles[0]),
    )


def _poles(k: float, q: float) -> np.ndarray:
    """The denominator of a second-order analogue section of quality `q` after the
    bilinear transform, at the prewarped frequency k = tan(pi f / rate)."""
    return np.array([1 + k / q + k * k, 2 * (k * k - 1), 1 - k / q + k * k])


@cache
def _k_weighting_spectrum(sample_rate: int) -> np.ndarray:
    """The K-weighting filters' frequency response on the grid of a LOUDNESS_FFT-point
    FFT, made from their impulse response cut to the first half of the FFT."""
    z = np.exp(-1j * np.linspace(0.0, math.pi, LOUDNESS_FFT // 2 + 1))
    response = np.ones_like(z)
    for b, a in k_weighting(sample_rate):
        response *= np.polyval(b[::-1], z) / np.polyval(a[::-1], z)
    impulse = np.fft.irfft(response, LOUDNESS_FFT)[: LOUDNESS_FFT // 2]
    return np.fft.rfft(impulse, LOUDNESS_FFT)


def k_weighted(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """The signal through the K-weighting filters, [channels, samples] float64: blocks
    of half an FFT filtered in the frequency domain and overlap-added. The filters'
    impulse response has decayed long before half an FFT, so this equals running the
    biquads sample by sample."""
    signal = as_2d(audio).astype(np.float64)
    channels, length = signal.shape
    half = LOUDNESS_FFT // 2
    blocks = -(-length // half)
    padded = np.zeros((channels, blocks * half))
    padded[:, :length] = signal
    spectra = np.fft.rfft(padded.reshape(channels, blocks, half), LOUDNESS_FFT)
    filtered = np.fft.irfft(spectra * _k_weighting_spectrum(sample_rate), LOUDNESS_FFT)
    output = np.zeros((channels, (blocks + 1) * half))
    output[:, : blocks * half] += filtered[..., :half].reshape(channels, -1)
    output[:, half:] += filtered[..., half:].reshape(channels, -1)
    return output[:, :length]


def integrated_loudness(audio: np.ndarray, sample_rate: int) -> float | None:
    """Integrated loudness in LKFS (ITU-R BS.1770-4): the K-weighted mean square over
    400 ms blocks (75% overlap) that pass two gates: -70 LKFS, then 10 LU below the
    loudness of the blocks that passed the first. Every channel has weight 1 (the
    standard's weights for mono and stereo). None for clips shorter than one block or
    silent ones."""
    weighted = k_weighted(audio, sample_rate)
    block = round(LOUDNESS_BLOCK_SECONDS * sample_rate)
    step = round(LOUDNESS_STEP_SECONDS * sample_rate)
    if weighted.shape[1] < block:
        return None
    sums = np.concatenate([np.zeros((weighted.shape[0], 1)), np.cumsum(weighted**2, axis=1)], 1)
    starts = np.arange(0, weighted.shape[1] - block + 1, step)
    mean_squares = (sums[:, starts + block] - sums[:, starts]) / block  # [channels, blocks]
    levels = _lkfs(mean_squares)
    kept = levels > ABSOLUTE_GATE_LKFS
    if not kept.any():
        return None
    kept &= levels > _lkfs(mean_squares[:, kept].mean(axis=1)) + RELATIVE_GATE_LU
    return float(_lkfs(mean_squares[:, kept].mean(axis=1)))


def _lkfs(mean_squares: np.ndarray) -> np.ndarray:
    """Loudness of per-channel mean squares [channels, ...], summed over channels."""
    total = mean_squares.sum(axis=0)
    with np.errstate(divide="ignore"):
        return LOUDNESS_OFFSET + 10 * np.log10(total)


def loudness_difference(
    reference: np.ndarray, estimate: np.ndarray, sample_rate: int
) -> float | None:
    """Integrated loudness of the estimate minus the reference's, in LU (positive: too
    loud); None when either has no integrated loudness."""
    ref, est = align(reference, estimate)
    wanted, got = integrated_loudness(ref, sample_rate), integrated_loudness(est, sample_rate)
    return None if wanted is None or got is None else got - wanted


# Everything for one pair.
def score(
    reference: np.ndarray,
    estimate: np.ndarray,
    sample_rate: int,
    *,
    chunk_seconds: float,
    use_visqol: bool = True,
) -> Scores:
    """Every score and diagnostic for one pair at one rate, compared over their common
    length (ViSQOL is None when skipped); `chunk_seconds` is the codec's chunk period."""
    ref, est = align(reference, estimate)
    return {
        "seconds": ref.shape[1] / sample_rate,
        "si_sdr": si_sdr(ref, est),
        "log_mel": log_mel_distance(ref, est, sample_rate),
        "mr_stft": multi_resolution_stft_distance(ref, est),
        "visqol": visqol(ref, est, sample_rate) if use_visqol else None,
        "loudness_difference_lu": loudness_difference(ref, est, sample_rate),
        **band_level_errors(ref, est, sample_rate),
        "tick_ratio": tick_ratio(est, sample_rate, chunk_seconds),
        "tick_ratio_reference": tick_ratio(ref, sample_rate, chunk_seconds),
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
