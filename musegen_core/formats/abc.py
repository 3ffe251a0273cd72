"""ABC notation ↔ `Piece`: tunes are read through music21's ABC translator and written by hand.

Reading: an ABC file may hold many tunes, each starting at a line `X:<number>`. music21 parses only ~40 tunes a
second, so the file is split into tunes here, by plain text, and only the tune the user picks is parsed. Field and
directive lines of the file header (before the first `X:`) apply to every tune and are prepended to each one.

Writing (`piece_to_abc`) is hand-written because music21 reads ABC but has no ABC writer. It covers what ABC says
well: one melody line in 16th-note rhythms, with a pickup bar, ties, rests and accidentals. Anything else (several
parts, chords or overlapping notes, drums, triplets) is refused with a `FormatError` saying why, rather than cut
down to a top line that would silently drop notes; MIDI and MusicXML keep all of it.

ABC lets an accidental carry on to later notes of that pitch in the bar, but readers differ (music21 applies it to
its own note only), so the writer is explicit: a note whose pitch differs from the key signature always carries its
accidental, and so does any later note in the bar on a letter that already had one ("=" for a natural). Either
reading then gives the same pitches.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from fractions import Fraction

from music21 import abcFormat, stream
from music21.abcFormat import translate

from musegen_core.errors import FormatError
from musegen_core.formats.midi import MAX_BAR_BEATS
from musegen_core.formats.notation import (
    GRID_STEPS_PER_BEAT,
    SIXTEENTH_STEPS,
    Event,
    Segment,
    bar_lines,
    bar_segments,
    metronome,
    quantised,
    voices,
)
from musegen_core.formats.score import stream_to_piece
from musegen_core.formats.spelling import key_fifths, key_name, signature_alters, spell
from musegen_core.music import Key, Piece

MAX_ABC_NOTES = 1_500  # notes and rests; music21's ABC import is quadratic: 1–4 s at 1,500, ~8 min at 20,000
_FIELD_OR_DIRECTIVE = re.compile(r"^([A-Za-z]:|%%)")
_NOT_NOTE_LETTERS = re.compile(r'"[^"]*"|![^!]*!|\+[^+\s]*\+|%.*$')  # annotations, decorations, comments
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
MAX_TITLE_CHARS = 100
_UNIT_FIELD = re.compile(r"^L:\s*(\d+)\s*/\s*(\d+)", re.MULTILINE | re.ASCII)
_LONG_LENGTH = re.compile(r"[A-Ga-gzx][,']*/*\d{4,}", re.ASCII)  # a note or rest of 1,000+ units (not Z: bars)
_UNIT_LENGTHS = {f"1/{2**n}" for n in range(8)}  # L:1/1 … L:1/128, what the ABC standard allows
_ABC_HINT = "An ABC tune needs an X: line and a K: (key) line before its notes."
_NOTE_LENGTHS = (32, 24, 16, 12, 8, 6, 4, 3, 2, 1)  # in 16ths (L:1/16): the lengths one plain or dotted note shows
_ACCIDENTAL_SIGNS = {-2: "__", -1: "_", 0: "=", 1: "^", 2: "^^"}
_BARS_PER_LINE = 4
_WRITE_HINT = "Export MIDI or MusicXML instead, which keep it."
log = logging.getLogger("musegen.formats")


def _no_rebar(part: stream.Part, *, inPlace: bool = False) -> None:
    """Stands in for music21's `abcFormat.translate.reBar`, which re-splits over-full bars after an ABC import.

    It only moves bar lines, never notes (400 random tunes of music21's ABC corpus read to identical pieces with and
    without it), but on odd meters and lengths it runs for minutes or exhausts memory: every ABC hang fuzzing found
    (bench/fuzz.py) was inside it. Replaced once, for this process, when this module is imported.
    """


_MUSIC21_REBAR = translate.reBar  # music21's own, to restore or compare with
translate.reBar = _no_rebar


@dataclass(frozen=True)
class AbcTune:
    """One tune's ABC text (file header included) and its title (first `T:` line, or "Tune N")."""

    title: str
    text: str


