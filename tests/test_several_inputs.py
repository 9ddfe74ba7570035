"""`m2l encode` and `m2l decode` with several inputs and -o a folder."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile
from commands import m2l

from m2l_cli import Codec, M2LError
from m2l_cli.paths import output_pairs


def test_several_inputs_go_beside_themselves_or_into_a_folder(tmp_path):
    (tmp_path / "out").mkdir()
    assert output_pairs(["a/x.wav"], None, ".m2l") == [("a/x.wav", "a/x.wav.m2l")]
    assert output_pairs(["a/x.wav", "y.wav"], None, ".m2l")[1] == ("y.wav", "y.wav.m2l")
    pairs = output_pairs(["a/x.wav", "b/y.wav"], str(tmp_path / "out"), ".m2l")
    assert pairs[1] == ("b/y.wav", str(tmp_path / "out" / "y.wav.m2l"))
    with pytest.raises(M2LError, match="both be written"):
        output_pairs(["a/x.wav", "b/x.wav"], str(tmp_path / "out"), ".m2l")
    with pytest.raises(M2LError, match="alone"):
        output_pairs(["-", "b/x.wav"], None, ".m2l")
    with pytest.raises(M2LError, match="no such folder"):
        output_pairs(["a/x.wav", "b/y.wav"], str(tmp_path / "missing"), ".m2l")


def test_encode_and_decode_many_files_into_folders(tmp_path):
    model = tmp_path / "tiny.safetensors"
    Codec.create("tiny", seed=0).save(model)
    for folder, name, seconds in (("a", "one.wav", 1.0), ("b", "two.flac", 0.5)):
        (tmp_path / folder).mkdir()
        tone = 0.3 * np.sin(np.arange(int(44100 * seconds)) * 0.05)
        soundfile.write(tmp_path / folder / name, tone, 44100)
    (tmp_path / "latents").mkdir()
    (tmp_path / "audio").mkdir()
    encoded = m2l("encode", "a/one.wav", "b/two.flac", "-o", "latents", cwd=tmp_path, model=model)
    assert encoded.returncode == 0, encoded.stderr
    containers = sorted(p.name for p in (tmp_path / "latents").iterdir())
    assert containers == ["one.wav.m2l", "two.flac.m2l"]
    inputs = [f"latents/{name}" for name in containers]
    decoded = m2l("decode", *inputs, "-o", "audio", cwd=tmp_path, model=model)
    assert decoded.returncode == 0, decoded.stderr
    lengths = {p.name: soundfile.info(p).frames for p in (tmp_path / "audio").iterdir()}
    assert lengths == {"one.wav.m2l.wav": 44100, "two.flac.m2l.wav": 22050}
