#!/usr/bin/env python3
"""Cut the bundled example clip ``m2l_cli/examples/example.flac``.

The clip is 6 s of "hr3-jungle" by Shawn Parrotte (CC-BY-SA-3.0) from the Debian package
hyperrogue-music, starting at the strongest onset between 30 and 31 s into the track, with
5 ms fades at both ends so that the cut does not click. Written as 44.1 kHz stereo 16-bit
FLAC. The package must be unpacked first (``scripts/build_dataset.py`` does that into its
cache); the track is part of the val_ood split, so the clip is never trained on.

Usage::

    python scripts/make_example_clip.py --cache data/cache
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

TRACK = "usr/share/hyperrogue/music/hr3-jungle.ogg"
PACKAGE = "hyperrogue-music"
SAMPLE_RATE = 44100
START_S = 30.0
SEARCH_S = 1.0
LENGTH_S = 6.0
PRE_ONSET_S = 0.02
FADE_S = 0.005


def strongest_onset(mono: np.ndarray, sr: int, start: float, span: float) -> float:
    """Time (s) of the largest spectral-flux peak in ``[start, start + span)``."""
    n, hop = 1024, 256
    seg = mono[int(start * sr) - n : int((start + span) * sr) + n]
    frames = np.lib.stride_tricks.sliding_window_view(seg, n)[::hop] * np.hanning(n)
    mag = np.log1p(100.0 * np.abs(np.fft.rfft(frames, axis=1)))
    flux = np.maximum(np.diff(mag, axis=0), 0.0).sum(axis=1)
    times = start - n / sr + (np.arange(1, len(frames)) * hop + n / 2) / sr
    inside = (times >= start) & (times < start + span)
    return float(times[inside][np.argmax(flux[inside])])


def cut_clip(audio: np.ndarray, sr: int) -> np.ndarray:
    """Return LENGTH_S seconds starting just before the strongest onset after START_S."""
    onset = strongest_onset(audio.mean(axis=1), sr, START_S, SEARCH_S)
    first = int(round((onset - PRE_ONSET_S) * sr))
    clip = audio[first : first + int(LENGTH_S * sr)].copy()
    fade = int(FADE_S * sr)
    ramp = (0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, fade)))[:, None]
    clip[:fade] *= ramp
    clip[-fade:] *= ramp[::-1]
    return clip


def main(argv: list[str] | None = None) -> int:
    """Write the example clip; return the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path("data/cache"),
        help="cache folder of build_dataset.py (default: data/cache)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parent.parent / "m2l_cli/examples/example.flac",
    )
    args = parser.parse_args(argv)
    source = args.cache / "unpacked" / PACKAGE / TRACK
    if not source.exists():
        print(
            f"{source} not found: run scripts/build_dataset.py --packages {PACKAGE} first",
            file=sys.stderr,
        )
        return 1
    audio, sr = sf.read(source, dtype="float32", always_2d=True)
    if sr != SAMPLE_RATE or audio.shape[1] != 2:
        print(f"unexpected format: {sr} Hz, {audio.shape[1]} channels", file=sys.stderr)
        return 1
    clip = cut_clip(audio, sr)
    peak = float(np.max(np.abs(clip)))
    if peak > 0.999:
        clip *= 0.999 / peak
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sf.write(args.out, clip, sr, subtype="PCM_16", format="FLAC")
    print(
        f"wrote {args.out}: {len(clip) / sr:.2f} s from {len(audio) / sr:.1f} s track, "
        f"{args.out.stat().st_size / 1e6:.2f} MB",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
