"""Compare & Rate without the page: a seeded queue of blind A/B pairs, the two takes of each, and the vote.

**The pair-making rule.** Pair number i (0, 1, 2, …) of a queue with seed s is drawn from its own
`random.Random(f"musegen-pair:{s}:{i}")`, so a queue is reproducible from (s, installed models, promotions, primes)
and any pair can be rebuilt without the ones before it:

1. **Prime**: the primes take turns — pair i uses primes[(o + i) mod n], the offset o drawn once from s. The primes
   are the built-in gallery tunes (`builtin_primes`) or the melody uploaded on Compose in this session; a prime
   longer than `MAX_PRIME_BARS` bars is cut to its first ones.
2. **Kind**: with two or more models installed, half of the pairs (by a coin flip) are **versions** pairs and half
   are **seeds** pairs; with one model, all are seeds pairs.
   - *seeds*: one model, drawn uniformly from the installed ones, with two different seeds.
   - *versions*: two different models or versions, one seed each. The candidates are unordered pairs from two pools:
     **challengers** — each fine-tuned version against its parent and against its family's promoted model — and
     **incumbents** — the app's default model against every other model, and each family's promoted model
     against that family's other models. When there are challengers, a second coin flip takes the pair from them,
     else from all candidates (each drawn uniformly), so a new version is compared with what it would replace
     about half of the time.
3. **Style**: a style both models know, drawn uniformly; none ("any style") when they share none.
4. **Seeds**: drawn from 1 … `MAX_PAIR_SEED`; a seeds pair's two differ. Every take is `PAIR_BARS` bars with the
   other controls at their defaults.
5. **Blind order**: a last coin flip decides which take is A. Should the two takes come out identical note for
   note, B's seed is moved on by one (up to `IDENTICAL_RETRIES` times) so the rater hears two different takes.

The vote (`Pair.vote`) is a `feedback.PairVote`: prime and takes as MIDI (each take is the continuation alone, on
the prime's time line, as ratings store it), each take's model, version, seed and controls (with the prime's
`pickup_beats` and the take's `start_beats`, so the fine-tuner lays it out exactly), the rater, "a" / "b" / "tie" /
"skip" and tags.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from musegen_core.controls import Controls
from musegen_core.feedback import PairTake, PairVote
from musegen_core.formats.midi import piece_to_midi
from musegen_core.generate import Continuation, continue_melody
from musegen_core.models.registry import MelodyModel, ModelInfo
from musegen_core.music import Note, Part, Piece

PAIR_BARS = 4
MAX_PRIME_BARS = 4  # short primes: the rater hears the melody before each take, so more pairs per minute
MAX_PAIR_SEED = 9_999
IDENTICAL_RETRIES = 3
SEEDS, VERSIONS = "seeds", "versions"


@dataclass(frozen=True)
class Prime:
    """A melody to continue: one part, and what to call it (a built-in tune's title or the uploaded file's name)."""

    name: str
    piece: Piece = field(repr=False)
    tune_index: int = 0  # in a built-in or multi-tune file, for the record


@dataclass(frozen=True)
class Side:
    """What makes one take of a pair."""

    model_name: str
    model_version: str
    seed: int

    @property
    def label(self) -> str:
        return f"{self.model_name} v{self.model_version} seed {self.seed}"


@dataclass(frozen=True)
class PairSpec:
    """Pair `number` of a queue: which prime, which two sides (A first), which style."""

    queue_seed: int
    number: int
    kind: str  # SEEDS or VERSIONS
    prime: Prime
    a: Side
    b: Side
    style: str | None
    bars: int = PAIR_BARS

    def controls(self, side: Side) -> Controls:
        return Controls(bars=self.bars, seed=side.seed, style=self.style)


@dataclass(frozen=True)
class Pair:
    """A pair made: the prime (as the takes continue it) and the two continuations, A first."""

    spec: PairSpec
    a: Side  # the sides as generated (B's seed may have moved on from the spec's; see the module docstring)
    b: Side
    take_a: Continuation
    take_b: Continuation

    @property
    def prime(self) -> Piece:
        return self.take_a.prime

    @property
    def sides(self) -> tuple[tuple[Side, Continuation], tuple[Side, Continuation]]:
        return ((self.a, self.take_a), (self.b, self.take_b))

    def pitch_range(self) -> tuple[int, int]:
        """Lowest and highest pitch of both takes (for rolls on the same axes)."""
        pitches = [n.pitch for _, take in self.sides for n in take.generated.parts[0].notes] or [60]
        return min(pitches), max(pitches)

    def beat_range(self) -> tuple[float, float]:
        """Where the takes start and the end of the later one (for rolls on the same axes)."""
        bar = self.prime.time_signature.bar_beats
        return self.take_a.start_beats, self.take_a.start_beats + self.spec.bars * bar

    def pair_take(self, side: Side, take: Continuation) -> PairTake:
        controls: dict[str, Any] = {
            **self.spec.controls(side).as_dict(),
            "part_index": 0,
            "tune_index": self.spec.prime.tune_index,
            "pickup_beats": take.prime.pickup_beats,
            "start_beats": take.start_beats,
        }
        return PairTake(
            midi=piece_to_midi(take.generated),
            model_name=side.model_name,
            model_version=side.model_version,
            seed=side.seed,
            controls=controls,
        )

    def vote(self, choice: str, rater: str, tags: Iterable[str] = ()) -> PairVote:
        """The record of `rater`'s judgement: "a", "b", "tie" or "skip" (a `StoreError` for anything else)."""
        return PairVote(
            prime_midi=piece_to_midi(self.prime),
            a=self.pair_take(self.a, self.take_a),
            b=self.pair_take(self.b, self.take_b),
            choice=choice,  # type: ignore[arg-type]  # checked by PairVote
            rater=rater,
            prime_name=self.spec.prime.name,
            tags=tuple(tags),
        )

    def reveal(self) -> str:
        """E.g. "A was lstm-folk v2 seed 3; B was transformer-folk v1 seed 81." — shown only after the vote."""
        return f"A was {self.a.label}; B was {self.b.label}."

    @property
    def model_names(self) -> set[str]:
        return {self.a.model_name, self.b.model_name}


