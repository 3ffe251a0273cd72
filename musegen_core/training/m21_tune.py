"""music21 stream → `Piece`, as the corpus needs it: one part's notes, its meter, pickup, key and tempo.

Kept apart from `musegen_core.formats` on purpose: a corpus tune is refused (`SkipTune`) where an upload would be
accepted with defaults (no meter), and ties are merged only between equal pitches (see `_tied_notes`).
"""

from __future__ import annotations

from musegen_core.music import Key, Note, Part, Piece, TimeSignature


class SkipTune(Exception):
    """A tune left out of the corpus; the message is the (short, countable) reason."""


def stream_to_piece(score, part=None) -> Piece:
    """One part of a parsed tune (default: the first) as a one-part `Piece` with the part's key and the score's tempo
    and title, in the part's first meter. Raises `SkipTune` for a free or unsupported meter."""
    from music21 import meter

    part = part if part is not None else score.parts[0] if score.parts else score
    signatures = list(part.recurse().getElementsByClass(meter.TimeSignature))
    if not signatures:
        raise SkipTune("no meter")
    numerator, denominator = signatures[0].numerator, signatures[0].denominator
    if denominator not in (1, 2, 4, 8, 16) or not 1 <= numerator <= 64:
        raise SkipTune("unsupported meter")
    time_signature = TimeSignature(numerator, denominator)
    notes = _tied_notes(part.flatten().notes)
    title = score.metadata.title if score.metadata and score.metadata.title else ""
    return Piece(
        parts=(Part("melody", tuple(notes)),),
        tempo_bpm=tempo_of(score) or 120.0,
        time_signature=time_signature,
        key=_key_of(part),
        title=title,
        pickup_beats=_pickup_beats(part, time_signature.bar_beats),
    )


def _tied_notes(elements) -> list[Note]:
    """Notes and chord tones with ties merged. Only a tie onto the *same* pitch merges: O'Neill's transcriptions write
    `f-g` for slurs, which music21 reads as ties (and its `stripTies` would merge into one note)."""
    from music21 import harmony

    notes: list[Note] = []
    open_ties: dict[int, int] = {}  # MIDI pitch → index in `notes` of the note whose tie is still open
    for element in elements:
        if isinstance(element, harmony.Harmony) or element.quarterLength <= 0:  # chord symbols, grace notes
            continue
        start, length = float(element.offset), float(element.quarterLength)
        tie_continues = element.tie is not None and element.tie.type in ("start", "continue")
        for pitch in (p.midi for p in element.pitches if 0 <= p.midi <= 127):
            tied = open_ties.pop(pitch, None)
            if tied is not None and abs(notes[tied].end_beats - start) < 1e-6:
                notes[tied] = Note(pitch, notes[tied].start_beats, notes[tied].duration_beats + length)
            else:
                notes.append(Note(pitch, start, length))
                tied = len(notes) - 1
            if tie_continues:
                open_ties[pitch] = tied
    return notes


def _pickup_beats(part, bar_beats: float) -> float:
    """Length (beats) of an incomplete first bar, 0.0 without one."""
    from music21 import stream

    first = part.getElementsByClass(stream.Measure).first()
    if first is None:
        return 0.0
    length = float(first.duration.quarterLength)
    return length if 0 < length < bar_beats - 1e-6 else 0.0


def _first_key(stream):
    """The first key (or key signature, read as major) in a stream; None without one."""
    from music21 import key

    found = stream.recurse().getElementsByClass(key.KeySignature).first()
    if found is None or isinstance(found, key.Key):
        return found
    return found.asKey("major")


def _key_of(part) -> Key | None:
    found = _first_key(part)
    mode = found.mode if found is not None and found.mode in ("major", "minor") else None
    return Key(found.tonic.pitchClass, mode) if mode else None


def key_name(stream) -> str:
    """The first key of a stream (pass the melody's part: transposing instruments carry other signatures), e.g.
    "G major", "D dorian"; "" without one."""
    found = _first_key(stream)
    return f"{found.tonic.name} {found.mode}" if found is not None else ""


def tempo_of(score) -> float | None:
    """The first metronome mark's tempo in quarter notes per minute, None without one (or outside 10–400)."""
    from music21 import tempo

    mark = score.recurse().getElementsByClass(tempo.MetronomeMark).first()
    bpm = mark.getQuarterBPM() if mark is not None else None
    return float(bpm) if bpm and 10 <= bpm <= 400 else None
