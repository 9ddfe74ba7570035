"""Objective metrics and diagnostics, the naive 689 Hz codec, file and folder
comparison, and reports."""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile

from m2l_cli import evaluation as ev
from m2l_cli.errors import EvaluationError
from m2l_cli.evaluation import metrics
from m2l_cli.evaluation.report import DIAGNOSTIC_COLUMNS
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


# Diagnostics: level per band and loudness.
QUIETER_6_DB = 10 ** (-6 / 20)


def test_a_copy_6_db_quieter_is_6_db_low_in_every_band_and_6_lu_quieter():
    audio = music(3.0)
    quieter = audio * QUIETER_6_DB
    errors = ev.band_level_errors(audio, quieter, RATE)
    assert len(errors) == 6
    assert all(error == pytest.approx(-6.0, abs=1e-4) for error in errors.values())
    assert ev.loudness_difference(audio, quieter, RATE) == pytest.approx(-6.0, abs=1e-4)
    assert ev.loudness_difference(quieter, audio, RATE) == pytest.approx(6.0, abs=1e-4)


def test_band_errors_show_where_a_low_pass_loses_level():
    audio = music(3.0)
    errors = list(ev.band_level_errors(audio, ev.naive_codec(audio, RATE), RATE).values())
    assert abs(errors[0]) < 1.0  # 0-250 Hz: kept
    assert all(error < -40 for error in errors[2:])  # above 1 kHz: gone


def test_a_band_the_reference_has_nothing_in_has_no_error():
    low_rate = 16000
    t = np.arange(low_rate) / low_rate
    audio = (0.1 * np.sin(2 * np.pi * 440 * t))[None].astype(np.float32)
    errors = ev.band_level_errors(audio, audio, low_rate)
    assert errors[metrics.band_key(10000, 22050)] is None
    assert errors[metrics.band_key(250, 1000)] == pytest.approx(0.0)


def test_k_weighting_at_48_khz_is_the_standards_filter():
    (shelf_b, shelf_a), (highpass_b, highpass_a) = metrics.k_weighting(48000)
    np.testing.assert_allclose(shelf_b, [1.53512485958697, -2.69169618940638, 1.19839281085285])
    np.testing.assert_allclose(shelf_a, [1.0, -1.69065929318241, 0.73248077421585])
    np.testing.assert_allclose(highpass_b, [1.0, -2.0, 1.0])
    np.testing.assert_allclose(highpass_a, [1.0, -1.99004745483398, 0.99007225036621])


def test_a_full_scale_997_hz_sine_reads_minus_3_lkfs():
    """The calibration of ITU-R BS.1770: 0 dBFS at 997 Hz in one channel is -3.01 LKFS."""
    for rate in (44100, 48000):
        sine = np.sin(2 * np.pi * 997 * np.arange(5 * rate) / rate)[None]
        assert ev.integrated_loudness(sine, rate) == pytest.approx(-3.01, abs=0.01)


def test_loudness_gating_ignores_silence_and_much_quieter_passages():
    audio = music(3.0)
    loudness = ev.integrated_loudness(audio, RATE)
    silence = np.zeros((2, 3 * RATE), np.float32)
    whisper = audio * 10 ** (-30 / 20)  # 30 LU down: below the relative gate
    for padding in (silence, whisper):
        # Without gates half the time at (nearly) nothing would read 3 LU quieter; with
        # them only the few blocks that straddle the change count a little lower.
        padded = np.concatenate([audio, padding], axis=1)
        assert ev.integrated_loudness(padded, RATE) == pytest.approx(loudness, abs=0.3)
    assert ev.integrated_loudness(silence, RATE) is None
    assert ev.integrated_loudness(audio[:, : RATE // 4], RATE) is None  # shorter than a block


# Diagnostics: ticks at chunk boundaries.
CHUNK_SECONDS = 32768 / 44100


def clicks_every_chunk(rate: int, seconds: float = 10.0) -> tuple[np.ndarray, np.ndarray]:
    """Stationary noise, and the same with a click at every chunk boundary."""
    noise = 0.01 * np.random.default_rng(2).standard_normal((1, round(seconds * rate)))
    clicked = noise.copy()
    clicked[:, np.round(np.arange(0, noise.shape[1], CHUNK_SECONDS * rate)).astype(int)] += 0.9
    return noise.astype(np.float32), clicked.astype(np.float32)


@pytest.mark.parametrize("rate", [44100, 48000])
def test_a_click_every_chunk_has_a_high_tick_ratio_and_noise_about_one(rate):
    noise, clicked = clicks_every_chunk(rate)
    assert ev.tick_ratio(noise, rate, CHUNK_SECONDS) == pytest.approx(1.0, abs=0.1)
    assert ev.tick_ratio(clicked, rate, CHUNK_SECONDS) > 5


def test_clicks_off_the_chunk_period_are_not_ticks():
    noise, _ = clicks_every_chunk(RATE)
    clicked = noise.copy()
    clicked[:, :: round(0.3 * RATE)] += 0.9  # every 0.3 s: no fixed place in the period
    assert ev.tick_ratio(clicked, RATE, CHUNK_SECONDS) < 2


def test_no_tick_ratio_without_a_whole_period_or_without_highs():
    noise, _ = clicks_every_chunk(RATE)
    assert ev.tick_ratio(noise[:, :32000], RATE, CHUNK_SECONDS) is None
    low = tones(100, 200, seconds=3.0)
    assert ev.tick_ratio(low, RATE, CHUNK_SECONDS) is None


def test_a_score_has_every_diagnostic_for_the_estimate_and_its_input():
    noise, clicked = clicks_every_chunk(RATE, seconds=3.0)
    row = ev.score(noise, clicked, RATE, chunk_seconds=CHUNK_SECONDS, use_visqol=False)
    assert row["tick_ratio"] > 5 and row["tick_ratio_reference"] < 1.5
    assert row["loudness_difference_lu"] > 0
    assert all(metrics.band_key(low, high) in row for low, high in metrics.BANDS)


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
    diagnostics = report.table_rows("test", DIAGNOSTIC_COLUMNS)
    assert diagnostics[0][1] == "0.00"  # identical files: no loudness difference
    assert len(diagnostics[0]) == 1 + len(DIAGNOSTIC_COLUMNS) == 10
    summary = document["systems"]["test"]["summary"]
    assert summary["band_error_db_1000_2500hz"]["mean"] == pytest.approx(0.0, abs=1e-6)


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
    naive = report.systems[ev.NAIVE_SYSTEM][0]
    assert naive["band_error_db_5000_10000hz"] < -40  # the naive codec keeps no highs
    assert "loudness_difference_lu" in naive and "tick_ratio_reference" in naive


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
