"""A melody typed into a text box → `Piece`: note names with lengths, or an ABC fragment.

Note names
----------
Each note is a pitch letter, an optional sharp or flat, an octave number and a length letter: "C4q" is middle C for a
quarter note, "F#5e" the F sharp in the octave above for an eighth, "Bb3h" the B flat below middle C for a half
note. Spaces, commas or new lines separate the notes: ``C4q D4q E4q C4q | E4q F4q G4h``.

- **Pitch**: a letter A–G (capital or small), then "#" (sharp) or "b" (flat), doubled for a double sharp or flat
  ("F##4q", "Bbb3q"), then the octave 0–9. Octaves are scientific pitch: C4 is middle C (MIDI 60), and an octave
  runs from C up to B, so "B3q" is the note just below "C4q", "Cb4q" is the same key as "B3q" and "B#3q" the same as
  "C4q". MIDI stops at G9.
- **Octave carry-over**: after the first note the octave may be left out; the note then takes the octave number
  last written. ``G4q Aq Bq G5h`` is G4 A4 B4 G5. The first note always needs its octave.
- **Length**: w (whole), h (half), q (quarter), e (eighth), s (sixteenth). Add "." for a dotted note (one and a half
  times as long: "q." is three eighths) and "t" for a triplet (two thirds as long: three "et" make one quarter):
  ``A4q. Be C5q Dq | E5et Fet Get Ah``. Every note writes its own length.
- **Rests**: "r" (or "R") and a length, with "." and "t" as for notes: "rq", "rh.", "ret".
- **Bar lines** "|" (also "||" and "|]") are optional. A melody that uses them puts one after every full bar, and
  they are checked against the meter: each bar holds exactly one bar's worth of notes and rests (so no note crosses
  a bar line), except the last, which may be left unfinished, and the first, which may be shorter: a pickup
  (upbeat). ``meter=3/4 D4q | G4q. Ae Bq | A4h Gq`` starts with a one-beat pickup. Repeat signs are not read: write
  the music out.
- **Settings**, optional, before the first note: "tempo=100" (quarter notes per minute, 10–400; default 120),
  "meter=3/4" (default 4/4; 1, 2, 4, 8 or 16 below the line and at most 64 quarter notes a bar) and "key=G"
  ("key=Em" for E minor, "key=Bb", "key=F#m"; by default MuseGen estimates the key from the notes). The key names the
  piece's key only: it does not sharpen or flatten the notes, so every accidental is written:
  ``tempo=90 meter=3/4 key=G G4q F#q Gq | A4h.``

Notes and rests together are capped at `MAX_TYPED_NOTES`, the text at `MAX_TYPED_CHARS` characters.

ABC
---
ABC text with a "K:" line is a whole tune, read as it is (the first tune, when several are typed). Without one it
is a fragment such as ``DEFG ABcd | e2 d2``: the field lines at its top (such as "M:3/4" or "L:1/4") are kept and
the missing ones added: X:1 first, then T:Typed melody, M:4/4, L:1/8 and, last, K:C. That added key is not kept (the
piece's key is None, so MuseGen estimates it from the notes). The tune is then read like an uploaded .abc file
(`formats.abc.abc_tune_to_piece`, with its limits and messages).

Which syntax
------------
`parse_typed(text)` ("auto") reads ABC when a line starts with an ABC field ("X:", "M:", "K:" …). Otherwise it reads
note names when at least half of the tokens (bar lines aside) are note-name tokens: notes (with or without their
octave), rests and settings; anything else is ABC. So a typo in a note-name melody is reported at the typo, while
ABC fragments ("DEFG", "C2", "G,A,B,", "e2") are mostly not note-name tokens. `syntax="notes"` or `syntax="abc"`
forces one: an ABC fragment made only of tokens like "Be" or "ce" (which also read as note names) needs "abc".

Every problem is a `FormatError` with one line naming the bad token, its place (token number, counted over all
tokens, and character column, both from 1, plus the line when the text has several) and what was expected.

In code: `parse_typed(text, syntax)` → `Piece`; `typed_syntax` says which syntax "auto" picks; `SYNTAX_HELP` is the
short help to show under the text box.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Literal, NamedTuple

from musegen_core.errors import FormatError
from musegen_core.formats.abc import AbcTune, abc_tune_to_piece, split_tunes
from musegen_core.formats.midi import MAX_BAR_BEATS, MAX_TEMPO_BPM, MIN_TEMPO_BPM
from musegen_core.music import ALLOWED_DENOMINATORS, Key, Note, Part, Piece, TimeSignature

__all__ = [
    "MAX_TYPED_CHARS",
    "MAX_TYPED_NOTES",
    "SYNTAX_HELP",
    "TYPED_TITLE",
    "Syntax",
    "parse_notes",
    "parse_typed",
    "typed_abc_tune",
    "typed_syntax",
]

Syntax = Literal["auto", "notes", "abc"]
MAX_TYPED_CHARS = 20_000
MAX_TYPED_NOTES = 2_000  # notes and rests
TYPED_TITLE = "Typed melody"  # the piece's title and its one part's name (a name `default_melody_part` favours)
TYPED_PROGRAM = 0  # General MIDI piano, what an ABC tune without instrument gets too
# Markdown with hard line breaks, to show under the text box. Every `code` span is a whole example (tests parse them).
SYNTAX_HELP = "  \n".join(
    (
        "Notes: letter, octave, length — `C4q D4q E4h | F#4e G4e A4q. rq` (lengths w h q e s: whole to sixteenth; "
        'add "." for dotted, "t" for triplet; r is a rest). Later notes may leave out the octave: `G4q Aq Bq G5h`.',
        "Settings go first: `tempo=90 meter=3/4 key=G G4q F#q Gq | A4h.`",
        "Or ABC: `DEFG ABcd | e2 d2` (missing headers default to M:4/4, L:1/8, K:C).",
    )
)

_TOKEN = re.compile(r"\|[|\]]?|[^\s,|]+")  # a bar line is a token even when written against a note
_NOTE = re.compile(
    r"(?P<letter>[A-Ga-g])(?P<accidental>#{1,2}|b{1,2})?(?P<octave>\d)?(?P<length>[whqes])(?P<dot>\.?)(?P<triplet>t?)",
    re.ASCII,  # ASCII digits only, here and below
)
_REST = re.compile(r"[Rr](?P<length>[whqes])(?P<dot>\.?)(?P<triplet>t?)")
_BAR = re.compile(r"\|\|?|\|\]")
_SETTING = re.compile(r"(?P<name>[A-Za-z]+)=(?P<value>.*)")
_LOOSE_NOTE = re.compile(
    r"(?P<letter>[A-Ga-gRr]?)(?P<accidental>[#b]*)(?P<octave>\d*)(?P<length>[A-Za-z]?)(?P<tail>.*)",
    re.ASCII | re.DOTALL,
)
_TEMPO = re.compile(r"\d{1,3}(\.\d{1,3})?", re.ASCII)
_METER = re.compile(r"(?P<numerator>\d{1,2})/(?P<denominator>\d{1,2})", re.ASCII)
_KEY = re.compile(r"(?P<letter>[A-Ga-g])(?P<accidental>[#b]?)(?P<mode>m|min|minor|maj|major)?")
_ABC_FIELD = re.compile(r"^[A-Za-z]:", re.MULTILINE)  # a header field line (X:, T:, M:, L:, K: …)
_ABC_KEY_LINE = re.compile(r"^K:", re.MULTILINE)  # a K: line makes the text a whole tune
_ABC_DEFAULTS = (("T", TYPED_TITLE), ("M", "4/4"), ("L", "1/8"))  # after X:1 and the typed fields, before K:C

_LETTER_PCS = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
_LENGTHS = {"w": Fraction(4), "h": Fraction(2), "q": Fraction(1), "e": Fraction(1, 2), "s": Fraction(1, 4)}
_LENGTH_HINT = "w (whole), h (half), q (quarter), e (eighth) or s (sixteenth)"
_SHOWN_CHARS = 24  # a longer token is cut in messages
_EMPTY_HINT = "Type notes like C4q D4q E4h, or an ABC fragment like DEFG ABcd."


class _Token(NamedTuple):
    text: str
    number: int  # 1-based, over all tokens
    offset: int  # 0-based character offset in the whole text


def parse_typed(
    text: str, syntax: Syntax = "auto", *, read_abc: Callable[[AbcTune], Piece] = abc_tune_to_piece
) -> Piece:
    """The typed melody as a `Piece` with at least one note, read as `syntax` ("auto": see `typed_syntax`).

    `read_abc` parses the ABC tune (music21, in this process by default); the app may pass one that runs in a worker
    process, as uploads do.

    Raises:
        FormatError: empty or too long text, a token that cannot be read, or no notes (see the module docstring).
    """
    _check_size(text)
    if typed_syntax(text, syntax) == "notes":
        return parse_notes(text)
    return _parse_abc(text, read_abc)


def typed_syntax(text: str, syntax: Syntax = "auto") -> Literal["notes", "abc"]:
    """Which syntax `parse_typed` reads `text` as: `syntax` itself unless it is "auto" (see the module docstring)."""
    if syntax in ("notes", "abc"):
        return syntax
    if syntax != "auto":
        raise ValueError(f'syntax must be "auto", "notes" or "abc" (received {syntax!r})')
    if _ABC_FIELD.search(text):
        return "abc"
    tokens = [token for token in _TOKEN.findall(text) if not _BAR.fullmatch(token)]
    note_names = sum(
        1 for token in tokens if _NOTE.fullmatch(token) or _REST.fullmatch(token) or _SETTING.fullmatch(token)
    )
    return "notes" if 2 * note_names >= len(tokens) else "abc"


def parse_notes(text: str) -> Piece:
    """Note-name text (module docstring) as a one-part `Piece`.

    Raises:
        FormatError: empty or too long text, a token that cannot be read (with its place), or no notes.
    """
    _check_size(text)
    return _NoteReader(text).read()


def typed_abc_tune(text: str) -> AbcTune:
    """The typed ABC as one whole tune: the first tune of text with a K: line, else the fragment with the missing
    header fields added (module docstring)."""
    if _ABC_KEY_LINE.search(text):
        return split_tunes(text)[0]
    lines = text.strip("\n").splitlines()
    header_end = next((i for i, line in enumerate(lines) if not _ABC_FIELD.match(line)), len(lines))
    given = {line[0] for line in lines[:header_end]}
    added = [f"{name}:{value}" for name, value in _ABC_DEFAULTS if name not in given]
    header = [*([] if "X" in given else ["X:1"]), *lines[:header_end], *added, "K:C"]
    return AbcTune(TYPED_TITLE, "\n".join([*header, *lines[header_end:]]) + "\n")


def _parse_abc(text: str, read_abc: Callable[[AbcTune], Piece]) -> Piece:
    piece = read_abc(typed_abc_tune(text))
    if not _ABC_KEY_LINE.search(text):
        piece = replace(piece, key=None)  # K:C was only added, not typed
    if piece.note_count == 0:
        raise FormatError(f"The typed ABC holds no notes. {_EMPTY_HINT}")
    return piece


def _check_size(text: str) -> None:
    if not _TOKEN.search(text):
        raise FormatError(f"There is no melody yet. {_EMPTY_HINT}")
    if len(text) > MAX_TYPED_CHARS:
        raise FormatError(
            f"The typed text has {len(text):,} characters; MuseGen reads at most {MAX_TYPED_CHARS:,}. "
            "Upload a longer melody as a file."
        )


@dataclass
class _NoteReader:
    """Reads note-name text token by token, keeping the time, the octave to carry over and the bar lines."""

    text: str
    time: Fraction = Fraction(0)
    octave: int | None = None  # the octave last written
    events: int = 0  # notes and rests so far
    last_bar: Fraction | None = None  # where the last bar line fell
    pickup: Fraction = Fraction(0)
    tempo: float = 120.0
    meter: TimeSignature = field(default_factory=TimeSignature)
    key: Key | None = None
    settings: set[str] = field(default_factory=set)  # the names set so far
    notes: list[Note] = field(default_factory=list)

    def read(self) -> Piece:
        for number, match in enumerate(_TOKEN.finditer(self.text), start=1):
            self._token(_Token(match.group(), number, match.start()))
        if not self.notes:
            raise FormatError(f"The typed melody holds no notes, only rests, bar lines or settings. {_EMPTY_HINT}")
        return Piece(
            parts=(Part(TYPED_TITLE, tuple(self.notes), program=TYPED_PROGRAM),),
            tempo_bpm=self.tempo,
            time_signature=self.meter,
            key=self.key,
            title=TYPED_TITLE,
            pickup_beats=float(self.pickup),
        )

    def _token(self, token: _Token) -> None:
        if note := _NOTE.fullmatch(token.text):
            self._note(token, note)
        elif rest := _REST.fullmatch(token.text):
            self._advance(token, rest)
        elif _BAR.fullmatch(token.text):
            self._bar(token)
        elif setting := _SETTING.fullmatch(token.text):
            self._setting(token, setting["name"].lower(), setting["value"])
        else:
            raise _cannot_read(self.text, token, _note_problem(token.text))

    def _note(self, token: _Token, match: re.Match[str]) -> None:
        if match["octave"] is not None:
            self.octave = int(match["octave"])
        if self.octave is None:
            raise _cannot_read(self.text, token, "the first note needs its octave, as in C4q (C4 is middle C)")
        accidental = match["accidental"] or ""
        alter = accidental.count("#") - accidental.count("b")
        pitch = 12 * (self.octave + 1) + _LETTER_PCS[match["letter"].upper()] + alter
        if pitch > 127:
            raise _cannot_read(self.text, token, "it is above G9 (MIDI 127), the highest note MIDI has")
        start = self.time
        self._advance(token, match)
        self.notes.append(Note(pitch, float(start), float(self.time - start)))

    def _advance(self, token: _Token, match: re.Match[str]) -> None:
        """Count one note or rest and move the time on by its length."""
        self.events += 1
        if self.events > MAX_TYPED_NOTES:
            raise _cannot_read(self.text, token, f"a typed melody holds at most {MAX_TYPED_NOTES:,} notes and rests")
        length = _LENGTHS[match["length"]]
        if match["dot"]:
            length *= Fraction(3, 2)
        if match["triplet"]:
            length *= Fraction(2, 3)
        self.time += length
        if self.last_bar is not None and self.time - self.last_bar > self.bar:
            raise _cannot_read(
                self.text,
                token,
                f"it runs {_quarter_notes(self.time - self.last_bar - self.bar)} past the end of its bar "
                f"({self.meter} holds {_quarter_notes(self.bar)} a bar); write the bar line before it",
            )

    @property
    def bar(self) -> Fraction:
        """The length of a bar in quarter notes."""
        return Fraction(self.meter.numerator * 4, self.meter.denominator)

    def _bar(self, token: _Token) -> None:
        """Check a bar line against the meter; the first one fixes the pickup (the music before it, up to a bar)."""
        length = self.time - (self.last_bar or 0)
        if length != self.bar and (self.last_bar is not None or length > self.bar):
            raise FormatError(
                f'The bar line "{token.text}" ({_place(self.text, token)}) ends a bar of {_quarter_notes(length)}; '
                f"a bar of {self.meter} holds {_quarter_notes(self.bar)}."
            )
        if self.last_bar is None:
            self.pickup = self.time % self.bar
        self.last_bar = self.time

    def _setting(self, token: _Token, name: str, value: str) -> None:
        readers: dict[str, Callable[[_Token, str], None]] = {
            "tempo": self._tempo,
            "meter": self._meter,
            "key": self._key,
        }
        if name not in readers:
            raise _cannot_read(self.text, token, "the settings are tempo=, meter= and key=, as in tempo=100")
        if self.events:
            raise _cannot_read(self.text, token, "settings come before the first note")
        if name in self.settings:
            raise _cannot_read(self.text, token, f"{name} is already set")
        readers[name](token, value)
        self.settings.add(name)

    def _tempo(self, token: _Token, value: str) -> None:
        tempo = float(value) if _TEMPO.fullmatch(value) else 0.0
        if not MIN_TEMPO_BPM <= tempo <= MAX_TEMPO_BPM:
            raise _cannot_read(
                self.text,
                token,
                f"the tempo is quarter notes per minute, {MIN_TEMPO_BPM:g} to {MAX_TEMPO_BPM:g}, as in tempo=100",
            )
        self.tempo = tempo

    def _meter(self, token: _Token, value: str) -> None:
        match = _METER.fullmatch(value)
        numerator, denominator = (int(match["numerator"]), int(match["denominator"])) if match else (0, 0)
        if not (numerator > 0 and denominator in ALLOWED_DENOMINATORS and numerator * 4 / denominator <= MAX_BAR_BEATS):
            raise _cannot_read(
                self.text,
                token,
                f"a meter is like 3/4 or 6/8: 1, 2, 4, 8 or 16 below the line, at most {MAX_BAR_BEATS} quarter notes "
                "a bar",
            )
        self.meter = TimeSignature(numerator, denominator)

    def _key(self, token: _Token, value: str) -> None:
        match = _KEY.fullmatch(value)
        if match is None:
            raise _cannot_read(self.text, token, 'a key is a letter, # or b, and "m" for minor, as in key=G or key=F#m')
        alter = {"#": 1, "b": -1, "": 0}[match["accidental"]]
        mode = "minor" if match["mode"] in ("m", "min", "minor") else "major"
        self.key = Key((_LETTER_PCS[match["letter"].upper()] + alter) % 12, mode)


def _note_problem(token: str) -> str:
    """What is wrong with a token that is no note, rest, bar line or setting, and what was expected instead."""
    part = _LOOSE_NOTE.fullmatch(token)
    assert part is not None  # every group may be empty
    if not part["letter"]:
        if token.startswith(":"):
            return "repeat signs are not read: write the repeated music out"
        return "a note starts with a letter A–G and a rest with r, as in C4q or rq"
    if part["letter"] in "Rr" and (part["accidental"] or part["octave"]):
        return "a rest has a length but no pitch, as in rq or rh."
    if part["accidental"] not in ("", "#", "##", "b", "bb"):
        return "write one or two sharps (#) or flats (b), not both, as in F#4q or Bbb3q"
    if len(part["octave"]) > 1:
        return "the octave is one digit, 0 to 9 (C4 is middle C)"
    if not part["length"]:
        return f"a length must follow the pitch: {_LENGTH_HINT}, as in C4q"
    if part["length"] not in _LENGTHS:
        return f'"{part["length"]}" is not a length: use {_LENGTH_HINT}'
    return f'"{_shown(part["tail"])}" cannot follow the length: only "." (dotted) and then "t" (triplet) can'


def _cannot_read(text: str, token: _Token, problem: str) -> FormatError:
    return FormatError(f'Cannot read "{_shown(token.text)}" ({_place(text, token)}): {problem}.')


def _place(text: str, token: _Token) -> str:
    """Where a token is: "token 3, column 9", with the line ("token 12, line 2, column 5") in multi-line text."""
    line_start = text.rfind("\n", 0, token.offset) + 1
    column = f"column {token.offset - line_start + 1:,}"
    if "\n" not in text:
        return f"token {token.number:,}, {column}"
    line = text.count("\n", 0, token.offset) + 1
    return f"token {token.number:,}, line {line:,}, {column}"


def _shown(token: str) -> str:
    return token if len(token) <= _SHOWN_CHARS else token[: _SHOWN_CHARS - 1] + "…"


def _quarter_notes(beats: Fraction) -> str:
    """A length for a message: "1 quarter note", "2.5 quarter notes", "0.333 quarter notes"."""
    return f"{float(beats):.3g} quarter note{'' if beats == 1 else 's'}"
