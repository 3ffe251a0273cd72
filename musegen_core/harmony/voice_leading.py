"""Voice-leading statistics of four-part writing, and Bach's own chorales (JSB) to compare them with.

`voice_leading_stats(piece)` reads the parts of a `Piece` as voices from top to bottom (soprano, alto, tenor, bass
for SATB; any number from two works) and measures:

- **parallel_fifths / parallel_octaves** (and `_per_bar`): consecutive perfect fifths, or octaves-or-unisons,
  between the same two voices (any pair, not only neighbours) from one sonority to the next, both voices moving in
  the same direction. Compound intervals count (a fifth to a twelfth, an octave to a double octave); a unison to an
  octave does not, nor do voices on opposite sides of each other, nor both voices leaping by octaves (the same two
  pitch classes: no change of harmony). Contrary motion never counts. Sonorities are the 16th-grid rows at which
  anything changes (a new pitch or a rest in any voice), so passing notes count too; a voice resting in either
  sonority is left out of that move. Per bar = count / `Piece.bar_count()` (a pickup counts as a bar).
- **voice_crossings**: share of sounding 16th steps (at least one pair of neighbouring voices both sounding) where
  a lower voice is strictly above the next higher one.
- **spacing_violations**: share of such steps where a pair of neighbouring upper voices (S–A or A–T in SATB) is more
  than an octave apart; the lowest pair (T–B) may be any distance apart.
- **diatonic_beat_share**: share of the beats that hold a sounding note whose sounding pitch classes (every note
  overlapping the beat, passing notes included) all lie in the key's scale. Beats are the meter's felt beats
  (quarters in 4/4, dotted quarters in 6/8) counted from the bar lines. The key is the piece's `Key`, else
  `controls.key_of`'s Krumhansl–Kessler estimate. In minor the scale is the natural minor plus the raised sixth and
  seventh (nine pitch classes), as common-practice harmony uses them.

The grid: a voice sounds at 16th step k when one of its notes covers the time k/4 beats; a part holding several
notes at once gives its highest. Notes shorter than a 16th that cover no grid point are not seen.

Why not music21's `voiceLeading.VoiceLeadingQuartet`: it counts antiparallel motion (a fifth to a twelfth in
contrary motion) as parallel, which this measure must not, and building its spelled `Interval` objects for every
pair at every chord change of 77 chorales takes seconds; MIDI pitches carry no spelling, so here a perfect fifth
is 7 semitones (mod 12) and numpy counts everything at once.

`jsb_chorale_pieces(split)` reads the JSB chorales (Boulanger-Lewandowski et al. 2012 split, 16th-note steps) as
four-part pieces. The file is `$MUSEGEN_JSB_PATH`, else `<repo>/../shared/datasets/jsb-chorales/Jsb16thSeparated.json`.
"""

from __future__ import annotations

import itertools
import json
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from musegen_core.controls import key_of
from musegen_core.music import Key, Note, Part, Piece

STEPS_PER_BEAT = 4  # the 16th-note grid
REST = -1
PERFECT_FIFTH = 7
OCTAVE = 12
MAJOR_SCALE = frozenset({0, 2, 4, 5, 7, 9, 11})
MINOR_SCALE = frozenset({0, 2, 3, 5, 7, 8, 9, 10, 11})  # natural minor + raised 6th and 7th
STAT_NAMES = (
    "bars",
    "parallel_fifths",
    "parallel_octaves",
    "parallel_fifths_per_bar",
    "parallel_octaves_per_bar",
    "voice_crossings",
    "spacing_violations",
    "diatonic_beat_share",
)

JSB_PATH_ENV = "MUSEGEN_JSB_PATH"
DEFAULT_JSB_PATH = (
    Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "jsb-chorales" / "Jsb16thSeparated.json"
)
JSB_SPLITS = ("train", "valid", "test")
JSB_VOICES = ("Soprano", "Alto", "Tenor", "Bass")
JSB_TEMPO_BPM = 100.0

_EPS = 1e-6


