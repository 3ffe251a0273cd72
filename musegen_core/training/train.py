"""Train a melody model (LSTM or Transformer) on the corpus and write a checkpoint folder with its model card.

    python -m musegen_core.training.train --model transformer --steps 3000 --out models/transformer-folk

Random windows of train tunes (randomly transposed by up to ±5 semitones, staying in range), labelled with their
style (10 % of windows unlabelled, so the model also works without one), AdamW with warm-up and cosine decay,
gradient clipping, validation NLL on fixed valid windows every `--eval-every` steps keeping the best weights (and
writing a resume checkpoint: `--resume` goes on from it, bit for bit), then NLL on the *full* valid and test tunes,
n-gram baselines on the same split, the CPU sampling time and the checkpoint.

Without music21 (e.g. on a GPU machine) the corpus is read from its `.npz` caches alone: copy them into
`MUSEGEN_CACHE_DIR` (or pass `--cache-only`).
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import shlex
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F
from tqdm import tqdm

from musegen_core import encoding
from musegen_core.models import gan, lstm, transformer, vae
from musegen_core.models.checkpoint import save_checkpoint
from musegen_core.training import card, gan_train, resume, vae_train
from musegen_core.training import corpus as corpus_module
from musegen_core.training.batches import IGNORE, Batch, length_groups, whole_tunes, window_batch
from musegen_core.training.corpus import COLLECTIONS, DEFAULT_COLLECTIONS, STYLES, Corpus, Tune, load_corpus
from musegen_core.training.ngram import MAX_ORDER, NGramModel, bits_per_step

TRANSPOSE = 5  # augmentation: transpose each window by up to this many semitones either way


@dataclass(frozen=True)
class Family:
    """A trainable model family and the training defaults that suit it."""

    module: object  # the family's module: FAMILY, PRESETS and the model class
    model_class: type
    lr: float  # default peak learning rate
    window: int  # default training window (sixteenth steps)


FAMILIES = {
    "lstm": Family(lstm, lstm.MelodyLSTM, 3e-3, 128),
    "transformer": Family(transformer, transformer.MelodyTransformer, 1e-3, 256),
    "vae": Family(vae, vae.MelodyVAE, 1e-3, vae.WINDOW),  # trained by training/vae_train.py
    "gan": Family(gan, gan.MelodyGAN, 1e-4, gan.BAR),  # trained adversarially by training/gan_train.py
}
NOT_SETTINGS = {"resume", "stop_at", "device", "threads", "workers", "cache_only", "max_minutes"}  # free on --resume


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `musegen train` (and of `python -m musegen_core.training.train`)."""
    add = parser.add_argument
    add("--model", default="lstm", choices=sorted(FAMILIES), help="model family")
    add("--preset", default=None, help="named config of the family (see its PRESETS; default FAMILY-small)")
    add("--collections", default=",".join(DEFAULT_COLLECTIONS), help=f"comma list of {sorted(COLLECTIONS)}")
    add("--styles", default=True, action=argparse.BooleanOptionalAction, help="condition on the tunes' styles")
    add("--style-dropout", type=float, default=0.1, help="share of training windows given no style")
    add("--steps", type=int, default=1500, help="optimiser steps")
    add("--batch-size", type=int, default=64, help="windows per step")
    add("--window", type=int, default=None, help="sixteenth steps per training window (default: the family's)")
    add("--lr", type=float, default=None, help="peak learning rate (default: the family's)")
    add("--weight-decay", type=float, default=0.01, help="AdamW weight decay")
    add("--warmup", type=int, default=50, help="linear warm-up steps")
    add("--clip", type=float, default=1.0, help="gradient-norm clip")
    add("--eval-every", type=int, default=100, help="steps between validation passes (each writes a resume point)")
    add("--valid-windows", type=int, default=256, help="fixed valid windows scored every pass")
    add("--seed", type=int, default=0, help="seed of initialisation, windows and dropout")
    add("--split-seed", type=int, default=0, help="seed of the train/valid/test split")
    add("--device", default="auto", choices=["auto", "cpu", "cuda"], help="where to train (auto: CUDA if present)")
    add("--out", default="models/lstm-folk", help="checkpoint folder to write")
    add("--max-tunes", type=int, default=None, help="per collection, for quick tests")
    add("--workers", type=int, default=2, help="corpus parser processes (first build only)")
    add("--cache-only", action="store_true", help="read the corpus from its caches only (automatic without music21)")
    add("--version", default="1", help="model version recorded in the registry")
    add("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    add("--max-minutes", type=float, default=None, help="stop training early after this long")
    add("--resume", action="store_true", help="continue the interrupted run whose resume checkpoint is in OUT.resume")
    add("--stop-at", type=int, default=None, help="stop after this step, leaving a resume checkpoint (no model)")
    add("--beta", type=float, default=0.2, help="vae: KL weight after annealing")
    add("--free-bits", type=float, default=48.0, help="vae: KL bits per window left unpenalised")


def run(args: argparse.Namespace) -> int:
    """Train, evaluate and save; returns a process exit code."""
    started = time.perf_counter()
    family = FAMILIES[args.model]
    args.preset = args.preset or f"{args.model}-small"
    args.lr, args.window = args.lr or family.lr, args.window or family.window
    device = _device(args.device)
    if args.threads:  # this process's setting; on a shared CPU also export OMP_WAIT_POLICY=PASSIVE (see README)
        torch.set_num_threads(args.threads)
    names = [name.strip() for name in args.collections.split(",") if name.strip()]
    corpus = training_corpus(names, args)
    print(corpus.stats())
    styles = tuple(s for s in STYLES if s in {t.style for t in corpus.split("train")}) if args.styles else ()
    if args.preset not in family.module.PRESETS:
        raise SystemExit(f"--preset must be one of {sorted(family.module.PRESETS)} (received {args.preset!r})")
    config = replace(family.module.PRESETS[args.preset], styles=styles)
    if args.model == "vae":  # its own windows, loss and metrics
        return vae_train.run(args, corpus, config, names, device, started)
    if args.model == "gan":  # adversarial loop, its own metrics
        return gan_train.run(args, corpus, config, names, device, started)
    with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):  # seeds, no leaks
        torch.manual_seed(args.seed)
        model = family.model_class(config).to(device)
        progress = _train(model, corpus, args, device)
    if progress is None:
        print(f"stopped at step {args.stop_at}; continue with the same command and --resume")
        return 0
    metrics = evaluate(model, corpus, device) | card.measure_sampling(model)
    training = _training_info(args, corpus, model, device, progress, time.perf_counter() - started)
    info = card.registry_info(names, args.model, args.preset, styles, args.version)
    meta = {"family": args.model, "encoding_version": encoding.ENCODING_VERSION, "model": config.to_dict()}
    text = card.model_card(Path(args.out).name, meta | {"info": info, "training": training, "metrics": metrics})
    save_checkpoint(model.cpu(), config, args.out, text, metrics, info=info, training=training)
    shutil.rmtree(resume_folder(args), ignore_errors=True)  # the run is complete: nothing left to resume
    print(f"wrote {args.out}: test {metrics['test_nll_bits_per_step']:.4f} bits/step")
    return 0


