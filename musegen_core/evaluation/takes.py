"""The sampling protocol of `musegen eval`: which test tunes, their primes and real continuations, the takes.

- **Excerpts**: test tunes long enough for a prime of `PRIME_BARS` bars (after any pickup) and `BARS` more bars are
  eligible; `count` of them are drawn with a seeded generator, stratified over styles (as equal a share per style as
  the eligible tunes allow). The prime must sound in its last bar, so generation starts exactly where the real
  continuation does.
- **Takes**: excerpt `i` is continued once for `BARS` bars at temperature 1.0 with seed `seed + i` (and, for
  diversity, with seeds `seed + i + k·count`, k = 1..). A style-conditioned model is asked for the tune's style.
- **Reference**: the real next `BARS` bars of the same tunes.
- **Diversity** between takes of one prime: `d(a, b) = ½ (TV(pc_a, pc_b) + TV(len_a, len_b))`, with TV the total-
  variation distance `½ Σ |a − b|` of the pitch-class and the note-length histograms; 0 = same pitch and rhythm
  content, 1 = disjoint. Reported as the mean over pairs of takes of the same prime, then over primes.
- **Speed**: wall time of `continue_melody` per generated bar (ms), one thread, median over the takes.
"""

from __future__ import annotations

import itertools
import time
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from musegen_core import encoding
from musegen_core.evaluation.features import melody_features, notes_of
from musegen_core.generate import continue_melody
from musegen_core.music import Part, Piece, TimeSignature
from musegen_core.training.corpus import Tune

PRIME_BARS = 2  # bars of each test tune given as the prime (after its pickup)
BARS = 8  # bars generated, and bars of the real continuation they are compared with
TEMPERATURE = 1.0


@dataclass(frozen=True)
class Excerpt:
    """One test tune cut into a prime and its real continuation (token arrays on the tune's step grid)."""

    tune: Tune
    prime: np.ndarray  # pickup + PRIME_BARS bars; ends on a bar line
    reference: np.ndarray  # the next BARS bars, starting on that bar line

    @property
    def style(self) -> str:
        return self.tune.style


def excerpt_of(tune: Tune, prime_bars: int = PRIME_BARS, bars: int = BARS) -> Excerpt | None:
    """The excerpt of one tune, or None if it is too short or its prime is silent in its last bar."""
    pickup = (tune.bar_steps - tune.offset_steps) % tune.bar_steps
    cut = pickup + prime_bars * tune.bar_steps
    if len(tune.tokens) < cut + bars * tune.bar_steps:
        return None
    prime, reference = tune.tokens[:cut], tune.tokens[cut : cut + bars * tune.bar_steps]
    notes = notes_of(prime)
    if len(notes) == 0 or (notes.onsets + notes.lengths).max() <= cut - tune.bar_steps:
        return None  # continue_melody would start generating a bar early
    if len(notes_of(reference)) == 0:
        return None
    return Excerpt(tune, prime, reference)


def choose_excerpts(tunes: list[Tune], count: int, seed: int) -> list[Excerpt]:
    """Up to `count` excerpts drawn with a seeded generator, as evenly over styles as the eligible tunes allow;
    grouped by style (sorted), in drawing order within a style."""
    by_style: dict[str, list[Excerpt]] = defaultdict(list)
    for tune in tunes:
        excerpt = excerpt_of(tune)
        if excerpt is not None:
            by_style[excerpt.style].append(excerpt)
    rng = np.random.default_rng(seed)
    quotas = _quotas({style: len(group) for style, group in sorted(by_style.items())}, count)
    chosen = []
    for style, quota in quotas.items():
        group = by_style[style]
        chosen += [group[i] for i in rng.permutation(len(group))[:quota]]
    return chosen


def _quotas(available: dict[str, int], count: int) -> dict[str, int]:
    """Share `count` over styles one at a time, round robin, skipping styles that have run out."""
    quotas = dict.fromkeys(available, 0)
    for style in itertools.cycle(list(available)):
        if sum(quotas.values()) >= min(count, sum(available.values())):
            break
        if quotas[style] < available[style]:
            quotas[style] += 1
    return quotas


def prime_piece(excerpt: Excerpt) -> Piece:
    """The prime as a one-part `Piece` with the tune's meter, pickup and tempo."""
    tune = excerpt.tune
    return melody_piece(tune, excerpt.prime, (tune.bar_steps - tune.offset_steps) % tune.bar_steps)


def melody_piece(tune: Tune, tokens: np.ndarray, pickup_steps: int = 0) -> Piece:
    """Tokens on a tune's grid as a one-part `Piece` with the tune's meter and tempo (and `pickup_steps`)."""
    numerator, denominator = (int(x) for x in tune.meter.split("/"))
    tempo = tune.tempo_bpm if tune.tempo_bpm and 10 <= tune.tempo_bpm <= 400 else 120.0
    notes = tuple(encoding.tokens_to_notes(tokens))
    return Piece(
        (Part("melody", notes),),
        tempo_bpm=tempo,
        time_signature=TimeSignature(numerator, denominator),
        title=tune.title,
        pickup_beats=pickup_steps / encoding.STEPS_PER_BEAT,
    )


@dataclass(frozen=True)
class Take:
    """One generated continuation: its tokens on the tune's grid (starting on the bar line) and its wall time."""

    tokens: np.ndarray
    seconds: float


def sample_take(model: object, excerpt: Excerpt, seed: int, bars: int = BARS) -> Take:
    """Continue the excerpt's prime by `bars` bars (temperature `TEMPERATURE`, style if the model knows it)."""
    controls = {"style": excerpt.style} if excerpt.style in getattr(model, "styles", ()) else {}
    prime = prime_piece(excerpt)
    start = time.perf_counter()
    result = continue_melody(model, prime, bars=bars, temperature=TEMPERATURE, seed=seed, **controls)
    seconds = time.perf_counter() - start
    if round(result.start_beats * encoding.STEPS_PER_BEAT) != len(excerpt.prime):
        raise RuntimeError(f"{excerpt.tune.tune_id}: the continuation does not start where the prime ends")
    steps = bars * excerpt.tune.bar_steps
    tokens = encoding.piece_to_tokens(result.generated_alone(), total_steps=steps).tokens
    return Take(tokens, seconds)


def diversity(takes: list[np.ndarray], bar_steps: int, bars: int = BARS) -> float:
    """Mean pairwise distance (see the module docstring) between takes of one prime, in [0, 1]."""
    features = [melody_features(tokens, bar_steps, bars) for tokens in takes]
    distances = [
        0.25 * (np.abs(a["pitch_class_histogram"] - b["pitch_class_histogram"]).sum())
        + 0.25 * (np.abs(a["note_length_histogram"] - b["note_length_histogram"]).sum())
        for a, b in itertools.combinations(features, 2)
    ]
    return float(np.mean(distances)) if distances else float("nan")