def voice_leading_stats(piece: Piece) -> dict[str, float]:
    """The statistics of `STAT_NAMES` for `piece`'s parts read as voices from top to bottom (see the module doc).

    Raises:
        ValueError: fewer than two parts.
    """
    if len(piece.parts) < 2:
        raise ValueError(f"voice-leading statistics need at least two parts (received {len(piece.parts)})")
    grid = voice_grid(piece)
    sonorities = chord_changes(grid)
    bars = piece.bar_count()
    fifths = parallel_count(sonorities, PERFECT_FIFTH)
    octaves = parallel_count(sonorities, 0)
    return {
        "bars": float(bars),
        "parallel_fifths": float(fifths),
        "parallel_octaves": float(octaves),
        "parallel_fifths_per_bar": fifths / bars,
        "parallel_octaves_per_bar": octaves / bars,
        "voice_crossings": crossing_share(grid),
        "spacing_violations": spacing_share(grid),
        "diatonic_beat_share": diatonic_beat_share(piece),
    }


def average_stats(pieces: Iterable[Piece]) -> dict[str, float]:
    """The mean of each statistic over the pieces, every piece weighing the same (not pooled by bars).

    Raises:
        ValueError: no pieces.
    """
    rows = [voice_leading_stats(piece) for piece in pieces]
    if not rows:
        raise ValueError("average_stats needs at least one piece")
    return {name: float(np.mean([row[name] for row in rows])) for name in STAT_NAMES}


def voice_grid(piece: Piece) -> np.ndarray:
    """(16th steps, parts) int array: the MIDI pitch each part sounds at the start of each step, `REST` for none."""
    steps = max(0, math.ceil(piece.end_beats * STEPS_PER_BEAT - _EPS))
    grid = np.full((steps, len(piece.parts)), REST, dtype=np.int64)
    for column, part in enumerate(piece.parts):
        for note in part.notes:
            first = math.ceil(note.start_beats * STEPS_PER_BEAT - _EPS)
            stop = math.ceil(note.end_beats * STEPS_PER_BEAT - _EPS)
            grid[first:stop, column] = np.maximum(grid[first:stop, column], note.pitch)
    return grid


def chord_changes(grid: np.ndarray) -> np.ndarray:
    """The rows of `grid` that differ from the row before (the first row included): one per sonority."""
    changed = np.ones(len(grid), dtype=bool)
    changed[1:] = (grid[1:] != grid[:-1]).any(axis=1)
    return grid[changed]


def parallel_count(sonorities: np.ndarray, interval: int) -> int:
    """Moves from one sonority (row) to the next where two voices (columns, top first) both sound, move in the same
    direction to new pitch classes, and stand `interval` semitones apart (mod 12) on the same side of each other
    before and after: `PERFECT_FIFTH` for consecutive fifths, 0 for octaves or unisons."""
    before, after = sonorities[:-1], sonorities[1:]
    count = 0
    for upper, lower in itertools.combinations(range(sonorities.shape[1]), 2):
        pair = [upper, lower]
        sounding = (before[:, pair] != REST).all(axis=1) & (after[:, pair] != REST).all(axis=1)
        upper_move = after[:, upper] - before[:, upper]
        lower_move = after[:, lower] - before[:, lower]
        similar = (np.sign(upper_move) == np.sign(lower_move)) & (upper_move % OCTAVE != 0)
        gap_before = before[:, upper] - before[:, lower]
        gap_after = after[:, upper] - after[:, lower]
        same_interval = (
            (np.sign(gap_before) == np.sign(gap_after))
            & (np.abs(gap_before) % OCTAVE == interval)
            & (np.abs(gap_after) % OCTAVE == interval)
        )
        count += int((sounding & similar & same_interval).sum())
    return count


def crossing_share(grid: np.ndarray) -> float:
    """Share of steps with a pair of neighbouring voices sounding where the lower one is above the higher one."""
    upper, lower = grid[:, :-1], grid[:, 1:]
    sounding = (upper != REST) & (lower != REST)
    return _share((sounding & (lower > upper)).any(axis=1), sounding.any(axis=1))


def spacing_share(grid: np.ndarray) -> float:
    """Share of steps with a pair of neighbouring upper voices sounding (all pairs but the lowest) where the two
    are more than an octave apart."""
    upper, lower = grid[:, :-2], grid[:, 1:-1]
    sounding = (upper != REST) & (lower != REST)
    return _share((sounding & (upper - lower > OCTAVE)).any(axis=1), sounding.any(axis=1))


