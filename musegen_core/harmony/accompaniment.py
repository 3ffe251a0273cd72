"""A folk chord-and-bass accompaniment for a melody, by rules of harmony (no model).

`accompany(melody)` returns the melody part untouched plus a "Chords" part (GM 25, steel-string guitar) and a
"Bass" part (GM 32, acoustic bass); `chord_plan(melody)` lists the chords it plays.

**Key**: the piece's `Key`, else `controls.key_of`'s Krumhansl–Kessler estimate from the melody.

**Chords**: one per bar, from the key's diatonic triads: I ii IV V V7 vi in major; i III iv V V7 VI VII in minor
(V from the harmonic minor, the others natural). Each chord is scored by the share of the bar's melody that is a
chord tone, every note weighted by the beats it sounds in the bar, doubled when it sounds on the downbeat; plus
small bonuses for I (i), V and IV (iv), for keeping the last chord, for a dominant resolving to the tonic, for V on
the second-to-last chord and, more strongly, for the tonic on the last. Chords are chosen left to right, each
knowing the one before. V7 is V with the chordal seventh added: it wins only where the melody sounds that seventh.
In 4/4, 6/8 and 12/8 (meters whose bar holds an even number of pattern groups, below) a full bar gets two chords, one
per half, when the melody clearly changes harmony: when the halves' best chord-tone shares, weighted by the
halves' melody, beat the whole bar's best share by `SPLIT_GAIN` or more.

**Pickup**: no chord before the first full bar; the accompaniment enters on the first downbeat. It ends with the
melody (the last note's end), the final chord struck once on its downbeat and held.

**Patterns** ("oom-pah"): a bar is cut into pulses and the pulses into groups; the first pulse of each group is
a bass note, the others a block chord: 4/4 and 2/4 (and 2/2) in quarter (half) pulses, groups of two (bass on beats
1 and 3 of 4/4, chords on 2 and 4); 3/4 bass on 1, chords on 2 and 3; 6/8, 9/8, 12/8 (and 3/8) in eighths, groups
of three (6/8: bass on eighths 1 and 4, chords on 2, 3, 5, 6). Within a chord's span the bass alternates root and
fifth (so 4/4 plays the root on 1 and the fifth on 3). Other meters (5/4, 7/8, ...) hold a bass root and a block
chord for each chord's whole span.

**Voicing**: block triads (four notes for V7) in close position, every note below the lowest melody note sounding
during the chord (never above the melody line), each chord the voicing that moves least from the last one while
staying near G3 (`CHORD_CENTRE`). The bass is the highest note of its pitch class below both the chord and C3
(`BASS_TOP`). Hence the melody must not go below C3 (`MIN_MELODY_PITCH`).

Hand-written rather than with `music21.roman`: the vocabulary is a fixed table of seven chords, chord names are
spelled by `formats.spelling` (the spelling the notation writers use), and no music21 objects need building: a
64-bar tune of eighth notes takes 50–100 ms on a shared 2-core CPU (the limit asked is 0.5 s).

Refused with a `ControlError`: a part index out of range, a drum part, a melody without notes, one that ends inside
its pickup, or one that goes below `MIN_MELODY_PITCH`. A one-note melody gets one chord (usually its tonic).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from musegen_core.controls import key_of
from musegen_core.errors import ControlError
from musegen_core.formats.spelling import spell
from musegen_core.music import Key, Note, Part, Piece, TimeSignature, pitch_name

CHORDS_PROGRAM = 25  # GM acoustic guitar (steel)
BASS_PROGRAM = 32  # GM acoustic bass
MIN_MELODY_PITCH = 48  # C3: chords and bass need room below the melody
CHORD_CENTRE = 55  # G3: where block chords like to sit
CENTRE_PULL = 0.5  # cost per semitone of a voicing's mean away from CHORD_CENTRE (movement costs 1 per semitone)
BASS_TOP = 48  # bass notes lie below C3 (and below the chord)
CHORD_VELOCITY_SHARE = 0.7  # of the melody's mean velocity
BASS_VELOCITY_SHARE = 0.85

DOWNBEAT_WEIGHT = 2.0  # a melody note sounding on a chord's first beat counts double
SPLIT_GAIN = 0.25  # chord-tone share two half-bar chords must gain over one to split the bar
PRIORS = {"I": 0.1, "i": 0.1, "V": 0.06, "IV": 0.06, "iv": 0.06, "V7": 0.05}
STAY_BONUS = 0.03
RESOLVE_BONUS = 0.1  # V or V7 followed by the tonic
PENULTIMATE_DOMINANT_BONUS = 0.15
FINAL_TONIC_BONUS = 0.3

_EPS = 1e-6


@dataclass(frozen=True)
class Chord:
    """A diatonic chord: roman numeral, root in semitones above the tonic, chord tones in semitones above the root."""

    roman: str
    root: int
    intervals: tuple[int, ...]

    def pitch_classes(self, key: Key) -> frozenset[int]:
        return frozenset((key.tonic_pc + self.root + step) % 12 for step in self.intervals)

    def symbol(self, key: Key) -> str:
        """Lead-sheet name in `key`: "G", "Em", "D7", "Bb"."""
        root = spell(60 + (key.tonic_pc + self.root) % 12, key)
        accidental = "#" * root.alter if root.alter > 0 else "b" * -root.alter
        return root.letter + accidental + _SUFFIXES[self.intervals]


_MAJOR, _MINOR, _DOMINANT_SEVENTH = (0, 4, 7), (0, 3, 7), (0, 4, 7, 10)
_SUFFIXES = {_MAJOR: "", _MINOR: "m", _DOMINANT_SEVENTH: "7"}
VOCABULARY = {
    "major": (
        Chord("I", 0, _MAJOR),
        Chord("ii", 2, _MINOR),
        Chord("IV", 5, _MAJOR),
        Chord("V", 7, _MAJOR),
        Chord("V7", 7, _DOMINANT_SEVENTH),
        Chord("vi", 9, _MINOR),
    ),
    "minor": (
        Chord("i", 0, _MINOR),
        Chord("III", 3, _MAJOR),
        Chord("iv", 5, _MINOR),
        Chord("V", 7, _MAJOR),
        Chord("V7", 7, _DOMINANT_SEVENTH),
        Chord("VI", 8, _MAJOR),
        Chord("VII", 10, _MAJOR),
    ),
}


@dataclass(frozen=True)
class Span:
    """Where one chord sounds: [start, end) in beats, inside the bar starting at `bar_start`."""

    start: float
    end: float
    bar_start: float


def accompany(melody: Piece, *, part_index: int = 0) -> Piece:
    """`melody`'s part `part_index` (the same `Part` object) followed by a "Chords" and a "Bass" part; tempo, meter,
    key, pickup and title as in `melody`, its other parts left out.

    Raises:
        ControlError: see the module doc.
    """
    part = _melody_part(melody, part_index)
    key, plan = _plan(melody, part)
    chords, bass = _realise(melody.time_signature, part.notes, key, plan)
    velocity = sum(n.velocity for n in part.notes) / len(part.notes)
    return melody.with_parts(
        (
            part,
            Part("Chords", _notes(chords, velocity * CHORD_VELOCITY_SHARE), program=CHORDS_PROGRAM),
            Part("Bass", _notes(bass, velocity * BASS_VELOCITY_SHARE), program=BASS_PROGRAM),
        )
    )


def chord_plan(melody: Piece, part_index: int = 0) -> list[tuple[float, str]]:
    """(start beat, chord symbol) of each chord `accompany` plays: one per bar, two in a split bar (repeats kept).

    Raises:
        ControlError: see the module doc.
    """
    key, plan = _plan(melody, _melody_part(melody, part_index))
    return [(span.start, chord.symbol(key)) for span, chord in plan]


def _melody_part(melody: Piece, part_index: int) -> Part:
    """The part to accompany, checked."""
    if not 0 <= part_index < len(melody.parts):
        raise ControlError(f"part_index must be within 0 and {len(melody.parts) - 1} (received {part_index})")
    part = melody.parts[part_index]
    if part.is_drum:
        raise ControlError("The chosen part is a drum part: pick a melody part to accompany.")
    if not part.notes:
        raise ControlError("The melody has no notes: there is nothing to accompany.")
    if part.end_beats <= melody.pickup_beats + _EPS:
        raise ControlError("The melody ends within its pickup: there is no full bar to accompany.")
    lowest = min(n.pitch for n in part.notes)
    if lowest < MIN_MELODY_PITCH:
        raise ControlError(
            f"The melody goes down to {pitch_name(lowest)}, but chords and bass are played below it: transpose it "
            f"so that its lowest note is {pitch_name(MIN_MELODY_PITCH)} or higher."
        )
    return part


def _plan(melody: Piece, part: Part) -> tuple[Key, list[tuple[Span, Chord]]]:
    """The key and the chord of every span, from the first full bar to the melody's end."""
    key = key_of(melody.with_parts((part,)))
    chords = VOCABULARY[key.mode]
    spans = [span for bar in _bars(melody, part.end_beats) for span in _split(bar, melody, part.notes, key, chords)]
    chosen: list[Chord] = []
    for index, span in enumerate(spans):
        weights = _weights(part.notes, span)
        previous = chosen[-1] if chosen else None
        scores = [_score(chord, weights, key, previous, len(spans) - 1 - index) for chord in chords]
        chosen.append(chords[scores.index(max(scores))])
    return key, list(zip(spans, chosen, strict=True))


