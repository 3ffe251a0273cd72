"""The logit functions shared by autoregressive families, each on its own."""

from __future__ import annotations

import math

import pytest
import torch

from musegen_core.models import sampling

LOGITS = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))


def test_temperature_scales_logits_and_sharpens_or_flattens():
    assert torch.equal(sampling.apply_temperature(LOGITS, 1.0), LOGITS)
    cold = torch.softmax(sampling.apply_temperature(LOGITS, 0.5), -1)
    hot = torch.softmax(sampling.apply_temperature(LOGITS, 2.0), -1)
    assert cold[0, 0] > 0.5 > hot[0, 0]
    with pytest.raises(ValueError, match="received 0"):
        sampling.apply_temperature(LOGITS, 0)


@pytest.mark.parametrize(("top_p", "kept"), [(1.0, 4), (0.95, 3), (0.8, 2), (0.5, 1), (0.01, 1)])
def test_nucleus_keeps_the_smallest_set_reaching_top_p(top_p, kept):
    filtered = sampling.nucleus(LOGITS, top_p)
    assert int(torch.isfinite(filtered).sum()) == kept
    assert torch.equal(filtered[torch.isfinite(filtered)], LOGITS[0, :kept])  # the most likely ones, unchanged


def test_nucleus_works_on_unsorted_rows_and_does_not_modify_its_input():
    logits = LOGITS[:, [2, 0, 3, 1]].clone()
    kept = torch.isfinite(sampling.nucleus(logits, 0.8))
    assert kept.tolist() == [[False, True, False, True]]
    assert torch.isfinite(logits).all()
    with pytest.raises(ValueError, match="received 0"):
        sampling.nucleus(logits, 0)


def test_sample_follows_the_generator_and_the_distribution():
    def draws(seed: int) -> list[int]:
        generator = torch.Generator().manual_seed(seed)
        return [int(sampling.sample(LOGITS, generator)) for _ in range(2000)]

    assert draws(3) == draws(3)
    frequency = draws(3).count(0) / 2000
    assert math.isclose(frequency, 0.5, abs_tol=0.05)
    assert sampling.sample(torch.zeros(2, 3, 5), torch.Generator()).shape == (2, 3)


def test_sample_never_draws_a_filtered_token():
    generator = torch.Generator().manual_seed(0)
    filtered = sampling.nucleus(LOGITS, 0.5)
    assert {int(sampling.sample(filtered, generator)) for _ in range(200)} == {0}


def test_next_tokens_filters_then_draws_each_row_with_its_own_generator():
    row = torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05]))
    one = [torch.Generator().manual_seed(0)]
    assert sampling.next_tokens(row[None], 1.0, 0.5, one).tolist() == [0]  # top_p leaves one token
    draws = sampling.next_tokens(row.expand(200, -1), 5.0, 1.0, [torch.Generator().manual_seed(s) for s in range(200)])
    assert set(draws.tolist()) == {0, 1, 2, 3}  # a hot temperature reaches every token
    alone = [int(sampling.next_tokens(row[None], 5.0, 1.0, [torch.Generator().manual_seed(s)])[0]) for s in range(200)]
    assert draws.tolist() == alone  # row i draws what a batch of one draws with the same seed


def test_next_tokens_applies_a_shared_steering_row_and_wants_a_generator_per_row():
    rows = torch.zeros(3, 4)
    forbid_all_but_2 = torch.tensor([float("-inf"), float("-inf"), 0.0, float("-inf")])
    assert sampling.next_tokens(rows, 1.0, 1.0, [None] * 3, forbid_all_but_2).tolist() == [2, 2, 2]
    with pytest.raises(ValueError, match="one generator per row"):
        sampling.next_tokens(rows, 1.0, 1.0, [None] * 2)
