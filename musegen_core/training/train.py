"""Train a melody model on the folk corpus and write a checkpoint folder with its model card.

    python -m musegen_core.training.train --preset lstm-small --steps 1500 --out models/lstm-folk

Random windows of train tunes (randomly transposed by up to ±5 semitones, staying in range), AdamW with warm-up and
cosine decay, gradient clipping, validation NLL on fixed valid windows every `--eval-every` steps keeping the best
weights, then NLL on the *full* valid and test tunes, n-gram baselines on the same split, and the checkpoint.
"""

from __future__ import annotations

import argparse
import math
import shlex
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F
from tqdm import tqdm

from musegen_core import encoding
from musegen_core.models import lstm
from musegen_core.models.checkpoint import save_checkpoint
from musegen_core.training.corpus import COLLECTIONS, Corpus, Tune, load_corpus
from musegen_core.training.ngram import MAX_ORDER, NGramModel, bits_per_step

IGNORE = -100  # target value of padding steps (ignored by the loss)
TRANSPOSE = 5  # augmentation: transpose each window by up to this many semitones either way
FAMILIES = {"lstm": lstm}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `musegen train` (and of `python -m musegen_core.training.train`)."""
    parser.add_argument("--model", default="lstm", choices=sorted(FAMILIES), help="model family")
    parser.add_argument("--preset", default="lstm-small", help="named config of the family (see its PRESETS)")
    parser.add_argument("--collections", default="essen,oneills,ryans", help=f"comma list of {sorted(COLLECTIONS)}")
    parser.add_argument("--steps", type=int, default=1500, help="optimiser steps")
    parser.add_argument("--batch-size", type=int, default=64, help="windows per step")
    parser.add_argument("--window", type=int, default=128, help="sixteenth steps per training window")
    parser.add_argument("--lr", type=float, default=3e-3, help="peak learning rate")
    parser.add_argument("--weight-decay", type=float, default=0.01, help="AdamW weight decay")
    parser.add_argument("--warmup", type=int, default=50, help="linear warm-up steps")
    parser.add_argument("--clip", type=float, default=1.0, help="gradient-norm clip")
    parser.add_argument("--eval-every", type=int, default=100, help="steps between validation passes")
    parser.add_argument("--valid-windows", type=int, default=256, help="fixed valid windows scored every pass")
    parser.add_argument("--seed", type=int, default=0, help="seed of initialisation, windows and dropout")
    parser.add_argument("--split-seed", type=int, default=0, help="seed of the train/valid/test split")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="where to train")
    parser.add_argument("--out", default="models/lstm-folk", help="checkpoint folder to write")
    parser.add_argument("--max-tunes", type=int, default=None, help="per collection, for quick tests")
    parser.add_argument("--workers", type=int, default=2, help="corpus parser processes (first build only)")
    parser.add_argument("--version", default="1", help="model version recorded in the registry")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    parser.add_argument("--max-minutes", type=float, default=None, help="stop training early after this long")


def run(args: argparse.Namespace) -> int:
    """Train, evaluate and save; returns a process exit code."""
    started = time.perf_counter()
    device = _device(args.device)
    if args.threads:  # this process's setting; on a shared CPU also export OMP_WAIT_POLICY=PASSIVE (see README)
        torch.set_num_threads(args.threads)
    names = [name.strip() for name in args.collections.split(",") if name.strip()]
    corpus = load_corpus(names, seed=args.split_seed, max_tunes=args.max_tunes, workers=args.workers)
    print(corpus.stats())
    config = FAMILIES[args.model].PRESETS[args.preset]
    with torch.random.fork_rng(devices=[]):  # seeds init and dropout without leaking into the caller's RNG
        torch.manual_seed(args.seed)
        model = FAMILIES[args.model].MelodyLSTM(config).to(device)
        history, train_seconds = _train(model, corpus, args, device)
    metrics = _evaluate(model, corpus, device)
    training = _training_info(args, corpus, model, device, train_seconds, time.perf_counter() - started)
    training |= {"steps_done": history[-1]["step"], "history": history}
    card = model_card(args, corpus, metrics, training)
    save_checkpoint(model.cpu(), config, args.out, card, metrics, info=_registry_info(names, args), training=training)
    print(f"wrote {args.out}: test {metrics['test_nll_bits_per_step']:.4f} bits/step")
    return 0


def _device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available")
    return torch.device(name)


# ---------------------------------------------------------------------------------------------------------------
# Batches


@dataclass
class Batch:
    """Model inputs and targets, each (batch, window) int64: targets[:, t] is the token after inputs[:, t]."""

    inputs: torch.Tensor
    positions: torch.Tensor  # bar position of the target step
    targets: torch.Tensor  # IGNORE where padded

    def to(self, device: torch.device) -> Batch:
        return Batch(self.inputs.to(device), self.positions.to(device), self.targets.to(device))


def window_batch(tunes: list[Tune], rng: np.random.Generator, size: int, window: int, transpose: int) -> Batch:
    """`size` random windows of `window + 1` steps (tunes drawn in proportion to length), shorter tunes padded."""
    lengths = np.array([len(t.tokens) for t in tunes], dtype=np.float64)
    chosen = rng.choice(len(tunes), size=size, p=lengths / lengths.sum())
    rows = [_window(tunes[i], rng, window, transpose) for i in chosen]
    tokens, positions = (torch.from_numpy(np.stack(column)) for column in zip(*rows, strict=True))
    targets = tokens[:, 1:].masked_fill(tokens[:, 1:] < 0, IGNORE)
    return Batch(tokens[:, :-1].clamp(min=0), positions[:, 1:], targets)


def _window(tune: Tune, rng: np.random.Generator, window: int, transpose: int) -> tuple[np.ndarray, np.ndarray]:
    """Tokens and positions of `window + 1` steps from a random start; padding steps hold -1 tokens."""
    start = int(rng.integers(0, max(1, len(tune.tokens) - window)))
    piece = tune.tokens[start : start + window + 1]
    piece = _transpose(piece, int(rng.integers(-transpose, transpose + 1)) if transpose else 0)
    tokens = np.full(window + 1, -1, dtype=np.int64)
    tokens[: len(piece)] = piece
    return tokens, encoding.bar_positions(window + 1, tune.bar_steps, tune.offset_steps, start=start)


def _transpose(tokens: np.ndarray, shift: int) -> np.ndarray:
    """Shift NOTE_ON tokens by `shift` semitones, reduced towards 0 where it would leave the pitch range."""
    onsets = tokens >= encoding.NOTE_ON
    if not onsets.any() or shift == 0:
        return tokens
    low, high = tokens[onsets].min() - encoding.NOTE_ON, tokens[onsets].max() - encoding.NOTE_ON
    shift = int(np.clip(shift, -low, encoding.VOCAB_SIZE - encoding.NOTE_ON - 1 - high))
    return np.where(onsets, tokens + shift, tokens)


# ---------------------------------------------------------------------------------------------------------------
# Training loop


def _train(
    model: torch.nn.Module, corpus: Corpus, args: argparse.Namespace, device: torch.device
) -> tuple[list, float]:
    """Optimise in place, leaving the best-by-validation weights in `model`. Returns (history, seconds)."""
    train_tunes, rng = corpus.split("train"), np.random.default_rng(args.seed)
    valid = _fixed_windows(corpus.split("valid") or train_tunes, args)
    optimiser = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda step: _lr_factor(step, args.warmup, args.steps))
    best, best_state, history, start = math.inf, None, [], time.perf_counter()
    progress = tqdm(range(1, args.steps + 1), desc="training", unit="step")
    for step in progress:
        batch = window_batch(train_tunes, rng, args.batch_size, args.window, TRANSPOSE).to(device)
        loss = _train_step(model, optimiser, batch, args.clip)
        schedule.step()
        if step % args.eval_every == 0 or step == args.steps:
            valid_bits = _windows_bits(model, valid, device)
            history.append({"step": step, "train_bits": loss / math.log(2), "valid_bits": valid_bits})
            progress.set_postfix(train=f"{loss / math.log(2):.3f}", valid=f"{valid_bits:.3f}")
            if valid_bits < best:
                best, best_state = valid_bits, {k: v.detach().clone() for k, v in model.state_dict().items()}
            if args.max_minutes and time.perf_counter() - start > 60 * args.max_minutes:
                print(f"stopping at step {step}: --max-minutes {args.max_minutes} reached")
                break
    model.load_state_dict(best_state)
    return history, time.perf_counter() - start


def _lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warm-up to 1, then cosine decay to 0.1 at `total` steps."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))


def _train_step(model: torch.nn.Module, optimiser: torch.optim.Optimizer, batch: Batch, clip: float) -> float:
    """One optimiser step; returns the batch loss in nats per step."""
    model.train()
    logits, _ = model(batch.inputs, batch.positions)
    loss = F.cross_entropy(logits.flatten(0, 1), batch.targets.flatten(), ignore_index=IGNORE)
    optimiser.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    optimiser.step()
    return loss.item()


def _fixed_windows(tunes: list[Tune], args: argparse.Namespace) -> list[Batch]:
    """The same valid windows at every pass (own seed, no transposition)."""
    rng = np.random.default_rng(args.seed + 1)
    count = max(1, args.valid_windows // args.batch_size)
    return [window_batch(tunes, rng, min(args.batch_size, args.valid_windows), args.window, 0) for _ in range(count)]


def _summed_nats(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """Summed cross-entropy (nats) of (batch, time, vocab) logits against (batch, time) targets, padding ignored."""
    return float(F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE, reduction="sum"))


@torch.inference_mode()
def _windows_bits(model: torch.nn.Module, batches: list[Batch], device: torch.device) -> float:
    model.eval()
    total, count = 0.0, 0
    for batch in batches:
        batch = batch.to(device)
        logits, _ = model(batch.inputs, batch.positions)
        total += float(
            F.cross_entropy(logits.flatten(0, 1), batch.targets.flatten(), ignore_index=IGNORE, reduction="sum")
        )
        count += int((batch.targets != IGNORE).sum())
    return total / max(count, 1) / math.log(2)


# ---------------------------------------------------------------------------------------------------------------
# Evaluation on full tunes


@torch.inference_mode()
def tune_metrics(model: torch.nn.Module, tunes: list[Tune], device: torch.device, batch_steps: int = 32768) -> dict:
    """NLL (bits per step) over every step after each tune's first, and pitch accuracy at note onsets (the most
    likely NOTE_ON token is the true one).

    Tunes are scored whole (no windows), batched by similar length, padded and masked.
    """
    model.eval()
    nats, steps, onsets, onset_hits = 0.0, 0, 0, 0
    for group in _length_groups(tunes, batch_steps):
        batch = _padded(group).to(device)
        logits, _ = model(batch.inputs, batch.positions)
        mask = batch.targets != IGNORE
        nats += float(
            F.cross_entropy(logits.flatten(0, 1), batch.targets.flatten(), ignore_index=IGNORE, reduction="sum")
        )
        steps += int(mask.sum())
        is_onset = batch.targets >= encoding.NOTE_ON
        onsets += int(is_onset.sum())
        pitch_guess = logits[..., encoding.NOTE_ON :].argmax(-1) + encoding.NOTE_ON  # best pitch if a note starts
        onset_hits += int((pitch_guess == batch.targets)[is_onset].sum())
    return {
        "nll_bits_per_step": nats / max(steps, 1) / math.log(2),
        "onset_pitch_accuracy": onset_hits / max(onsets, 1),
    }


def _length_groups(tunes: list[Tune], batch_steps: int) -> list[list[Tune]]:
    ordered = sorted(tunes, key=lambda t: len(t.tokens))
    groups, current = [], []
    for tune in ordered:
        if current and (len(current) + 1) * len(tune.tokens) > batch_steps:
            groups.append(current)
            current = []
        current.append(tune)
    return [*groups, current] if current else groups


def _padded(tunes: list[Tune]) -> Batch:
    width = max(len(t.tokens) for t in tunes)
    tokens = np.full((len(tunes), width), -1, dtype=np.int64)
    positions = np.zeros((len(tunes), width), dtype=np.int64)
    for row, tune in enumerate(tunes):
        tokens[row, : len(tune.tokens)] = tune.tokens
        positions[row] = encoding.bar_positions(width, tune.bar_steps, tune.offset_steps)
    tokens, positions = torch.from_numpy(tokens), torch.from_numpy(positions)
    targets = tokens[:, 1:].masked_fill(tokens[:, 1:] < 0, IGNORE)
    return Batch(tokens[:, :-1].clamp(min=0), positions[:, 1:], targets)


def _evaluate(model: torch.nn.Module, corpus: Corpus, device: torch.device) -> dict:
    """Model metrics on the full valid and test splits, plus n-gram baselines (KN order picked on valid)."""
    valid, test = corpus.split("valid"), corpus.split("test")
    metrics = {f"valid_{k}": v for k, v in tune_metrics(model, valid, device).items()}
    metrics |= {f"test_{k}": v for k, v in tune_metrics(model, test, device).items()}
    metrics["baselines"] = ngram_baselines(corpus)
    return metrics


def ngram_baselines(corpus: Corpus) -> dict:
    """Test bits/step of a unigram, a Kneser–Ney bigram and the KN n-gram whose order (≤ 10) is best on valid."""
    train, valid, test = ([t.tokens for t in corpus.split(s)] for s in ("train", "valid", "test"))
    scores = {}
    for order in range(1, MAX_ORDER + 1):
        model = NGramModel(order, encoding.VOCAB_SIZE).fit(train)
        scores[order] = (bits_per_step(model, valid), bits_per_step(model, test))
    best = min(range(2, MAX_ORDER + 1), key=lambda order: scores[order][0])
    return {
        "unigram_test_bits": scores[1][1],
        "kn_bigram_test_bits": scores[2][1],
        "kn_best_order": best,
        "kn_best_valid_bits": scores[best][0],
        "kn_best_test_bits": scores[best][1],
    }


# ---------------------------------------------------------------------------------------------------------------
# Records: training info, registry info, model card


def _training_info(
    args: argparse.Namespace, corpus: Corpus, model: torch.nn.Module, device: torch.device, seconds: float, total: float
) -> dict:
    return {
        "command": "musegen train " + shlex.join(_argv_of(args)),
        "preset": args.preset,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "window_steps": args.window,
        "lr": args.lr,
        "seed": args.seed,
        "split_seed": args.split_seed,
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "train_seconds": round(seconds, 1),
        "total_seconds": round(total, 1),
        "parameters": sum(p.numel() for p in model.parameters()),
        "collections": sorted({t.collection for t in corpus.tunes}),
        "tunes": corpus.counts(),
    }


def _argv_of(args: argparse.Namespace) -> list[str]:
    """The options that reproduce `args`: every option of `add_arguments`, spelled out."""
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    argv = []
    for action in parser._actions:
        value = getattr(args, action.dest, None)
        if action.option_strings and value is not None and action.dest != "help":
            argv += [action.option_strings[0], str(value)]
    return argv


def _registry_info(names: list[str], args: argparse.Namespace) -> dict:
    cleared = all(COLLECTIONS[name].commercial_use for name in names)
    return {
        "version": args.version,
        "description": f"{args.preset} melody LSTM trained on folk tunes ({', '.join(names)})",
        "trained_on": [COLLECTIONS[name].licence for name in names],
        "commercial_use_cleared": cleared,
    }


def model_card(args: argparse.Namespace, corpus: Corpus, metrics: dict, training: dict) -> str:
    """The README.md of the checkpoint: data and licences, split sizes, model, training and held-out metrics."""
    names = training["collections"]
    cleared = all(COLLECTIONS[name].commercial_use for name in names)
    base = metrics["baselines"]
    licences = "\n".join(f"- **{name}** — {COLLECTIONS[name].licence}" for name in names)
    return f"""# {args.out.rstrip("/").split("/")[-1]} — {args.preset} melody LSTM

