"""`musegen eval`: every installed model on the held-out test split, in one table and one JSON report.

    musegen eval [--json PATH] [--models a,b] [--takes N] [--seed S]

For each model: NLL per step (bits) on the whole test tunes (`training.train.tune_metrics`, the number the model
card reports) next to a Kneser–Ney n-gram fitted in the same run on the same train split (order ≤ 10 picked on
valid); Yang & Lerch overlap areas between its takes and the real continuations, per feature and per style
(`overlap`, protocol in `takes`); originality against the train split (`originality`); diversity and speed.
A row "real (valid)" scores real continuations of *valid* tunes exactly like a model's takes: the ceiling that
sample noise leaves at this number of takes, and how often real folk tunes share ≥ 2 bars with training tunes.
"""

from __future__ import annotations

import argparse
import datetime
import json
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from musegen_core.errors import ControlError, MusegenError
from musegen_core.evaluation import originality, report, takes
from musegen_core.evaluation.features import feature_table, melody_features
from musegen_core.evaluation.overlap import feature_overlaps, mean_overlap
from musegen_core.models.registry import list_models, load_model, model_info
from musegen_core.training.corpus import COLLECTIONS, CORPUS_VERSION, Corpus, load_corpus
from musegen_core.training.train import ngram_baselines, tune_metrics

DEFAULT_TAKES = 200  # excerpts (= takes per model); Yang & Lerch compare sets of ≥ 200 melodies
DIVERSITY_PRIMES = 25  # primes that get extra takes for the diversity measure
DIVERSITY_TAKES = 4  # takes per such prime (the first is the main take)
MIN_STYLE_TAKES = 10  # styles with fewer excerpts get no per-style overlap
NO_LIKELIHOOD_FAMILIES = ("gan",)  # families without a tractable NLL (a model may also set has_likelihood = False)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `musegen eval`."""
    parser.add_argument("--json", type=Path, default=None, help="also write the full report to this JSON file")
    parser.add_argument("--models", default=None, help="comma list of installed models (default: all)")
    parser.add_argument("--takes", type=int, default=DEFAULT_TAKES, help="test excerpts, one take each per model")
    parser.add_argument("--seed", type=int, default=0, help="picks the excerpts; take i is sampled with seed S + i")
    parser.add_argument("--collections", default=",".join(COLLECTIONS), help="comma list of corpora to test on")
    parser.add_argument("--max-tunes", type=int, default=None, help="per collection, for quick tests")
    parser.add_argument("--workers", type=int, default=2, help="corpus parser processes (first build only)")


def run(args: argparse.Namespace) -> int:
    """Evaluate, print the Markdown tables, write the JSON; returns a process exit code."""
    if args.takes < 2:
        raise ControlError(f"--takes must be at least 2 (received {args.takes})")
    torch.set_num_threads(1)  # speeds are reported for one thread; on a shared CPU also export OMP_WAIT_POLICY=PASSIVE
    names = _split(args.models) or [info.name for info in list_models()]
    for name in names:
        model_info(name)  # an unknown name fails here (CheckpointError naming the installed ones), not after the corpus
    result = evaluate(
        names, count=args.takes, seed=args.seed, collections=_split(args.collections),
        max_tunes=args.max_tunes, workers=args.workers,
    )  # fmt: skip
    print(report.markdown(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rounded(result), indent=2, allow_nan=False) + "\n")
        print(f"wrote {args.json}")
    return 0


def _split(text: str | None) -> list[str]:
    return [item.strip() for item in (text or "").split(",") if item.strip()]