def _bars(melody: Piece, end: float) -> list[Span]:
    """The bars from the first full one (after the pickup) to `end`, the last cut at `end`."""
    length = melody.time_signature.bar_beats
    bars, start = [], melody.pickup_beats
    while start < end - _EPS:
        bars.append(Span(start, min(start + length, end), start))
        start += length
    return bars


def _split(bar: Span, melody: Piece, notes: Sequence[Note], key: Key, chords: Sequence[Chord]) -> list[Span]:
    """The bar as one span, or its two halves where the meter allows it and the melody clearly changes harmony."""
    half = melody.time_signature.bar_beats / 2
    if not _splits_in_half(melody.time_signature) or bar.end - bar.start < 2 * half - _EPS:
        return [bar]
    halves = [Span(bar.start, bar.start + half, bar.start), Span(bar.start + half, bar.end, bar.start)]
    whole = _best_fit(_weights(notes, bar), key, chords)
    half_weights = [_weights(notes, span) for span in halves]
    totals = [sum(weights.values()) for weights in half_weights]
    if min(totals) <= 0:
        return [bar]
    fits = [_best_fit(weights, key, chords) for weights in half_weights]
    gain = (totals[0] * fits[0] + totals[1] * fits[1]) / sum(totals) - whole
    return halves if gain >= SPLIT_GAIN - _EPS else [bar]


