"""The analysis panel: key estimation (music21's Krumhansl–Schmuckler), scale degrees, intervals, rhythm, range, and
the prime-vs-take figure."""

from __future__ import annotations

from pathlib import Path

import music21
import pytest

from musegen_core.analysis import (
    INTERVALS,
    RHYTHM_LABELS,
    PitchRange,
    analyze,
    compare,
    degree_labels,
    rhythm_bucket,
    top_line,
)
from musegen_core.formats.musicxml import musicxml_to_piece
from musegen_core.music import Key, Note, Part, Piece
from musegen_core.render.analysis_plots import analysis_figure
from musegen_core.render.pianoroll import PRIME_COLOR, TAKE_COLOR

BACH_CHORALE = Path(music21.__file__).parent / "corpus" / "bach" / "bwv66.6.mxl"  # in F♯ minor


def melody(pitches_and_beats: list[tuple[int, float]], name: str = "melody") -> Part:
    """A monophonic part: each (pitch, duration in beats) follows the last."""
    notes, start = [], 0.0
    for pitch, beats in pitches_and_beats:
        notes.append(Note(pitch, start, beats))
        start += beats
    return Part(name, tuple(notes))


C_MAJOR_TUNE = melody(
    [(60, 1), (64, 1), (67, 1), (64, 1), (65, 1), (67, 1), (69, 1), (67, 1),
     (65, 1), (64, 1), (62, 1), (64, 1), (60, 1), (62, 1), (59, 1), (60, 3)]
)  # fmt: skip
A_MINOR_TUNE = melody(
    [(69, 1), (72, 1), (76, 1), (72, 1), (71, 1), (68, 1), (69, 2),
     (64, 1), (69, 1), (71, 1), (72, 1), (74, 1), (71, 1), (68, 1), (69, 3)]
)  # fmt: skip

# A hand-built phrase (C major), with a low E3 held under the first notes: the top line skips it.
# (pitch, start, duration): interval to the previous top-line note, note value
PHRASE = Part(
    "phrase",
    (
        Note(52, 0, 4),  # E3, under the top line
        Note(60, 0, 1),  # C4 quarter
        Note(64, 1, 0.5),  # E4 +4, 8th
        Note(67, 1.5, 0.5),  # G4 +3, 8th
        Note(72, 2, 1.5),  # C5 +5, dotted quarter
        Note(71, 3.5, 0.5),  # B4 −1, 8th
        Note(69, 4, 0.75),  # A4 −2, dotted 8th
        Note(66, 4.75, 0.25),  # F♯4 −3, 16th
        Note(67, 5, 1 / 3),  # G4 +1, 8th triplet
        Note(69, 5 + 1 / 3, 1 / 3),  # A4 +2, 8th triplet
        Note(67, 5 + 2 / 3, 1 / 3),  # G4 −2, 8th triplet
        Note(48, 6, 2),  # C3 −19 → the "≤ −12" bin, half
        Note(72, 8, 1.25),  # C5 +24 → the "≥ +12" bin, other (a quarter tied to a 16th)
        Note(72, 9.25, 2.75),  # C5 0, other
    ),
)


# ---------------------------------------------------------------------------------------------------------------
# key


def test_a_c_major_tune_is_in_c_major() -> None:
    result = analyze(C_MAJOR_TUNE)
    assert result.key == Key(0, "major")
    assert 0.5 < result.key_confidence <= 1


def test_an_a_minor_tune_with_its_raised_seventh_is_in_a_minor() -> None:
    assert analyze(A_MINOR_TUNE).key == Key(9, "minor")


def test_the_soprano_of_a_bach_chorale_is_in_its_written_key() -> None:
    chorale = musicxml_to_piece(BACH_CHORALE.read_bytes())  # read by ElementTree: music21 caches no pickle
    soprano = chorale.parts[0]
    assert soprano.name == "Soprano"
    assert chorale.key == Key(6, "minor")
    assert analyze(soprano).key == Key(6, "minor")
    assert analyze(chorale).key == Key(6, "minor")


def test_transposing_moves_the_key() -> None:
    up_a_fourth = Part("up", tuple(Note(n.pitch + 5, n.start_beats, n.duration_beats) for n in A_MINOR_TUNE.notes))
    assert analyze(up_a_fourth).key == Key(2, "minor")


# ---------------------------------------------------------------------------------------------------------------
# histograms on the hand-built phrase


def test_top_line_is_the_highest_note_of_each_onset() -> None:
    line = top_line(PHRASE.notes)
    assert len(line) == 13
    assert line[0].pitch == 60


def test_interval_histogram_is_exact_with_leaps_clipped_to_the_end_bins() -> None:
    counts = dict(zip(INTERVALS, analyze(PHRASE).intervals, strict=True))
    expected = {4: 1, 3: 1, 5: 1, -1: 1, -2: 2, -3: 1, 1: 1, 2: 1, -12: 1, 12: 1, 0: 1}
    assert counts == {step: expected.get(step, 0) for step in INTERVALS}


def test_rhythm_histogram_is_exact() -> None:
    counts = dict(zip(RHYTHM_LABELS, analyze(PHRASE).rhythm, strict=True))
    assert counts == {
        "16th": 1,
        "8th triplet": 3,
        "8th": 3,
        "dotted 8th": 1,
        "quarter": 1,
        "dotted quarter": 1,
        "half": 1,
        "dotted half": 0,
        "whole": 0,
        "other": 2,
    }


@pytest.mark.parametrize(
    ("beats", "bucket"),
    [(0.25, "16th"), (160 / 480, "8th triplet"), (1.5, "dotted quarter"), (4.0, "whole"), (0.125, "other"),
     (8.0, "other")],
)  # fmt: skip
def test_rhythm_buckets(beats: float, bucket: str) -> None:
    assert rhythm_bucket(beats) == bucket


