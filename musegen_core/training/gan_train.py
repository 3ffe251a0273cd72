"""Adversarial training of the melody GAN (`musegen train --model gan`), called from `training.train`.

Data: (previous 16 steps, next 16 steps) pairs at every chunk start of every tune (`bar_pairs`: the chunks
`generate` writes — every bar line, and 16 steps into longer bars — so every meter is trained; the shipped v1 used
only 16-step bars and left e.g. the Chinese tunes, mostly in 2/4, nearly unseen), the first padded by rests; each
pair transposed by the same random ±`TRANSPOSE` semitones, labelled with its style (`--style-dropout` of them "any
style"). Real bars are one-hot, generated bars the generator's softmax. Loss: WGAN-GP (`CRITIC_STEPS` critic updates
per generator update, penalty weight `PENALTY`) plus a small feature-matching term on the critic's features (weight
`FEATURE_MATCHING`). With styles, an auxiliary style classifier (AC-GAN): the critic's style head learns to name the
style of *real* bars, and the generator is pushed to make it name the requested style of its bars (cross-entropy,
weight `STYLE_WEIGHT`, on the style-labelled rows only). Without that term the shipped v1 GAN learnt to ignore its
style input: the independent classifier heard the requested style in 44 % of its takes (real tunes: 89 %). Adam (β
0.5, 0.9), constant learning rate; the shipped generator is an exponential moving average (`EMA`) of the trained
one.

Every `--eval-every` generator steps: the critic's Wasserstein estimate on fixed valid pairs (logged) and a resume
point (`--resume` goes on from it; generator, critic, EMA and one Adam over both share the resume format of the other
families). Held-out: the final critic's Wasserstein estimate on test pairs, notes per bar and sharpness of the outputs.
"""

from __future__ import annotations

import argparse
import copy
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

from musegen_core import encoding
from musegen_core.models.checkpoint import save_checkpoint
from musegen_core.models.gan import BAR, Critic, GANConfig, MelodyGAN, gradient_penalty
from musegen_core.training import card, resume
from musegen_core.training.corpus import Corpus, Tune
from musegen_core.training.corpus_tables import stats_markdown
from musegen_core.training.sources import COLLECTIONS

TRANSPOSE = 5
CRITIC_STEPS = 5  # critic updates per generator update
PENALTY = 10.0  # gradient-penalty weight λ
FEATURE_MATCHING = 0.1  # weight of ‖mean critic features (real) − (fake)‖²
STYLE_WEIGHT = 1.0  # weight of the auxiliary style cross-entropy (critic on real bars, generator on its own)
EMA = 0.999  # decay of the shipped generator's moving average
EVAL_PAIRS = 4096  # valid/test pairs scored (a fixed sample when a split has more)

Pairs = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # previous (n, 16), bar (n, 16) int64; style rows (n,)


def bar_pairs(tunes: list[Tune], styles: tuple[str, ...]) -> Pairs:
    """(previous 16 steps, next 16 steps) at every chunk start of every tune, the steps before the tune padded with
    rests. Chunk starts are the steps where `generate` starts one (`chunk_starts`): every bar line, and 16 steps into
    bars longer than 16. In meters whose bar is not 16 steps the two grids straddle bar lines — as at generation,
    where the generator writes 16 steps and the first chunk's length of them is kept."""
    previous, bars, rows = [], [], []
    for tune in tunes:
        padded = np.concatenate([np.full(BAR, encoding.REST, dtype=np.int64), tune.tokens])
        for start in chunk_starts(tune.positions()):
            if BAR + start + BAR > len(padded):
                break
            previous.append(padded[start : BAR + start])
            bars.append(padded[BAR + start : 2 * BAR + start])
            rows.append(styles.index(tune.style) if tune.style in styles else len(styles))
    if not bars:
        empty = torch.zeros((0, BAR), dtype=torch.int64)
        return empty, empty, torch.zeros(0, dtype=torch.int64)
    return torch.from_numpy(np.stack(previous)), torch.from_numpy(np.stack(bars)), torch.tensor(rows)


def chunk_starts(positions: np.ndarray) -> list[int]:
    """Indices of the steps at positions 0, 16, 32, … of their bar: where `gan.chunk_lengths` starts chunks when
    generation begins on a bar line.

    >>> chunk_starts(np.array([10, 11, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 0, 1]))  # 3/4 with a 2-step pickup
    [2, 14]
    """
    return [int(i) for i in np.flatnonzero(positions % BAR == 0)]


