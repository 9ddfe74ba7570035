"""`m2l decode` as a stream (stdin to stdout, audio before the input ends) and by range."""

from __future__ import annotations

import io
import select
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile
from commands import M2L, environment, m2l

from m2l_cli import Latents

SECONDS = 9


@pytest.fixture(scope="module")
def container(tmp_path_factory, model_file: Path) -> Path:
    """A 9 s mono 48 kHz container (13 chunks) of a tone, PCM_16 recorded."""
    folder = tmp_path_factory.mktemp("stream")
    audio = 0.3 * np.sin(2 * np.pi * 330 * np.arange(SECONDS * 48000) / 48000)
    soundfile.write(folder / "song.wav", audio, 48000, subtype="PCM_16")
    assert m2l("encode", "song.wav", cwd=folder, model=model_file).returncode == 0
    return folder / "song.wav.m2l"


def read_at_least(stream: io.BufferedReader, size: int, wait: float) -> bytes:
    """`size` bytes or more from the pipe, or what it gave within `wait` seconds."""
    data, deadline = b"", time.monotonic() + wait
    while len(data) < size and (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([stream], [], [], left)
        if not ready:
            break
        part = stream.read1(1 << 16)
        if not part:
            break
        data += part
    return data


def test_decoding_a_pipe_puts_out_audio_before_the_input_is_complete(container, model_file):
    whole = container.read_bytes()
    latents = Latents.load(container)
    held_back = 5 * latents.channels * 8 * 64 * 2  # the last 5 chunks' payload, and the end
    process = subprocess.Popen(
        [M2L, "decode", "-", "-o", "-", "-q"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=environment(model_file),
        cwd=container.parent,
    )
    assert process.stdin is not None and process.stdout is not None
    try:
        process.stdin.write(whole[:-held_back])
        process.stdin.flush()
        early = read_at_least(process.stdout, 48000 * 2, wait=120)  # 1 s of audio
        assert early[:4] == b"RIFF" and len(early) >= 48000 * 2
        assert process.poll() is None  # still waiting for the rest
        process.stdin.write(whole[-held_back:])
        process.stdin.close()
        rest = process.stdout.read()
    finally:
        process.kill() if process.poll() is None else None
    assert process.wait(timeout=60) == 0, process.stderr.read() if process.stderr else ""
    streamed, rate = soundfile.read(io.BytesIO(early + rest), dtype="int16")
    assert (rate, streamed.shape) == (48000, (SECONDS * 48000,))
    decoded = m2l(
        "decode", container.name, "-o", "file.wav", cwd=container.parent, model=model_file
    )
    assert decoded.returncode == 0
    from_file, _ = soundfile.read(container.parent / "file.wav", dtype="int16")
    assert np.array_equal(streamed, from_file)


def test_a_corrupt_stream_fails_with_one_line_after_the_audio_it_made(container, model_file):
    damaged = bytearray(container.read_bytes())
    damaged[-10] ^= 0xFF  # in the payload: found by the checksum at the end
    result = m2l(
        "decode", "-", "-o", "-", "-q", cwd=container.parent, model=model_file, stdin=bytes(damaged)
    )
    assert result.returncode == 1
    assert result.stderr.decode().count("\n") == 1 and "checksum" in result.stderr.decode()


def test_a_range_from_the_command_is_exactly_that_long_and_that_part(container, model_file):
    folder = container.parent
    args = ["decode", container.name, "--start", "0.25", "--duration", "2.5", "-o", "range.wav"]
    assert m2l(*args, cwd=folder, model=model_file).returncode == 0
    assert (
        m2l("decode", container.name, "-o", "full.wav", cwd=folder, model=model_file).returncode
        == 0
    )
    excerpt, rate = soundfile.read(folder / "range.wav", dtype="int16")
    full, _ = soundfile.read(folder / "full.wav", dtype="int16")
    assert excerpt.shape == (round(2.5 * rate),)
    start = round(0.25 * rate)
    # Its warm-up reaches the file's start: the same noise, so the same samples (to
    # float rounding where the excerpt ends).
    assert np.abs(excerpt.astype(int) - full[start : start + excerpt.shape[0]]).max() <= 3


def test_a_range_outside_the_audio_is_one_line_and_no_file(container, model_file):
    folder = container.parent
    result = m2l(
        "decode", container.name, "--start", "10", "-o", "out.wav", cwd=folder, model=model_file
    )
    assert result.returncode == 1
    assert "outside the audio" in result.stderr.decode()
    assert not (folder / "out.wav").exists()
