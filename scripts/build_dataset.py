#!/usr/bin/env python3
"""Build the m2l music data set from freely licensed Debian packages.

The recipe, end to end, on a Debian machine (root only needed for ``apt-get update``):

1. ``apt-get download`` each package into the cache (``apt-get update`` first only when the
   package lists are missing, or with ``--update``) and unpack it with ``dpkg-deb -x``.
2. Find the music in each package: plain Vorbis/Opus files, Vorbis files inside ``.pk3``
   (zip) archives, and Frets on Fire songs whose stems are mixed into one track.
3. Decode with soundfile, resample to 44.1 kHz with soxr (HQ) where needed, scale tracks
   that peak above 1.0 down to 0.999, and write 16-bit FLAC, in a process pool.
4. Drop short files, low sample rates and sound effects (recorded in the manifest).
5. Split by track groups (near-duplicates stay together): whole packages held out as
   ``val_ood``, about 5% of the remaining tracks of each package as ``val``, the rest
   ``train``.
6. Write ``OUT/{train,val,val_ood}/<package>/<track>.flac`` plus ``OUT/manifest.json`` and
   ``OUT/manifest.csv``.

Re-running skips packages already downloaded and tracks already written. See docs/DATA.md.

Usage::

    python scripts/build_dataset.py --out data/
    python scripts/build_dataset.py --packages hyperrogue-music --out /tmp/m2l-data-test
"""

from __future__ import annotations

import argparse
import csv
import fnmatch
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import soxr

TARGET_SR = 44100
MIN_SECONDS = 20.0
MIN_SOURCE_SR = 44100
PEAK_LIMIT = 1.0
PEAK_TARGET = 0.999
INFRASONIC_HZ = 20.0  # energy below this is measured (DC offset and drift), not removed
VAL_FRACTION = 0.05
VAL_MIN_TRACKS = 10  # packages with fewer usable tracks than this give nothing to val
VAL_OOD_PACKAGES = ("singularity-music", "hyperrogue-music")
SPLITS = ("train", "val", "val_ood")
AUDIO_EXTENSIONS = (".ogg", ".opus")
SOUND_EFFECT_NAMES = frozenset({"silence", "thunder"})

# Suffixes that mark a re-release of the same piece; stripped (repeatedly) to group tracks.
NEAR_DUPLICATE_SUFFIXES = (
    "_enhanced",
    "-enhanced",
    "_old",
    "-old",
    "_sd",
    "-sd",
    "_revisited",
    "-revisited",
)
# Near-duplicates whose names do not show it: package -> {normalised name: group key}.
GROUP_ALIASES: dict[str, dict[str, str]] = {
    "drascula-music": {"track30": "track1"},
}

FOF_STEM_EXCLUDE = ("preview",)


@dataclass(frozen=True)
class PackageSpec:
    """Where a package keeps its music and under which terms.

    ``include`` patterns are matched (fnmatch, ``*`` crosses folders) against the path of each
    candidate file relative to the unpacked package, or against the member name inside a
    ``.pk3``. ``licence`` and ``holder`` are the package-level defaults; per-file entries
    found in the package's machine-readable copyright file take precedence.
    """

    licence: str
    holder: str
    kind: str = "files"  # "files", "pk3" or "fof"
    include: tuple[str, ...] = ("*",)
    pk3: str = ""