def _splits_in_half(meter: TimeSignature) -> bool:
    """Whether a bar holds an even number of pattern groups (4/4, 6/8, 12/8), so its halves are groups."""
    pattern = _pattern(meter)
    if pattern is None:
        return False
    pulse, group = pattern
    groups = round(meter.bar_beats / pulse) // group
    return groups >= 2 and groups % 2 == 0


def _weights(notes: Sequence[Note], span: Span) -> dict[int, float]:
    """Pitch class → beats the melody sounds it in `span`, doubled for a note sounding at the span's start."""
    weights: dict[int, float] = defaultdict(float)
    for note in notes:
        overlap = min(note.end_beats, span.end) - max(note.start_beats, span.start)
        if overlap > _EPS:
            on_downbeat = note.start_beats <= span.start + _EPS
            weights[note.pitch % 12] += overlap * (DOWNBEAT_WEIGHT if on_downbeat else 1.0)
    return weights


def _fit(weights: dict[int, float], pitch_classes: frozenset[int]) -> float:
    """Share of the weight on chord tones; 0.0 without melody."""
    total = sum(weights.values())
    return sum(w for pc, w in weights.items() if pc in pitch_classes) / total if total > 0 else 0.0


def _best_fit(weights: dict[int, float], key: Key, chords: Sequence[Chord]) -> float:
    return max(_fit(weights, chord.pitch_classes(key)) for chord in chords)


def _score(chord: Chord, weights: dict[int, float], key: Key, previous: Chord | None, spans_left: int) -> float:
    """How well `chord` suits a span: its chord-tone share plus the harmonic preferences of the module doc."""
    score = _fit(weights, chord.pitch_classes(key)) + PRIORS.get(chord.roman, 0.0)
    if chord == previous:
        score += STAY_BONUS
    if previous is not None and previous.root == 7 and chord.root == 0:
        score += RESOLVE_BONUS
    if spans_left == 1 and chord.root == 7:
        score += PENULTIMATE_DOMINANT_BONUS
    if spans_left == 0 and chord.root == 0:
        score += FINAL_TONIC_BONUS
    return score


