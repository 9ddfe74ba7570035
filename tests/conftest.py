"""Shared fixtures."""

import pytest
import torch


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
