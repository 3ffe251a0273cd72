"""The validation gate of a fine-tuned version: promoted only if it stays a good model and got better at what raters
prefer, both measured on data it never trained on.

1. **Held-out NLL** — the corpus **test** split of the parent's collections and split seed (the tunes `musegen eval`
   scores), in bits per step: `training.train.tune_metrics` for the LSTM and Transformer (the number `musegen eval`
   and the cards report); for the VAE, the negative ELBO of the test split's bar-aligned 2-bar windows
   (`vae_train.elbo_metrics`, the number its card reports). Parent and candidate are scored in the same run on the
   same tunes; `max_test_tunes` keeps an evenly spaced subset (fast checks; the report says how many were used).
   Rule: the candidate's NLL may rise by at most `nll_tolerance` (5 %) relative to the parent's.
2. **Held-out preference** — the feedback records split off by a seeded hash (`preferences.heldout`), scored with
   each model's mean log-likelihood per step (bits) of each take given its prime (`preferences.mean_logliks`):
   - pair margin: Σ w · (ℓ̄(preferred) − ℓ̄(other)) / Σ w over held-out pairs (ties left out); also reported: the
     weighted share of pairs where the preferred take is the likelier one (preference accuracy);
   - star covariance: Σ w · (stars − s̄) · ℓ̄(take) / Σ w over held-out ratings, s̄ their weighted mean stars (so a
     uniform shift of likelihood changes nothing: only likelihood moving towards better-rated takes counts);
   - preference score = (Σ_pairs w · margin + Σ_ratings w · (stars − s̄) · ℓ̄) / (Σ_pairs w + Σ_ratings w).
   Rule: the candidate's preference score must be strictly higher than the parent's. No held-out record → fail.

Promote only if both rules hold; otherwise the version is kept, unpromoted, with the reasons in its lineage.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from musegen_core.training.corpus import Tune

NLL_TOLERANCE = 0.05  # held-out NLL may rise at most 5 % over the parent's


@dataclass(frozen=True)
class PreferenceSet:
    """Held-out feedback, laid out for one model: pairs as (preferred, other) take indices, ratings as take
    indices with stars; weights per record."""

    takes: tuple  # preferences.ScoredTake
    pairs: tuple[tuple[int, int, float], ...] = ()  # (preferred take, other take, weight)
    ratings: tuple[tuple[int, int, float], ...] = ()  # (take, stars, weight)


def preference_metrics(model: nn.Module, heldout: PreferenceSet, device: torch.device) -> dict:
    """Pair margin, preference accuracy, star covariance and the preference score of `model` (see the module
    docstring), with the counts they rest on. Values are None where there is nothing to measure."""
    from musegen_core.training.preferences import mean_logliks

    scores = mean_logliks(model, heldout.takes, device) if heldout.takes else np.zeros(0)
    metrics: dict = {"pairs": len(heldout.pairs), "ratings": len(heldout.ratings)}
    total, weight = 0.0, 0.0
    if heldout.pairs:
        margins = np.array([scores[a] - scores[b] for a, b, _ in heldout.pairs])
        weights = np.array([w for _, _, w in heldout.pairs])
        metrics["pair_margin_bits"] = float((weights * margins).sum() / weights.sum())
        metrics["pair_accuracy"] = float((weights * (margins > 0)).sum() / weights.sum())
        total, weight = total + float((weights * margins).sum()), weight + float(weights.sum())
    if heldout.ratings:
        stars = np.array([s for _, s, _ in heldout.ratings], dtype=np.float64)
        weights = np.array([w for _, _, w in heldout.ratings])
        centred = stars - (weights * stars).sum() / weights.sum()
        values = np.array([scores[i] for i, _, _ in heldout.ratings])
        metrics["star_covariance"] = float((weights * centred * values).sum() / weights.sum())
        metrics["rated_mean_loglik_bits"] = float((weights * values).sum() / weights.sum())
        total, weight = total + float((weights * centred * values).sum()), weight + float(weights.sum())
    metrics["score"] = total / weight if weight > 0 else None
    return metrics


def pick_test_tunes(tunes: Sequence[Tune], most: int | None) -> list[Tune]:
    """At most `most` tunes, evenly spaced over the split (all of them for None)."""
    tunes = list(tunes)
    if most is None or most >= len(tunes):
        return tunes
    if most < 1:
        raise ValueError(f"max_test_tunes must be ≥ 1 (received {most})")
    return [tunes[int(i * len(tunes) / most)] for i in range(most)]


def heldout_nll(model: nn.Module, tunes: Sequence[Tune], device: torch.device) -> dict:
    """Held-out NLL in bits per step of `model` on `tunes` and how it was measured."""
    model.eval()
    if model.family == "vae":
        from musegen_core.training.vae_train import bar_windows, elbo_metrics

        windows = [t.to(device) for t in bar_windows(list(tunes), model.styles)]
        if not len(windows[0]):
            raise ValueError("no bar-aligned 2-bar window in the test tunes")
        bits = elbo_metrics(model, *windows)["elbo_bits_per_step"]
        return {"bits_per_step": bits, "measure": "negative ELBO, bar-aligned 2-bar test windows",
                "windows": len(windows[0]), "tunes": len(tunes)}  # fmt: skip
    from musegen_core.training.train import tune_metrics

    bits = tune_metrics(model, list(tunes), device)["nll_bits_per_step"]
    return {"bits_per_step": bits, "measure": "NLL of whole test tunes (tune_metrics)", "tunes": len(tunes)}


@dataclass(frozen=True)
class GateResult:
    """The gate's verdict and every number behind it (stored in the version's lineage as `asdict`)."""

    passed: bool
    reasons: list[str]  # why it failed (empty when it passed)
    nll: dict = field(default_factory=dict)  # parent, candidate, change, tolerance, how measured
    preference: dict = field(default_factory=dict)  # parent's and candidate's `preference_metrics`
    promoted: bool = False  # set by the caller when the version was promoted after passing

    def as_dict(self) -> dict:
        return asdict(self)


def decide(
    parent_nll: float, candidate_nll: float, parent_preference: float | None, candidate_preference: float | None,
    tolerance: float = NLL_TOLERANCE,
) -> tuple[bool, list[str]]:  # fmt: skip
    """The gate rule on its numbers: (passed, reasons it failed)."""
    reasons = []
    change = candidate_nll / parent_nll - 1 if parent_nll > 0 else math.inf
    if not math.isfinite(candidate_nll) or change > tolerance:
        reasons.append(
            f"held-out NLL rose {change:+.1%} ({parent_nll:.4f} → {candidate_nll:.4f} bits/step; at most "
            f"{tolerance:+.0%} allowed)"
        )
    if parent_preference is None or candidate_preference is None:
        reasons.append("no held-out feedback to measure the preference metric on (collect more ratings or pairs)")
    elif not candidate_preference > parent_preference:
        reasons.append(
            f"the held-out preference score did not improve ({parent_preference:+.4f} → {candidate_preference:+.4f})"
        )
    return not reasons, reasons


def evaluate(
    parent: nn.Module,
    candidate: nn.Module,
    test_tunes: Sequence[Tune],
    heldout: PreferenceSet,
    device: torch.device,
    tolerance: float = NLL_TOLERANCE,
) -> GateResult:
    """Measure parent and candidate on the same held-out tunes and feedback, and apply `decide`. (The takes'
    layout does not depend on the weights: the VAE's z come from its encoder, which fine-tuning leaves frozen.)"""
    before, after = heldout_nll(parent, test_tunes, device), heldout_nll(candidate, test_tunes, device)
    pref_before = preference_metrics(parent, heldout, device)
    pref_after = preference_metrics(candidate, heldout, device)
    passed, reasons = decide(
        before["bits_per_step"], after["bits_per_step"], pref_before["score"], pref_after["score"], tolerance
    )
    nll = {
        "parent_bits_per_step": before["bits_per_step"],
        "candidate_bits_per_step": after["bits_per_step"],
        "change": after["bits_per_step"] / before["bits_per_step"] - 1,
        "tolerance": tolerance,
        "split": "test",
    } | {k: v for k, v in after.items() if k != "bits_per_step"}
    return GateResult(passed, reasons, nll, {"parent": pref_before, "candidate": pref_after})
