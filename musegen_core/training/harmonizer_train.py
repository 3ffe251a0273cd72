"""Train the harmonizer (`musegen_core.models.harmonizer`) on the JSB Chorales at 16th-note resolution.

    python -m musegen_core.training.harmonizer_train [--out models/harmonizer-bach] [--preset harmonizer-small]
        [--steps 3000] [--max-minutes 25] [--device auto] [--seed 0]

Data: `Jsb16thSeparated.json` (`../shared/datasets/jsb-chorales/`, or `--data`): the standard train/valid/test
split of Boulanger-Lewandowski et al. (2012), as Coconet used it; a chorale is a list of 16th steps of [S, A, T, B]
MIDI pitches (a rest is NaN or a negative number). The pitch range of the model is the train split's.

Training: random crops of `--crop` steps from the **train** split (chorales picked in proportion to their length),
each transposed by a random shift of −`--transpose`..`--transpose` semitones that keeps every note in range;
orderless-NADE masks and loss (`harmonizer.random_known`, `harmonizer.orderless_nll`); Adam with linear warm-up and
cosine decay over `--steps` or `--max-minutes`, whichever ends first. Every `--valid-every` steps the same loss is
measured on fixed **valid** crops with fixed, stratified masks (the same each time), and the step with the lowest
valid NLL is kept. The test split is not read here: `evaluation/harmonizer_eval.py` scores it (and `--record`s the
numbers into the checkpoint's card).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from musegen_core.models.harmonizer import (
    PRESETS,
    SHIPPED_NAME,
    VOICES,
    Harmonizer,
    HarmonizerConfig,
    orderless_nll,
    random_known,
    save_harmonizer,
    to_classes,
)
from musegen_core.training.card import cpu_name

REPOSITORY = Path(__file__).resolve().parents[2]
DEFAULT_DATA = REPOSITORY.parent / "shared" / "datasets" / "jsb-chorales" / "Jsb16thSeparated.json"
SPLITS = ("train", "valid", "test")
BATCH, CROP, LR, WARMUP, CLIP = 8, 64, 2e-3, 100, 5.0
VALID_CROPS_PER_CHORALE, VALID_MASKS = 1, 4


def data_path(path: Path | str | None = None) -> Path:
    """`path`, else $MUSEGEN_JSB_PATH, else the shared dataset next to the repository."""
    return Path(path or os.environ.get("MUSEGEN_JSB_PATH") or DEFAULT_DATA)


def load_chorales(path: Path | str | None = None) -> dict[str, list[np.ndarray]]:
    """Every split of the JSON as (steps, 4) int arrays of MIDI pitches, −1 for a rest."""
    raw = json.loads(data_path(path).read_text())
    return {split: [_chorale(steps) for steps in raw[split]] for split in SPLITS if split in raw}


def _chorale(steps: list) -> np.ndarray:
    values = np.array(steps, dtype=np.float64).reshape(-1, len(VOICES))
    rests = np.isnan(values) | (values < 0)
    return np.where(rests, -1, np.nan_to_num(values)).astype(np.int64)


def pitch_range(chorales: list[np.ndarray]) -> tuple[int, int]:
    """Lowest and highest sounding pitch of the chorales."""
    pitches = np.concatenate([c[c >= 0] for c in chorales])
    return int(pitches.min()), int(pitches.max())


@dataclass
class Crops:
    """Random training crops of the train split (as class grids, (4, crop))."""

    chorales: list[np.ndarray]
    config: HarmonizerConfig
    crop: int
    transpose: int
    rng: np.random.Generator

    def batch(self, size: int) -> torch.Tensor:
        lengths = np.array([len(c) for c in self.chorales], dtype=np.float64)
        picks = self.rng.choice(len(self.chorales), size=size, p=lengths / lengths.sum())
        return torch.from_numpy(np.stack([self._one(self.chorales[i]) for i in picks]))

    def _one(self, chorale: np.ndarray) -> np.ndarray:
        start = int(self.rng.integers(0, max(1, len(chorale) - self.crop) + 1))
        piece = _pad(chorale[start : start + self.crop], self.crop)
        sounding = piece[piece >= 0]
        shifts = [s for s in range(-self.transpose, self.transpose + 1) if sounding.size == 0 or (
            sounding.min() + s >= self.config.min_pitch and sounding.max() + s <= self.config.max_pitch)]  # fmt: skip
        shift = int(self.rng.choice(shifts)) if shifts else 0
        return to_classes(np.where(piece >= 0, piece + shift, -1), self.config).T.copy()


def _pad(chorale: np.ndarray, length: int) -> np.ndarray:
    """A chorale shorter than `length` steps, padded with rests."""
    if len(chorale) >= length:
        return chorale
    return np.concatenate([chorale, np.full((length - len(chorale), len(VOICES)), -1)])


def valid_set(chorales: list[np.ndarray], config: HarmonizerConfig, crop: int, seed: int) -> list[tuple]:
    """Fixed valid batches of (classes, known): up to `VALID_CROPS_PER_CHORALE` evenly spaced crops per chorale, each
    with `VALID_MASKS` masks whose sizes are stratified over 1..4·crop (less variance than uniform sizes)."""
    generator = torch.Generator().manual_seed(seed)
    crops = []
    for chorale in chorales:
        starts = np.linspace(0, max(0, len(chorale) - crop), VALID_CROPS_PER_CHORALE).astype(int)
        crops += [to_classes(_pad(chorale[s : s + crop], crop), config).T for s in sorted(set(starts.tolist()))]
    classes = torch.from_numpy(np.stack(crops)).repeat_interleave(VALID_MASKS, dim=0)
    cells = len(VOICES) * crop
    sizes = ((torch.arange(len(classes)) % VALID_MASKS + torch.rand(len(classes), generator=generator)) * cells
             / VALID_MASKS).long().clamp(0, cells - 1) + 1  # fmt: skip
    ranks = torch.rand(len(classes), cells, generator=generator).argsort(dim=1).argsort(dim=1)
    known = (ranks >= sizes[:, None]).view(len(classes), len(VOICES), crop)
    return [(classes[i : i + 64], known[i : i + 64]) for i in range(0, len(classes), 64)]


@torch.inference_mode()
def valid_nll(model: Harmonizer, batches: list[tuple], device: torch.device) -> float:
    """Mean orderless-NADE NLL (nats per frame) of the fixed valid batches."""
    was = model.training
    model.eval()
    total = count = 0.0
    for classes, known in batches:
        classes, known = classes.to(device), known.to(device)
        total += float(orderless_nll(model(classes, known), classes, known).sum())
        count += len(classes)
    model.train(was)
    return total / count


def learning_rate(progress: float, step: int) -> float:
    """Linear warm-up over `WARMUP` steps, then cosine decay to 0 at progress 1."""
    return LR * min(1.0, (step + 1) / WARMUP) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def fit(
    chorales: dict[str, list[np.ndarray]],
    config: HarmonizerConfig,
    *,
    steps: int,
    max_seconds: float,
    seed: int = 0,
    device: torch.device | None = None,
    crop: int = CROP,
    batch: int = BATCH,
    transpose: int = 3,
    valid_every: int = 200,
    progress: bool = True,
) -> tuple[Harmonizer, dict]:
    """Train on `chorales["train"]`, choose the step by valid NLL; returns the model (eval mode, CPU) and a record of
    the run (steps done, seconds, history, best step)."""
    device = device or torch.device("cpu")
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = Harmonizer(config).to(device, memory_format=torch.channels_last)
    crops = Crops(chorales["train"], config, crop, transpose, np.random.default_rng(seed))
    valid = valid_set(chorales["valid"], config, crop, seed + 1)
    optimiser = torch.optim.Adam(model.parameters(), lr=LR)
    started, history, best = time.perf_counter(), [], (math.inf, 0, None)
    step, loss = 0, math.nan
    while step < steps:
        elapsed = time.perf_counter() - started
        if elapsed >= max_seconds:
            break
        for group in optimiser.param_groups:
            group["lr"] = learning_rate(max(step / steps, elapsed / max_seconds), step)
        loss = _train_step(model, optimiser, crops.batch(batch).to(device), generator)
        step += 1
        if step % valid_every == 0 or step == steps:
            best = _checkpoint(model, valid, device, step, loss, started, history, best, progress)
    if not history or history[-1]["step"] != step:
        best = _checkpoint(model, valid, device, step, loss, started, history, best, progress)
    model.load_state_dict(best[2])
    record = {"steps": step, "seconds": round(time.perf_counter() - started, 1), "history": history,
              "best_step": best[1], "valid_nll": best[0], "crop": crop, "batch_size": batch, "lr": LR,
              "warmup": WARMUP, "grad_clip": CLIP, "transpose": transpose, "valid_every": valid_every}  # fmt: skip
    return model.cpu().eval(), record


def _train_step(model: Harmonizer, optimiser: torch.optim.Optimizer, classes: torch.Tensor, generator) -> float:
    known = random_known(len(classes), classes.shape[2], generator).to(classes.device)
    loss = orderless_nll(model(classes, known), classes, known).mean()
    optimiser.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)
    optimiser.step()
    return float(loss.detach())


def _checkpoint(model, valid, device, step, loss, started, history, best, progress) -> tuple:
    """Score valid, log a history row, and return the best (nll, step, state) so far."""
    nll = valid_nll(model, valid, device)
    seconds = round(time.perf_counter() - started, 1)
    history.append({"step": step, "train_loss": round(loss, 4), "valid_nll": round(nll, 4), "seconds": seconds})
    if progress:
        print(f"step {step}: train {loss:.3f}  valid {nll:.4f} nats/frame  ({seconds:.0f} s)", flush=True)
    if nll < best[0]:
        return nll, step, {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    return best


def train_harmonizer(args: argparse.Namespace) -> dict:
    """Train as `args` says and write the checkpoint folder `args.out`; returns its metrics."""
    device = _device(args.device)
    chorales = load_chorales(args.data)
    low, high = pitch_range(chorales["train"])
    config = replace(PRESETS[args.preset], min_pitch=low, max_pitch=high)
    model, record = fit(chorales, config, steps=args.steps, max_seconds=args.max_minutes * 60, seed=args.seed,
                        device=device, crop=args.crop, batch=args.batch, transpose=args.transpose,
                        valid_every=args.valid_every)  # fmt: skip
    metrics = {"valid_orderless_nll_nats_per_frame": round(record["valid_nll"], 4)}
    training = record | {
        "command": f"musegen train --model harmonizer --preset {args.preset} --steps {args.steps} "
        f"--max-minutes {args.max_minutes} --seed {args.seed}",
        "preset": args.preset, "seed": args.seed, "device": device.type, "cpu": cpu_name(),
        "torch_threads": torch.get_num_threads(), "parameters": sum(p.numel() for p in model.parameters()),
        "data": {split: {"chorales": len(c), "frames": int(sum(len(x) for x in c))} for split, c in chorales.items()},
        "pitch_range": [low, high],
    }  # fmt: skip
    save_harmonizer(model, args.out, card_text(config, training, metrics), metrics, training)
    return metrics


def card_text(config: HarmonizerConfig, training: dict, metrics: dict) -> str:
    """The harmonizer's README.md (rebuilt by `harmonizer_eval --record` once test numbers exist)."""
    data = training["data"]
    test = metrics.get("test")
    results = (
        f"**Test framewise NLL {test['jsb_test_nll']:.3f} nats per frame** (Coconet's evaluation: "
        f"{test['orderings']} random orderings, each frame's probability averaged over them; "
        f"{test['frames_scored']:,} of {test['frames_total']:,} test frames, ± {test['sem']:.3f} standard error); "
        f"the per-frame average over orderings flatters every model, so also the single-ordering mean, a proper "
        f"NLL estimate: {test['single_ordering_nll']:.3f}. Baseline (independent bigram per voice, same frames, "
        f"same orderings): {test['baseline_nll']:.3f}, single-ordering {test['baseline_single_ordering_nll']:.3f}. "
        f"Coconet's published number: {test['coconet_published_nll']} ({test['coconet_published_source']})."
        if test
        else "Test split not scored yet: `python -m musegen_core.evaluation.harmonizer_eval --record`."
    )
    return f"""# {SHIPPED_NAME} — four-voice chorale harmonizer (Coconet-style)

Writes alto, tenor and bass under a given soprano (*harmonize*) and rewrites selected bars of a four-part piece
(*infill*) by blocked Gibbs sampling with annealed masking. Not a melody generator: the model picker leaves it out.
An orderless-NADE convolutional network after Huang et al., "Counterpoint by Convolution" (ISMIR 2017):
{2 + 2 * config.blocks} 3×3 convolutions ({config.blocks} residual blocks, batch norm), {config.channels} channels,
{training["parameters"]:,} parameters, over a 16th-note time × pitch grid of the 4 voices
(pitches {config.min_pitch}–{config.max_pitch} plus a rest class); code in `musegen_core/models/harmonizer.py`.

## Data and licence
J. S. Bach's four-part chorales — **public domain** — in the standard JSB Chorales split of Boulanger-Lewandowski,
Bengio & Vincent (ICML 2012) at 16th-note resolution (`Jsb16thSeparated.json`, as redistributed by
czhuang/JSB-Chorales-dataset and used by Coconet). Trained on the **train** split only
({data["train"]["chorales"]} chorales, {data["train"]["frames"]:,} frames); the valid split
({data["valid"]["chorales"]} chorales) chose the checkpoint; the test split ({data["test"]["chorales"]} chorales,
{data["test"]["frames"]:,} frames) is scored only for the number below. Commercial use: cleared (the music is
public domain; the note lists are plain pitch grids).

## Training
Random {training["crop"]}-step crops (batch {training["batch_size"]}), random transposition within
±{training["transpose"]} semitones that keeps the crop in range; orderless-NADE masks (hidden-cell count uniform,
loss rescaled by the mask size); Adam (lr {training["lr"]:g}, {training["warmup"]} warm-up steps, cosine decay),
gradient norm clipped at {training["grad_clip"]:g}. {training["steps"]:,} steps in {training["seconds"]:,.0f} s on
{training["device"]} ({training["cpu"]}, {training["torch_threads"]} torch thread(s)); step {training["best_step"]:,}
kept (lowest valid NLL). Reproduce: `{training["command"]}`.

## Results
Valid orderless-NADE NLL (random orderings of all cells, the training loss on fixed valid crops and masks):
{metrics["valid_orderless_nll_nats_per_frame"]:.3f} nats per frame.
{results}
"""


def _device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available")
    return torch.device(name)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("models") / SHIPPED_NAME, help="checkpoint folder to write")
    parser.add_argument("--data", type=Path, default=None, help=f"Jsb16thSeparated.json (default {DEFAULT_DATA})")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="harmonizer-small")
    parser.add_argument("--steps", type=int, default=3000, help="optimiser steps (the schedule's length)")
    parser.add_argument("--max-minutes", type=float, default=25.0, help="stop (and end the schedule) by then")
    parser.add_argument("--batch", type=int, default=BATCH)
    parser.add_argument("--crop", type=int, default=CROP, help="steps (16ths) per training crop")
    parser.add_argument("--transpose", type=int, default=3, help="random transposition of train crops, ± semitones")
    parser.add_argument("--valid-every", type=int, default=250)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    metrics = train_harmonizer(args)
    print(f"wrote {args.out}: valid NLL {metrics['valid_orderless_nll_nats_per_frame']:.4f} nats/frame")
    return 0
