"""The `m2l` command, run as a user runs it: real subprocesses, real files, real pipes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile
from commands import M2L, assert_one_line_error, files_in, m2l, start

import m2l_cli
from m2l_cli import Codec
from m2l_cli.evaluation import log_mel_distance, naive_codec


@pytest.fixture
def workdir(tmp_path: Path, model_file: Path) -> Path:
    """A folder with a stereo WAV, a mono 48 kHz FLAC and two broken 'audio' files."""
    t = np.arange(int(44100 * 2.5)) / 44100
    stereo = np.stack([np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 660 * t)], axis=1) * 0.3
    soundfile.write(tmp_path / "song.wav", stereo, 44100)
    soundfile.write(tmp_path / "voice.flac", np.sin(np.arange(48000) * 0.05) * 0.3, 48000)
    (tmp_path / "notes.wav").write_text("this is text, not audio")
    (tmp_path / "empty.wav").write_bytes(b"")
    return tmp_path


def test_encode_decode_info_round_trip(workdir: Path, model_file: Path) -> None:
    encoded = m2l("encode", "song.wav", "--meta", "artist=me", cwd=workdir, model=model_file)
    assert encoded.returncode == 0, encoded.stderr
    assert encoded.stdout == b""
    written = encoded.stderr.decode().splitlines()[-1]
    assert written.startswith("m2l: wrote song.wav.m2l: 2.5 s, 2 channels, ")
    assert written.endswith("x real time") and " kB, " in written and " kbit/s, " in written
    decoded = m2l("decode", "song.wav.m2l", "-o", "back.flac", cwd=workdir, model=model_file)
    assert decoded.returncode == 0, decoded.stderr
    assert decoded.stderr.decode().splitlines()[-1].startswith("m2l: wrote back.flac: 2.5 s, ")
    original, back = soundfile.info(workdir / "song.wav"), soundfile.info(workdir / "back.flac")
    assert (back.frames, back.channels, back.samplerate) == (original.frames, 2, 44100)
    info = m2l("info", "song.wav.m2l", "--json", cwd=workdir, model=None)
    header = json.loads(info.stdout)
    assert header["channels"] == 2 and header["num_samples"] == original.frames
    assert header["metadata"] == {"artist": "me"}


def test_decode_defaults_to_a_wav_beside_the_input_at_its_original_rate_and_format(
    workdir: Path, model_file: Path
) -> None:
    assert m2l("encode", "voice.flac", cwd=workdir, model=model_file).returncode == 0
    assert m2l("decode", "voice.flac.m2l", cwd=workdir, model=model_file).returncode == 0
    back = soundfile.info(workdir / "voice.flac.m2l.wav")
    assert (back.samplerate, back.frames, back.channels) == (48000, 48000, 1)


def test_pipes_through_a_real_shell(workdir: Path, model_file: Path) -> None:
    command = f"cat voice.flac | {M2L} encode - -o - | {M2L} decode - -o - > piped.wav"
    environment = dict(os.environ, M2L_MODEL=str(model_file))
    result = subprocess.run(command, shell=True, cwd=workdir, env=environment, timeout=300)
    assert result.returncode == 0
    piped = soundfile.info(workdir / "piped.wav")
    assert (piped.samplerate, piped.frames) == (48000, 48000)


def test_stdout_carries_only_the_container(workdir: Path, model_file: Path) -> None:
    to_stdout = m2l("encode", "voice.flac", "-o", "-", cwd=workdir, model=model_file)
    assert m2l("encode", "voice.flac", cwd=workdir, model=model_file).returncode == 0
    assert to_stdout.stdout == (workdir / "voice.flac.m2l").read_bytes()


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("empty.wav", ["empty.wav", "empty"]),
        ("notes.wav", ["notes.wav", "not a readable audio"]),
        ("missing.wav", ["missing.wav", "no such file"]),
    ],
)
def test_bad_audio_gives_one_line_and_no_output(
    workdir: Path, model_file: Path, name: str, words: list[str]
) -> None:
    before = files_in(workdir)
    result = m2l("encode", name, "-o", "out.m2l", cwd=workdir, model=model_file)
    assert_one_line_error(result, *words)
    assert files_in(workdir) == before


def test_truncated_container_gives_one_line_and_no_output(workdir: Path, model_file: Path) -> None:
    m2l("encode", "song.wav", cwd=workdir, model=model_file)
    data = (workdir / "song.wav.m2l").read_bytes()
    (workdir / "cut.m2l").write_bytes(data[: len(data) // 2])
    before = files_in(workdir)
    result = m2l("decode", "cut.m2l", "-o", "cut.wav", cwd=workdir, model=model_file)
    assert_one_line_error(result, "cut.m2l", "truncated")
    assert files_in(workdir) == before


def test_latents_from_another_model_are_refused(workdir: Path, model_file: Path) -> None:
    m2l("encode", "song.wav", cwd=workdir, model=model_file)
    other = workdir / "other.safetensors"
    Codec.create("tiny", seed=1).save(other)
    result = m2l("decode", "song.wav.m2l", "-o", "x.wav", cwd=workdir, model=other)
    assert_one_line_error(result, "song.wav.m2l", "model")
    assert not (workdir / "x.wav").exists()


def test_existing_outputs_need_force(workdir: Path, model_file: Path) -> None:
    (workdir / "song.wav.m2l").write_bytes(b"keep me")
    refused = m2l("encode", "song.wav", cwd=workdir, model=model_file)
    assert_one_line_error(refused, "already exists", "--force")
    assert (workdir / "song.wav.m2l").read_bytes() == b"keep me"
    forced = m2l("encode", "song.wav", "--force", cwd=workdir, model=model_file)
    assert forced.returncode == 0
    assert (workdir / "song.wav.m2l").read_bytes()[:3] == b"M2L"


def test_a_missing_model_file_gives_one_line(workdir: Path) -> None:
    result = m2l("encode", "song.wav", cwd=workdir, model=workdir / "nowhere.safetensors")
    assert_one_line_error(result, "nowhere.safetensors")
    assert not (workdir / "song.wav.m2l").exists()


def test_the_bundled_model_codes_the_example_better_than_the_naive_codec(tmp_path: Path) -> None:
    example = Path(m2l_cli.__file__).parent / "examples" / "example.flac"
    assert m2l("encode", str(example), "-o", "ex.m2l", cwd=tmp_path, model=None).returncode == 0
    decoded = m2l("decode", "ex.m2l", "-o", "ex.wav", cwd=tmp_path, model=None)
    assert decoded.returncode == 0, decoded.stderr
    original, rate = soundfile.read(example, dtype="float32", always_2d=True)
    back, _ = soundfile.read(tmp_path / "ex.wav", dtype="float32", always_2d=True)
    assert back.shape == original.shape
    naive = naive_codec(original.T, rate)
    assert log_mel_distance(original.T, back.T, rate) < log_mel_distance(original.T, naive, rate)


def test_usage_errors_exit_2(workdir: Path, model_file: Path) -> None:
    assert m2l("encode", cwd=workdir, model=model_file).returncode == 2
    assert m2l("batch", ".", "--format", "mp3", cwd=workdir, model=model_file).returncode == 2
    assert (
        m2l("decode", "x.m2l", "--sigma-cond", "-1", cwd=workdir, model=model_file).returncode == 2
    )
    both = ("--validation", ".", "--no-validation")
    assert m2l("train", ".", *both, cwd=workdir, model=model_file).returncode == 2
    assert not (workdir / "runs").exists()


def test_batch_mirrors_the_tree_and_goes_on_after_a_bad_file(
    workdir: Path, model_file: Path
) -> None:
    nested = workdir / "album" / "disc1"
    nested.mkdir(parents=True)
    (workdir / "song.wav").rename(nested / "song.wav")
    result = m2l("batch", ".", "--output-dir", "latents", cwd=workdir, model=model_file)
    assert result.returncode == 1  # notes.wav and empty.wav fail
    assert (workdir / "latents/album/disc1/song.wav.m2l").exists()
    assert (workdir / "latents/voice.flac.m2l").exists()
    assert not (workdir / "latents/notes.wav.m2l").exists()
    assert "2 ok, 2 failed" in result.stderr.decode()
    again = m2l("batch", ".", "--output-dir", "latents", cwd=workdir, model=model_file)
    assert "2 skipped" in again.stderr.decode()
    decoded = m2l("batch", "latents", "--decode", "--format", "flac", cwd=workdir, model=model_file)
    assert decoded.returncode == 0, decoded.stderr
    assert soundfile.info(workdir / "latents/album/disc1/song.wav.m2l.flac").channels == 2
    assert soundfile.info(workdir / "latents/voice.flac.m2l.flac").samplerate == 48000


def test_eval_compares_two_folders_to_stdout_as_tables_or_json(workdir: Path) -> None:
    (workdir / "ref").mkdir()
    (workdir / "test").mkdir()
    audio, rate = soundfile.read(workdir / "song.wav")
    soundfile.write(workdir / "ref" / "song.flac", audio, rate)
    soundfile.write(workdir / "test" / "song.wav", audio * 0.5, rate)
    result = m2l("eval", "ref", "test", "--no-visqol", "--json", cwd=workdir, model=None)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    (row,) = report["systems"]["test"]["files"]
    assert row["si_sdr"] > 60  # a scaled copy is perfect for a scale-invariant measure
    assert row["log_mel"] > 0.05  # but not for a level-sensitive one
    assert row["loudness_difference_lu"] == pytest.approx(-6.02, abs=0.01)  # half the level
    assert row["band_error_db_250_1000hz"] == pytest.approx(-6.02, abs=0.01)
    tables = m2l("eval", "ref", "test", "--no-visqol", "-o", "r.txt", cwd=workdir, model=None)
    assert tables.returncode == 0 and tables.stdout == b""
    text = (workdir / "r.txt").read_text()
    assert "band levels" in text and "SI-SDR" in text  # both tables, not on stderr
    again = m2l("eval", "ref", "test", "--no-visqol", "-o", "r.txt", cwd=workdir, model=None)
    assert_one_line_error(again, "r.txt", "already exists")


def test_ctrl_c_exits_130_and_leaves_no_partial_file(workdir: Path, model_file: Path) -> None:
    noise = np.random.default_rng(0).uniform(-0.3, 0.3, (44100 * 120, 2))
    soundfile.write(workdir / "long.wav", noise, 44100)
    assert m2l("encode", "long.wav", cwd=workdir, model=model_file).returncode == 0
    command = ["decode", "long.wav.m2l", "-o", "long.flac", "--threads", "1"]
    process = start(*command, cwd=workdir, model=model_file)
    deadline = time.monotonic() + 60
    while not list(workdir.glob(".m2l-*.part")) and time.monotonic() < deadline:
        time.sleep(0.005)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr.decode()
    assert "Traceback" not in stderr.decode()
    assert not (workdir / "long.flac").exists()
    assert not list(workdir.glob(".m2l-*"))
