"""Objective metrics, the naive 689 Hz codec, file and folder comparison, and reports."""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile

from m2l_cli import evaluation as ev
from m2l_cli.errors import EvaluationError
from m2l_cli.evaluation import metrics
from m2l_cli.resampling import resample

RATE = 44100


def tones(*frequencies: float, seconds: float = 1.0, channels: int = 1) -> np.ndarray:
    """A sum of sines at 0.1 amplitude each, [channels, samples] float32."""
    t = np.arange(round(seconds * RATE)) / RATE
    mono = sum(0.1 * np.sin(2 * np.pi * f * t + f) for f in frequencies)
    return np.tile(mono, (channels, 1)).astype(np.float32)


def music(seconds: float = 1.0, channels: int = 2) -> np.ndarray:
    """A chord with overtones across the spectrum plus a little noise."""
    audio = tones(220, 330, 440, 880, 1760, 3520, 7040, seconds=seconds, channels=channels)
    rng = np.random.default_rng(1)
    return (audio + 0.01 * rng.standard_normal(audio.shape)).astype(np.float32)


def with_noise(audio: np.ndarray, snr_db: float, seed: int = 0) -> np.ndarray:
    """`audio` plus white noise at exactly `snr_db` below its power."""
    noise = np.random.default_rng(seed).standard_normal(audio.shape)
    noise *= np.sqrt(np.sum(audio.astype(np.float64) ** 2) / np.sum(noise**2) / 10 ** (snr_db / 10))
    return (audio + noise).astype(np.float32)


def rms(audio: np.ndarray) -> float:
    return float(np.sqrt(np.mean(audio.astype(np.float64) ** 2)))


def write(path: Path, audio: np.ndarray, rate: int = RATE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, audio.T, rate, subtype="FLOAT" if path.suffix == ".wav" else None)
    return path


# SI-SDR.
def test_si_sdr_of_a_signal_with_itself_is_very_high():
    audio = music()
    assert ev.si_sdr(audio, audio) > 60


def test_si_sdr_ignores_the_estimates_scale():
    audio = music()
    noisy = with_noise(audio, 15)
    assert ev.si_sdr(audio, 3.0 * noisy) == pytest.approx(ev.si_sdr(audio, noisy), abs=1e-3)
    assert ev.si_sdr(audio, 0.2 * noisy) == pytest.approx(ev.si_sdr(audio, noisy), abs=1e-3)


def test_si_sdr_with_noise_at_10_db_snr_is_about_10_db():
    audio = music()
    assert ev.si_sdr(audio, with_noise(audio, 10)) == pytest.approx(10, abs=1)


# Spectral distances.
SPECTRAL = {
    "log_mel": lambda ref, est: ev.log_mel_distance(ref, est, RATE),
    "mr_stft": ev.multi_resolution_stft_distance,
}


@pytest.mark.parametrize("name", SPECTRAL)
def test_spectral_distances_are_zero_for_identical_inputs(name):
    audio = music()
    assert SPECTRAL[name](audio, audio.copy()) == 0


@pytest.mark.parametrize("name", SPECTRAL)
def test_spectral_distances_grow_with_noise(name):
    audio = music()
    slight = SPECTRAL[name](audio, with_noise(audio, 30))
    heavy = SPECTRAL[name](audio, with_noise(audio, 5))
    assert 0 < slight < heavy


