"""Start-up: `m2l --help`, `--version` and `info` never import torch (it takes seconds
to load); `--help` and `--version` not numpy either. Checked in a fresh interpreter
that runs the command as the `m2l` script does and lists the modules it loaded."""

from __future__ import annotations

import json
import subprocess
import sys
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


def loaded_modules(*args: str, cwd: Path) -> set[str]:
    """The top-level packages imported by `m2l args`, which must succeed."""
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *args], cwd=cwd, capture_output=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    names = json.loads(result.stderr.decode().splitlines()[-1])
    return {name.split(".")[0] for name in names}


@pytest.mark.parametrize("args", [("--help",), ("-h",), ("--version",), ("encode", "--help")])
def test_help_and_version_import_neither_torch_nor_numpy(tmp_path: Path, args) -> None:
    assert not {"torch", "numpy", "soundfile"} & loaded_modules(*args, cwd=tmp_path)


def test_info_does_not_import_torch(tmp_path: Path) -> None:
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
    latents.save(tmp_path / "a.m2l")
    loaded = loaded_modules("info", "a.m2l", "--json", cwd=tmp_path)
    assert "m2l_cli" in loaded and "torch" not in loaded
