"""The training loop: crops from worker processes -> consistency loss -> RAdam step ->
EMA update; a CSV row every `log_every` steps, a validation pass and a checkpoint every
`validate_every` / `checkpoint_every` steps, and a last checkpoint on Ctrl-C or error.
"""

from __future__ import annotations

import contextlib
import csv
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from ..config import ModelConfig, preset
from ..errors import M2LError
from ..model import Music2Latent2
from ..runtime import PRECISIONS, resolve_device, resolve_training_precision
from ..weights import read_weights
from .checkpoint import CHECKPOINT_NAME, Checkpoint, load_checkpoint, save_checkpoint
from .config import TrainConfig
from .data import CropDataset, crop_loader, find_tracks
from .objective import TrainingPrecision, consistency_loss, curriculum_gap
from .validation import Validator, make_validator

GROWN_PARTS = ("consistency.frequency_scaling.", "decoder.summary_index")


def training_precision(settings: TrainConfig, device: torch.device) -> TrainingPrecision:
    """The dtypes of the two parts (see `TrainingPrecision`)."""
    main = PRECISIONS[resolve_training_precision(settings.precision, device)]
    choice = settings.consistency_precision
    if choice == "auto":  # fp32 where the signal needs it
        return TrainingPrecision(device.type, main, torch.float32, main)
    consistency = main if choice == "inherit" else PRECISIONS[choice]
    return TrainingPrecision(device.type, main, consistency, consistency)


