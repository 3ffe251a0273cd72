"""Train and evaluate the style classifier (`musegen_core.evaluation.style_classifier`).

    musegen style-classifier train [--out models/style-classifier] [--seed 0]
    musegen style-classifier eval [--json bench/results/style_classifier.json]

Data: 8-bar windows (`takes.BARS`, the length `musegen eval` compares) that start on a bar line and hold at least one
note, up to `WINDOWS_PER_TUNE` per tune at seeded random bar lines, from the same corpus and split as `musegen eval`
(all collections, split seed 0). Training: every (hidden size, L2 weight) of `GRID` is fitted on the train windows
(Adam, cosine learning-rate decay, cross-entropy with each style weighted equally, so the posteriors assume a uniform
prior); the one with the best *balanced* accuracy (mean per-style recall) on the valid windows is kept — it is
trained on train windows only. The test split is scored once, at the end: on test windows, and on the exact real
continuations `musegen eval` compares takes with (`takes.choose_excerpts(test tunes, 200, seed 0)`), whose per-style
hit rate is the bar a generator's takes must reach. The same fit without the meter features is reported too: meter
comes with the prime, so it is the share of the accuracy that a take's own notes do not earn.
"""

from __future__ import annotations

import argparse
import datetime
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from musegen_core.evaluation import takes
from musegen_core.evaluation.features import notes_of
from musegen_core.evaluation.style_classifier import (
    FEATURE_NAMES,
    MERGED_FIDDLE,
    StyleClassifier,
    StyleNet,
    confusion_matrix,
    feature_matrix,
    shipped_dir,
    style_hits,
)
from musegen_core.training.card import cpu_name
from musegen_core.training.corpus import COLLECTIONS, CORPUS_VERSION, SPLITS, STYLES, Corpus, Tune, load_corpus

WINDOWS_PER_TUNE = 4
GRID = tuple((hidden, l2) for hidden in (0, 32, 128) for l2 in (1e-4, 1e-3, 3e-3, 1e-2))  # (hidden units, L2)
EPOCHS, BATCH, LR = 40, 256, 3e-3
EXCERPTS, EXCERPT_SEED = 200, 0  # as `musegen eval` (harness.DEFAULT_TAKES, seed 0)
DEFAULT_JSON = Path("bench/results/style_classifier.json")


@dataclass(frozen=True)
class Windows:
    """Melody windows of one split: (tokens, bar_steps) pairs, their styles and how many tunes they come from."""

    melodies: list[tuple[np.ndarray, int]]
    styles: list[str]
    tunes: int


def tune_windows(tune: Tune, count: int, rng: np.random.Generator, bars: int = takes.BARS) -> list[np.ndarray]:
    """Up to `count` windows of `bars` bars of one tune, each starting on a distinct bar line drawn with `rng` and
    holding at least one note, in tune order."""
    pickup = (tune.bar_steps - tune.offset_steps) % tune.bar_steps
    length = bars * tune.bar_steps
    starts = np.arange(pickup, len(tune.tokens) - length + 1, tune.bar_steps)
    chosen = np.sort(rng.permutation(starts)[:count]) if len(starts) else starts
    windows = [tune.tokens[start : start + length] for start in chosen]
    return [window for window in windows if len(notes_of(window))]


def split_windows(corpus: Corpus, split: str, seed: int, per_tune: int = WINDOWS_PER_TUNE) -> Windows:
    """The windows of one split (seeded per split, so every split's windows are fixed by `seed`)."""
    rng = np.random.default_rng([seed, SPLITS.index(split)])
    melodies, styles, tunes = [], [], 0
    for tune in corpus.split(split):
        windows = tune_windows(tune, per_tune, rng)
        melodies += [(window, tune.bar_steps) for window in windows]
        styles += [tune.style] * len(windows)
        tunes += bool(windows)
    return Windows(melodies, styles, tunes)


