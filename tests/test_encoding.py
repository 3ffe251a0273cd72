"""The shared token encoding: exact indices, round trips, meters and pickups, skyline, pitch folding."""

from __future__ import annotations

import numpy as np
import pytest

from musegen_core import encoding
from musegen_core.encoding import HOLD, NOTE_ON, REST
from musegen_core.music import Note, Part, Piece, TimeSignature


def piece(*notes: Note, meter: tuple[int, int] = (4, 4), pickup_beats: float = 0.0) -> Piece:
    return Piece((Part("melody", notes),), time_signature=TimeSignature(*meter), pickup_beats=pickup_beats)


def test_token_constants_are_pinned():
    assert (REST, HOLD, NOTE_ON) == (0, 1, 2)
    assert (encoding.MIN_PITCH, encoding.MAX_PITCH, encoding.VOCAB_SIZE) == (43, 96, 56)
    assert encoding.STEPS_PER_BEAT == 4 and encoding.ENCODING_VERSION == 1


def test_exact_tokens_of_a_small_melody():
    # C4 quarter, eighth rest, E4 eighth, G4 half in 4/4
    melody = piece(Note(60, 0.0, 1.0), Note(64, 1.5, 0.5), Note(67, 2.0, 2.0))
    encoded = encoding.piece_to_tokens(melody)
    c4, e4, g4 = NOTE_ON + 60 - 43, NOTE_ON + 64 - 43, NOTE_ON + 67 - 43
    assert (c4, e4, g4) == (19, 23, 26)
    assert encoded.tokens.tolist() == [19, 1, 1, 1, 0, 0, 23, 1, 26, 1, 1, 1, 1, 1, 1, 1]
    assert encoded.tokens.dtype == np.int64
    assert (encoded.bar_steps, encoded.offset_steps) == (16, 0)


def test_total_steps_pads_with_rests_and_truncates():
    melody = piece(Note(60, 0.0, 1.0))
    assert encoding.piece_to_tokens(melody, total_steps=6).tokens.tolist() == [19, 1, 1, 1, 0, 0]
    assert encoding.piece_to_tokens(melody, total_steps=2).tokens.tolist() == [19, 1]


@pytest.mark.parametrize(
    "tokens",
    [
        [19, 1, 1, 1, 0, 0, 23, 1, 26, 1, 1, 1, 1, 1, 1, 1],
        [2, 55, 1, 0, 1, 30, 30, 30],  # range edges, repeated notes, a HOLD after a rest
        [0, 0, 40, 1, 1, 1, 1, 0],
    ],
)
def test_tokens_to_notes_to_tokens_round_trip(tokens):
    notes = encoding.tokens_to_notes(tokens)
    back = encoding.piece_to_tokens(piece(*notes), total_steps=len(tokens)).tokens.tolist()
    expected = [REST if t == HOLD and (i == 0 or tokens[i - 1] == REST) else t for i, t in enumerate(tokens)]
    assert back == expected  # a HOLD after a rest decodes as silence and comes back as REST


def test_tokens_to_notes_units_and_start():
    notes = encoding.tokens_to_notes([19, 1, 0, 23], start_beats=8.0, velocity=70)
    assert notes == [Note(60, 8.0, 0.5, 70), Note(64, 8.75, 0.25, 70)]


@pytest.mark.parametrize(
    ("meter", "pickup", "bar_steps", "offset"),
    [((4, 4), 0.0, 16, 0), ((4, 4), 1.0, 16, 12), ((3, 4), 1.0, 12, 8), ((6, 8), 0.5, 12, 10), ((2, 2), 0.0, 16, 0)],
)
def test_meter_and_pickup_give_bar_steps_and_offset(meter, pickup, bar_steps, offset):
    encoded = encoding.piece_to_tokens(piece(Note(60, 0.0, 0.25), meter=meter, pickup_beats=pickup))
    assert (encoded.bar_steps, encoded.offset_steps) == (bar_steps, offset)


def test_positions_put_the_downbeat_after_the_pickup():
    melody = piece(Note(67, 0.0, 1.0), Note(72, 1.0, 3.0), meter=(3, 4), pickup_beats=1.0)
    positions = encoding.piece_to_tokens(melody).positions()
    assert positions.tolist() == [8, 9, 10, 11, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]
    assert encoding.bar_positions(3, 12, 8, start=4).tolist() == [0, 1, 2]


def test_long_bars_share_the_last_position():
    positions = encoding.bar_positions(64, 64)  # 4/1: 64 steps a bar
    assert positions.max() == encoding.MAX_BAR_STEPS - 1 and positions[:48].tolist() == list(range(48))


def test_skyline_keeps_the_top_note_of_a_chord_and_cuts_at_the_next_onset():
    chord_then_d = Part("p", (Note(60, 0, 1), Note(64, 0, 1), Note(67, 0, 1), Note(62, 1, 1)))
    assert encoding.skyline(chord_then_d) == [Note(67, 0, 1), Note(62, 1, 1)]
    low_pedal = Part("p", (Note(48, 0, 4), Note(72, 1, 1)))
    assert encoding.skyline(low_pedal) == [Note(48, 0, 1), Note(72, 1, 1)]
    tokens = encoding.piece_to_tokens(piece(Note(60, 0, 1), Note(64, 0, 1), Note(67, 0, 1))).tokens
    assert tokens.tolist() == [26, 1, 1, 1]


@pytest.mark.parametrize(("pitch", "folded"), [(30, 54), (42, 54), (43, 43), (96, 96), (97, 85), (127, 91)])
def test_pitches_fold_by_octaves_into_range(pitch, folded):
    assert encoding.fold_pitch(pitch) == folded
    assert encoding.piece_to_tokens(piece(Note(pitch, 0, 0.25))).tokens.tolist() == [NOTE_ON + folded - 43]


def test_off_grid_onsets_round_to_sixteenths():
    triplets = piece(Note(60, 0, 1 / 3), Note(62, 1 / 3, 1 / 3), Note(64, 2 / 3, 1 / 3))
    assert encoding.piece_to_tokens(triplets).tokens.tolist() == [19, 21, 1, 23]


def test_regression_a_last_note_shorter_than_half_a_step_is_kept():
    # Its end used to round onto its start, so the melody encoded to zero steps and the note vanished.
    assert encoding.piece_to_tokens(piece(Note(60, 0.0, 0.1))).tokens.tolist() == [19]
    assert encoding.piece_to_tokens(piece(Note(60, 0, 1), Note(62, 1.0, 0.1))).tokens.tolist() == [19, 1, 1, 1, 21]


def test_empty_part_encodes_to_no_steps():
    assert len(encoding.piece_to_tokens(piece()).tokens) == 0
    assert encoding.tokens_to_notes([]) == []
