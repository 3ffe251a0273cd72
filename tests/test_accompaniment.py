"""The folk chord-and-bass accompaniment: chord choice in the key, oom-pah patterns per meter, pickups, voicing below
the melody, and clear refusals."""

from __future__ import annotations

import time

import pytest
from music21 import key as m21_key
from music21 import roman

from musegen_core.errors import ControlError
from musegen_core.formats.spelling import key_name
from musegen_core.harmony.accompaniment import BASS_PROGRAM, CHORDS_PROGRAM, VOCABULARY, accompany, chord_plan
from musegen_core.music import Key, Note, Part, Piece, TimeSignature

C_MAJOR_CHORDS = {"C", "Dm", "F", "G", "G7", "Am"}


def tune(pitches: list[int], beats: list[float], **piece: object) -> Piece:
    """A one-part melody: each pitch follows the last for its beats."""
    notes, start = [], 0.0
    for pitch, length in zip(pitches, beats, strict=True):
        notes.append(Note(pitch, start, length, velocity=100))
        start += length
    return Piece((Part("Melody", tuple(notes), program=73),), **piece)


C_SCALE = tune([60, 62, 64, 65, 67, 69, 71, 72, 71, 69, 67, 65, 64, 62, 60], [1] * 14 + [2])
TWINKLE = tune([60, 60, 67, 67, 69, 69, 67, 65, 65, 64, 64, 62, 62, 60], [1, 1, 1, 1, 1, 1, 2, 1, 1, 1, 1, 1, 1, 2])
WALTZ = tune([67, 72, 76, 79, 77, 74, 71, 67, 72], [1] * 8 + [3], time_signature=TimeSignature(3, 4))
JIG = tune(  # 6/8 with a one-eighth pickup
    [67, 72, 71, 72, 74, 72, 71, 72, 74, 76, 74, 71, 67, 72],
    [0.5] * 13 + [1.5],
    time_signature=TimeSignature(6, 8),
    pickup_beats=0.5,
)


def starts(part: Part) -> list[float]:
    return sorted({n.start_beats for n in part.notes})


def assert_below_melody(result: Piece) -> None:
    melody, chords, _ = result.parts
    for chord_note in chords.notes:
        for note in melody.notes:
            if note.start_beats < chord_note.end_beats and chord_note.start_beats < note.end_beats:
                assert chord_note.pitch < note.pitch, (chord_note, note)


@pytest.mark.parametrize("melody", [C_SCALE, TWINKLE, WALTZ, JIG], ids=["scale", "twinkle", "waltz", "jig"])
def test_melody_is_kept_and_chords_stay_below_it(melody: Piece) -> None:
    result = accompany(melody)
    assert result.parts[0] is melody.parts[0]
    assert [(p.name, p.program) for p in result.parts[1:]] == [("Chords", CHORDS_PROGRAM), ("Bass", BASS_PROGRAM)]
    assert (result.time_signature, result.pickup_beats, result.tempo_bpm) == (
        melody.time_signature,
        melody.pickup_beats,
        melody.tempo_bpm,
    )
    assert result.end_beats == melody.end_beats  # the accompaniment ends with the melody
    assert_below_melody(result)
    assert max(n.pitch for n in result.parts[2].notes) < min(n.pitch for n in result.parts[1].notes)


def test_c_major_tune_gets_c_major_chords_ending_on_c() -> None:
    plan = chord_plan(C_SCALE)
    assert [start for start, _ in plan] == [0.0, 4.0, 8.0, 12.0]
    assert {symbol for _, symbol in plan} <= C_MAJOR_CHORDS
    assert plan[-1][1] == "C"
    assert plan[2][1] == "G7"  # B A G F: the melody sounds the dominant's seventh
    chord_notes = accompany(C_SCALE).parts[1].notes
    assert {n.pitch % 12 for n in chord_notes} <= {0, 2, 4, 5, 7, 9, 11}


def test_twinkle_gets_the_textbook_harmony_with_half_bar_changes() -> None:
    # C C G G | A A G– | F F E E | D D C–: the halves of bars 2–4 change harmony.
    assert chord_plan(TWINKLE) == [
        (0.0, "C"),
        (4.0, "F"),
        (6.0, "C"),
        (8.0, "F"),
        (10.0, "C"),
        (12.0, "G"),
        (14.0, "C"),
    ]