# ---------------------------------------------------------------------------------------------------------------
# Realisation: (pitch, start, duration) events of the chord and bass parts.

Event = tuple[int, float, float]


def _realise(
    meter: TimeSignature, melody: Sequence[Note], key: Key, plan: Sequence[tuple[Span, Chord]]
) -> tuple[list[Event], list[Event]]:
    """Chord-part and bass-part events of the plan (see "Patterns" and "Voicing" in the module doc)."""
    chord_events: list[Event] = []
    bass_events: list[Event] = []
    voicing: tuple[int, ...] = ()
    overall_lowest = min(n.pitch for n in melody)
    for index, (span, chord) in enumerate(plan):
        ceiling = min((n.pitch for n in melody if _overlaps(n, span)), default=overall_lowest)
        voicing = _next_voicing(chord.pitch_classes(key), ceiling, voicing)
        bass_limit = min(BASS_TOP, voicing[0])
        root = _below((key.tonic_pc + chord.root) % 12, bass_limit)
        fifth = _below((key.tonic_pc + chord.root + 7) % 12, bass_limit)
        for start, duration, is_bass, count in _pattern_slots(meter, span, last=index == len(plan) - 1):
            if is_bass:
                bass_events.append((root if count % 2 == 0 else fifth, start, duration))
            else:
                chord_events.extend((pitch, start, duration) for pitch in voicing)
    return chord_events, bass_events


def _pattern(meter: TimeSignature) -> tuple[float, int] | None:
    """(pulse in beats, pulses per group) of the meter's oom-pah pattern; None for meters without one."""
    if meter.denominator == 8 and meter.numerator % 3 == 0:
        return 0.5, 3
    if meter.numerator == 3:
        return 4 / meter.denominator, 3
    if meter.numerator in (2, 4):
        return 4 / meter.denominator, 2
    return None


def _pattern_slots(meter: TimeSignature, span: Span, *, last: bool) -> list[tuple[float, float, bool, int]]:
    """(start, duration, is bass, how many bass slots came before in the span) of each strike in `span`: both parts
    held through the whole span for the last chord and for meters without a pattern; else the oom-pah pulses."""
    pattern = _pattern(meter)
    if last or pattern is None:
        return [(span.start, span.end - span.start, True, 0), (span.start, span.end - span.start, False, 0)]
    pulse, group = pattern
    slots, basses = [], 0
    first = round((span.start - span.bar_start) / pulse)
    for index in range(first, first + math.ceil((span.end - span.start) / pulse - _EPS)):
        start = span.bar_start + index * pulse
        is_bass = index % group == 0
        slots.append((start, min(pulse, span.end - start), is_bass, basses))
        basses += is_bass
    return slots


def _next_voicing(pitch_classes: frozenset[int], ceiling: int, previous: tuple[int, ...]) -> tuple[int, ...]:
    """The close-position voicing below `ceiling` that moves least from `previous` while staying near the centre."""

    def cost(voicing: tuple[int, ...]) -> float:
        movement = sum(min(abs(p - q) for q in previous) for p in voicing) if previous else 0.0
        return movement + CENTRE_PULL * abs(sum(voicing) / len(voicing) - CHORD_CENTRE)

    return min(_voicings(pitch_classes, ceiling), key=cost)


def _voicings(pitch_classes: frozenset[int], ceiling: int) -> list[tuple[int, ...]]:
    """Every close-position stack of the chord tones (each the next chord tone above) wholly in the two octaves
    below `ceiling`."""
    stacks = []
    for bottom in range(ceiling - 24, ceiling):
        if bottom % 12 in pitch_classes:
            stack = tuple(bottom + step for step in sorted((pc - bottom) % 12 for pc in pitch_classes))
            if stack[-1] < ceiling:
                stacks.append(stack)
    return stacks


def _below(pitch_class: int, limit: int) -> int:
    """The highest pitch of `pitch_class` below `limit`."""
    return limit - 1 - (limit - 1 - pitch_class) % 12


def _overlaps(note: Note, span: Span) -> bool:
    return note.start_beats < span.end - _EPS and note.end_beats > span.start + _EPS


def _notes(events: Sequence[Event], velocity: float) -> tuple[Note, ...]:
    level = max(1, min(127, round(velocity)))
    return tuple(Note(pitch, start, duration, level) for pitch, start, duration in events if duration > _EPS)