PACKAGES: dict[str, PackageSpec] = {
    "ufoai-music": PackageSpec(
        licence="CC-BY-SA-3.0 / GPL-2 / CC-BY-3.0 / public-domain (per file)",
        holder="The UFO:AI Team",
        kind="pk3",
        pk3="usr/share/games/ufoai/base/0music.pk3",
        include=("music/*",),
    ),
    "warzone2100-music": PackageSpec(
        licence="GPL-2+",
        holder="Warzone 2100 Project",
        include=("usr/share/games/warzone2100/music/*",),
    ),
    "wesnoth-1.16-music": PackageSpec(
        licence="GPL-2+",
        holder="The Battle for Wesnoth Project",
        include=("usr/share/games/wesnoth/*/music/*",),
    ),
    "hedgewars-data": PackageSpec(
        licence="GPL-2",
        holder="Hedgewars Project",
        include=("usr/share/games/hedgewars/Data/Music/*",),
    ),
    "nexuiz-music": PackageSpec(
        licence="GPL-2+",
        holder="Alientrap",
        kind="pk3",
        pk3="usr/share/games/nexuiz/data/music.pk3",
        include=("sound/cdtracks/*",),
    ),
    "singularity-music": PackageSpec(
        licence="CC-BY-SA-3.0",
        holder="Max McCracken",
        include=("usr/share/games/singularity/music/*",),
    ),
    "drascula-music": PackageSpec(
        licence="Drascula-License (custom: free redistribution, no fee for the game itself)",
        holder="Alcachofa Soft S.L.",
        include=("usr/share/scummvm/drascula/audio/*",),
    ),
    "hyperrogue-music": PackageSpec(
        licence="CC-BY-SA-3.0",
        holder="Shawn Parrotte / Lincoln Domina / Will Savino (per file)",
        include=("usr/share/hyperrogue/music/*",),
    ),
    "fretsonfire-songs-muldjord": PackageSpec(
        licence="CC-BY-SA-3.0",
        holder="El Senator (Muldjord)",
        kind="fof",
        include=("usr/share/games/fretsonfire/data/songs/*",),
    ),
    "fretsonfire-songs-sectoid": PackageSpec(
        licence="MIT",
        holder="Carlos Viola Iborra",
        kind="fof",
        include=("usr/share/games/fretsonfire/data/songs/*",),
    ),
}

# Warzone's copyright file covers everything with "Files: *" (GPL-2+); the albums' own
# license.txt files dual-license LupusMechanicus's new soundtracks (CC-BY-SA-3.0+ or GPL-2+),
# except track3_enhanced, which derives from the original (GPL-2+) soundtrack.
WARZONE_DUAL = ("CC-BY-SA-3.0+ or GPL-2+", "LupusMechanicus")


@dataclass
class Track:
    """One output track: its sources, where it goes, and its metadata."""

    package: str
    name: str
    sources: list[tuple[str, str]]  # (file path, zip member or "")
    source_name: str
    licence: str
    holder: str
    group: str = ""
    split: str = ""
    info: dict[str, Any] = field(default_factory=dict)

    def out_rel(self) -> str:
        """Path of the output FLAC relative to OUT."""
        return f"{self.split}/{self.package}/{self.name}.flac"


def log(msg: str) -> None:
    """Print a progress line to stderr."""
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------
# Downloading and unpacking
# ---------------------------------------------------------------------------------------


def apt_update() -> None:
    """Run ``apt-get update`` (needs root)."""
    log("apt-get update")
    subprocess.run(["apt-get", "update"], check=True, stdout=subprocess.DEVNULL)


def find_deb(debs_dir: Path, package: str) -> Path | None:
    """Return an already downloaded .deb of ``package`` in ``debs_dir``, if any."""
    hits = sorted(debs_dir.glob(f"{package}_*.deb"))
    return hits[-1] if hits else None


def download_deb(package: str, debs_dir: Path, state: dict[str, bool]) -> Path:
    """Download ``package`` with ``apt-get download`` unless it is already in the cache.

    ``state["updated"]`` records whether ``apt-get update`` already ran in this process; it
    is run (once) when the download fails, which is what happens when the lists are missing.
    """
    debs_dir.mkdir(parents=True, exist_ok=True)
    existing = find_deb(debs_dir, package)
    if existing is not None:
        log(f"[{package}] cached {existing.name}")
        return existing
    for attempt in range(2):
        log(f"[{package}] apt-get download")
        proc = subprocess.run(
            ["apt-get", "download", package], cwd=debs_dir, capture_output=True, text=True
        )
        deb = find_deb(debs_dir, package)
        if proc.returncode == 0 and deb is not None:
            return deb
        errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("E:")]
        if attempt == 0 and not state.get("updated"):
            log(
                f"[{package}] download failed ({'; '.join(errors) or proc.returncode}); "
                "updating package lists"
            )
            apt_update()
            state["updated"] = True
            continue
        raise RuntimeError(
            f"apt-get download {package} failed: {'; '.join(errors) or proc.stderr.strip()[-300:]}"
        )
    raise RuntimeError(f"apt-get download {package} failed")