# ---------------------------------------------------------------------------------------------------------------
# Primes.


def builtin_primes() -> list[Prime]:
    """The Style Gallery's built-in tunes, each as a one-part prime."""
    from musegen_core.formats import open_music_file
    from musegen_core.gallery import BUILTIN_FILE, builtin_data

    music_file = open_music_file(builtin_data(), BUILTIN_FILE)
    primes = []
    for index, title in enumerate(music_file.tune_titles):
        piece = music_file.load(index)
        primes.append(Prime(title, first_bars(piece.only_part(0), MAX_PRIME_BARS), index))
    return primes


def uploaded_prime(piece: Piece, name: str, *, part_index: int = 0, tune_index: int = 0) -> Prime:
    """The melody uploaded on Compose (its chosen part) as a prime, cut to its first `MAX_PRIME_BARS` bars."""
    return Prime(name, first_bars(piece.only_part(part_index), MAX_PRIME_BARS), tune_index)


def first_bars(piece: Piece, bars: int) -> Piece:
    """The piece up to the end of its `bars`-th bar (a pickup counts as a bar); notes running over are shortened."""
    lines = piece.bar_lines_beats()
    if len(lines) - 1 <= bars:
        return piece
    end = lines[bars]
    parts = []
    for part in piece.parts:
        notes = tuple(
            replace(n, duration_beats=min(n.duration_beats, end - n.start_beats))
            for n in part.notes
            if n.start_beats < end - 1e-9
        )
        parts.append(Part(part.name, notes, part.program, part.is_drum))
    return piece.with_parts(parts)


# ---------------------------------------------------------------------------------------------------------------
# The rule.


