"""Fuzzing of everything m2l reads from a file: .m2l containers and weights files.

    .venv/bin/python scripts/fuzz.py                      # 100,000 containers + 20,000 weights
    .venv/bin/python scripts/fuzz.py --containers 1000000 --weights 0 --seed 7

Each case is a valid file mutated at random (bit flips, bytes set, truncation, data
appended) or with knowledge of its structure (a header field set to a hostile value and
the checksums made right again, so the checks behind the checksums are reached too).
Every case must load or raise the project's own error (M2LError); any other exception
is a failure, and a case that takes longer than `--hang-seconds` is a hang. The peak
memory a container case allocates (tracemalloc) is compared with the file's size.
The test suite runs the same cases, fewer of them (tests/test_fuzz.py).
"""

from __future__ import annotations

import argparse
import io
import json
import random
import resource
import signal
import struct
import sys
import time
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import FrameType

import numpy as np

from m2l_cli.config import PRESETS
from m2l_cli.container import Latents
from m2l_cli.container_format import check_fit, verify
from m2l_cli.errors import M2LError

HOSTILE_NUMBERS: list[object] = [
    0,
    -1,
    -8,
    1,
    7,
    2**31 - 1,
    2**31,
    2**53 + 1,
    10**9,
    10**30,
    10**300,
    192.5,
    1e308,
    -0.0,
    True,
    None,
    "8",
    [],
    {},
    [100000] * 4,
]
HOSTILE_STRINGS: list[object] = [
    "",
    "[/]",
    "[bold red]x[/bold red]",
    "\x1b[2J\x1b[31m",
    "a\nm2l: error: forged",
    "\ud800",
    "\udcff",
    "x" * 10_000,
    "é" * 300,
    "PCM_24",
    "FLOAT",
    "pcm_16",
    5,
    None,
]


@dataclass
class Tally:
    """What a run found."""

    cases: int = 0
    loaded: int = 0
    refused: int = 0
    failures: list[str] = field(default_factory=list)
    hangs: int = 0
    slowest: float = 0.0
    peak_ratio: float = 0.0  # largest (peak traced memory - 1 MiB) / file size
    peak_bytes: int = 0
    largest_file: int = 0


class Hang(Exception):
    """A case ran past its time limit."""


def _alarm(number: int, frame: FrameType | None) -> None:
    raise Hang