Continues a monophonic melody one sixteenth-note step at a time (encoding v{encoding.ENCODING_VERSION}:
REST / HOLD / NOTE_ON tokens plus the position in the bar).

## Data and licences
{licences}

**Commercial use: {"cleared" if cleared else "NOT cleared"}** — {
        "every training corpus is public domain."
        if cleared
        else "the Essen collection may be used for non-commercial purposes only, so this model and its output are "
        "for non-commercial use."
    }

Tunes per split (split by a seeded hash of transposition-invariant content, so duplicates share a split):

{corpus.stats()}

## Model and training
- family `lstm`, preset `{args.preset}`: {training["parameters"]:,} parameters (fp32 safetensors)
- {training["steps_done"]} of {args.steps} steps × {args.batch_size} windows × {args.window} steps,
  AdamW lr {args.lr} (warm-up + cosine), transposition ±{TRANSPOSE} semitones, best-by-valid weights kept
- device {training["device"]} ({training["torch_threads"]} threads), training {training["train_seconds"]} s,
  whole run {training["total_seconds"]} s

Reproduce: `{training["command"]}`
(on a busy shared CPU also set `OMP_WAIT_POLICY=PASSIVE`: spinning torch threads can make each step ~25× slower).

## Held-out results (full tunes; every step after a tune's first)
| model | valid bits/step | test bits/step |
| --- | ---: | ---: |
| this LSTM | {metrics["valid_nll_bits_per_step"]:.4f} | {metrics["test_nll_bits_per_step"]:.4f} |
| Kneser–Ney {base["kn_best_order"]}-gram (order best on valid) | {base["kn_best_valid_bits"]:.4f} | {
        base["kn_best_test_bits"]:.4f} |
| Kneser–Ney bigram | | {base["kn_bigram_test_bits"]:.4f} |
| unigram (add-one) | | {base["unigram_test_bits"]:.4f} |

Pitch accuracy at note onsets (the most likely new pitch is the true one): valid {
        metrics["valid_onset_pitch_accuracy"]:.3f},
test {metrics["test_onset_pitch_accuracy"]:.3f}.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m musegen_core.training.train", description=__doc__.split("\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
