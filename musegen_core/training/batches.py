"""Training and scoring batches: random windows of tunes (with transposition and style dropout) and whole tunes.

Every batch pairs the input token of step t with the bar position of step t + 1 and the target token of step t + 1,
the layout every model family reads (see `MelodyLSTM.forward`). A style-conditioned model also gets one style row per
sequence: the index of the tune's style in the model's styles, or the "any style" row (`len(styles)`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from musegen_core import encoding
from musegen_core.training.corpus import Tune

IGNORE = -100  # target value of padding steps (ignored by the loss)


@dataclass
class Batch:
    """Model inputs and targets, each (batch, window) int64: targets[:, t] is the token after inputs[:, t]."""

    inputs: torch.Tensor
    positions: torch.Tensor  # bar position of the target step
    targets: torch.Tensor  # IGNORE where padded
    styles: torch.Tensor | None = None  # (batch,) style rows; None for a model without styles

    def to(self, device: torch.device) -> Batch:
        styles = None if self.styles is None else self.styles.to(device)
        return Batch(self.inputs.to(device), self.positions.to(device), self.targets.to(device), styles)


def style_rows(tunes: list[Tune], styles: tuple[str, ...]) -> torch.Tensor | None:
    """(len(tunes),) row of each tune's style in `styles` ("any style" if it is not one of them); None without
    styles."""
    if not styles:
        return None
    return torch.tensor([styles.index(t.style) if t.style in styles else len(styles) for t in tunes])


def window_batch(
    tunes: list[Tune],
    rng: np.random.Generator,
    size: int,
    window: int,
    transpose: int,
    *,
    styles: tuple[str, ...] = (),
    style_dropout: float = 0.0,
) -> Batch:
    """`size` random windows of `window + 1` steps (tunes drawn in proportion to length), shorter tunes padded.

    Args:
        transpose: shift each window by a random whole number of semitones within ±transpose (0 = off).
        styles: the model's styles (() = no style rows).
        style_dropout: share of windows whose style row becomes "any style" (drawn from `rng`).
    """
    lengths = np.array([len(t.tokens) for t in tunes], dtype=np.float64)
    chosen = rng.choice(len(tunes), size=size, p=lengths / lengths.sum())
    rows = [_window(tunes[i], rng, window, transpose) for i in chosen]
    tokens, positions = (torch.from_numpy(np.stack(column)) for column in zip(*rows, strict=True))
    targets = tokens[:, 1:].masked_fill(tokens[:, 1:] < 0, IGNORE)
    rows = style_rows([tunes[i] for i in chosen], styles)
    if rows is not None and style_dropout > 0:
        rows = rows.masked_fill(torch.from_numpy(rng.random(size) < style_dropout), len(styles))
    return Batch(tokens[:, :-1].clamp(min=0), positions[:, 1:], targets, rows)


def _window(tune: Tune, rng: np.random.Generator, window: int, transpose: int) -> tuple[np.ndarray, np.ndarray]:
    """Tokens and positions of `window + 1` steps from a random start; padding steps hold -1 tokens."""
    start = int(rng.integers(0, max(1, len(tune.tokens) - window)))
    piece = tune.tokens[start : start + window + 1]
    piece = transposed(piece, int(rng.integers(-transpose, transpose + 1)) if transpose else 0)
    tokens = np.full(window + 1, -1, dtype=np.int64)
    tokens[: len(piece)] = piece
    return tokens, encoding.bar_positions(window + 1, tune.bar_steps, tune.offset_steps, start=start)


def transposed(tokens: np.ndarray, shift: int) -> np.ndarray:
    """Shift NOTE_ON tokens by `shift` semitones, reduced towards 0 where it would leave the pitch range."""
    onsets = tokens >= encoding.NOTE_ON
    if not onsets.any() or shift == 0:
        return tokens
    low, high = tokens[onsets].min() - encoding.NOTE_ON, tokens[onsets].max() - encoding.NOTE_ON
    shift = int(np.clip(shift, -low, encoding.VOCAB_SIZE - encoding.NOTE_ON - 1 - high))
    return np.where(onsets, tokens + shift, tokens)


def whole_tunes(tunes: list[Tune], styles: tuple[str, ...] = ()) -> Batch:
    """Whole tunes, padded to the longest (every step after each tune's first is a target)."""
    width = max(len(t.tokens) for t in tunes)
    tokens = np.full((len(tunes), width), -1, dtype=np.int64)
    positions = np.zeros((len(tunes), width), dtype=np.int64)
    for row, tune in enumerate(tunes):
        tokens[row, : len(tune.tokens)] = tune.tokens
        positions[row] = encoding.bar_positions(width, tune.bar_steps, tune.offset_steps)
    tokens, positions = torch.from_numpy(tokens), torch.from_numpy(positions)
    targets = tokens[:, 1:].masked_fill(tokens[:, 1:] < 0, IGNORE)
    return Batch(tokens[:, :-1].clamp(min=0), positions[:, 1:], targets, style_rows(tunes, styles))


def length_groups(tunes: list[Tune], batch_steps: int) -> list[list[Tune]]:
    """Tunes sorted by length and grouped so that each group's padded size stays within `batch_steps` steps."""
    ordered = sorted(tunes, key=lambda t: len(t.tokens))
    groups, current = [], []
    for tune in ordered:
        if current and (len(current) + 1) * len(tune.tokens) > batch_steps:
            groups.append(current)
            current = []
        current.append(tune)
    return [*groups, current] if current else groups
