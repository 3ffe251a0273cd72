"""Do ratings make a better model? Simulated raters → the feedback store → export → one fine-tune round → fresh takes.

**The raters' preference: smooth, stepwise melodies.** A take's utility is u = −(mean absolute interval between
consecutive notes, in semitones) (`control_measures.mean_interval`; a take with fewer than two notes gets
u = −`EMPTY_PENALTY`, an octave, so silence is never the way to please them). Conjunct motion is what makes a line
singable; the promoted LSTM does not already do it: it learnt the corpus, whose continuations move by ≈ 2.3
semitones on average with one interval in nine a leap of a fourth or more, and its takes do the same (≈ 2.4, about
one take in ten "mostly stepwise", mean interval ≤ `STEPWISE`). The run reports that distribution, the real
continuations' for comparison, and the parent's held-out preference accuracy (its likelihood leans a little towards
the smoother take of a pair, ≈ 60 %, while its samples are not smooth).

**Raters** (`RATERS`): six, each with a Bradley–Terry sharpness k (per semitone of utility) and a star noise σ. A pair
vote: skipped with probability `skip`; a tie (with probability ½) when the two takes' utilities lie within
`TIE_MARGIN`; otherwise A with P(A) = σ(k · (u_A − u_B)). Stars: the rater's noisy utility u + N(0, σ²) placed
among the quintiles of the feedback takes' utilities → 1–5. One rater, "spammy", casts `SPAMMER_SHARE` of all
judgements with little care (small k, large σ): the export's per-rater cap (`--rater-cap`, README: 50) must keep
that rater from dominating.

**The loop**, through the code the app runs:
1. Primes: `--primes` excerpts of the corpus **train** split (`evaluation.takes.choose_excerpts`; feedback is
   training data for the fine-tune, so train tunes are fair), each continued `--takes-per-prime` times by the
   promoted LSTM (`--model`) for `--bars` bars with different seeds (`studio.make_take`, the Compose page's path:
   default controls, the excerpt's style).
2. Raters judge `--pairs` pairs (two takes of one prime) and rate `--ratings` takes; every judgement is written with
   `FeedbackStore.add_pair_vote` / `add_rating` into a SQLite file in a temporary folder (no rater judges the same
   pair or take twice).
3. `musegen feedback export` (the CLI, in process) writes the dataset; `feedback.dataset.load_dataset` reads and
   verifies it (the per-rater weights are reported).
4. One fine-tune round with `training.finetune.finetune` and the README's settings (batch 16, lr 1e-4, KL anchors
   on the takes and on corpus windows), but for the length and β: the README's 200 steps at β 0.1 moved the model
   and raised test NLL just over the gate's 5 % (+5.1 % in a first run), so `--steps` and `--beta` take comma lists
   (default 50,100,150,200 × 0.1,0.3): one fine-tune runs per combination and one is **selected without test data**
   (`choose`): the highest preference score on the feedback's held-out records (the gate's measure) among the runs
   whose NLL on the corpus **valid** split rose by at most `--select-nll-budget` (4 %, a margin under the gate's 5 %
   on the test split). The chosen version then meets the real validation gate (`finetune.gate`, what `musegen models
   gate --promote` runs: test NLL on the parent's test split, held-out preference score). Versions go to a temporary
   user models folder (`MUSEGEN_USER_MODELS_DIR`), so nothing reaches the developer's.
5. Evaluation on **fresh** primes: `--eval-takes` excerpts of the corpus **test** split (no tune of it made
   feedback); parent and new version continue each with the same seed (`--seed` + i) and controls. Scores: the
   raters' utility without noise. Reported: means, the mean paired difference with a 95 % bootstrap interval, the
   paired effect size d_z = mean(diff) / sd(diff) (and Cohen's d with the pooled sd, ignoring the pairing), and the
   two-sided p-value of an exact-in-distribution sign-flip permutation test (`--flips` random flips, seeded): under
   H0 (the version changes nothing) each paired difference is as likely to have either sign. Also: every rater
   votes on every (parent, new) pair in a random order, and the new version's win rate (ties ½, skips left out).
6. Side effects are measured too: notes per bar, share of steps / repeated notes / leaps, pitch span; and the
   gate's test NLL change (must stay within +5 %).

Wall and process CPU time of every stage are recorded. The device is the CPU (`--device`; no GPU machine was lent to
the run committed in bench/results/feedback_loop.json).

    .venv/bin/python bench/feedback_loop.py [--pairs 400] [--ratings 400] [--eval-takes 400]
        [--steps 50,100,150,200] [--beta 0.1,0.3] [--seed 0] [--json bench/results/feedback_loop.json]
    .venv/bin/python bench/feedback_loop.py --steps 200 --beta 0.1      # the README's setting alone, no selection

Prints Markdown tables and writes the JSON. Needs the corpus cache (`musegen data stats` builds it).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import itertools
import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from musegen_core.controls import Controls
from musegen_core.evaluation import control_measures as measure
from musegen_core.evaluation import takes
from musegen_core.music import Piece
from musegen_core.training.card import cpu_name

RESULTS = Path(__file__).resolve().parent / "results" / "feedback_loop.json"
EMPTY_PENALTY = 12.0  # semitones: the utility of a take with fewer than two notes is −12 (raters dislike it)
TIE_MARGIN = 0.1  # semitones: takes this close in utility may be called a tie
TIE_RATE = 0.5  # ... with this probability
STAR_QUANTILES = (0.2, 0.4, 0.6, 0.8)  # of the feedback takes' utilities: the cut points between 1…5 stars
SPAMMER_SHARE = 0.4  # of all judgements, cast by the spammy rater
ENV = ("MUSEGEN_USER_MODELS_DIR", "MUSEGEN_DATA_DIR")  # pointed at the temporary folder while the loop runs
STEPS = [50, 100, 150, 200]  # the fine-tune settings tried by default (the README's: 200 steps, β 0.1) ...
BETAS = [0.1, 0.3]  # ... of which one is selected without test data (`choose`)
STEPWISE = 1.5  # semitones: a take whose mean interval is at most this is "mostly stepwise" (reported only)


@dataclass(frozen=True)
class SimRater:
    """A simulated rater: Bradley–Terry sharpness `k` (1/semitone), star noise `sigma` (semitones), chance of skipping
    a pair, and share of all judgements."""

    name: str
    k: float
    sigma: float
    skip: float
    share: float


def _raters() -> tuple[SimRater, ...]:
    careful = [("sim-attentive", 6.0, 0.15), ("sim-keen", 4.0, 0.25), ("sim-steady", 3.0, 0.35),
               ("sim-casual", 2.0, 0.5), ("sim-distracted", 1.5, 0.7)]  # fmt: skip
    share = (1 - SPAMMER_SHARE) / len(careful)
    return (*(SimRater(n, k, s, 0.03, share) for n, k, s in careful), SimRater("sim-spammy", 0.5, 1.5, 0.0,
                                                                                 SPAMMER_SHARE))  # fmt: skip


RATERS = _raters()


# ---------------------------------------------------------------------------------------------------------------
# The preference and the raters


def utility(take: Piece) -> float:
    """The raters' utility of a take (its notes from beat 0): −mean absolute interval in semitones."""
    notes = take.parts[0].notes if take.parts else ()
    return -measure.mean_interval(take) if len(notes) >= 2 else -EMPTY_PENALTY


