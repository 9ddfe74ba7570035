"""Nothing lost, nothing trusted: the real `m2l` command against hostile and careless
input. Every failure is one escaped line on stderr with the right exit code, memory
stays bounded, and no file is lost or overwritten."""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import script_modules
import soundfile
import typer
from commands import M2L, assert_one_line_error, environment, files_in, m2l, start

from m2l_cli import Codec, Latents
from m2l_cli.cli import app

FUZZ = script_modules.load("fuzz")
NO_MODEL_MIB = 150  # data a command may allocate when it needs no model (it needs ~60)
MODEL_MIB = 1024  # when it loads the tiny model (it needs ~400)


@pytest.fixture(scope="module")
def container(model_file: Path) -> bytes:
    """A real container of the tiny model: 1.5 s of stereo noise."""
    codec = Codec.load(model_file, device="cpu", precision="fp32")
    noise = np.random.default_rng(0).uniform(-0.3, 0.3, (2, 66150))
    return codec.encode(noise, 44100).to_bytes()


@pytest.fixture
def workdir(tmp_path: Path, container: bytes) -> Path:
    """song.wav (24-bit stereo, 1 s) and song.wav.m2l."""
    noise = np.random.default_rng(1).uniform(-0.3, 0.3, (44100, 2))
    soundfile.write(tmp_path / "song.wav", noise, 44100, subtype="PCM_24")
    (tmp_path / "song.wav.m2l").write_bytes(container)
    return tmp_path


def forged(data: bytes, **changes: object) -> bytes:
    """The container with header fields changed and its checksums made right again,
    as an attacker would."""
    head, raw, payload = FUZZ.parts(data)
    header = json.loads(raw) | changes
    return FUZZ.rebuild(head, json.dumps(header).encode(), payload)


def weights_with_config(model_file: Path, **changes: object) -> bytes:
    """The model file with its config's values changed (tensors untouched)."""
    data = model_file.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + length])
    config = json.loads(header["__metadata__"]["config"]) | changes
    header["__metadata__"]["config"] = json.dumps(config)
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data[8 + length :]


# Data loss.
def test_a_folder_run_keeps_every_source_and_never_feeds_on_its_own_outputs(
    workdir: Path, model_file: Path
) -> None:
    audio, rate = soundfile.read(workdir / "song.wav")
    album = workdir / "album"
    album.mkdir()
    soundfile.write(album / "song.wav", audio, rate)
    soundfile.write(album / "song.flac", audio[:, 0] * 0.5, rate)
    encoded = m2l("batch", "album", cwd=workdir, model=model_file)
    assert encoded.returncode == 0, encoded.stderr
    assert "2 ok, 0 failed" in encoded.stderr.decode()
    first = {name: (album / name).read_bytes() for name in ("song.wav.m2l", "song.flac.m2l")}
    assert Latents.from_bytes(first["song.flac.m2l"]).channels == 1  # not song.wav's
    decoded = m2l("batch", "album", "--decode", cwd=workdir, model=model_file)
    assert decoded.returncode == 0, decoded.stderr
    assert {"song.wav.m2l.wav", "song.flac.m2l.wav"} <= files_in(album)
    again = m2l("batch", "album", cwd=workdir, model=None)  # nothing to code: no model needed
    assert again.returncode == 0, again.stderr
    report = again.stderr.decode()
    assert report.count("decoded by m2l") == 2 and "0 ok, 0 failed, 4 skipped" in report
    assert {name: (album / name).read_bytes() for name in first} == first


def test_an_output_that_is_an_input_is_refused_even_with_force(workdir: Path) -> None:
    os.link(workdir / "song.wav", workdir / "alias.wav")
    before = (workdir / "song.wav").read_bytes()
    for arguments, word in [
        (("encode", "song.wav", "-o", "song.wav", "-f"), "song.wav"),
        (("encode", "song.wav", "-o", "alias.wav", "-f"), "alias.wav"),
        (("decode", "song.wav.m2l", "-o", "song.wav.m2l", "-f"), "song.wav.m2l"),
    ]:
        result = m2l(*arguments, cwd=workdir, model=None)
        assert_one_line_error(result, word, "is the input")
    assert (workdir / "song.wav").read_bytes() == before