def unpack_deb(deb: Path, root: Path) -> Path:
    """Unpack ``deb`` into ``root`` with ``dpkg-deb -x`` (once; a marker file records it)."""
    marker = root / ".unpacked"
    if marker.exists() and marker.read_text().strip() == deb.name:
        return root
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    marker.write_text(deb.name + "\n")
    return root


# ---------------------------------------------------------------------------------------
# Licences
# ---------------------------------------------------------------------------------------


def parse_dep5(text: str) -> list[dict[str, str]]:
    """Parse a machine-readable (DEP-5) copyright file into paragraphs of fields."""
    paragraphs: list[dict[str, str]] = []
    for block in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = ""
        for line in block.splitlines():
            if line[:1] in (" ", "\t") and key:
                fields[key] += "\n" + line.strip()
            elif ":" in line:
                key, _, value = line.partition(":")
                key = key.strip()
                fields[key] = value.strip()
        if fields:
            paragraphs.append(fields)
    return paragraphs


def per_file_licences(copyright_file: Path) -> dict[str, tuple[str, str]]:
    """Map file base names listed explicitly in a DEP-5 copyright file to (licence, holder).

    Only patterns without wildcards in their last component are used, so a track's entry is
    found by its file name whatever prefix the upstream tree used. Later paragraphs win, as
    in DEP-5.
    """
    if not copyright_file.exists():
        return {}
    text = copyright_file.read_text(errors="replace")
    if not text.startswith("Format:"):
        return {}
    table: dict[str, tuple[str, str]] = {}
    for para in parse_dep5(text):
        if "Files" not in para or "License" not in para:
            continue
        licence = para["License"].splitlines()[0].strip()
        holder = " / ".join(
            dict.fromkeys(ln.strip() for ln in para.get("Copyright", "").splitlines() if ln.strip())
        )
        for pattern in para["Files"].split():
            base = pattern.rsplit("/", 1)[-1]
            if base and not any(ch in base for ch in "*?["):
                table[base] = (licence, holder)
    return table


def licence_for(
    package: str, rel_path: str, spec: PackageSpec, table: dict[str, tuple[str, str]]
) -> tuple[str, str]:
    """Return (licence, holder) of one source file of ``package``."""
    if package == "warzone2100-music":
        new_album = "/aftermath_soundtrack/" in rel_path or "/legacy_soundtrack/" in rel_path
        if new_album and not rel_path.endswith("/track3_enhanced.opus"):
            return WARZONE_DUAL
        return spec.licence, spec.holder
    base = rel_path.rsplit("/", 1)[-1]
    if base in table:
        return table[base]
    return spec.licence, spec.holder


# ---------------------------------------------------------------------------------------
# Finding tracks
# ---------------------------------------------------------------------------------------


