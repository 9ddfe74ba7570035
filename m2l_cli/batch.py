"""Planning a folder's worth of work: which files to encode (or decode), where each
output goes (beside its input, or in a mirrored tree), and which are skipped because
their output exists."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .audio import OutputFormat, find_audio_files
from .container import SUFFIX as CONTAINER_SUFFIX
from .paths import find_files


@dataclass
class BatchPlan:
    """(input, output) pairs to run, and the inputs skipped because their output exists."""

    pairs: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def plan_batch(
    folder: str | Path,
    *,
    decode: bool = False,
    output_dir: str | Path | None = None,
    format_name: str = OutputFormat.WAV.value,
    force: bool = False,
) -> BatchPlan:
    """Every audio file under `folder`, recursively (with `decode`: every container),
    paired with its output: beside it, or at the same relative path under `output_dir`
    (folders are made). Existing outputs are skipped unless `force`."""
    root = Path(folder)
    if decode:
        inputs, suffix = (
            find_files(root, {CONTAINER_SUFFIX}),
            OutputFormat.parse(format_name).suffix,
        )
    else:
        inputs, suffix = find_audio_files(root), CONTAINER_SUFFIX
    plan = BatchPlan()
    for path in inputs:
        relative = path.relative_to(root).with_suffix(suffix)
        target = Path(output_dir) / relative if output_dir else path.with_suffix(suffix)
        if target.exists() and not force:
            plan.skipped.append(str(path))
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        plan.pairs.append((str(path), str(target)))
    return plan
