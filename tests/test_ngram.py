"""n-gram baselines: Kneser–Ney distributions are proper, the unigram is add-one, contexts stay inside tunes."""

from __future__ import annotations

import numpy as np
import pytest

from musegen_core.training.ngram import MAX_ORDER, NGramModel, bits_per_step

VOCAB = 6
TRAIN = [np.array([2, 1, 3, 1, 2, 1, 3, 1, 4, 0]), np.array([2, 1, 1, 3, 5, 5, 1, 0]), np.array([4, 4, 2])]


def next_token_probs(model: NGramModel, context: list[int]) -> np.ndarray:
    """P(w | context) for every w, read from `log2_probs` on one-tune sequences ending in w."""
    tunes = [np.array([*context, w]) for w in range(VOCAB)]
    return np.array([2.0 ** model.log2_probs([tune])[-1] for tune in tunes])


@pytest.mark.parametrize("order", [2, 3, 5])
@pytest.mark.parametrize("context", [[2, 1], [2, 1, 3, 1], [5, 5, 5, 5], [0]])
def test_kneser_ney_sums_to_one_for_seen_and_unseen_contexts(order, context):
    model = NGramModel(order, VOCAB).fit(TRAIN)
    probs = next_token_probs(model, context)
    assert probs.sum() == pytest.approx(1.0) and (probs > 0).all()


def test_unigram_is_add_one():
    model = NGramModel(1, VOCAB).fit(TRAIN)
    counts = np.bincount(np.concatenate(TRAIN), minlength=VOCAB)
    assert next_token_probs(model, [0]) == pytest.approx((counts + 1) / (counts.sum() + VOCAB))


def test_longer_contexts_learn_a_repeated_pattern():
    pattern = [np.tile([2, 1, 1, 3, 1, 0], 30)]
    bits = [bits_per_step(NGramModel(order, VOCAB).fit(pattern), pattern) for order in (1, 2, 4)]
    assert bits[0] > bits[1] > bits[2] and bits[2] < 0.1


def test_scores_every_step_after_the_first_of_each_tune():
    model = NGramModel(3, VOCAB).fit(TRAIN)
    assert len(model.log2_probs(TRAIN)) == sum(len(t) - 1 for t in TRAIN)


def test_orders_beyond_int64_keys_are_refused():
    with pytest.raises(ValueError, match=f"within 1 and {MAX_ORDER}"):
        NGramModel(MAX_ORDER + 1, 56)