def _device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available")
    if name == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    return torch.device(name)


# ---------------------------------------------------------------------------------------------------------------
# Corpus


def training_corpus(names: list[str], args: argparse.Namespace) -> Corpus:
    """The corpus: built or read by `load_corpus`, or, with `--cache-only` or without music21, from caches alone."""
    if args.cache_only or importlib.util.find_spec("music21") is None:
        return cached_corpus(names, args.split_seed, corpus_module.default_cache_dir(), args.max_tunes)
    return load_corpus(names, seed=args.split_seed, max_tunes=args.max_tunes, workers=args.workers)


def cached_corpus(names: list[str], seed: int, cache_dir: Path, max_tunes: int | None = None) -> Corpus:
    """The corpus from one `corpus-<collection>-*.npz` cache per collection in `cache_dir`, split as `load_corpus`
    splits (near-duplicate groups share a split). `max_tunes` keeps each collection's first tunes.

    Raises:
        SystemExit: a collection has no cache there, or more than one (the message says what to do).
    """
    tunes, failures, seconds = [], {}, {}
    for name in names:
        found = sorted(Path(cache_dir).glob(f"corpus-{name}-*.npz"))
        if len(found) != 1:
            problem = "no cache" if not found else f"{len(found)} caches ({', '.join(p.name for p in found)})"
            raise SystemExit(
                f"cache-only corpus: {problem} for collection {name!r} in {cache_dir}; build it where music21 is "
                f"installed (musegen data stats) and copy exactly one corpus-{name}-*.npz there"
            )
        built, failures[name], seconds[name] = corpus_module._read_cache(found[0])
        tunes += built[:max_tunes]
    splits, grouping = corpus_module.assign_splits(tunes, seed)
    return Corpus(tunes, splits, failures, dict.fromkeys(names, 0.0), seconds, grouping)


# ---------------------------------------------------------------------------------------------------------------
# Training loop


