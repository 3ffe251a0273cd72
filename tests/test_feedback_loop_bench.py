"""The statistics and simulated raters of bench/feedback_loop.py, on numbers with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import bench_module

from musegen_core.music import Note, Part, Piece


@pytest.fixture(scope="module")
def loop():
    with bench_module("feedback_loop") as module:
        yield module


def melody(pitches: list[int]) -> Piece:
    return Piece((Part("melody", tuple(Note(p, float(i), 1.0) for i, p in enumerate(pitches))),))


def test_utility_is_minus_the_mean_absolute_interval_and_punishes_near_silence(loop):
    assert loop.utility(melody([60, 62, 64, 62])) == pytest.approx(-2.0)
    assert loop.utility(melody([60, 67, 60])) == pytest.approx(-7.0)
    assert loop.utility(melody([60])) == -loop.EMPTY_PENALTY
    assert loop.utility(melody([])) == -loop.EMPTY_PENALTY


def test_bradley_terry_probability(loop):
    assert loop.bt_probability(-1.0, -1.0, 3.0) == 0.5
    assert loop.bt_probability(-1.0, -2.0, 2.0) == pytest.approx(1 / (1 + math.exp(-2.0)))
    assert loop.bt_probability(-1.0, -2.0, 2.0) + loop.bt_probability(-2.0, -1.0, 2.0) == pytest.approx(1.0)


def test_a_sharp_rater_picks_the_better_take_and_a_skipper_skips(loop):
    rng = np.random.default_rng(0)
    sharp = loop.SimRater("sharp", k=50.0, sigma=0.0, skip=0.0, share=1.0)
    assert {loop.pair_choice(rng, sharp, -1.0, -3.0) for _ in range(50)} == {"a"}
    assert {loop.pair_choice(rng, sharp, -3.0, -1.0) for _ in range(50)} == {"b"}
    close = [loop.pair_choice(rng, sharp, -1.0, -1.0 - loop.TIE_MARGIN / 2) for _ in range(400)]
    assert 0.35 < close.count("tie") / len(close) < 0.65  # within the margin: a tie half of the time
    skipper = loop.SimRater("skipper", k=1.0, sigma=0.0, skip=1.0, share=1.0)
    assert {loop.pair_choice(rng, skipper, -1.0, -3.0) for _ in range(20)} == {"skip"}


def test_stars_follow_the_utility_quintiles(loop):
    cuts = loop.star_cuts(np.linspace(-5, 0, 101))  # cut points at -4, -3, -2, -1
    assert cuts == pytest.approx([-4, -3, -2, -1])
    exact = loop.SimRater("exact", k=1.0, sigma=0.0, skip=0.0, share=1.0)
    rng = np.random.default_rng(0)
    assert [loop.stars_for(rng, exact, u, cuts) for u in (-4.5, -3.5, -2.5, -1.5, -0.5)] == [1, 2, 3, 4, 5]


def test_raters_cast_the_documented_shares(loop):
    assert sum(r.share for r in loop.RATERS) == pytest.approx(1.0)
    spammy = max(loop.RATERS, key=lambda r: r.share)
    assert spammy.share == loop.SPAMMER_SHARE and spammy.k == min(r.k for r in loop.RATERS)
    assert len({r.name for r in loop.RATERS}) == len(loop.RATERS) >= 6


def test_sign_flip_p_value(loop):
    rng = np.random.default_rng(1)
    shifted = rng.normal(1.0, 1.0, 100)  # a large shift: no random flip reaches its mean
    assert loop.sign_flip_p(shifted, 2000, 0) == pytest.approx(1 / 2001)
    centred = np.concatenate([shifted - shifted.mean(), -(shifted - shifted.mean())])
    assert loop.sign_flip_p(centred, 2000, 0) == pytest.approx(1.0, abs=1e-3)  # mean exactly 0
    assert loop.sign_flip_p(np.zeros(10), 100, 0) == 1.0
    # the p-value of a Monte-Carlo sign-flip test matches the exact one on a small sample (2^8 assignments)
    small = np.array([0.9, 0.4, 1.3, -0.2, 0.7, 0.1, 0.5, -0.6])
    signs = np.array(np.meshgrid(*[[-1, 1]] * len(small))).reshape(len(small), -1).T
    exact = float(np.mean(np.abs(signs @ small) >= abs(small.sum()) - 1e-12))
    assert loop.sign_flip_p(small, 40_000, 3) == pytest.approx(exact, abs=0.01)
    assert loop.sign_flip_p(small, 1000, 5) == loop.sign_flip_p(small, 1000, 5)  # seeded


def test_effect_sizes(loop):
    diffs = np.array([1.0, 2.0, 3.0, 4.0])
    assert loop.paired_d(diffs) == pytest.approx(2.5 / np.std(diffs, ddof=1))
    assert loop.paired_d(np.ones(5)) == 0.0  # no spread: no effect size
    before, after = np.array([1.0, 2.0, 3.0]), np.array([2.0, 3.0, 4.0])
    assert loop.cohens_d(after, before) == pytest.approx(1.0)  # pooled sd 1, difference 1
    low, high = loop.bootstrap_ci(np.random.default_rng(0).normal(0.5, 1.0, 400), 0)
    assert low < 0.5 < high and high - low < 0.3


def test_win_rate_counts_ties_half_and_leaves_skips_out(loop):
    rate = loop.win_rate(["new", "new", "old", "tie", "skip"])
    assert rate["win_rate"] == pytest.approx(2.5 / 4) and rate["votes"] == 4 and rate["skips"] == 1
    assert math.isnan(loop.win_rate(["skip"])["win_rate"])


def test_rater_votes_prefer_the_better_model(loop):
    rng = np.random.default_rng(0)
    old = rng.normal(-2.5, 0.5, 200)
    votes = loop.rater_votes(old, old + 1.0, seed=0)
    assert votes["all"]["win_rate"] > 0.6
    assert all(row["win_rate"] > 0.5 for row in votes["by_rater"].values())
    even = loop.rater_votes(old, old, seed=0)
    assert 0.4 < even["all"]["win_rate"] < 0.6


def test_take_measures(loop):
    measured = loop.take_measures(melody([60, 60, 62, 67, 65]), bars=1)
    assert measured["notes_per_bar"] == 5
    assert measured["repeat_share"] == 0.25 and measured["step_share"] == 0.5 and measured["leap_share"] == 0.25
    assert measured["pitch_span"] == 7 and measured["mean_interval"] == pytest.approx((0 + 2 + 5 + 2) / 4)


def test_selection_takes_the_best_held_out_preference_within_the_nll_budget(loop):
    runs = [
        {"valid_nll_change": 0.010, "heldout_preference_score": 0.20},
        {"valid_nll_change": 0.030, "heldout_preference_score": 0.25},
        {"valid_nll_change": 0.060, "heldout_preference_score": 0.40},  # better, but over the budget
    ]
    assert loop.choose(runs, 0.04) == 1
    assert loop.choose(runs, 0.10) == 2
    assert loop.choose(runs, 0.005) == 0  # none within: the smallest rise
    tied = [{"valid_nll_change": 0.0, "heldout_preference_score": 0.2}] * 2
    assert loop.choose(tied, 0.04) == 0  # a tie: fewer steps


def test_step_and_beta_lists_parse(loop):
    args = loop.parse(["--steps", "100,200", "--beta", "0.1,0.3", "--pairs", "10"])
    assert args.steps == [100, 200] and args.beta == [0.1, 0.3] and args.pairs == 10
    with pytest.raises(SystemExit):
        loop.parse(["--takes-per-prime", "1"])