def transposed_pair(previous: torch.Tensor, bar: torch.Tensor, shift: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Shift both bars of each pair by its (n,) `shift` semitones, reduced so every pitch stays in range."""
    both = torch.cat([previous, bar], dim=1)
    onsets, pitch, top = both >= encoding.NOTE_ON, both - encoding.NOTE_ON, encoding.VOCAB_SIZE - encoding.NOTE_ON - 1
    low = torch.where(onsets, pitch, top).min(dim=1).values
    high = torch.where(onsets, pitch, 0).max(dim=1).values
    shift = torch.minimum(torch.maximum(shift, -low), top - high)
    both = torch.where(onsets, both + shift[:, None], both)
    return both[:, :BAR], both[:, BAR:]


def one_hot(tokens: torch.Tensor, config: GANConfig) -> torch.Tensor:
    return F.one_hot(tokens, config.vocab_size).float()


def critic_step(generator, critic, optimiser, previous, bar, styles) -> float:
    """One critic update (generator frozen); returns the critic loss."""
    config = generator.config
    with torch.no_grad():
        noise = torch.randn(len(bar), config.noise_dim, device=bar.device)
        fake = torch.softmax(generator(previous, noise, styles), dim=-1)
    previous_hot, real = one_hot(previous, config), one_hot(bar, config)
    loss = critic(previous_hot, fake, styles).mean() - critic(previous_hot, real, styles).mean()
    loss = loss + PENALTY * gradient_penalty(critic, previous_hot, real, fake, styles)
    loss = loss + STYLE_WEIGHT * style_loss(critic, previous_hot, real, styles)
    optimiser.zero_grad(set_to_none=True)
    loss.backward()
    optimiser.step()  # the generator's gradients are None: Adam leaves it alone
    return loss.item()


def generator_step(generator, critic, optimiser, previous, bar, styles) -> float:
    """One generator update against the critic (critic frozen); returns the generator loss."""
    config = generator.config
    noise = torch.randn(len(bar), config.noise_dim, device=bar.device)
    fake = torch.softmax(generator(previous, noise, styles), dim=-1)
    previous_hot = one_hot(previous, config)
    fake_features = critic.features(previous_hot, fake, styles)
    with torch.no_grad():
        real_features = critic.features(previous_hot, one_hot(bar, config), styles)
    loss = -critic.score(fake_features).mean()
    loss = loss + FEATURE_MATCHING * (fake_features.mean(0) - real_features.mean(0)).pow(2).sum()
    loss = loss + STYLE_WEIGHT * style_loss(critic, previous_hot, fake, styles)
    optimiser.zero_grad(set_to_none=True)
    loss.backward()
    for parameter in critic.parameters():
        parameter.grad = None
    optimiser.step()
    return loss.item()


def style_loss(critic: Critic, previous_hot: torch.Tensor, bar: torch.Tensor, styles: torch.Tensor | None):
    """Cross-entropy of the critic's style head on the style-labelled rows (0 without styles or labelled rows)."""
    labelled = _labelled(critic, styles)
    if labelled is None or not labelled.any():
        return bar.new_zeros(())
    return F.cross_entropy(critic.style_logits(previous_hot[labelled], bar[labelled]), styles[labelled])


def _labelled(critic: Critic, styles: torch.Tensor | None) -> torch.Tensor | None:
    """Mask of the rows that name one style (not "any style", not a mix), or None when there are no styles."""
    if styles is None or critic.style_head is None or styles.is_floating_point():
        return None
    return styles < critic.style_head.out_features


def run_training(nets: nn.ModuleDict, corpus: Corpus, args: argparse.Namespace, device, folder: Path, settings):
    """Optimise `nets` (generator, critic, ema) in place; returns the `resume.Progress`, or None after --stop-at."""
    generator, critic, ema = nets["generator"], nets["critic"], nets["ema"]
    styles = generator.styles
    train = [t.to(device) for t in bar_pairs(corpus.split("train"), styles)]
    if not len(train[1]):
        raise SystemExit("--model gan: no train tune is 16 steps long or more; add collections or tunes")
    valid = _sample(bar_pairs(corpus.split("valid"), styles), args.seed + 1)
    valid = [t.to(device) for t in valid] if len(valid[1]) else train  # tiny corpora may have no valid pairs
    rng = np.random.default_rng(args.seed)
    optimiser = torch.optim.Adam(nets.parameters(), lr=args.lr, betas=(0.5, 0.9))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda step: 1.0)
    state = (nets, optimiser, schedule, rng)
    progress = resume.load(folder, *state, settings) if args.resume else resume.Progress()
    bar = tqdm(range(progress.step + 1, args.steps + 1), desc="training gan", unit="step", initial=progress.step)
    start, seconds_before = time.perf_counter(), progress.train_seconds
    nets.train()
    for step in bar:
        for _ in range(CRITIC_STEPS):
            critic_loss = critic_step(generator, critic, optimiser, *_batch(train, rng, args, len(styles)))
        generator_loss = generator_step(generator, critic, optimiser, *_batch(train, rng, args, len(styles)))
        with torch.no_grad():
            for kept, current in zip(ema.parameters(), generator.parameters(), strict=True):
                kept.lerp_(current, 1 - EMA)
        schedule.step()
        progress.step, progress.train_seconds = step, seconds_before + time.perf_counter() - start
        if step % args.eval_every == 0 or step == args.steps:
            w = wasserstein(ema, critic, *valid)
            progress.history.append({"step": step, "critic_loss": critic_loss, "generator_loss": generator_loss,
                                     "valid_wasserstein": w} | _valid_style(ema, critic, valid))  # fmt: skip
            bar.set_postfix(critic=f"{critic_loss:.3f}", w_valid=f"{w:.3f}")
            resume.save(folder, progress, *state, settings)
        if step == args.stop_at:
            resume.save(folder, progress, *state, settings)
            return None
        if args.max_minutes and time.perf_counter() - start > 60 * args.max_minutes:
            print(f"stopping at step {step}: --max-minutes {args.max_minutes} reached")
            if not progress.history or progress.history[-1]["step"] != step:
                progress.history.append({"step": step, "critic_loss": critic_loss, "generator_loss": generator_loss,
                                         "valid_wasserstein": wasserstein(ema, critic, *valid)}
                                        | _valid_style(ema, critic, valid))  # fmt: skip
            break
    return progress


