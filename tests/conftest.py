"""Shared fixtures."""

from pathlib import Path

import pytest
import torch

from m2l_cli import Codec


@pytest.fixture(scope="module")
def single_torch_thread():
    """Runs a module's tests on one torch thread, then restores the previous count.

    The tiny model's operations are too small to split across threads: on a busy
    2-core machine two threads make a decode many times slower than one.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def model_file(tmp_path_factory) -> Path:
    """A tiny random-weight model file: fast, and enough to exercise every code path."""
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    Codec.create("tiny", seed=0).save(path)
    return path
