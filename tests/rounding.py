"""Latents compared up to float16 rounding: what batching may change and nothing more."""

from __future__ import annotations

import numpy as np


def assert_equal_to_float16_rounding(actual: np.ndarray, expected: np.ndarray) -> None:
    """A float32 difference of 1e-7 may round to the next float16 (one step is 2**-11 of
    the value), so this allows one step beyond atol 1e-5."""
    np.testing.assert_allclose(
        actual.astype(np.float32), expected.astype(np.float32), rtol=2**-10, atol=1e-5
    )
