"""`m2l stats` and `embed`: statistics of a folder's latents, features of audio and
containers."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from ..defaults import DEFAULT_BATCH_SIZE
from ..display import error, note, table, terminal_width
from ..paths import STDIO, check_output
from ..stdio import print_text
from ..text import shown
from .common import (
    BatchOption,
    DeviceOption,
    ForceOption,
    ModelOption,
    PrecisionOption,
    QuietOption,
    ThreadsOption,
    app,
    check_runtime,
    load_codec,
)


@app.command(short_help="Mean and std per latent dimension of a folder's containers.")
def stats(
    root: Annotated[
        str, typer.Argument(metavar="DIR", help="Folder of .m2l containers (recursive), or one.")
    ],
    output: Annotated[
        str | None, typer.Option("--output", "-o", metavar="OUT", help="Write them as JSON here.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print them as JSON.")] = False,
    force: ForceOption = False,
) -> None:
    """Per-dimension mean and standard deviation of the latents of every container under
    DIR, in one streaming pass (for normalising latents; m2l_cli.dataset.LatentStats)."""
    if output is not None:
        check_output(output, force, [root])
    from ..atomic import AtomicOutput
    from ..dataset import latent_stats

    found = latent_stats(root).to_json()
    text = json.dumps(found, indent=1)
    if output is not None:
        with AtomicOutput(output) as temporary:
            temporary.write_text(text + "\n")
    if as_json:
        print_text(text)
    elif output is None or output != STDIO:
        rows = [
            (str(dimension), f"{mean:+.4f}", f"{std:.4f}")
            for dimension, (mean, std) in enumerate(zip(found["mean"], found["std"], strict=True))
        ]
        title = f"{found['files']} files, {found['vectors']} latent vectors"
        print_text(table(title, ("dimension", "mean", "std"), rows, terminal_width(sys.stdout)))


@app.command(short_help="MIR features of audio files or folders (or pooled latents).")
def embed(
    source: Annotated[
        str, typer.Argument(metavar="IN", help="Audio file, .m2l container, or a folder of them.")
    ],
    output: Annotated[
        str | None,
        typer.Option(
            "--output",
            "-o",
            metavar="OUT",
            help="A .npy (a file), a .npz or a folder of .npy (a folder; default: DIR.npz).",
        ),
    ] = None,
    pool: Annotated[
        str, typer.Option(metavar="HOW", help="mean (over chunks) or none (per chunk).")
    ] = "mean",
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
    model: ModelOption = None,
    device: DeviceOption = "auto",
    precision: PrecisionOption = "auto",
    threads: ThreadsOption = None,
    batch_size: BatchOption = DEFAULT_BATCH_SIZE,
    force: ForceOption = False,
    quiet: QuietOption = False,
) -> None:
    """The encoder's pre-bottleneck summary embeddings of audio ([channels, K x dim]
    pooled, [channels, chunks, K, dim] with --pool none), or a container's latents
    pooled the same way; one .npy per input (a folder's tree mirrored) or one .npz."""
    if pool not in ("mean", "none"):
        raise typer.BadParameter("must be mean or none", param_hint="--pool")
    from ..feature_files import embed_files, feature_inputs, plan_outputs, save_features

    inputs = feature_inputs(source)
    plan = plan_outputs(source, inputs, output)
    plan.make_folders()
    for target in plan.targets():
        check_output(target, force, [str(path) for path in inputs])
    check_runtime(device, precision)
    needs_model = any(path.suffix.lower() != ".m2l" for path in inputs)
    codec = load_codec(model, device, precision, threads, quiet) if needs_model else None
    results = list(embed_files(codec, inputs, pool=pool, batch_size=batch_size))
    for result in results:
        if result.error:
            error(result.error)
    written = save_features(results, plan)
    if as_json:
        summary = [
            {
                "file": result.source,
                "kind": result.kind,
                "pool": pool,
                "output": written.get(result.source),
                "shape": list(result.features.shape) if result.features is not None else None,
                "error": result.error,
            }
            for result in results
        ]
        print_text(json.dumps(summary, indent=1))
    elif not quiet:
        for target in sorted(set(written.values())):
            note(f"wrote {shown(target)}")
    raise typer.Exit(1 if any(result.error for result in results) else 0)
