"""One measurement in a fresh process: `python benchmarks/measure.py TASK_JSON` prints
its Result as one JSON line. bench.py starts it, once per row, so the peak RSS it
reports belongs to that row alone.

Kinds: the machine's peaks (a big matrix product, a 3x3 convolution), in-memory encode
and decode, file encode and decode (for memory), and one training step.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict

import numpy as np
from common import (
    BENCH_MODEL_ID,
    RESULT_MARKER,
    Result,
    Task,
    cpu_model,
    finish_timing,
    peak_rss_mib,
    synthesize,
    timed,
    timed_runs,
)
from flops import count

PEAK_RUN_SECONDS = 1.0  # each timed run of a peak repeats its operation this long


def make_codec(task: Task):
    """A codec with random weights, on the CPU, at the task's precision and threads."""
    from m2l_cli.codec import Codec
    from m2l_cli.runtime import set_threads

    set_threads(task.threads)
    return Codec.create(
        task.preset, seed=task.seed, precision=task.precision, device="cpu", model_id=BENCH_MODEL_ID
    )


def add_flops(result: Result, function: Callable[[], object], units: float) -> float:
    """Counts the FLOPs of `function`, `units` units of work, into the result (per
    unit, split by dtype and by operation); returns the FLOPs per unit."""
    counter = count(function)
    result.flops_per_unit = counter.total / units
    result.flops_by_dtype = {dtype: n / units for dtype, n in counter.by_dtype.items()}
    result.flops_detail = {op: n / units for op, n in counter.by_op.items()}
    return result.flops_per_unit


# ----------------------------------------------------------------------------- peaks

PEAK_SHAPES = {"matmul": (2048, 2048, 2048), "conv": (16, 64, 128, 64)}


def peak_operation(task: Task) -> tuple[Callable[[], object], float]:
    """The operation a peak row repeats, and its FLOPs: a 2048^3 matrix product, or a
    3x3 convolution 64 -> 64 channels on [16, 64, 128, 64] channels_last maps."""
    import torch

    dtype = torch.bfloat16 if task.precision == "bf16" else torch.float32
    generator = torch.Generator().manual_seed(task.seed)
    if task.operation == "matmul":
        m, k, n = PEAK_SHAPES["matmul"]
        left = torch.randn(m, k, generator=generator).to(dtype)
        right = torch.randn(k, n, generator=generator).to(dtype)
        return (lambda: left @ right), 2.0 * m * k * n
    batch, channels, height, width = PEAK_SHAPES["conv"]
    conv = torch.nn.Conv2d(channels, channels, 3, padding=1).to(dtype)
    conv = conv.to(memory_format=torch.channels_last).requires_grad_(False)
    x = torch.randn(batch, channels, height, width, generator=generator).to(dtype)
    x = x.contiguous(memory_format=torch.channels_last)
    return (lambda: conv(x)), 2.0 * 9 * channels * channels * batch * height * width


def measure_peak(task: Task) -> Result:
    """GFLOP/s of one big operation, repeated for about a second per timed run."""
    from m2l_cli.runtime import set_threads

    set_threads(task.threads)
    operation, flops = peak_operation(task)
    start, calls = time.perf_counter(), 0
    while time.perf_counter() - start < 0.3 or calls < 3:  # warm-up, and the call's cost
        operation()
        calls += 1
    per_run = max(1, round(PEAK_RUN_SECONDS * calls / (time.perf_counter() - start)))

    def run() -> None:
        for _ in range(per_run):
            operation()

    result = Result(task, rss_before_work_mib=peak_rss_mib())
    finish_timing(result, [timed(run) for _ in range(task.repeats)])
    result.flops_per_unit = flops * per_run
    result.flops_by_dtype = {"bfloat16" if task.precision == "bf16" else "float32": flops}
    result.gflops = flops * per_run / result.median_s / 1e9
    return result


# ----------------------------------------------------------------------------- coding


