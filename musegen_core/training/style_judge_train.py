"""Train the style judge that generation's style focus uses (`musegen_core.models.style_judge`).

    musegen style-judge train [--out models/style-judge] [--seed 0] [--epochs 12] [--preset judge-small]

Data: the 8-bar train/valid/test windows of the style classifier's training (`style_classifier_train.split_windows`:
same corpus, split and seed — data, not weights). Each epoch every train window is cut to a random 2–8 bars from a
random bar line, because generation judges takes of any length. Adam with cosine decay on class-balanced
cross-entropy (every style weighted equally). The epoch with the best balanced accuracy on the whole valid windows
is kept; the test windows are scored once, at the end, for the model card.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from musegen_core.models.checkpoint import save_checkpoint
from musegen_core.models.style_judge import PRESETS, SHIPPED_NAME, JudgeConfig, StyleJudge, batch_inputs
from musegen_core.training.card import cpu_name
from musegen_core.training.corpus import COLLECTIONS, CORPUS_VERSION, SPLITS, STYLES, load_corpus
from musegen_core.training.style_classifier_train import Windows, scores, split_windows

BATCH, LR, MIN_BARS = 128, 2e-3, 2


def random_crop(tokens: np.ndarray, bar_steps: int, rng: np.random.Generator) -> np.ndarray:
    """A stretch of `MIN_BARS` up to all of the window's whole bars, starting on a random bar line of it."""
    bars = max(1, len(tokens) // bar_steps)
    length = int(rng.integers(min(MIN_BARS, bars), bars + 1))
    start = int(rng.integers(0, bars - length + 1))
    return tokens[start * bar_steps : (start + length) * bar_steps]


def predict(judge: StyleJudge, windows: Windows) -> list[str]:
    """The judge's most likely style of every window (in batches)."""
    found = []
    for start in range(0, len(windows.melodies), 512):
        found += judge.log_posteriors(windows.melodies[start : start + 512]).argmax(axis=1).tolist()
    return [judge.styles[i] for i in found]


def fit(windows: dict[str, Windows], config: JudgeConfig, epochs: int, seed: int, progress: bool) -> tuple:
    """Train on `windows["train"]`; returns the judge at its best valid epoch and the per-epoch valid scores."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    judge = StyleJudge(config)
    train = windows["train"]
    labels = torch.tensor([config.styles.index(s) for s in train.styles])
    counts = torch.bincount(labels, minlength=len(config.styles)).float()
    weights = counts.sum() / (len(config.styles) * counts.clamp(min=1))
    optimiser = torch.optim.Adam(judge.parameters(), lr=LR)
    batches = -(-len(labels) // BATCH)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, epochs * batches)
    history, best, best_state = [], -1.0, None
    for epoch in range(epochs):
        judge.train()
        for batch in np.array_split(rng.permutation(len(labels)), batches):
            melodies = [(random_crop(*train.melodies[i], rng), train.melodies[i][1]) for i in batch]
            loss = F.cross_entropy(judge(*batch_inputs(melodies)), labels[batch], weight=weights)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
        judge.eval()
        valid = scores(predict(judge, windows["valid"]), windows["valid"].styles, config.styles)
        history.append({"epoch": epoch + 1, "valid_accuracy": valid["accuracy"],
                        "valid_balanced_accuracy": valid["balanced_accuracy"]})  # fmt: skip
        if progress:
            print(f"epoch {epoch + 1}: valid balanced accuracy {valid['balanced_accuracy']:.4f}", flush=True)
        if valid["balanced_accuracy"] > best:
            best, best_state = valid["balanced_accuracy"], {k: v.clone() for k, v in judge.state_dict().items()}
    judge.load_state_dict(best_state)
    return judge.eval(), history


def train_judge(out: Path, preset: str, epochs: int, seed: int, progress: bool = True) -> dict:
    """Train, score valid and test windows, and write the checkpoint folder `out`; returns the metrics."""
    started = time.perf_counter()
    corpus = load_corpus(tuple(COLLECTIONS), progress=progress)
    styles = tuple(style for style in STYLES if any(tune.style == style for tune in corpus.tunes))
    windows = {split: split_windows(corpus, split, seed) for split in SPLITS}
    config = JudgeConfig(**{**PRESETS[preset].to_dict(), "styles": styles})
    judge, history = fit(windows, config, epochs, seed, progress)
    metrics = {
        split: scores(predict(judge, windows[split]), windows[split].styles, styles) for split in ("valid", "test")
    }
    collections = sorted({tune.collection for tune in corpus.tunes})
    training = {
        "command": f"musegen style-judge train --preset {preset} --epochs {epochs} --seed {seed}",
        "preset": preset, "epochs": epochs, "seed": seed, "batch_size": BATCH, "lr": LR, "history": history,
        "windows": {split: len(w.styles) for split, w in windows.items()}, "corpus_version": CORPUS_VERSION,
        "collections": collections, "parameters": sum(p.numel() for p in judge.parameters()),
        "seconds": round(time.perf_counter() - started, 1), "cpu": cpu_name(), "torch_threads": torch.get_num_threads(),
    }  # fmt: skip
    info = {
        "description": "style judge for generation's style focus (picks among candidate takes); not a generator",
        "trained_on": [COLLECTIONS[name].licence for name in collections],
        "commercial_use_cleared": all(COLLECTIONS[name].commercial_use for name in collections),
    }
    card = card_text(config, training, metrics, info)
    save_checkpoint(judge, config, out, card, metrics, info=info, training=training)
    return metrics


def card_text(config: JudgeConfig, training: dict, metrics: dict, info: dict) -> str:
    """The judge's README.md."""
    test, valid = metrics["test"], metrics["valid"]
    recalls = "\n".join(
        f"| {style} | {valid['recall'][style]:.3f} | {test['recall'][style]:.3f} |" for style in config.styles
    )
    licences = "\n".join(f"- {licence}" for licence in info["trained_on"])
    cleared = "cleared" if info["commercial_use_cleared"] else "NOT cleared (Essen is non-commercial)"
    return f"""# style-judge — picks the candidate bar that sounds most like the asked style

Used by every model family at style strength above 1 (*style focus*): for each bar, several candidates are sampled
and this judge keeps the one whose bars so far it finds most typical of the asked style. Not a generator (the picker
leaves it out), and **not** the independent style classifier that benches score takes with: a
{len(config.dilations)}-layer dilated convolutional network ({training["parameters"]:,} parameters) over the note
sequence, each note relative to the window's median pitch and by its interval from the note before, plus the
position in the bar (`musegen_core/models/style_judge.py`).

## Data and licences
{licences}

Commercial use: {cleared}.
Windows of 8 bars from the split `musegen eval` uses (corpus v{training["corpus_version"]}):
{training["windows"]["train"]:,} train, {training["windows"]["valid"]:,} valid, {training["windows"]["test"]:,} test;
each epoch crops every train window to a random 2–8 bars.

## Training
Adam (lr {training["lr"]:g}, cosine decay), {training["epochs"]} epochs in batches of {training["batch_size"]},
class-balanced cross-entropy; the epoch with the best valid balanced accuracy kept. {training["seconds"]} s on
{training["cpu"]} ({training["torch_threads"]} torch threads). Reproduce: `{training["command"]}`.

## Results (8-bar windows)
Valid: accuracy {valid["accuracy"]:.3f}, balanced {valid["balanced_accuracy"]:.3f}. **Test: accuracy
{test["accuracy"]:.3f}, balanced {test["balanced_accuracy"]:.3f}**, Irish and American fiddle merged
{test["accuracy_merged"]:.3f}.

| style | valid recall | test recall |
| --- | ---: | ---: |
{recalls}
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="judge_command", required=True)
    train = commands.add_parser("train", help="train the style judge on the corpus windows")
    train.add_argument("--out", type=Path, default=Path("models") / SHIPPED_NAME)
    train.add_argument("--preset", choices=sorted(PRESETS), default="judge-small")
    train.add_argument("--epochs", type=int, default=12)
    train.add_argument("--seed", type=int, default=0)
    train.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    metrics = train_judge(args.out, args.preset, args.epochs, args.seed)
    print(f"wrote {args.out}: test accuracy {metrics['test']['accuracy']:.3f}, "
          f"balanced {metrics['test']['balanced_accuracy']:.3f}")  # fmt: skip
    return 0
