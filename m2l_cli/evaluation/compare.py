"""Scoring files and folders: pairing files by name, reading them (through `audio`),
coding them with a model, and collecting the scores in a Report."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..audio import audio_info, find_audio_files, read_excerpt
from ..config import ModelConfig
from ..defaults import DEFAULT_SIGMA_COND
from ..errors import EvaluationError, M2LError
from ..resampling import resample
from .metrics import Scores, naive_codec, score
from .report import Report

if TYPE_CHECKING:
    from ..codec import Codec

CODEC_SYSTEM = "m2l"
NAIVE_SYSTEM = "naive 689 Hz"
_DEFAULT_MODEL = ModelConfig()
CHUNK_SECONDS = _DEFAULT_MODEL.chunk_samples / _DEFAULT_MODEL.sample_rate
"""The chunk period ticks are looked for at when no model says otherwise."""


def read_clip(
    path: str | Path, *, offset: float = 0.0, max_seconds: float | None = None
) -> tuple[np.ndarray, int]:
    """A whole file (or `max_seconds` of it from `offset` seconds), [channels, samples],
    and its rate."""
    rate = audio_info(path).sample_rate
    start = round(offset * rate)
    frames = -1 if max_seconds is None else round(max_seconds * rate)
    audio = read_excerpt(path, start, frames).T
    if not audio.shape[1]:
        raise EvaluationError(f"{path}: no audio {'after the offset' if start else 'in the file'}")
    return np.ascontiguousarray(audio), rate


def compare_files(
    reference_path: str | Path,
    test_path: str | Path,
    *,
    use_visqol: bool = True,
    offset: float = 0.0,
    max_seconds: float | None = None,
) -> Scores:
    """Every score for one pair; the test file is resampled to the reference's rate."""
    reference, rate = read_clip(reference_path, offset=offset, max_seconds=max_seconds)
    test, test_rate = read_clip(test_path, offset=offset, max_seconds=max_seconds)
    try:
        return score(
            reference,
            resample(test, test_rate, rate),
            rate,
            chunk_seconds=CHUNK_SECONDS,
            use_visqol=use_visqol,
        )
    except EvaluationError as error:
        raise EvaluationError(f"{test_path}: {error}") from None


def audio_files(folder: str | Path) -> dict[str, Path]:
    """The audio files under `folder` that are not hidden, keyed by relative path without
    extension (so song.wav pairs with song.flac)."""
    root = Path(folder)
    found: dict[str, Path] = {}
    for path in find_audio_files(root):
        if path.name.startswith("."):
            continue
        key = path.relative_to(root).with_suffix("").as_posix()
        if key in found:
            raise EvaluationError(f"{folder}: both {found[key].name} and {path.name}; keep one")
        found[key] = path
    return found


def compare_folders(
    reference_dir: str | Path,
    test_dir: str | Path,
    *,
    use_visqol: bool = True,
    max_seconds: float | None = None,
    system: str = "test",
    progress: Callable[[str], None] | None = None,
) -> Report:
    """Compares files paired by relative path and stem; unpaired and bad files are listed."""
    references, tests = audio_files(reference_dir), audio_files(test_dir)
    report = Report(systems={system: []})
    report.missing_test = [
        str(path.relative_to(reference_dir)) for k, path in references.items() if k not in tests
    ]
    report.missing_reference = [
        str(path.relative_to(test_dir)) for k, path in tests.items() if k not in references
    ]
    for key, reference in references.items():
        if key not in tests:
            continue
        name = str(reference.relative_to(reference_dir))
        if progress:
            progress(name)
        try:
            row = compare_files(
                reference, tests[key], use_visqol=use_visqol, max_seconds=max_seconds
            )
        except M2LError as error:
            report.errors.append(str(error))
            continue
        report.systems[system].append({"file": name, **row})
    return report


def evaluate_codec(
    codec: Codec,
    folder: str | Path,
    *,
    sigma_cond: float = DEFAULT_SIGMA_COND,
    seed: int = 0,
    max_seconds: float | None = None,
    offset: float = 0.0,
    use_visqol: bool = True,
    progress: Callable[[str], None] | None = None,
) -> Report:
    """Encodes and decodes every audio file (or the one file `folder`) in memory; scores
    it beside the naive codec."""
    root = Path(folder)
    paths = {root.name: root} if root.is_file() else audio_files(root)
    chunk_seconds = codec.config.chunk_samples / codec.config.sample_rate
    report = Report(systems={CODEC_SYSTEM: [], NAIVE_SYSTEM: []})
    for path in paths.values():
        name = path.name if root.is_file() else str(path.relative_to(root))
        if progress:
            progress(name)
        try:
            audio, rate = read_clip(path, offset=offset, max_seconds=max_seconds)
            decoded = codec.decode(codec.encode(audio, rate), sigma_cond=sigma_cond, seed=seed)
            coded, naive = (
                score(audio, estimate, rate, chunk_seconds=chunk_seconds, use_visqol=use_visqol)
                for estimate in (decoded, naive_codec(audio, rate))
            )
        except M2LError as error:
            report.errors.append(_named(error, path))
            continue
        report.systems[CODEC_SYSTEM].append({"file": name, **coded})
        report.systems[NAIVE_SYSTEM].append({"file": name, **naive})
    return report


def _named(error: Exception, path: Path) -> str:
    """The error's message, prefixed with the file unless it already starts with it."""
    text = str(error)
    return text if text.startswith(str(path)) else f"{path}: {text}"