def _valid_style(generator: MelodyGAN, critic: Critic, valid: list[torch.Tensor]) -> dict:
    return {f"valid_{k}": v for k, v in style_accuracy(generator, critic, *valid).items()}


def _batch(train: list[torch.Tensor], rng: np.random.Generator, args, any_style: int) -> tuple[torch.Tensor, ...]:
    """A random transposed batch of train pairs, a share of its style rows set to "any style"."""
    previous, bar, rows = train
    index = torch.from_numpy(rng.integers(0, len(bar), args.batch_size)).to(bar.device)
    shift = torch.from_numpy(rng.integers(-TRANSPOSE, TRANSPOSE + 1, args.batch_size)).to(bar.device)
    previous, bar = transposed_pair(previous[index], bar[index], shift)
    if not any_style:
        return previous, bar, None
    dropped = torch.from_numpy(rng.random(args.batch_size) < args.style_dropout).to(bar.device)
    return previous, bar, rows[index].masked_fill(dropped, any_style)


def _sample(pairs: Pairs, seed: int, count: int = EVAL_PAIRS) -> Pairs:
    if len(pairs[0]) <= count:
        return pairs
    index = torch.from_numpy(np.random.default_rng(seed).permutation(len(pairs[0]))[:count])
    return tuple(t[index] for t in pairs)


@torch.no_grad()
def wasserstein(generator: MelodyGAN, critic: Critic, previous, bar, rows, seed: int = 0) -> float:
    """The critic's Wasserstein estimate E[critic(real)] − E[critic(generated)] on fixed pairs (lower = closer)."""
    was_training = generator.training, critic.training
    generator.eval(), critic.eval()
    styles = rows if generator.styles else None
    noise = torch.randn(len(bar), generator.config.noise_dim, generator=torch.Generator().manual_seed(seed))
    fake = torch.softmax(generator(previous, noise.to(bar.device), styles), dim=-1)
    previous_hot = one_hot(previous, generator.config)
    real = critic(previous_hot, one_hot(bar, generator.config), styles).mean()
    result = float(real - critic(previous_hot, fake, styles).mean())
    generator.train(was_training[0]), critic.train(was_training[1])
    return result


