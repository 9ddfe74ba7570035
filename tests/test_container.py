"""The .m2l container: round trips, exact sizes, one clear message per defect."""

import io
import json
import re
import struct
import zlib

import numpy as np
import pytest
import script_modules

from m2l_cli.container import Latents, container_size, read_header
from m2l_cli.errors import ContainerError, ModelError

MODEL_ID = "1a2b3c4d5e6f"


def make_latents(channels: int = 2, seconds: float = 1.0, **overrides) -> Latents:
    """Latents shaped like a real encoding of `seconds` of audio at 44.1 kHz."""
    num_samples = round(seconds * 44100)
    chunks = -(-num_samples // 32768)
    rng = np.random.default_rng(0)
    fields = {
        "values": rng.standard_normal((channels, chunks, 8, 64)).astype(np.float16),
        "model_id": MODEL_ID,
        "model_name": "small-v1",
        "sample_rate": 44100,
        "original_sample_rate": 44100,
        "num_samples": num_samples,
        "model_num_samples": num_samples,
        "chunk_samples": 32768,
        "metadata": {"title": "Sérénade", "artist": "Ω"},
    }
    fields.update(overrides)
    return Latents(**fields)


FUZZ = script_modules.load("fuzz")


def split(data: bytes) -> tuple[bytes, dict, bytes]:
    """Cut a version 2 container into (preamble, header dict, payload + trailer)."""
    (header_len,) = struct.unpack("<I", data[6:10])
    return data[:10], json.loads(data[10 : 10 + header_len]), data[14 + header_len :]


def with_raw_header(data: bytes, raw: bytes, version: bytes = b"\x02\x00") -> bytes:
    """Replace the header bytes of a container (and the header checksum, as a writer
    of that version would), keeping the payload."""
    return FUZZ.rebuild(data[:4] + version, raw, FUZZ.parts(data)[2])


def with_header(data: bytes, header: dict) -> bytes:
    """Replace the JSON header of a container, keeping payload and checksum."""
    return with_raw_header(data, json.dumps(header).encode())


def load_error(data: bytes, name: str = "song.m2l") -> str:
    """The message a reader gives for these bytes."""
    with pytest.raises(ContainerError) as info:
        Latents.from_bytes(data, name)
    message = str(info.value)
    assert message.startswith(f"{name}: ") and "\n" not in message
    return message


# Round trips


def test_round_trip_keeps_values_and_every_field():
    original = make_latents()
    loaded = Latents.from_bytes(original.to_bytes())
    assert loaded.values.dtype == np.float16
    assert np.array_equal(loaded.values, original.values)  # float16 is stored exactly
    assert loaded.header() == original.header()
    assert loaded.metadata == {"title": "Sérénade", "artist": "Ω"}
    assert (loaded.channels, loaded.chunks, loaded.num_latents, loaded.latent_dim) == (
        2,
        2,
        8,
        64,
    )


def test_float32_values_are_stored_as_float16():
    original = make_latents(values=np.full((1, 2, 8, 64), 1 / 3, dtype=np.float32))
    loaded = Latents.from_bytes(original.to_bytes())
    assert loaded.values.dtype == np.float16
    assert np.all(loaded.values == np.float16(1 / 3))


def test_save_and_load_through_a_path(tmp_path):
    path = tmp_path / "song.m2l"
    original = make_latents(channels=1)
    original.save(path)
    loaded = Latents.load(path, expected_model_id=MODEL_ID)
    assert np.array_equal(loaded.values, original.values)
    assert Latents.load(str(path)).header() == original.header()


def test_save_and_load_through_a_stream():
    buffer = io.BytesIO()
    original = make_latents()
    original.save(buffer)
    buffer.seek(0)
    assert np.array_equal(Latents.load(buffer).values, original.values)


def test_duration_is_measured_at_the_original_rate():
    latents = make_latents(original_sample_rate=48000, num_samples=96000, model_num_samples=88200)
    assert latents.duration == 2.0


def test_empty_audio_has_zero_chunks():
    latents = make_latents(
        values=np.zeros((2, 0, 8, 64), np.float16), num_samples=0, model_num_samples=0
    )
    loaded = Latents.from_bytes(latents.to_bytes())
    assert loaded.values.shape == (2, 0, 8, 64) and loaded.duration == 0.0


def test_empty_audio_may_also_be_one_padded_chunk():
    latents = make_latents(
        values=np.zeros((1, 1, 8, 64), np.float16), num_samples=0, model_num_samples=0
    )
    assert Latents.from_bytes(latents.to_bytes()).chunks == 1


def test_header_is_sorted_compact_json_and_read_header_returns_it(tmp_path):
    path = tmp_path / "song.m2l"
    latents = make_latents()
    latents.save(path)
    data = path.read_bytes()
    header, offset = read_header(path)
    assert header == latents.header()
    expected = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert data[10 : offset - 4] == expected.encode("utf-8")
    assert struct.unpack("<I", data[offset - 4 : offset])[0] == zlib.crc32(data[: offset - 4])


def test_payload_is_time_major_so_early_chunks_come_first():
    latents = make_latents(channels=2)
    data = latents.to_bytes()
    rest = split(data)[2]
    chunk_bytes = 2 * 8 * 64 * 2
    first_chunk = np.frombuffer(rest[:chunk_bytes], "<f2").reshape(2, 8, 64)
    assert np.array_equal(first_chunk, latents.values[:, 0])


def test_unknown_header_keys_are_ignored():
    data = make_latents().to_bytes()
    header = split(data)[1] | {"future_feature": [1, 2, 3]}
    assert read_header(io.BytesIO(with_header(data, header)))[0]["future_feature"] == [
        1,
        2,
        3,
    ]
    assert Latents.from_bytes(with_header(data, header)).model_id == MODEL_ID


# Size


def test_file_size_follows_the_formula():
    for channels, seconds in [(1, 0.5), (2, 10.0), (6, 3.0)]:
        latents = make_latents(channels=channels, seconds=seconds)
        data = latents.to_bytes()
        (header_len,) = struct.unpack("<I", data[6:10])
        assert len(data) == container_size(channels, latents.chunks, header_len)
        payload = channels * latents.chunks * 8 * 64 * 2
        assert len(data) == 4 + 2 + 4 + header_len + 4 + payload + 4


def test_ten_seconds_of_stereo_is_14_chunks_and_28672_payload_bytes():
    latents = make_latents(channels=2, seconds=10.0)
    assert latents.chunks == 14
    data = latents.to_bytes()
    (header_len,) = struct.unpack("<I", data[6:10])
    assert len(data) - 10 - header_len - 4 - 4 == 28672


def test_worked_example_in_format_md():
    latents = make_latents(channels=2, seconds=10.0, metadata={})
    data = latents.to_bytes()
    assert data[:10].hex(" ") == "4d 32 4c 1a 02 00 30 01 00 00"  # header is 304 bytes
    assert len(data) == 10 + 304 + 4 + 28672 + 4 == 28994


# Corruption: every defect has its own message


def test_wrong_magic():
    data = b"RIFF" + make_latents().to_bytes()[4:]
    assert "not an .m2l container" in load_error(data)


def test_unknown_major_version_is_refused():
    data = bytearray(make_latents().to_bytes())
    data[4] = 3
    message = load_error(bytes(data))
    assert "unsupported format version 3.0" in message


def test_newer_minor_version_is_accepted():
    data = make_latents().to_bytes()
    raw = json.dumps(split(data)[1]).encode()
    assert Latents.from_bytes(with_raw_header(data, raw, b"\x02\x07")).model_id == MODEL_ID


def test_version_1_files_without_a_header_checksum_still_read():
    latents = make_latents()
    old = FUZZ.as_version_1(latents.to_bytes())
    assert old[4:6] == b"\x01\x00"
    loaded = Latents.from_bytes(old)
    assert np.array_equal(loaded.values, latents.values)
    assert loaded.header() == latents.header()
    assert "truncated payload" in load_error(old[:-10])


def test_every_flipped_header_bit_is_caught_by_the_header_checksum():
    data = make_latents().to_bytes()
    (header_len,) = struct.unpack("<I", data[6:10])
    for bit in range(8 * (14 + header_len)):
        flipped = bytearray(data)
        flipped[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(ContainerError):
            Latents.from_bytes(bytes(flipped), "song.m2l")


def test_file_shorter_than_the_preamble():
    message = load_error(make_latents().to_bytes()[:7])
    assert "truncated header" in message and "preamble" in message


def test_truncated_header():
    data = make_latents().to_bytes()
    message = load_error(data[:40])
    assert "truncated header" in message and "expected" in message


def test_header_that_is_not_json():
    data = with_raw_header(make_latents().to_bytes(), b"{not json")
    assert "header is not valid UTF-8 JSON" in load_error(data)


def test_header_missing_a_key():
    data = make_latents().to_bytes()
    header = split(data)[1]
    del header["latent_dim"]
    assert "header key 'latent_dim' is missing" in load_error(with_header(data, header))


def test_header_key_of_the_wrong_type():
    data = make_latents().to_bytes()
    header = split(data)[1] | {"channels": "2"}
    assert "header key 'channels' must be an integer" in load_error(with_header(data, header))


def test_header_with_inconsistent_chunk_count():
    data = make_latents().to_bytes()
    header = split(data)[1] | {"model_num_samples": 441000, "num_samples": 441000}
    assert "header says 2 chunks" in load_error(with_header(data, header))


def test_header_whose_two_lengths_disagree():
    data = make_latents().to_bytes()
    header = split(data)[1] | {"num_samples": 10**9}
    assert "which cannot be 44100 samples" in load_error(with_header(data, header))


def test_truncated_payload():
    data = make_latents().to_bytes()
    assert "truncated payload" in load_error(data[:-100])


def test_flipped_payload_byte_fails_the_checksum():
    data = bytearray(make_latents().to_bytes())
    data[-50] ^= 0x01
    assert "checksum mismatch" in load_error(bytes(data))


def test_bytes_after_the_trailer():
    message = load_error(make_latents().to_bytes() + b"\0\0\0")
    assert "unexpected data after the checksum: 3 extra bytes" in message


def test_empty_file(tmp_path):
    path = tmp_path / "empty.m2l"
    path.write_bytes(b"")
    with pytest.raises(ContainerError, match=r"empty\.m2l: empty file$"):
        Latents.load(path)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(ContainerError, match="no such file"):
        Latents.load(tmp_path / "absent.m2l")
    with pytest.raises(ContainerError, match="is a directory"):
        read_header(tmp_path)


def test_model_mismatch_names_both_models():
    data = make_latents().to_bytes()
    with pytest.raises(ModelError) as info:
        Latents.from_bytes(data, "song.m2l", expected_model_id="9f8e7d6c5b4a")
    assert str(info.value) == (
        "song.m2l: latents were made by model 1a2b3c4d5e6f (small-v1), "
        "but the loaded model is 9f8e7d6c5b4a"
    )


def test_stream_errors_use_the_stream_name():
    stream = io.BytesIO(b"")
    stream.name = "<stdin>"
    with pytest.raises(ContainerError, match=r"^<stdin>: empty file$"):
        Latents.load(stream)


def test_messages_are_all_distinct():
    good = make_latents().to_bytes()
    _, header, _ = split(good)
    flipped = bytearray(good)
    flipped[-50] ^= 0x01
    newer_major = bytearray(good)
    newer_major[4] = 9
    broken = [
        b"",
        b"RIFF" + good[4:],
        bytes(newer_major),
        good[:7],
        good[:40],
        with_raw_header(good, b"{x}"),
        good[:6] + struct.pack("<I", 3) + b"{x}" + good[-50:],
        with_header(good, {k: v for k, v in header.items() if k != "chunks"}),
        good[:-100],
        bytes(flipped),
        good + b"!",
    ]
    # Numbers aside, no two defects read the same.
    causes = {re.sub(r"\d+", "N", load_error(data)) for data in broken}
    assert len(causes) == len(broken)


def test_checksum_is_crc32_of_the_payload():
    data = make_latents().to_bytes()
    _, _, rest = split(data)
    assert struct.unpack("<I", rest[-4:])[0] == zlib.crc32(rest[:-4])