def _train(model: torch.nn.Module, corpus: Corpus, args: argparse.Namespace, device: torch.device):
    """Optimise in place, leaving the best-by-validation weights in `model`. Returns the `resume.Progress`, or None
    when `--stop-at` stopped the run (its resume checkpoint written)."""
    train_tunes, rng = corpus.split("train"), np.random.default_rng(args.seed)
    valid = _fixed_windows(corpus.split("valid") or train_tunes, args, model.styles)
    optimiser = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda step: _lr_factor(step, args.warmup, args.steps))
    folder, settings = resume_folder(args), _settings(args)
    state = (model, optimiser, schedule, rng)
    progress = resume.load(folder, *state, settings) if args.resume else resume.Progress()
    bar = tqdm(range(progress.step + 1, args.steps + 1), desc="training", unit="step", initial=progress.step)
    start, seconds_before = time.perf_counter(), progress.train_seconds
    for step in bar:
        batch = window_batch(
            train_tunes,
            rng,
            args.batch_size,
            args.window,
            TRANSPOSE,
            styles=model.styles,
            style_dropout=args.style_dropout,
        ).to(device)
        loss = _train_step(model, optimiser, batch, args.clip)
        schedule.step()
        progress.step, progress.train_seconds = step, seconds_before + time.perf_counter() - start
        if step % args.eval_every == 0 or step == args.steps:
            _validate(model, valid, device, progress, loss, bar)
            resume.save(folder, progress, *state, settings)
        if step == args.stop_at:
            resume.save(folder, progress, *state, settings)
            return None
        if args.max_minutes and time.perf_counter() - start > 60 * args.max_minutes:
            print(f"stopping at step {step}: --max-minutes {args.max_minutes} reached")
            break
    model.load_state_dict(progress.best_state)
    return progress


def resume_folder(args: argparse.Namespace) -> Path:
    """Where the resume checkpoint of a run lives: `OUT.resume` beside the checkpoint folder."""
    return Path(f"{args.out.rstrip('/')}.resume")


def _settings(args: argparse.Namespace) -> dict:
    """The options a resumed run must share with the interrupted one."""
    return {k: v for k, v in vars(args).items() if k not in NOT_SETTINGS and not callable(v)}


def _validate(model, valid: list[Batch], device, progress: resume.Progress, loss: float, bar: tqdm) -> None:
    valid_bits = _windows_bits(model, valid, device)
    progress.history.append({"step": progress.step, "train_bits": loss / math.log(2), "valid_bits": valid_bits})
    bar.set_postfix(train=f"{loss / math.log(2):.3f}", valid=f"{valid_bits:.3f}")
    if valid_bits < progress.best:
        progress.best = valid_bits
        progress.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}


def _lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warm-up to 1, then cosine decay to 0.1 at `total` steps."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))


def _train_step(model: torch.nn.Module, optimiser: torch.optim.Optimizer, batch: Batch, clip: float) -> float:
    """One optimiser step; returns the batch loss in nats per step."""
    model.train()
    logits, _ = model(batch.inputs, batch.positions, styles=batch.styles)
    loss = F.cross_entropy(logits.flatten(0, 1), batch.targets.flatten(), ignore_index=IGNORE)
    optimiser.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    optimiser.step()
    return loss.item()


