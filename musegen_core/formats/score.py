"""A parsed music21 score → `Piece`; shared by the MusicXML and ABC readers.

What survives: every pitched note (chords become several notes, tied notes are joined), onsets and durations in
quarter-note beats on the 1/480-beat grid, each part's name and MIDI program, and the first tempo, meter and key.
What is dropped: grace notes (no duration), unpitched percussion, rests, dynamics and articulations. Repeats are
not expanded: notes come in written order.
"""

from __future__ import annotations

from dataclasses import replace
from itertools import islice

from music21 import chord, harmony, key, meter, note, stream, tempo

from musegen_core.formats.midi import check_size, clamp_tempo, snap_beats, time_signature_or_default
from musegen_core.music import Key, Note, Part, Piece, TimeSignature


def stream_to_piece(score: stream.Stream) -> Piece:
    """Convert a music21 `Score` (or a part-less `Stream`) into a `Piece`; parts without pitched notes are left out.

    Raises:
        FormatError: more than `MAX_PARTS` parts or `MAX_NOTES` notes.
    """
    m21_parts: list[stream.Stream] = list(score.parts) or [score]
    check_size(len(m21_parts), 0)
    parts, note_total = [], 0
    for index, m21_part in enumerate(m21_parts):
        notes = _part_notes(m21_part, origin_beats=0.0 if m21_part is score else float(m21_part.offset))
        note_total += len(notes)
        check_size(len(m21_parts), note_total)
        if notes:
            parts.append(Part(name=_part_name(m21_part, index), notes=notes, program=_program(m21_part)))
    time_signature = _first_time_signature(score)
    return Piece(
        parts=_with_unique_names(parts),
        tempo_bpm=_first_tempo(score),
        time_signature=time_signature,
        key=_first_key(score),
        title=_title(score),
        pickup_beats=_pickup_beats(m21_parts[0], time_signature),
    )


def _part_notes(m21_part: stream.Stream, origin_beats: float) -> tuple[Note, ...]:
    """The pitched notes of one part, ties merged, offsets in beats from the start of the score."""
    flat = m21_part.flatten()
    events: list[tuple[Note, str | None]] = []
    for element in flat.notes:
        if isinstance(element, harmony.Harmony):  # chord symbols ("Cmaj7") are labels, not sounding notes
            continue
        duration = snap_beats(float(element.duration.quarterLength))
        if duration <= 0:  # grace notes
            continue
        start = snap_beats(origin_beats + float(flat.elementOffset(element)))
        velocity = min(max(int(element.volume.velocity or 90), 1), 127)
        for member in _pitched_members(element):
            tie = member.tie or element.tie
            events.append((Note(member.pitch.midi, start, duration, velocity), tie.type if tie else None))
    return _merge_ties(events)


def _merge_ties(events: list[tuple[Note, str | None]]) -> tuple[Note, ...]:
    """Join tied notes (tie type "start"/"continue"/"stop", in onset order) into single longer notes.

    Done here rather than with music21's `stripTies`, which is quadratic (~100 s for 20,000 notes).
    A tie that is never stopped, or whose next note is not adjacent, simply ends its note.
    """
    merged: list[Note] = []
    held: dict[int, Note] = {}  # pitch → note waiting for its tied continuation
    for current, tie in events:
        waiting = held.pop(current.pitch, None)
        if waiting is not None and tie in ("stop", "continue") and abs(waiting.end_beats - current.start_beats) < 1e-6:
            current = replace(waiting, duration_beats=snap_beats(waiting.duration_beats + current.duration_beats))
        elif waiting is not None:
            merged.append(waiting)
        if tie in ("start", "continue"):
            held[current.pitch] = current
        else:
            merged.append(current)
    merged.extend(held.values())
    return tuple(merged)


def _pitched_members(element: note.GeneralNote) -> list[note.Note]:
    """The pitched notes of a note or chord within MIDI range; unpitched (percussion) notes give none."""
    if isinstance(element, chord.ChordBase):
        members = [member for member in element.notes if isinstance(member, note.Note)]
    elif isinstance(element, note.Note):
        members = [element]
    else:
        members = []
    return [member for member in members if 0 <= member.pitch.midi <= 127]


def _part_name(m21_part: stream.Stream, index: int) -> str:
    instrument = m21_part.getInstrument(returnDefault=False)
    candidates = [
        getattr(m21_part, "partName", None),
        instrument.partName if instrument else None,
        instrument.instrumentName if instrument else None,
    ]
    for candidate in candidates:
        if candidate and candidate.strip():
            return " ".join(candidate.split())
    return f"Part {index + 1}"


def _program(m21_part: stream.Stream) -> int:
    """General MIDI program of the part's instrument, 0 (piano) when the file names none."""
    instrument = m21_part.getInstrument(returnDefault=False)
    program = instrument.midiProgram if instrument is not None else None
    return program if program is not None and 0 <= program <= 127 else 0


def _with_unique_names(parts: list[Part]) -> tuple[Part, ...]:
    """Parts renamed "Piano (2)", "Piano (3)"... where names repeat (e.g. the two staves of a piano part)."""
    seen: dict[str, int] = {}
    renamed = []
    for part in parts:
        seen[part.name] = seen.get(part.name, 0) + 1
        if seen[part.name] == 1:
            renamed.append(part)
        else:
            renamed.append(Part(f"{part.name} ({seen[part.name]})", part.notes, part.program, part.is_drum))
    return tuple(renamed)


def _first_tempo(score: stream.Stream) -> float:
    """Quarter-note BPM of the first metronome mark that has a number; 120 when none does."""
    for mark in score.recurse().getElementsByClass(tempo.MetronomeMark):
        bpm = mark.getQuarterBPM()
        if bpm is not None:
            return clamp_tempo(float(bpm))
    return clamp_tempo(None)


def _first_time_signature(score: stream.Stream) -> TimeSignature:
    first = score.recurse().getElementsByClass(meter.TimeSignature).first()
    if first is None:
        return TimeSignature()
    return time_signature_or_default(int(first.numerator), int(first.denominator))


def _first_key(score: stream.Stream) -> Key | None:
    """The first key: a `Key` keeps its tonic when major or minor; a bare signature (or a mode) → its major key."""
    first = score.recurse().getElementsByClass(key.KeySignature).first()
    if first is None or first.sharps is None:
        return None
    if isinstance(first, key.Key) and first.mode in ("major", "minor"):
        return Key(first.tonic.pitchClass, first.mode)
    return Key(first.asKey("major").tonic.pitchClass, "major")


def _pickup_beats(m21_part: stream.Stream, time_signature: TimeSignature) -> float:
    """Length in beats of an incomplete first bar (anacrusis) followed by more bars; else 0."""
    first_two = list(islice(m21_part.getElementsByClass(stream.Measure), 2))
    if len(first_two) < 2:  # a lone short bar is just short, not an upbeat to anything
        return 0.0
    pickup = snap_beats(float(first_two[1].offset - first_two[0].offset))
    return pickup if 0 < pickup < time_signature.bar_beats else 0.0


def _title(score: stream.Stream) -> str:
    title = score.metadata.bestTitle if score.metadata is not None else None
    return " ".join(str(title).split()) if title else ""