def candidate_pairs(
    infos: Sequence[ModelInfo], promotions: Mapping[str, Any]
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(challengers, incumbents): unordered pairs of installed model names, each sorted, each pool sorted and
    without repeats (see the module docstring)."""
    names = {info.name for info in infos}
    families = dict(promotions.get("families") or {})
    default = promotions.get("default")

    def pair(x: str | None, y: str | None) -> tuple[str, str] | None:
        return tuple(sorted((x, y))) if x in names and y in names and x != y else None  # type: ignore[return-value]

    challengers, incumbents = set(), set()
    for info in infos:
        parent = (info.lineage.get("parent") or {}).get("name") if isinstance(info.lineage, dict) else None
        if parent:
            challengers |= {pair(info.name, parent), pair(info.name, families.get(info.family))}
        incumbents |= {pair(default, info.name), pair(families.get(info.family), info.name)}
    challengers.discard(None)
    incumbents.discard(None)
    return sorted(challengers), sorted(incumbents - challengers)  # type: ignore[arg-type]


def pair_spec(
    queue_seed: int,
    number: int,
    infos: Sequence[ModelInfo],
    promotions: Mapping[str, Any],
    primes: Sequence[Prime],
    *,
    bars: int = PAIR_BARS,
) -> PairSpec:
    """Pair `number` of the queue with seed `queue_seed` (the rule in the module docstring).

    Raises:
        ValueError: no model or no prime to make a pair from.
    """
    if not infos or not primes:
        raise ValueError("a pair needs at least one installed model and one prime")
    infos = sorted(infos, key=lambda info: info.name)
    by_name = {info.name: info for info in infos}
    offset = random.Random(f"musegen-queue:{queue_seed}").randrange(len(primes))
    prime = primes[(offset + number) % len(primes)]
    rng = random.Random(f"musegen-pair:{queue_seed}:{number}")

    kind = VERSIONS if len(infos) > 1 and rng.random() < 0.5 else SEEDS
    if kind == SEEDS:
        first = second = rng.choice(infos)
        seed_a = rng.randint(1, MAX_PAIR_SEED)
        seed_b = rng.randint(1, MAX_PAIR_SEED - 1)
        seed_b += seed_b >= seed_a  # a different seed, uniform over the others
    else:
        challengers, incumbents = candidate_pairs(infos, promotions)
        everything = sorted({*challengers, *incumbents}) or _all_pairs(infos)
        pool = challengers if challengers and rng.random() < 0.5 else everything
        first_name, second_name = rng.choice(pool)
        first, second = by_name[first_name], by_name[second_name]
        seed_a, seed_b = rng.randint(1, MAX_PAIR_SEED), rng.randint(1, MAX_PAIR_SEED)
    shared = [style for style in first.styles if style in second.styles]
    style = rng.choice(shared) if shared else None
    a, b = Side(first.name, first.version, seed_a), Side(second.name, second.version, seed_b)
    if rng.random() < 0.5:
        a, b = b, a
    return PairSpec(queue_seed, number, kind, prime, a, b, style, bars)


def _all_pairs(infos: Sequence[ModelInfo]) -> list[tuple[str, str]]:
    names = sorted(info.name for info in infos)
    return [(x, y) for i, x in enumerate(names) for y in names[i + 1 :]]


def make_pair(spec: PairSpec, model_for: Callable[[str], MelodyModel]) -> Pair:
    """Generate both takes of `spec` (`model_for(name)` gives a loaded model, e.g. the app's cached one)."""
    take_a = continue_melody(model_for(spec.a.model_name), spec.prime.piece, spec.controls(spec.a))
    b = spec.b
    take_b = continue_melody(model_for(b.model_name), spec.prime.piece, spec.controls(b))
    for _ in range(IDENTICAL_RETRIES):
        if _notes(take_b) != _notes(take_a):
            break
        b = replace(b, seed=b.seed % MAX_PAIR_SEED + 1)
        take_b = continue_melody(model_for(b.model_name), spec.prime.piece, spec.controls(b))
    return Pair(spec, spec.a, b, take_a, take_b)


def _notes(take: Continuation) -> tuple[Note, ...]:
    return take.generated.parts[0].notes
