"""Validation during training: the EMA model reconstructs a few fixed clips and the
mean metrics go to validation.csv."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from ..audio import audio_info
from ..codec import Codec
from ..errors import M2LError
from ..evaluation import CODEC_SYSTEM, audio_files, evaluate_codec
from ..evaluation.report import DIAGNOSTIC_COLUMNS, SCORE_COLUMNS
from ..model import Music2Latent2

Validator = Callable[[Music2Latent2, torch.device], dict]


def make_validator(
    folder: Path, count: int = 4, seconds: float = 5.0, offset: float = 20.0
) -> Validator:
    """A validation pass: a model (the EMA weights) codes `count` fixed clips of `folder`
    (the first files in name order, `seconds` long from `offset`); returns mean metrics."""
    clips = [path for _, path in sorted(audio_files(folder).items())][:count]
    if not clips:
        raise M2LError(f"{folder}: no audio files to validate on")
    starts = [max(0.0, min(offset, audio_info(clip).duration - seconds)) for clip in clips]

    def validate(model: Music2Latent2, device: torch.device) -> dict:
        codec = Codec(model, "validation", device=device)
        rows = []
        for clip, start in zip(clips, starts, strict=True):
            report = evaluate_codec(codec, clip, max_seconds=seconds, offset=start)
            if report.errors:
                raise M2LError(report.errors[0])
            rows += report.systems[CODEC_SYSTEM]
        return {
            column.key: sum(row[column.key] for row in rows) / len(rows)
            for column in SCORE_COLUMNS + DIAGNOSTIC_COLUMNS
            if all(row.get(column.key) is not None for row in rows)
        }

    return validate
