"""`m2l eval`: objective scores and diagnostics of decoded audio against its input.

`metrics` holds the math on arrays; `compare` reads, pairs and codes files into a
`Report` (`report`), which summarises and formats the scores.
"""

from ..errors import EvaluationError
from .compare import (
    CODEC_SYSTEM,
    NAIVE_SYSTEM,
    audio_files,
    compare_files,
    compare_folders,
    evaluate_codec,
    read_clip,
)
from .metrics import (
    band_level_errors,
    integrated_loudness,
    log_mel_distance,
    loudness_difference,
    multi_resolution_stft_distance,
    naive_codec,
    score,
    si_sdr,
    tick_ratio,
    visqol,
)
from .report import TABLE_COLUMNS, Report

__all__ = [
    "CODEC_SYSTEM",
    "NAIVE_SYSTEM",
    "TABLE_COLUMNS",
    "EvaluationError",
    "Report",
    "audio_files",
    "band_level_errors",
    "compare_files",
    "compare_folders",
    "evaluate_codec",
    "integrated_loudness",
    "log_mel_distance",
    "loudness_difference",
    "multi_resolution_stft_distance",
    "naive_codec",
    "read_clip",
    "score",
    "si_sdr",
    "tick_ratio",
    "visqol",
]