# Unbounded resources and trusted numbers.
@pytest.mark.parametrize(
    ("arguments", "stdin", "words"),
    [
        (("info", "/dev/zero"), None, ["/dev/zero", "not an .m2l container"]),
        (("decode", "-", "-o", "x.wav"), "/dev/urandom", ["<stdin>", "not an .m2l container"]),
        (("encode", "-", "-o", "x.m2l"), "/dev/zero", ["<stdin>", "not a readable audio"]),
        (("encode", "song.wav", "-o", "x.m2l", "-m", "/dev/zero"), None, ["/dev/zero", "regular"]),
        (("encode", "song.wav", "-o", "x.m2l", "-m", "fifo"), None, ["fifo", "not a regular file"]),
    ],
)
def test_endless_inputs_fail_fast_in_bounded_memory(
    workdir: Path, model_file: Path, arguments: tuple[str, ...], stdin: str | None, words: list
) -> None:
    os.mkfifo(workdir / "fifo")
    with open(stdin or os.devnull, "rb") as feed:
        result = m2l(
            *arguments, cwd=workdir, model=model_file, stdin=feed, timeout=60, memory_mib=MODEL_MIB
        )
    assert_one_line_error(result, *words)
    assert not {"x.wav", "x.m2l"} & files_in(workdir)


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"original_sample_rate": 10**9}, ["original_sample_rate", "768000"]),
        ({"original_sample_rate": 2**31 - 1}, ["original_sample_rate"]),
        ({"num_samples": 10**8}, ["100000000 samples", "cannot be"]),
        ({"num_samples": 10**400}, ["num_samples", "..."]),
        ({"chunks": 10**20}, ["chunks"]),
        ({"num_latents": 10**6}, ["num_latents"]),
        ({"metadata": {str(key): "" for key in range(200_000)}}, ["header length"]),
        ({"metadata": {str(key): "" for key in range(1001)}}, ["1001 entries"]),
        ({"model_name": [[[[[]]]]]}, ["model_name", "must be a string"]),
    ],
)
def test_header_numbers_are_checked_before_anything_is_allocated(
    workdir: Path, container: bytes, changes: dict, words: list
) -> None:
    (workdir / "evil.m2l").write_bytes(forged(container, **changes))
    started = time.monotonic()
    result = m2l("info", "evil.m2l", cwd=workdir, model=None, timeout=60, memory_mib=NO_MODEL_MIB)
    assert_one_line_error(result, "evil.m2l", *words)
    assert time.monotonic() - started < 30  # not the 44-94 s of an unbounded header


@pytest.mark.parametrize("text", ["[" * 100_000, "9" * 5000, "1e999", "NaN"])
def test_hostile_json_in_a_header_is_one_line(workdir: Path, container: bytes, text: str) -> None:
    head, _, payload = FUZZ.parts(container)
    raw = b'{"channels":' + text.encode() + b"}"
    (workdir / "evil.m2l").write_bytes(FUZZ.rebuild(head, raw, payload))
    assert_one_line_error(m2l("info", "evil.m2l", cwd=workdir, model=None), "evil.m2l", "header")


def test_a_flipped_header_bit_is_caught_by_the_header_checksum(workdir, container) -> None:
    flipped = bytearray(container)
    flipped[40] ^= 0x04  # inside the JSON header
    (workdir / "flip.m2l").write_bytes(bytes(flipped))
    result = m2l("info", "flip.m2l", cwd=workdir, model=None)
    assert_one_line_error(result, "flip.m2l", "header checksum mismatch")