def _fixed_windows(tunes: list[Tune], args: argparse.Namespace, styles: tuple[str, ...]) -> list[Batch]:
    """The same valid windows at every pass (own seed, no transposition, every window labelled)."""
    rng = np.random.default_rng(args.seed + 1)
    count, size = max(1, args.valid_windows // args.batch_size), min(args.batch_size, args.valid_windows)
    return [window_batch(tunes, rng, size, args.window, 0, styles=styles) for _ in range(count)]


def _summed_nats(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """Summed cross-entropy (nats) of (batch, time, vocab) logits against (batch, time) targets, padding ignored."""
    return float(F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE, reduction="sum"))


@torch.inference_mode()
def _windows_bits(model: torch.nn.Module, batches: list[Batch], device: torch.device) -> float:
    model.eval()
    total, count = 0.0, 0
    for batch in batches:
        batch = batch.to(device)
        total += _summed_nats(model(batch.inputs, batch.positions, styles=batch.styles)[0], batch.targets)
        count += int((batch.targets != IGNORE).sum())
    return total / max(count, 1) / math.log(2)


# ---------------------------------------------------------------------------------------------------------------
# Evaluation on full tunes


@torch.inference_mode()
def tune_metrics(
    model: torch.nn.Module,
    tunes: list[Tune],
    device: torch.device,
    batch_steps: int = 32768,
    *,
    any_style: bool = False,
) -> dict:
    """NLL (bits per step) over every step after each tune's first, and pitch accuracy at note onsets (the most
    likely NOTE_ON token is the true one). A style-conditioned model is told each tune's style, or "any style" for
    a style it does not know and, with `any_style`, for every tune.

    Tunes are scored whole (no windows), batched by similar length, padded and masked.
    """
    model.eval()
    styles = () if any_style else getattr(model, "styles", ())  # no style rows = "any style"
    nats, steps, onsets, onset_hits = 0.0, 0, 0, 0
    for group in length_groups(tunes, batch_steps):
        batch = whole_tunes(group, styles).to(device)
        logits, _ = model(batch.inputs, batch.positions, styles=batch.styles)
        nats += _summed_nats(logits, batch.targets)
        steps += int((batch.targets != IGNORE).sum())
        is_onset = batch.targets >= encoding.NOTE_ON
        onsets += int(is_onset.sum())
        pitch_guess = logits[..., encoding.NOTE_ON :].argmax(-1) + encoding.NOTE_ON
        onset_hits += int((pitch_guess == batch.targets)[is_onset].sum())
    return {
        "nll_bits_per_step": nats / max(steps, 1) / math.log(2),
        "onset_pitch_accuracy": onset_hits / max(onsets, 1),
    }


def evaluate(model: torch.nn.Module, corpus: Corpus, device: torch.device) -> dict:
    """Model metrics on the full valid and test splits (per style too), plus n-gram baselines (KN order picked on
    valid) overall and per style."""
    valid, test = corpus.split("valid"), corpus.split("test")
    metrics = {f"valid_{k}": v for k, v in tune_metrics(model, valid, device).items()}
    metrics |= {f"test_{k}": v for k, v in tune_metrics(model, test, device).items()}
    if model.styles:
        metrics["test_nll_bits_per_step_any_style"] = tune_metrics(model, test, device, any_style=True)[
            "nll_bits_per_step"
        ]
    metrics["baselines"] = ngram_baselines(corpus)
    best = NGramModel(metrics["baselines"]["kn_best_order"], encoding.VOCAB_SIZE)
    best.fit([t.tokens for t in corpus.split("train")])
    metrics["test_by_style"] = {}
    for style in (s for s in STYLES if any(t.style == s for t in test)):
        tunes = [t for t in test if t.style == style]
        metrics["test_by_style"][style] = {
            "tunes": len(tunes),
            "nll_bits_per_step": tune_metrics(model, tunes, device)["nll_bits_per_step"],
            "kn_best_bits": bits_per_step(best, [t.tokens for t in tunes]),
        }
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
# Records


def _training_info(
    args: argparse.Namespace, corpus: Corpus, model: torch.nn.Module, device, progress: resume.Progress, total: float
) -> dict:
    return {
        "command": "musegen train " + shlex.join(_argv_of(args)),
        "preset": args.preset,
        "steps": args.steps,
        "steps_done": progress.history[-1]["step"],
        "batch_size": args.batch_size,
        "window_steps": args.window,
        "lr": args.lr,
        "transpose": TRANSPOSE,
        "style_dropout": args.style_dropout if model.styles else 0.0,
        "seed": args.seed,
        "split_seed": args.split_seed,
        "device": f"{device} ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else str(device),
        "torch_threads": torch.get_num_threads(),
        "train_seconds": round(progress.train_seconds, 1),
        "total_seconds": round(total, 1),
        "parameters": sum(p.numel() for p in model.parameters()),
        "collections": sorted({t.collection for t in corpus.tunes}, key=list(COLLECTIONS).index),
        "tunes": corpus.counts(),
        "corpus": corpus.summary(),
        "history": progress.history,
    }


def _argv_of(args: argparse.Namespace) -> list[str]:
    """The options that reproduce `args`: every option of `add_arguments` but --resume/--stop-at, spelled out."""
    return options_of(add_arguments, args)


def options_of(
    add: Callable[[argparse.ArgumentParser], None],
    args: argparse.Namespace,
    skip: frozenset[str] = frozenset({"help", "resume", "stop_at"}),
) -> list[str]:
    """Command-line options that reproduce `args` for the parser `add` builds: every option whose value is set,
    spelled out (values as `str`), except the destinations in `skip`."""
    parser = argparse.ArgumentParser()
    add(parser)
    argv = []
    for action in parser._actions:
        value = getattr(args, action.dest, None)
        if not action.option_strings or value is None or action.dest in skip:
            continue
        if isinstance(action, argparse.BooleanOptionalAction):
            argv.append(action.option_strings[0 if value else 1])
        elif isinstance(action, argparse._StoreTrueAction):
            argv += [action.option_strings[0]] if value else []
        else:
            argv += [action.option_strings[0], str(value)]
    return argv


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m musegen_core.training.train", description=__doc__.split("\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
