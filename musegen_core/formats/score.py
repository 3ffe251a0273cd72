"""music21 streams ↔ `Piece`: the mirrored pair `stream_to_piece` (the MusicXML and ABC readers) and
`piece_to_stream` (the MusicXML writer).

What survives reading: every pitched note (chords become several notes, tied notes are joined), onsets and durations
in quarter-note beats on the 1/480-beat grid, each part's name and MIDI program (a part on MIDI channel 10 is drums),
and the first tempo, meter, key and pickup. What is dropped: grace notes (no duration), unpitched percussion, rests,
dynamics and articulations. Repeats are not expanded: notes come in written order.
"""

from __future__ import annotations

from dataclasses import replace
from fractions import Fraction
from itertools import islice

from music21 import chord, clef, duration, harmony, instrument, key, metadata, meter, note, pitch, stream, tempo
from music21 import tie as m21_tie

from musegen_core.errors import FormatError
from musegen_core.formats.midi import DRUM_CHANNEL, check_size, clamp_tempo, snap_beats, time_signature_or_default
from musegen_core.formats.notation import (
    GRID_STEPS_PER_BEAT,
    Segment,
    bar_lines,
    bar_segments,
    metronome,
    quantised,
    voices,
)
from musegen_core.formats.spelling import key_fifths, spell
from musegen_core.music import Key, Note, Part, Piece, TimeSignature

MAX_SCORE_MEASURES = 10_000  # bars × parts: music21 writes about 400 measures a second


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
            name, program, is_drum = _part_name(m21_part, index), _program(m21_part), _is_drum(m21_part)
            parts.append(Part(name=name, notes=notes, program=program, is_drum=is_drum))
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


def _is_drum(m21_part: stream.Stream) -> bool:
    """True when the part's instrument plays on General MIDI's drum channel (10)."""
    instrument_ = m21_part.getInstrument(returnDefault=False)
    return instrument_ is not None and instrument_.midiChannel == DRUM_CHANNEL


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


# --- Piece → stream ----------------------------------------------------------------------------------------------


def piece_to_stream(piece: Piece) -> stream.Score:
    """Convert a `Piece` into a music21 `Score` with measures, ready for music21's MusicXML writer.

    The notes are first put on the notation grid (`notation.quantised`: 16th notes and eighth-note triplets). All
    parts get the same measures: a pickup is measure 0 (MusicXML's unnumbered "implicit" measure) and the last bar
    is filled up with rests. Notes crossing a bar line are tied over it, notes of equal start and length form chords
    and overlapping notes go to further voices. Each part's first measure holds its clef, time signature and key,
    the first part's the tempo mark. Pitches are spelled in the key; parts keep their names, General MIDI programs
    and velocities (a chord: its loudest note's), drums on MIDI channel 10 as pitched notes.

    Raises:
        FormatError: the score would have more than `MAX_SCORE_MEASURES` measures (bars × parts).
    """
    grid = quantised(piece)
    barlines = bar_lines(grid)
    measures = (len(barlines) - 1) * len(grid.parts)
    if measures > MAX_SCORE_MEASURES:
        raise FormatError(
            f"This piece would need {measures:,} measures of score; MuseGen writes at most {MAX_SCORE_MEASURES:,} "
            "(bars × parts). Export MIDI instead."
        )
    score = stream.Score()
    score.metadata = metadata.Metadata(title=piece.title)
    for index, part in enumerate(grid.parts):
        score.insert(0, _part_stream(part, index + 1, grid, barlines))
    return score


def _part_stream(part: Part, number: int, piece: Piece, barlines: list[int]) -> stream.Part:
    """Part `number` (from 1) of the score; the first one carries the tempo mark."""
    m21_part = stream.Part()
    m21_part.partName = part.name
    m21_part.insert(0, _instrument(part, number))
    per_voice = [bar_segments(voice, barlines) for voice in voices(part) or [[]]]
    first_number = 0 if piece.pickup_beats else 1
    for measure_number, bar in enumerate(zip(*per_voice, strict=True), start=first_number):
        m21_part.append(_measure(measure_number, bar, piece.key))
    _open_first_measure(m21_part, part, piece, with_tempo=number == 1)
    return m21_part