def diatonic_beat_share(piece: Piece, key: Key | None = None) -> float:
    """Share of the beats holding a note whose notes all lie in the scale of `key` (default: the piece's key, else
    the estimated one); 0.0 without notes."""
    key = key or key_of(piece)
    scale = diatonic_scale(key)
    notes = [note for part in piece.parts if not part.is_drum for note in part.notes]
    edges = beat_edges(piece)
    sounding = _covered_windows(edges, notes)
    chromatic = _covered_windows(edges, [n for n in notes if (n.pitch - key.tonic_pc) % 12 not in scale])
    return _share(sounding & ~chromatic, sounding)


def diatonic_scale(key: Key) -> frozenset[int]:
    """Semitones above the tonic that are diatonic in `key` (`MAJOR_SCALE` or `MINOR_SCALE`)."""
    return MINOR_SCALE if key.mode == "minor" else MAJOR_SCALE


def beat_edges(piece: Piece) -> np.ndarray:
    """Beat boundaries in beats, from 0 to the piece's end: the meter's felt beats counted from the bar lines (a
    pickup that is not a whole number of beats starts with a partial beat), and the end."""
    beat = piece.time_signature.beat_beats
    inner = np.arange(piece.pickup_beats % beat, piece.end_beats - _EPS, beat)
    return np.unique(np.concatenate(([0.0], inner, [piece.end_beats])))


def _covered_windows(edges: np.ndarray, notes: Sequence[Note]) -> np.ndarray:
    """(len(edges) - 1,) bool: which windows [edges[k], edges[k + 1]) some note overlaps."""
    windows = max(0, len(edges) - 1)
    starts = np.searchsorted(edges, [n.start_beats + _EPS for n in notes], side="right") - 1
    stops = np.searchsorted(edges, [n.end_beats - _EPS for n in notes], side="left")
    depth = np.zeros(windows + 1, dtype=np.int64)
    np.add.at(depth, starts, 1)
    np.add.at(depth, stops, -1)
    return np.cumsum(depth)[:windows] > 0


def _share(hits: np.ndarray, of: np.ndarray) -> float:
    """`hits.sum() / of.sum()` for boolean arrays (`hits` a subset of `of`); 0.0 when `of` has none."""
    total = int(of.sum())
    return int(hits.sum()) / total if total else 0.0


def jsb_path() -> Path:
    """Where the JSB chorales JSON is read from: `$MUSEGEN_JSB_PATH`, else `DEFAULT_JSB_PATH`."""
    return Path(os.environ.get(JSB_PATH_ENV) or DEFAULT_JSB_PATH)


def jsb_chorale_pieces(split: str, path: str | Path | None = None) -> list[Piece]:
    """The chorales of one split ("train", "valid" or "test") of `Jsb16thSeparated.json` (default: `jsb_path()`) as
    four-part pieces: Soprano, Alto, Tenor, Bass; 4/4 without a pickup (the dataset does not mark one), tempo 100, no
    key. A run of equal pitches in a voice becomes one note: the dataset cannot tell a held note from a repeated one.
    Rests are NaN in the dataset's description and -1 in the shared copy; both are read as rests.

    Raises:
        ValueError: an unknown split.
        OSError: the file cannot be read.
    """
    if split not in JSB_SPLITS:
        raise ValueError(f"split must be one of {JSB_SPLITS} (received {split!r})")
    data = json.loads(Path(path or jsb_path()).read_text())
    return [_chorale_piece(steps, f"JSB {split} {index}") for index, steps in enumerate(data[split])]


def _chorale_piece(steps: list[list[float]], title: str) -> Piece:
    grid = np.array(steps, dtype=np.float64)  # (16th steps, 4 voices); a rest is NaN (as documented) or -1 (as found)
    parts = tuple(Part(name, _voice_notes(grid[:, voice])) for voice, name in enumerate(JSB_VOICES))
    return Piece(parts, tempo_bpm=JSB_TEMPO_BPM, title=title)


def _voice_notes(column: np.ndarray) -> tuple[Note, ...]:
    """One voice's 16th steps as notes: each run of one pitch is a note, NaN or negative steps are rests."""
    notes, step = [], 0
    for pitch, run in itertools.groupby(int(value) if value >= 0 else None for value in column):
        length = len(list(run))
        if pitch is not None:
            notes.append(Note(pitch, step / STEPS_PER_BEAT, length / STEPS_PER_BEAT))
        step += length
    return tuple(notes)
