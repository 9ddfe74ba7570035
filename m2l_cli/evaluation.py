"""Objective metrics between a reference and a decoded (test) recording, per file and
aggregated: SI-SDR, log-mel distance, multi-resolution STFT distance and (optionally)
ViSQOL. Arrays are [channels, samples] float32, as everywhere in m2l.

The naive codec, resampling to 44100/64 Hz and back, keeps as many numbers per second
as the model's latents (64x fewer than 44.1 kHz audio): a floor any codec must beat.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import soxr
import torch

from .audio import AudioSource, resample
from .errors import M2LError
from .files import AUDIO_SUFFIXES

if TYPE_CHECKING:
    from .codec import Codec

METRICS = ("si_sdr", "log_mel", "mr_stft", "visqol")
TABLE_COLUMNS = ("file", "SI-SDR (dB)", "log-mel", "MR-STFT", "ViSQOL")
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
CODEC_SYSTEM = "m2l"
NAIVE_SYSTEM = "naive 689 Hz"

Row = dict[str, Any]


class EvaluationError(M2LError):
    """Two recordings cannot be compared (channels, length, missing folder)."""


# Alignment.
def align(reference: np.ndarray, estimate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both as [channels, samples] over their common length; channel counts must match."""
    ref, est = _as_2d(reference), _as_2d(estimate)
    if ref.shape[0] != est.shape[0]:
        raise EvaluationError(
            f"channel counts differ (reference {ref.shape[0]}, test {est.shape[0]})"
        )
    length = min(ref.shape[1], est.shape[1])
    if length == 0:
        raise EvaluationError("no samples to compare (a signal is empty)")
    return ref[:, :length], est[:, :length]


def _as_2d(audio: np.ndarray) -> np.ndarray:
    array = np.asarray(audio, dtype=np.float32)
    return array[None] if array.ndim == 1 else array


# Metrics.
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
    power = _magnitudes(_as_2d(audio), MEL_FFT, MEL_HOP) ** 2
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
    ref_mono = soxr.resample(ref.mean(axis=0, dtype=np.float64), sample_rate, VISQOL_RATE, "HQ")
    est_mono = soxr.resample(est.mean(axis=0, dtype=np.float64), sample_rate, VISQOL_RATE, "HQ")
    try:
        result = api.measure_from_arrays(ref_mono, est_mono, VISQOL_RATE)
    except ValueError as error:
        raise EvaluationError(f"ViSQOL failed: {error}") from None
    return float(result.moslqo)


def metrics(
    reference: np.ndarray, estimate: np.ndarray, sample_rate: int, use_visqol: bool = True
) -> dict[str, float | None]:
    """Every metric for one aligned pair at one rate (ViSQOL is None when skipped)."""
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
    audio = _as_2d(waveform)
    low = soxr.resample(audio.T, sample_rate, rate, "HQ")
    back = np.ascontiguousarray(soxr.resample(low, rate, sample_rate, "HQ").T)
    length = audio.shape[1]
    if back.shape[1] < length:
        back = np.pad(back, ((0, 0), (0, length - back.shape[1])))
    return back[:, :length].astype(np.float32)


# Files and folders.
def read_audio(
    path: str | Path, offset: float = 0.0, max_seconds: float | None = None
) -> tuple[np.ndarray, int]:
    """A whole file (or `max_seconds` of it from `offset` seconds) and its rate."""
    source = AudioSource(path)
    try:
        rate = source.sample_rate
        start = round(offset * rate)
        stop = None if max_seconds is None else start + round(max_seconds * rate)
        blocks, read = [], 0
        for block in source.blocks():
            blocks.append(block)
            read += block.shape[1]
            if stop is not None and read >= stop:
                break
    finally:
        source.close()
    audio = np.concatenate(blocks, axis=1) if blocks else np.zeros((source.channels, 0), np.float32)
    audio = audio[:, start:stop]
    if not audio.shape[1]:
        raise EvaluationError(f"{path}: no audio {'after the offset' if start else 'in the file'}")
    return audio, rate


def compare_files(
    reference_path: str | Path,
    test_path: str | Path,
    use_visqol: bool = True,
    offset: float = 0.0,
    max_seconds: float | None = None,
) -> dict[str, float | None]:
    """All metrics for one pair; the test file is resampled to the reference's rate."""
    reference, rate = read_audio(reference_path, offset, max_seconds)
    test, test_rate = read_audio(test_path, offset, max_seconds)
    try:
        return metrics(reference, resample(test, test_rate, rate), rate, use_visqol)
    except EvaluationError as error:
        raise EvaluationError(f"{test_path}: {error}") from None


def audio_files(folder: str | Path) -> dict[str, Path]:
    """Audio files under `folder`, keyed by relative path without extension."""
    root = Path(folder)
    if not root.is_dir():
        raise EvaluationError(f"{folder}: no such folder")
    found: dict[str, Path] = {}
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() not in AUDIO_SUFFIXES or path.name.startswith("."):
            continue
        key = path.relative_to(root).with_suffix("").as_posix()
        if key in found:
            raise EvaluationError(f"{folder}: both {found[key].name} and {path.name}; keep one")
        found[key] = path
    return found