def test_latents_of_the_wrong_shape_fail_alone_in_a_batch(
    workdir: Path, container: bytes, model_file: Path
) -> None:
    folder = workdir / "latents"
    folder.mkdir()
    (folder / "good.m2l").write_bytes(container)
    header = json.loads(FUZZ.parts(container)[1])
    wide = forged(container, latent_dim=128)
    payload = bytes(2 * header["channels"] * header["chunks"] * 8 * 128)
    (folder / "wide.m2l").write_bytes(FUZZ.rebuild(wide[:6], FUZZ.parts(wide)[1], payload))
    (folder / "rate.m2l").write_bytes(
        forged(container, sample_rate=48000, original_sample_rate=48000)
    )
    result = m2l("batch", "latents", "--decode", "-q", cwd=workdir, model=model_file)
    stderr = result.stderr.decode()
    assert result.returncode == 1 and "Traceback" not in stderr
    assert "wide.m2l: header says latent_dim 128, but the model has 64" in stderr
    assert "rate.m2l: header says sample_rate 48000, but the model has 44100" in stderr
    assert "1 ok, 2 failed" in stderr
    assert soundfile.info(str(folder / "good.m2l.wav")).channels == 2
    assert not {"wide.m2l.wav", "rate.m2l.wav"} & files_in(folder)


@pytest.mark.parametrize(
    "changes",
    [
        {"group_norm_groups": 0},
        {"dim": 192.5},
        {"num_latents": -8},
        {"channels": [100000] * 4},
        {"consistency_depth": 10**6},
        {"heads": 0},
    ],
    ids=lambda changes: next(iter(changes)),
)
def test_hostile_weights_configs_are_refused_before_a_network_is_built(
    model_file: Path, tmp_path: Path, changes: dict
) -> None:
    path = tmp_path / "evil.safetensors"
    path.write_bytes(weights_with_config(model_file, **changes))
    with pytest.raises(Exception) as raised:
        Codec.load(path, device="cpu")
    assert type(raised.value).__name__ == "ModelError", raised.value
    assert str(raised.value).startswith(f"{path}: bad model config")


def test_a_hostile_weights_file_is_one_line_from_the_command(workdir, model_file) -> None:
    (workdir / "evil.safetensors").write_bytes(
        weights_with_config(model_file, channels=[100000] * 4)
    )
    arguments = ("encode", "song.wav", "-o", "x.m2l", "-m", "evil.safetensors")
    result = m2l(*arguments, cwd=workdir, model=None, memory_mib=MODEL_MIB)
    assert_one_line_error(result, "evil.safetensors", "channels must be in 1..1024")
    assert not (workdir / "x.m2l").exists()


def test_a_weights_config_bigger_than_its_tensors_is_refused_before_allocating(
    model_file: Path, tmp_path: Path
) -> None:
    path = tmp_path / "big.safetensors"
    path.write_bytes(weights_with_config(model_file, channels=[1024, 1024], dim=2048))
    with pytest.raises(Exception, match="bigger model than its tensors hold"):
        Codec.load(path, device="cpu")


def test_nan_samples_are_refused(workdir: Path, model_file: Path) -> None:
    audio = np.zeros((44100, 1), np.float32)
    audio[22050:22060] = np.nan
    soundfile.write(workdir / "nan.wav", audio, 44100, subtype="FLOAT")
    result = m2l("encode", "nan.wav", cwd=workdir, model=model_file)
    assert_one_line_error(result, "nan.wav", "NaN or infinite samples", "0.500 s")
    assert not (workdir / "nan.wav.m2l").exists()


# Tracebacks and leaks instead of one line.
def test_markup_and_control_characters_in_strings_are_shown_escaped(
    workdir: Path, container: bytes, model_file: Path
) -> None:
    changes = {
        "model_name": "[/][live]\x1b[2J",
        "model_id": "x\nm2l: error: forged",
        "metadata": {"title": "[/bold]", "esc\x1b[31m": "line\nbreak", "bad": "\udcff"},
    }
    (workdir / "odd.m2l").write_bytes(forged(container, **changes))
    result = m2l("info", "odd.m2l", cwd=workdir, model=None)
    assert result.returncode == 0, result.stderr
    text = result.stdout.decode()
    assert "[/][live]\\x1b[2J (x\\x0am2l: error: forged)" in text
    assert "[/bold]" in text and "esc\\x1b[31m" in text and "line\\x0abreak" in text
    assert "\\xff" in text and "\x1b" not in text
    assert len(text.splitlines()) == 11  # one line per row: no line break came through
    refused = m2l("decode", "odd.m2l", "-o", "x.wav", cwd=workdir, model=model_file)
    line = assert_one_line_error(refused, "odd.m2l", "x\\x0am2l: error: forged")
    assert "\x1b" not in line


