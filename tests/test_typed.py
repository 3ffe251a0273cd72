"""Typed melodies (`formats.typed`): note names or ABC fragments → `Piece`, with errors that point at the token."""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from musegen_core.errors import FormatError
from musegen_core.formats import typed
from musegen_core.formats.abc import AbcTune, abc_tune_to_piece, split_tunes
from musegen_core.formats.typed import (
    MAX_TYPED_CHARS,
    MAX_TYPED_NOTES,
    SYNTAX_HELP,
    TYPED_TITLE,
    parse_notes,
    parse_typed,
    typed_abc_tune,
    typed_syntax,
)
from musegen_core.music import Key, Piece, TimeSignature, pitch_name

PROPERTY_SETTINGS = settings(
    max_examples=200, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck)
)


def notes_of(piece: Piece) -> list[tuple[int, float, float]]:
    """(pitch, start, duration) of every note of the piece's only part."""
    (part,) = piece.parts
    return [(note.pitch, note.start_beats, note.duration_beats) for note in part.notes]


def error_of(text: str, syntax: typed.Syntax = "auto") -> str:
    with pytest.raises(FormatError) as caught:
        parse_typed(text, syntax)
    return str(caught.value)


# --- note names: what they read as ---------------------------------------------------------------------------------


def test_notes_read_pitches_starts_and_lengths() -> None:
    piece = parse_typed("C4q D4e. E4s F#4h Bb3w")
    assert notes_of(piece) == [(60, 0, 1), (62, 1, 0.75), (64, 1.75, 0.25), (66, 2, 2), (58, 4, 4)]


def test_a_typed_piece_has_one_named_part_and_the_defaults() -> None:
    piece = parse_typed("C4q")
    assert (piece.title, piece.parts[0].name, piece.parts[0].program) == (TYPED_TITLE, TYPED_TITLE, 0)
    assert (piece.tempo_bpm, piece.time_signature, piece.key, piece.pickup_beats) == (120, TimeSignature(4, 4), None, 0)


@pytest.mark.parametrize(
    ("text", "pitches"),
    [
        ("Cb4q B#3q F##4q Gbb4q", [59, 60, 67, 65]),  # scientific pitch: the octave number follows the letter
        ("c4q e4q bb4q b#4q", [60, 64, 70, 72]),  # small letters too; "bb" is B flat
        ("C0q G9q", [12, 127]),
    ],
)
def test_accidentals_and_octaves(text: str, pitches: list[int]) -> None:
    assert [pitch for pitch, _, _ in notes_of(parse_typed(text))] == pitches


def test_a_left_out_octave_carries_over_the_last_one_written() -> None:
    assert [pitch for pitch, _, _ in notes_of(parse_typed("G4q Aq Bq C5q | Bq B3q Cq"))] == [67, 69, 71, 72, 83, 59, 48]


def test_rests_dots_and_triplets_move_the_time() -> None:
    third = Fraction(1, 3)
    expected = [(60, 1, third), (62, 1 + third, third), (64, 1 + 2 * third, third), (67, 5, 1)]
    piece = parse_typed("rq C4et Det Eet rh. G4q.t")
    assert notes_of(piece) == [(pitch, float(start), float(length)) for pitch, start, length in expected]


def test_settings_set_tempo_meter_and_key() -> None:
    piece = parse_typed("tempo=92.5 meter=6/8 key=F#m C#5q.")
    assert (piece.tempo_bpm, piece.time_signature, piece.key) == (92.5, TimeSignature(6, 8), Key(6, "minor"))
    assert parse_typed("Key=Bb Bb4q").key == Key(10, "major")
    assert parse_typed("key=Cbmaj Cb4q").key == Key(11, "major")


def test_bar_lines_are_checked_and_the_first_one_makes_a_pickup() -> None:
    piece = parse_typed("meter=3/4 D4q | G4q. Ae Bq | A4h Gq")
    assert piece.pickup_beats == 1 and piece.time_signature == TimeSignature(3, 4)
    assert notes_of(piece)[:3] == [(62, 0, 1), (67, 1, 1.5), (69, 2.5, 0.5)]
    assert parse_typed("C4w | D4h").pickup_beats == 0  # a full first bar is no pickup
    assert parse_typed("| C4w || D4h E4h |]").pickup_beats == 0