@torch.no_grad()
def style_accuracy(generator: MelodyGAN, critic: Critic, previous, bar, rows, seed: int = 0) -> dict:
    """How often the critic's style head names the labelled style of real bars and of bars generated for that
    style (a training-side check; `bench/controls.py` judges takes with an independent classifier). {} without
    styles."""
    labelled = _labelled(critic, rows)
    if labelled is None or not labelled.any():
        return {}
    previous, bar, rows = previous[labelled], bar[labelled], rows[labelled]
    noise = torch.randn(len(bar), generator.config.noise_dim, generator=torch.Generator().manual_seed(seed))
    was_training = generator.training, critic.training
    generator.eval(), critic.eval()
    fake = torch.softmax(generator(previous, noise.to(bar.device), rows), dim=-1)
    previous_hot = one_hot(previous, generator.config)
    named = {"real": one_hot(bar, generator.config), "generated": fake}
    result = {
        f"style_accuracy_{kind}": float((critic.style_logits(previous_hot, grid).argmax(1) == rows).float().mean())
        for kind, grid in named.items()
    }
    generator.train(was_training[0]), critic.train(was_training[1])
    return result


@torch.no_grad()
def test_metrics(generator: MelodyGAN, critic: Critic, corpus: Corpus, device) -> dict:
    """Held-out numbers: Wasserstein estimates (test, train, and real bars after a *shuffled* previous bar as a
    reference), notes per bar of real vs sampled bars, mean max probability of the generator's steps."""
    styles = generator.styles
    train = [t.to(device) for t in _sample(bar_pairs(corpus.split("train"), styles), 3)]
    test = [t.to(device) for t in _sample(bar_pairs(corpus.split("test"), styles), 2)]
    test = test if len(test[1]) else train  # tiny corpora may have no test pairs (the card then shows train's)
    previous, bar, rows = test
    shuffled = previous[torch.randperm(len(bar), generator=torch.Generator().manual_seed(4)).to(device)]
    rows_or_none = rows if styles else None
    hot = one_hot(bar, generator.config)
    mismatch = critic(one_hot(previous, generator.config), hot, rows_or_none).mean()
    mismatch -= critic(one_hot(shuffled, generator.config), hot, rows_or_none).mean()
    noise = torch.randn(len(bar), generator.config.noise_dim, generator=torch.Generator().manual_seed(5))
    probabilities = torch.softmax(generator.eval()(previous, noise.to(device), rows_or_none), dim=-1)
    draws = torch.Generator().manual_seed(6)
    sampled = torch.multinomial(probabilities.flatten(0, 1).float().cpu(), 1, generator=draws)
    accuracy = {f"test_{k}": v for k, v in style_accuracy(generator, critic, *test).items()}
    return accuracy | {
        "test_pairs": len(bar),
        "test_wasserstein": wasserstein(generator, critic, *test),
        "train_wasserstein": wasserstein(generator, critic, *train),
        "test_wasserstein_shuffled_previous_bar": float(mismatch),
        "test_real_notes_per_bar": float((bar >= encoding.NOTE_ON).float().sum(1).mean()),
        "test_generated_notes_per_bar": float((sampled >= encoding.NOTE_ON).float().sum() / len(bar)),
        "test_generated_mean_max_probability": float(probabilities.max(dim=-1).values.mean()),
    }


def run(args: argparse.Namespace, corpus: Corpus, config: GANConfig, names: list[str], device, started: float):
    """`musegen train --model gan`: train, score on test, time sampling and write the checkpoint with its card."""
    from musegen_core.training.train import _settings, _training_info, resume_folder  # train imports this module

    folder = resume_folder(args)
    with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):  # seeds, no leaks
        torch.manual_seed(args.seed)
        generator = MelodyGAN(config)
        nets = nn.ModuleDict({"generator": generator, "critic": Critic(config), "ema": copy.deepcopy(generator)})
        nets.requires_grad_(True).to(device)
        nets["ema"].requires_grad_(False)
        progress = run_training(nets, corpus, args, device, folder, _settings(args))
        if progress is None:
            print(f"stopped at step {args.stop_at}; continue with the same command and --resume")
            return 0
        metrics = test_metrics(nets["ema"], nets["critic"].eval(), corpus, device)
    model = nets["ema"].cpu().eval()
    metrics |= card.measure_sampling(model)
    training = _training_info(args, corpus, model, device, progress, time.perf_counter() - started)
    training |= {"window_steps": BAR, "critic_steps": CRITIC_STEPS, "gradient_penalty": PENALTY,
                 "feature_matching": FEATURE_MATCHING, "style_weight": STYLE_WEIGHT, "ema": EMA, "transpose": TRANSPOSE,
                 "critic_parameters": sum(p.numel() for p in nets["critic"].parameters())}  # fmt: skip
    info = card.registry_info(names, "gan", args.preset, config.styles, args.version)
    meta = {"info": info, "training": training, "metrics": metrics, "model": config.to_dict()}
    save_checkpoint(model, config, args.out, model_card(Path(args.out).name, meta), metrics, info=info,
                    training=training)  # fmt: skip
    shutil.rmtree(folder, ignore_errors=True)
    print(f"wrote {args.out}: test Wasserstein estimate {metrics['test_wasserstein']:.4f}")
    return 0


