"""`m2l train` and `export`: a model trained from a folder of audio, a checkpoint made
a model file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..display import note, say
from ..paths import check_output
from .common import DeviceOption, ForceOption, QuietOption, ThreadsOption, app, check_runtime


@app.command(short_help="Train a model (resumable; Ctrl-C saves).")
def train(
    data: Annotated[
        Path, typer.Argument(metavar="DIR", help="Folder of 44.1 kHz audio to train on.")
    ],
    run: Annotated[
        Path, typer.Option("--run", metavar="DIR", help="Folder for checkpoint and logs.")
    ] = Path("runs/default"),
    resume: Annotated[bool, typer.Option(help="Continue the run's checkpoint.")] = False,
    init: Annotated[
        Path | None,
        typer.Option(
            metavar="PATH",
            help="Start a new run from these model weights (model switches add parts).",
        ),
    ] = None,
    steps: Annotated[int | None, typer.Option(min=1, metavar="N", help="Steps to do now.")] = None,
    total_steps: Annotated[
        int | None,
        typer.Option(min=1, metavar="N", help="Schedule length (learning rate, curriculum)."),
    ] = None,
    preset_name: Annotated[
        str | None, typer.Option("--preset", metavar="NAME", help="small, paper or tiny.")
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option(min=1, metavar="N", help="Crops per step.")
    ] = None,
    learning_rate: Annotated[
        float | None, typer.Option("--lr", metavar="X", help="Peak learning rate.")
    ] = None,
    ema_decay: Annotated[
        float | None,
        typer.Option(
            min=0.0, max=0.9999999, metavar="X", help="Decay of the weights' moving average."
        ),
    ] = None,
    ema_warmup: Annotated[
        bool | None,
        typer.Option("--ema-warmup/--no-ema-warmup", help="Warm the moving average up."),
    ] = None,
    sigma_sampling: Annotated[
        str | None, typer.Option(metavar="NAME", help="time-weighted or lognormal.")
    ] = None,
    curriculum: Annotated[
        str | None, typer.Option(metavar="NAME", help="staged or exponential.")
    ] = None,
    curriculum_stages: Annotated[
        int | None,
        typer.Option(min=1, metavar="N", help="Stages of the staged curriculum."),
    ] = None,
    curriculum_first_stage: Annotated[
        int | None,
        typer.Option(min=0, metavar="N", help="Start there (0: plain denoising first)."),
    ] = None,
    consistency_precision: Annotated[
        str | None,
        typer.Option(
            metavar="NAME",
            help="auto (fp32 where bf16 rounding would swamp the loss), fp32, bf16 or inherit.",
        ),
    ] = None,
    zero_init_head: Annotated[
        bool | None,
        typer.Option("--zero-init-head/--no-zero-init-head", help="Start the output head at zero."),
    ] = None,
    frequency_scaling: Annotated[
        bool | None,
        typer.Option("--frequency-scaling/--no-frequency-scaling", help="New runs: model switch."),
    ] = None,
    summary_index: Annotated[
        bool | None,
        typer.Option("--summary-index/--no-summary-index", help="New runs: model switch."),
    ] = None,
    workers: Annotated[
        int | None, typer.Option(min=0, metavar="N", help="Data worker processes.")
    ] = None,
    seed: Annotated[
        int | None, typer.Option(metavar="N", help="Seed of weights, crops and noise.")
    ] = None,
    device: DeviceOption = "auto",
    precision: Annotated[
        str | None,
        typer.Option(metavar="NAME", help="auto, bf16 or fp32 (encoder and decoder)."),
    ] = None,
    threads: ThreadsOption = None,
    validation: Annotated[
        Path | None,
        typer.Option(
            metavar="DIR",
            help="Folder of clips reconstructed at each validation (a resumed run keeps it).",
        ),
    ] = None,
    no_validation: Annotated[
        bool, typer.Option("--no-validation", help="Do not validate (a resumed run: no more).")
    ] = False,
    validate_every: Annotated[
        int | None, typer.Option(min=1, metavar="N", help="Steps between validations (500).")
    ] = None,
    checkpoint_every: Annotated[
        int | None, typer.Option(min=1, metavar="N", help="Steps between checkpoints (100).")
    ] = None,
    log_every: Annotated[
        int | None, typer.Option(min=1, metavar="N", help="Steps between log lines (10).")
    ] = None,
    quiet: QuietOption = False,
) -> None:
    """Train a model by consistency training (resumable; Ctrl-C saves and exits).

    Unset options take the defaults of docs/TRAINING.md. A resumed run keeps the
    settings it started with; only the worker count, the validation folder and how
    often it logs, validates and saves can be changed."""
    from ..runtime import resolve_device, set_threads
    from ..training import TrainingPlan
    from ..training import train as run_training

    check_runtime(device)
    if validation and no_validation:
        raise typer.BadParameter("--validation and --no-validation exclude each other")
    if threads:
        set_threads(threads)
    validation_folder = "" if no_validation else validation and str(validation.resolve())
    given = dict(
        preset=preset_name,
        batch_size=batch_size,
        total_steps=total_steps,
        learning_rate=learning_rate,
        ema_decay=ema_decay,
        ema_warmup=ema_warmup,
        sigma_sampling=sigma_sampling,
        curriculum=curriculum,
        curriculum_stages=curriculum_stages,
        curriculum_first_stage=curriculum_first_stage,
        consistency_precision=consistency_precision,
        zero_init_head=zero_init_head,
        seed=seed,
        precision=precision,
        workers=workers,
        log_every=log_every,
        validate_every=validate_every,
        checkpoint_every=checkpoint_every,
        validation_folder=validation_folder,
    )
    switches = dict(frequency_scaling=frequency_scaling, summary_index_embedding=summary_index)
    try:
        plan = TrainingPlan.from_options(given, switches, resume=resume, init=init)
    except ValueError as problem:
        raise typer.BadParameter(str(problem)) from None

    def show(row: dict) -> None:
        if not quiet:
            say(
                f"step {row['step']}  loss {row['loss']:.4g}  lr {row['lr']:.3g}  "
                f"gap {row['gap']:.4g}  grad {row['grad_norm']:.3g}  "
                f"{row['samples_per_s']:.2f} samples/s"
            )

    trainer = run_training(
        data,
        run,
        settings=plan.settings,
        model_config=plan.model_config,
        steps=steps,
        device=resolve_device(device),
        resume=resume,
        on_log=show,
        initial_weights=init,
        added_parts=plan.added_parts,
        routine=plan.routine,
    )
    if not quiet:
        note(f"checkpoint at step {trainer.step} in {run}")


@app.command(short_help="Export a checkpoint as a model file.")
def export(
    checkpoint: Annotated[
        Path, typer.Argument(metavar="CHECKPOINT", help="Training checkpoint (.safetensors).")
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", metavar="PATH", help="Weights file to write.")
    ],
    name: Annotated[
        str | None, typer.Option(metavar="NAME", help="Model name stored in the file.")
    ] = None,
    force: ForceOption = False,
    quiet: QuietOption = False,
) -> None:
    """Export a checkpoint's EMA weights as a float16 model file for --model."""
    from ..training import export_checkpoint

    check_output(str(output), force, [str(checkpoint)])
    model_id = export_checkpoint(checkpoint, output, name)
    if not quiet:
        note(f"wrote {output} (model {model_id})")