def decode_abc(data: bytes) -> str:
    """ABC bytes as text: UTF-8 (with or without BOM), UTF-16 with a BOM, or Latin-1 (the ABC 2.0 default).

    Raises:
        FormatError: the bytes are not text (control characters, as in a binary file).
    """
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        text = data.decode("utf-16", errors="replace")
    else:
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            text = data.decode("latin-1")
    if _CONTROL_CHARACTERS.search(text):
        raise FormatError("This .abc file is not text (it contains binary data). Upload a plain-text ABC file.")
    return text


def split_tunes(text: str) -> tuple[AbcTune, ...]:
    """The tunes of an ABC file, split at lines starting with `X:`, without parsing any music.

    A file with no `X:` line but a `K:` line is one tune.

    Raises:
        FormatError: the text has neither an `X:` nor a `K:` line, so it is not ABC music.
    """
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("X:")]
    if not starts:
        if not any(line.startswith("K:") for line in lines):
            raise FormatError(f"This file holds no ABC tune (no X: or K: line). {_ABC_HINT}")
        return (AbcTune(_tune_title(lines, 1), text),)
    header = [line for line in lines[: starts[0]] if _FIELD_OR_DIRECTIVE.match(line)]
    ends = [*starts[1:], len(lines)]
    tunes = []
    for number, (start, end) in enumerate(zip(starts, ends, strict=True), start=1):
        body = lines[start:end]
        tunes.append(AbcTune(_tune_title(body, number), "\n".join([*header, *body]) + "\n"))
    return tuple(tunes)


def _tune_title(lines: list[str], number: int) -> str:
    for line in lines:
        if line.startswith("T:") and line[2:].strip():
            return " ".join(line[2:].split())[:MAX_TITLE_CHARS]
    return f"Tune {number}"


def approximate_note_count(text: str) -> int:
    """Note letters (A–G, a–g) and rests (z, x) in the music lines of ABC text, outside annotations, decorations
    and comments.

    Counts chord members and a few stray letters too: a cheap upper-bound-ish estimate, used to refuse tunes
    too long for music21 before parsing them (rests cost its importer as much as notes).
    """
    count = 0
    for line in text.splitlines():
        if not _FIELD_OR_DIRECTIVE.match(line) and not line.startswith("%"):
            count += sum(1 for char in _NOT_NOTE_LETTERS.sub("", line) if char in "ABCDEFGabcdefgzx")
    return count


def _check_lengths(tune: AbcTune) -> None:
    """Refuse, from the text, what makes music21's meter code run for minutes or out of memory: a unit note length the
    ABC standard does not allow (`L:1/3`), a note or rest of 1,000 units or more (`z99999999`). (Meters are checked on
    music21's tokens: `_tokens`.)"""
    for numerator, denominator in _UNIT_FIELD.findall(tune.text):
        if f"{numerator.lstrip('0')}/{denominator.lstrip('0')}" not in _UNIT_LENGTHS:
            raise FormatError(
                f"The ABC tune {tune.title!r} has the unit note length L:{numerator[:6]}/{denominator[:6]}; ABC allows "
                "L:1/1, 1/2, 1/4 … 1/128. Fix the L: line, or upload the tune as MIDI or MusicXML."
            )
    music = "\n".join(line for line in tune.text.splitlines() if not _FIELD_OR_DIRECTIVE.match(line))
    if _LONG_LENGTH.search(_NOT_NOTE_LETTERS.sub("", music)):
        raise FormatError(
            f"The ABC tune {tune.title!r} has a note or rest 1,000 or more times its unit length. Fix the tune, or "
            "upload it as MIDI or MusicXML."
        )


def _with_unit_length(text: str) -> str:
    """`text` with `L:1/8` before its `K:` line when it has neither an `L:` nor an `M:` field: the ABC standard's
    default unit length then, which music21 does not apply (it fails on such a tune)."""
    if re.search(r"^[LM]:", text, re.MULTILINE):
        return text
    return re.sub(r"^K:", "L:1/8\nK:", text, count=1, flags=re.MULTILINE)