def model_card(name: str, meta: dict) -> str:
    """The README.md of a GAN checkpoint from its `config.json` contents."""
    info, training, m = meta["info"], meta["training"], meta["metrics"]
    licences = "\n".join(f"- **{n}** — {COLLECTIONS[n].licence}" for n in training["collections"])
    styles = ", ".join(f"`{s}`" for s in meta["model"]["styles"]) or "none"
    return f"""# {name} — {training["preset"]} melody GAN (v{info["version"]})

MidiNet-style bar-conditional GAN: noise z + style ({styles}, or any style) + the previous bar (through a conv
conditioner) → the next 16-step bar as a relaxed one-hot grid over the shared tokens; the critic judges (previous bar,
bar) pairs. Trained with WGAN-GP on softmax outputs (real bars one-hot). Generation samples each step from the
generator's softmax (temperature, top-p), chunk by chunk: a chunk starts at every bar line and 16 steps into longer
bars, and training uses the same chunks of every meter (see `musegen_core/models/gan.py`). **No likelihood**:
`musegen eval` reports no NLL.

## Data and licences
{licences}

**Commercial use: {"cleared" if info["commercial_use_cleared"] else "NOT cleared (Essen: non-commercial only)"}**

{stats_markdown(training["corpus"])}

## Model and training
- generator + conditioner {training["parameters"]:,} parameters (shipped, fp32 safetensors; the exponential moving
  average {training["ema"]} of the trained generator); critic {training["critic_parameters"]:,} parameters (not shipped)
- {training["steps_done"]} of {training["steps"]} generator steps × {training["critic_steps"]} critic steps, batch
  {training["batch_size"]} bar pairs, Adam lr {training["lr"]} (β 0.5, 0.9), gradient penalty
  {training["gradient_penalty"]}, feature matching {training["feature_matching"]}, auxiliary style loss
  {training.get("style_weight", 0)}, transposition
  ±{training["transpose"]}, style dropout {training["style_dropout"]}
- device {training["device"]}, training {training["train_seconds"]} s, whole run {training["total_seconds"]} s

Reproduce: `{training["command"]}`

## Held-out results ({m["test_pairs"]} (previous bar, bar) pairs of the test split)
| metric | value |
| --- | ---: |
| critic's Wasserstein estimate, test (E critic(real) − E critic(generated); 0 = indistinguishable) | {
        m["test_wasserstein"]:.3f} |
| the same on train pairs | {m["train_wasserstein"]:.3f} |
| reference: real bars after their own vs a shuffled previous bar | {m["test_wasserstein_shuffled_previous_bar"]:.3f} |
| notes per bar, real test bars | {m["test_real_notes_per_bar"]:.2f} |
| notes per bar, sampled (T = 1) | {m["test_generated_notes_per_bar"]:.2f} |
| mean max probability per generated step (1 = one-hot) | {m["test_generated_mean_max_probability"]:.3f} |
{_style_rows(m)}
The Wasserstein estimate is the final critic's, so it measures how well *this* critic still tells the bars apart, not
an absolute distance; compare it with the shuffled-previous-bar reference.

### `musegen eval` (test split, 2-bar primes, 8 bars generated, T = 1)
{card.eval_table(m.get("eval"))}

Sampling 16 bars (256 steps after an 8-bar context), CPU, one thread: **{m["sampling_ms_per_16_bars"]} ms**
(median, {m["sampling_cpu"]}).
"""


def _style_rows(metrics: dict) -> str:
    """Card rows for the critic's style head (absent in checkpoints trained without it)."""
    if "test_style_accuracy_real" not in metrics:
        return ""
    return (
        f"| critic's style head names the style of real test bars | {metrics['test_style_accuracy_real']:.3f} |\n"
        f"| … of bars generated for that style | {metrics['test_style_accuracy_generated']:.3f} |\n"
    )
