"""Originality: the longest run of a melody copied from the training corpus, transposition-invariant.

A melody is read as notes with pitches `p_0..p_{n−1}` and inter-onset intervals `t_k = onset_{k+1} − onset_k`
(sixteenth steps; the last note's runs to the melody's end, so rests fold into the note before them). Note `k ≥ 1`
becomes the symbol `(p_k − p_{k−1}, t_{k−1}, t_k)`. A run of `m` consecutive symbols found in one training tune
therefore means `m + 1` consecutive notes copied up to one transposition and one time shift: every interval between
them and every one of their inter-onset intervals, including the last note's, is the same.

- **copied notes** of a run: its note count;
- **copied bars** of a run: its time span `Σ t_k` over its notes divided by `bar_steps` of the melody's meter — e.g.
  in 4/4, eight quarter notes from a downbeat, followed by an onset on the downbeat two bars later, span 2.0 bars;
- a melody **copies ≥ 2 bars** when some run spans ≥ 2 bars.

Runs shorter than `GRAM + 1` notes are not looked up (they are everywhere in folk music): the index hashes every
`GRAM`-symbol n-gram of every training tune once (64-bit polynomial hash; a false match has odds ~1e−9 per melody),
and a longer run is a chain of n-grams matching at the same offset — a diagonal of the melody × corpus match matrix.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from musegen_core.evaluation.features import notes_of

GRAM = 4  # symbols per hashed n-gram: runs of fewer than GRAM + 1 notes count as no copy
MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)  # odd 64-bit constant of the polynomial hash (arithmetic mod 2**64)
COPY_BARS = 2.0  # a melody "copies" when a run spans at least this many bars
LONG_COPY_BARS = 4.0  # also reported: runs of a whole 4-bar phrase or more


@dataclass(frozen=True)
class CopyReport:
    """The longest copied runs of one melody (0 when none of ≥ GRAM + 1 notes is found)."""

    notes: int  # notes of the run with the most notes
    bars: float  # span in bars of the run with the longest span

    @property
    def copies(self) -> bool:
        """True when a run spans at least `COPY_BARS` bars."""
        return self.bars >= COPY_BARS


def symbols_of(tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symbol codes of notes 1..n−1 (int64, see the module docstring) and the inter-onset intervals of notes
    0..n−1 (steps), of one token sequence."""
    notes = notes_of(tokens)
    iois = np.diff(np.append(notes.onsets, len(tokens)))
    intervals = np.diff(notes.pitches)
    capped = np.minimum(iois, 8191)  # 13 bits each; longer gaps compare as equal
    codes = ((intervals + 128) << 26) | (capped[:-1] << 13) | capped[1:]
    return codes.astype(np.int64), iois


def gram_hashes(codes: np.ndarray) -> np.ndarray:
    """64-bit hash of every window of `GRAM` consecutive codes: `Σ_j code_{i+j} · M^(GRAM−1−j)` mod 2**64."""
    count = len(codes) - GRAM + 1
    if count <= 0:
        return np.zeros(0, dtype=np.uint64)
    words = codes.astype(np.uint64)
    hashes = np.zeros(count, dtype=np.uint64)
    for offset in range(GRAM):
        hashes = hashes * MULTIPLIER + words[offset : offset + count]
    return hashes


class CopyIndex:
    """Every `GRAM`-symbol n-gram of a training corpus, sorted by hash, with where it starts."""

    def __init__(self, tunes: list[np.ndarray]) -> None:
        """Hash the n-grams of each tune's tokens. Positions count symbols over all tunes, with a gap of `GRAM`
        between tunes, so no chain of n-grams runs from one tune into the next."""
        hashes, positions, start = [], [], 0
        for tokens in tunes:
            codes, _ = symbols_of(tokens)
            grams = gram_hashes(codes)
            hashes.append(grams)
            positions.append(start + np.arange(len(grams), dtype=np.int64))
            start += len(codes) + GRAM
        hashes_all = np.concatenate(hashes) if hashes else np.zeros(0, np.uint64)
        order = np.argsort(hashes_all, kind="stable")
        self.hashes = hashes_all[order]
        self.positions = (np.concatenate(positions) if positions else np.zeros(0, np.int64))[order]

    def __len__(self) -> int:
        return len(self.hashes)

    def report(self, tokens: np.ndarray, bar_steps: int) -> CopyReport:
        """The longest copied runs of one melody whose bars are `bar_steps` sixteenth steps long."""
        codes, iois = symbols_of(np.asarray(tokens, dtype=np.int64))
        starts, grams = self._runs(gram_hashes(codes))
        if len(starts) == 0:
            return CopyReport(0, 0.0)
        elapsed = np.concatenate([[0], np.cumsum(iois)])  # elapsed[k]: steps from note 0's onset to note k's
        notes = grams + GRAM  # a run of r n-grams starting at symbol j covers notes j .. j + r + GRAM − 1
        spans = elapsed[starts + notes] - elapsed[starts]
        return CopyReport(int(notes.max()), float(spans.max() / bar_steps))

    def _runs(self, hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Maximal chains of matching n-grams: (first symbol index in the melody, n-grams in the chain) each."""
        low = np.searchsorted(self.hashes, hashes, side="left")
        counts = np.searchsorted(self.hashes, hashes, side="right") - low
        total = int(counts.sum())
        if total == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        melody = np.repeat(np.arange(len(hashes)), counts)  # one row per (melody n-gram, corpus n-gram) match
        first_row = np.cumsum(counts) - counts
        corpus = self.positions[np.repeat(low - first_row, counts) + np.arange(total)]
        diagonal = corpus - melody
        order = np.lexsort((melody, diagonal))
        melody, diagonal = melody[order], diagonal[order]
        new_run = np.ones(total, dtype=bool)
        new_run[1:] = (diagonal[1:] != diagonal[:-1]) | (melody[1:] != melody[:-1] + 1)
        run_starts = np.flatnonzero(new_run)
        return melody[run_starts], np.diff(np.append(run_starts, total))


def summarise(reports: list[CopyReport]) -> dict:
    """Share of melodies copying ≥ `COPY_BARS` (and ≥ `LONG_COPY_BARS`) bars, and the longest copies (max and median
    over melodies)."""
    notes = np.array([r.notes for r in reports], dtype=np.float64)
    bars = np.array([r.bars for r in reports], dtype=np.float64)
    return {
        "copy_rate_2bars": float(np.mean(bars >= COPY_BARS)) if reports else float("nan"),
        "copy_rate_4bars": float(np.mean(bars >= LONG_COPY_BARS)) if reports else float("nan"),
        "longest_copy_notes": int(notes.max()) if reports else 0,
        "longest_copy_bars": round(float(bars.max()), 3) if reports else 0.0,
        "median_copy_notes": float(np.median(notes)) if reports else 0.0,
    }