def flops_of_one_chunk(codec, kind: str) -> Callable[[], object]:
    """The calls whose FLOPs make one chunk: the encoder on one chunk, or one decode
    step (the decoder on one chunk and the consistency model on two chunks)."""
    import torch

    from m2l_cli.defaults import DEFAULT_SIGMA_COND

    config, runner = codec.config, codec.runner
    generator = torch.Generator().manual_seed(0)
    spectrogram = torch.randn(1, 2, config.frequency_bins, config.chunk_frames, generator=generator)
    if kind == "encode":
        return lambda: runner.encode(spectrogram)
    latents = torch.tanh(torch.randn(1, config.num_latents, config.latent_dim, generator=generator))
    features = runner.decode_features(latents)
    two_chunks = [torch.cat([level, level]) for level in features]
    noisy = torch.randn(1, 2, 2, config.frequency_bins, config.chunk_frames, generator=generator)
    sigma = torch.tensor([[DEFAULT_SIGMA_COND, config.sigma_max]])

    def step() -> None:
        runner.decode_features(latents)
        runner.denoise(noisy, sigma, two_chunks)

    return step


def add_coding_flops(result: Result, codec, kind: str) -> None:
    """FLOPs per audio second (one chunk is 32768 / 44100 s) and the rate achieved."""
    config = codec.config
    chunk_seconds = config.chunk_samples / config.sample_rate
    per_second = add_flops(result, flops_of_one_chunk(codec, kind), chunk_seconds)
    assert result.x_real_time is not None
    result.gflops = per_second * result.x_real_time / 1e9


def measure_encode(task: Task) -> Result:
    """Encode `seconds` of mono audio held in memory (codec.encode)."""
    codec = make_codec(task)
    rate = codec.config.sample_rate
    waveform = synthesize(round(task.seconds * rate), rate, task.seed)
    result = Result(task, audio_seconds=task.seconds, rss_before_work_mib=peak_rss_mib())
    run = lambda: codec.encode(waveform, rate)  # noqa: E731
    finish_timing(result, timed_runs(run, run, task.repeats))
    add_coding_flops(result, codec, "encode")
    return result


def random_latents(config, seconds: float, seed: int):
    """Latents of `seconds` of mono audio with random values: the decoder's cost does
    not depend on the values, so this skips encoding (and its memory) entirely."""
    from m2l_cli.container import Latents, expected_chunks

    samples = round(seconds * config.sample_rate)
    chunks = expected_chunks(samples, config.chunk_samples)
    rng = np.random.default_rng(seed)
    values = np.tanh(rng.standard_normal((1, chunks, config.num_latents, config.latent_dim)))
    return Latents(
        values=values.astype(np.float16),
        model_id=BENCH_MODEL_ID,
        model_name="bench",
        sample_rate=config.sample_rate,
        original_sample_rate=config.sample_rate,
        num_samples=samples,
        model_num_samples=samples,
        chunk_samples=config.chunk_samples,
    )


class SampleCounter:
    """A DecodeJob writer that only counts the samples it is given."""

    def __init__(self) -> None:
        self.samples = 0

    def __call__(self, block: np.ndarray) -> None:
        self.samples += block.shape[1]


def decode_streams(codec, latents: list, batch_size: int) -> None:
    """Decodes all latents together through codec.decode_jobs; checks every length."""
    from m2l_cli.decoding import DecodeJob

    counters = [SampleCounter() for _ in latents]
    jobs = [
        DecodeJob(item, counter, f"stream{index}", None, index)
        for index, (item, counter) in enumerate(zip(latents, counters, strict=True))
    ]
    for job, error in codec.decode_jobs(jobs, batch_size=batch_size):
        if error is not None:
            raise RuntimeError(f"{job.name}: {error}")
    for item, counter in zip(latents, counters, strict=True):
        if counter.samples != item.num_samples:
            raise RuntimeError(f"decoded {counter.samples} samples, expected {item.num_samples}")


def measure_decode(task: Task) -> Result:
    """Decode `streams` mono latents of `seconds` each, batched together. The warm-up
    decodes the same number of 2-chunk latents (every kind of step, every batch size)."""
    from m2l_cli.defaults import DEFAULT_BATCH_SIZE

    codec = make_codec(task)
    config = codec.config
    batch_size = max(DEFAULT_BATCH_SIZE, task.streams)
    latents = [random_latents(config, task.seconds, task.seed + i) for i in range(task.streams)]
    short_seconds = 2 * config.chunk_samples / config.sample_rate
    short = [random_latents(config, short_seconds, task.seed + i) for i in range(task.streams)]
    result = Result(
        task, audio_seconds=task.seconds * task.streams, rss_before_work_mib=peak_rss_mib()
    )
    runs = timed_runs(
        lambda: decode_streams(codec, latents, batch_size),
        lambda: decode_streams(codec, short, batch_size),
        task.repeats,
    )
    finish_timing(result, runs)
    add_coding_flops(result, codec, "decode")
    return result


