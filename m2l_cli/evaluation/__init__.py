"""`m2l eval`: objective scores of decoded audio against its input.

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
    log_mel_distance,
    multi_resolution_stft_distance,
    naive_codec,
    score,
    si_sdr,
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
    "compare_files",
    "compare_folders",
    "evaluate_codec",
    "log_mel_distance",
    "multi_resolution_stft_distance",
    "naive_codec",
    "read_clip",
    "score",
    "si_sdr",
    "visqol",
]