# Containers.
def valid_container(rng: random.Random, version: int = 2) -> bytes:
    """A container like a real one (random shape, metadata and sample format)."""
    channels = rng.choice((1, 1, 2, 2, 6))
    seconds = rng.choice((0.0, 0.3, 1.0, 2.5))
    rate = rng.choice((44100, 44100, 48000, 22050, 8000))
    num_samples = round(seconds * rate)
    model_samples = round(num_samples * 44100 / rate)
    chunks = -(-model_samples // 32768)
    values = np.random.default_rng(rng.randrange(1 << 30)).standard_normal(
        (channels, chunks, 8, 64)
    )
    latents = Latents(
        values=values.astype(np.float16),
        model_id=f"{rng.randrange(16**12):012x}",
        model_name=rng.choice(("small-v1", "m2l-small-s6820", "tiny")),
        sample_rate=44100,
        original_sample_rate=rate,
        num_samples=num_samples,
        model_num_samples=model_samples,
        chunk_samples=32768,
        metadata=rng.choice(({}, {"title": "Sérénade", "artist": "Ω"}, {"k": "v" * 100})),
        sample_format=rng.choice(("", "PCM_16", "PCM_24", "FLOAT", "VORBIS")),
    )
    data = latents.to_bytes()
    return data if version == 2 else as_version_1(data)


def as_version_1(data: bytes) -> bytes:
    (length,) = struct.unpack("<I", data[6:10])
    return data[:4] + b"\x01\x00" + data[6 : 10 + length] + data[14 + length :]


def parts(data: bytes) -> tuple[bytes, bytes, bytes]:
    """(first 6 bytes, raw header, payload) of a version 2 container."""
    (length,) = struct.unpack("<I", data[6:10])
    return data[:6], data[10 : 10 + length], data[14 + length : -4]


def rebuild(head: bytes, raw: bytes, payload: bytes) -> bytes:
    """A container with right checksums around whatever header and payload."""
    front = head + struct.pack("<I", len(raw)) + raw
    crc = struct.pack("<I", zlib.crc32(front))
    return front + crc + payload + struct.pack("<I", zlib.crc32(payload))


def _hostile_value(rng: random.Random) -> object:
    roll = rng.random()
    if roll < 0.5:
        return rng.choice(HOSTILE_NUMBERS)
    if roll < 0.85:
        return rng.choice(HOSTILE_STRINGS)
    return rng.randrange(-(2**40), 2**40)


def _resized_payload(header: dict, payload: bytes, rng: random.Random) -> bytes:
    """The payload resized to what a mutated header claims, when that is small, so a
    consistent-looking file reaches the checks after the size check."""
    keys = ("channels", "chunks", "num_latents", "latent_dim")
    numbers = [header.get(key) for key in keys]
    if not all(type(number) is int and 0 <= number < 1 << 20 for number in numbers):
        return payload
    size = 2 * numbers[0] * numbers[1] * numbers[2] * numbers[3]
    if size > 1 << 20 or rng.random() < 0.2:
        return payload
    return bytes(rng.getrandbits(8) for _ in range(64)) * (size // 64) + bytes(size % 64)


def _mutate_header(data: bytes, rng: random.Random) -> bytes:
    head, raw, payload = parts(data)
    header = json.loads(raw)
    for _ in range(rng.choice((1, 1, 2, 3))):
        keys = [*header, "metadata", "extra", "sample_format"]
        key = rng.choice(keys)
        if key == "metadata" and rng.random() < 0.5:
            header["metadata"] = {
                rng.choice(HOSTILE_STRINGS) if rng.random() < 0.5 else str(i): "v"
                for i in range(rng.choice((1, 10, 999, 1001, 5000)))
            }
        else:
            header[key] = _hostile_value(rng)
    try:
        text = json.dumps(header, ensure_ascii=rng.random() < 0.5)
    except (TypeError, ValueError):
        text = json.dumps(header)
    raw = text.encode("utf-8", "surrogatepass")
    return rebuild(head, raw, _resized_payload(header, payload, rng))


def _mutate_header_text(data: bytes, rng: random.Random) -> bytes:
    """Hostile JSON text where a value should be: deep nesting, huge numbers."""
    head, raw, payload = parts(data)
    text = raw.decode("utf-8")
    hostile = rng.choice(
        (
            "[" * 100_000 + "]" * 100_000,
            "{" + '"a":{' * 5000 + "}" * 5001,
            "9" * 5000,
            "1e999",
            "NaN",
            "-Infinity",
            '"\\ud800"',
            '"\\u0000"',
            "0x10",
        )
    )
    key = rng.choice(list(json.loads(text)))
    start = text.index(f'"{key}":') + len(key) + 3
    end = start
    depth = 0
    while end < len(text) and (depth or text[end] not in ",}"):
        depth += text[end] in "[{"
        depth -= text[end] in "]}"
        end += 1
    text = text[:start] + hostile + text[end:]
    if rng.random() < 0.3:  # a key twice
        text = text[:-1] + f',"{key}":1' + "}"
    return rebuild(head, text.encode(), payload)


def _flip_bits(data: bytes, rng: random.Random) -> bytes:
    mutated = bytearray(data)
    for _ in range(rng.choice((1, 1, 1, 2, 8))):
        bit = rng.randrange(8 * len(mutated))
        mutated[bit // 8] ^= 1 << (bit % 8)
    return bytes(mutated)


def _set_bytes(data: bytes, rng: random.Random) -> bytes:
    mutated = bytearray(data)
    limit = min(len(mutated), 512) if rng.random() < 0.7 else len(mutated)
    for _ in range(rng.choice((1, 2, 4))):
        mutated[rng.randrange(limit)] = rng.choice((0, 0xFF, 0x7F, 0x80, rng.randrange(256)))
    return bytes(mutated)


def _cut_or_extend(data: bytes, rng: random.Random) -> bytes:
    if rng.random() < 0.6:
        return data[: rng.randrange(len(data))]
    return data + bytes(rng.getrandbits(8) for _ in range(rng.choice((1, 3, 100))))


def _header_length(data: bytes, rng: random.Random) -> bytes:
    value = rng.choice((0, 1, 9, 2**20, 2**20 + 1, 2**31, 2**32 - 1, rng.randrange(2**32)))
    return data[:6] + struct.pack("<I", value) + data[10:]


def _version(data: bytes, rng: random.Random) -> bytes:
    return data[:4] + bytes((rng.randrange(4), rng.randrange(256))) + data[6:]


CONTAINER_MUTATIONS: list[Callable[[bytes, random.Random], bytes]] = [
    _flip_bits,
    _flip_bits,
    _set_bytes,
    _cut_or_extend,
    _header_length,
    _version,
    _mutate_header,
    _mutate_header,
    _mutate_header,
    _mutate_header_text,
]


def container_cases(seed: int, count: int) -> Iterator[bytes]:
    """`count` mutated containers, the same for the same seed."""
    rng = random.Random(seed)
    bases = [valid_container(rng, version) for version in (1, 2, 2, 2) for _ in range(4)]
    for _ in range(count):
        base = rng.choice(bases)
        mutation = rng.choice(CONTAINER_MUTATIONS)
        if base[4] == 1 and mutation in (_mutate_header, _mutate_header_text):
            mutation = _flip_bits  # the structured mutations write version 2
        yield mutation(base, rng)


def check_container(data: bytes) -> bool:
    """Reads a container the three ways m2l does; True if it loads, False if refused
    with M2LError; anything else is raised."""
    config = PRESETS["small"]
    try:
        verify(io.BytesIO(data))
        latents = Latents.from_bytes(data, "<fuzz>")
        check_fit("<fuzz>", latents.header(), config)
        f"{latents.duration:.3f}"  # what `info` shows
    except M2LError:
        return False
    return True


# Weights.
def weights_cases(base: bytes, seed: int, count: int) -> Iterator[bytes]:
    """`count` mutated copies of the weights file `base`."""
    rng = random.Random(seed)
    for _ in range(count):
        roll = rng.random()
        if roll < 0.45:
            yield _mutate_weights_header(base, rng)
        elif roll < 0.75:
            (length,) = struct.unpack("<Q", base[:8])
            limit = 8 + length if rng.random() < 0.8 else len(base)
            yield _flip_bits(base[:limit], rng) + base[limit:]
        elif roll < 0.9:
            yield _cut_or_extend(base, rng)
        else:
            value = rng.choice((0, 2, 2**24, 2**63, len(base), rng.randrange(2**64)))
            yield struct.pack("<Q", value) + base[8:]


CONFIG_ATTACKS: list[tuple[str, object]] = [
    ("group_norm_groups", 0),
    ("dim", 192.5),
    ("num_latents", -8),
    ("channels", [100000] * 4),
    ("consistency_depth", 10**6),
    ("heads", 0),
    ("heads", 5),
    ("channels", [8, 10**9]),
    ("blocks", [10**6, 1]),
    ("noise_embedding_dim", 33),
    ("stem_stride", [0, 4]),
    ("downsample", [[8, 4], [2, 2]]),
    ("downsample", "ab"),
    ("sigma_min", -1.0),
    ("frequency_bins", 4096),
    ("chunk_frames", 10**7),
    ("frequency_scaling", "yes"),
    ("name", "x" * 10_000),
    ("extra", {"a": 1}),
    ("channels", [16, 16]),
    ("dim", 64),
    ("latent_dim", 32),
]


def _mutate_weights_header(base: bytes, rng: random.Random) -> bytes:
    (length,) = struct.unpack("<Q", base[:8])
    header = json.loads(base[8 : 8 + length])
    data = base[8 + length :]
    roll = rng.random()
    if roll < 0.5:
        config = json.loads(header["__metadata__"]["config"])
        key, value = rng.choice(CONFIG_ATTACKS)
        if rng.random() < 0.3:
            key, value = rng.choice(list(config)), _hostile_value(rng)
        config[key] = value
        header["__metadata__"]["config"] = json.dumps(config)
    elif roll < 0.65:
        header["__metadata__"] = rng.choice(
            (None, {}, {"format": "other"}, {**header["__metadata__"], "config": "[" * 10**5})
        )
    else:
        name = rng.choice([key for key in header if key != "__metadata__"])
        field_name = rng.choice(("dtype", "shape", "data_offsets", None))
        if field_name is None:
            del header[name]
        else:
            header[name][field_name] = rng.choice(
                ("I64", "F8", [2**40], [-1], [0, 2**62], [1, 0], [3, 4, 5], "F32", [10**6])
            )
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


def check_weights(data: bytes) -> bool:
    """Loads a weights file; True if it loads, False if refused with M2LError."""
    from m2l_cli.weights import deserialize

    try:
        deserialize(data, "<fuzz>")
    except M2LError:
        return False
    return True


def tiny_weights() -> bytes:
    """The file of a fresh `tiny` model, the base of the weights cases."""
    from m2l_cli import Codec
    from m2l_cli.weights import serialize

    codec = Codec.create("tiny", seed=0, device="cpu", precision="fp32")
    return serialize(codec.model, codec.model_name, trained=False)[0]


# Running.
def run_cases(
    cases: Iterator[bytes],
    check: Callable[[bytes], bool],
    tally: Tally,
    hang_seconds: float,
    measure_memory: bool = False,
) -> Tally:
    """Runs every case; fills `tally` (each failure as 'case N: ExceptionType: ...')."""
    previous = signal.signal(signal.SIGALRM, _alarm)
    try:
        for data in cases:
            _run_case(data, check, tally, hang_seconds, measure_memory)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    return tally


def _run_case(
    data: bytes,
    check: Callable[[bytes], bool],
    tally: Tally,
    hang_seconds: float,
    measure_memory: bool,
) -> None:
    tally.cases += 1
    tally.largest_file = max(tally.largest_file, len(data))
    if measure_memory:
        tracemalloc.start()
    started = time.perf_counter()
    signal.setitimer(signal.ITIMER_REAL, hang_seconds)
    try:
        loaded = check(data)
        tally.loaded += loaded
        tally.refused += not loaded
    except Hang:
        tally.hangs += 1
    except Exception as error:  # noqa: BLE001 (any other exception is what we look for)
        tally.failures.append(f"case {tally.cases}: {type(error).__name__}: {error}"[:300])
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        tally.slowest = max(tally.slowest, time.perf_counter() - started)
        if measure_memory:
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            tally.peak_bytes = max(tally.peak_bytes, peak)
            if len(data) >= 1 << 16:
                tally.peak_ratio = max(tally.peak_ratio, peak / len(data))


def report(name: str, tally: Tally, seconds: float) -> str:
    lines = [
        f"{name}: {tally.cases} cases in {seconds:.1f} s: {tally.loaded} loaded, "
        f"{tally.refused} refused with the project's error, {len(tally.failures)} other "
        f"exceptions, {tally.hangs} hangs; slowest case {tally.slowest * 1000:.1f} ms",
    ]
    if tally.peak_bytes:
        lines.append(
            f"  memory: at most {tally.peak_bytes / 2**20:.2f} MiB allocated by one case "
            f"(largest file {tally.largest_file / 2**10:.0f} KiB); for files of 64 KiB "
            f"or more, at most {tally.peak_ratio:.2f} bytes per byte of file"
        )
    lines += [f"  {failure}" for failure in tally.failures[:20]]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--containers", type=int, default=100_000)
    parser.add_argument("--weights", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hang-seconds", type=float, default=10.0)
    parser.add_argument("--no-memory", action="store_true", help="skip tracemalloc (faster)")
    options = parser.parse_args()
    failed = False
    if options.containers:
        started = time.perf_counter()
        cases = container_cases(options.seed, options.containers)
        tally = run_cases(
            cases, check_container, Tally(), options.hang_seconds, not options.no_memory
        )
        print(report("containers", tally, time.perf_counter() - started), flush=True)
        failed |= bool(tally.failures or tally.hangs)
    if options.weights:
        import torch

        torch.set_num_threads(1)
        started = time.perf_counter()
        cases = weights_cases(tiny_weights(), options.seed, options.weights)
        tally = run_cases(cases, check_weights, Tally(), options.hang_seconds)
        print(report("weights", tally, time.perf_counter() - started), flush=True)
        failed |= bool(tally.failures or tally.hangs)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of the whole run: {peak:.0f} MiB")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