def test_commas_new_lines_and_bar_lines_against_notes_separate_tokens() -> None:
    assert notes_of(parse_typed("C4q,D4q\n  E4q|F4q,G4h.|")) == notes_of(parse_typed("C4q D4q E4q | F4q G4h. |"))


# --- the help text and the docstring: every example parses ------------------------------------------------------------


def documented_examples() -> list[str]:
    """`…` spans of SYNTAX_HELP and ``…`` spans of the module docstring: whole typed melodies."""
    return re.findall(r"`([^`]+)`", SYNTAX_HELP) + re.findall(r"``([^`]+)``", typed.__doc__ or "")


def test_the_docs_have_examples() -> None:
    assert len(re.findall(r"`([^`]+)`", SYNTAX_HELP)) == 4 and len(documented_examples()) >= 10


@pytest.mark.parametrize("example", documented_examples())
def test_every_documented_example_parses(example: str) -> None:
    assert parse_typed(example).note_count > 0


# --- errors: which token, where, what was expected ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "C4q D4q H4q",
            'Cannot read "H4q" (token 3, column 9): a note starts with a letter A–G and a rest with r, as in C4q '
            "or rq.",
        ),
        (
            "C4q D4q\n  C44q",
            'Cannot read "C44q" (token 3, line 2, column 3): the octave is one digit, 0 to 9 (C4 is middle C).',
        ),
        (
            "C4q C4x",
            'Cannot read "C4x" (token 2, column 5): "x" is not a length: use w (whole), h (half), q (quarter), '
            "e (eighth) or s (sixteenth).",
        ),
        (
            "C4q  D4",
            'Cannot read "D4" (token 2, column 6): a length must follow the pitch: w (whole), h (half), q (quarter), '
            "e (eighth) or s (sixteenth), as in C4q.",
        ),
        (
            "C4q D4q~ E4q",
            'Cannot read "D4q~" (token 2, column 5): "~" cannot follow the length: only "." (dotted) and then "t" '
            "(triplet) can.",
        ),
        (
            "C4q D4q @",
            'Cannot read "@" (token 3, column 9): a note starts with a letter A–G and a rest with r, as in C4q or rq.',
        ),
        (
            "C4q |: D4q :|",
            'Cannot read ":" (token 3, column 6): repeat signs are not read: write the repeated music out.',
        ),
        (
            "C#b4q D4q",
            'Cannot read "C#b4q" (token 1, column 1): write one or two sharps (#) or flats (b), not both, as '
            "in F#4q or Bbb3q.",
        ),
        ("C4q r4q", 'Cannot read "r4q" (token 2, column 5): a rest has a length but no pitch, as in rq or rh..'),
        (
            "Dq E4q",
            'Cannot read "Dq" (token 1, column 1): the first note needs its octave, as in C4q (C4 is middle C).',
        ),
        ("C4q Ab9q", 'Cannot read "Ab9q" (token 2, column 5): it is above G9 (MIDI 127), the highest note MIDI has.'),
        (
            "tempo=500 C4q",
            'Cannot read "tempo=500" (token 1, column 1): the tempo is quarter notes per minute, 10 to 400, as in '
            "tempo=100.",
        ),
        (
            "meter=65/4 C4q",
            'Cannot read "meter=65/4" (token 1, column 1): a meter is like 3/4 or 6/8: 1, 2, 4, 8 or 16 below the '
            "line, at most 64 quarter notes a bar.",
        ),
        (
            "meter=3/5 C4q",
            'Cannot read "meter=3/5" (token 1, column 1): a meter is like 3/4 or 6/8: 1, 2, 4, 8 or 16 below the '
            "line, at most 64 quarter notes a bar.",
        ),
        (
            "key=H C4q",
            'Cannot read "key=H" (token 1, column 1): a key is a letter, # or b, and "m" for minor, as in '
            "key=G or key=F#m.",
        ),
        ("tempo=90 tempo=80 C4q", 'Cannot read "tempo=80" (token 2, column 10): tempo is already set.'),
        ("C4q tempo=90", 'Cannot read "tempo=90" (token 2, column 5): settings come before the first note.'),
        (
            "speed=9 C4q",
            'Cannot read "speed=9" (token 1, column 1): the settings are tempo=, meter= and key=, as in tempo=100.',
        ),
        (
            "C4w D4q | E4q",
            'The bar line "|" (token 3, column 9) ends a bar of 5 quarter notes; a bar of 4/4 holds 4 quarter notes.',
        ),
        (
            "meter=3/4 C4q | D4h | E4h. F4q",
            'The bar line "|" (token 5, column 21) ends a bar of 2 quarter notes; a bar of 3/4 holds 3 quarter notes.',
        ),
        (
            "C4q | D4h. E4h",
            'Cannot read "E4h" (token 4, column 12): it runs 1 quarter note past the end of its bar (4/4 holds 4 '
            "quarter notes a bar); write the bar line before it.",
        ),
    ],
)
def test_an_error_names_the_token_its_place_and_what_was_expected(text: str, message: str) -> None:
    assert error_of(text, "notes") == message