def bt_probability(u_a: float, u_b: float, k: float) -> float:
    """Bradley–Terry: the probability that a rater of sharpness k prefers A, σ(k · (u_A − u_B))."""
    return 1.0 / (1.0 + math.exp(-k * (u_a - u_b)))


def pair_choice(rng: np.random.Generator, rater: SimRater, u_a: float, u_b: float) -> str:
    """The rater's vote: "a", "b", "tie" or "skip" (see the module docstring)."""
    if rng.random() < rater.skip:
        return "skip"
    if abs(u_a - u_b) < TIE_MARGIN and rng.random() < TIE_RATE:
        return "tie"
    return "a" if rng.random() < bt_probability(u_a, u_b, rater.k) else "b"


def star_cuts(utilities: Sequence[float]) -> np.ndarray:
    """The utilities at `STAR_QUANTILES` of the takes the raters hear: their scale from 1 to 5 stars."""
    return np.quantile(np.asarray(utilities, dtype=np.float64), STAR_QUANTILES)


def stars_for(rng: np.random.Generator, rater: SimRater, u: float, cuts: np.ndarray) -> int:
    """1 + the number of cut points below the rater's noisy utility."""
    return 1 + int(np.searchsorted(cuts, u + rng.normal(0.0, rater.sigma), side="right"))


# ---------------------------------------------------------------------------------------------------------------
# Statistics (numpy only)


def sign_flip_p(diffs: Sequence[float], flips: int, seed: int) -> float:
    """Two-sided p-value of the paired sign-flip permutation test of mean(diffs) = 0: the share of `flips` random
    sign assignments (seeded) whose |mean| reaches the observed |mean|, counting the observed assignment once
    ((1 + hits) / (1 + flips): never 0, exact in distribution for a Monte-Carlo test)."""
    d = np.asarray(diffs, dtype=np.float64)
    if len(d) == 0 or not np.any(d):
        return 1.0
    observed = abs(d.mean())
    rng = np.random.default_rng(seed)
    hits, done = 0, 0
    while done < flips:  # in chunks: flips × n signs need not fit in memory at once
        size = min(4096, flips - done)
        signs = rng.integers(0, 2, size=(size, len(d)), dtype=np.int8) * 2 - 1
        hits += int((np.abs(signs @ d) / len(d) >= observed - 1e-12).sum())
        done += size
    return (1 + hits) / (1 + flips)


