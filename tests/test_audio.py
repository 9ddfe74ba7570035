"""Audio files: the suffix list, folder search, header info, excerpts, and sources that
close their files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile

from m2l_cli.audio import (
    AUDIO_SUFFIXES,
    AudioInfo,
    AudioSource,
    OutputFormat,
    audio_info,
    find_audio_files,
    output_format,
    read_excerpt,
)
from m2l_cli.errors import AudioError, M2LError

RATE = 44100


def write_noise(path: Path, frames: int, channels: int = 2, rate: int = RATE) -> np.ndarray:
    """Writes float WAV/FLAC noise [frames, channels] and returns it as written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    audio = (0.1 * np.random.default_rng(0).standard_normal((frames, channels))).astype(np.float32)
    subtype = "FLOAT" if path.suffix == ".wav" else None
    soundfile.write(path, audio, rate, subtype=subtype)
    return soundfile.read(path, dtype="float32", always_2d=True)[0]


def test_the_one_suffix_list_has_every_format_we_read():
    expected = [
        ".wav",
        ".flac",
        ".ogg",
        ".oga",
        ".opus",
        ".mp3",
        ".aiff",
        ".aif",
        ".aifc",
        ".w64",
        ".caf",
    ]
    assert set(expected) == AUDIO_SUFFIXES
    assert isinstance(AUDIO_SUFFIXES, frozenset)


def test_find_audio_files_is_recursive_sorted_and_skips_our_temporary_files(tmp_path):
    for name in ("b.flac", "a/z.WAV", "a/b/c.mp3", ".m2l-x1y2.wav", "notes.txt", "song.m2l"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "folder.wav").mkdir()  # a folder with an audio suffix is not a file
    found = find_audio_files(tmp_path)
    assert found == [tmp_path / "a/b/c.mp3", tmp_path / "a/z.WAV", tmp_path / "b.flac"]


def test_find_audio_files_refuses_what_is_not_a_folder(tmp_path):
    with pytest.raises(M2LError, match="nowhere: no such folder"):
        find_audio_files(tmp_path / "nowhere")
    (tmp_path / "file.wav").write_bytes(b"x")
    with pytest.raises(M2LError, match="file.wav: not a folder"):
        find_audio_files(tmp_path / "file.wav")


def test_audio_info_reads_the_header(tmp_path):
    write_noise(tmp_path / "a.flac", 48000, channels=1, rate=48000)
    info = audio_info(tmp_path / "a.flac")
    assert info == AudioInfo(frames=48000, sample_rate=48000, channels=1)
    assert info.duration == 1.0


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "no such file"), (b"", "empty file"), (b"text, not audio", "not a readable audio")],
)
def test_audio_info_gives_one_line_errors(tmp_path, content, message):
    path = tmp_path / "bad.wav"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(AudioError, match=f"bad.wav: {message}") as info:
        audio_info(path)
    assert "\n" not in str(info.value)


def test_read_excerpt_returns_frames_by_channels_and_stops_at_the_end(tmp_path):
    written = write_noise(tmp_path / "a.wav", 1000)
    excerpt = read_excerpt(tmp_path / "a.wav", 100, 50)
    assert excerpt.dtype == np.float32 and excerpt.shape == (50, 2)
    assert np.array_equal(excerpt, written[100:150])
    assert read_excerpt(tmp_path / "a.wav", 990, 50).shape == (10, 2)
    assert np.array_equal(read_excerpt(tmp_path / "a.wav"), written)


def test_an_audio_source_closes_its_file_as_a_context_manager(tmp_path):
    write_noise(tmp_path / "a.wav", 1000)
    with AudioSource(tmp_path / "a.wav") as source:
        assert sum(block.shape[1] for block in source.blocks(300)) == 1000
    assert source.file.closed


def test_output_format_comes_from_the_name_or_else_the_extension():
    assert output_format("x.flac") is OutputFormat.FLAC
    assert output_format("x.flac", "WAV") is OutputFormat.WAV
    assert output_format("-") is OutputFormat.WAV
    with pytest.raises(AudioError, match="unknown output format 'mp3'; choose wav or flac"):
        output_format("x.wav", "mp3")
    with pytest.raises(AudioError, match="x.mp3: cannot tell the output format"):
        output_format("x.mp3")