def test_file_names_with_markup_and_escapes_reach_the_batch_table_as_they_are(
    workdir: Path, model_file: Path
) -> None:
    folder = workdir / "odd"
    (folder / "x[").mkdir(parents=True)
    names = ["song [live].wav", "x[/]y.wav", "esc\x1b[31m\nname.wav"]
    for name in names:
        soundfile.write(folder / name, np.zeros(4410), 44100)
    (folder / "broken [bold].wav").write_text("not audio")
    result = m2l("batch", "odd", cwd=workdir, model=model_file)
    stderr = result.stderr.decode()
    assert result.returncode == 1 and "Traceback" not in stderr and "\x1b" not in stderr
    assert "song [live].wav" in stderr and "x[/]y.wav" in stderr
    assert "esc\\x1b[31m\\x0aname.wav" in stderr
    assert "3 ok, 1 failed" in stderr


def test_closed_and_full_standard_streams_are_one_line(workdir: Path, model_file: Path) -> None:
    before = set(Path(tempfile.gettempdir()).glob(".m2l-*"))
    cases = [
        (f"{M2L} --version >&-", "stdout is closed"),
        (f"{M2L} --version >/dev/full", "cannot write to stdout (No space left on device)"),
        (f"{M2L} --help >/dev/full", "cannot write to stdout (No space left on device)"),
        (f"{M2L} info song.wav.m2l >/dev/full", "No space left on device"),
        (f"{M2L} info - <&-", "stdin is closed"),
        (f"{M2L} decode - -o x.wav <&-", "stdin is closed"),
        (f"{M2L} decode song.wav.m2l -o - -q >/dev/full", "No space left on device"),
    ]
    for command, words in cases:
        result = subprocess.run(
            command, shell=True, cwd=workdir, env=environment(model_file), capture_output=True
        )
        assert_one_line_error(result, words)
    assert not (workdir / "x.wav").exists()
    assert set(Path(tempfile.gettempdir()).glob(".m2l-*")) <= before  # nothing left there


