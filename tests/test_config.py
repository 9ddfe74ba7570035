"""ModelConfig checks every value before anything is built from it."""

from __future__ import annotations

import json
import re

import pytest

from m2l_cli.config import PRESETS, ModelConfig


@pytest.mark.parametrize("name", PRESETS)
def test_the_presets_pass_their_own_checks(name: str) -> None:
    assert ModelConfig.from_json(PRESETS[name].to_json()) == PRESETS[name]


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [
        ("group_norm_groups", 0, "group_norm_groups must be in 1..1024"),
        ("dim", 192.5, "dim must be an integer"),
        ("num_latents", -8, "num_latents must be in 1..1024"),
        ("channels", [100000] * 4, "channels must be in 1..1024"),
        ("consistency_depth", 10**6, "consistency_depth must be in 0..64"),
        ("heads", 0, "heads must be in 1..64"),
        ("heads", 5, "heads (5) must divide dim (192)"),
        ("dim", 10**400, "dim must be in 1..2048, got 100000000000000000000..."),
        ("sigma_min", float("nan"), "sigma_min must be a number"),
        ("sigma_min", 100.0, "sigma_min must be below sigma_max"),
        ("noise_embedding_dim", 255, "noise_embedding_dim must be even"),
        ("frequency_bins", 2048, "frequency_bins can be at most 2 * hop_length"),
        ("stem_stride", [4, True], "integer pairs"),
        ("downsample", [[2, 2], [2]], "integer pairs"),
        ("blocks", [1, 1, 1.5, 1], "blocks must be a list of integers"),
        ("frequency_scaling", 1, "frequency_scaling must be true or false"),
        ("name", "x" * 200, "name must be a string of at most 128 characters"),
    ],
    ids=lambda item: item if isinstance(item, str) and len(item) < 30 else "",
)
def test_hostile_values_are_refused_with_their_name(key: str, value: object, words: str) -> None:
    config = json.loads(PRESETS["small"].to_json()) | {key: value}
    with pytest.raises(ValueError, match=re.escape(words)):
        ModelConfig.from_json(json.dumps(config))
