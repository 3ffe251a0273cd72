"""Style conditioning shared by every model family: one learned vector per style plus an "any style" vector.

A style-conditioned model is trained with its tunes' style labels, except that a share of the sequences (style
dropout, ~10 %) get the "any style" row instead, so the model also works without a style. A model with no styles has
no table at all (its checkpoints hold no style weights), which keeps unconditioned checkpoints loading unchanged.
"""

from __future__ import annotations

import torch
from torch import nn


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

    def forward(self, rows: torch.Tensor | None, batch: int) -> torch.Tensor:
        """(batch, dim) vectors for (batch,) int64 rows; None gives "any style" for the whole batch."""
        if rows is None:
            rows = torch.full((batch,), self.any_style, dtype=torch.int64, device=self.table.weight.device)
        return self.table(rows)


def check_unconditioned(style: int | None, family: str) -> None:
    """A model without styles accepts only `style=None`."""
    if style is not None:
        raise ValueError(f"this {family} model has no style conditioning (received style {style})")