def fit(x: np.ndarray, labels: np.ndarray, styles: int, hidden: int, l2: float, seed: int) -> StyleNet:
    """A `StyleNet` fitted to features `x` (rows) and style indices `labels`: standardisation from `x`, then
    `EPOCHS` epochs of Adam on class-balanced cross-entropy + `l2` × the sum of squared weights."""
    torch.manual_seed(seed)
    inputs, targets = torch.from_numpy(x).float(), torch.from_numpy(labels).long()
    net = StyleNet(x.shape[1], styles, hidden)
    spread = inputs.std(dim=0)
    net.mean.copy_(inputs.mean(dim=0))
    net.scale.copy_(torch.where(spread > 0, spread, torch.ones_like(spread)))
    counts = torch.bincount(targets, minlength=styles).float()
    weights = torch.where(counts > 0, counts.sum() / (styles * counts.clamp(min=1)), torch.zeros_like(counts))
    optimiser = torch.optim.Adam(net.parameters(), lr=LR)
    batches = -(-len(targets) // BATCH)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, EPOCHS * batches)
    generator = torch.Generator().manual_seed(seed)
    net.train()
    for _ in range(EPOCHS):
        order = torch.randperm(len(targets), generator=generator)
        for batch in order.split(BATCH):
            loss = F.cross_entropy(net(inputs[batch]), targets[batch], weight=weights) + l2 * net.weight_penalty()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
    return net.eval()


def _predict(net: StyleNet, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return net(torch.from_numpy(x).float()).argmax(dim=1).numpy()


def scores(predicted: list[str], wanted: list[str], styles: tuple[str, ...]) -> dict:
    """Accuracy (5-way, merged fiddle styles, balanced), per-style recall and the confusion matrix."""
    hits, matrix = style_hits(predicted, wanted), confusion_matrix(predicted, wanted, styles)
    return {
        "count": hits["count"],
        "accuracy": hits["hit_rate"],
        "accuracy_merged": hits["hit_rate_merged"],
        "balanced_accuracy": hits["balanced_hit_rate"],
        "recall": {style: hits["by_style"][style]["hit_rate"] for style in styles if style in hits["by_style"]},
        "precision": {style: _precision(matrix, i) for i, style in enumerate(styles) if style in hits["by_style"]},
        "count_by_style": {style: hits["by_style"][style]["count"] for style in styles if style in hits["by_style"]},
        "confusion": {"styles": list(styles), "rows_true_columns_predicted": matrix},
    }


def _precision(matrix: list[list[int]], column: int) -> float | None:
    """Share of the melodies predicted as style `column` that are of that style (None if none is predicted)."""
    predicted = sum(row[column] for row in matrix)
    return matrix[column][column] / predicted if predicted else None


def train_classifier(
    corpus: Corpus, seed: int = 0, progress: bool = True, command: str = ""
) -> tuple[StyleClassifier, dict]:
    """Fit the grid, keep the best on valid, score it on test; returns the classifier (its `meta` holds the
    training report, metrics and licences) and the training report. `command` is recorded as how to reproduce it."""
    started = time.perf_counter()
    styles = tuple(style for style in STYLES if any(tune.style == style for tune in corpus.tunes))
    windows = {split: split_windows(corpus, split, seed) for split in SPLITS}
    x = {split: feature_matrix(w.melodies) for split, w in windows.items()}
    y = {split: np.array([styles.index(s) for s in w.styles], dtype=np.int64) for split, w in windows.items()}
    feature_seconds = time.perf_counter() - started
    search = []
    for hidden, l2 in GRID:
        net = fit(x["train"], y["train"], len(styles), hidden, l2, seed)
        valid = scores([styles[i] for i in _predict(net, x["valid"])], windows["valid"].styles, styles)
        search.append({"hidden": hidden, "l2": l2, "valid_balanced_accuracy": valid["balanced_accuracy"],
                       "valid_accuracy": valid["accuracy"], "net": net})  # fmt: skip
        if progress:
            print(f"hidden {hidden:3d}, L2 {l2:g}: valid balanced accuracy {valid['balanced_accuracy']:.4f}")
    best = max(search, key=lambda entry: entry["valid_balanced_accuracy"])  # ties: the first (smaller) in GRID
    grid_seconds = time.perf_counter() - started - feature_seconds
    classifier = StyleClassifier(best["net"], styles)
    without_meter = _without_meter(x, y, windows, styles, best, seed)
    report = {
        "command": command,
        "seed": seed,
        "windows_per_tune": WINDOWS_PER_TUNE,
        "bars": takes.BARS,
        "windows": {split: len(w.styles) for split, w in windows.items()},
        "tunes": {split: w.tunes for split, w in windows.items()},
        "collections": sorted({tune.collection for tune in corpus.tunes}),
        "corpus_version": CORPUS_VERSION,
        "epochs": EPOCHS, "batch_size": BATCH, "lr": LR, "loss": "class-balanced cross-entropy + L2 on weights",
        "hidden": best["hidden"], "l2": best["l2"],
        "search": [{key: value for key, value in entry.items() if key != "net"} for entry in search],
        "parameters": sum(p.numel() for p in best["net"].parameters()),
        "seconds": {"features": round(feature_seconds, 1), "grid": round(grid_seconds, 1)},
        "cpu": cpu_name(), "torch_threads": torch.get_num_threads(),
    }  # fmt: skip
    metrics = {
        "valid": scores(classifier.predict_batch(windows["valid"].melodies), windows["valid"].styles, styles),
        "test": scores(classifier.predict_batch(windows["test"].melodies), windows["test"].styles, styles),
        "reference_excerpts": reference_scores(classifier, corpus),
        "without_meter": without_meter,
    }
    report["seconds"]["total"] = round(time.perf_counter() - started, 1)
    classifier.meta = {"info": _info(report["collections"]), "training": report, "metrics": metrics}
    return classifier, report


def _without_meter(x: dict, y: dict, windows: dict, styles: tuple[str, ...], best: dict, seed: int) -> dict:
    """The chosen setting refitted without the `meter` group: valid and test accuracy."""
    keep = np.array([not name.startswith("meter.") for name in FEATURE_NAMES])
    net = fit(x["train"][:, keep], y["train"], len(styles), best["hidden"], best["l2"], seed)
    result = {}
    for split in ("valid", "test"):
        found = scores([styles[i] for i in _predict(net, x[split][:, keep])], windows[split].styles, styles)
        result[split] = {key: found[key] for key in ("accuracy", "accuracy_merged", "balanced_accuracy", "recall")}
    return result


def reference_excerpts(corpus: Corpus) -> list[takes.Excerpt]:
    """The test excerpts `musegen eval` draws (200, seed 0): their `reference` is the real continuation."""
    return takes.choose_excerpts(corpus.split("test"), EXCERPTS, EXCERPT_SEED)


def reference_scores(classifier: StyleClassifier, corpus: Corpus) -> dict:
    """The classifier on the real continuations of `musegen eval`'s excerpts: the per-style bar for generators."""
    excerpts = reference_excerpts(corpus)
    melodies = [(excerpt.reference, excerpt.tune.bar_steps) for excerpt in excerpts]
    wanted = [excerpt.style for excerpt in excerpts]
    return {"excerpts": EXCERPTS, "seed": EXCERPT_SEED} | scores(
        classifier.predict_batch(melodies), wanted, classifier.styles
    )


def evaluate(classifier: StyleClassifier, corpus: Corpus) -> dict:
    """Test windows (drawn with the classifier's training seed) and `musegen eval`'s reference excerpts."""
    seed = int(classifier.meta.get("training", {}).get("seed", 0))
    test = split_windows(corpus, "test", seed)
    return {
        "styles": list(classifier.styles),
        "features": len(FEATURE_NAMES),
        "hidden": classifier.hidden,
        "test_windows": {"seed": seed, "tunes": test.tunes}
        | scores(classifier.predict_batch(test.melodies), test.styles, classifier.styles),
        "reference_excerpts": reference_scores(classifier, corpus),
        "without_meter": classifier.meta.get("metrics", {}).get("without_meter"),
        "corpus": {"collections": sorted({t.collection for t in corpus.tunes}), "version": CORPUS_VERSION}
        | corpus.counts(),
    }


def _info(collections: list[str]) -> dict:
    return {
        "description": "independent melody style classifier (hand-made features + small network); not a generator",
        "trained_on": [COLLECTIONS[name].licence for name in collections],
        "commercial_use_cleared": all(COLLECTIONS[name].commercial_use for name in collections),
    }


# ---------------------------------------------------------------------------------------------------------------
# Model card


def card_text(classifier: StyleClassifier) -> str:
    """The README.md of a trained classifier, from its `meta` (training report, metrics, licences)."""
    meta, styles = classifier.meta, classifier.styles
    training, metrics = meta["training"], meta["metrics"]
    test, references, without = metrics["test"], metrics["reference_excerpts"], metrics["without_meter"]["test"]
    licences = "\n".join(f"- **{name}** — {COLLECTIONS[name].licence}" for name in training["collections"])
    commercial = (
        "**Commercial use: cleared** — public-domain data only."
        if meta["info"]["commercial_use_cleared"]
        else "**Commercial use: NOT cleared** — trained on the Essen collection, which may be used for non-commercial "
        "purposes only."
    )
    hidden, seconds = training["hidden"], training["seconds"]
    model = f"a network with one hidden ReLU layer of {hidden}" if hidden else "multinomial logistic regression"
    search = "\n".join(
        f"| {e['hidden']} | {e['l2']:g} | {e['valid_accuracy']:.3f} | {e['valid_balanced_accuracy']:.3f} |"
        for e in training["search"]
    )
    return f"""# style-classifier — independent melody style classifier

Tells which of {", ".join(f"`{s}`" for s in styles)} an 8-bar melody sounds like.
Input: {len(FEATURE_NAMES)} transposition-invariant features of its notes and its meter (tonic-relative pitch-class
histogram from a Krumhansl–Kessler key estimate, interval and note-length histograms, pitch spread, beat phase,
syncopation, rests, notes per bar, meter; see `musegen_core/evaluation/style_classifier.py`).
Model: {model} ({training["parameters"]:,} parameters).
It shares no weights with any generator and is **not a generator**: the model registry and the picker leave it out.
It checks that generated takes sound like the requested style.

## Data and licences
{licences}

{commercial}

Windows of {training["bars"]} bars that start on a bar line, up to {training["windows_per_tune"]} per tune at seeded
random bar lines, from the corpus and split `musegen eval` uses (collections {", ".join(training["collections"])};
corpus v{training["corpus_version"]}, split seed 0):
{_counts(training, "train")} train, {_counts(training, "valid")} valid, {_counts(training, "test")} test.

## Training
Standardised features; Adam (lr {training["lr"]:g}, cosine decay), {training["epochs"]} epochs in batches of
{training["batch_size"]}; {training["loss"]}, every style weighted equally (so the posteriors assume a uniform prior).
Hidden size and L2 weight chosen by balanced accuracy (mean per-style recall) on the valid windows:

| hidden | L2 | valid accuracy | valid balanced accuracy |
| ---: | ---: | ---: | ---: |
{search}

Chosen: hidden {hidden}, L2 {training["l2"]:g}.
Time: features {seconds["features"]} s, grid {seconds["grid"]} s, whole run {seconds["total"]} s
on {training["cpu"]} ({training["torch_threads"]} torch thread).

Reproduce: `{training["command"]}`; `musegen style-classifier eval` scores it again.

## Test results
Test windows ({test["count"]:,}): **accuracy {test["accuracy"]:.3f}**; with `irish` and `american_fiddle` merged
**{test["accuracy_merged"]:.3f}**; balanced accuracy {test["balanced_accuracy"]:.3f}.
Without the meter features (a take's meter comes with its prime): accuracy {without["accuracy"]:.3f}, merged
{without["accuracy_merged"]:.3f}, balanced {without["balanced_accuracy"]:.3f}.

The {references["count"]} real continuations that `musegen eval` compares takes with (test excerpts, seed
{references["seed"]}): accuracy {references["accuracy"]:.3f}, merged {references["accuracy_merged"]:.3f}.
Their per-style hit rate is the bar a generator's takes must reach:

{_recall_table(test, references)}

Confusion matrix on the test windows (rows: true style, columns: predicted):

{_confusion_table(test["confusion"])}
"""


def _counts(training: dict, split: str) -> str:
    return f"{training['windows'][split]:,} windows of {training['tunes'][split]:,} tunes"


def _recall_table(test: dict, references: dict) -> str:
    header = (
        "| style | test windows | recall | precision | eval references | hit rate |\n"
        "| --- | ---: | ---: | ---: | ---: | ---: |"
    )
    rows = [
        f"| {style} | {test['count_by_style'][style]} | {test['recall'][style]:.3f} | "
        f"{_number(test['precision'][style])} | {references['count_by_style'].get(style, 0)} | "
        f"{_number(references['recall'].get(style))} |"
        for style in test["recall"]
    ]
    return "\n".join([header, *rows])


def _number(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def _confusion_table(confusion: dict) -> str:
    styles, matrix = confusion["styles"], confusion["rows_true_columns_predicted"]
    header = "| true \\ predicted | " + " | ".join(styles) + " |\n| --- |" + " ---: |" * len(styles)
    rows = [f"| {style} | " + " | ".join(str(n) for n in row) + " |" for style, row in zip(styles, matrix, strict=True)]
    return "\n".join([header, *rows])


# ---------------------------------------------------------------------------------------------------------------
# Command line: `musegen style-classifier train|eval`


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `train` and `eval` subcommands of `musegen style-classifier`."""
    commands = parser.add_subparsers(dest="style_command", required=True)
    train = commands.add_parser("train", help="fit on train windows, choose on valid, score on test, save")
    train.add_argument("--out", type=Path, default=None, help="folder to write (default: models/style-classifier)")
    train.add_argument("--seed", type=int, default=0, help="window draws and initialisation")
    train.add_argument("--workers", type=int, default=2, help="corpus parser processes (first build only)")
    train.set_defaults(run=run_train)
    evaluation = commands.add_parser("eval", help="score a saved classifier on test windows and eval references")
    evaluation.add_argument("--model", type=Path, default=None, help="classifier folder (default: the shipped one)")
    evaluation.add_argument("--json", type=Path, default=None, help=f"also write the report here (e.g. {DEFAULT_JSON})")
    evaluation.add_argument("--workers", type=int, default=2, help="corpus parser processes (first build only)")
    evaluation.set_defaults(run=run_eval)


def _corpus(workers: int) -> Corpus:
    """The corpus exactly as `musegen eval` loads it (all collections, split seed 0)."""
    return load_corpus(list(COLLECTIONS), workers=workers)


def run_train(args: argparse.Namespace) -> int:
    torch.set_num_threads(1)  # on a shared CPU also export OMP_WAIT_POLICY=PASSIVE
    out = args.out or shipped_dir()
    command = f"musegen style-classifier train --seed {args.seed}" + (f" --out {args.out}" if args.out else "")
    classifier, report = train_classifier(_corpus(args.workers), seed=args.seed, command=command)
    folder = classifier.save(out, card_text(classifier))
    test = classifier.meta["metrics"]["test"]
    print(
        f"wrote {folder}: hidden {report['hidden']}, L2 {report['l2']:g}; test accuracy {test['accuracy']:.3f}, "
        f"merged {test['accuracy_merged']:.3f} ({report['seconds']['total']} s)"
    )
    return 0


def run_eval(args: argparse.Namespace) -> int:
    torch.set_num_threads(1)
    classifier = StyleClassifier.load(args.model)
    started = time.perf_counter()
    result = evaluate(classifier, _corpus(args.workers))
    result["seconds"] = round(time.perf_counter() - started, 1)
    result["created"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    print(markdown(result))
    if args.json:
        from musegen_core.evaluation.harness import rounded

        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rounded(result), indent=2, allow_nan=False) + "\n")
        print(f"wrote {args.json}")
    return 0


def markdown(result: dict) -> str:
    """The eval report as Markdown: headline numbers, per-style recall and hit rate, the confusion matrix."""
    test, references = result["test_windows"], result["reference_excerpts"]
    return "\n\n".join([
        f"Test windows: {test['count']} (of {test['tunes']} tunes): accuracy {test['accuracy']:.3f}, merged "
        f"({MERGED_FIDDLE}) {test['accuracy_merged']:.3f}, balanced {test['balanced_accuracy']:.3f}. "
        f"Eval references: {references['count']}: accuracy {references['accuracy']:.3f}, merged "
        f"{references['accuracy_merged']:.3f}.",
        _recall_table(test, references),
        _confusion_table(test["confusion"]),
    ])  # fmt: skip
