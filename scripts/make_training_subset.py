#!/usr/bin/env python3
"""Cut a compact training subset from a data set's ``train/`` folder.

For training on a machine the full data set cannot reach (a rented GPU with no network,
a size limit on what can be copied there), this writes pieces of every track as mono
(mid) Ogg Vorbis, round-robin over the tracks in a seeded random order, until a size
budget is reached. So every track is represented before any track gets a second piece,
and the subset is the same on every run with the same arguments. ``m2l train`` reads the
result like any folder of audio; ``OUT/subset.csv`` says where each piece came from
(the licences are in the data set's own manifest).

Usage::

    python scripts/make_training_subset.py data/train subset --budget-mib 48
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from m2l_cli.errors import M2LError
from m2l_cli.training.data import Track, find_tracks

SAMPLE_RATE = 44100


def piece_plan(tracks: list[Track], piece_seconds: float, seed: int) -> list[tuple[Track, int]]:
    """(track, start sample) of every piece, in writing order: round r holds the r-th
    piece of every track that has one, tracks and pieces both shuffled by `seed`."""
    rng = np.random.default_rng(seed)
    piece = int(piece_seconds * SAMPLE_RATE)
    starts = {}
    for track in tracks:
        starts[track] = [int(k) * piece for k in rng.permutation(track.frames // piece)]
    order = [tracks[i] for i in rng.permutation(len(tracks))]
    rounds = max((len(pieces) for pieces in starts.values()), default=0)
    return [
        (track, starts[track][r])
        for r in range(rounds)
        for track in order
        if r < len(starts[track])
    ]


def write_subset(args: argparse.Namespace) -> int:
    piece = int(args.piece_seconds * SAMPLE_RATE)
    try:
        tracks = find_tracks(args.train, piece, SAMPLE_RATE)
    except M2LError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    budget = args.budget_mib * 2**20
    total_bytes, rows = 0, []
    for track, start in piece_plan(tracks, args.piece_seconds, args.seed):
        relative = Path(track.path).relative_to(args.train)
        target = args.out / relative.parent / f"{relative.stem}-{start // SAMPLE_RATE:05d}.ogg"
        audio, _ = sf.read(track.path, frames=piece, start=start, always_2d=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        sf.write(
            str(target),
            audio.mean(axis=1),
            SAMPLE_RATE,
            format="OGG",
            subtype="VORBIS",
            compression_level=1.0 - args.quality,
        )
        size = target.stat().st_size
        if total_bytes + size > budget:
            target.unlink()
            break
        total_bytes += size
        rows.append((str(target.relative_to(args.out)), str(relative), start / SAMPLE_RATE, size))
    with open(args.out / "subset.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "source", "start_s", "bytes"])
        writer.writerows(rows)
    hours = len(rows) * args.piece_seconds / 3600
    print(
        f"{len(rows)} pieces from {len({row[1] for row in rows})} of {len(tracks)} tracks, "
        f"{hours:.2f} h, {total_bytes / 2**20:.1f} MiB in {args.out}"
    )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("train", type=Path, help="the data set's train/ folder")
    parser.add_argument("out", type=Path, help="folder to write (must not exist)")
    parser.add_argument("--budget-mib", type=float, default=48.0, help="size limit, MiB")
    parser.add_argument("--piece-seconds", type=float, default=20.0, help="length of a piece")
    parser.add_argument("--quality", type=float, default=0.3, help="Vorbis quality, 0 to 1")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.out.exists():
        print(f"error: {args.out} exists", file=sys.stderr)
        return 1
    if not 0.0 <= args.quality <= 1.0 or args.piece_seconds < 2.0:
        print("error: --quality must be in [0, 1] and --piece-seconds at least 2", file=sys.stderr)
        return 1
    return write_subset(args)


if __name__ == "__main__":
    sys.exit(main())