def _tokens(tune: AbcTune) -> abcFormat.ABCHandler:
    """The tune tokenised by music21, its meters checked between the two steps of `ABCHandler.process`: `tokenize`
    (plain text splitting) and `tokenProcess`, which already builds music21 time signatures and hangs on a huge one.
    A meter of more than `MAX_BAR_BEATS` beats a bar, or one music21 cannot read, is refused. Checking music21's own
    tokens, not the text, sees every meter as music21 will use it (it also reads `0M:4000/4` and `M:400]0/4` as
    4000/4)."""
    text = _with_unit_length(tune.text)
    handler = abcFormat.ABCHandler()
    handler.parseHeaderForVersionInformation(text[:100])
    handler.tokenize(text)
    for token in handler.tokens:
        if isinstance(token, abcFormat.ABCMetadata):
            token.preParse()
            if token.isMeter() and not _playable_meter(token):
                raise FormatError(
                    f"The ABC tune {tune.title!r} has a meter (M:) of more than {MAX_BAR_BEATS} beats a bar, which "
                    "MuseGen does not read. Fix the M: line, or upload the tune as MIDI or MusicXML."
                )
    handler.tokenProcess()
    return handler


def _playable_meter(token: abcFormat.ABCMetadata) -> bool:
    try:
        meter = token.getTimeSignatureParameters()
    except Exception:  # boundary: music21 raises ValueError/ABCTokenException on meters it cannot read
        return True  # not a hang: the translation refuses it with its own message
    return meter is None or (meter[0] <= MAX_BAR_BEATS and meter[1] <= 128)


def abc_tune_to_piece(tune: AbcTune) -> Piece:
    """Parse one tune with music21 into a `Piece` (pickup, meter, key and tempo from the tune's header).

    Raises:
        FormatError: the tune is longer than `MAX_ABC_NOTES`, has lengths `_check_lengths` refuses, or music21
            cannot parse it.
    """
    notes = approximate_note_count(tune.text)
    if notes > MAX_ABC_NOTES:
        raise FormatError(
            f"The ABC tune {tune.title!r} has about {notes:,} notes and rests; MuseGen reads ABC tunes of at most "
            f"{MAX_ABC_NOTES:,} notes (longer ones import very slowly). Upload it as MIDI or MusicXML instead."
        )
    _check_lengths(tune)
    try:
        handler = _tokens(tune)
        if handler.definesReferenceNumbers():  # a tune with an X: line is translated as an Opus of one score
            score = translate.abcToStreamOpus(handler).scores.first() or stream.Score()
        else:
            score = stream.Score()
            translate.abcToStreamScore(handler, score)
        return stream_to_piece(score)
    except FormatError:
        raise
    except Exception as error:  # boundary: music21's ABC translator raises many exception types (details logged)
        log.info("music21 could not read the ABC tune %r", tune.title, exc_info=True)
        raise FormatError(
            f"music21 could not read the ABC tune {tune.title!r}: it uses notation its ABC reader does not follow. "
            f"{_ABC_HINT} Check the tune against the ABC standard, or upload it as MIDI or MusicXML."
        ) from error


# --- Piece → ABC -------------------------------------------------------------------------------------------------


def piece_to_abc(piece: Piece) -> str:
    """Write a one-melody piece as an ABC tune (see the module docstring for what ABC export covers).

    The header holds X:1, T: (the title, when there is one), M:, L:1/16, Q: (the tempo in the meter's felt beat
    where that is a whole number, else in quarter notes) and K: (C major when the piece has no key). Notes are
    quantised as for MusicXML (`notation.quantised`); bars are written four to a line, a pickup as the first bar.

    Raises:
        FormatError: the piece has no notes, notes in more than one part, only drums, chords or overlapping
            notes, or triplets (ABC export writes 16th-note rhythms).
    """
    grid = quantised(piece)
    bars = bar_segments(_melody_line(grid), bar_lines(grid))
    return "\n".join([*_abc_header(grid), _abc_body(bars, grid)]) + "\n"


