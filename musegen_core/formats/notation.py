"""A `Piece` laid out as a score writer needs it: notes on a notation grid, bars, voices, and tied bar segments.

Shared by the MusicXML writer (`score.piece_to_stream`) and the ABC writer (`abc.piece_to_abc`). Time here is in
integer steps of 1/12 beat (`GRID_STEPS_PER_BEAT`), the finest grid holding both 16th notes (3 steps) and
eighth-note triplets (4 steps), so bar arithmetic is exact.

**Quantisation.** Each note's start and end snap to the nearer of the 16th-note and eighth-triplet grids (16ths win
ties); a note that would vanish keeps one grid step. Pieces from the models are on the 16th grid already and come
back unchanged; uploaded MIDI played by hand is tidied. This is the rule of music21's `Stream.quantize((4, 3))`,
applied to starts and ends rather than through that method, whose gap-avoiding look-ahead moves an exact triplet
followed by a rest onto the 16th grid and can make a note overlap the next: a piece on the grid must stay as it is.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace

from musegen_core.music import Note, Part, Piece

GRID_STEPS_PER_BEAT = 12  # steps per quarter note: a 16th note is 3 steps, an eighth-note triplet 4
SIXTEENTH_STEPS = 3
_TRIPLET_STEPS = 4


def grid_steps(beats: float) -> int:
    """`beats` in steps, snapped to the nearer of the 16th-note and eighth-triplet grids (16ths win ties)."""
    exact = beats * GRID_STEPS_PER_BEAT
    candidates = [round(exact / step) * step for step in (SIXTEENTH_STEPS, _TRIPLET_STEPS)]
    return min(candidates, key=lambda steps: (abs(steps - exact), steps % SIXTEENTH_STEPS != 0))


def quantised(piece: Piece) -> Piece:
    """`piece` with every note on the notation grid (see the module docstring) and the pickup on 16th notes."""
    parts = tuple(replace(part, notes=tuple(_quantised_note(note) for note in part.notes)) for part in piece.parts)
    bar_steps = round(piece.time_signature.bar_beats * GRID_STEPS_PER_BEAT)
    sixteenths = round(piece.pickup_beats * GRID_STEPS_PER_BEAT / SIXTEENTH_STEPS)
    pickup_steps = sixteenths * SIXTEENTH_STEPS % bar_steps
    return replace(piece, parts=parts, pickup_beats=pickup_steps / GRID_STEPS_PER_BEAT)


def _quantised_note(note: Note) -> Note:
    start = grid_steps(note.start_beats)
    shortest = SIXTEENTH_STEPS if start % SIXTEENTH_STEPS == 0 else _TRIPLET_STEPS
    end = max(grid_steps(note.end_beats), start + shortest)
    return replace(note, start_beats=start / GRID_STEPS_PER_BEAT, duration_beats=(end - start) / GRID_STEPS_PER_BEAT)


def bar_lines(piece: Piece) -> list[int]:
    """Bar lines in steps from 0 to the end of the last bar (`Piece.bar_lines_beats`) of a quantised piece."""
    return [round(beats * GRID_STEPS_PER_BEAT) for beats in piece.bar_lines_beats()]


def metronome(piece: Piece) -> tuple[float, float]:
    """The tempo mark as `(beat length in quarter notes, beats per minute)`: the meter's felt beat (dotted quarter in
    6/8, half in 2/2) when that gives a whole number per minute, else quarter notes."""
    beat = piece.time_signature.beat_beats
    per_minute = piece.tempo_bpm / beat
    return (beat, per_minute) if per_minute == round(per_minute) else (1.0, piece.tempo_bpm)


@dataclass(frozen=True)
class Event:
    """Notes sounding together from `start` to `end` (steps): one note, or a chord of notes of equal length."""

    start: int
    end: int
    pitches: tuple[int, ...]
    velocity: int  # the loudest member's: a chord carries one velocity in notation


def voices(part: Part) -> list[list[Event]]:
    """The part's notes (of a quantised piece) as voices: notes of equal start and end form a chord; an event
    overlapping every voice so far opens a new one. No voice for a part without notes."""
    chords: dict[tuple[int, int], list[Note]] = defaultdict(list)
    for note in part.notes:
        chords[round(note.start_beats * GRID_STEPS_PER_BEAT), round(note.end_beats * GRID_STEPS_PER_BEAT)].append(note)
    found: list[list[Event]] = []
    for (start, end), notes in sorted(chords.items()):
        event = Event(start, end, tuple(sorted({n.pitch for n in notes})), max(n.velocity for n in notes))
        free = next((voice for voice in found if voice[-1].end <= start), None)
        if free is None:
            found.append([event])
        else:
            free.append(event)
    return found


@dataclass(frozen=True)
class Segment:
    """What one voice holds over a stretch of one bar: a rest (no pitches) or notes, maybe tied over bar lines."""

    start: int  # steps from the start of the piece
    length: int
    pitches: tuple[int, ...] = ()
    velocity: int = 0
    tied_from_before: bool = False
    tied_to_after: bool = False


def bar_segments(voice: Sequence[Event], barlines: Sequence[int]) -> list[list[Segment]]:
    """One voice cut at `barlines` (steps, from `bar_lines`): per bar, its segments in time order, gaps filled with
    rests; a note crossing a bar line becomes segments tied to each other."""
    bars: list[list[Segment]] = [[] for _ in barlines[1:]]
    cursor = 0
    for event in [*voice, Event(barlines[-1], barlines[-1], (), 0)]:  # the sentinel fills the last gap with rests
        _add(bars, barlines, Event(cursor, event.start, (), 0))
        _add(bars, barlines, event)
        cursor = event.end
    return bars


def _add(bars: list[list[Segment]], barlines: Sequence[int], event: Event) -> None:
    """Append `event` (a rest when it has no pitches) to the bars it spans, split and tied at the bar lines."""
    position, tied = event.start, bool(event.pitches)
    while position < event.end:
        index = bisect.bisect_right(barlines, position) - 1
        stop = min(event.end, barlines[index + 1])
        bars[index].append(
            Segment(
                position,
                stop - position,
                event.pitches,
                event.velocity,
                tied and position > event.start,
                tied and stop < event.end,
            )
        )
        position = stop
