"""Near-duplicate tunes, found transposition-invariantly, so that they can be kept on one side of the split.

The same tune often appears more than once: O'Neill's and Ryan's collections share ~100 titles, Essen holds variants
of one song, Bach harmonised one chorale melody several times. An exact, transposition-invariant signature (see
`corpus.content_signature`) catches only identical copies; this module catches close variants too.

Method:

1. **Events.** A tune's tokens become one event per pair of consecutive note onsets: (pitch interval in semitones,
   onset gap relative to the tune's most common onset gap). Intervals make events transposition-invariant; relative
   gaps make them see rhythm (a rest lengthens a gap) yet match a reel written in 2/4 sixteenths (Ryan) with the same
   reel in 2/2 eighths (O'Neill). Pitches were folded into the model range by the encoding, which can add a rare
   spurious octave leap; it costs a few shingles, not the match.
2. **Shingles.** Each run of `NGRAM` consecutive events (`NGRAM` + 1 notes, about one bar of a reel) is hashed to
   one unsigned 64-bit integer; a tune is the *set* of its shingle hashes (repeats collapse, so a copy with its
   repeats written out still matches).
3. **Candidates, exactly.** Pairs whose Jaccard similarity |A ∩ B| / |A ∪ B| can reach `THRESHOLD` are found by
   prefix filtering (Bayardo et al. 2007, "Scaling up all pairs similarity search"): shingles are ordered rarest
   first; two sets with Jaccard ≥ t must share a shingle among the first |A| − ⌈t·|A|⌉ + 1 of each. Only those
   rare prefix shingles are indexed, so candidate pairs stay few and no qualifying pair is missed (unlike MinHash).
4. **Verification.** Each candidate pair's exact Jaccard is computed; pairs at or above `THRESHOLD` are joined by
   union–find into groups (transitively: A~B and B~C put A, B and C in one group).
5. **Split.** The caller gives every member of a group the split of the group's smallest content signature, so no
   near-duplicate pair straddles train/valid/test and a group's split does not depend on the order of tunes.

`THRESHOLD` = 0.3 was chosen by reading real pairs. Jaccard over 6-event shingles is strict: one changed note
removes up to 7 shingles from each set, so the same tune with an ornament or a variant note every bar or two scores
0.3–0.5. Of the 113 O'Neill × Ryan pairs sharing a title, 22 reach 0.5 and 37 reach 0.3; about half score < 0.1
and are different tunes under one name (common in folk music). Every sampled pair between 0.3 and 0.5, across all
collections, was one tune: variants ("Herr von Falkenstein" / "Ik sach minen her van Valkenstein"), aliases
("The Merry Blacksmith" / "Paddy on the Railroad"), the Ryan 2/4 vs O'Neill 2/2 notation of "Soldier's Joy";
between 0.2 and 0.3 most still were, with the first unrelated pairs. No giant groups form at 0.3 (the largest
holds about ten tunes), so the split stays near 80/10/10. `tests/test_dedupe.py` has hand-made cases.
Cost: about 1.5 s for ~11k tunes (numpy; one Python loop over tunes and one over candidate pairs).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from musegen_core import encoding

NGRAM = 6  # events (onset pairs) per shingle
THRESHOLD = 0.3  # Jaccard similarity of shingle sets at or above which two tunes are near-duplicates
_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)  # odd 64-bit constant for the polynomial shingle hash


@dataclass(frozen=True)
class NearDuplicates:
    """Result of `find_near_duplicates` over n tunes."""

    groups: np.ndarray  # int64, shape (n,): group id of each tune, the index of the group's first tune
    pairs: np.ndarray  # int64, shape (k, 2): verified near-duplicate pairs (i < j)
    similarity: np.ndarray  # float64, shape (k,): Jaccard similarity of each pair
    candidates: int  # candidate pairs verified

    def group_count(self) -> int:
        """Number of groups of two or more tunes."""
        _, sizes = np.unique(self.groups, return_counts=True)
        return int((sizes > 1).sum())

    def grouped_tunes(self) -> int:
        """Number of tunes that belong to a group of two or more."""
        _, inverse, sizes = np.unique(self.groups, return_inverse=True, return_counts=True)
        return int((sizes[inverse] > 1).sum())


def events(tokens: np.ndarray) -> np.ndarray:
    """One int64 code per pair of consecutive onsets, shape (onsets − 1,): the pitch interval (semitones, clipped to
    ±127) in the high byte, the onset gap relative to the tune's most common gap (in quarters of it, clipped to 255)
    in the low byte. Invariant to transposition and to doubling or halving all note values."""
    tokens = np.asarray(tokens)
    onsets = np.flatnonzero(tokens >= encoding.NOTE_ON)
    if len(onsets) < 2:
        return np.zeros(0, np.int64)
    intervals = np.clip(np.diff(tokens[onsets].astype(np.int64)), -127, 127) + 128
    gaps = np.diff(onsets)
    values, counts = np.unique(gaps, return_counts=True)
    unit = values[np.argmax(counts)]  # most common gap in steps (the smallest such, on a tie)
    return (intervals << 8) | np.clip(np.rint(gaps * 4 / unit), 0, 255).astype(np.int64)


def shingles(tokens: np.ndarray, n: int = NGRAM) -> np.ndarray:
    """Sorted unique uint64 hashes of the runs of `n` consecutive events; empty when the tune has ≤ n notes."""
    codes = events(tokens).astype(np.uint64)
    count = len(codes) - n + 1
    if count <= 0:
        return np.zeros(0, np.uint64)
    hashes = np.zeros(count, np.uint64)
    with np.errstate(over="ignore"):  # wrap-around is the hash
        for k in range(n):
            hashes = hashes * _MULTIPLIER + codes[k : k + count] + np.uint64(1)
        hashes ^= hashes >> np.uint64(29)
    return np.unique(hashes)


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Jaccard similarity of two sorted unique arrays (0.0 when both are empty)."""
    shared = len(np.intersect1d(a, b, assume_unique=True))
    union = len(a) + len(b) - shared
    return shared / union if union else 0.0