def safe_name(name: str) -> str:
    """Turn a file or folder name into a safe output stem (spaces and odd characters -> _)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")
    return cleaned or "track"


def matches(rel: str, patterns: Iterable[str]) -> bool:
    """Whether ``rel`` matches any fnmatch pattern (``*`` also matches ``/``)."""
    return any(fnmatch.fnmatchcase(rel, pat) for pat in patterns)


def find_tracks(package: str, root: Path) -> list[Track]:
    """List the candidate music tracks of an unpacked package."""
    spec = PACKAGES[package]
    table = per_file_licences(root / "usr/share/doc" / package / "copyright")
    tracks: list[Track] = []
    if spec.kind == "pk3":
        pk3 = root / spec.pk3
        with zipfile.ZipFile(pk3) as zf:
            members = sorted(m.filename for m in zf.infolist() if not m.is_dir())
        for member in members:
            if member.lower().endswith(AUDIO_EXTENSIONS) and matches(member, spec.include):
                lic, holder = licence_for(package, member, spec, table)
                tracks.append(
                    Track(
                        package,
                        safe_name(Path(member).stem),
                        [(str(pk3), member)],
                        member,
                        lic,
                        holder,
                    )
                )
    elif spec.kind == "fof":
        for song_dir in sorted(
            p for p in root.glob("usr/share/games/fretsonfire/data/songs/*/*") if p.is_dir()
        ):
            stems = sorted(
                p
                for p in song_dir.iterdir()
                if p.suffix.lower() in AUDIO_EXTENSIONS
                and not p.is_symlink()
                and not p.stem.lower().startswith(FOF_STEM_EXCLUDE)
            )
            if not stems:
                continue
            rel = song_dir.relative_to(root).as_posix()
            lic, holder = licence_for(package, rel, spec, table)
            tracks.append(
                Track(
                    package,
                    safe_name(song_dir.name),
                    [(str(p), "") for p in stems],
                    f"{song_dir.name}/{{{','.join(p.name for p in stems)}}}",
                    lic,
                    holder,
                )
            )
    else:
        for path in sorted(root.rglob("*")):
            rel = path.relative_to(root).as_posix()
            if (
                path.suffix.lower() in AUDIO_EXTENSIONS
                and path.is_file()
                and not path.is_symlink()
                and matches(rel, spec.include)
            ):
                lic, holder = licence_for(package, rel, spec, table)
                tracks.append(
                    Track(package, safe_name(path.stem), [(str(path), "")], rel, lic, holder)
                )
    # Make output names unique inside the package (prefix the parent folder on clashes).
    counts: dict[str, int] = {}
    for t in tracks:
        counts[t.name] = counts.get(t.name, 0) + 1
    for t in tracks:
        if counts[t.name] > 1:
            parent = Path(t.source_name).parent.name
            t.name = safe_name(f"{parent}_{t.name}")
    return tracks


# ---------------------------------------------------------------------------------------
# Grouping and splitting
# ---------------------------------------------------------------------------------------


def group_key(package: str, name: str) -> str:
    """Grouping key of a track: near-duplicates of one piece get the same key.

    Lower-cases the name, strips re-release suffixes (``_enhanced``, ``-old``, ``_sd``,
    ``_revisited``) and trailing separators, then applies the package's alias table.
    """
    key = name.lower()
    changed = True
    while changed:
        changed = False
        key = key.rstrip("_- ")
        for suffix in NEAR_DUPLICATE_SUFFIXES:
            if key.endswith(suffix) and len(key) > len(suffix):
                key = key[: -len(suffix)]
                changed = True
    return GROUP_ALIASES.get(package, {}).get(key, key)


def stable_hash(text: str) -> int:
    """A hash of ``text`` that is the same on every machine and Python run."""
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


def assign_splits(tracks: list[Track]) -> None:
    """Set ``group`` and ``split`` of each kept track.

    Whole ``VAL_OOD_PACKAGES`` go to val_ood. In every other package the groups are ordered
    by a stable hash of ``package/group`` and taken for val until they hold
    round(5% of the package's tracks) tracks (none for packages under ``VAL_MIN_TRACKS``
    tracks); everything else is train. The choice depends only on the package's own track
    list, so adding or removing other packages never moves a track.
    """
    by_package: dict[str, list[Track]] = {}
    for t in tracks:
        t.group = group_key(t.package, t.name)
        by_package.setdefault(t.package, []).append(t)
    for package, items in by_package.items():
        if package in VAL_OOD_PACKAGES:
            for t in items:
                t.split = "val_ood"
            continue
        groups: dict[str, list[Track]] = {}
        for t in items:
            groups.setdefault(t.group, []).append(t)
        enough = len(items) >= VAL_MIN_TRACKS
        target = max(1, round(VAL_FRACTION * len(items))) if enough else 0
        taken = 0
        for g in sorted(groups, key=lambda g: (stable_hash(f"{package}/{g}"), g)):
            split = "val" if taken < target else "train"
            if split == "val":
                taken += len(groups[g])
            for t in groups[g]:
                t.split = split


# ---------------------------------------------------------------------------------------
# Decoding (runs in worker processes)
# ---------------------------------------------------------------------------------------


def open_source(path: str, member: str) -> Any:
    """Return something soundfile can read: the path, or the bytes of a zip member."""
    if not member:
        return path
    with zipfile.ZipFile(path) as zf:
        return io.BytesIO(zf.read(member))


def probe(sources: list[tuple[str, str]]) -> dict[str, Any]:
    """Read the header of each source: lowest sample rate, longest duration, channels."""
    rates, durations, channels = [], [], []
    for path, member in sources:
        info = sf.info(open_source(path, member))
        rates.append(info.samplerate)
        durations.append(info.frames / info.samplerate)
        channels.append(info.channels)
    return {
        "orig_sample_rate": min(rates),
        "orig_duration_s": max(durations),
        "channels": max(channels),
    }


def probe_job(key: str, sources: list[tuple[str, str]]) -> tuple[str, dict[str, Any]]:
    """Pool wrapper around :func:`probe` that reports errors instead of raising."""
    try:
        return key, probe(sources)
    except Exception as exc:  # reported in the manifest
        return key, {"error": f"{type(exc).__name__}: {exc}"}


def decode_mix(sources: list[tuple[str, str]]) -> tuple[np.ndarray, int]:
    """Decode every source, resample to 44.1 kHz and sum them (one source: just decode).

    Returns float32 audio of shape (frames, channels) and the lowest source rate.
    """
    parts: list[np.ndarray] = []
    rates: list[int] = []
    for path, member in sources:
        data, sr = sf.read(open_source(path, member), dtype="float32", always_2d=True)
        rates.append(sr)
        if sr != TARGET_SR:
            data = soxr.resample(data, sr, TARGET_SR, quality="HQ")
            data = np.ascontiguousarray(data, dtype=np.float32).reshape(len(data), -1)
        parts.append(data)
    if len(parts) == 1:
        return parts[0], rates[0]
    frames = max(len(p) for p in parts)
    chans = max(p.shape[1] for p in parts)
    mix = np.zeros((frames, chans), dtype=np.float32)
    for p in parts:
        if p.shape[1] == 1 and chans > 1:
            p = np.repeat(p, chans, axis=1)
        mix[: len(p)] += p
    return mix, min(rates)


def infrasonic_fraction(audio: np.ndarray, sr: int = TARGET_SR) -> float:
    """Share of the signal's energy below ``INFRASONIC_HZ`` (DC offset and slow drift).

    Works on 10 ms block means (a 100 Hz signal), so it is cheap for long tracks; music
    normally has well under 1% of its energy there.
    """
    block = sr // 100
    n = len(audio) // block
    if n < 2:
        return 0.0
    x = audio[: n * block].astype(np.float64)
    total = float(np.mean(np.square(x)))
    if total <= 0.0:
        return 0.0
    means = x.reshape(n, block, -1).mean(axis=1)
    spec = np.fft.rfft(means, axis=0)
    spec[np.fft.rfftfreq(n, 1.0 / 100) >= INFRASONIC_HZ] = 0.0
    low = np.fft.irfft(spec, n=n, axis=0)
    return float(np.mean(np.square(low)) / total)


def convert(sources: list[tuple[str, str]], out_path: str) -> dict[str, Any]:
    """Decode, resample, rescale if the peak exceeds 1.0, and write 44.1 kHz PCM_16 FLAC.

    Also measures the DC offset and the share of energy below 20 Hz (recorded in the
    manifest, the audio is left as it is). The FLAC is written to a temporary name and
    renamed, so a partial file never remains.
    """
    audio, orig_sr = decode_mix(sources)
    dc_offset = float(np.max(np.abs(np.mean(audio, axis=0, dtype=np.float64))))
    infra = infrasonic_fraction(audio)
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    gain = 1.0
    if peak > PEAK_LIMIT:
        gain = PEAK_TARGET / peak
        audio *= gain
    np.clip(audio, -1.0, 1.0, out=audio)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part")
    sf.write(tmp, audio, TARGET_SR, subtype="PCM_16", format="FLAC")
    os.replace(tmp, out)
    return {
        "duration_s": round(len(audio) / TARGET_SR, 3),
        "orig_sample_rate": orig_sr,
        "channels": int(audio.shape[1]),
        "peak": round(peak, 4),
        "rescaled": gain != 1.0,
        "gain": round(gain, 5),
        "dc_offset": round(dc_offset, 4),
        "infrasonic_fraction": round(infra, 4),
    }


def measure_flac(path: str) -> tuple[float, float]:
    """DC offset and infrasonic share of an already written FLAC."""
    audio, _ = sf.read(path, dtype="float32", always_2d=True)
    dc_offset = float(np.max(np.abs(np.mean(audio, axis=0, dtype=np.float64))))
    return dc_offset, infrasonic_fraction(audio)


def convert_job(
    key: str, sources: list[tuple[str, str]], out_path: str
) -> tuple[str, dict[str, Any]]:
    """Pool wrapper around :func:`convert` that reports errors instead of raising."""
    try:
        return key, convert(sources, out_path)
    except Exception as exc:  # reported in the manifest
        return key, {"error": f"{type(exc).__name__}: {exc}"}


# ---------------------------------------------------------------------------------------
# Manifest
# ---------------------------------------------------------------------------------------

CSV_FIELDS = (
    "path",
    "split",
    "package",
    "track",
    "group",
    "source",
    "licence",
    "holder",
    "duration_s",
    "orig_sample_rate",
    "channels",
    "rescaled",
    "peak",
    "gain",
    "dc_offset",
    "infrasonic_fraction",
)


def load_manifest(out: Path) -> dict[str, Any]:
    """Load OUT/manifest.json from an earlier run (empty when there is none)."""
    path = out / "manifest.json"
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def totals(files: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Files and hours per split."""
    result = {s: {"files": 0, "hours": 0.0} for s in SPLITS}
    for f in files:
        result[f["split"]]["files"] += 1
        result[f["split"]]["hours"] += f["duration_s"] / 3600.0
    for s in result.values():
        s["hours"] = round(s["hours"], 3)
    return result


