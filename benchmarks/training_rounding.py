"""How much bf16 rounding adds to the consistency-training signal, per noise level.

The training signal is the difference between the student's and the teacher's outputs.
This measures, for a trained model and real music, the error that running the
consistency model in bf16 adds to that difference, relative to the difference itself
(computed in float32):

    ratio = |(student - teacher)_bf16 - (student - teacher)_fp32| / |(student - teacher)_fp32|

for student noise levels sigma and the teacher levels each curriculum stage gives them.
The decoder's features are computed once in float32 and shared, as in training.

    .venv/bin/python benchmarks/training_rounding.py AUDIO_DIR [--model FILE] [--crops 8]

Prints a table (median ratio over crops, per sigma and stage) and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
from datetime import datetime
from pathlib import Path

import torch

from m2l_cli import Codec
from m2l_cli.training import TrainConfig
from m2l_cli.training.data import CropDataset, find_tracks
from m2l_cli.training.objective import curriculum_gap, teacher_sigma
from m2l_cli.weights import default_model_path

RESULTS_DIR = Path(__file__).resolve().parent / "results"
SIGMAS = (0.05, 0.2, 0.4, 1.0, 2.5, 5.0, 10.0, 25.0, 80.0)


def consistency(model, pairs, level: float, noise, features, dtype) -> torch.Tensor:
    """The consistency model's output at one noise level, in float32 or under autocast."""
    levels = torch.full((pairs.shape[0], 2), level)
    with torch.inference_mode(), torch.autocast("cpu", dtype, enabled=dtype != torch.float32):
        return model.consistency(pairs + level * noise, levels, features).float()


def signal_error(model, pairs, sigma: float, teacher: float, noise, features) -> float:
    """Median over crops of the bf16 error in (student - teacher), relative to it. A
    teacher at sigma_min is the clean input itself, computed exactly in training."""
    differences = {}
    for dtype in (torch.float32, torch.bfloat16):
        student = consistency(model, pairs, sigma, noise, features, dtype)
        if teacher <= model.config.sigma_min:
            target = pairs + model.config.sigma_min * noise
        else:
            target = consistency(model, pairs, teacher, noise, features, dtype)
        differences[dtype] = (student - target).flatten(1)
    error = (differences[torch.bfloat16] - differences[torch.float32]).norm(dim=1)
    return (error / differences[torch.float32].norm(dim=1)).median().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("audio", type=Path, help="folder of 44.1 kHz music to crop")
    parser.add_argument("--model", type=Path, default=None, help="weights (default: bundled)")
    parser.add_argument("--crops", type=int, default=8)
    parser.add_argument("--stages", type=int, default=TrainConfig().curriculum_stages)
    parser.add_argument("--output", type=Path, default=None)
    arguments = parser.parse_args()

    codec = Codec.load(arguments.model or default_model_path(), device="cpu", precision="fp32")
    model, config = codec.model.float().eval(), codec.config
    tracks = find_tracks(arguments.audio, 2 * config.chunk_samples + config.n_fft, 44100)
    dataset = CropDataset(tracks, config, seed=0)
    pairs = torch.stack([dataset[index] for index in range(arguments.crops)])
    noise = torch.randn(pairs.shape, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        features = model.decoder(model.encoder(pairs.flatten(0, 1)))

    settings = TrainConfig(total_steps=arguments.stages, curriculum_stages=arguments.stages)
    rows = []
    for stage in range(arguments.stages):
        gap = curriculum_gap(stage, settings)
        for sigma in SIGMAS:
            teacher = teacher_sigma(torch.tensor([sigma]), gap, settings, config).item()
            ratio = signal_error(model, pairs, sigma, teacher, noise, features)
            rows.append(
                {
                    "stage": stage,
                    "gap": gap,
                    "sigma": sigma,
                    "teacher_sigma": teacher,
                    "bf16_error_ratio": ratio,
                }
            )
            print(
                f"stage {stage} (gap {gap:.4g})  sigma {sigma:6.2f} -> teacher {teacher:8.4f}"
                f"  bf16 error / signal = {ratio:7.1%}",
                flush=True,
            )

    RESULTS_DIR.mkdir(exist_ok=True)
    output = arguments.output or RESULTS_DIR / f"rounding-{datetime.now():%Y%m%d-%H%M}.json"
    machine = {"cpu": platform.processor() or platform.machine(), "torch": torch.__version__}
    output.write_text(
        json.dumps({"model": codec.model_name, "machine": machine, "rows": rows}, indent=2)
    )
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