class Trainer:
    """Holds the model, its EMA copy, the optimizer and the noise generator.

    Unlike the codec, it seeds torch's global generator (from the settings) and a
    resumed one restores it: resuming bit for bit needs it.
    """

    def __init__(self, settings: TrainConfig, config: ModelConfig, device: torch.device) -> None:
        self.settings, self.config, self.device = settings, config, device
        self.precision = training_precision(settings, device)
        torch.manual_seed(settings.seed)
        self.model = Music2Latent2(config)
        if settings.zero_init_head:
            self.model.consistency.zero_output_head()
        # torch's stubs lack Module.to's memory_format, which it takes and applies.
        self.model.to(device, memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.ema = Music2Latent2(config)
        self.ema.to(device, memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.ema.load_state_dict(self.model.state_dict())
        self.ema.requires_grad_(False)
        self.optimizer = torch.optim.RAdam(
            self.model.parameters(),
            lr=settings.learning_rate,
            betas=(settings.beta1, settings.beta2),
            foreach=True,  # one multi-tensor update instead of a loop over ~750 tensors
        )
        self.generator = torch.Generator().manual_seed(settings.seed + 1)
        self.step = 0

    @classmethod
    def resume(cls, path: Path, device: torch.device) -> Trainer:
        """A trainer in exactly the state the checkpoint recorded."""
        checkpoint = load_checkpoint(path)
        trainer = cls(checkpoint.train_config, checkpoint.model_config, device)
        trainer.model.load_state_dict(checkpoint.model)
        trainer.ema.load_state_dict(checkpoint.ema)
        trainer.optimizer.load_state_dict(checkpoint.optimizer)
        for group in trainer.optimizer.param_groups:  # how it runs, not what it computes
            group["foreach"] = True
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
                model_config=self.config,
                train_config=self.settings,
            ),
        )

    def train_step(self, pairs: torch.Tensor) -> dict[str, float]:
        """One optimizer step on a batch of chunk pairs; returns what the log records."""
        settings = self.settings
        learning_rate = settings.learning_rate_at(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate
        gap = curriculum_gap(self.step, settings)
        self.model.train()
        loss = consistency_loss(
            self.model, pairs.to(self.device), gap, settings, self.precision, self.generator
        )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        gradients = [p.grad for p in self.model.parameters() if p.grad is not None]
        grad_norm = torch.nn.utils.get_total_norm(gradients, foreach=True)
        self.optimizer.step()
        decay = settings.ema_decay_at(self.step)
        self._update_ema(decay)
        self.step += 1
        return {
            "loss": loss.item(),
            "lr": learning_rate,
            "gap": gap,
            "grad_norm": grad_norm.item(),
            "ema_decay": decay,
        }

    @torch.no_grad()
    def _update_ema(self, decay: float) -> None:
        torch._foreach_lerp_(
            list(self.ema.parameters()), list(self.model.parameters()), 1.0 - decay
        )
        for buffer, source in zip(self.ema.buffers(), self.model.buffers(), strict=True):
            buffer.copy_(source)


def new_trainer(
    settings: TrainConfig,
    device: torch.device,
    initial_weights: Path | None,
    model_config: ModelConfig | None = None,
    added_parts: Mapping[str, Any] | None = None,
) -> Trainer:
    """A trainer at step 0: fresh weights (of `model_config`, default the settings'
    preset), or those of a model file (model and EMA), grown by `added_parts`."""
    if initial_weights is None:
        return Trainer(settings, model_config or preset(settings.preset), device)
    model, _, _ = read_weights(initial_weights)
    trainer = Trainer(settings, replace(model.config, **(added_parts or {})), device)
    for target in (trainer.model, trainer.ema):
        load_grown(target, model.state_dict())
    return trainer


def load_grown(model: Music2Latent2, state: Mapping[str, torch.Tensor]) -> None:
    """Loads a smaller model's weights into `model`, whose extra parts (frequency scaling,
    summary index) start as identities: the grown model computes what the smaller one did."""
    missing, unexpected = model.load_state_dict(state, strict=False)
    foreign = [key for key in missing if not key.startswith(GROWN_PARTS)] + unexpected
    if foreign:
        raise M2LError(f"the model file does not fit this model: {foreign[0]}")
    if model.decoder.summary_index is not None and "decoder.summary_index" in missing:
        torch.nn.init.zeros_(model.decoder.summary_index)


def train(
    data: Path,
    run: Path,
    *,
    settings: TrainConfig | None = None,
    model_config: ModelConfig | None = None,
    steps: int | None = None,
    device: torch.device | None = None,
    resume: bool = False,
    on_log: Callable[[dict], None] | None = None,
    validate: Validator | None = None,
    initial_weights: Path | None = None,
    added_parts: Mapping[str, Any] | None = None,
    routine: dict[str, Any] | None = None,
) -> Trainer:
    """Trains until `steps` more steps (or total_steps) are done, or Ctrl-C; always
    leaves a checkpoint of the last finished step in `run`. A new run can start from
    the weights of a model file (`initial_weights`; its config, grown by `added_parts`,
    replaces the preset).
    `routine` replaces routine settings (`TrainConfig.ROUTINE`), of a resumed run too.
    Without `validate`, the run validates on its `validation_folder`, if it has one."""
    device = device or resolve_device()
    checkpoint_path = run / CHECKPOINT_NAME
    if resume:
        trainer = Trainer.resume(checkpoint_path, device)
    elif checkpoint_path.exists():
        raise M2LError(f"{run}: holds a checkpoint already; use --resume or another folder")
    else:
        trainer = new_trainer(
            settings or TrainConfig(), device, initial_weights, model_config, added_parts
        )
    trainer.settings = settings = trainer.settings.with_routine(routine)
    if validate is None and settings.validation_folder:
        validate = make_validator(Path(settings.validation_folder))
    run.mkdir(parents=True, exist_ok=True)
    last_step = min(trainer.step + steps, settings.total_steps) if steps else settings.total_steps
    config = trainer.config
    tracks = find_tracks(data, 2 * config.chunk_samples + config.n_fft, config.sample_rate)
    dataset = CropDataset(tracks, config, settings.seed)
    loader = crop_loader(
        dataset, settings.batch_size, trainer.step * settings.batch_size, settings.workers
    )
    try:
        _run(trainer, loader, last_step, TrainingLog(run), checkpoint_path, on_log, validate)
    finally:
        with worker_deaths_ignored():
            trainer.save(checkpoint_path)
    return trainer


@contextlib.contextmanager
def worker_deaths_ignored() -> Iterator[None]:
    """A signal to the whole process group ends the loader's workers too; torch's SIGCHLD
    handler would then raise in the middle of the last save. It is set aside meanwhile."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    try:
        yield
    finally:
        signal.signal(signal.SIGCHLD, previous)


def _run(
    trainer: Trainer,
    batches: Iterable[torch.Tensor],
    last_step: int,
    log: TrainingLog,
    checkpoint_path: Path,
    on_log: Callable[[dict], None] | None,
    validate: Validator | None,
) -> None:
    """The loop itself; Ctrl-C ends it quietly (the caller saves)."""
    settings = trainer.settings
    started, done = time.perf_counter(), 0
    try:
        for pairs in batches:
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
                scores = validate(trainer.ema, trainer.device)
                log.write("validation", {"step": trainer.step, **scores})
    except KeyboardInterrupt:
        pass


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
