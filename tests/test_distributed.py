"""The Ray engine of `m2l batch` on a real local Ray (two CPUs, one session for the
module): the local engine's outputs, resuming, bad files, URIs."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
from commands import assert_one_line_error, m2l
from rounding import assert_equal_to_float16_rounding

from m2l_cli import Codec
from m2l_cli.atomic import HOST, SUFFIX
from m2l_cli.batch import plan_batch
from m2l_cli.container import Latents
from m2l_cli.distributed import INSTALL_HINT, Workers, batch, check_address, import_ray
from m2l_cli.errors import M2LError
from m2l_cli.files import decode_files, encode_files
from m2l_cli.paths import TEMPORARY_PREFIX
from m2l_cli.remote import plan

pytestmark = pytest.mark.usefixtures("single_torch_thread")
NAMES = ("a.wav", "album/b.flac", "album/disc/c.wav")


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray for the whole module: starting one takes seconds."""
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'm2l_cli[ray]')")
    pytest.importorskip("pyarrow", reason="pyarrow is not installed")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def codec(model_file: Path) -> Codec:
    return Codec.load(model_file, device="cpu", precision="fp32")


@pytest.fixture
def music(tmp_path: Path) -> Path:
    """Three short tones in a tree, and a WAV that is text."""
    folder = tmp_path / "music"
    for index, name in enumerate(NAMES):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        t = np.arange(int(44100 * (0.5 + 0.4 * index))) / 44100
        channels = np.stack([np.sin(2 * np.pi * 330 * (index + 1) * t)] * (1 + index % 2), 1)
        soundfile.write(folder / name, 0.3 * channels, 44100)
    (folder / "album" / "notes.wav").write_text("not audio")
    return folder


def workers(model_file: Path, **options: object) -> Workers:
    settings: dict = {"model": model_file, "device": "cpu", "precision": "fp32", "actors": 2}
    return Workers(**(settings | options))


def local_outputs(codec: Codec, folder: Path, output_dir: Path) -> dict[str, Latents]:
    """What the local engine writes for `folder`, by path relative to `output_dir`."""
    plan = plan_batch(folder, output_dir=output_dir)
    list(encode_files(codec, plan.pairs))
    return tree(output_dir)


def tree(folder: Path) -> dict[str, Latents]:
    """Every file under `folder`, read as a container (a stray file fails the read)."""
    return {str(p.relative_to(folder)): Latents.load(p) for p in folder.rglob("*") if p.is_file()}


def assert_same_containers(actual: dict[str, Latents], expected: dict[str, Latents]) -> None:
    """The same files with the same headers, and latents equal up to float rounding.

    The local engine batches chunks across files, a Ray worker across its group's files:
    a different batch may round the last bit of a float16 value differently (it does on
    some AMD CPUs)."""
    assert sorted(actual) == sorted(expected)
    for name, latents in actual.items():
        assert latents.header() == expected[name].header()
        assert_equal_to_float16_rounding(latents.values, expected[name].values)


