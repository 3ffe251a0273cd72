"""Training and held-out metrics of the melody VAE (`musegen train --model vae`), called from `training.train`.

Data: every `vae.WINDOW`-step window of a tune that starts on a bar line (bar-aligned, like MusicVAE's 2-bar
slices), randomly transposed by up to ±`TRANSPOSE` semitones; the decoder gets the tune's style (10 % "any style").
Loss per window: reconstruction cross-entropy (summed over its steps) + β · max(KL − free bits, 0), β rising
linearly from 0 to `--beta` over the first 30 % of steps (KL annealing; MusicVAE's 2-bar models: β 0.2, 48 free
bits). Validation: the negative ELBO on fixed valid windows, best weights kept; resumable like the other families.
Test metrics: ELBO and KL (bits), and reconstruction accuracy of greedy decodes from μ, per step and per onset.

The continuation noise (`VAEConfig.continue_noise`, how far each next window's z strays from the last window's μ) is
no weight: a new checkpoint gets the default, and `bench/vae_noise.py --model NAME --apply` picks it afterwards on
the *valid* split (mean Yang–Lerch overlap of continuations with the real ones) and records how in the card.
"""

from __future__ import annotations

import argparse
import math
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F
from tqdm import tqdm

from musegen_core import encoding
from musegen_core.models.checkpoint import save_checkpoint
from musegen_core.models.vae import START, WINDOW, MelodyVAE, VAEConfig
from musegen_core.training import card, resume
from musegen_core.training.corpus import Corpus, Tune
from musegen_core.training.corpus_tables import stats_markdown
from musegen_core.training.sources import COLLECTIONS

TRANSPOSE = 5
EVAL_WINDOWS = 4096  # test/valid windows scored (a fixed sample when a split has more)