def _melody_line(piece: Piece) -> list[Event]:
    """The notes of the piece's one part as a single line of 16th-note rhythms, or a `FormatError` saying why not."""
    parts = [part for part in piece.parts if part.notes]
    if not parts:
        raise FormatError("This piece has no notes to write as ABC.")
    if len(parts) > 1:
        raise FormatError(f"ABC export writes one melody; this piece has {len(parts)} parts. {_WRITE_HINT}")
    part = parts[0]
    if part.is_drum:
        raise FormatError(f"ABC export writes pitched melodies; {part.name!r} is a drum part. {_WRITE_HINT}")
    found = voices(part)
    if len(found) > 1 or any(len(event.pitches) > 1 for event in found[0]):
        raise FormatError(
            f"ABC export writes one line of notes; {part.name!r} has chords or overlapping notes. {_WRITE_HINT}"
        )
    triplets = [event for event in found[0] if event.start % SIXTEENTH_STEPS or event.end % SIXTEENTH_STEPS]
    if triplets:
        beat = triplets[0].start / GRID_STEPS_PER_BEAT
        raise FormatError(
            f"ABC export writes 16th-note rhythms; {part.name!r} has triplets (from beat {beat:g}). {_WRITE_HINT}"
        )
    return found[0]


def _abc_header(piece: Piece) -> list[str]:
    beat, per_minute = metronome(piece)
    unit = Fraction(beat / 4)
    header = ["X:1"]
    if piece.title:
        header.append(f"T:{' '.join(piece.title.split())}")
    header += [
        f"M:{piece.time_signature}",
        "L:1/16",
        f"Q:{unit.numerator}/{unit.denominator}={round(per_minute, 3):g}",
        f"K:{key_name(piece.key) if piece.key is not None else 'C'}",
    ]
    return header


def _abc_body(bars: list[list[Segment]], piece: Piece) -> str:
    """The bars, `_BARS_PER_LINE` to a line, closed by a final bar line."""
    beat_steps = round(piece.time_signature.beat_beats * GRID_STEPS_PER_BEAT)
    first_beat = round(piece.pickup_beats * GRID_STEPS_PER_BEAT)  # any bar line: beats are counted from it
    texts = [_abc_bar(bar, piece.key, beat_steps, first_beat) for bar in bars]
    lines = [" | ".join(texts[i : i + _BARS_PER_LINE]) for i in range(0, len(texts), _BARS_PER_LINE)]
    return " |\n".join(lines) + " |]"


def _abc_bar(bar: list[Segment], key: Key | None, beat_steps: int, first_beat: int) -> str:
    """One bar's notes and rests; a space before each one that starts on a beat (ABC beams the others)."""
    lettered: set[str] = set()  # letters written with an accidental so far in this bar
    text = ""
    for segment in bar:
        on_beat = (segment.start - first_beat) % beat_steps == 0
        text += (" " if on_beat and text else "") + _abc_segment(segment, key, lettered)
    return text


def _abc_segment(segment: Segment, key: Key | None, lettered: set[str]) -> str:
    """A rest, or a note tied across the notatable lengths it needs (and to the next bar when it goes on)."""
    name = _abc_pitch(segment.pitches[0], key, lettered) if segment.pitches else "z"
    pieces = [name + (str(length) if length > 1 else "") for length in _notatable(segment.length // SIXTEENTH_STEPS)]
    if not segment.pitches:
        return "".join(pieces)
    return "-".join(pieces) + ("-" if segment.tied_to_after else "")


def _notatable(sixteenths: int) -> list[int]:
    """`sixteenths` as a sum of single-note lengths, longest first (5 → 4 + 1)."""
    lengths = []
    while sixteenths:
        lengths.append(next(length for length in _NOTE_LENGTHS if length <= sixteenths))
        sixteenths -= lengths[-1]
    return lengths


def _abc_pitch(midi: int, key: Key | None, lettered: set[str]) -> str:
    """ABC pitch ("^f", "B,", "c'"), with an accidental where the module docstring says; updates `lettered`."""
    spelling = spell(midi, key)
    explicit = spelling.alter != signature_alters(key_fifths(key))[spelling.letter] or spelling.letter in lettered
    if explicit:
        lettered.add(spelling.letter)
    letter = spelling.letter if spelling.octave <= 4 else spelling.letter.lower()
    octave_marks = "," * max(0, 4 - spelling.octave) + "'" * max(0, spelling.octave - 5)
    return (_ACCIDENTAL_SIGNS[spelling.alter] if explicit else "") + letter + octave_marks