def write_manifest(
    out: Path, files: list[dict[str, Any]], dropped: list[dict[str, Any]], failed: dict[str, str]
) -> dict[str, Any]:
    """Write OUT/manifest.json and OUT/manifest.csv; return the manifest."""
    files = sorted(files, key=lambda f: f["path"])
    dropped = sorted(dropped, key=lambda d: (d["package"], d["source"]))
    per_package: dict[str, dict[str, Any]] = {}
    for f in files:
        entry = per_package.setdefault(f["package"], {"files": 0, "hours": 0.0, "split": set()})
        entry["files"] += 1
        entry["hours"] += f["duration_s"] / 3600.0
        entry["split"].add(f["split"])
    manifest = {
        "sample_rate": TARGET_SR,
        "format": "FLAC PCM_16",
        "rules": {
            "min_seconds": MIN_SECONDS,
            "min_source_sample_rate": MIN_SOURCE_SR,
            "infrasonic_hz": INFRASONIC_HZ,
            "sound_effect_names": sorted(SOUND_EFFECT_NAMES),
            "val_fraction": VAL_FRACTION,
            "val_ood_packages": list(VAL_OOD_PACKAGES),
            "peak_limit": PEAK_LIMIT,
            "peak_target": PEAK_TARGET,
        },
        "totals": totals(files),
        "packages": {
            p: {"files": v["files"], "hours": round(v["hours"], 3), "splits": sorted(v["split"])}
            for p, v in sorted(per_package.items())
        },
        "failed_packages": failed,
        "files": files,
        "dropped": dropped,
    }
    tmp = out / "manifest.json.part"
    tmp.write_text(json.dumps(manifest, indent=1) + "\n")
    os.replace(tmp, out / "manifest.json")
    tmp = out / "manifest.csv.part"
    with tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(files)
    os.replace(tmp, out / "manifest.csv")
    return manifest