@pytest.mark.parametrize(
    ("number", "code", "word"),
    [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")],
)
def test_a_signal_during_start_up_is_one_line(workdir, model_file, number, code, word) -> None:
    noise = np.random.default_rng(2).uniform(-0.3, 0.3, (44100 * 60, 2))
    soundfile.write(workdir / "long.wav", noise, 44100)  # too long to finish before the signal
    process = start("encode", "long.wav", cwd=workdir, model=model_file)
    time.sleep(0.3)  # importing torch
    process.send_signal(number)
    _, stderr = process.communicate(timeout=60)
    assert (process.returncode, stderr.decode()) == (code, f"m2l: {word}\n")
    assert files_in(workdir) == {"song.wav", "song.wav.m2l", "long.wav"}


def test_an_output_folder_that_cannot_be_made_is_one_line(workdir: Path) -> None:
    (workdir / "a_file").write_bytes(b"")
    result = m2l("batch", ".", "--output-dir", "a_file/out", cwd=workdir, model=None)
    assert_one_line_error(result, "a_file/out", "cannot create folder")


def test_a_batch_names_every_entry_it_does_not_code(workdir: Path) -> None:
    folder = workdir / "mixed"
    folder.mkdir()
    (folder / "folder.wav").mkdir()
    (folder / "loop.wav").symlink_to(folder / "loop.wav")
    (folder / "dangling.flac").symlink_to(folder / "nowhere.flac")
    (folder / "talk.m4a").write_bytes(b"")
    (folder / "cover.jpg").write_bytes(b"")
    result = m2l("batch", "mixed", cwd=workdir, model=None)
    report = result.stderr.decode()
    assert result.returncode == 0, report
    for name, reason in [
        ("folder.wav", "a folder, not a file"),
        ("loop.wav", "a symbolic link loop"),
        ("dangling.flac", "a broken symbolic link"),
        ("talk.m4a", ".m4a is not a format m2l reads"),
    ]:
        assert any(name in line and reason in line for line in report.splitlines()), report
    assert "0 ok, 0 failed, 4 skipped, 1 other files left alone (.jpg 1)" in report


# Command-line conventions.
def test_usage_errors_are_one_line_with_exit_2(workdir: Path) -> None:
    for arguments, words in [
        (("encode",), ["Missing argument 'IN", "m2l encode --help"]),
        (("encode", "song.wav", "--bogus"), ["No such option: --bogus"]),
        (("encode", "song.wav", "-o", "x.m2l", "--device", "quantum"), ["--device", "unknown"]),
        (("decode", "song.wav.m2l", "--device", "cuda:7"), ["--device", "not available"]),
        (("encode", "song.wav", "-o", "x.m2l", "--precision", "fp8"), ["--precision", "fp8"]),
        (("decode", "song.wav.m2l", "--format", "mp3"), ["--format", "wav or flac"]),
        (("encode", "song.wav", "--meta", "novalue"), ["--meta", "key=value"]),
        (("decode", "x", "--sigma-cond", "-1"), ["--sigma-cond"]),
    ]:
        result = m2l(*arguments, cwd=workdir, model=None)
        assert_one_line_error(result, *words, code=2)
        assert len(result.stderr.decode().splitlines()) == 1


def test_help_is_plain_complete_and_short_or_long(workdir: Path) -> None:
    short, long = m2l("-h", cwd=workdir, model=None), m2l("--help", cwd=workdir, model=None)
    assert short.returncode == 0 and short.stdout == long.stdout
    assert b"--install-completion" in long.stdout  # shell completion
    evaluation = m2l("eval", "-h", cwd=workdir, model=None).stdout.decode()
    assert "m2l_cli[eval]" in evaluation  # brackets are text, not markup
    for command in typer.main.get_command(app).commands.values():  # type: ignore[attr-defined]
        for parameter in command.params:
            assert getattr(parameter, "help", None), f"{command.name} {parameter.name}"
        text = m2l(command.name, "--help", cwd=workdir, model=None).stdout.decode()
        assert "<bool>" not in text and "<int range>" not in text and "╭" not in text


def test_info_shows_several_files_and_goes_on_after_a_bad_one(workdir: Path) -> None:
    (workdir / "copy.m2l").write_bytes((workdir / "song.wav.m2l").read_bytes())
    result = m2l("info", "song.wav.m2l", "missing.m2l", "copy.m2l", cwd=workdir, model=None)
    assert_one_line_error(result, "missing.m2l", "no such file")
    text = result.stdout.decode()
    assert "file          song.wav.m2l" in text and "file          copy.m2l" in text
    listed = m2l("info", "song.wav.m2l", "copy.m2l", "--json", cwd=workdir, model=None)
    assert [entry["file"] for entry in json.loads(listed.stdout)] == ["song.wav.m2l", "copy.m2l"]


def test_decoding_restores_the_source_sample_format(workdir: Path, model_file: Path) -> None:
    encoded = m2l("encode", "song.wav", "-o", "s24.m2l", cwd=workdir, model=model_file)
    assert encoded.returncode == 0, encoded.stderr
    assert (
        json.loads(m2l("info", "s24.m2l", "--json", cwd=workdir, model=None).stdout)[
            "sample_format"
        ]
        == "PCM_24"
    )
    decoded = m2l("decode", "s24.m2l", cwd=workdir, model=model_file)
    assert decoded.returncode == 0, decoded.stderr
    assert soundfile.info(str(workdir / "s24.m2l.wav")).subtype == "PCM_24"