def rounded(value: object, digits: int = 4) -> object:
    """A copy of a JSON-like report with floats (and numpy scalars) rounded to `digits` decimals."""
    if isinstance(value, dict):
        return {key: rounded(item, digits) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [rounded(item, digits) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    return round(value, digits) if isinstance(value, float) else value


class Context:
    """What every model is judged against, built once per run: the excerpts of one held-out split and their real
    continuations' features, the copy index of the train split and the n-gram baseline.

    `musegen eval` judges on the test split. Choosing a setting (e.g. `bench/vae_noise.py`) must use `split="valid"`
    instead, so that the test split stays unseen; such a run needs no n-gram baseline (`baseline=False`), whose
    numbers are test-split numbers.
    """

    def __init__(self, corpus: Corpus, count: int, seed: int, split: str = "test", baseline: bool = True) -> None:
        if baseline and split != "test":
            raise ValueError(f"the n-gram baseline is scored on the test split (received split={split!r})")
        start = time.perf_counter()
        self.corpus, self.split = corpus, split
        self.tunes = corpus.split(split)
        self.excerpts = takes.choose_excerpts(self.tunes, count, seed)
        if len(self.excerpts) < 2:
            raise MusegenError(f"only {len(self.excerpts)} {split} tunes are long enough for the protocol")
        self.reference = feature_table([_features(e.reference, e.tune.bar_steps) for e in self.excerpts])
        self.index = originality.CopyIndex([tune.tokens for tune in corpus.split("train")])
        self.baseline = _baseline(corpus) if baseline else None
        self.seconds = time.perf_counter() - start

    def style_rows(self) -> dict[str, np.ndarray]:
        """Style → indices of its excerpts."""
        return _rows_by_style([excerpt.style for excerpt in self.excerpts])


def _rows_by_style(styles: list[str]) -> dict[str, np.ndarray]:
    groups = defaultdict(list)
    for row, style in enumerate(styles):
        groups[style].append(row)
    return {style: np.array(rows) for style, rows in sorted(groups.items())}


def _features(tokens: np.ndarray, bar_steps: int) -> dict[str, np.ndarray]:
    return melody_features(tokens, bar_steps, takes.BARS)


def _baseline(corpus: Corpus) -> dict:
    scores = ngram_baselines(corpus)
    return {
        "name": f"Kneser–Ney {scores['kn_best_order']}-gram",
        "nll_bits_per_step": scores["kn_best_test_bits"],
        "order": scores["kn_best_order"],
        "valid_bits_per_step": scores["kn_best_valid_bits"],
        "bigram_bits_per_step": scores["kn_bigram_test_bits"],
        "unigram_bits_per_step": scores["unigram_test_bits"],
    }


def evaluate(
    names: list[str],
    *,
    count: int = DEFAULT_TAKES,
    seed: int = 0,
    collections: list[str] | None = None,
    max_tunes: int | None = None,
    workers: int = 2,
    progress: bool = True,
) -> dict:
    """The whole report: `baseline` (n-gram), `models` (name → metrics), `families`, `real` (valid continuations
    scored like takes), `protocol`, `corpus`, timings. `report.markdown` turns it into tables.

    Args:
        names: installed models to evaluate.
        count: test excerpts (one take per model each); seed: picks them, take i is sampled with seed + i.
        collections, max_tunes, workers: which corpus to load (see `training.corpus.load_corpus`).
        progress: show progress bars.
    """
    start = time.perf_counter()
    corpus = load_corpus(collections or list(COLLECTIONS), max_tunes=max_tunes, workers=workers, progress=progress)
    context = Context(corpus, count, seed)
    models = {name: evaluate_model(name, context, seed, progress) for name in names}
    return {
        "split": context.split,
        "baseline": context.baseline,
        "models": models,
        "families": _families(models),
        "real": _real_ceiling(context, seed),
        "protocol": _protocol(context, count, seed),
        "corpus": {"collections": sorted({t.collection for t in corpus.tunes}), "version": CORPUS_VERSION}
        | corpus.counts(),
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "seconds": {"context": round(context.seconds, 1), "total": round(time.perf_counter() - start, 1)},
    }


def evaluate_model(name: str, context: Context, seed: int, progress: bool = True) -> dict:
    """Every metric of one installed model (see the module docstring)."""
    start = time.perf_counter()
    model, info = load_model(name), model_info(name)
    main = sample_takes(model, context.excerpts, seed, desc=f"sampling {name}", progress=progress)
    scores = set_scores([t.tokens for t in main], context.excerpts, context)
    nll = _nll(model, info.family, context)
    return {
        "family": info.family,
        "version": info.version,
        "trained_on": list(info.trained_on),
        "style_conditioned": bool(getattr(model, "styles", ())),
        "nll_bits_per_step": nll,
        "nll_vs_baseline": None if nll is None else nll / context.baseline["nll_bits_per_step"] - 1,
        **scores,
        "diversity": _diversity(model, context, main, seed),
        "ms_per_bar": ms_per_bar(main),
        "takes": len(main),
        "seconds": round(time.perf_counter() - start, 1),
    }


def sample_takes(
    model: object, excerpts: list[takes.Excerpt], seed: int, desc: str = "sampling", progress: bool = True
) -> list[takes.Take]:
    """One take per excerpt, take `i` with seed `seed + i`, after one warm-up take (first-call costs stay out of
    the speed)."""
    takes.sample_take(model, excerpts[0], seed)
    return [
        takes.sample_take(model, excerpt, seed + i)
        for i, excerpt in enumerate(tqdm(excerpts, desc=desc, disable=not progress))
    ]


def ms_per_bar(main: list[takes.Take]) -> float:
    """Median wall time per generated bar of a set of takes, in ms."""
    return 1000 * float(np.median([t.seconds for t in main])) / takes.BARS


def _nll(model: torch.nn.Module, family: str, context: Context) -> float | None:
    """Bits per step on the context's split, or None for a family without a likelihood."""
    if family in NO_LIKELIHOOD_FAMILIES or not getattr(model, "has_likelihood", True):
        return None
    return float(tune_metrics(model, context.tunes, torch.device("cpu"))["nll_bits_per_step"])


def set_scores(melodies: list[np.ndarray], sources: list[takes.Excerpt], context: Context) -> dict:
    """Overlap with the context's reference set (the real continuations of its excerpts; overall and per style) and
    originality against the train split of a set of melodies; melody `i` continues `sources[i]` (its meter and
    style)."""
    features = feature_table([_features(m, e.tune.bar_steps) for m, e in zip(melodies, sources, strict=True)])
    overlaps = feature_overlaps(features, context.reference)
    copies = [context.index.report(m, e.tune.bar_steps) for m, e in zip(melodies, sources, strict=True)]
    return {
        "overlap_mean": mean_overlap(overlaps),
        "overlap": {k: v["overlap"] for k, v in overlaps.items()},
        "intra_overlap_mean": mean_overlap(overlaps, "intra_overlap"),
        "intra_overlap": {k: v["intra_overlap"] for k, v in overlaps.items()},
        "overlap_by_style": _style_overlaps(features, [e.style for e in sources], context),
        **originality.summarise(copies),
    }


def _style_overlaps(features: dict[str, np.ndarray], styles: list[str], context: Context) -> dict[str, dict]:
    """Overlap per style, for styles with at least `MIN_STYLE_TAKES` melodies on both sides."""
    reference_rows, result = context.style_rows(), {}
    for style, rows in _rows_by_style(styles).items():
        real = reference_rows.get(style, np.zeros(0, int))
        if min(len(rows), len(real)) < MIN_STYLE_TAKES:
            continue
        overlaps = feature_overlaps({k: v[rows] for k, v in features.items()},
                                    {k: v[real] for k, v in context.reference.items()})  # fmt: skip
        result[style] = {
            "takes": len(rows),
            "overlap_mean": mean_overlap(overlaps),
            "overlap": {k: v["overlap"] for k, v in overlaps.items()},
        }
    return result


def _diversity(model: object, context: Context, main: list[takes.Take], seed: int) -> float:
    """Mean diversity over `DIVERSITY_PRIMES` primes spread over the excerpts, `DIVERSITY_TAKES` takes each."""
    count = len(context.excerpts)
    chosen = np.unique(np.linspace(0, count - 1, min(DIVERSITY_PRIMES, count)).astype(int))
    values = []
    for i in chosen:
        excerpt = context.excerpts[i]
        extra = [takes.sample_take(model, excerpt, seed + i + k * count) for k in range(1, DIVERSITY_TAKES)]
        values.append(takes.diversity([main[i].tokens] + [t.tokens for t in extra], excerpt.tune.bar_steps))
    return float(np.mean(values))


def _real_ceiling(context: Context, seed: int) -> dict:
    """Real continuations of valid tunes, chosen like the test excerpts (same count and style quotas as far as the
    valid split allows), scored like a model's takes (against the test references)."""
    valid = takes.choose_excerpts(context.corpus.split("valid"), len(context.excerpts), seed)
    if len(valid) < 2:
        return {"note": f"only {len(valid)} valid excerpts: not computed"}
    styles = defaultdict(int)
    for excerpt in valid:
        styles[excerpt.style] += 1
    scores = set_scores([e.reference for e in valid], valid, context)
    return {"takes": len(valid), "excerpts_by_style": dict(sorted(styles.items())), **scores}


def _families(models: dict[str, dict]) -> dict[str, dict]:
    """Per family: its models and the mean of their headline numbers."""
    grouped = defaultdict(list)
    for name, entry in models.items():
        grouped[entry["family"]].append(name)
    keys = ("nll_bits_per_step", "overlap_mean", "copy_rate_2bars", "diversity", "ms_per_bar")
    return {
        family: {"models": names}
        | {key: _mean([models[n][key] for n in names if models[n][key] is not None]) for key in keys}
        for family, names in sorted(grouped.items())
    }


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def _protocol(context: Context, count: int, seed: int) -> dict:
    styles = defaultdict(int)
    for excerpt in context.excerpts:
        styles[excerpt.style] += 1
    return {
        "excerpts": len(context.excerpts),
        "requested": count,
        "excerpts_by_style": dict(sorted(styles.items())),
        "excerpt_seed": seed,
        "take_seeds": f"{seed}..{seed + len(context.excerpts) - 1} (take i: seed + i)",
        "prime_bars": takes.PRIME_BARS,
        "generated_bars": takes.BARS,
        "temperature": takes.TEMPERATURE,
        "top_p": 1.0,
        "reference": "the same test tunes' real next bars",
        "overlap": "Yang & Lerch 2018: OA(KDE of reference intra-set distances, KDE of generated-vs-reference)",
        "style_grouping": "style of the prime's tune (also the requested style for style-conditioned models)",
        "copy": f"runs of ≥ {originality.GRAM + 1} notes, transposition-invariant; 'copies' = spans ≥ "
        f"{originality.COPY_BARS} bars of the take's meter (see musegen_core/evaluation/originality.py)",
        "copy_index_ngrams": len(context.index),
        "diversity": f"{DIVERSITY_TAKES} takes of each of {DIVERSITY_PRIMES} primes; ½(TV pitch-class + TV length)",
        "speed": "continue_melody wall time per generated bar, median over takes, CPU, 1 torch thread",
        "torch_threads": torch.get_num_threads(),
    }
