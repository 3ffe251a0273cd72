"""Key signatures and pitch spelling for the writers: which sharps or flats a `Key` has, and how a MIDI pitch is
named in it ("F#" in D major, "Gb" in Db major).

A key is written with the fewest accidentals (Db major rather than C# major; F# major and Eb minor, six each, as
mido names them). A pitch in the key's scale takes the scale's letter (B in Gb major is Cb); in a minor key the
raised sixth and seventh degrees are the scale's letters raised (C# in D minor, F## in G# minor); any other pitch
is a natural letter where one fits, else a sharp in sharp keys (and C major), a flat in flat keys.
"""

from __future__ import annotations

from typing import NamedTuple

from musegen_core.music import Key

# Fifths (sharps > 0, flats < 0) of the signature per tonic pitch class (0 = C).
_MAJOR_FIFTHS = (0, -5, 2, -3, 4, -1, 6, 1, -4, 3, -2, 5)
_MINOR_FIFTHS = (-3, 4, -1, -6, 1, -4, 3, -2, 5, 0, -5, 2)
_SHARP_ORDER = "FCGDAEB"  # the order sharps are added; flats go the other way
_NATURAL_PC = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
_ACCIDENTALS = {-2: "bb", -1: "b", 0: "", 1: "#", 2: "##"}
_RAISED_MINOR_DEGREES = (9, 11)  # semitones above the tonic: melodic minor's sixth and seventh


class Spelling(NamedTuple):
    """A written pitch: letter "C"–"B", alteration in semitones (-1 flat, +1 sharp, ±2 double) and octave (C4 = 60)."""

    letter: str
    alter: int
    octave: int

    @property
    def name(self) -> str:
        """Scientific name with "#"/"b": "F#4", "Cb5"."""
        return f"{self.letter}{_ACCIDENTALS[self.alter]}{self.octave}"


def key_fifths(key: Key | None) -> int:
    """Sharps (> 0) or flats (< 0) in the signature of `key`; 0 for no key."""
    if key is None:
        return 0
    return (_MINOR_FIFTHS if key.mode == "minor" else _MAJOR_FIFTHS)[key.tonic_pc]


def key_name(key: Key) -> str:
    """The key as mido and ABC name it: "Db", "F#", "Ebm", "C#m"."""
    tonic = spell(60 + key.tonic_pc, key)
    return f"{tonic.letter}{_ACCIDENTALS[tonic.alter]}{'m' if key.mode == 'minor' else ''}"


def signature_alters(fifths: int) -> dict[str, int]:
    """Letter → alteration the key signature gives it (D major: F and C +1, the others 0)."""
    sharps = _SHARP_ORDER[:fifths] if fifths > 0 else ""
    flats = _SHARP_ORDER[::-1][:-fifths] if fifths < 0 else ""
    return {letter: (letter in sharps) - (letter in flats) for letter in _NATURAL_PC}


def spell(pitch: int, key: Key | None) -> Spelling:
    """How MIDI `pitch` is written in `key` (no key: as in C major)."""
    fifths = key_fifths(key)
    pitch_class = pitch % 12
    in_key = _scale_letter(pitch, fifths)
    raised = key is not None and key.mode == "minor" and (pitch_class - key.tonic_pc) % 12 in _RAISED_MINOR_DEGREES
    below = _scale_letter(pitch - 1, fifths) if raised else None  # the degree a semitone below, to be raised
    naturals = [letter for letter, natural in _NATURAL_PC.items() if natural == pitch_class]
    if in_key is not None:
        letter, alter = in_key
    elif below is not None:
        letter, alter = below[0], below[1] + 1
    elif naturals:
        letter, alter = naturals[0], 0
    else:
        alter = 1 if fifths >= 0 else -1
        letter = next(name for name, natural in _NATURAL_PC.items() if natural == (pitch_class - alter) % 12)
    return Spelling(letter, alter, (pitch - alter) // 12 - 1)


def _scale_letter(pitch: int, fifths: int) -> tuple[str, int] | None:
    """(letter, alteration) of `pitch` in the scale of a key signature with `fifths`; None when it is not in it."""
    for letter, alter in signature_alters(fifths).items():
        if (_NATURAL_PC[letter] + alter) % 12 == pitch % 12:
            return letter, alter
    return None
