"""Start-up: `m2l --help`, `--version` and `info` never import torch (it takes seconds
to load); `--help` and `--version` not numpy either; a missing input or model file is
reported before torch loads. Checked in a fresh interpreter
that runs the command as the `m2l` script does and lists the modules it loaded."""

from __future__ import annotations

import json
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from m2l_cli.container import Latents

PROBE = """
import atexit, json, sys
atexit.register(lambda: print(json.dumps(sorted(sys.modules)), file=sys.stderr))
sys.argv = ["m2l", *sys.argv[1:]]
from m2l_cli.__main__ import main
main()
"""


def run_probe(*args: str, cwd: Path) -> tuple[int, list[str], set[str]]:
    """`m2l args`: its exit code, its stderr lines and the top-level packages it loaded."""
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *args], cwd=cwd, capture_output=True, timeout=120
    )
    *lines, names = result.stderr.decode().splitlines()
    return result.returncode, lines, {name.split(".")[0] for name in json.loads(names)}


def loaded_modules(*args: str, cwd: Path) -> set[str]:
    """The top-level packages imported by `m2l args`, which must succeed."""
    code, lines, loaded = run_probe(*args, cwd=cwd)
    assert code == 0, lines
    return loaded


@pytest.mark.parametrize("args", [("--help",), ("-h",), ("--version",), ("encode", "--help")])
def test_help_and_version_import_neither_torch_nor_numpy(tmp_path: Path, args) -> None:
    assert not {"torch", "numpy", "soundfile"} & loaded_modules(*args, cwd=tmp_path)


def save_container(path: Path) -> None:
    """A tiny valid container (its model id matches no model)."""
    latents = Latents(
        values=np.zeros((1, 1, 8, 64), np.float16),
        model_id="0123456789ab",
        model_name="small",
        sample_rate=44100,
        original_sample_rate=44100,
        num_samples=1000,
        model_num_samples=1000,
        chunk_samples=32768,
    )
    latents.save(path)


def test_info_does_not_import_torch(tmp_path: Path) -> None:
    save_container(tmp_path / "a.m2l")
    loaded = loaded_modules("info", "a.m2l", "--json", cwd=tmp_path)
    assert "m2l_cli" in loaded and "torch" not in loaded


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("encode", "missing.wav"), "m2l: error: missing.wav: no such file"),
        (("decode", "missing.m2l"), "m2l: error: missing.m2l: no such file"),
        (("encode", "a.wav", "-m", "none.safetensors"), "none.safetensors: no such weights"),
        (("decode", "a.m2l", "-m", "a.wav"), "a.wav: not a safetensors weights file"),
        (("eval", ".", "-m", "none.safetensors"), "none.safetensors: no such weights"),
    ],
)
def test_missing_files_fail_before_torch_loads(tmp_path: Path, args, message: str) -> None:
    with wave.open(str(tmp_path / "a.wav"), "wb") as audio:
        audio.setparams((1, 2, 44100, 0, "NONE", "not compressed"))
        audio.writeframes(bytes(2000))
    save_container(tmp_path / "a.m2l")
    code, lines, loaded = run_probe(*args, cwd=tmp_path)
    assert code != 0 and len(lines) == 1 and message in lines[0]
    assert "torch" not in loaded