def _instrument(part: Part, number: int) -> instrument.Instrument:
    """A plain instrument at sounding pitch (no transposing guitar or bass) named after the General MIDI program;
    fixed ids ("P1", "P1-I1") so that the same piece always gives the same MusicXML."""
    general_midi = instrument.instrumentFromMidiProgram(part.program)
    player = instrument.Instrument(instrumentName="Percussion" if part.is_drum else general_midi.instrumentName)
    player.partName = part.name
    player.partId, player.instrumentId = f"P{number}", f"P{number}-I1"
    player.midiProgram = part.program
    player.midiChannel = DRUM_CHANNEL if part.is_drum else None  # music21 numbers the other channels
    return player


def _measure(number: int, bar: tuple[list[Segment], ...], key_: Key | None) -> stream.Measure:
    """One measure from each voice's segments; voices beyond the first appear only where they hold notes."""
    measure = stream.Measure(number=number)
    bar_start = bar[0][0].start
    sounding = [segments for index, segments in enumerate(bar) if index == 0 or any(s.pitches for s in segments)]
    containers: list[stream.Stream] = [measure]
    if len(sounding) > 1:
        containers = [stream.Voice(id=str(index + 1)) for index in range(len(sounding))]
        for voice in containers:
            measure.insert(0, voice)
    for container, segments in zip(containers, sounding, strict=True):
        for segment in segments:
            offset = Fraction(segment.start - bar_start, GRID_STEPS_PER_BEAT)
            container.insert(offset, _element(segment, key_))
    return measure


def _element(segment: Segment, key_: Key | None) -> note.GeneralNote:
    """A rest, note or chord for one segment, with its velocity and tie."""
    length = Fraction(segment.length, GRID_STEPS_PER_BEAT)
    if not segment.pitches:
        return note.Rest(quarterLength=length)
    pitches = [_pitch(midi, key_) for midi in segment.pitches]
    element = note.Note(pitches[0]) if len(pitches) == 1 else chord.Chord(pitches)
    element.quarterLength = length
    element.volume.velocity = segment.velocity
    tie_type = _tie_type(segment)
    if tie_type:
        element.tie = m21_tie.Tie(tie_type)
    return element


def _pitch(midi: int, key_: Key | None) -> pitch.Pitch:
    spelling = spell(midi, key_)
    accidental = pitch.Accidental(spelling.alter) if spelling.alter else None
    return pitch.Pitch(spelling.letter, octave=spelling.octave, accidental=accidental)


def _tie_type(segment: Segment) -> str | None:
    if segment.tied_from_before:
        return "continue" if segment.tied_to_after else "stop"
    return "start" if segment.tied_to_after else None


def _open_first_measure(m21_part: stream.Part, part: Part, piece: Piece, with_tempo: bool) -> None:
    """Pickup padding, clef, time signature, key and (`with_tempo`) the tempo mark in the part's first measure."""
    first = m21_part.getElementsByClass(stream.Measure).first()
    if piece.pickup_beats:
        first.showNumber = stream.enums.ShowNumber.NEVER  # written as <measure implicit="yes">
        first.paddingLeft = piece.time_signature.bar_beats - piece.pickup_beats
    first.insert(0, clef.PercussionClef() if part.is_drum else clef.bestClef(m21_part, recurse=True))
    first.insert(0, meter.TimeSignature(str(piece.time_signature)))
    if piece.key is not None:
        first.insert(0, key.KeySignature(key_fifths(piece.key)).asKey(piece.key.mode))
    if with_tempo:
        beat, per_minute = metronome(piece)
        first.insert(0, tempo.MetronomeMark(number=per_minute, referent=duration.Duration(beat)))
