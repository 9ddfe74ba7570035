"""`m2l train`: consistency training of a Music2Latent2 model on a folder of audio.

One loop: crops from worker processes -> consistency loss -> RAdam step -> EMA update;
a CSV row every `log_every` steps, a validation pass and a checkpoint every
`validate_every` / `checkpoint_every` steps, and a last checkpoint on Ctrl-C.
"""

from __future__ import annotations

import csv
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import soundfile
import torch

from .checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from .codec import Codec
from .config import ModelConfig, preset
from .consistency_training import NoiseSchedule, consistency_loss
from .dataset import CropDataset, crop_loader, find_tracks
from .errors import M2LError
from .evaluation import CODEC_SYSTEM, audio_files, evaluate_codec
from .model import Music2Latent2
from .runtime import cpu_has_fast_bf16
from .weights import read_weights

CHECKPOINT_NAME = "checkpoint.safetensors"


@dataclass(frozen=True)
class TrainConfig:
    """Every training setting; saved in each checkpoint (the paper's values by default,
    except the EMA decay, which suits runs of ~10k-100k steps rather than 1M)."""

    preset: str = "small"
    batch_size: int = 16
    total_steps: int = 100_000
    learning_rate: float = 1e-4
    final_learning_rate: float = 1e-6
    beta1: float = 0.9
    beta2: float = 0.999
    ema_decay: float = 0.999
    p_mean: float = -1.1
    p_std: float = 2.0
    dt_initial: float = 0.1
    dt_exponent: float = 3.0
    seed: int = 0
    workers: int = 2
    precision: str = "auto"  # bf16 autocast on CUDA and on CPUs with native bf16
    log_every: int = 10
    validate_every: int = 500
    checkpoint_every: int = 100

    # Settings that say how often things happen, not what is learned: they may change
    # when a run is resumed (on another machine, say) without changing its weights.
    ROUTINE = ("workers", "log_every", "validate_every", "checkpoint_every")

    def with_routine(self, changes: dict[str, int] | None) -> TrainConfig:
        """These settings with some routine settings replaced."""
        changes = changes or {}
        unknown = set(changes) - set(self.ROUTINE)
        if unknown:
            raise ValueError(f"not routine settings: {', '.join(sorted(unknown))}")
        return replace(self, **changes)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> TrainConfig:
        data = json.loads(text)
        known = {item.name for item in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})

    @property
    def noise_schedule(self) -> NoiseSchedule:
        return NoiseSchedule(self.p_mean, self.p_std, self.dt_initial, self.dt_exponent)

    def learning_rate_at(self, step: int) -> float:
        """Cosine decay from `learning_rate` to `final_learning_rate` over `total_steps`."""
        progress = min(step / max(self.total_steps, 1), 1.0)
        cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
        return self.final_learning_rate + (self.learning_rate - self.final_learning_rate) * cosine


class Trainer:
    """Holds the model, its EMA copy, the optimizer and the noise generator."""

    def __init__(self, settings: TrainConfig, config: ModelConfig, device: torch.device) -> None:
        self.settings, self.config, self.device = settings, config, device
        torch.manual_seed(settings.seed)
        self.model = Music2Latent2(config).to(device, memory_format=torch.channels_last)
        self.ema = Music2Latent2(config).to(device, memory_format=torch.channels_last)
        self.ema.load_state_dict(self.model.state_dict())
        self.ema.requires_grad_(False)
        self.optimizer = torch.optim.RAdam(
            self.model.parameters(),
            lr=settings.learning_rate,
            betas=(settings.beta1, settings.beta2),
        )
        self.generator = torch.Generator().manual_seed(settings.seed + 1)
        self.step = 0

    @classmethod
    def resume(cls, path: Path, device: torch.device) -> Trainer:
        """A trainer in exactly the state the checkpoint recorded."""
        checkpoint = load_checkpoint(path)
        settings = TrainConfig.from_json(checkpoint.metadata["train_config"])
        config = ModelConfig.from_json(checkpoint.metadata["model_config"])
        trainer = cls(settings, config, device)
        trainer.model.load_state_dict(checkpoint.model)
        trainer.ema.load_state_dict(checkpoint.ema)
        trainer.optimizer.load_state_dict(checkpoint.optimizer)
        trainer.generator.set_state(checkpoint.generators["noise"])
        torch.set_rng_state(checkpoint.generators["torch"])
        trainer.step = checkpoint.step
        return trainer

    def save(self, path: Path) -> None:
        save_checkpoint(
            path,
            Checkpoint(
                step=self.step,
                model=self.model.state_dict(),
                ema=self.ema.state_dict(),
                optimizer=self.optimizer.state_dict(),
                generators={"noise": self.generator.get_state(), "torch": torch.get_rng_state()},
                metadata={
                    "model_config": self.config.to_json(),
                    "train_config": self.settings.to_json(),
                },
            ),
        )

    def autocast(self) -> torch.autocast:
        wanted = self.settings.precision
        enabled = wanted == "bf16" or (
            wanted == "auto" and (self.device.type == "cuda" or cpu_has_fast_bf16())
        )
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=enabled)

    def train_step(self, pairs: torch.Tensor) -> dict[str, float]:
        """One optimizer step on a batch of chunk pairs; returns what the log records."""
        settings = self.settings
        learning_rate = settings.learning_rate_at(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate
        dt = settings.noise_schedule.step_size(self.step, settings.total_steps)
        self.model.train()
        with self.autocast():
            loss = consistency_loss(
                self.model, pairs.to(self.device), dt, settings.noise_schedule, self.generator
            )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), float("inf"))
        self.optimizer.step()
        self._update_ema()
        self.step += 1
        return {"loss": loss.item(), "lr": learning_rate, "dt": dt, "grad_norm": grad_norm.item()}

    @torch.no_grad()
    def _update_ema(self) -> None:
        decay = self.settings.ema_decay
        for average, current in zip(self.ema.parameters(), self.model.parameters(), strict=True):
            average.lerp_(current, 1.0 - decay)
        for average, current in zip(self.ema.buffers(), self.model.buffers(), strict=True):
            average.copy_(current)


