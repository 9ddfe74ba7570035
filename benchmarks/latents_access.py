"""Time to first audio of a streamed decode, and the speed-up of random access.

    .venv/bin/python benchmarks/latents_access.py                    # the bundled model
    .venv/bin/python benchmarks/latents_access.py --model tiny.safetensors --full

The containers hold the latents of the bundled example clip, encoded by the model and
repeated to the length asked for (`Latents.from_array`): decoding costs the same per
chunk whatever the values. Time to first audio: `cat x.m2l | m2l decode - -o -`, from
the start of the process to the first audio byte on its stdout (torch's import and the
model's load included), for each length. Random access: `Codec.decode(latents,
start=middle, duration=10)` against a full decode of the same container (`--full`;
otherwise the full decode's time is the time of decoding `--full-seconds` of it scaled
to the container's length, and the output says so).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from importlib.resources import files
from pathlib import Path

import numpy as np
import soundfile

from m2l_cli import Codec, Latents

M2L = str(Path(sys.executable).parent / "m2l")


def repeated(codec: Codec, seconds: float) -> Latents:
    """The example clip's latents repeated to `seconds` of audio (mono)."""
    audio, rate = soundfile.read(files("m2l_cli") / "examples" / "example.flac", dtype="float32")
    values = codec.encode(audio.T[:1], rate).values[0]
    chunks = int(np.ceil(seconds * codec.config.sample_rate / codec.config.chunk_samples))
    tiled = np.resize(values, (chunks, *values.shape[1:]))
    return Latents.from_array(tiled, codec, num_samples=round(seconds * codec.config.sample_rate))


def first_audio_seconds(container: Path, model: Path | None) -> tuple[float, float]:
    """Seconds from starting `m2l decode - -o -` to its WAV header (torch imported, the
    model loaded, the container's header read) and to the first audio byte after it."""
    environment = dict(os.environ)
    if model is not None:
        environment["M2L_MODEL"] = str(model)
    started = time.monotonic()
    with container.open("rb") as source:
        process = subprocess.Popen(
            [M2L, "decode", "-", "-o", "-", "-q"],
            stdin=source,
            stdout=subprocess.PIPE,
            env=environment,
        )
        assert process.stdout is not None
        header = process.stdout.read(12)
        header_seconds = time.monotonic() - started
        while not header.endswith(b"data") or len(header) % 2:  # chunk ids, then data's
            header += process.stdout.read(1)
        header += process.stdout.read(4)  # the data chunk's size
        first = process.stdout.read(1)
        audio_seconds = time.monotonic() - started
        process.kill()
        process.wait()
    assert header[:4] == b"RIFF" and first, "no audio came out"
    return header_seconds, audio_seconds


def timed(action: object) -> float:
    started = time.monotonic()
    action()  # type: ignore[operator]
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, help="weights file (default: the bundled one)")
    parser.add_argument("--lengths", default="60,600", help="seconds, for time to first audio")
    parser.add_argument("--long", type=float, default=3600.0, help="seconds, for random access")
    parser.add_argument("--full", action="store_true", help="decode the long container whole")
    parser.add_argument("--full-seconds", type=float, default=60.0)
    parser.add_argument("--repeats", type=int, default=3)
    options = parser.parse_args()
    codec = Codec.load(options.model)
    print(
        f"model {codec.model_name} ({codec.config.name}), precision {codec.precision}, "
        f"{os.cpu_count()} CPUs, torch threads {__import__('torch').get_num_threads()}"
    )
    with tempfile.TemporaryDirectory() as folder:
        for seconds in (float(text) for text in options.lengths.split(",")):
            path = Path(folder) / f"{seconds:.0f}.m2l"
            repeated(codec, seconds).save(path)
            runs = [first_audio_seconds(path, options.model) for _ in range(options.repeats)]
            for what, times in zip(("header", "first audio"), zip(*runs, strict=True), strict=True):
                print(
                    f"time to {what}, {seconds:.0f} s container: median "
                    f"{statistics.median(times):.2f} s of {', '.join(f'{t:.2f}' for t in times)}"
                )
    latents = repeated(codec, options.long)
    middle = options.long / 2
    codec.decode(latents, duration=2.0)  # one-off costs (thread pools, kernels) paid here
    ranges = [
        timed(lambda: codec.decode(latents, start=middle, duration=10.0))
        for _ in range(options.repeats)
    ]
    ranged = statistics.median(ranges)
    print(
        f"10 s from the middle of {options.long:.0f} s: median {ranged:.2f} s "
        f"of {', '.join(f'{t:.2f}' for t in ranges)}"
    )
    if options.full:
        full = timed(lambda: codec.decode(latents))
        print(f"full decode of {options.long:.0f} s: {full:.1f} s (measured)")
    else:
        part = timed(lambda: codec.decode(latents, duration=options.full_seconds))
        full = part * options.long / options.full_seconds
        print(
            f"full decode of {options.long:.0f} s: {full:.1f} s (estimated: "
            f"{options.full_seconds:.0f} s took {part:.2f} s, scaled by length)"
        )
    print(f"speed-up: {full / ranged:.0f}x")


if __name__ == "__main__":
    main()
