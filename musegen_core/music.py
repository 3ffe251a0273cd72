"""The one music type spoken by every module: `Piece` → `Part` → `Note`.

Units: time is in **beats**, where one beat is one quarter note (music21's "quarter length"), counted from the
start of the piece (the start of the first, possibly incomplete, bar). Pitches are MIDI numbers (60 = C4).
All objects are frozen and validate themselves, so a `Piece` that exists is a `Piece` every module can trust.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

PITCH_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
MODES = ("major", "minor")
ALLOWED_DENOMINATORS = (1, 2, 4, 8, 16)


def pitch_name(pitch: int) -> str:
    """Scientific pitch name of a MIDI number: 60 → "C4", 70 → "Bb4"."""
    return f"{PITCH_NAMES[pitch % 12]}{pitch // 12 - 1}"


def _coerce(obj: object, **types: type) -> None:
    """Normalise fields of a frozen dataclass to plain Python types (numpy scalars from loaders become int/float)."""
    for name, kind in types.items():
        object.__setattr__(obj, name, kind(getattr(obj, name)))


@dataclass(frozen=True)
class Note:
    """One sounding note. `start_beats`/`duration_beats` in quarter notes; `velocity` 1–127."""

    pitch: int
    start_beats: float
    duration_beats: float
    velocity: int = 90

    def __post_init__(self) -> None:
        _coerce(self, pitch=int, velocity=int, start_beats=float, duration_beats=float)
        if not 0 <= self.pitch <= 127:
            raise ValueError(f"pitch must be within 0 and 127 (received {self.pitch})")
        if not 1 <= self.velocity <= 127:
            raise ValueError(f"velocity must be within 1 and 127 (received {self.velocity})")
        if not (math.isfinite(self.start_beats) and self.start_beats >= 0):
            raise ValueError(f"start_beats must be finite and >= 0 (received {self.start_beats})")
        if not (math.isfinite(self.duration_beats) and self.duration_beats > 0):
            raise ValueError(f"duration_beats must be finite and > 0 (received {self.duration_beats})")

    @property
    def end_beats(self) -> float:
        return self.start_beats + self.duration_beats

    @property
    def name(self) -> str:
        return pitch_name(self.pitch)


@dataclass(frozen=True)
class Part:
    """One instrument line. Notes are kept sorted by (start, pitch); `program` is a General MIDI program 0–127."""

    name: str
    notes: tuple[Note, ...] = ()
    program: int = 0
    is_drum: bool = False

    def __post_init__(self) -> None:
        _coerce(self, name=str, program=int, is_drum=bool)
        if not 0 <= self.program <= 127:
            raise ValueError(f"program must be within 0 and 127 (received {self.program})")
        ordered = tuple(sorted(self.notes, key=lambda n: (n.start_beats, n.pitch)))
        object.__setattr__(self, "notes", ordered)

    @property
    def end_beats(self) -> float:
        return max((n.end_beats for n in self.notes), default=0.0)

    def is_monophonic(self) -> bool:
        """True when no two notes sound at the same time (touching notes are fine)."""
        return all(a.end_beats <= b.start_beats + 1e-9 for a, b in zip(self.notes, self.notes[1:], strict=False))


@dataclass(frozen=True)
class Key:
    """A key: tonic pitch class (0 = C) and mode."""

    tonic_pc: int
    mode: str = "major"

    def __post_init__(self) -> None:
        if not 0 <= self.tonic_pc <= 11:
            raise ValueError(f"tonic_pc must be within 0 and 11 (received {self.tonic_pc})")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES} (received {self.mode!r})")

    @property
    def name(self) -> str:
        return f"{PITCH_NAMES[self.tonic_pc]} {self.mode}"


@dataclass(frozen=True)
class TimeSignature:
    numerator: int = 4
    denominator: int = 4

    def __post_init__(self) -> None:
        if not 1 <= self.numerator <= 64:
            raise ValueError(f"time-signature numerator must be within 1 and 64 (received {self.numerator})")
        if self.denominator not in ALLOWED_DENOMINATORS:
            raise ValueError(
                f"time-signature denominator must be one of {ALLOWED_DENOMINATORS} (received {self.denominator})"
            )

    @property
    def bar_beats(self) -> float:
        """Length of one bar in quarter-note beats (6/8 → 3.0)."""
        return self.numerator * 4 / self.denominator

    @property
    def beat_beats(self) -> float:
        """The felt beat in quarter-note beats: a dotted quarter in compound meters (6/8, 9/8, 12/8 → 1.5), else the
        denominator's note (3/4 → 1.0, 2/2 → 2.0)."""
        if self.denominator == 8 and self.numerator % 3 == 0 and self.numerator > 3:
            return 1.5
        return 4 / self.denominator

    def __str__(self) -> str:
        return f"{self.numerator}/{self.denominator}"