def test_a_long_token_is_cut_in_the_message() -> None:
    assert (
        error_of("C4q " + "X" * 50) == f'Cannot read "{"X" * 23}…" (token 2, column 5): a note starts with a '
        "letter A–G and a rest with r, as in C4q or rq."
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "There is no melody yet. Type notes like C4q D4q E4h, or an ABC fragment like DEFG ABcd."),
        (" \n, ", "There is no melody yet. Type notes like C4q D4q E4h, or an ABC fragment like DEFG ABcd."),
        (
            "tempo=90 rq | rh",
            "The typed melody holds no notes, only rests, bar lines or settings. Type notes like C4q D4q E4h, or an "
            "ABC fragment like DEFG ABcd.",
        ),
        (
            "C4q " * (MAX_TYPED_NOTES + 1),
            'Cannot read "C4q" (token 2,001, column 8,001): a typed melody holds at most 2,000 notes and rests.',
        ),
        (
            "C4q" + " " * MAX_TYPED_CHARS,
            "The typed text has 20,003 characters; MuseGen reads at most 20,000. Upload a longer melody as a file.",
        ),
    ],
)
def test_empty_and_too_long_text_is_refused(text: str, message: str) -> None:
    assert error_of(text) == message


def test_a_melody_of_the_maximum_length_is_read() -> None:
    assert parse_notes("C4s " * MAX_TYPED_NOTES).note_count == MAX_TYPED_NOTES


# --- ABC -----------------------------------------------------------------------------------------------------------

FULL_TUNE = "X:1\nT:Typed melody\nM:4/4\nL:1/8\nK:C\nDEFG ABcd | e2 d2\n"


def test_an_abc_fragment_gets_default_headers_and_reads_as_the_full_tune() -> None:
    assert typed_abc_tune("DEFG ABcd | e2 d2").text == FULL_TUNE
    fragment, full = parse_typed("DEFG ABcd | e2 d2"), abc_tune_to_piece(split_tunes(FULL_TUNE)[0])
    assert notes_of(fragment) == notes_of(full) and notes_of(fragment)[0] == (62, 0, 0.5)
    assert fragment.key is None and full.key == Key(0, "major")  # the added K:C is not kept
    assert (fragment.title, fragment.time_signature, fragment.tempo_bpm) == (TYPED_TITLE, TimeSignature(4, 4), 120)


def test_typed_header_fields_are_kept_and_the_missing_ones_added() -> None:
    text = "M:3/4\nL:1/4\nDEF | G2 A"
    assert typed_abc_tune(text).text == "X:1\nM:3/4\nL:1/4\nT:Typed melody\nK:C\nDEF | G2 A\n"
    full = abc_tune_to_piece(AbcTune("t", "X:1\nT:t\nM:3/4\nL:1/4\nK:C\nDEF | G2 A\n"))
    piece = parse_typed(text)
    assert notes_of(piece) == notes_of(full) and piece.time_signature == TimeSignature(3, 4)


def test_a_whole_abc_tune_is_read_as_it_is() -> None:
    text = "X:7\nT:Whole\nM:2/4\nL:1/8\nK:G\nGABc | d4 |]\n"
    piece = parse_typed(text)
    assert typed_abc_tune(text) == split_tunes(text)[0]
    assert notes_of(piece) == notes_of(abc_tune_to_piece(split_tunes(text)[0]))
    assert (piece.key, piece.title, piece.time_signature) == (Key(7, "major"), "Whole", TimeSignature(2, 4))