def test_four_four_bass_plays_root_on_one_and_fifth_on_three() -> None:
    _, chords, bass = accompany(C_SCALE).parts
    assert [(n.start_beats, n.pitch % 12) for n in bass.notes[:2]] == [(0.0, 0), (2.0, 7)]  # C then G under C
    assert starts(bass) == [0.0, 2.0, 4.0, 6.0, 8.0, 10.0, 12.0]  # the last chord is struck once and held
    assert starts(chords) == [1.0, 3.0, 5.0, 7.0, 9.0, 11.0, 12.0]


def test_waltz_plays_oom_pah_pah() -> None:
    _, chords, bass = accompany(WALTZ).parts
    assert starts(bass) == [0.0, 3.0, 6.0, 9.0]
    assert starts(chords) == [1.0, 2.0, 4.0, 5.0, 7.0, 8.0, 9.0]
    assert chord_plan(WALTZ)[-1] == (9.0, "C")


def test_jig_waits_for_the_first_full_bar_and_plays_on_beats_one_and_four() -> None:
    _, chords, bass = accompany(JIG).parts
    assert starts(bass) == [0.5, 2.0, 3.5, 5.0, 6.5]
    assert starts(chords) == [1.0, 1.5, 2.5, 3.0, 4.0, 4.5, 5.5, 6.0, 6.5]
    assert chord_plan(JIG)[0][0] == 0.5


def test_minor_tune_uses_the_minor_chords_and_a_major_dominant() -> None:
    melody = tune([69, 72, 76, 72, 71, 64, 68, 71, 69], [1] * 8 + [4], key=Key(9, "minor"))
    assert [symbol for _, symbol in chord_plan(melody)] == ["Am", "E", "Am"]


def test_chord_vocabulary_matches_music21_roman_numerals_in_every_key() -> None:
    for tonic in range(12):
        for mode in ("major", "minor"):
            key = Key(tonic, mode)
            name = key_name(key).removesuffix("m").replace("b", "-")
            m21 = m21_key.Key(name.lower() if mode == "minor" else name)
            for chord in VOCABULARY[mode]:
                numeral = roman.RomanNumeral(chord.roman, m21)
                assert chord.pitch_classes(key) == frozenset(numeral.pitchClasses), (key, chord.roman)
                assert chord.symbol(key).startswith(numeral.root().name.replace("-", "b")), (key, chord.roman)


def test_chord_symbols_are_spelled_in_the_key() -> None:
    b_flat = tune([70, 74, 77, 75, 72, 69, 70], [1, 1, 1, 1, 1, 1, 2], key=Key(10, "major"))
    assert {symbol for _, symbol in chord_plan(b_flat)} <= {"Bb", "Cm", "Eb", "F", "F7", "Gm"}


def test_other_parts_are_left_out_and_the_chosen_one_kept() -> None:
    drums = Part("Drums", (Note(36, 0, 1),), is_drum=True)
    piece = C_SCALE.with_parts((drums, C_SCALE.parts[0]))
    result = accompany(piece, part_index=1)
    assert result.parts[0] is C_SCALE.parts[0]
    assert len(result.parts) == 3
    with pytest.raises(ControlError, match="drum part"):
        accompany(piece, part_index=0)
    with pytest.raises(ControlError, match=r"part_index must be within 0 and 1 \(received 2\)"):
        accompany(piece, part_index=2)


def test_one_note_gets_its_tonic_chord() -> None:
    result = accompany(tune([67], [4]))
    assert chord_plan(tune([67], [4])) == [(0.0, "G")]
    assert len(result.parts[1].notes) == 3 and len(result.parts[2].notes) == 1


@pytest.mark.parametrize(
    ("melody", "message"),
    [
        (Piece((Part("Melody"),)), "no notes"),
        (tune([67], [0.5], pickup_beats=1.0), "ends within its pickup"),
        (tune([60, 43], [1, 1]), "goes down to G2"),
    ],
    ids=["empty", "pickup-only", "too-low"],
)
def test_melodies_that_cannot_be_accompanied_are_refused(melody: Piece, message: str) -> None:
    with pytest.raises(ControlError, match=message):
        accompany(melody)


def test_a_64_bar_tune_takes_well_under_half_a_second() -> None:
    melody = tune([60, 64, 67, 72, 71, 67, 65, 62] * 64, [0.5] * 512)
    accompany(melody)  # warm-up
    began = time.perf_counter()
    accompany(melody)
    assert time.perf_counter() - began < 0.5