def train(
    data: Path,
    run: Path,
    settings: TrainConfig | None = None,
    steps: int | None = None,
    device: torch.device | None = None,
    resume: bool = False,
    on_log: Callable[[dict], None] | None = None,
    validate: Callable[[Trainer], dict] | None = None,
    initial_weights: Path | None = None,
    routine: dict[str, int] | None = None,
) -> Trainer:
    """Trains until `steps` more steps (or total_steps) are done, or Ctrl-C; always
    leaves a checkpoint of the last finished step in `run`. A new run can start from
    the weights of a model file (`initial_weights`; its config replaces the preset).
    `routine` replaces routine settings (`TrainConfig.ROUTINE`), of a resumed run too."""
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    run.mkdir(parents=True, exist_ok=True)
    checkpoint_path = run / CHECKPOINT_NAME
    if resume:
        trainer = Trainer.resume(checkpoint_path, device)
    else:
        if checkpoint_path.exists():
            raise M2LError(f"{run}: holds a checkpoint already; use --resume or another folder")
        settings = settings or TrainConfig()
        trainer = new_trainer(settings, device, initial_weights)
    trainer.settings = settings = trainer.settings.with_routine(routine)
    last_step = min(trainer.step + steps, settings.total_steps) if steps else settings.total_steps
    tracks = find_tracks(
        data, 2 * trainer.config.chunk_samples + trainer.config.n_fft, trainer.config.sample_rate
    )
    dataset = CropDataset(tracks, trainer.config, settings.seed)
    loader = crop_loader(
        dataset, settings.batch_size, trainer.step * settings.batch_size, settings.workers
    )
    log = TrainingLog(run)
    started, done = time.perf_counter(), 0
    try:
        for pairs in loader:
            if trainer.step >= last_step:
                break
            row = trainer.train_step(pairs)
            done += pairs.shape[0]
            row.update(step=trainer.step, samples_per_s=done / (time.perf_counter() - started))
            if trainer.step % settings.log_every == 0 or trainer.step == last_step:
                log.write("train", row)
                if on_log:
                    on_log(row)
            if trainer.step % settings.checkpoint_every == 0:
                trainer.save(checkpoint_path)
            if validate and trainer.step % settings.validate_every == 0:
                log.write("validation", {"step": trainer.step, **validate(trainer)})
    except KeyboardInterrupt:
        pass
    finally:
        trainer.save(checkpoint_path)
    return trainer


def new_trainer(
    settings: TrainConfig, device: torch.device, initial_weights: Path | None
) -> Trainer:
    """A trainer at step 0: fresh weights, or those of a model file (model and EMA)."""
    if initial_weights is None:
        return Trainer(settings, preset(settings.preset), device)
    model, _, _ = read_weights(initial_weights)
    trainer = Trainer(settings, model.config, device)
    trainer.model.load_state_dict(model.state_dict())
    trainer.ema.load_state_dict(model.state_dict())
    return trainer


class TrainingLog:
    """Appends rows to run/train.csv and run/validation.csv (header on first write)."""

    def __init__(self, run: Path) -> None:
        self.run = run

    def write(self, name: str, row: dict) -> None:
        path = self.run / f"{name}.csv"
        new = not path.exists()
        with path.open("a", newline="") as stream:
            writer = csv.DictWriter(stream, fieldnames=list(row))
            if new:
                writer.writeheader()
            writer.writerow(row)


def export_checkpoint(checkpoint: Path, output: Path, name: str | None = None) -> str:
    """Writes the checkpoint's EMA weights as a float16 weights file; returns its model id."""
    state = load_checkpoint(checkpoint)
    config = ModelConfig.from_json(state.metadata["model_config"])
    model = Music2Latent2(config)
    model.load_state_dict(state.ema)
    codec = Codec(model, name or f"{config.name}-step{state.step}", device="cpu")
    return codec.save(output, dtype=torch.float16)


def make_validator(
    folder: Path, count: int = 4, seconds: float = 5.0, offset: float = 20.0
) -> Callable[[Trainer], dict]:
    """A validation pass: the EMA model codes `count` fixed clips of `folder` (the first
    files in name order, `seconds` long from `offset`); returns mean metrics."""
    clips = [path for _, path in sorted(audio_files(folder).items())][:count]
    if not clips:
        raise M2LError(f"{folder}: no audio files to validate on")
    starts = [max(0.0, min(offset, soundfile.info(str(clip)).duration - seconds)) for clip in clips]

    def validate(trainer: Trainer) -> dict:
        codec = Codec(trainer.ema, "validation", device=str(trainer.device))
        rows = []
        for clip, start in zip(clips, starts, strict=True):
            report = evaluate_codec(codec, clip, max_seconds=seconds, offset=start)
            if report.errors:
                raise M2LError(report.errors[0])
            rows += report.systems[CODEC_SYSTEM]
        keys = ("si_sdr", "log_mel", "mr_stft", "visqol")
        return {
            key: sum(row[key] for row in rows) / len(rows)
            for key in keys
            if all(row.get(key) is not None for row in rows)
        }

    return validate
