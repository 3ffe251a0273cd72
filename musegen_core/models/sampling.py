"""Small pure functions over next-token logits, shared by every autoregressive model family.

All take and return float tensors of shape (..., vocab) (a batch of logit rows); none changes its input in place.
"""

from __future__ import annotations

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


def next_token(
    logits: torch.Tensor,
    temperature: float,
    top_p: float,
    generator: torch.Generator | None,
    steering: torch.Tensor | None = None,
) -> int:
    """One token drawn from one (vocab,) row of logits after `shape`. Runs on the CPU with the (CPU) `generator`,
    so a model on any device samples the same tokens for the same seed."""
    return int(sample(shape(logits.float().cpu(), temperature, top_p, steering), generator))


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
