"""ABC notation → `Piece`, one tune at a time, through music21's ABC translator.

An ABC file may hold many tunes, each starting at a line `X:<number>`. music21 parses only ~40 tunes a second,
so the file is split into tunes here, by plain text, and only the tune the user picks is parsed. Field and
directive lines of the file header (before the first `X:`) apply to every tune and are prepended to each one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from music21 import stream
from music21.converter import subConverters

from musegen_core.errors import FormatError
from musegen_core.formats.score import stream_to_piece
from musegen_core.music import Piece

MAX_ABC_NOTES = 1_500  # music21's ABC import is quadratic (beaming): 1–4 s at 1,500 notes, ~8 min at 20,000
_FIELD_OR_DIRECTIVE = re.compile(r"^([A-Za-z]:|%%)")
_NOT_NOTE_LETTERS = re.compile(r'"[^"]*"|![^!]*!|\+[^+\s]*\+|%.*$')  # annotations, decorations, comments
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_ABC_HINT = "An ABC tune needs an X: line and a K: (key) line before its notes."


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
            return " ".join(line[2:].split())
    return f"Tune {number}"


def approximate_note_count(text: str) -> int:
    """Note letters (A–G, a–g) in the music lines of ABC text, outside annotations, decorations and comments.

    Counts chord members and a few stray letters too: a cheap upper-bound-ish estimate, used to refuse tunes
    too long for music21 before parsing them.
    """
    count = 0
    for line in text.splitlines():
        if not _FIELD_OR_DIRECTIVE.match(line) and not line.startswith("%"):
            count += sum(1 for char in _NOT_NOTE_LETTERS.sub("", line) if char in "ABCDEFGabcdefg")
    return count


def abc_tune_to_piece(tune: AbcTune) -> Piece:
    """Parse one tune with music21 into a `Piece` (pickup, meter, key and tempo from the tune's header).

    Raises:
        FormatError: the tune is longer than `MAX_ABC_NOTES`, or music21 cannot parse it.
    """
    notes = approximate_note_count(tune.text)
    if notes > MAX_ABC_NOTES:
        raise FormatError(
            f"The ABC tune {tune.title!r} has about {notes:,} notes; MuseGen reads ABC tunes of at most "
            f"{MAX_ABC_NOTES:,} notes (longer ones import very slowly). Upload it as MIDI or MusicXML instead."
        )
    converter = subConverters.ConverterABC()
    try:
        converter.parseData(tune.text)
        parsed = converter.stream
        if isinstance(parsed, stream.Opus):  # a tune with an X: line comes back wrapped in an Opus
            parsed = parsed.scores.first() or stream.Score()
        return stream_to_piece(parsed)
    except FormatError:
        raise
    except Exception as error:  # boundary: music21's ABC translator raises many exception types
        reason = " ".join(str(error).split())[:120] or type(error).__name__
        raise FormatError(f"music21 could not read the ABC tune {tune.title!r} ({reason}). {_ABC_HINT}") from error
