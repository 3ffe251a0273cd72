"""Small pure functions over next-token logits, shared by every autoregressive model family, and `SamplesMany`, the
mixin that gives each family its one-take `generate`.

The functions take and return float tensors of shape (..., vocab) (a batch of logit rows); none changes its input in
place.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Divide logits by `temperature` (> 0): below 1 sharpens the distribution, above 1 flattens it."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0 (received {temperature})")
    return logits / temperature


def nucleus(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Top-p (nucleus) filtering: keep the smallest set of most likely tokens whose probability reaches `top_p`,
    set the others to -inf. The most likely token is always kept; `top_p == 1` keeps everything."""
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be within (0, 1] (received {top_p})")
    if top_p >= 1:
        return logits
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    probabilities = torch.softmax(sorted_logits, dim=-1)
    drop_sorted = probabilities.cumsum(dim=-1) - probabilities >= top_p  # the tokens before it already reach top_p
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def sample(logits: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw one token index per row from softmax(logits), shape (...,) int64. Pass a seeded `generator` to make the
    draw reproducible (the global RNG is never touched when one is given)."""
    probabilities = torch.softmax(logits.float(), dim=-1)
    flat = probabilities.reshape(-1, probabilities.shape[-1])
    return torch.multinomial(flat, 1, generator=generator).reshape(probabilities.shape[:-1])


def shape(logits: torch.Tensor, temperature: float, top_p: float, steering: torch.Tensor | None = None) -> torch.Tensor:
    """Temperature, then the steering biases (`controls.steering_table` rows, same shape as `logits`; None = none),
    then nucleus filtering: the order every family samples in. Steering comes after temperature so a hard
    constraint (−inf) and the size of a nudge do not depend on the temperature."""
    logits = apply_temperature(logits, temperature)
    if steering is not None:
        logits = logits + steering
    return nucleus(logits, top_p)


def next_tokens(
    logits: torch.Tensor,
    temperature: float,
    top_p: float,
    generators: Sequence[torch.Generator | None],
    steering: torch.Tensor | None = None,
) -> torch.Tensor:
    """One token per row of (rows, vocab) logits after `shape` (`steering`: one (vocab,) row for all, or one per row),
    row i drawn with `generators[i]`: (rows,) int64. Runs on the CPU with the (CPU) generators, so a model on any
    device samples the same tokens for the same seeds, and row i draws exactly what a batch of one would with that
    generator."""
    shaped = shape(logits.float().cpu(), temperature, top_p, steering)
    if len(shaped) != len(generators):
        raise ValueError(f"need one generator per row ({len(shaped)} rows, {len(generators)} generators)")
    return torch.stack([sample(row, generator) for row, generator in zip(shaped, generators, strict=True)])


def count_takes(generators: Sequence[torch.Generator | None]) -> int:
    """How many takes `generate_many` writes for `generators`: one per entry, each a CPU `torch.Generator` or None.
    Refuses an empty list and a bare generator, which would otherwise fail deep inside the sampling loop."""
    if isinstance(generators, torch.Generator):
        raise ValueError("generators must be a list of generators, one per take (received a single generator)")
    if not generators:
        raise ValueError("generators must hold one generator (or None) per take (received none)")
    for generator in generators:
        if generator is not None and (not isinstance(generator, torch.Generator) or generator.device.type != "cpu"):
            raise ValueError(f"each generator must be a CPU torch.Generator or None (received {generator!r})")
    return len(generators)


class SamplesMany:
    """Mixin for a model family that writes several takes at once (`generate_many`, one generator per take, all
    continuing the same context): `generate` is a batch of one. Style focus (`generate.continue_melody`) asks for
    all its candidates in one batch, which costs little more than one take."""

    def generate(
        self,
        context: torch.Tensor,
        positions: torch.Tensor,
        steps: int,
        *,
        generator: torch.Generator | None = None,
        **options: Any,
    ) -> torch.Tensor:
        """(steps,) int64 tokens continuing `context`: `generate_many` with one generator (same options)."""
        return self.generate_many(context, positions, steps, generators=[generator], **options)[0]


def guided(conditioned: torch.Tensor, unconditioned: torch.Tensor | None, guidance: float) -> torch.Tensor:
    """Classifier-free guidance: `unconditioned + guidance × (conditioned − unconditioned)` — 1 is plain conditioning,
    above 1 pushes further towards the condition (the style), 0 ignores it. None (no condition) returns
    `conditioned` unchanged."""
    if unconditioned is None:
        return conditioned
    return unconditioned + guidance * (conditioned - unconditioned)


def steering_row(steering: torch.Tensor | None, position: int) -> torch.Tensor | None:
    """Row `position` of a (positions, vocab) steering table (positions past its end share the last row)."""
    if steering is None:
        return None
    return steering[min(int(position), len(steering) - 1)]