@dataclass
class Report:
    """Per-file metric rows for one or more systems, and what could not be compared."""

    systems: dict[str, list[Row]] = field(default_factory=dict)
    missing_test: list[str] = field(default_factory=list)
    missing_reference: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, dict[str, dict[str, float | None]]]:
        """system -> metric -> {"mean", "median"} over the files that have the metric."""
        return {name: _summarise(rows) for name, rows in self.systems.items()}

    def to_json(self) -> str:
        """The report as indented JSON: files and summary per system, then the leftovers."""
        summary = self.summary()
        systems = {
            name: {"files": rows, "summary": summary[name]} for name, rows in self.systems.items()
        }
        document = {
            "systems": systems,
            "missing_test": self.missing_test,
            "missing_reference": self.missing_reference,
            "errors": self.errors,
        }
        return json.dumps(document, indent=2)

    def table_rows(self, system: str | None = None) -> list[tuple[str, ...]]:
        """Formatted rows (TABLE_COLUMNS) for one system's files, then its mean and median."""
        name = system if system is not None else next(iter(self.systems), "")
        rows = self.systems.get(name, [])
        summary = _summarise(rows)
        table = [(str(row["file"]), *(_cell(row[m]) for m in METRICS)) for row in rows]
        for statistic in ("mean", "median"):
            table.append((statistic, *(_cell(summary[m][statistic]) for m in METRICS)))
        return table

    def summary_rows(self) -> list[tuple[str, ...]]:
        """One formatted row of means per system, to compare systems side by side."""
        summary = self.summary()
        return [(name, *(_cell(summary[name][m]["mean"]) for m in METRICS)) for name in summary]


def _summarise(rows: list[Row]) -> dict[str, dict[str, float | None]]:
    """Mean and median of each metric, ignoring missing (None) values."""
    result: dict[str, dict[str, float | None]] = {}
    for metric in METRICS:
        values = [float(row[metric]) for row in rows if row.get(metric) is not None]
        result[metric] = {
            "mean": float(np.mean(values)) if values else None,
            "median": float(np.median(values)) if values else None,
        }
    return result


def _named(error: Exception, path: Path) -> str:
    """The error's message, prefixed with the file unless it already starts with it."""
    text = str(error)
    return text if text.startswith(str(path)) else f"{path}: {text}"


def _cell(value: str | float | None) -> str:
    return "-" if value is None else f"{float(value):.3f}"


def compare_folders(
    reference_dir: str | Path,
    test_dir: str | Path,
    use_visqol: bool = True,
    max_seconds: float | None = None,
    system: str = "test",
    progress: Callable[[str], None] | None = None,
) -> Report:
    """Compares files paired by relative path and stem; unpaired and bad files are listed."""
    references, tests = audio_files(reference_dir), audio_files(test_dir)
    report = Report(systems={system: []})
    report.missing_test = [
        str(path.relative_to(reference_dir)) for k, path in references.items() if k not in tests
    ]
    report.missing_reference = [
        str(path.relative_to(test_dir)) for k, path in tests.items() if k not in references
    ]
    for key, reference in references.items():
        if key not in tests:
            continue
        name = str(reference.relative_to(reference_dir))
        if progress:
            progress(name)
        try:
            row = compare_files(reference, tests[key], use_visqol, max_seconds=max_seconds)
        except M2LError as error:
            report.errors.append(str(error))
            continue
        report.systems[system].append({"file": name, **row})
    return report


def evaluate_codec(
    codec: Codec,
    folder: str | Path,
    sigma_cond: float = 0.4,
    seed: int = 0,
    max_seconds: float | None = None,
    offset: float = 0.0,
    use_visqol: bool = True,
    progress: Callable[[str], None] | None = None,
) -> Report:
    """Encodes and decodes every audio file in memory; scores it beside the naive codec."""
    root = Path(folder)
    paths = {root.name: root} if root.is_file() else audio_files(root)
    report = Report(systems={CODEC_SYSTEM: [], NAIVE_SYSTEM: []})
    for path in paths.values():
        name = path.name if root.is_file() else str(path.relative_to(root))
        if progress:
            progress(name)
        try:
            audio, rate = read_audio(path, offset, max_seconds)
            decoded = codec.decode(codec.encode(audio, rate), sigma_cond=sigma_cond, seed=seed)
            coded = metrics(audio, decoded, rate, use_visqol)
            naive = metrics(audio, naive_codec(audio, rate), rate, use_visqol)
        except M2LError as error:
            report.errors.append(_named(error, path))
            continue
        report.systems[CODEC_SYSTEM].append({"file": name, **coded})
        report.systems[NAIVE_SYSTEM].append({"file": name, **naive})
    return report