def paired_d(diffs: Sequence[float]) -> float:
    """Paired effect size d_z = mean / sd (ddof 1) of the paired differences (0 when they do not vary)."""
    d = np.asarray(diffs, dtype=np.float64)
    sd = d.std(ddof=1) if len(d) > 1 else 0.0
    return float(d.mean() / sd) if sd > 0 else 0.0


def cohens_d(after: Sequence[float], before: Sequence[float]) -> float:
    """Cohen's d of two samples with the pooled sd (ddof 1): (mean(after) − mean(before)) / s_pooled."""
    a, b = np.asarray(after, dtype=np.float64), np.asarray(before, dtype=np.float64)
    pooled = math.sqrt(((len(a) - 1) * a.var(ddof=1) + (len(b) - 1) * b.var(ddof=1)) / (len(a) + len(b) - 2))
    return float((a.mean() - b.mean()) / pooled) if pooled > 0 else 0.0


def bootstrap_ci(diffs: Sequence[float], seed: int, draws: int = 10_000, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean paired difference (seeded)."""
    d = np.asarray(diffs, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, len(d), size=(draws, len(d)))].mean(axis=1)
    return float(np.quantile(means, (1 - level) / 2)), float(np.quantile(means, (1 + level) / 2))


def win_rate(choices: Sequence[str]) -> dict:
    """The share of votes the new take won ("new" / "old" / "tie" / "skip"), ties counting half, skips left out."""
    counts = Counter(choices)
    votes = counts["new"] + counts["old"] + counts["tie"]
    rate = (counts["new"] + 0.5 * counts["tie"]) / votes if votes else math.nan
    return {"win_rate": rate, "new": counts["new"], "parent": counts["old"], "ties": counts["tie"],
            "skips": counts["skip"], "votes": votes}  # fmt: skip


def describe(values: Sequence[float]) -> dict:
    v = np.asarray(values, dtype=np.float64)
    q = np.quantile(v, (0.1, 0.25, 0.5, 0.75, 0.9))
    return {"mean": float(v.mean()), "sd": float(v.std(ddof=1)), "n": len(v),
            "quantiles": dict(zip(("p10", "p25", "p50", "p75", "p90"), map(float, q), strict=True))}  # fmt: skip


# ---------------------------------------------------------------------------------------------------------------
# Measures of a take (side effects)


def take_measures(take: Piece, bars: int) -> dict:
    """What else a take is: notes per bar, shares of repeated notes / steps (1–2 semitones) / leaps (≥ 5), span."""
    pitches = np.array([n.pitch for n in take.parts[0].notes]) if take.parts else np.zeros(0)
    steps = np.abs(np.diff(pitches))

    def share(mask: np.ndarray) -> float:
        return float(mask.mean()) if len(steps) else math.nan

    return {
        "mean_interval": measure.mean_interval(take),
        "notes_per_bar": measure.onsets_per_bar(take, bars),
        "repeat_share": share(steps == 0),
        "step_share": share((steps >= 1) & (steps <= 2)),
        "leap_share": share(steps >= 5),
        "pitch_span": measure.pitch_span(take),
    }


# ---------------------------------------------------------------------------------------------------------------
# Timing


class Clock:
    """Wall and process-CPU seconds per stage."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.wall[name] = round(self.wall.get(name, 0.0) + time.perf_counter() - wall, 2)
            self.cpu[name] = round(self.cpu.get(name, 0.0) + time.process_time() - cpu, 2)


# ---------------------------------------------------------------------------------------------------------------
# The loop


@dataclass
class PoolTake:
    """A feedback take: the studio's take record, the prime's name and its utility."""

    take: object  # studio.Take
    prime: int  # index of its excerpt
    utility: float


def feedback_takes(model, info, excerpts: list[takes.Excerpt], per_prime: int, bars: int, seed: int) -> list[PoolTake]:
    """`per_prime` takes of every excerpt's prime (seeds seed + 1000·i + j), made as the Compose page makes them."""
    from musegen_core.studio import make_take

    pool = []
    for i, excerpt in enumerate(excerpts):
        prime = takes.prime_piece(excerpt)
        style = excerpt.style if excerpt.style in model.styles else None
        for j in range(per_prime):
            controls = Controls(bars=bars, seed=seed + 1000 * i + j, style=style)
            take = make_take(len(pool), model, info, prime, controls, prime_name=excerpt.tune.tune_id)
            pool.append(PoolTake(take, i, utility(take.continuation.generated_alone())))
    return pool


def cast_judgements(store, pool: list[PoolTake], n_pairs: int, n_ratings: int, seed: int) -> dict:
    """The raters' pair votes and star ratings, written through the store's API; returns what was cast."""
    from musegen_core.feedback import PairTake, PairVote
    from musegen_core.formats.midi import piece_to_midi
    from musegen_core.studio import rating_for

    rng = np.random.default_rng(seed)
    by_prime: dict[int, list[int]] = {}
    for index, item in enumerate(pool):
        by_prime.setdefault(item.prime, []).append(index)
    pairs = [p for group in by_prime.values() for p in itertools.combinations(group, 2)]
    shares = np.array([r.share for r in RATERS])
    cuts = star_cuts([item.utility for item in pool])
    cast: dict = {"pairs": Counter(), "ratings": Counter(), "choices": Counter(), "stars": Counter()}
    seen: set[tuple[str, int]] = set()

    for wanted, available, what in ((n_pairs, len(pairs), "pairs"), (n_ratings, len(pool), "takes")):
        if wanted > len(RATERS) * available // 2:
            raise SystemExit(f"{wanted} judgements of {available} {what}: raise --primes or --takes-per-prime")

    def rater_and(items: int) -> tuple[SimRater, int]:
        while True:  # a rater judges each pair or take at most once
            rater, item = RATERS[rng.choice(len(RATERS), p=shares)], int(rng.integers(items))
            if (rater.name, item) not in seen:
                seen.add((rater.name, item))
                return rater, item

    def side(take) -> PairTake:
        return PairTake(piece_to_midi(take.continuation.generated), take.model.name, take.model.version, take.seed,
                        take.controls)  # fmt: skip

    for _ in range(n_pairs):
        rater, index = rater_and(len(pairs))
        first, second = pairs[index]
        if rng.random() < 0.5:  # blind order
            first, second = second, first
        a, b = pool[first], pool[second]
        choice = pair_choice(rng, rater, a.utility, b.utility)
        store.add_pair_vote(PairVote(piece_to_midi(a.take.continuation.prime), side(a.take), side(b.take), choice,
                                     rater.name, prime_name=a.take.prime_name))  # fmt: skip
        cast["pairs"][rater.name] += 1
        cast["choices"][choice] += 1
    seen.clear()
    for _ in range(n_ratings):
        rater, index = rater_and(len(pool))
        stars = stars_for(rng, rater, pool[index].utility, cuts)
        store.add_rating(rating_for(pool[index].take, stars, rater=rater.name))
        cast["ratings"][rater.name] += 1
        cast["stars"][stars] += 1
    return {key: dict(sorted(value.items())) for key, value in cast.items()} | {"star_cuts": cuts.tolist()}


def export(url: str, out: Path, rater_cap: int) -> str:
    """`musegen feedback export OUT --db URL --rater-cap N` in this process; returns what it printed."""
    from musegen_core.cli import main as cli

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = cli(["feedback", "export", str(out), "--db", url, "--rater-cap", str(rater_cap)])
    if code != 0:
        raise SystemExit(f"musegen feedback export failed ({code}): {printed.getvalue()}")
    return printed.getvalue().strip()


def rater_weights(dataset) -> dict:
    """Per exported rater: records and their summed weight, for ratings and pairs."""
    table: dict[str, dict] = {}
    for kind, records in (("ratings", dataset.ratings), ("pairs", dataset.pairs)):
        for record in records:
            row = table.setdefault(record.rater, {"ratings": 0, "ratings_weight": 0.0, "pairs": 0, "pairs_weight": 0.0})
            row[kind] += 1
            row[f"{kind}_weight"] += record.weight
    return {rater: {k: round(v, 3) for k, v in row.items()} for rater, row in sorted(table.items())}


def evaluate(parent, candidate, excerpts: list[takes.Excerpt], bars: int, seed: int) -> dict:
    """Parent and candidate continue every excerpt's prime with the same seed and controls; utilities and measures."""
    from musegen_core.generate import continue_melody

    rows: dict[str, list] = {"parent": [], "new": []}
    identical = 0
    for i, excerpt in enumerate(excerpts):
        prime = takes.prime_piece(excerpt)
        style = excerpt.style if excerpt.style in parent.styles else None
        controls = Controls(bars=bars, seed=seed + i, style=style)
        made = [continue_melody(model, prime, controls).generated_alone() for model in (parent, candidate)]
        identical += made[0].parts[0].notes == made[1].parts[0].notes
        for key, take in zip(("parent", "new"), made, strict=True):
            rows[key].append((utility(take), take_measures(take, bars)))
    return {"utilities": {k: [u for u, _ in v] for k, v in rows.items()},
            "measures": {k: [m for _, m in v] for k, v in rows.items()}, "identical": identical}  # fmt: skip


def rater_votes(parent_u: Sequence[float], new_u: Sequence[float], seed: int) -> dict:
    """Every rater votes on every (parent, new) pair, shown in a random order; win rates overall and per rater."""
    rng = np.random.default_rng(seed)
    per_rater: dict[str, list[str]] = {r.name: [] for r in RATERS}
    for old, new in zip(parent_u, new_u, strict=True):
        for rater in RATERS:
            new_first = rng.random() < 0.5
            choice = pair_choice(rng, rater, *((new, old) if new_first else (old, new)))
            if choice in ("a", "b"):
                choice = "new" if (choice == "a") == new_first else "old"
            per_rater[rater.name].append(choice)
    everything = [c for choices in per_rater.values() for c in choices]
    return {"all": win_rate(everything), "by_rater": {name: win_rate(c) for name, c in per_rater.items()}}


SELECTION = (
    "the highest held-out feedback preference score among runs whose corpus valid-split NLL rose at most "
    "{budget:.0%} (else the smallest rise); no test data used"
)


def choose(runs: list[dict], budget: float) -> int:
    """The selection rule: among the runs whose valid-split NLL rose by at most `budget` (relative), the one with the
    highest held-out feedback preference score (ties: the earlier, i.e. fewer steps); if none stayed within the
    budget, the one whose NLL rose least."""
    within = [i for i, run in enumerate(runs) if run["valid_nll_change"] <= budget]
    if not within:
        return min(range(len(runs)), key=lambda i: runs[i]["valid_nll_change"])
    return max(within, key=lambda i: (runs[i]["heldout_preference_score"], -i))


def select(runs: list[dict], parent, valid_tunes: list, *, dataset_path: Path, budget: float, most: int | None,
           device: str) -> int:  # fmt: skip
    """Score every fine-tuned run on data the evaluation never sees — NLL on the corpus **valid** split and the
    preference score on the feedback's held-out records (`training.gate.preference_metrics`, the gate's measure) —
    add the numbers to `runs` and return the index `choose` picks."""
    from musegen_core.models import registry
    from musegen_core.models.checkpoint import load_checkpoint
    from musegen_core.training import finetune
    from musegen_core.training import gate as gates
    from musegen_core.training.preferences import read_feedback
    from musegen_core.training.train import _device

    where = _device(device)
    tunes = gates.pick_test_tunes(valid_tunes, most)
    settings = registry.model_info(runs[0]["version"]).lineage["finetune"]
    heldout = finetune.build_examples(parent, read_feedback(dataset_path), settings["holdout"],
                                      settings["split_seed"]).heldout  # fmt: skip
    parent = parent.to(where)
    before = gates.heldout_nll(parent, tunes, where)["bits_per_step"]
    before_pref = gates.preference_metrics(parent, heldout, where)
    for run in runs:
        model = load_checkpoint(registry.model_folder(run["version"])).model.to(where).eval()
        after = gates.heldout_nll(model, tunes, where)["bits_per_step"]
        pref = gates.preference_metrics(model, heldout, where)
        run |= {"valid_nll_change": after / before - 1, "valid_tunes": len(tunes),
                "heldout_preference_score": pref["score"], "parent_heldout_preference_score": before_pref["score"],
                "heldout_pair_accuracy": pref.get("pair_accuracy")}  # fmt: skip
    parent.cpu()
    return choose(runs, budget)


def mean_measures(rows: list[dict]) -> dict:
    return {key: float(np.nanmean([row[key] for row in rows])) for key in rows[0]}


def run(args: argparse.Namespace) -> dict:
    from musegen_core.feedback.dataset import load_dataset
    from musegen_core.feedback.store import FeedbackStore
    from musegen_core.models import registry
    from musegen_core.models.checkpoint import load_checkpoint
    from musegen_core.training import finetune
    from musegen_core.training.corpus import load_corpus

    clock = Clock()
    started_wall, started_cpu = time.perf_counter(), time.process_time()
    work = Path(tempfile.mkdtemp(prefix="musegen-feedback-loop-"))
    saved = {key: os.environ.get(key) for key in ENV}
    os.environ["MUSEGEN_USER_MODELS_DIR"] = str(work / "user-models")  # versions and promotions stay in here
    os.environ["MUSEGEN_DATA_DIR"] = str(work / "data")
    try:
        with clock.stage("corpus"):
            name = registry.resolve_model_name(args.model)
            info = registry.model_info(name)
            parent = registry.load_model(name)
            training = json.loads((registry.model_folder(name) / "config.json").read_text()).get("training", {})
            corpus = load_corpus(tuple(training["collections"]), seed=int(training.get("split_seed", 0)),
                                 progress=False)  # fmt: skip
            feedback_excerpts = takes.choose_excerpts(corpus.split("train"), args.primes, args.seed)
            eval_excerpts = takes.choose_excerpts(corpus.split("test"), args.eval_takes, args.seed)
            overlap = {e.tune.tune_id for e in feedback_excerpts} & {e.tune.tune_id for e in eval_excerpts}
            if overlap:
                raise SystemExit(f"feedback and evaluation primes share tunes: {sorted(overlap)[:5]}")
        with clock.stage("feedback_takes"):
            pool = feedback_takes(parent, info, feedback_excerpts, args.takes_per_prime, args.bars, args.seed)
        base = [item.utility for item in pool]
        pool_measures = [take_measures(p.take.continuation.generated_alone(), args.bars) for p in pool]
        base_measures = mean_measures(pool_measures)
        reference = [utility(takes.melody_piece(e.tune, e.reference[: args.bars * e.tune.bar_steps]))
                     for e in feedback_excerpts]  # fmt: skip

        url = f"sqlite:///{work / 'feedback.sqlite3'}"
        with clock.stage("judging_and_store"):
            store = FeedbackStore(url)
            try:
                cast = cast_judgements(store, pool, args.pairs, args.ratings, args.seed)
                counts = asdict(store.counts())
            finally:
                store.dispose()
        with clock.stage("export"):
            exported = export(url, work / "dataset", args.rater_cap)
        with clock.stage("load_dataset"):
            dataset = load_dataset(work / "dataset")
        print(exported, file=sys.stderr)

        settings = list(itertools.product(args.steps, args.beta))
        runs = []
        for steps, beta in settings:
            with clock.stage("finetune"):
                made = finetune.finetune(
                    name, work / "dataset", steps=steps, beta=beta, device=args.device, threads=1, seed=args.seed,
                    gate=False, promote=False,
                )  # fmt: skip
            meta = json.loads((made.folder / "config.json").read_text())
            runs.append({"version": made.name, "steps": steps, "beta": beta,
                         "train_seconds": meta["training"]["train_seconds"],
                         "total_seconds": meta["training"]["total_seconds"]})  # fmt: skip
        chosen = 0
        if len(runs) > 1:
            with clock.stage("selection"):
                chosen = select(runs, parent, corpus.split("valid"), dataset_path=work / "dataset",
                                budget=args.select_nll_budget, most=args.max_valid_tunes,
                                device=args.device)  # fmt: skip
        with clock.stage("gate"):
            gated = finetune.gate(runs[chosen]["version"], device=args.device, max_test_tunes=args.max_test_tunes,
                                  promote=True)  # fmt: skip
        version_folder = registry.model_folder(runs[chosen]["version"])
        version_meta = json.loads((version_folder / "config.json").read_text())
        candidate = load_checkpoint(version_folder).model.eval()
        verdict = gated.as_dict()

        with clock.stage("evaluation_takes"):
            evaluated = evaluate(parent, candidate, eval_excerpts, args.bars, args.seed)
        with clock.stage("statistics"):
            old, new = (np.array(evaluated["utilities"][k]) for k in ("parent", "new"))
            diffs = new - old
            low, high = bootstrap_ci(diffs, args.seed)
            comparison = {
                "takes_per_model": len(diffs),
                "parent_mean_utility": float(old.mean()),
                "new_mean_utility": float(new.mean()),
                "mean_difference": float(diffs.mean()),
                "mean_difference_ci95": [low, high],
                "sd_difference": float(diffs.std(ddof=1)),
                "paired_d": paired_d(diffs),
                "cohens_d": cohens_d(new, old),
                "p_value": sign_flip_p(diffs, args.flips, args.seed),
                "p_value_floor": 1 / (1 + args.flips),
                "t_statistic": paired_d(diffs) * math.sqrt(len(diffs)),
                "test": f"two-sided paired sign-flip permutation test, {args.flips} seeded random flips",
                "improved": int((diffs > 0).sum()),
                "worse": int((diffs < 0).sum()),
                "unchanged": int((diffs == 0).sum()),
                "identical_takes": evaluated["identical"],
                "parent_stepwise_share": float((-old <= STEPWISE).mean()),
                "new_stepwise_share": float((-new <= STEPWISE).mean()),
                "measures": {k: mean_measures(v) for k, v in evaluated["measures"].items()},
            }
            votes = rater_votes(old, new, args.seed)
            noiseless = float(((diffs > 0).sum() + 0.5 * (diffs == 0).sum()) / len(diffs))
    finally:
        for key, value in saved.items():
            os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)
        if args.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    clock.wall["total"] = round(time.perf_counter() - started_wall, 2)
    clock.cpu["total"] = round(time.process_time() - started_cpu, 2)
    ft = version_meta["training"]
    nll = verdict["nll"]
    return {
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "ratings": len(dataset.ratings),
        "pairs": len(dataset.pairs),
        "effect_size": comparison["paired_d"],
        "effect_size_kind": "paired d_z = mean / sd of the per-prime differences in utility (new − parent)",
        "p_value": comparison["p_value"],
        "win_rate": votes["all"]["win_rate"],
        "nll_change_pct": 100 * nll["change"],
        "device": "cuda" if str(ft.get("device", "cpu")).startswith("cuda") else "cpu",
        "cpu": cpu_name(),
        "gpu_lent": False,
        "torch_threads": ft.get("torch_threads"),
        "preference": {
            "utility": "−mean absolute interval between consecutive notes of the take (semitones); "
            f"−{EMPTY_PENALTY:g} for a take with fewer than two notes",
            "why": "stepwise (conjunct) melodies; the corpus, and so the base model, leaps freely",
            "pair_rule": f"Bradley–Terry P(A) = σ(k·(u_A − u_B)); a tie with probability {TIE_RATE} when "
            f"|u_A − u_B| < {TIE_MARGIN}; skips at the rater's rate",
            "star_rule": f"1 + number of cut points (quantiles {list(STAR_QUANTILES)} of the feedback takes' "
            "utilities) below u + N(0, σ²)",
        },
        "raters": [asdict(r) for r in RATERS],
        "base": {
            "model": name,
            "version": info.version,
            "feedback_takes": len(pool),
            "feedback_primes": len(feedback_excerpts),
            "utility": describe(base),
            "mean_interval": describe([-u for u in base]),
            "stepwise_share": float((-np.array(base) <= STEPWISE).mean()),
            "stepwise_threshold_semitones": STEPWISE,
            "measures": base_measures,
            "spearman_utility_vs_notes_per_bar": measure.spearman(base, [m["notes_per_bar"] for m in pool_measures]),
            "real_continuations_mean_interval": describe([-u for u in reference]),
            "parent_heldout_pair_accuracy": verdict["preference"]["parent"].get("pair_accuracy"),
        },
        "feedback": {
            "cast": cast,
            "store_counts": counts,
            "export": exported,
            "manifest_counts": dataset.manifest["counts"],
            "rater_cap": args.rater_cap,
            "weights_by_rater": rater_weights(dataset),
            "content_sha256": dataset.content_sha256,
            "split": "train",
        },
        "finetune": {
            "version": runs[chosen]["version"],
            "runs": runs,
            "chosen": chosen,
            "selection": None if len(runs) == 1 else SELECTION.format(budget=args.select_nll_budget),
            "settings": version_meta["lineage"]["finetune"],
            "dataset_counts": {
                k: v for k, v in version_meta["lineage"]["dataset"].items() if k not in ("path", "sha256")
            },
            "train_seconds": ft.get("train_seconds"),
            "total_seconds": ft.get("total_seconds"),
            "device": ft.get("device"),
            "last_losses": ft.get("history", [])[-5:],
        },
        "gate": verdict,
        "evaluation": comparison
        | {"split": "test", "primes": len(eval_excerpts), "bars": args.bars, "seeds": "--seed + prime index, both"},
        "rater_votes": votes,
        "noiseless_win_rate": noiseless,
        "seconds": clock.wall,
        "cpu_seconds": clock.cpu,
        "protocol": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
    }