def test_without_ray_the_engine_says_how_to_install_it(monkeypatch, music, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(M2LError, match=r"pip install 'm2l_cli\[ray\]'") as raised:
        import_ray()
    assert str(raised.value) == INSTALL_HINT
    hidden = tmp_path / "no-ray" / "ray"
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text("raise ImportError('no ray here')\n")
    monkeypatch.setenv("PYTHONPATH", str(hidden.parent))
    result = m2l("batch", "music", "--engine", "ray", cwd=tmp_path, model=None)
    assert_one_line_error(result, "--engine ray needs Ray: pip install 'm2l_cli[ray]'")
    assert not list(music.rglob("*.m2l"))


def test_a_ray_address_where_nothing_answers_fails_at_once():
    with pytest.raises(M2LError, match=r"^cannot reach Ray at 127\.0\.0\.1:1 \("):
        check_address("127.0.0.1:1")
    check_address(None)
    check_address("auto")


def test_ray_options_need_the_ray_engine(music, tmp_path):
    result = m2l("batch", "music", "--actors", "2", cwd=tmp_path, model=None)
    assert result.returncode == 2 and b"needs --engine ray" in result.stderr


def test_ray_writes_the_local_engines_containers_and_a_rerun_resumes(
    ray_cluster, codec, model_file, music, tmp_path
):
    expected = local_outputs(codec, music, tmp_path / "local")
    output = tmp_path / "ray"
    run = batch(music, output_dir=output, workers=workers(model_file, group_files=1))
    results = {result.source: result for result in run.results}
    assert_same_containers(tree(output), expected)
    assert sorted(expected) == sorted(f"{name}.m2l" for name in NAMES)
    bad = results.pop(str(music / "album" / "notes.wav"))  # reported; the others go on
    assert bad.error is not None and bad.error.startswith(f"{music / 'album' / 'notes.wav'}: ")
    assert all(result.error is None and result.seconds > 0 for result in results.values())
    assert {result.target for result in results.values()} == {
        str(output / f"{name}.m2l") for name in NAMES
    }
    # As if killed while a worker was writing b.flac.m2l: the rerun codes only that.
    (output / "album" / "b.flac.m2l").unlink()
    leftover = output / "album" / f"{TEMPORARY_PREFIX}{HOST}-999999999-abcd{SUFFIX}"
    leftover.write_bytes(b"partial")
    finished = (output / "a.wav.m2l").stat().st_mtime_ns
    again = batch(music, output_dir=output, workers=workers(model_file, actors=1))
    assert sorted(path for path, _ in again.plan.skipped) == [
        str(music / "a.wav"),
        str(music / "album" / "disc" / "c.wav"),
    ]
    assert [(r.source, r.error) for r in again.results if r.source != bad.source] == [
        (str(music / "album" / "b.flac"), None)
    ]
    assert not leftover.exists()
    assert_same_containers(tree(output), expected)
    assert (output / "a.wav.m2l").stat().st_mtime_ns == finished


def test_file_uris_are_read_and_written_through_pyarrow(
    ray_cluster, codec, model_file, music, tmp_path
):
    expected = local_outputs(codec, music, tmp_path / "local")
    source, target = music.as_uri(), (tmp_path / "uri").as_uri()
    run = batch(source, output_dir=target, workers=workers(model_file, actors=1))
    results = list(run.results)
    assert_same_containers(tree(tmp_path / "uri"), expected)  # no temporary file left either
    assert sorted(result.target for result in results if not result.error) == sorted(
        f"{target}/{name}.m2l" for name in NAMES
    )
    failed = [result.error for result in results if result.error]
    assert failed == [
        f"{source}/album/notes.wav: not a readable audio file (Format not recognised.)"
    ]
    again = plan(source, output_dir=target)
    assert sorted(again.skipped) == sorted(
        (f"{source}/{name}", "output exists (use --force)") for name in NAMES
    )
    assert again.pairs == [(f"{source}/album/notes.wav", f"{target}/album/notes.wav.m2l")]


def test_the_command_decodes_on_a_ray_cluster_as_the_local_engine_does(
    ray_cluster, codec, model_file, music, tmp_path
):
    local_outputs(codec, music, tmp_path / "latents")
    (tmp_path / "latents" / "broken.m2l").write_bytes(b"M2L not really")
    plan = plan_batch(tmp_path / "latents", decode=True, output_dir=tmp_path / "local")
    list(decode_files(codec, plan.pairs, seed=3))
    address = ray_cluster.get_runtime_context().gcs_address
    result = m2l(
        *("batch", "latents", "--decode", "--output-dir", "ray", "--seed", "3"),
        *("--engine", "ray", "--ray-address", address, "--precision", "fp32", "--actors", "1"),
        cwd=tmp_path,
        model=model_file,
    )
    assert result.returncode == 1, result.stderr  # broken.m2l
    summary = result.stderr.decode()
    assert "latents/album/disc/c.wav.m2l" in summary and "latents/broken.m2l: " in summary
    assert summary.splitlines()[-1].startswith("3 ok, 1 failed, 0 skipped; ")
    decoded = sorted((tmp_path / "ray").rglob("*.wav"))
    assert [path.relative_to(tmp_path / "ray") for path in decoded] == [
        path.relative_to(tmp_path / "local") for path in sorted((tmp_path / "local").rglob("*.wav"))
    ]
    for path in decoded:  # decoding is equal to float rounding across batch compositions
        ours, _ = soundfile.read(path)
        theirs, _ = soundfile.read(tmp_path / "local" / path.relative_to(tmp_path / "ray"))
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-3)


def test_a_uri_plan_is_the_local_plan_with_uris(music, tmp_path, monkeypatch):
    pytest.importorskip("pyarrow", reason="pyarrow is not installed")
    (music / "album" / "old.wav.m2l.wav").write_bytes(b"decoded before")
    (music / "album" / "song.m4a").write_bytes(b"aac")
    (music / "folder.wav").mkdir()
    (music / ".m2l-abc-1-x.part").write_bytes(b"ours")
    (music / "cover.jpg").write_bytes(b"jpg")
    (music / "a.wav.m2l").write_bytes(b"exists")
    monkeypatch.chdir(tmp_path)
    local = plan_batch(music)
    uri = music.as_uri()

    def as_uris(entries: list) -> list:
        return sorted(tuple(str(x).replace(str(music), uri) for x in entry) for entry in entries)

    remote = plan(uri)
    assert sorted(remote.pairs) == as_uris(local.pairs) and remote.pairs
    assert sorted(remote.skipped) == as_uris(local.skipped) and len(remote.skipped) == 4
    assert remote.others == local.others and remote.failed == local.failed == []
    assert sorted(path.name for path in tmp_path.iterdir()) == ["music"]  # no local folders