def test_mel_filterbank_has_128_peaked_filters_covering_0_to_nyquist():
    filters = metrics.mel_filterbank(RATE)
    assert filters.shape == (128, 2048 // 2 + 1)
    assert (filters >= 0).all()
    peaks = filters.argmax(axis=1)
    assert (filters.max(axis=1) > 0).all()
    assert (np.diff(peaks) > 0).all()  # ascending centres, no empty or duplicate filter
    assert filters[0, 0] == 0 and filters[0, 1] > 0  # the first starts at 0 Hz
    assert filters[-1, -2] > 0  # the last reaches Nyquist
    assert (filters[:, peaks[0] : peaks[-1]].sum(axis=0) > 0).all()  # no gaps between


# The naive codec.
def test_naive_codec_keeps_the_length_and_only_low_frequencies():
    low, high = tones(100, seconds=2.0), tones(5000, seconds=2.0)
    coded_low, coded_high = ev.naive_codec(low, RATE), ev.naive_codec(high, RATE)
    assert coded_low.shape == low.shape and coded_high.shape == high.shape
    middle = slice(RATE // 4, -RATE // 4)  # away from the filters' edge effects
    assert rms(coded_high[:, middle]) < 0.01 * rms(high)
    assert rms(coded_low[:, middle] - low[:, middle]) < 0.01 * rms(low)


# Alignment.
def test_mismatched_channel_counts_raise():
    with pytest.raises(EvaluationError, match="channel"):
        ev.si_sdr(music(channels=2), music(channels=1))


def test_metrics_compare_over_the_common_length():
    audio = music()
    longer = np.concatenate([audio, music(0.5)], axis=1)
    assert ev.log_mel_distance(audio, longer, RATE) == 0
    assert ev.si_sdr(longer, audio) > 60


def test_compare_files_resamples_the_test_file_and_names_it_in_errors(tmp_path):
    audio = tones(220, 440, 1000, channels=2)
    reference = write(tmp_path / "ref.wav", audio)
    at_48k = write(tmp_path / "test.flac", resample(audio, RATE, 48000), 48000)
    row = ev.compare_files(reference, at_48k, use_visqol=False)
    assert row["si_sdr"] > 30 and row["seconds"] == pytest.approx(1.0, abs=1e-3)
    mono = write(tmp_path / "mono.wav", audio[:1])
    with pytest.raises(EvaluationError, match="mono.wav: channel counts differ"):
        ev.compare_files(reference, mono, use_visqol=False)


def test_read_clip_crops_from_an_offset(tmp_path):
    path = write(tmp_path / "a.wav", music(2.0))
    audio, rate = ev.read_clip(path, offset=0.5, max_seconds=1.0)
    assert rate == RATE and audio.shape == (2, RATE)
    assert np.array_equal(audio, music(2.0)[:, RATE // 2 : RATE // 2 + RATE])
    with pytest.raises(EvaluationError, match="a.wav: no audio after the offset"):
        ev.read_clip(path, offset=5.0)


# Folders and reports.
def test_compare_folders_pairs_files_by_name_and_lists_missing_ones(tmp_path):
    audio = music(0.5)
    for name in ("a.wav", "sub/b.flac", "only_reference.wav"):
        write(tmp_path / "ref" / name, audio)
    for name in ("a.flac", "sub/b.wav", "only_test.wav"):
        write(tmp_path / "test" / name, audio)
    report = ev.compare_folders(tmp_path / "ref", tmp_path / "test", use_visqol=False)
    assert [row["file"] for row in report.systems["test"]] == ["a.wav", "sub/b.flac"]
    assert report.missing_test == ["only_reference.wav"]
    assert report.missing_reference == ["only_test.wav"]
    assert report.errors == []
    document = json.loads(report.to_json())
    assert document["systems"]["test"]["summary"]["log_mel"]["mean"] < 0.01
    table = report.table_rows()
    assert [row[0] for row in table] == ["a.wav", "sub/b.flac", "mean", "median"]
    assert all(len(row) == len(ev.TABLE_COLUMNS) for row in table)
    assert table[0][-1] == "-"  # ViSQOL skipped


def test_report_summary_ignores_missing_values():
    rows = [
        {"file": "a", "si_sdr": 10.0, "log_mel": 1.0, "mr_stft": 2.0, "visqol": None},
        {"file": "b", "si_sdr": 20.0, "log_mel": 3.0, "mr_stft": 2.0, "visqol": 4.0},
        {"file": "c", "si_sdr": 60.0, "log_mel": 2.0, "mr_stft": 2.0, "visqol": None},
    ]
    summary = ev.Report(systems={"x": rows}).summary()["x"]
    assert summary["si_sdr"] == {"mean": 30.0, "median": 20.0}
    assert summary["visqol"] == {"mean": 4.0, "median": 4.0}


def test_evaluate_codec_scores_the_model_beside_the_naive_codec(tmp_path, single_torch_thread):
    from m2l_cli import Codec

    write(tmp_path / "clip.wav", music(2.0))
    codec = Codec.create("tiny", precision="fp32", device="cpu")
    report = ev.evaluate_codec(codec, tmp_path, max_seconds=0.5, use_visqol=False)
    assert set(report.systems) == {ev.CODEC_SYSTEM, ev.NAIVE_SYSTEM}
    assert report.errors == []
    for rows in report.systems.values():
        assert len(rows) == 1 and rows[0]["seconds"] == pytest.approx(0.5, abs=1e-3)
    names = [row[0] for row in report.summary_rows()]
    assert names == [ev.CODEC_SYSTEM, ev.NAIVE_SYSTEM]


# ViSQOL (optional package).
def test_visqol_is_none_without_the_package(monkeypatch):
    monkeypatch.setattr(metrics, "_visqol_api", lambda: None)
    audio = music(1.5)
    assert ev.visqol(audio, audio, RATE) is None


def test_visqol_scores_identical_audio_high_and_low_passed_audio_lower():
    pytest.importorskip("visqol")
    audio = music(1.2)
    assert ev.visqol(audio, audio, RATE) > 4.5
    assert ev.visqol(audio, ev.naive_codec(audio, RATE), RATE) < 3.5
    assert ev.visqol(audio[:, : RATE // 2], audio[:, : RATE // 2], RATE) is None  # too short
