"""A report of per-file scores for one or more systems, and what could not be compared:
summaries (mean and median), JSON, and rows formatted for tables."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .metrics import BANDS, band_key

Row = dict[str, Any]


@dataclass(frozen=True)
class Column:
    """One number of a row (its key), its heading in a table, and its decimals there."""

    key: str
    title: str
    decimals: int = 3

    def cell(self, value: float | None) -> str:
        return "-" if value is None else f"{float(value):.{self.decimals}f}"


def _hertz(value: int) -> str:
    """250 -> '250', 2500 -> '2.5k', 22050 -> '22k' (a heading, not a measurement)."""
    return (
        f"{value // 1000 if value >= 10000 else value / 1000:g}k" if value >= 1000 else str(value)
    )


SCORE_COLUMNS = (
    Column("si_sdr", "SI-SDR (dB)"),
    Column("log_mel", "log-mel"),
    Column("mr_stft", "MR-STFT"),
    Column("visqol", "ViSQOL"),
)
DIAGNOSTIC_COLUMNS = (
    Column("loudness_difference_lu", "LU", 2),
    *(Column(band_key(low, high), f"{_hertz(low)}-{_hertz(high)}", 1) for low, high in BANDS),
    Column("tick_ratio", "ticks", 2),
    Column("tick_ratio_reference", "input", 2),
)
DIAGNOSTICS_TITLE = "loudness (LU), band levels (dB; + = too loud), ticks (output, input)"
TABLE_COLUMNS = ("file", *(column.title for column in SCORE_COLUMNS))


@dataclass
class Report:
    """Per-file rows for one or more systems, and what could not be compared."""

    systems: dict[str, list[Row]] = field(default_factory=dict)
    missing_test: list[str] = field(default_factory=list)
    missing_reference: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, dict[str, dict[str, float | None]]]:
        """system -> metric -> {"mean", "median"} over the files that have the metric."""
        return {name: _summarise(rows) for name, rows in self.systems.items()}

    def to_json(self) -> str:
        """The report as indented JSON: files and summary per system, then the leftovers."""
        summary = self.summary()
        systems = {
            name: {"files": rows, "summary": summary[name]} for name, rows in self.systems.items()
        }
        document = {
            "systems": systems,
            "missing_test": self.missing_test,
            "missing_reference": self.missing_reference,
            "errors": self.errors,
        }
        return json.dumps(document, indent=2)

    def table_rows(
        self, system: str | None = None, columns: tuple[Column, ...] = SCORE_COLUMNS
    ) -> list[tuple[str, ...]]:
        """Formatted rows (file, then `columns`) for one system's files (default: the
        first), then its mean and median."""
        name = system if system is not None else next(iter(self.systems), "")
        rows = self.systems.get(name, [])
        summary = _summarise(rows)
        table = [(str(row["file"]), *(c.cell(row.get(c.key)) for c in columns)) for row in rows]
        for statistic in ("mean", "median"):
            table.append((statistic, *(c.cell(summary[c.key][statistic]) for c in columns)))
        return table

    def summary_rows(self, columns: tuple[Column, ...] = SCORE_COLUMNS) -> list[tuple[str, ...]]:
        """One formatted row of means (system, then `columns`) per system, side by side."""
        summary = self.summary()
        return [
            (name, *(c.cell(summary[name][c.key]["mean"]) for c in columns)) for name in summary
        ]


def _summarise(rows: list[Row]) -> dict[str, dict[str, float | None]]:
    """Mean and median of every score and diagnostic, ignoring missing (None) values."""
    result: dict[str, dict[str, float | None]] = {}
    for column in SCORE_COLUMNS + DIAGNOSTIC_COLUMNS:
        values = [float(row[column.key]) for row in rows if row.get(column.key) is not None]
        result[column.key] = {
            "mean": float(np.mean(values)) if values else None,
            "median": float(np.median(values)) if values else None,
        }
    return result