def encode_file(codec, input_path: str, output_path: str) -> None:
    """WAV -> .m2l through AudioSource (read in blocks) and codec.encode_jobs."""
    from m2l_cli.audio import AudioSource
    from m2l_cli.encoding import EncodeJob

    job = EncodeJob(lambda: AudioSource(input_path), name=input_path)
    for _, latents in codec.encode_jobs([job]):
        if isinstance(latents, Exception):
            raise RuntimeError(f"{input_path}: {latents}")
        latents.save(output_path)


def decode_file(codec, input_path: str, output_path: str) -> None:
    """.m2l -> WAV through codec.decode_jobs and AudioSink (written block by block)."""
    from m2l_cli.audio import AudioSink, OutputFormat
    from m2l_cli.container import Latents
    from m2l_cli.decoding import DecodeJob

    latents = Latents.load(input_path)
    sink = AudioSink(
        output_path,
        sample_rate=latents.original_sample_rate,
        channels=latents.channels,
        file_format=OutputFormat.WAV,
    )
    job = DecodeJob(latents, sink.write, input_path, None, 0)
    for _, error in codec.decode_jobs([job]):
        if error is not None:
            raise RuntimeError(f"{input_path}: {error}")
    sink.close()


def measure_file(task: Task) -> Result:
    """One run (no warm-up) of encode_file or decode_file: for its peak RSS."""
    codec = make_codec(task)
    work = encode_file if task.kind == "file-encode" else decode_file
    result = Result(task, audio_seconds=task.seconds, rss_before_work_mib=peak_rss_mib())
    finish_timing(result, [timed(lambda: work(codec, task.input_path, task.output_path))])
    return result


# ----------------------------------------------------------------------------- training


def training_pairs(config, batch: int, seed: int):
    """A batch of [batch, 2 chunks, 2, F, T] spectrogram pairs of the test signal."""
    import torch

    from m2l_cli.spectral import SpectralTransform

    transform = SpectralTransform(config)
    length = 2 * config.chunk_samples + 2 * transform.context
    crops = [synthesize(length, config.sample_rate, seed, offset=i * length) for i in range(batch)]
    spectrograms = transform.analyse(torch.from_numpy(np.concatenate(crops)))
    frames = config.chunk_frames
    return torch.stack([spectrograms[..., :frames], spectrograms[..., frames:]], 1)


def measure_train(task: Task) -> Result:
    """Optimizer steps (forward, teacher, backward, RAdam, EMA) on one batch, all taken
    at the same step of the schedule, in curriculum stage `stage` of 5."""
    import torch

    from m2l_cli.config import preset
    from m2l_cli.runtime import set_threads
    from m2l_cli.training import TrainConfig
    from m2l_cli.training.loop import Trainer

    set_threads(task.threads)
    settings = TrainConfig(
        preset=task.preset,
        batch_size=task.batch,
        precision=task.precision,
        consistency_precision=task.policy,
        total_steps=1000,
        curriculum_stages=5,
        workers=0,
    )
    trainer = Trainer(settings, preset(task.preset), torch.device("cpu"))
    at_step = task.stage * settings.total_steps // settings.curriculum_stages + 1
    pairs = training_pairs(trainer.config, task.batch, task.seed)

    def step() -> None:
        trainer.step = at_step
        trainer.train_step(pairs)

    result = Result(task, rss_before_work_mib=peak_rss_mib())
    finish_timing(result, timed_runs(step, step, task.repeats))
    result.steps_per_s = 1.0 / result.median_s
    result.gflops = add_flops(result, step, 1.0) / result.median_s / 1e9
    return result


MEASUREMENTS: dict[str, Callable[[Task], Result]] = {
    "peak": measure_peak,
    "encode": measure_encode,
    "decode": measure_decode,
    "file-encode": measure_file,
    "file-decode": measure_file,
    "train": measure_train,
}


def main(task_json: str) -> None:
    """Runs one task and prints its Result as one JSON line."""
    task = Task(**json.loads(task_json))
    load = os.getloadavg()[0]
    result = MEASUREMENTS[task.kind](task)
    result.cpu = cpu_model()
    result.peak_rss_mib = peak_rss_mib()
    result.load_average_before = load
    print(RESULT_MARKER + json.dumps(asdict(result)), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
