"""Near-duplicate grouping: transposition- and time-scale-invariant events, shingles, exact candidate search (prefix
filtering), union-find groups, and the split every member of a group shares."""

from __future__ import annotations

import itertools
import time

import numpy as np
import pytest

from musegen_core import encoding
from musegen_core.training import dedupe
from musegen_core.training.corpus import Tune, assign_splits, content_signature, split_of


def melody(seed: int, notes: int = 64, shift: int = 0, scale: int = 1) -> np.ndarray:
    """Tokens of a random melody (pitches 60–84, eighths and quarters), transposed by `shift` semitones and with note
    values multiplied by `scale`."""
    rng = np.random.default_rng(seed)
    pitches = rng.integers(60, 85, notes) + shift
    lengths = rng.choice([2, 2, 2, 4], notes) * scale
    return tokens_of(pitches, lengths)


def tokens_of(pitches, lengths) -> np.ndarray:
    tokens = []
    for pitch, length in zip(pitches, lengths, strict=True):
        tokens += [encoding.NOTE_ON + int(pitch) - encoding.MIN_PITCH] + [encoding.HOLD] * (int(length) - 1)
    return np.array(tokens, dtype=np.int64)


def with_changed_note(tokens: np.ndarray, index: int, by: int = 2) -> np.ndarray:
    changed = tokens.copy()
    changed[np.flatnonzero(changed >= encoding.NOTE_ON)[index]] += by
    return changed


def tune(tokens: np.ndarray, name: str) -> Tune:
    return Tune("essen", "german_folk", name, name, "4/4", "", None, 16, 0, content_signature(tokens), tokens)


def test_events_pin_interval_and_relative_gap():
    tokens = tokens_of([60, 62, 59, 59], [2, 2, 4, 2])  # C D B B: +2 after an eighth, -3 after an eighth, 0 after 1/4
    assert dedupe.events(tokens).tolist() == [(130 << 8) | 4, (125 << 8) | 4, (128 << 8) | 8]
    assert dedupe.events(tokens_of([60], [4])).tolist() == []


def test_events_ignore_transposition_and_doubled_note_values():
    original = dedupe.events(melody(1))
    assert np.array_equal(dedupe.events(melody(1, shift=5)), original)
    assert np.array_equal(dedupe.events(melody(1, scale=2)), original)  # 2/4 in sixteenths vs 2/2 in eighths
    assert not np.array_equal(dedupe.events(melody(2)), original)


def test_shingles_are_sorted_unique_and_collapse_repeats():
    once = melody(3, notes=80)
    assert len(dedupe.shingles(once)) == len(set(dedupe.shingles(once).tolist()))
    assert np.all(np.diff(dedupe.shingles(once).astype(np.float64)) > 0)
    twice = np.concatenate([once, once])  # a written-out repeat adds only the shingles across the seam
    assert dedupe.jaccard(dedupe.shingles(once), dedupe.shingles(twice)) > 0.9
    assert len(dedupe.shingles(melody(4, notes=dedupe.NGRAM))) == 0  # n notes give n - 1 events: no shingle


def test_jaccard_on_known_sets():
    a, b = np.array([1, 2, 3], np.uint64), np.array([2, 3, 4], np.uint64)
    assert dedupe.jaccard(a, b) == 0.5
    assert dedupe.jaccard(a, a) == 1.0
    assert dedupe.jaccard(np.zeros(0, np.uint64), np.zeros(0, np.uint64)) == 0.0


def test_a_transposed_copy_with_one_changed_note_joins_the_group_and_unrelated_tunes_do_not():
    original = melody(10)
    variant = with_changed_note(melody(10, shift=-3), index=30)
    found = dedupe.find_near_duplicates([original, melody(11), variant, melody(12)])
    assert found.groups.tolist() == [0, 1, 0, 3]
    assert found.pairs.tolist() == [[0, 2]] and 0.7 < found.similarity[0] < 1.0
    assert (found.group_count(), found.grouped_tunes()) == (1, 2)


def test_groups_are_transitive():
    a = melody(20, notes=48)
    b = np.concatenate([a, melody(21, notes=48)])  # a plus a new part
    c = melody(21, notes=48)  # the new part alone: like b, unlike a
    found = dedupe.find_near_duplicates([a, b, c], threshold=0.4)
    assert dedupe.jaccard(dedupe.shingles(a), dedupe.shingles(c)) < 0.1
    assert found.groups.tolist() == [0, 0, 0]


def test_union_groups_take_the_smallest_index():
    pairs = np.array([[3, 4], [1, 2], [0, 1]])
    assert dedupe.union_groups(6, pairs).tolist() == [0, 0, 0, 3, 3, 5]
    assert dedupe.union_groups(3, np.zeros((0, 2), np.int64)).tolist() == [0, 1, 2]


@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.8])
def test_prefix_filter_misses_no_qualifying_pair(threshold):
    """Every pair at or above the threshold (by brute force) is a candidate: variants of variants of 10 random
    melodies, one changed note each, give similarities spread over the whole range."""
    rng = np.random.default_rng(0)
    tunes = [melody(seed, notes=40) for seed in range(10)]
    for _ in range(40):
        tunes.append(with_changed_note(tunes[int(rng.integers(len(tunes)))], int(rng.integers(40))))
    sets = [dedupe.shingles(t) for t in tunes]
    candidates = {tuple(pair) for pair in dedupe.candidate_pairs(sets, threshold).tolist()}
    qualifying = {
        (i, j) for i, j in itertools.combinations(range(len(sets)), 2) if dedupe.jaccard(sets[i], sets[j]) >= threshold
    }
    assert len(qualifying) > 10 and qualifying <= candidates


def test_the_threshold_is_checked():
    with pytest.raises(ValueError, match="received 0"):
        dedupe.find_near_duplicates([melody(1)], threshold=0)


def test_a_group_shares_the_split_of_its_smallest_signature():
    original, variant = melody(30), with_changed_note(melody(30, shift=7), index=12)
    tunes = [tune(original, "a"), tune(melody(31), "b"), tune(variant, "c")]
    smallest = min(tunes[0].signature, tunes[2].signature)
    moved = 0
    for seed in range(20):
        splits, grouping = assign_splits(tunes, seed)
        assert splits[0] == splits[2] == split_of(smallest, seed)
        assert splits[1] == split_of(tunes[1].signature, seed)
        assert (grouping.groups, grouping.grouped_tunes, grouping.threshold) == (1, 2, dedupe.THRESHOLD)
        moved += grouping.moved_tunes
        reversed_splits, _ = assign_splits(tunes[::-1], seed)
        assert reversed_splits[::-1] == splits  # the order of the tunes does not matter
    assert moved > 0  # without grouping, the variant would sometimes land elsewhere
    plain, none = assign_splits(tunes, 0, group_near_duplicates=False)
    assert plain == [split_of(t.signature, 0) for t in tunes] and none is None


def test_thousands_of_tunes_in_seconds():
    tunes = [melody(seed, notes=int(40 + seed % 160)) for seed in range(3000)]
    started = time.perf_counter()
    found = dedupe.find_near_duplicates(tunes)
    assert time.perf_counter() - started < 5.0
    assert found.group_count() == 0  # random melodies are not near-duplicates of each other
