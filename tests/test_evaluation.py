"""Evaluation metrics on hand-made cases with known answers, then one tiny `musegen eval` run end to end."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math

import numpy as np
import pytest
import torch

from musegen_core import encoding
from musegen_core.cli import main
from musegen_core.evaluation import features, harness, originality, overlap, takes
from musegen_core.models import checkpoint
from musegen_core.models.lstm import PRESETS, MelodyLSTM


def melody(notes: list[tuple[int | None, int]], lead: list[int] | None = None) -> np.ndarray:
    """Tokens of (pitch or None for a rest, sounding steps) pairs, after optional raw `lead` tokens."""
    tokens = list(lead or [])
    for pitch, steps in notes:
        first = encoding.REST if pitch is None else encoding.NOTE_ON + pitch - encoding.MIN_PITCH
        tokens += [first] + [encoding.HOLD] * (steps - 1)
    return np.array(tokens, dtype=np.int64)


# ---------------------------------------------------------------------------------------------------------------
# Features

TWO_BARS = melody([(60, 4), (62, 2), (None, 2), (64, 8), (67, 4), (67, 4), (72, 8)])  # 4/4: 16 steps a bar


def test_notes_of_a_hand_made_melody():
    notes = features.notes_of(TWO_BARS)
    assert notes.pitches.tolist() == [60, 62, 64, 67, 67, 72]
    assert notes.onsets.tolist() == [0, 4, 8, 16, 20, 24]
    assert notes.lengths.tolist() == [4, 2, 8, 4, 4, 8]


def test_features_of_a_hand_made_melody_are_exact():
    got = features.melody_features(TWO_BARS, bar_steps=16, bars=2)
    assert got["pitch_count"].tolist() == [5] and got["pitch_range"].tolist() == [12]
    pitch_classes = np.zeros(12)
    pitch_classes[[0, 2, 4, 7]] = [12 / 30, 2 / 30, 8 / 30, 8 / 30]  # weighted by sounding steps
    np.testing.assert_allclose(got["pitch_class_histogram"], pitch_classes)
    intervals = np.zeros(25)
    intervals[[12 + 2, 12 + 3, 12 + 0, 12 + 5]] = [2 / 5, 1 / 5, 1 / 5, 1 / 5]  # +2 +2 +3 0 +5
    np.testing.assert_allclose(got["interval_histogram"], intervals)
    lengths = np.zeros(16)
    lengths[[1, 3, 7]] = [1 / 6, 3 / 6, 2 / 6]  # 2, 4 (three times) and 8 steps
    np.testing.assert_allclose(got["note_length_histogram"], lengths)
    assert got["inter_onset_interval"].tolist() == [pytest.approx(24 / 5)]
    assert got["notes_per_bar"].tolist() == [3, 3]


def test_tied_in_holds_are_silent_and_wide_values_are_clipped():
    tokens = melody([(48, 20), (70, 1)], lead=[encoding.HOLD, encoding.HOLD])
    got = features.melody_features(tokens, bar_steps=12, bars=2)
    assert features.notes_of(tokens).onsets.tolist() == [2, 22]
    assert got["interval_histogram"][24] == 1.0  # +22 semitones lands in the +12 bin
    assert got["note_length_histogram"][15] == 0.5  # 20 steps land in the 16-step bin
    assert got["notes_per_bar"].tolist() == [1, 1]


def test_a_silent_melody_has_zero_features():
    got = features.melody_features(np.zeros(32, dtype=np.int64), bar_steps=16, bars=2)
    assert all(not value.any() for value in got.values())
    assert {name: value.shape for name, value in got.items()}["notes_per_bar"] == (2,)


# ---------------------------------------------------------------------------------------------------------------
# Overlap areas


def test_intra_and_inter_set_distances():
    values = np.array([[0.0], [1.0], [3.0]])
    assert overlap.intra_set_distances(values).tolist() == [1.0, 3.0, 2.0]
    assert overlap.inter_set_distances(np.array([[0.0, 0.0], [3.0, 4.0]]), np.array([[0.0, 0.0]])).tolist() == [0, 5]


def test_overlap_of_identical_samples_is_one_and_of_distant_ones_zero():
    samples = np.random.default_rng(0).normal(size=500)
    assert overlap.overlap_area(samples, samples.copy()) == pytest.approx(1.0, abs=1e-3)
    assert overlap.overlap_area(samples, samples + 20) == pytest.approx(0.0, abs=1e-3)
    assert overlap.overlap_area(np.zeros(50), np.zeros(80)) == pytest.approx(1.0, abs=1e-3)  # σ = 0 stays finite


def test_overlap_of_two_shifted_gaussians_matches_the_formula():
    rng = np.random.default_rng(1)
    a, b = rng.normal(0, 1, 4000), rng.normal(1, 1, 4000)
    expected = 2 * 0.5 * math.erfc(0.5 / math.sqrt(2))  # OVL of N(0,1), N(1,1) = 2Φ(−δ/2) ≈ 0.617
    assert overlap.overlap_area(a, b) == pytest.approx(expected, abs=0.03)


def random_melodies(count: int, seed: int) -> list[dict[str, np.ndarray]]:
    """Features of `count` random 4-bar melodies: 16 notes of 4 steps or 8 of 8, pitches within an octave."""
    rng = np.random.default_rng(seed)
    notes = [[(int(60 + rng.integers(12)), int(s)) for s in [rng.choice([4, 8])] * 16] for _ in range(count)]
    return [features.melody_features(melody(n)[:64], bar_steps=16, bars=4) for n in notes]


def test_identical_sets_overlap_fully():
    table = features.feature_table(random_melodies(60, seed=2))
    result = overlap.feature_overlaps(table, table)
    assert set(result) == set(features.FEATURES)
    assert all(entry["intra_overlap"] == pytest.approx(1.0, abs=1e-3) for entry in result.values())
    assert overlap.mean_overlap(result) > 0.95  # inter-set holds the n self-pairs (distance 0) as well


def test_disjoint_sets_do_not_overlap():
    reference = {"pitch_range": np.arange(40, dtype=float)[:, None] % 3}  # ranges 0–2 semitones
    generated = {"pitch_range": 30 + np.arange(40, dtype=float)[:, None] % 3}  # 30–32
    assert overlap.feature_overlaps(generated, reference)["pitch_range"]["overlap"] == pytest.approx(0, abs=1e-3)


# ---------------------------------------------------------------------------------------------------------------
# Originality

BARS = {  # 4/4 bars of a "training" tune, (pitch, steps)
    "A": [(60, 4), (62, 2), (64, 2), (65, 4), (67, 4)],
    "B": [(69, 2), (67, 2), (65, 2), (64, 2), (62, 8)],
    "C": [(60, 6), (64, 2), (67, 4), (72, 4)],
    "D": [(71, 2), (69, 2), (67, 4), (65, 4), (64, 4)],
    "E": [(62, 8), (59, 8)],
    "F": [(60, 16)],
}
TRAINING = melody([note for bar in "ABCDEF" for note in BARS[bar]])


def up(notes: list[tuple[int, int]], semitones: int) -> list[tuple[int, int]]:
    return [(pitch + semitones, steps) for pitch, steps in notes]


@pytest.fixture(scope="module")
def index() -> originality.CopyIndex:
    other = melody([(50 + k % 7, 3) for k in range(40)])  # a second tune: n-grams never chain across tunes
    return originality.CopyIndex([TRAINING, other])


def test_three_bars_copied_transposed_are_found_with_their_length(index):
    copied = up(BARS["B"] + BARS["C"] + BARS["D"], 3)  # 14 notes, 3 bars
    take = melody([(50, 16), *copied, (80, 16)])  # the leaps into and out of the copy are not in the corpus
    report = index.report(take, bar_steps=16)
    assert report == originality.CopyReport(notes=14, bars=3.0) and report.copies


def test_the_two_bar_threshold():
    index = originality.CopyIndex([TRAINING])
    two_bars = index.report(melody([(50, 16), *up(BARS["B"] + BARS["C"], -2), (80, 16)]), bar_steps=16)
    assert two_bars == originality.CopyReport(9, 2.0) and two_bars.copies
    short = index.report(melody([(50, 16), *up(BARS["B"] + BARS["C"][:3], -2), (80, 4)]), bar_steps=16)
    assert short == originality.CopyReport(8, 1.75) and not short.copies  # B + 3 notes of C: 1.75 bars


def test_an_original_take_copies_nothing(index):
    take = melody([(60 + k % 5, 3 if k % 2 else 5) for k in range(24)])
    assert index.report(take, bar_steps=16) == originality.CopyReport(0, 0.0)


def naive_longest_copy(take: np.ndarray, tunes: list[np.ndarray]) -> int:
    """Most consecutive notes of `take` equal, up to one transposition, to notes of one tune, with equal
    inter-onset intervals — by comparing every alignment."""

    def notes(tokens: np.ndarray) -> list[tuple[int, int]]:
        found = features.notes_of(tokens)
        return list(zip(found.pitches.tolist(), np.diff(np.append(found.onsets, len(tokens))).tolist(), strict=True))

    mine, best = notes(take), 0
    for theirs in map(notes, tunes):
        for i, j in itertools.product(range(len(mine)), range(len(theirs))):
            pairs = zip(mine[i:], theirs[j:], strict=False)  # up to the shorter end
            same = [a[1] == b[1] and a[0] - mine[i][0] == b[0] - theirs[j][0] for a, b in pairs]
            best = max(best, same.index(False) if False in same else len(same))
    return best if best > originality.GRAM else 0


def test_copy_index_agrees_with_a_brute_force_search():
    rng = np.random.default_rng(3)

    def random_tune(count: int) -> np.ndarray:  # few pitches and lengths, so that runs repeat by chance
        return melody([(int(60 + rng.integers(3)), int(rng.choice([2, 4]))) for _ in range(count)])

    tunes = [random_tune(60) for _ in range(5)]
    index = originality.CopyIndex(tunes)
    found = []
    for _ in range(10):
        take = random_tune(30)
        found.append(index.report(take, bar_steps=16).notes)
        assert found[-1] == naive_longest_copy(take, tunes)
    assert len(set(found)) > 2  # runs of several lengths were found: the comparison is not all zeros


def test_summary_of_copy_reports():
    reports = [originality.CopyReport(14, 3.0), originality.CopyReport(0, 0.0), originality.CopyReport(6, 1.0)]
    summary = originality.summarise(reports)
    assert summary["copy_rate_2bars"] == pytest.approx(1 / 3)
    assert summary["longest_copy_notes"] == 14 and summary["longest_copy_bars"] == 3.0
    assert summary["median_copy_notes"] == 6


# ---------------------------------------------------------------------------------------------------------------
# Protocol pieces


def test_diversity_is_zero_for_equal_takes_and_one_for_disjoint_ones():
    a, b = melody([(60, 4)] * 8), melody([(61, 2)] * 16)
    assert takes.diversity([a, a.copy()], bar_steps=16, bars=2) == 0.0
    assert takes.diversity([a, b], bar_steps=16, bars=2) == pytest.approx(1.0)


def test_style_quotas_share_evenly_and_refill_from_larger_styles():
    assert takes._quotas({"a": 100, "b": 3, "c": 100}, 10) == {"a": 4, "b": 3, "c": 3}
    assert takes._quotas({"a": 2, "b": 1}, 10) == {"a": 2, "b": 1}


def test_a_context_on_another_split_has_no_test_baseline():
    with pytest.raises(ValueError, match="test split"):
        harness.Context(None, 10, 0, split="valid")  # refused before the corpus is read


# ---------------------------------------------------------------------------------------------------------------
# A tiny end-to-end run: a tiny style-conditioned LSTM on 80 O'Neill tunes


def test_tiny_eval_run_writes_the_report(tmp_path, monkeypatch, capsys):  # `musegen eval` through the CLI
    monkeypatch.setenv("MUSEGEN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("MUSEGEN_MODELS_DIR", str(tmp_path / "models"))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        config = dataclasses.replace(PRESETS["lstm-tiny"], styles=("irish",))
        checkpoint.save_checkpoint(MelodyLSTM(config).eval(), config, tmp_path / "models" / "tiny", "# tiny\n", {})
    options = ["--collections", "oneills", "--max-tunes", "80", "--takes", "4", "--workers", "1"]
    assert main(["eval", *options, "--json", str(tmp_path / "eval.json")]) == 0
    report = json.loads((tmp_path / "eval.json").read_text())
    assert report["split"] == "test" and report["baseline"]["order"] >= 2
    assert report["baseline"]["nll_bits_per_step"] > 0
    model = report["models"]["tiny"]
    assert model["family"] == "lstm" and model["style_conditioned"] is True
    assert model["nll_bits_per_step"] > 0 and set(model["overlap"]) == set(features.FEATURES)
    assert 0 <= model["overlap_mean"] <= 1.01 and 0 <= model["copy_rate_2bars"] <= 1
    for key in ("longest_copy_notes", "longest_copy_bars", "diversity", "ms_per_bar", "overlap_by_style"):
        assert key in model
    assert report["protocol"]["excerpts"] == model["takes"] >= 2
    assert report["families"]["lstm"]["models"] == ["tiny"]
    assert "| `tiny` | lstm |" in capsys.readouterr().out