def bar_windows(tunes: list[Tune], styles: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every bar-aligned WINDOW-step window: tokens and positions (n, WINDOW) and style rows (n,)."""
    tokens, positions, rows = [], [], []
    for tune in tunes:
        first = (-tune.offset_steps) % tune.bar_steps
        for start in range(first, len(tune.tokens) - WINDOW + 1, tune.bar_steps):
            tokens.append(tune.tokens[start : start + WINDOW])
            positions.append(encoding.bar_positions(WINDOW, tune.bar_steps, tune.offset_steps, start=start))
            rows.append(styles.index(tune.style) if tune.style in styles else len(styles))
    if not tokens:
        empty = torch.zeros((0, WINDOW), dtype=torch.int64)
        return empty, empty, torch.zeros(0, dtype=torch.int64)
    return torch.from_numpy(np.stack(tokens)), torch.from_numpy(np.stack(positions)), torch.tensor(rows)


def transpose_batch(tokens: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Shift each window's pitches by a random −TRANSPOSE..TRANSPOSE semitones, reduced to stay in range."""
    onsets = tokens >= encoding.NOTE_ON
    pitch = tokens - encoding.NOTE_ON
    top = encoding.VOCAB_SIZE - encoding.NOTE_ON - 1
    low = torch.where(onsets, pitch, top).min(dim=1).values
    high = torch.where(onsets, pitch, 0).max(dim=1).values
    shift = torch.randint(-TRANSPOSE, TRANSPOSE + 1, (len(tokens),), generator=generator).to(tokens.device)
    shift = torch.minimum(torch.maximum(shift, -low), top - high)
    return torch.where(onsets, tokens + shift[:, None], tokens)


def loss_terms(model: MelodyVAE, tokens, positions, styles, sample: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-window reconstruction NLL and KL(q(z|x) ‖ N(0, I)), both (batch,) in nats."""
    logits, mu, log_var = model(tokens, positions, styles, sample=sample)
    nll = F.cross_entropy(logits.transpose(1, 2), tokens, reduction="none").sum(dim=1)
    kl = 0.5 * (mu.pow(2) + log_var.exp() - 1 - log_var).sum(dim=1)
    return nll, kl


def run_training(model: MelodyVAE, corpus: Corpus, args: argparse.Namespace, device: torch.device, folder, settings):
    """Optimise in place (best-by-valid weights left in `model`); returns the `resume.Progress`, or None at
    `--stop-at`."""
    train = [t.to(device) for t in bar_windows(corpus.split("train"), model.styles)]
    valid_tunes = corpus.split("valid") or corpus.split("train")
    valid = [t.to(device) for t in _sample(bar_windows(valid_tunes, model.styles), 1)]
    optimiser = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda step: _lr_factor(step, args.warmup, args.steps))
    rng = np.random.default_rng(args.seed)
    state = (model, optimiser, schedule, rng)
    progress = resume.load(folder, *state, settings) if args.resume else resume.Progress()
    free_nats = args.free_bits * math.log(2)
    bar = tqdm(range(progress.step + 1, args.steps + 1), desc="training vae", unit="step", initial=progress.step)
    start, before = time.perf_counter(), progress.train_seconds
    for step in bar:
        generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
        pick = torch.randint(len(train[0]), (args.batch_size,), generator=generator).to(device)
        tokens = transpose_batch(train[0][pick], generator)
        styles = train[2][pick] if model.styles else None
        if styles is not None:
            drop = (torch.rand(len(pick), generator=generator) < args.style_dropout).to(device)
            styles = styles.masked_fill(drop, len(model.styles))
        model.train()
        nll, kl = loss_terms(model, tokens, train[1][pick], styles)
        beta = args.beta * min(1.0, step / max(1, 0.3 * args.steps))
        loss = (nll.mean() + beta * torch.clamp(kl.mean() - free_nats, min=0)) / WINDOW
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        optimiser.step()
        schedule.step()
        progress.step, progress.train_seconds = step, before + time.perf_counter() - start
        if step % args.eval_every == 0 or step == args.steps:
            _validate(model, valid, progress, nll.mean().item() / WINDOW, kl.mean().item(), bar)
            resume.save(folder, progress, *state, settings)
        if step == args.stop_at:
            resume.save(folder, progress, *state, settings)
            return None
        if args.max_minutes and time.perf_counter() - start > 60 * args.max_minutes:
            print(f"stopping at step {step}: --max-minutes {args.max_minutes} reached")
            break
    model.load_state_dict(progress.best_state)
    return progress


def _lr_factor(step: int, warmup: int, total: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))


def _sample(windows: tuple[torch.Tensor, ...], seed: int) -> tuple[torch.Tensor, ...]:
    """At most EVAL_WINDOWS windows, a fixed random sample."""
    order = torch.randperm(len(windows[0]), generator=torch.Generator().manual_seed(seed))[:EVAL_WINDOWS]
    return tuple(t[order] for t in windows)


def _validate(model, valid, progress: resume.Progress, train_nats: float, train_kl: float, bar: tqdm) -> None:
    scores = elbo_metrics(model, *valid)
    valid_bits = scores["elbo_bits_per_step"]
    progress.history.append(
        {"step": progress.step, "train_recon_bits": train_nats / math.log(2), "train_kl_nats": train_kl,
         "valid_bits": valid_bits, "valid_kl_bits": scores["kl_bits_per_window"]}
    )  # fmt: skip
    bar.set_postfix(train=f"{train_nats / math.log(2):.3f}", valid=f"{valid_bits:.3f}")
    if valid_bits < progress.best:
        progress.best = valid_bits
        progress.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}


@torch.inference_mode()
def elbo_metrics(model: MelodyVAE, tokens, positions, styles, batch: int = 1024) -> dict:
    """Negative ELBO (one z sample per window) in bits per step, its reconstruction part, and KL bits per window."""
    model.eval()
    nll_total, kl_total = 0.0, 0.0
    cuda = [tokens.device.index or 0] if tokens.device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):  # the same z samples at every pass; training's RNG untouched
        torch.manual_seed(0)
        for i in range(0, len(tokens), batch):
            rows = styles[i : i + batch] if model.styles else None
            nll, kl = loss_terms(model, tokens[i : i + batch], positions[i : i + batch], rows)
            nll_total, kl_total = nll_total + float(nll.sum()), kl_total + float(kl.sum())
    n, ln2 = max(len(tokens), 1), math.log(2)
    return {
        "elbo_bits_per_step": (nll_total + kl_total) / n / WINDOW / ln2,
        "recon_bits_per_step": nll_total / n / WINDOW / ln2,
        "kl_bits_per_window": kl_total / n / ln2,
    }


@torch.inference_mode()
def greedy_reconstruct(model: MelodyVAE, tokens, positions, styles, batch: int = 1024) -> torch.Tensor:
    """Greedy autoregressive decodes from μ of (n, WINDOW) windows, (n, WINDOW)."""
    model.eval()
    out = []
    for i in range(0, len(tokens), batch):
        x, pos = tokens[i : i + batch], positions[i : i + batch]
        rows = styles[i : i + batch] if model.styles else None
        mu, _ = model.encode(x, pos)
        previous, state, decoded = torch.full_like(x[:, :1], START), None, []
        for step in range(WINDOW):
            logits, state = model.decode(mu, previous, pos[:, step : step + 1], rows, state)
            previous = logits[:, -1].argmax(-1, keepdim=True)
            decoded.append(previous)
        out.append(torch.cat(decoded, dim=1))
    return torch.cat(out)


def test_metrics(model: MelodyVAE, corpus: Corpus, device: torch.device) -> dict:
    """Held-out metrics on a fixed sample of the test split's bar-aligned windows (the windows' own styles)."""
    windows = [t.to(device) for t in _sample(bar_windows(corpus.split("test"), model.styles), 2)]
    tokens = windows[0]
    decoded = greedy_reconstruct(model, *windows)
    onsets = tokens >= encoding.NOTE_ON
    exact = (decoded == tokens).all(dim=1)
    return {f"test_{k}": v for k, v in elbo_metrics(model, *windows).items()} | {
        "test_windows": len(tokens),
        "test_recon_token_accuracy": float((decoded == tokens).float().mean()),
        "test_recon_onset_accuracy": float((decoded == tokens)[onsets].float().mean()),
        "test_recon_exact_windows": float(exact.float().mean()),
    }


def run(args: argparse.Namespace, corpus: Corpus, config, names: list[str], device: torch.device, started: float):
    """`musegen train --model vae`: train, score on test, time sampling and write the checkpoint with its card."""
    from musegen_core.training.train import _settings, _training_info, resume_folder  # train imports this module

    folder = resume_folder(args)
    with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):  # seeds, no leaks
        torch.manual_seed(args.seed)
        model = MelodyVAE(config).to(device)
        progress = run_training(model, corpus, args, device, folder, _settings(args))
        if progress is None:
            print(f"stopped at step {args.stop_at}; continue with the same command and --resume")
            return 0
        metrics = test_metrics(model, corpus, device)
    metrics |= card.measure_sampling(model)
    training = _training_info(args, corpus, model, device, progress, time.perf_counter() - started)
    training |= {"beta": args.beta, "free_bits": args.free_bits}
    info = card.registry_info(names, "vae", args.preset, config.styles, args.version)
    meta = {"info": info, "training": training, "metrics": metrics, "model": config.to_dict()}
    save_checkpoint(model.cpu(), config, args.out, model_card(Path(args.out).name, meta), metrics, info=info,
                    training=training)  # fmt: skip
    shutil.rmtree(folder, ignore_errors=True)
    elbo, token, onset = (
        metrics[f"test_{k}"] for k in ("elbo_bits_per_step", "recon_token_accuracy", "recon_onset_accuracy")
    )
    print(
        f"wrote {args.out}: test ELBO {elbo:.4f} bits/step, reconstruction {token:.3f} per step, {onset:.3f} per onset"
    )
    return 0


def _centroid_line(meta: dict) -> str:
    """How the style centroids behind Restyle were measured, or that they were not."""
    measured = meta["training"].get("style_centroids")
    if not measured or not meta["model"].get("style_centroids"):
        return "not available: style centroids not measured (`python -m musegen_core.training.vae_centroids`)"
    return (
        "each window's μ moves by strength × (target style's centroid − nearest style's centroid); centroids = mean μ "
        f"of ≤ {measured['per_style']} {measured['split']}-split windows per style, seed {measured['seed']}"
    )


def model_card(name: str, meta: dict) -> str:
    """The README.md of a VAE checkpoint from its `config.json` contents."""
    info, training, m = meta["info"], meta["training"], meta["metrics"]
    licences = "\n".join(f"- **{n}** — {COLLECTIONS[n].licence}" for n in training["collections"])
    styles = ", ".join(f"`{s}`" for s in meta["model"]["styles"]) or "none"
    return f"""# {name} — {training["preset"]} melody VAE (v{info["version"]})

MusicVAE-style variational autoencoder over {WINDOW}-step windows (2 bars of 4/4; windows start on a bar line and
carry the position in the bar, so 3/4 and 6/8 tunes train too): BiLSTM encoder → {meta["model"]["latent"]}-d
Gaussian latent → LSTM decoder conditioned on z and the style ({styles}, or any style). Modes: **Variations** (perturb
z of the melody's first 2 bars), **Interpolate** (slerp between two melodies' z), **Restyle** ({_centroid_line(meta)}),
and continuation (each next window decoded from the last window's μ + `continue_noise` × temperature × unit Gaussian
noise; {_noise_line(meta)}).

## Data and licences
{licences}

**Commercial use: {"cleared" if info["commercial_use_cleared"] else "NOT cleared (Essen: non-commercial only)"}**

{stats_markdown(training["corpus"])}

## Model and training
- {training["parameters"]:,} parameters (fp32 safetensors); β {training["beta"]} (annealed over the first 30 % of
  steps), {training["free_bits"]} free bits per window, transposition ±{training["transpose"]}, style dropout
  {training["style_dropout"]}, best-by-valid-ELBO weights kept
- {training["steps_done"]} of {training["steps"]} steps × {training["batch_size"]} windows, AdamW lr {training["lr"]};
  device {training["device"]}, training {training["train_seconds"]} s, whole run {training["total_seconds"]} s

Reproduce: `{training["command"]}`

## Held-out results ({m["test_windows"]} bar-aligned 2-bar windows of the test split)
| metric | value |
| --- | ---: |
| reconstruction accuracy per step (greedy decode from μ) | {m["test_recon_token_accuracy"]:.3f} |
| reconstruction accuracy per onset (true NOTE_ON steps decoded exactly) | {m["test_recon_onset_accuracy"]:.3f} |
| windows reconstructed exactly | {m["test_recon_exact_windows"]:.3f} |
| negative ELBO, bits per step (bound on −log₂ p(window) / {WINDOW}) | {m["test_elbo_bits_per_step"]:.3f} |
| of which reconstruction, bits per step | {m["test_recon_bits_per_step"]:.3f} |
| KL, bits per window | {m["test_kl_bits_per_window"]:.1f} |

The ELBO bounds a whole window's likelihood; it is not a next-step NLL over whole tunes, so the model sets
`has_likelihood = False` and `musegen eval` reports no NLL for it (MusicVAE reports ~0.95+ reconstruction accuracy
for 2-bar melodies, with a larger model and 4/4 only).

### `musegen eval` (test split, 2-bar primes, 8 bars generated, T = 1)
{card.eval_table(m.get("eval"))}

Sampling 16 bars (256 steps after an 8-bar context), CPU, one thread: **{m["sampling_ms_per_16_bars"]} ms**
(median, {m["sampling_cpu"]}).
"""


def _noise_line(meta: dict) -> str:
    """How the checkpoint's continuation noise was chosen (`metrics["continue_noise_choice"]`, see
    `bench/vae_noise.py`)."""
    noise = meta["model"].get("continue_noise", VAEConfig.continue_noise)
    choice = meta["metrics"].get("continue_noise_choice")
    if not choice:
        return (
            f"`continue_noise` = {noise}, the default, not yet chosen for this checkpoint: `bench/vae_noise.py "
            "--apply` picks it on the valid split"
        )
    settings = ", ".join(f"{value:g}" for value in choice["settings"])
    return (
        f"`continue_noise` = **{noise}**, the best mean overlap with the real continuations among {settings}, on "
        f"{choice.get('draws', 1)} draws of {choice['excerpts']} excerpts of the **{choice['split']}** split "
        f"(`{choice['script']}`, "
        f"`{choice['results']}`); the test split played no part"
    )