def markdown(result: dict) -> str:
    ev, gate, base = result["evaluation"], result["gate"], result["base"]
    pref = gate["preference"]
    low, high = ev["mean_difference_ci95"]
    lines = [
        "| measure | parent | new version |",
        "|---|---:|---:|",
        f"| mean utility (−mean interval, semitones), {ev['takes_per_model']} fresh test primes | "
        f"{ev['parent_mean_utility']:.3f} | {ev['new_mean_utility']:.3f} |",
    ]
    for key, label in (("notes_per_bar", "notes per bar"), ("step_share", "share of steps (1–2 semitones)"),
                       ("repeat_share", "share of repeated notes"), ("leap_share", "share of leaps (≥ 5)"),
                       ("pitch_span", "pitch span (semitones)")):  # fmt: skip
        lines.append(f"| {label} | {ev['measures']['parent'][key]:.3f} | {ev['measures']['new'][key]:.3f} |")
    lines += [
        f"| mostly stepwise takes (mean interval ≤ {STEPWISE:g}) | {ev['parent_stepwise_share']:.1%} | "
        f"{ev['new_stepwise_share']:.1%} |",
        f"| test NLL, bits/step ({gate['nll'].get('tunes')} tunes) | {gate['nll']['parent_bits_per_step']:.4f} | "
        f"{gate['nll']['candidate_bits_per_step']:.4f} ({result['nll_change_pct']:+.2f} %) |",
        f"| held-out feedback preference score | {pref['parent']['score']:+.4f} | {pref['candidate']['score']:+.4f} |",
        f"| held-out pair accuracy | {pref['parent'].get('pair_accuracy', math.nan):.3f} | "
        f"{pref['candidate'].get('pair_accuracy', math.nan):.3f} |",
        "",
        "| result | value |",
        "|---|---:|",
        f"| feedback exported: ratings / pairs | {result['ratings']} / {result['pairs']} |",
        f"| base takes: mean interval (sd) | {base['mean_interval']['mean']:.2f} ({base['mean_interval']['sd']:.2f}) |",
        f"| mean paired difference in utility (95 % CI) | {ev['mean_difference']:+.3f} ({low:+.3f} … {high:+.3f}) |",
        f"| effect size: paired d_z / Cohen's d | {ev['paired_d']:.3f} / {ev['cohens_d']:.3f} |",
        f"| p (sign-flip permutation, two-sided; floor {ev['p_value_floor']:.1g}) | {ev['p_value']:.2g} |",
        f"| raters' win rate of new vs parent (noise-free) | {result['win_rate']:.3f} "
        f"({result['noiseless_win_rate']:.3f}) |",
        f"| gate | {'passed' if gate['passed'] else 'failed: ' + '; '.join(gate['reasons'])}"
        f"{' (promoted in the temporary user folder)' if gate.get('promoted') else ''} |",
        f"| device | {result['device']} ({result['cpu']}), {result['torch_threads']} torch thread(s) |",
    ]  # fmt: skip
    runs = result["finetune"]["runs"]
    if len(runs) > 1:
        lines += ["", "| fine-tune run | steps | β | valid NLL change | held-out preference (parent) | pair accuracy | "
                  "train s |", "|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
        for i, run in enumerate(runs):
            mark = " (chosen)" if i == result["finetune"]["chosen"] else ""
            lines.append(
                f"| {run['version']}{mark} | {run['steps']} | {run['beta']:g} | {run['valid_nll_change']:+.2%} | "
                f"{run['heldout_preference_score']:+.4f} ({run['parent_heldout_preference_score']:+.4f}) | "
                f"{run['heldout_pair_accuracy']:.3f} | {run['train_seconds']:.0f} |"
            )
    lines += ["", "| stage | wall s | CPU s |", "|---|---:|---:|"]
    seconds = result["seconds"].items()
    lines += [f"| {stage} | {wall:.1f} | {result['cpu_seconds'][stage]:.1f} |" for stage, wall in seconds]
    return "\n".join(lines)


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--model", default="lstm", help="parent: a model name or a family (its promoted model)")
    add("--pairs", type=int, default=400, help="pair votes the raters cast (skips included)")
    add("--ratings", type=int, default=400, help="star ratings the raters give")
    add("--primes", type=int, default=150, help="train-split excerpts continued for feedback")
    add("--takes-per-prime", type=int, default=4, help="takes (seeds) per feedback prime")
    add("--eval-takes", type=int, default=400, help="test-split primes continued by parent and new version")
    add("--bars", type=int, default=4, help="bars per take (Compare & Rate plays 4)")
    add("--steps", type=_ints, default=STEPS, help="fine-tune steps, a comma list: one fine-tune per value (× each "
        "β), one selected (--select-nll-budget); the README's setting is 200")  # fmt: skip
    add("--beta", type=_floats, default=BETAS, help="DPO β, a comma list (as --steps); the README's setting is 0.1")
    add("--select-nll-budget", type=float, default=0.04, help="selection among several runs: largest relative "
        "rise of the valid-split NLL allowed (the gate allows 0.05 on the test split)")  # fmt: skip
    add("--max-valid-tunes", type=int, default=None, help="selection: at most this many valid tunes (default: all)")
    add("--rater-cap", type=int, default=50, help="export's per-rater cap (README default 50)")
    add("--max-test-tunes", type=int, default=None, help="gate: at most this many test tunes (default: all)")
    add("--device", default="cpu", choices=["cpu", "cuda", "auto"], help="fine-tune device")
    add("--flips", type=int, default=100_000, help="random sign flips of the permutation test")
    add("--seed", type=int, default=0)
    add("--keep", action="store_true", help="keep the temporary folder (store, dataset, version) and print it")
    add("--json", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if min(args.pairs, args.ratings, args.primes, args.eval_takes, *args.steps) < 1 or args.takes_per_prime < 2:
        parser.error("--pairs, --ratings, --primes, --eval-takes and --steps must be ≥ 1, --takes-per-prime ≥ 2")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    torch.set_num_threads(1)
    result = run(args)
    print(markdown(result))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json} in {result['seconds']['total']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