def test_abc_errors_come_from_the_abc_reader() -> None:
    assert error_of("z4 z4 |").startswith("The typed ABC holds no notes.")
    assert "L:1/3" in error_of("L:1/3\nDEF")
    assert error_of("K:C\n" + "C" * 1600, "abc").startswith("The ABC tune 'Tune 1' has about 1,600 notes")


def test_the_abc_reader_can_be_replaced() -> None:
    """The app passes a reader that runs music21 in a worker process."""
    seen: list[AbcTune] = []

    def reader(tune: AbcTune) -> Piece:
        seen.append(tune)
        return abc_tune_to_piece(tune)

    assert notes_of(parse_typed("DEFG ABcd | e2 d2", read_abc=reader)) == notes_of(parse_typed("DEFG ABcd | e2 d2"))
    assert seen == [typed_abc_tune("DEFG ABcd | e2 d2")]


# --- which syntax --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "syntax"),
    [
        ("C4q D4q E4h", "notes"),
        ("tempo=90 | G4q Aq", "notes"),
        ("rq C4q", "notes"),
        ("C4q D4q H4q", "notes"),  # a typo stays in note names, where its error points at it
        ("Cq Dq Eq", "notes"),  # octave forgotten: note names, so the error says so
        ("DEFG ABcd | e2 d2", "abc"),
        ("C2 D2 E4", "abc"),
        ("G,A,B, C", "abc"),
        ("M:3/4\nC4q D4q", "abc"),  # a field line
        ("X:1\nK:G\nGAB", "abc"),
    ],
)
def test_auto_detection(text: str, syntax: str) -> None:
    assert typed_syntax(text) == syntax


def test_the_syntax_can_be_forced() -> None:
    assert notes_of(parse_typed("Be ce", syntax="abc")) == [(71, 0, 0.5), (76, 0.5, 0.5), (72, 1, 0.5), (76, 1.5, 0.5)]
    assert (
        error_of("Be ce") == 'Cannot read "Be" (token 1, column 1): the first note needs its octave, as in C4q (C4 '
        "is middle C)."
    )
    assert error_of("DEFG", "notes").startswith('Cannot read "DEFG" (token 1, column 1): "E" is not a length')
    with pytest.raises(ValueError, match="syntax must be"):
        typed_syntax("C4q", "midi")  # type: ignore[arg-type]


# --- properties ----------------------------------------------------------------------------------------------------

METERS = {"4/4": Fraction(4), "3/4": Fraction(3), "6/8": Fraction(3), "2/2": Fraction(4), "5/16": Fraction(5, 4)}
KEYS = {"G": Key(7, "major"), "Ebm": Key(3, "minor"), "f#minor": Key(6, "minor"), "Cmaj": Key(0, "major")}
LENGTHS = {"w": Fraction(4), "h": Fraction(2), "q": Fraction(1), "e": Fraction(1, 2), "s": Fraction(1, 4)}
ANY_LENGTH = [letter + dot + triplet for letter in "whqes" for dot in ("", ".") for triplet in ("", "t")]
# Lengths that fill bars of whole sixteenths exactly: plain and dotted notes (but "s."), and triplets in threes.
WHOLE_SIXTEENTHS = [(letter + dot,) for letter in "whqes" for dot in ("", ".") if letter + dot != "s."] + [
    (letter + "t",) * 3 for letter in "hqes"
]


def length_of(suffix: str) -> Fraction:
    """The length in quarter notes of a length suffix such as "q", "e." or "st"."""
    return LENGTHS[suffix[0]] * (Fraction(3, 2) if "." in suffix else 1) * (Fraction(2, 3) if "t" in suffix else 1)


@dataclass
class Melody:
    """A generated note-name text and what it must read as."""

    text: str
    notes: list[tuple[int, float, float]]
    meter: str
    key: str | None
    tempo: int
    pickup: Fraction


