"""What every family's `generate_many` must do, shared by the family tests: take i of a batch is the take `generate`
writes alone with generator i's seed, under every sampling option."""

from __future__ import annotations

import pytest
import torch

from musegen_core.controls import Controls, steering_table
from musegen_core.models.style import StyleMix
from musegen_core.music import Key

STEERING = steering_table(Controls(density=1.0, low=60, high=72, scale_pull=1.0), 16, 4, Key(0))

# Sampling options a batch must honour take by take (the guided one also pulls a VAE's z towards the centroid).
OPTIONS = pytest.mark.parametrize(
    "options",
    [
        {},
        {"style": 0},
        {"style": StyleMix(0, 1, 0.3), "temperature": 0.8},
        {"style": 1, "guidance": 2.5},
        {"style": 0, "steering": STEERING, "top_p": 0.9},
    ],
)


def seeded(*seeds: int) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(seed) for seed in seeds]


def assert_each_take_is_its_seeds(model, context: torch.Tensor, positions: torch.Tensor, steps: int, options: dict):
    """Five takes, one seed repeated: each equals its lone take; different seeds differ, the same seed repeats."""
    seeds = (3, 1, 4, 1, 5)
    takes = model.generate_many(context, positions, steps, generators=seeded(*seeds), **options)
    assert takes.shape == (5, steps) and takes.dtype == torch.int64
    for take, seed in zip(takes, seeds, strict=True):
        assert torch.equal(take, model.generate(context, positions, steps, generator=seeded(seed)[0], **options))
    assert not torch.equal(takes[0], takes[1]) and torch.equal(takes[1], takes[3])


def assert_refuses_bad_generators(model, context: torch.Tensor, positions: torch.Tensor) -> None:
    """Takes come back one row per generator (None: unseeded); a generators argument that is not a non-empty list of
    CPU generators or None is refused, saying what it received."""
    assert model.generate_many(context, positions, 8, generators=[None, *seeded(1, 2)]).shape == (3, 8)
    with pytest.raises(ValueError, match=r"one generator .* per take \(received none\)"):
        model.generate_many(context, positions, 8, generators=[])
    with pytest.raises(ValueError, match="received a single generator"):
        model.generate_many(context, positions, 8, generators=torch.Generator())
    with pytest.raises(ValueError, match=r"CPU torch\.Generator or None \(received 7\)"):
        model.generate_many(context, positions, 8, generators=[torch.Generator(), 7])
