"""Throughput of `m2l batch --engine ray` against the local engine on one machine.

    .venv/bin/python benchmarks/ray_engine.py                 # 20 files of 10 s, stereo
    .venv/bin/python benchmarks/ray_engine.py --files 4 --seconds 5 --repeats 1   # smoke

Encodes the same folder with the local engine (one process, all threads) and with the
Ray engine, and prints JSON: wall times (medians of the repeats), x real time and the
overhead ratios (Ray's wall / the local engine's). The Ray engine is measured twice:
cold (`ray.init` of a new local Ray included, as `m2l batch --engine ray` does without
--ray-address) and warm (joining a running Ray: actor start, model loads, coding). Both
engines load the model once per process, so the local figure includes its load too.
Needs the [ray] extra. Says whether the outputs are byte-identical to the local engine's
(on some CPUs batching rounds the last bit of a few latents differently).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile

from m2l_cli import Codec
from m2l_cli.batch import plan_batch
from m2l_cli.distributed import Workers, batch
from m2l_cli.files import encode_files
from m2l_cli.runtime import set_threads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", default=None, help="weights (default: the bundled model)")
    options = parser.parse_args()
    cpus = os.cpu_count() or 1
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="m2l-ray-bench-") as scratch:
        folder = make_folder(Path(scratch) / "music", options.files, options.seconds)
        audio = options.files * options.seconds

        def local() -> None:
            set_threads(cpus)
            codec = Codec.load(options.model)
            plan = plan_batch(folder, output_dir=Path(scratch) / "local", force=True)
            assert all(result.error is None for result in encode_files(codec, plan.pairs))

        def ray_run(name: str, actors: int, threads: int) -> Callable[[], None]:
            def run() -> None:
                workers = Workers(actors=actors, threads=threads, model=options.model)
                out = Path(scratch) / name
                results = batch(folder, output_dir=out, force=True, workers=workers).results
                assert all(result.error is None for result in results)

            return run

        import ray

        runs = {
            "local engine": local,
            "ray cold, 2 actors x 1 thread": ray_run("cold", 2, 1),
            "ray warm, 2 actors x 1 thread": ray_run("warm2", 2, 1),
        }
        rows = {}
        for name, run in runs.items():
            if name.startswith("ray warm") and not ray.is_initialized():
                ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
            rows[name] = timed(name, run, options.repeats)
        ray.shutdown()
        same = all(
            tree(Path(scratch) / name) == tree(Path(scratch) / "local")
            for name in ("cold", "warm2")
        )
    base = rows["local engine"]
    report = {
        "cpu": cpu_name(),
        "cpus": cpus,
        "python": platform.python_version(),
        "ray": ray.__version__,
        "files": options.files,
        "audio_seconds": audio,
        "repeats": options.repeats,
        "load_average_1min": [round(load_before, 1), round(os.getloadavg()[0], 1)],
        "outputs_identical_to_local": same,
        "runs": {
            name: {
                "wall_s": round(wall, 2),
                "x_real_time": round(audio / wall, 1),
                "overhead_ratio": round(wall / base, 2),
            }
            for name, wall in rows.items()
        },
    }
    print(json.dumps(report, indent=2))


def make_folder(folder: Path, count: int, seconds: float) -> Path:
    """`count` stereo files of noise-like tones, `seconds` long, in two sub-folders."""
    rng = np.random.default_rng(0)
    for index in range(count):
        path = folder / f"part{index % 2}" / f"track{index:03d}.flac"
        path.parent.mkdir(parents=True, exist_ok=True)
        samples = round(seconds * 44100)
        t = np.arange(samples) / 44100
        tone = np.sin(2 * np.pi * (110 + 20 * index) * t)
        audio = 0.2 * tone[:, None] + 0.05 * rng.standard_normal((samples, 2))
        soundfile.write(path, audio, 44100)
    return folder


def timed(name: str, run: Callable[[], None], repeats: int) -> float:
    """The median wall time of `repeats` runs (each also shown on stderr)."""
    walls = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        walls.append(time.perf_counter() - started)
        print(f"{name}: {walls[-1]:.2f} s", file=sys.stderr, flush=True)
    return statistics.median(walls)


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def cpu_name() -> str:
    lscpu = shutil.which("lscpu")
    if lscpu:
        for line in subprocess.run([lscpu], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


if __name__ == "__main__":
    main()