@dataclass(frozen=True)
class Piece:
    """A piece of music: parts plus the global tempo, meter and key.

    `pickup_beats` is the length of an incomplete first bar (anacrusis); bar lines fall at
    `pickup_beats + k * bar_beats` (and at 0). Tempo and meter are the piece's first ones: the app works with
    melodies, and later changes are not modelled.
    """

    parts: tuple[Part, ...]
    tempo_bpm: float = 120.0
    time_signature: TimeSignature = field(default_factory=TimeSignature)
    key: Key | None = None
    title: str = ""
    pickup_beats: float = 0.0

    def __post_init__(self) -> None:
        _coerce(self, tempo_bpm=float, pickup_beats=float, title=str)
        if not (math.isfinite(self.tempo_bpm) and 10 <= self.tempo_bpm <= 400):
            raise ValueError(f"tempo_bpm must be within 10 and 400 (received {self.tempo_bpm})")
        if not 0 <= self.pickup_beats < self.time_signature.bar_beats:
            raise ValueError(
                f"pickup_beats must be within 0 and one bar ({self.time_signature.bar_beats}) "
                f"(received {self.pickup_beats})"
            )
        object.__setattr__(self, "parts", tuple(self.parts))

    @property
    def end_beats(self) -> float:
        return max((p.end_beats for p in self.parts), default=0.0)

    @property
    def note_count(self) -> int:
        return sum(len(p.notes) for p in self.parts)

    @property
    def seconds_per_beat(self) -> float:
        return 60.0 / self.tempo_bpm

    @property
    def duration_seconds(self) -> float:
        return self.end_beats * self.seconds_per_beat

    def bar_lines_beats(self) -> list[float]:
        """Bar-line positions (beats) from 0 up to and including the end of the last bar that holds a note."""
        bar = self.time_signature.bar_beats
        first = self.pickup_beats if self.pickup_beats > 0 else bar
        end = self.end_beats
        lines = [0.0]
        position = first
        while position < end - 1e-9:
            lines.append(position)
            position += bar
        lines.append(position)
        return lines

    def bar_count(self) -> int:
        """Number of bars (a pickup counts as one) covering every note."""
        return len(self.bar_lines_beats()) - 1

    def shifted(self, delta_beats: float) -> Piece:
        """The same music moved in time by `delta_beats` (negative: earlier); notes must stay at >= 0.

        Bar lines move with the notes: the pickup becomes `(pickup_beats + delta_beats) mod bar length`.
        """
        parts = [
            replace(p, notes=tuple(replace(n, start_beats=n.start_beats + delta_beats) for n in p.notes))
            for p in self.parts
        ]
        pickup = (self.pickup_beats + delta_beats) % self.time_signature.bar_beats
        return replace(self, parts=tuple(parts), pickup_beats=pickup)

    def with_parts(self, parts: tuple[Part, ...] | list[Part]) -> Piece:
        return replace(self, parts=tuple(parts))

    def only_part(self, index: int) -> Piece:
        """This piece reduced to one of its parts (e.g. the melody track the user picked)."""
        if not 0 <= index < len(self.parts):
            raise IndexError(f"part index must be within 0 and {len(self.parts) - 1} (received {index})")
        return self.with_parts((self.parts[index],))


# ---------------------------------------------------------------------------------------------------------------
# Plain data (JSON) form of a `Piece`: how a worker process hands a parsed piece back without pickle.


def piece_to_dict(piece: Piece) -> dict[str, Any]:
    """`piece` as JSON-ready plain data; `piece_from_dict` reads it back exactly (JSON keeps every float as is).

    Notes are `[pitch, start_beats, duration_beats, velocity]` lists, in the part's order.
    """
    return {
        "title": piece.title,
        "tempo_bpm": piece.tempo_bpm,
        "time_signature": [piece.time_signature.numerator, piece.time_signature.denominator],
        "key": None if piece.key is None else [piece.key.tonic_pc, piece.key.mode],
        "pickup_beats": piece.pickup_beats,
        "parts": [
            {
                "name": part.name,
                "program": part.program,
                "is_drum": part.is_drum,
                "notes": [[n.pitch, n.start_beats, n.duration_beats, n.velocity] for n in part.notes],
            }
            for part in piece.parts
        ],
    }


def piece_from_dict(data: object) -> Piece:
    """The `Piece` written by `piece_to_dict`, read strictly: exactly its keys, JSON types that match (no string
    for a number, no float for an int, no bool for either), and every value checked by the dataclasses.

    Raises:
        ValueError: anything else (the data may come from a process that cannot be trusted).
    """
    fields = _record(data, ("title", "tempo_bpm", "time_signature", "key", "pickup_beats", "parts"))
    numerator, denominator = _items(fields["time_signature"], 2)
    key = None if fields["key"] is None else _items(fields["key"], 2)
    return Piece(
        parts=tuple(_part_from_dict(part) for part in _items(fields["parts"])),
        tempo_bpm=_typed(fields["tempo_bpm"], float),
        time_signature=TimeSignature(_typed(numerator, int), _typed(denominator, int)),
        key=None if key is None else Key(_typed(key[0], int), _typed(key[1], str)),
        title=_typed(fields["title"], str),
        pickup_beats=_typed(fields["pickup_beats"], float),
    )


def _part_from_dict(data: object) -> Part:
    fields = _record(data, ("name", "program", "is_drum", "notes"))
    notes = []
    for note in _items(fields["notes"]):
        pitch, start, duration, velocity = _items(note, 4)
        notes.append(Note(_typed(pitch, int), _typed(start, float), _typed(duration, float), _typed(velocity, int)))
    return Part(
        name=_typed(fields["name"], str),
        notes=tuple(notes),
        program=_typed(fields["program"], int),
        is_drum=_typed(fields["is_drum"], bool),
    )


def _record(data: object, keys: tuple[str, ...]) -> dict[str, object]:
    if not isinstance(data, dict) or set(data) != set(keys):
        raise ValueError(f"expected an object with the keys {', '.join(keys)}")
    return data


def _items(data: object, length: int | None = None) -> list[object]:
    if not isinstance(data, list) or (length is not None and len(data) != length):
        raise ValueError(f"expected a list{'' if length is None else f' of {length} items'}")
    return data


def _typed(value: object, kind: type) -> Any:
    """`value` when it is of JSON type `kind` (a float may be written as an int: 120 for 120.0)."""
    allowed = (int, float) if kind is float else (kind,)
    if type(value) not in allowed:
        raise ValueError(f"expected {kind.__name__}, received {type(value).__name__}")
    return value