# ---------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------


def drop_reason(track: Track) -> str:
    """Why a probed track is dropped ("" when it is kept)."""
    info = track.info
    if "error" in info:
        return f"unreadable: {info['error']}"
    if track.name.lower() in SOUND_EFFECT_NAMES:
        return "sound effect"
    if info["orig_sample_rate"] < MIN_SOURCE_SR:
        return f"sample rate {info['orig_sample_rate']} Hz < {MIN_SOURCE_SR} Hz"
    if info["orig_duration_s"] < MIN_SECONDS:
        return f"too short: {info['orig_duration_s']:.1f} s < {MIN_SECONDS:.0f} s"
    return ""


def prepare_packages(
    packages: list[str], cache: Path, update: bool
) -> tuple[dict[str, Path], dict[str, str]]:
    """Download and unpack each package; return unpacked roots and failures (reasons)."""
    state = {"updated": False}
    if update:
        try:
            apt_update()
        except (subprocess.CalledProcessError, OSError) as exc:
            log(f"apt-get update failed ({exc}); trying the downloads anyway")
        state["updated"] = True
    roots: dict[str, Path] = {}
    failed: dict[str, str] = {}
    for package in packages:
        try:
            deb = download_deb(package, cache / "debs", state)
            log(f"[{package}] unpacking {deb.name}")
            roots[package] = unpack_deb(deb, cache / "unpacked" / package)
        except (RuntimeError, subprocess.CalledProcessError, OSError) as exc:
            log(f"[{package}] FAILED: {exc}")
            failed[package] = str(exc)
    return roots, failed


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        description="Build the m2l music data set (44.1 kHz FLAC, train/val/val_ood) from "
        "freely licensed Debian packages."
    )
    parser.add_argument(
        "--out", type=Path, default=Path("data"), help="output folder (default: data/)"
    )
    parser.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="where .deb files are downloaded and unpacked (default: OUT/cache/)",
    )
    parser.add_argument(
        "--packages",
        nargs="+",
        default=list(PACKAGES),
        metavar="PKG",
        choices=list(PACKAGES),
        help="packages to use (default: all ten)",
    )
    parser.add_argument("--jobs", type=int, default=2, help="decoding processes (default 2)")
    parser.add_argument(
        "--update",
        action="store_true",
        help="run apt-get update first (otherwise only when a download fails)",
    )
    keep = parser.add_mutually_exclusive_group()
    keep.add_argument(
        "--keep-cache",
        dest="keep_cache",
        action="store_true",
        default=True,
        help="keep downloaded .deb files and unpacked trees (default)",
    )
    keep.add_argument(
        "--delete-debs",
        dest="keep_cache",
        action="store_false",
        help="delete each package's .deb and unpacked tree once its tracks are written",
    )
    return parser.parse_args(argv)


