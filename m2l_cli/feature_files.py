"""Features of files and folders, as `m2l embed` writes them: audio through the
encoder (the pre-bottleneck summary embeddings, batched across files), containers'
latents pooled the same way; saved as one .npy per input or one .npz for a folder."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, cast

import numpy as np

from .atomic import AtomicOutput
from .audio import AUDIO_SUFFIXES, AudioSource
from .codec import Codec
from .container import SUFFIX, Latents
from .defaults import DEFAULT_BATCH_SIZE
from .encoding import EncodeJob
from .errors import M2LError
from .features import pool_chunks
from .paths import find_files

EMBEDDINGS = "summary embeddings"
"""The kind of features of audio: the encoder's pre-bottleneck summary embeddings."""
LATENTS = "latents"
"""The kind of features of a container: its latents (after the bottleneck)."""
KIND_KEY = "__kind__"
"""The .npz entry that names the kind of every other entry."""


@dataclass
class FeatureResult:
    """One input's features ([channels, K * dim] pooled, [channels, chunks, K, dim]
    not), or the error that stopped it."""

    source: str
    kind: str
    features: np.ndarray | None = None
    error: str | None = None


def feature_inputs(root: str | Path) -> list[Path]:
    """A file, or the audio files and containers under a folder (recursively)."""
    path = Path(root)
    if path.is_dir():
        return find_files(path, {*AUDIO_SUFFIXES, SUFFIX})
    if not path.exists():
        raise M2LError(f"{root}: no such file or folder")
    return [path]


def embed_files(
    codec: Codec | None,
    sources: list[Path],
    *,
    pool: str | None = "mean",
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> Iterator[FeatureResult]:
    """Features of every source, in the order given: containers' latents pooled (no
    model needed), audio's summary embeddings from `codec` with chunks batched across
    files. A failing input gives its error and the others go on."""
    audio = [source for source in sources if source.suffix.lower() != SUFFIX]
    if audio and codec is None:
        raise M2LError("audio inputs need a model")
    jobs = (EncodeJob(partial(AudioSource, source), str(source)) for source in audio)
    embedded = codec.embed_jobs(jobs, batch_size=batch_size) if codec and audio else iter(())
    for source in sources:
        if source.suffix.lower() == SUFFIX:
            yield _pooled(str(source), LATENTS, partial(_latent_values, source), pool)
        else:
            job, values = next(embedded)
            yield _pooled(job.name, EMBEDDINGS, partial(_checked, values), pool)


def _latent_values(path: Path) -> np.ndarray:
    return Latents.load(path).values


def _checked(values: np.ndarray | M2LError) -> np.ndarray:
    if isinstance(values, M2LError):
        raise values
    return values


def _pooled(
    source: str, kind: str, values: Callable[[], np.ndarray], pool: str | None
) -> FeatureResult:
    """The result of pooling what `values()` gives, or its one-line error."""
    try:
        features = pool_chunks(values(), pool)
    except M2LError as error:
        return FeatureResult(source, kind, error=str(error))
    return FeatureResult(source, kind, features)


def save_npy(features: np.ndarray, target: str | Path) -> int:
    """One input's features as .npy, written atomically; returns the bytes written."""
    with AtomicOutput(target) as temporary, temporary.open("wb") as stream:
        np.save(stream, features, allow_pickle=False)  # a name would get `.npy` appended
        return stream.tell()


def save_npz(results: list[FeatureResult], root: str | Path, target: str | Path) -> int:
    """Every result's features in one .npz, named by their path under `root`, plus
    `__kind__` (the kind of each, in the same order); written atomically."""
    arrays = {
        _relative(result.source, root): result.features
        for result in results
        if result.features is not None
    }
    kinds = [result.kind for result in results if result.features is not None]
    buffer = io.BytesIO()
    entries: dict[str, Any] = {**arrays, KIND_KEY: np.array(kinds)}
    cast(Any, np.savez)(buffer, **entries)  # numpy's stubs take the names for its options
    with AtomicOutput(target) as temporary:
        temporary.write_bytes(buffer.getvalue())
        return len(buffer.getvalue())


def _relative(source: str, root: str | Path) -> str:
    path, base = Path(source), Path(root)
    return str(path.relative_to(base)) if base.is_dir() else path.name


@dataclass
class FeaturePlan:
    """Where features go: one .npz (`archive`, names relative to `root`), or one .npy
    per input (`files`: input -> output)."""

    root: Path
    archive: Path | None = None
    files: dict[str, Path] | None = None

    def targets(self) -> list[str]:
        if self.archive is not None:
            return [str(self.archive)]
        return [str(target) for target in (self.files or {}).values()]

    def make_folders(self) -> None:
        """Creates the folders of a mirrored tree (M2LError if one cannot be made)."""
        for target in (self.files or {}).values():
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                reason = error.strerror or error
                raise M2LError(f"{target.parent}: cannot make the folder ({reason})") from None


def plan_outputs(source: str | Path, inputs: list[Path], output: str | None) -> FeaturePlan:
    """A file's features go to OUT (.npy, or .npz), by default IN.npy beside it; a
    folder's to OUT.npz, to a folder OUT of .npy files mirroring its tree, or by
    default to DIR.npz beside the folder."""
    root = Path(source)
    if output is not None and output.lower().endswith(".npz"):
        return FeaturePlan(root, archive=Path(output))
    if not root.is_dir():
        return FeaturePlan(root, files={str(inputs[0]): Path(output or f"{source}.npy")})
    if output is None:
        whole = root.resolve()
        return FeaturePlan(root, archive=whole.parent / f"{whole.name}.npz")
    mirrored = {str(path): Path(output) / f"{path.relative_to(root)}.npy" for path in inputs}
    return FeaturePlan(root, files=mirrored)


def save_features(results: list[FeatureResult], plan: FeaturePlan) -> dict[str, str]:
    """Writes the features of the results that have them as `plan` says; returns
    input -> output for what was written."""
    done = [result for result in results if result.features is not None]
    if plan.archive is not None:
        if not done:
            return {}
        save_npz(done, plan.root, plan.archive)
        return {result.source: str(plan.archive) for result in done}
    written = {}
    for result in done:
        assert plan.files is not None and result.features is not None
        target = plan.files[result.source]
        save_npy(result.features, target)
        written[result.source] = str(target)
    return written