def test_scale_degree_histogram_is_exact_and_duration_weighted() -> None:
    result = analyze(PHRASE, key=Key(0, "major"))
    degrees = dict(zip(degree_labels("major"), result.degrees, strict=True))
    assert degrees == pytest.approx(
        {"1": 1 + 1.5 + 2 + 1.25 + 2.75, "♭2": 0, "2": 0, "♭3": 0, "3": 0.5 + 4, "4": 0, "♯4": 0.25,
         "5": 0.5 + 2 / 3, "♭6": 0, "6": 0.75 + 1 / 3, "♭7": 0, "7": 0.5}
    )  # fmt: skip
    assert result.degree_key == Key(0, "major")


def test_minor_degrees_name_the_raised_seventh() -> None:
    result = analyze(A_MINOR_TUNE)
    degrees = dict(zip(degree_labels("minor"), result.degrees, strict=True))
    assert degrees["♯7"] == 2  # the two G♯ quarters
    assert degrees["7"] == 0
    assert degrees["1"] == 1 + 2 + 1 + 3


def test_range_is_lowest_highest_span_and_mean() -> None:
    found = analyze(PHRASE).range
    pitches = [note.pitch for note in PHRASE.notes]
    assert found == PitchRange(48, 72, pytest.approx(sum(pitches) / 14))
    assert found is not None and found.span == 24


def test_a_piece_is_analysed_over_its_pitched_parts_without_drums() -> None:
    drums = Part("drums", (Note(36, 0, 1), Note(38, 1, 1)), is_drum=True)
    piece = Piece((C_MAJOR_TUNE, drums))
    assert analyze(piece) == analyze(C_MAJOR_TUNE)


def test_no_notes_give_an_empty_analysis() -> None:
    result = analyze(Part("empty"))
    assert (result.key, result.degree_key, result.range, result.note_count) == (None, None, None, 0)
    assert not any(result.degrees) and not any(result.intervals) and not any(result.rhythm)


def test_compare_measures_the_take_in_the_primes_key() -> None:
    prime, take = compare(C_MAJOR_TUNE, A_MINOR_TUNE)
    assert prime.degree_key == prime.key == Key(0, "major")
    assert take.key == Key(9, "minor") and take.degree_key == Key(0, "major")
    assert dict(zip(degree_labels("major"), take.degrees, strict=True))["6"] == 1 + 2 + 1 + 3  # the A's


# ---------------------------------------------------------------------------------------------------------------
# the figure


def test_figure_compares_prime_and_take_in_the_piano_roll_colours() -> None:
    prime, take = compare(C_MAJOR_TUNE, A_MINOR_TUNE)
    figure = analysis_figure(prime, take)
    assert len(figure.data) == 10  # per melody: degree, interval and rhythm bars, range line, mean diamond
    by_color = {PRIME_COLOR: [], TAKE_COLOR: []}
    for trace in figure.data:
        hollow = trace.marker.color == "white"  # the mean diamond: white inside, the melody's colour around
        by_color[trace.marker.line.color if hollow else trace.marker.color].append(trace)
    assert [len(traces) for traces in by_color.values()] == [5, 5]
    legend = [trace.name for trace in figure.data if trace.showlegend]
    assert legend == ["Prime · C major", "Take · A minor"]
    bars = [trace for trace in figure.data if trace.type == "bar"]
    assert [len(trace.x) for trace in bars] == [12, 25, 10] * 2
    for trace in bars:
        assert sum(trace.y) == pytest.approx(100)  # shares of each melody's own total
    assert figure.layout.barmode == "group"
    assert figure.layout.annotations[0].text == "Scale degrees in C major (% of time)"


def test_figure_puts_each_panel_on_its_own_axes() -> None:
    figure = analysis_figure(analyze(PHRASE, key=Key(9, "minor")))
    axes = [(trace.xaxis, trace.yaxis) for trace in figure.data]
    assert axes == [("x", "y"), ("x2", "y2"), ("x3", "y3"), ("x4", "y4"), ("x4", "y4")]
    assert list(figure.layout.xaxis.ticktext) == list(degree_labels("minor"))
    assert figure.data[0].customdata[3] == "3: 8.5 beats"  # the Cs, third of A minor
    assert figure.data[1].customdata[0] == "≤ −12 semitones: 1"
    range_line, mean = figure.data[3], figure.data[4]
    assert list(range_line.x) == [48, 72] and list(range_line.y) == ["Prime", "Prime"]
    assert mean.x[0] == pytest.approx(sum(note.pitch for note in PHRASE.notes) / 14)


def test_figure_of_a_melody_without_notes_has_no_range() -> None:
    figure = analysis_figure(analyze(Part("empty")), analyze(C_MAJOR_TUNE), labels=("Yours", "Model"))
    assert len(figure.data) == 3 + 5
    assert all(value == 0 for value in figure.data[0].y)
    assert [trace.name for trace in figure.data if trace.showlegend] == ["Yours", "Model · C major"]


def test_the_app_makes_a_takes_analysis_once_for_every_session_and_drawing_it_changes_nothing() -> None:
    """The app shares one analysis figure per prime and take between reruns and sessions (`ui._analysis_figure`):
    the second call is the same object, and drawing it with `st.plotly_chart` leaves it as it was."""
    import streamlit as st

    from musegen_core import ui

    prime, take = Piece(parts=(C_MAJOR_TUNE,)), Piece(parts=(A_MINOR_TUNE,))
    figure = ui._analysis_figure(prime, take)
    before = figure.to_json()
    st.plotly_chart(figure)
    assert ui._analysis_figure(prime, take) is figure
    assert figure.to_json() == before
    assert ui._analysis_figure(take, prime) is not figure