def probe_tracks(
    tracks: list[Track],
    prev_files: dict[tuple[str, str], dict[str, Any]],
    prev_dropped: dict[tuple[str, str], dict[str, Any]],
    jobs: int,
) -> tuple[list[Track], list[dict[str, Any]]]:
    """Read each track's header (in the pool; reusing an earlier manifest) and apply the drop
    rules. Returns the kept tracks and the dropped entries."""
    to_probe = []
    for t in tracks:
        key = (t.package, t.source_name)
        if key in prev_files:
            old = prev_files[key]
            t.info = {
                "orig_sample_rate": old["orig_sample_rate"],
                "orig_duration_s": old["duration_s"],
                "channels": old["channels"],
            }
        elif key in prev_dropped and "info" in prev_dropped[key]:
            t.info = prev_dropped[key]["info"]
        else:
            to_probe.append(t)
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(probe_job, str(i), t.sources) for i, t in enumerate(to_probe)]
        for fut in as_completed(futures):
            idx, info = fut.result()
            to_probe[int(idx)].info = info
    kept: list[Track] = []
    dropped: list[dict[str, Any]] = []
    for t in tracks:
        reason = drop_reason(t)
        if not reason:
            kept.append(t)
            continue
        entry = {"package": t.package, "source": t.source_name, "reason": reason}
        if "error" not in t.info:
            entry["info"] = t.info
        dropped.append(entry)
    return kept, dropped


