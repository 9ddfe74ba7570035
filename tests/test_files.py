"""File-to-file jobs through the Python API: batch plans, atomic outputs, progress
totals, and input files closed after encoding."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile

from m2l_cli import Codec, atomic, files
from m2l_cli.atomic import AtomicOutput
from m2l_cli.audio import AudioSource
from m2l_cli.batch import plan_batch
from m2l_cli.encoding import EncodeJob
from m2l_cli.errors import AudioError, M2LError
from m2l_cli.files import (
    decode_files,
    decode_progress_total,
    encode_files,
    encode_progress_total,
)

pytestmark = pytest.mark.usefixtures("single_torch_thread")


@pytest.fixture(scope="module")
def codec() -> Codec:
    return Codec.create("tiny", precision="fp32", device="cpu")


def touch(root: Path, *names: str) -> None:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x")


def tone(path: Path, seconds: float, rate: int, channels: int) -> Path:
    t = np.arange(round(seconds * rate)) / rate
    soundfile.write(path, np.tile(0.3 * np.sin(2 * np.pi * 440 * t), (channels, 1)).T, rate)
    return path


# Batch plans.
def test_a_batch_plan_mirrors_the_tree_and_skips_existing_outputs(tmp_path):
    touch(tmp_path / "in", "a.wav", "sub/b.flac", "sub/.m2l-tmp.wav", "notes.txt")
    touch(tmp_path / "out", "a.wav.m2l")
    plan = plan_batch(tmp_path / "in", output_dir=tmp_path / "out")
    assert plan.pairs == [(str(tmp_path / "in/sub/b.flac"), str(tmp_path / "out/sub/b.flac.m2l"))]
    assert plan.skipped == [(str(tmp_path / "in/a.wav"), "output exists (use --force)")]
    assert plan.others == {".txt": 1}
    assert (tmp_path / "out/sub").is_dir()
    forced = plan_batch(tmp_path / "in", output_dir=tmp_path / "out", force=True)
    assert [source for source, _ in forced.pairs] == [str(tmp_path / "in/a.wav"), plan.pairs[0][0]]


def test_a_decode_plan_writes_beside_in_the_chosen_format(tmp_path):
    touch(tmp_path, "a.m2l", "b.wav")
    plan = plan_batch(tmp_path, decode=True, format_name="FLAC")
    assert plan.pairs == [(str(tmp_path / "a.m2l"), str(tmp_path / "a.m2l.flac"))]
    with pytest.raises(AudioError, match="unknown output format 'mp3'"):
        plan_batch(tmp_path, decode=True, format_name="mp3")
    with pytest.raises(M2LError, match="not a folder"):
        plan_batch(tmp_path / "a.m2l")


def test_sources_with_one_name_in_two_formats_get_two_outputs(tmp_path):
    touch(tmp_path, "song.wav", "song.flac")
    plan = plan_batch(tmp_path)
    assert sorted(target for _, target in plan.pairs) == [
        str(tmp_path / "song.flac.m2l"),
        str(tmp_path / "song.wav.m2l"),
    ]


def test_outputs_that_differ_only_in_case_are_refused_both(tmp_path):
    touch(tmp_path, "Song.wav", "song.wav", "other.wav")
    plan = plan_batch(tmp_path)
    assert plan.pairs == [(str(tmp_path / "other.wav"), str(tmp_path / "other.wav.m2l"))]
    assert sorted(path for path, _ in plan.failed) == [
        str(tmp_path / "Song.wav"),
        str(tmp_path / "song.wav"),
    ]
    assert all("same output" in reason for _, reason in plan.failed)


def test_a_folder_run_never_encodes_its_own_decoded_outputs(tmp_path):
    touch(tmp_path, "x.mp3", "x.mp3.m2l", "x.mp3.m2l.wav", "y.m2l.flac")
    plan = plan_batch(tmp_path, force=True)
    assert plan.pairs == [(str(tmp_path / "x.mp3"), str(tmp_path / "x.mp3.m2l"))]
    decoded = {path: reason for path, reason in plan.skipped if "decoded by m2l" in reason}
    assert sorted(decoded) == [str(tmp_path / "x.mp3.m2l.wav"), str(tmp_path / "y.m2l.flac")]


def test_every_entry_that_is_not_coded_is_reported_with_its_reason(tmp_path):
    touch(tmp_path, "good.wav", "talk.m4a", "cover.jpg")
    (tmp_path / "folder.wav").mkdir()
    (tmp_path / "loop.wav").symlink_to(tmp_path / "loop.wav")
    (tmp_path / "dangling.flac").symlink_to(tmp_path / "nowhere.flac")
    (tmp_path / "linked").symlink_to(tmp_path / "folder.wav")
    plan = plan_batch(tmp_path)
    assert plan.pairs == [(str(tmp_path / "good.wav"), str(tmp_path / "good.wav.m2l"))]
    reasons = {Path(path).name: reason for path, reason in plan.skipped}
    assert reasons == {
        "folder.wav": "a folder, not a file",
        "loop.wav": "a symbolic link loop",
        "dangling.flac": "a broken symbolic link",
        "linked": "a link to a folder (not followed)",
        "talk.m4a": ".m4a is not a format m2l reads (convert it to FLAC or WAV)",
    }
    assert plan.others == {".jpg": 1}


def test_an_output_folder_that_cannot_be_made_is_one_error(tmp_path):
    touch(tmp_path, "a.wav")
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(M2LError, match="cannot create folder"):
        plan_batch(tmp_path, output_dir=tmp_path / "file" / "out")


# Atomic outputs.
def test_an_atomic_output_appears_only_when_complete(tmp_path):
    target = tmp_path / "out.bin"
    with AtomicOutput(target) as temporary:
        temporary.write_bytes(b"data")
        assert not target.exists()
    assert target.read_bytes() == b"data"
    with pytest.raises(RuntimeError), AtomicOutput(target) as temporary:
        temporary.write_bytes(b"half")
        raise RuntimeError
    assert target.read_bytes() == b"data"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out.bin"]


def test_orphaned_temporary_files_are_removed_and_only_those(tmp_path, monkeypatch):
    dead = 2**22 + 12345  # above any pid this machine hands out
    live = os.getppid()
    names = {
        f".m2l-{atomic.HOST}-{dead}-abcd1234.part": False,  # ours, its process gone
        f".m2l-{atomic.HOST}-{live}-abcd1234.part": True,  # a process still writing
        f".m2l-ffffff-{dead}-abcd1234.part": True,  # made on another host
        ".m2l-abcd1234.part": True,  # an earlier version's, less than a day old
        ".m2l-efgh5678.part": False,  # an earlier version's, two days old
        "song.wav.m2l": True,
    }
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    two_days_ago = time.time() - 2 * 86400
    os.utime(tmp_path / ".m2l-efgh5678.part", (two_days_ago, two_days_ago))
    (tmp_path / f".m2l-{atomic.HOST}-{dead}-link0000.part").symlink_to(tmp_path / "song.wav.m2l")
    monkeypatch.setattr(atomic, "_cleaned", set())
    with AtomicOutput(tmp_path / "new.bin") as temporary:
        temporary.write_bytes(b"new")
    left = {path.name for path in tmp_path.iterdir()}
    assert left == {name for name, kept in names.items() if kept} | {
        "new.bin",
        f".m2l-{atomic.HOST}-{dead}-link0000.part",  # a link is never ours to delete
    }


# Progress totals: what the loops report is what the API announced.
@pytest.mark.parametrize(("rate", "channels"), [(44100, 2), (48000, 1)])
def test_progress_totals_match_what_encoding_and_decoding_report(codec, tmp_path, rate, channels):
    source = tone(tmp_path / "in.wav", 2.0, rate, channels)
    reported: list[int] = []
    pairs = [(str(source), str(tmp_path / "in.m2l"))]
    assert [r.error for r in encode_files(codec, pairs, progress=reported.append)] == [None]
    assert sum(reported) == encode_progress_total(codec, str(source)) == 3 * channels
    reported.clear()
    pairs = [(str(tmp_path / "in.m2l"), str(tmp_path / "out.wav"))]
    assert [r.error for r in decode_files(codec, pairs, progress=reported.append)] == [None]
    assert sum(reported) == decode_progress_total(str(tmp_path / "in.m2l")) == 4 * channels


def test_progress_totals_are_unknown_for_stdin_and_broken_files(codec, tmp_path):
    (tmp_path / "broken").write_bytes(b"neither audio nor container")
    for path in ("-", str(tmp_path / "broken")):
        assert encode_progress_total(codec, path) is None
        assert decode_progress_total(path) is None


# Input files are closed.
def test_encoding_closes_every_input_file_even_when_it_fails(codec, tmp_path):
    good = tone(tmp_path / "good.wav", 0.5, 44100, 1)
    silent = tmp_path / "silent.wav"
    soundfile.write(silent, np.zeros((0, 1)), 44100)
    opened: list[AudioSource] = []

    def open_source(path: Path) -> AudioSource:
        opened.append(AudioSource(path))
        return opened[-1]

    jobs = [EncodeJob(lambda p=path: open_source(p), str(path)) for path in (good, silent)]
    results = dict(codec.encode_jobs(jobs))
    assert isinstance(results[jobs[1]], AudioError)  # no samples
    assert len(opened) == 2 and all(source.file.closed for source in opened)


def test_ctrl_c_while_an_output_is_opened_leaves_no_temporary_file(codec, tmp_path, monkeypatch):
    codec.encode(np.zeros((1, 1000), np.float32), 44100).save(tmp_path / "a.m2l")

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(files, "AudioSink", interrupted)
    with pytest.raises(KeyboardInterrupt):
        list(decode_files(codec, [(str(tmp_path / "a.m2l"), str(tmp_path / "a.wav"))]))
    assert [path.name for path in tmp_path.iterdir()] == ["a.m2l"]
