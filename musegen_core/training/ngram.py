"""n-gram baselines over melody tokens: interpolated Kneser–Ney (order ≥ 2) and add-one unigram (order 1).

They score the same targets as the neural models (every step of a tune after its first), so bits per step compare
directly. Contexts never cross tune boundaries: each tune is preceded by `order - 1` start symbols.
Everything is vectorised with numpy: an n-gram is one int64 key in base `vocab + 1`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

MAX_ORDER = 10  # keys are int64 in base vocab+1 = 57: 57**10 < 2**63 < 57**11


@dataclass
class _Table:
    """Counts of one order: sorted keys (context·V + token) with their counts, and per-context totals and types."""

    keys: np.ndarray
    counts: np.ndarray
    contexts: np.ndarray  # sorted context ids
    totals: np.ndarray  # sum of counts per context
    types: np.ndarray  # distinct tokens seen per context
    discount: float


@dataclass
class NGramModel:
    """An n-gram model over tokens `0 .. vocab_size-1`. Fit with `fit`, score with `log2_probs`."""

    order: int  # n: tokens of context + 1
    vocab_size: int  # number of predictable tokens (the start symbol is `vocab_size`)
    tables: list[_Table] = field(default_factory=list)  # tables[k - 1] holds order-k counts

    def __post_init__(self) -> None:
        if not 1 <= self.order <= MAX_ORDER or self.base**self.order > 2**63:
            raise ValueError(f"order must be within 1 and {MAX_ORDER} for this vocabulary (received {self.order})")

    def fit(self, tunes: list[np.ndarray]) -> NGramModel:
        """Count n-grams of every order in the training tunes (Kneser–Ney continuation counts below the top)."""
        grams = self._grams(tunes, self.order)  # (N, order): context tokens then target
        keys = self._key(grams)
        self.tables = [None] * self.order  # type: ignore[list-item]
        unique, counts = np.unique(keys, return_counts=True)
        self.tables[-1] = self._table(unique, counts)
        for k in range(self.order - 1, 0, -1):  # continuation counts: distinct left extensions of each k-gram
            shorter = unique % (self.base**k)
            unique, counts = np.unique(shorter, return_counts=True)
            self.tables[k - 1] = self._table(unique, counts)
        return self

    def log2_probs(self, tunes: list[np.ndarray]) -> np.ndarray:
        """log2 P(token | context) of every step after each tune's first, concatenated over tunes."""
        grams = self._grams(tunes, self.order, skip_first=True)
        targets = grams[:, -1]
        if self.order == 1:
            return np.log2(self._unigram(targets))
        probs = np.full(len(grams), 1.0 / self.vocab_size)
        for k in range(1, self.order + 1):
            probs = self._interpolate(self.tables[k - 1], self._key(grams[:, self.order - k :]), probs)
        return np.log2(probs)

    @property
    def base(self) -> int:
        return self.vocab_size + 1

    def _grams(self, tunes: list[np.ndarray], n: int, skip_first: bool = False) -> np.ndarray:
        rows = []
        for tune in tunes:
            padded = np.concatenate([np.full(n - 1, self.vocab_size), np.asarray(tune, dtype=np.int64)])
            windows = np.lib.stride_tricks.sliding_window_view(padded, n)
            rows.append(windows[1:] if skip_first else windows)
        return np.concatenate(rows) if rows else np.zeros((0, n), np.int64)

    def _key(self, grams: np.ndarray) -> np.ndarray:
        powers = self.base ** np.arange(grams.shape[1] - 1, -1, -1, dtype=np.int64)
        return grams.astype(np.int64) @ powers

    def _table(self, keys: np.ndarray, counts: np.ndarray) -> _Table:
        contexts_of_keys = keys // self.base
        contexts, starts = np.unique(contexts_of_keys, return_index=True)
        totals = np.add.reduceat(counts, starts)
        types = np.diff(np.append(starts, len(keys)))
        n1, n2 = np.sum(counts == 1), np.sum(counts == 2)
        discount = float(n1 / (n1 + 2 * n2)) if n1 + n2 else 0.75
        return _Table(keys, counts, contexts, totals, types, discount)

    def _interpolate(self, table: _Table, keys: np.ndarray, lower: np.ndarray) -> np.ndarray:
        """P_k(w|h) = max(c − D, 0)/T(h) + D·types(h)/T(h) · P_{k−1}(w|h′); unseen h falls back to P_{k−1}."""
        count = _lookup(table.keys, table.counts, keys)
        context = keys // self.base
        total = _lookup(table.contexts, table.totals, context)
        types = _lookup(table.contexts, table.types, context)
        seen = total > 0
        safe = np.where(seen, total, 1)
        mixed = np.maximum(count - table.discount, 0) / safe + table.discount * types / safe * lower
        return np.where(seen, mixed, lower)

    def _unigram(self, targets: np.ndarray) -> np.ndarray:
        """Add-one unigram from the raw counts of order-1 grams."""
        table = self.tables[0]
        count = _lookup(table.keys, table.counts, targets)
        return (count + 1) / (table.counts.sum() + self.vocab_size)


def _lookup(sorted_keys: np.ndarray, values: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """values[i] where sorted_keys[i] == query, else 0."""
    index = np.clip(np.searchsorted(sorted_keys, queries), 0, max(len(sorted_keys) - 1, 0))
    found = sorted_keys[index] == queries if len(sorted_keys) else np.zeros(len(queries), bool)
    return np.where(found, values[index] if len(values) else 0, 0)


def bits_per_step(model: NGramModel, tunes: list[np.ndarray]) -> float:
    """Mean negative log2 probability per scored step."""
    logs = model.log2_probs(tunes)
    return float(-logs.mean()) if len(logs) else math.nan