def find_near_duplicates(
    token_lists: Sequence[np.ndarray], threshold: float = THRESHOLD, n: int = NGRAM
) -> NearDuplicates:
    """Group tunes whose shingle sets have Jaccard similarity ≥ `threshold` (transitively).

    Args:
        token_lists: the tokens of each tune (`musegen_core.encoding`).
        threshold: Jaccard similarity in (0, 1].
        n: events per shingle.
    """
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be within (0, 1] (received {threshold})")
    sets = [shingles(tokens, n) for tokens in token_lists]
    candidates = candidate_pairs(sets, threshold)
    similarity = np.array([jaccard(sets[i], sets[j]) for i, j in candidates], dtype=np.float64)
    keep = similarity >= threshold
    pairs, similarity = candidates[keep], similarity[keep]
    return NearDuplicates(union_groups(len(sets), pairs), pairs, similarity, len(candidates))


def candidate_pairs(sets: Sequence[np.ndarray], threshold: float) -> np.ndarray:
    """Pairs (i < j), int64 shape (k, 2), that share a shingle in their prefix filters (see the module docstring)."""
    sizes = np.array([len(s) for s in sets], dtype=np.int64)
    if sizes.sum() == 0:
        return np.zeros((0, 2), np.int64)
    owner = np.repeat(np.arange(len(sets)), sizes)
    values, shingle_ids, frequency = np.unique(np.concatenate(sets), return_inverse=True, return_counts=True)
    rank = np.argsort(np.lexsort((values, frequency)))[shingle_ids]  # global order: rarest first, ties by hash
    order = np.lexsort((rank, owner))  # per tune, its shingles rarest first
    owner, rank = owner[order], rank[order]
    position = np.arange(len(owner)) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    prefix = sizes - np.ceil(threshold * sizes - 1e-9).astype(np.int64) + 1
    kept = position < prefix[owner]
    return _pairs_sharing(owner[kept], rank[kept], sizes, threshold)


def _pairs_sharing(owner: np.ndarray, rank: np.ndarray, sizes: np.ndarray, threshold: float) -> np.ndarray:
    """Pairs of owners sharing a rank, size-filtered (Jaccard ≥ t needs t·|A| ≤ |B|), unique, int64 (k, 2)."""
    order = np.lexsort((owner, rank))
    owner, rank = owner[order], rank[order]
    starts = np.flatnonzero(np.r_[True, rank[1:] != rank[:-1]])
    ends = np.r_[starts[1:], len(rank)]
    found = [
        np.stack(np.triu_indices(end - start, 1), axis=1) + start
        for start, end in zip(starts, ends, strict=True)
        if end - start > 1
    ]
    if not found:
        return np.zeros((0, 2), np.int64)
    pairs = np.unique(owner[np.concatenate(found)], axis=0)
    small, large = (
        np.minimum(sizes[pairs[:, 0]], sizes[pairs[:, 1]]),
        np.maximum(sizes[pairs[:, 0]], sizes[pairs[:, 1]]),
    )
    return pairs[small >= threshold * large - 1e-9].astype(np.int64)


def union_groups(count: int, pairs: np.ndarray) -> np.ndarray:
    """Union–find over `count` items joined by `pairs`; each item's group id is the smallest index in its group."""
    parent = np.arange(count)

    def find(item: int) -> int:
        while parent[item] != item:
            parent[item] = parent[parent[item]]  # path halving
            item = parent[item]
        return item

    for i, j in pairs:
        root_i, root_j = find(int(i)), find(int(j))
        if root_i != root_j:
            parent[max(root_i, root_j)] = min(root_i, root_j)
    return np.array([find(i) for i in range(count)], dtype=np.int64)
