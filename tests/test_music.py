"""The one music type validates itself, keeps parts ordered and knows where its bar lines are."""

from __future__ import annotations

import numpy as np
import pytest

from musegen_core.music import Key, Note, Part, Piece, TimeSignature, pitch_name


def melody(*starts: float, duration: float = 1.0) -> Part:
    return Part("Melody", tuple(Note(60 + i, s, duration) for i, s in enumerate(starts)))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"pitch": 128}, "pitch must be within 0 and 127 (received 128)"),
        ({"velocity": 0}, "velocity must be within 1 and 127 (received 0)"),
        ({"start_beats": -1.0}, "start_beats must be finite and >= 0"),
        ({"duration_beats": 0.0}, "duration_beats must be finite and > 0"),
        ({"duration_beats": float("nan")}, "duration_beats must be finite"),
    ],
)
def test_invalid_notes_say_what_they_received(kwargs: dict, message: str) -> None:
    fields = {"pitch": 60, "start_beats": 0.0, "duration_beats": 1.0, "velocity": 90, **kwargs}
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Note(**fields)


def test_invalid_pieces_are_refused() -> None:
    with pytest.raises(ValueError, match="tempo_bpm"):
        Piece((), tempo_bpm=1000)
    with pytest.raises(ValueError, match="pickup_beats"):
        Piece((), time_signature=TimeSignature(3, 4), pickup_beats=3.0)
    with pytest.raises(ValueError, match="denominator"):
        TimeSignature(4, 3)
    with pytest.raises(ValueError, match="mode"):
        Key(0, "dorian")


def test_numpy_scalars_from_loaders_become_plain_python() -> None:
    note = Note(np.int64(64), np.float64(0.5), np.float32(1.0))
    part = Part("P", (note,), program=np.int64(40))
    assert type(note.pitch) is int and type(note.start_beats) is float and type(part.program) is int


def test_parts_sort_their_notes_and_know_monophony() -> None:
    part = melody(2.0, 0.0, 1.0)
    assert [n.start_beats for n in part.notes] == [0.0, 1.0, 2.0]
    assert part.is_monophonic()
    assert not melody(0.0, 0.5).is_monophonic()


def test_bar_lines_end_with_the_last_bar_that_holds_a_note() -> None:
    piece = Piece((melody(0, 1, 2, 3, 4, 5, 6, 7),))  # two full 4/4 bars
    assert piece.bar_lines_beats() == [0.0, 4.0, 8.0]
    assert piece.bar_count() == 2
    waltz_with_pickup = Piece((melody(0, 1, 2, 3),), time_signature=TimeSignature(3, 4), pickup_beats=1.0)
    assert waltz_with_pickup.bar_lines_beats() == [0.0, 1.0, 4.0]
    assert waltz_with_pickup.bar_count() == 2


def test_shifting_moves_notes_and_bar_lines_together() -> None:
    piece = Piece((melody(5, 6, 7),), time_signature=TimeSignature(3, 4), pickup_beats=1.0)  # bar line at 4
    moved = piece.shifted(-4.0)
    assert [n.start_beats for n in moved.parts[0].notes] == [1.0, 2.0, 3.0]
    assert moved.pickup_beats == 0.0 and moved.bar_lines_beats() == [0.0, 3.0, 6.0]


def test_pitch_names_and_durations() -> None:
    assert [pitch_name(p) for p in (60, 61, 70, 21)] == ["C4", "C#4", "Bb4", "A0"]
    piece = Piece((melody(0, 1),), tempo_bpm=120)
    assert piece.duration_seconds == pytest.approx(1.0)
    assert piece.only_part(0) == piece
    with pytest.raises(IndexError):
        piece.only_part(1)