def decode_tracks(
    kept: list[Track], out: Path, prev_files: dict[tuple[str, str], dict[str, Any]], jobs: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
    """Write every kept track that is not written yet (in the pool).

    Returns the manifest records of the written tracks, the dropped entries of the tracks that
    failed to decode, and their number.
    """
    dropped: list[dict[str, Any]] = []
    todo: list[Track] = []
    unmeasured: list[Track] = []
    for t in kept:
        key = (t.package, t.source_name)
        old = prev_files.get(key)
        if old and old["path"] == t.out_rel() and (out / t.out_rel()).exists():
            t.info = {
                k: old[k]
                for k in (
                    "duration_s",
                    "orig_sample_rate",
                    "channels",
                    "peak",
                    "rescaled",
                    "gain",
                    "dc_offset",
                    "infrasonic_fraction",
                )
                if k in old
            }
            if "infrasonic_fraction" not in t.info:
                unmeasured.append(t)
            continue
        if old and (out / old["path"]).exists():
            (out / old["path"]).unlink()  # the track moved to another split
        todo.append(t)
    log(
        f"{len(kept) - len(todo)} tracks already written, {len(todo)} to decode "
        f"with {jobs} processes"
    )
    errors = 0
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        # Files written by an older version of this script: measure them from the FLAC.
        measures = {pool.submit(measure_flac, str(out / t.out_rel())): t for t in unmeasured}
        for fut in as_completed(measures):
            t = measures[fut]
            dc_offset, infra = fut.result()
            t.info.update(
                dc_offset=round(dc_offset / t.info["gain"], 4), infrasonic_fraction=round(infra, 4)
            )
        futures = {
            pool.submit(convert_job, str(i), t.sources, str(out / t.out_rel())): t
            for i, t in enumerate(todo)
        }
        for n, fut in enumerate(as_completed(futures), 1):
            t = futures[fut]
            _, info = fut.result()
            prefix = f"  [{n}/{len(todo)}] {t.out_rel()}"
            if "error" in info:
                errors += 1
                log(f"{prefix} FAILED: {info['error']}")
                dropped.append(
                    {
                        "package": t.package,
                        "source": t.source_name,
                        "reason": f"decode failed: {info['error']}",
                    }
                )
                t.split = ""
                continue
            t.info = info
            note = f" (rescaled x{info['gain']:.3f})" if info["rescaled"] else ""
            log(f"{prefix} {info['duration_s']:.0f} s{note}")
    files = [
        {
            "path": t.out_rel(),
            "split": t.split,
            "package": t.package,
            "track": t.name,
            "group": t.group,
            "source": t.source_name,
            "licence": t.licence,
            "holder": t.holder,
            **t.info,
        }
        for t in kept
        if t.split
    ]
    return files, dropped, errors


def main(argv: list[str] | None = None) -> int:
    """Build the data set; return the exit code (1 if a package or a track failed)."""
    args = parse_args(argv)
    start = time.monotonic()
    out: Path = args.out.resolve()
    cache: Path = (args.cache or out / "cache").resolve()
    packages: list[str] = list(dict.fromkeys(args.packages))
    jobs = max(1, args.jobs)
    out.mkdir(parents=True, exist_ok=True)
    previous = load_manifest(out)
    prev_files = {(f["package"], f["source"]): f for f in previous.get("files", [])}
    prev_dropped = {(d["package"], d["source"]): d for d in previous.get("dropped", [])}

    roots, failed = prepare_packages(packages, cache, args.update)
    tracks: list[Track] = []
    for package, root in roots.items():
        found = find_tracks(package, root)
        log(f"[{package}] {len(found)} candidate tracks")
        tracks.extend(found)

    kept, dropped = probe_tracks(tracks, prev_files, prev_dropped, jobs)
    log(f"{len(kept)} tracks kept, {len(dropped)} dropped")
    assign_splits(kept)
    files, decode_dropped, errors = decode_tracks(kept, out, prev_files, jobs)
    dropped += decode_dropped

    # Keep the records of packages built earlier and not (re)built in this run.
    files += [
        old
        for (package, _), old in prev_files.items()
        if package not in roots and (out / old["path"]).exists()
    ]
    dropped += [d for (package, _), d in prev_dropped.items() if package not in roots]
    manifest = write_manifest(out, files, dropped, failed)

    if not args.keep_cache:
        for package in roots:
            shutil.rmtree(cache / "unpacked" / package, ignore_errors=True)
            deb = find_deb(cache / "debs", package)
            if deb is not None:
                deb.unlink()

    elapsed = time.monotonic() - start
    log("")
    log(f"summary ({elapsed / 60:.1f} min, output {out}):")
    for split, tot in manifest["totals"].items():
        log(f"  {split:8s} {tot['files']:4d} files {tot['hours']:7.2f} h")
    log(f"  dropped  {len(manifest['dropped']):4d} files")
    for d in manifest["dropped"]:
        log(f"    {d['package']}: {d['source']} ({d['reason']})")
    for package, reason in failed.items():
        log(f"  FAILED package {package}: {reason}")
    return 1 if failed or errors else 0


if __name__ == "__main__":
    sys.exit(main())
