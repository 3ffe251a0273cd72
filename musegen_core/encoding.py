"""Melody ↔ model tokens, shared by every model family.

A melody is a sequence of sixteenth-note steps (MelodyRNN's one-hot melody encoding). Each step holds one token:

- `REST` (0): silence from this step on (ends a sounding note);
- `HOLD` (1): nothing new — the previous note (or rest) continues;
- `NOTE_ON + k` (2 + k): a new note of pitch `MIN_PITCH + k` starts here.

Every step also has a *position in the bar* (0 = downbeat), so models know the meter. Pitches outside
`MIN_PITCH..MAX_PITCH` are moved by octaves into range. Polyphonic parts are reduced to their top line (skyline).
Timings off the sixteenth grid (e.g. triplets) are rounded to it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from musegen_core.music import Note, Part, Piece

STEPS_PER_BEAT = 4  # sixteenth notes per quarter-note beat
MIN_PITCH = 43  # G2: below the lowest folk-fiddle and chorale-soprano notes
MAX_PITCH = 96  # C7
REST = 0
HOLD = 1
NOTE_ON = 2
VOCAB_SIZE = NOTE_ON + MAX_PITCH - MIN_PITCH + 1
MAX_BAR_STEPS = 48  # positions ≥ this (bars longer than 12/8) share the last position index
ENCODING_VERSION = 1


@dataclass(frozen=True)
class EncodedMelody:
    """Tokens of one melody plus its meter: step `i` lies at position `(i + offset_steps) % bar_steps`."""

    tokens: np.ndarray  # int64, shape (steps,)
    bar_steps: int
    offset_steps: int = 0

    def positions(self) -> np.ndarray:
        """Position-in-bar index of every step, shape (steps,), clipped to `MAX_BAR_STEPS - 1`."""
        return bar_positions(len(self.tokens), self.bar_steps, self.offset_steps)


def bar_positions(steps: int, bar_steps: int, offset_steps: int = 0, start: int = 0) -> np.ndarray:
    """Position-in-bar of steps `start .. start+steps-1`."""
    index = np.arange(start, start + steps, dtype=np.int64)
    return np.minimum((index + offset_steps) % bar_steps, MAX_BAR_STEPS - 1)


def bar_steps_of(piece: Piece) -> int:
    """Sixteenth steps in one bar of the piece's meter (4/4 → 16, 6/8 → 12)."""
    return max(1, round(piece.time_signature.bar_beats * STEPS_PER_BEAT))


def offset_steps_of(piece: Piece) -> int:
    """Steps before the first downbeat that are *missing* from the pickup bar (so positions line up)."""
    pickup = round(piece.pickup_beats * STEPS_PER_BEAT)
    return (bar_steps_of(piece) - pickup) % bar_steps_of(piece) if pickup else 0


def fold_pitch(pitch: int) -> int:
    """Move a pitch by whole octaves into the model range."""
    while pitch < MIN_PITCH:
        pitch += 12
    while pitch > MAX_PITCH:
        pitch -= 12
    return pitch


def skyline(part: Part) -> list[Note]:
    """The top line of a part: at each onset keep the highest note; a note is cut where the next one starts."""
    by_onset: dict[float, Note] = {}
    for note in part.notes:
        kept = by_onset.get(note.start_beats)
        if kept is None or note.pitch > kept.pitch:
            by_onset[note.start_beats] = note
    line = [by_onset[t] for t in sorted(by_onset)]
    if not line:
        return []
    cut = []
    for note, following in zip(line, [*line[1:], None], strict=True):
        end = note.end_beats if following is None else min(note.end_beats, following.start_beats)
        cut.append(Note(note.pitch, note.start_beats, end - note.start_beats, note.velocity))
    return cut


def piece_to_tokens(piece: Piece, part_index: int = 0, total_steps: int | None = None) -> EncodedMelody:
    """Encode one part of a piece. `total_steps` pads with rests (or truncates) to a fixed length."""
    notes = skyline(piece.parts[part_index])
    end_step = max(
        (max(round(n.start_beats * STEPS_PER_BEAT) + 1, round(n.end_beats * STEPS_PER_BEAT)) for n in notes), default=0
    )
    steps = end_step if total_steps is None else total_steps
    tokens = np.full(steps, REST, dtype=np.int64)
    for note in notes:  # in onset order: a later onset rounded onto an earlier note's steps cuts it
        start = round(note.start_beats * STEPS_PER_BEAT)
        if start >= steps:
            break
        end = min(steps, max(start + 1, round(note.end_beats * STEPS_PER_BEAT)))
        tokens[start] = NOTE_ON + fold_pitch(note.pitch) - MIN_PITCH
        tokens[start + 1 : end] = HOLD
    return EncodedMelody(tokens, bar_steps_of(piece), offset_steps_of(piece))


def tokens_to_notes(tokens: np.ndarray | list[int], start_beats: float = 0.0, velocity: int = 90) -> list[Note]:
    """Decode tokens into notes; step 0 lies at `start_beats`. A HOLD after a rest stays silent."""
    notes: list[Note] = []
    pitch, onset = None, 0
    for step, token in enumerate([*list(tokens), REST]):
        if token == HOLD:
            continue
        if pitch is not None:
            notes.append(_note_from_steps(pitch, onset, step, start_beats, velocity))
        pitch, onset = (None, step) if token == REST else (MIN_PITCH + int(token) - NOTE_ON, step)
    return notes


def _note_from_steps(pitch: int, onset: int, end: int, start_beats: float, velocity: int) -> Note:
    return Note(pitch, start_beats + onset / STEPS_PER_BEAT, (end - onset) / STEPS_PER_BEAT, velocity)
