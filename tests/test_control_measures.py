"""The numbers the controls bench and the Style Gallery read off a melody, on hand-made melodies with known answers."""

from __future__ import annotations

import math

import pytest

from musegen_core.evaluation import control_measures as measure
from musegen_core.music import Note, Part, Piece, TimeSignature


def melody(notes: list[tuple[int, float, float]], meter=(4, 4), tempo=120.0, pickup=0.0) -> Piece:
    part = Part("m", tuple(Note(p, start, length) for p, start, length in notes))
    return Piece((part,), tempo_bpm=tempo, time_signature=TimeSignature(*meter), pickup_beats=pickup)


SCALE_UP = melody([(60 + step, i * 1.0, 1.0) for i, step in enumerate((0, 2, 4, 5, 7, 9, 11, 12))])  # C major, 2 bars


def test_counts_and_spans():
    assert measure.onsets_per_bar(SCALE_UP, 2) == 4
    assert measure.pitch_span(SCALE_UP) == 12
    assert measure.mean_interval(SCALE_UP) == pytest.approx(12 / 7)
    assert measure.notes_per_second(SCALE_UP, 2) == 2  # 8 notes in 4 s at 120 bpm


def test_off_beat_share_follows_the_felt_beat():
    straight = melody([(60, 0, 0.5), (62, 0.5, 0.5), (64, 1.5, 0.5), (65, 2, 1)])
    assert measure.off_beat_share(straight) == 0.5
    jig = melody([(60, 0, 0.5), (62, 0.5, 0.5), (64, 1.0, 0.5), (65, 1.5, 1.5)], meter=(6, 8))  # beats: 0, 1.5
    assert measure.off_beat_share(jig) == 0.5
    with_pickup = melody([(60, 0, 0.5), (62, 0.5, 1.0)], pickup=0.5)  # the downbeat is at 0.5
    assert measure.off_beat_share(with_pickup) == 0.5
    assert math.isnan(measure.off_beat_share(melody([])))


def test_scale_and_mode_measures():
    assert measure.in_scale_share(SCALE_UP, 0, (0, 2, 4, 5, 7, 9, 11)) == 1.0
    assert measure.in_scale_share(SCALE_UP, 0, (0, 2, 3, 5, 7, 8, 10)) == 5 / 8  # E, A, B are not in C minor
    assert measure.majorness(SCALE_UP, 0) == 3 / 8  # E, A, B major degrees; none minor
    c_minor = melody([(60, 0, 1), (63, 1, 1), (67, 2, 1), (68, 3, 1)])
    assert measure.majorness(c_minor, 0) == -0.5


def test_pitch_class_entropy():
    assert measure.pitch_class_entropy(melody([(60, 0, 1), (72, 1, 1)])) == 0  # one pitch class
    assert measure.pitch_class_entropy(melody([(60, 0, 1), (62, 1, 1)])) == 1
    assert measure.pitch_class_entropy(SCALE_UP) == pytest.approx(
        -(6 * 1 / 8 * math.log2(1 / 8) + 2 / 8 * math.log2(2 / 8))
    )


def test_spearman_known_answers():
    assert measure.spearman([1, 2, 3, 4], [10, 20, 30, 1000]) == pytest.approx(1.0)
    assert measure.spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert measure.spearman([1, 1, 2, 2], [1, 2, 3, 4]) == pytest.approx(0.894427191)  # ties get average ranks
    assert measure.spearman([1, 2, 3, 4], [1, float("nan"), 2, 3]) == pytest.approx(1.0)  # NaN pairs dropped
    assert math.isnan(measure.spearman([1, 1, 1], [1, 2, 3]))


def test_similarity_to_a_source_melody():
    up = melody([(60, 0, 1), (62, 1, 1), (64, 2, 1), (65, 3, 1)])
    up_a_fifth_higher = melody([(67, 0, 1), (69, 1, 1), (71, 2, 1), (72, 3, 1)])
    down = melody([(65, 0, 1), (63, 1, 1), (61, 2, 1), (60, 3, 1)])  # the mirror image
    assert measure.contour_similarity(up, up_a_fifth_higher, 16) == pytest.approx(1.0)
    assert measure.contour_similarity(up, down, 16) == pytest.approx(-1.0)
    assert measure.rhythm_similarity(up, down) == 1.0
    offbeat = melody([(60, 0.5, 1), (62, 1.5, 1)])
    assert measure.rhythm_similarity(up, offbeat) == 0.0
    assert measure.rhythm_similarity(up, melody([(60, 0, 2), (64, 2, 2)])) == pytest.approx(2 * 2 / (4 + 2))


def test_the_pitch_line_holds_through_rests():
    with_rest = melody([(60, 0, 1), (67, 2, 1)])  # a rest on beat 1
    assert measure.pitch_line(with_rest, 12).tolist() == [60] * 8 + [67] * 4
    assert measure.pitch_line(melody([(64, 1, 1)]), 6).tolist() == [64] * 6  # before the first note: its pitch