def barred_lengths(draw: st.DrawFn, bar: Fraction) -> tuple[list[str], set[int], Fraction]:
    """Length suffixes filling a pickup (maybe none), whole bars and an unfinished last bar; the indices of the
    suffixes a bar line follows; the pickup."""
    pickup = draw(st.just(Fraction(0)) | st.sampled_from([Fraction(k, 4) for k in range(1, int(bar * 4))]))
    last = draw(st.sampled_from([Fraction(k, 4) for k in range(int(bar * 4))]))
    targets = [pickup, *[bar] * draw(st.integers(0, 4)), last]
    suffixes: list[str] = []
    bar_lines: set[int] = set()
    for index, target in enumerate(targets):
        remaining = target
        while remaining:
            unit = draw(st.sampled_from([unit for unit in WHOLE_SIXTEENTHS if sum(map(length_of, unit)) <= remaining]))
            suffixes += unit
            remaining -= sum(map(length_of, unit))
        if index < len(targets) - 1 and suffixes:
            bar_lines.add(len(suffixes) - 1)
    return suffixes, bar_lines, pickup


@st.composite
def melodies(draw: st.DrawFn) -> Melody:
    """A note-name melody: settings, notes (octaves left out at times) and rests, bar lines or none, any separators."""
    meter = draw(st.sampled_from(sorted(METERS)))
    key = draw(st.none() | st.sampled_from(sorted(KEYS)))
    tempo = draw(st.integers(10, 400))
    if draw(st.booleans()):
        suffixes, bar_lines, pickup = barred_lengths(draw, METERS[meter])
    else:  # no bar lines: notes of any length, crossing where bar lines would be
        suffixes, bar_lines, pickup = draw(st.lists(st.sampled_from(ANY_LENGTH), min_size=1, max_size=30)), set(), 0
    pitches = draw(st.lists(st.none() | st.integers(12, 127), min_size=len(suffixes), max_size=len(suffixes)))
    assume(any(pitch is not None for pitch in pitches))
    tokens = [f"tempo={tempo}", f"meter={meter}", *([f"key={key}"] if key else [])]
    notes, octave, time = [], None, Fraction(0)
    for index, (pitch, suffix) in enumerate(zip(pitches, suffixes, strict=True)):
        if pitch is None:
            tokens.append(draw(st.sampled_from("rR")) + suffix)
        else:
            name = pitch_name(pitch)
            spelled = name.rstrip("0123456789")
            written = name[len(spelled) :] if name[len(spelled) :] != octave or draw(st.booleans()) else ""
            octave = name[len(spelled) :]
            tokens.append((spelled.lower() if draw(st.booleans()) else spelled) + written + suffix)
            notes.append((pitch, float(time), float(length_of(suffix))))
        time += length_of(suffix)
        if index in bar_lines:
            tokens.append(draw(st.sampled_from(["|", "||", "|]"])))
    separators = draw(
        st.lists(st.sampled_from([" ", ", ", "\n", "  ", ","]), min_size=len(tokens), max_size=len(tokens))
    )
    text = "".join(token + separator for token, separator in zip(tokens, separators, strict=True))
    return Melody(text, notes, meter, key, tempo, Fraction(pickup))


@PROPERTY_SETTINGS
@given(melodies())
def test_a_generated_note_name_melody_reads_back_as_generated(melody: Melody) -> None:
    piece = parse_typed(melody.text)
    assert notes_of(piece) == melody.notes
    assert (piece.tempo_bpm, str(piece.time_signature)) == (melody.tempo, melody.meter)
    assert piece.key == (KEYS[melody.key] if melody.key else None)
    assert piece.pickup_beats == float(melody.pickup)


TYPED_CHARACTERS = st.sampled_from(list("ABCDEFGabcdefgrRwhqest#b0123456789.|,: =/\n-_^'zxKXML[]()\"!%~"))


@PROPERTY_SETTINGS
@given(st.text(TYPED_CHARACTERS | st.characters(), max_size=60), st.sampled_from(["auto", "notes", "abc"]))
def test_any_text_reads_or_is_refused_with_a_one_line_format_error(text: str, syntax: typed.Syntax) -> None:
    try:
        piece = parse_typed(text, syntax)
    except FormatError as error:
        assert str(error).strip() and len(str(error).splitlines()) == 1
    else:
        assert piece.note_count > 0
