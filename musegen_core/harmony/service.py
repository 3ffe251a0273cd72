"""Harmonize and infill a user's melody — what the Harmonize page and `musegen harmonize` do, without either.

Two idioms (`IDIOMS`): **bach** — the shipped Coconet-style harmonizer (`models/harmonizer.py`) writes alto, tenor
and bass under the melody, which stays the soprano note for note; **folk** — a rule-based chord-and-bass backing
(`harmony/accompaniment.py`). **Infill** regenerates chosen bars with the harmonizer, which reads both sides of
them: of a four-part piece (every voice in the span), or of a one-part melody (the melody is harmonized, the span
rewritten in all four voices, and the melody's new notes kept). Every note outside the span stays the very same
`Note`.
"""

from __future__ import annotations

import re
from dataclasses import replace

from musegen_core.errors import ControlError
from musegen_core.harmony.accompaniment import accompany
from musegen_core.models.harmonizer import VOICES, harmonize, infill, shipped_harmonizer
from musegen_core.music import Piece

IDIOMS = {
    "bach": "Bach chorale: four voices (soprano = your melody, alto, tenor, bass) by the harmonizer model",
    "folk": "Folk backing: chords and bass by rules of harmony, one or two chords a bar",
}


def harmonize_melody(melody: Piece, idiom: str = "bach", *, seed: int = 0, part_index: int = 0) -> Piece:
    """The melody (part `part_index`) with its accompaniment in `idiom` ("bach" or "folk"); the melody's notes
    are kept exactly. Raises `ControlError` for an unknown idiom, a missing or empty part, or a melody too long."""
    if idiom not in IDIOMS:
        raise ControlError(f"the harmony style must be one of {sorted(IDIOMS)} (received {idiom!r})")
    if idiom == "folk":
        return accompany(melody, part_index=part_index)
    return harmonize(shipped_harmonizer(), melody, seed=seed, part_index=part_index)


def regenerate_bars(piece: Piece, first_bar: int, last_bar: int, *, seed: int = 0) -> Piece:
    """`piece` with bars `first_bar`..`last_bar` (1-based, inclusive) written anew by the harmonizer, everything
    else unchanged: a four-part piece in every voice, a one-part melody in its melody (see the module docstring).
    Raises `ControlError` for other part counts or bars outside the piece."""
    model = shipped_harmonizer()
    if len(piece.parts) == len(VOICES):
        return infill(model, piece, first_bar, last_bar, seed=seed)
    if len(piece.parts) != 1:
        raise ControlError(
            f"bars can be regenerated in a melody (one part) or a four-part harmonization; this piece has "
            f"{len(piece.parts)} parts — regenerate before adding a folk backing, or use the Bach style"
        )
    voices = infill(model, harmonize(model, piece, seed=seed), first_bar, last_bar, seed=seed)
    return piece.with_parts((replace(piece.parts[0], notes=voices.parts[0].notes),))


def parse_bar_range(text: str) -> tuple[int, int]:
    """ "5-8" → (5, 8); "5" → (5, 5). Raises `ControlError` with the expected form otherwise."""
    match = re.fullmatch(r"\s*(\d{1,4})\s*(?:[-–]\s*(\d{1,4})\s*)?", text or "")
    if not match:
        raise ControlError(f"bars to regenerate must look like 5-8 or 5 (received {text!r})")
    first = int(match[1])
    last = int(match[2]) if match[2] else first
    if not 1 <= first <= last:
        raise ControlError(f"bars to regenerate count from 1, first ≤ last, like 5-8 (received {text!r})")
    return first, last
