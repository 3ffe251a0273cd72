"""Style conditioning shared by every model family: one learned vector per style plus an "any style" vector.

A style-conditioned model is trained with its tunes' style labels, except that a share of the sequences (style
dropout, ~10 %) get the "any style" row instead, so the model also works without a style. A model with no styles has
no table at all (its checkpoints hold no style weights), which keeps unconditioned checkpoints loading unchanged.

A *mix* of two styles (`StyleMix`) conditions on the weighted sum of their two vectors.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class StyleMix:
    """`(1 − weight)` of style `first` plus `weight` of style `second` (indices into a model's styles)."""

    first: int
    second: int
    weight: float


Style = int | StyleMix | None  # what `generate` accepts: a style index, a mix of two, or None for any style


class StyleEmbedding(nn.Module):
    """Rows 0 .. len(styles) - 1 are the styles in `styles` order; row len(styles) is "any style"."""

    def __init__(self, styles: tuple[str, ...], dim: int) -> None:
        super().__init__()
        self.styles = tuple(styles)
        self.table = nn.Embedding(len(self.styles) + 1, dim)

    @property
    def any_style(self) -> int:
        """Row of the unconditioned ("any style") vector."""
        return len(self.styles)

    def index(self, style: int | None) -> int:
        """Row for `style` (an index into `styles`, or None for any style); refuses an index out of range."""
        if style is None:
            return self.any_style
        if not 0 <= style < len(self.styles):
            raise ValueError(f"style must be None or within 0 and {len(self.styles) - 1} (received {style})")
        return int(style)

    def rows(self, style: Style, device: torch.device) -> torch.Tensor:
        """What `forward` reads for one sequence: a (1,) int64 row, or for a mix (1, rows) float weights."""
        if not isinstance(style, StyleMix):
            return torch.tensor([self.index(style)], device=device)
        if not 0 <= style.weight <= 1:
            raise ValueError(f"a style mix weight must be within 0 and 1 (received {style.weight})")
        weights = torch.zeros(1, len(self.styles) + 1, device=device)
        weights[0, self.index(style.first)] += 1 - style.weight
        weights[0, self.index(style.second)] += style.weight
        return weights

    def forward(self, rows: torch.Tensor | None, batch: int) -> torch.Tensor:
        """(batch, dim) vectors for (batch,) int64 rows or (batch, rows) float mixing weights (see `rows`); None
        gives "any style" for the whole batch."""
        if rows is None:
            rows = torch.full((batch,), self.any_style, dtype=torch.int64, device=self.table.weight.device)
        if rows.is_floating_point():
            return rows.to(self.table.weight.dtype) @ self.table.weight
        return self.table(rows)


def unconditioned_rows(
    embedding: StyleEmbedding | None, style: Style, guidance: float, device: torch.device
) -> torch.Tensor | None:
    """The "any style" rows classifier-free guidance compares against, or None when guidance is off (1), there is no
    style asked for, or the model has no styles."""
    if guidance == 1 or style is None or embedding is None:
        return None
    return embedding.rows(None, device)


def style_rows(
    embedding: StyleEmbedding | None, style: Style, family: str, device: torch.device
) -> torch.Tensor | None:
    """`embedding.rows(style)` for `generate`; a model without styles (no embedding) accepts only `style=None`."""
    if embedding is None:
        if style is not None:
            raise ValueError(f"this {family} model has no style conditioning (received style {style})")
        return None
    return embedding.rows(style, device)


def repeat_rows(rows: torch.Tensor | None, batch: int) -> torch.Tensor | None:
    """One sequence's style rows (`StyleEmbedding.rows`) repeated for a batch of `batch` sequences."""
    return None if rows is None else rows.expand(batch, *rows.shape[1:])
