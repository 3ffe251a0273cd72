"""Fine-tune a model on rater feedback into a new model version, then gate and (maybe) promote it.

    musegen finetune --model lstm-folk --dataset feedback/ [--device auto|cpu|cuda] [--steps 200] [--beta 0.1]
        [--out DIR] [--resume] [--max-test-tunes 200] [--no-promote]
    torchrun --nproc_per_node=N -m musegen_core.training.finetune --model lstm-folk --dataset feedback/

`--model` is a name or a family (its promoted model): the **parent**, loaded twice, as the policy being trained and
as the frozen **reference**. Feedback records (`training/preferences.py`: how a take is laid out after its prime
exactly as `continue_melody` lays it out, and how each family scores it) are split by a seeded hash into training
and held-out records (`--holdout`, 20 %). ℓ(y) below is the natural-log likelihood of take y given its prime, summed
over the take's steps; ℓ̄(y) = ℓ(y) / steps; w is the record's weight from the dataset.

**Loss** of a batch (B records drawn uniformly, W = Σ w over them):

    L = (1/W) Σ_records w · [ pair term  or  α · star term  +  λ · KL term ]  +  γ · corpus KL

- **Pairs → DPO** (Rafailov et al. 2023) against the frozen parent: with y⁺ the preferred take and y⁻ the other,
  m = β · [(ℓ_θ(y⁺) − ℓ_ref(y⁺)) − (ℓ_θ(y⁻) − ℓ_ref(y⁻))], pair term = −log σ(m). **Ties are skipped** (not
  trained on, not held out: a tie says nothing about which take to prefer); their number is recorded.
- **Stars → reward-weighted likelihood** with a signed advantage a = clip((stars − s̄) / 2, −1, 1), s̄ the weighted
  mean stars of the training ratings: a > 0 → a · (−ℓ̄_θ(y)) (raise the take's likelihood), a < 0 →
  |a| · mean_t −log(1 − p_θ(y_t)) (unlikelihood: lower it, bounded as p → 0, unlike −ℓ̄), a = 0 → nothing.
- **KL anchor to the parent on the takes**: mean over the record's take steps of KL(p_ref(·|h_t) ‖ p_θ(·|h_t)).
- **Corpus anchor** (`CorpusAnchor`): mean per-step KL(p_ref ‖ p_θ) over `--corpus-windows` windows of the
  parent's own train split drawn each step (LSTM/Transformer: `--corpus-window`-step windows; VAE: 2-bar windows
  from their latent mean), so that what raters teach does not cost the model its grip on real music: without it a
  preference far from the corpus (a test's synthetic "high notes") raised lstm-folk's test NLL by 7 % in 50 steps;
  with it, +3 % after 100 steps. It needs the corpus (as the gate does); `--corpus-weight 0` turns it off.

Defaults: β = 0.1 (`--beta`), α = 1 (`--star-weight`), λ = 0.1 (`--kl-weight`), γ = 1 (`--corpus-weight`, 16
windows of 128 steps), AdamW lr 1e-4, no weight decay,
10 warm-up steps then cosine decay to a tenth, gradient clip 1, dropout off (the policy is scored like the
reference). Per family: **LSTM and Transformer** train every weight; the **VAE** trains its decoder (`to_state`,
decoder LSTM, head, style table): encoder, `to_latent` and the shared token/position embeddings stay frozen, so each
window's z is the parent's μ. The **GAN is refused**: it defines no likelihood of a take (neither DPO nor a
likelihood-weighted objective applies) and its critic is not shipped, so feedback cannot be turned into a sound
update of it here; its ratings still count in the dataset's statistics and in comparisons between models.

**Devices and processes.** `--device auto` takes CUDA when present. Under `torchrun --nproc_per_node=N` the run is
data-parallel (DDP: NCCL on CUDA, gloo on CPU): every rank draws the same global batch from the same seeded
generator and scores its share (records i ≡ rank mod N); the loss is normalised by the global W, so N processes
compute the gradient one process would (up to float summation order). Only rank 0 shows the progress bar, writes
resume points, the gate's evaluation and the new version.

**Resume.** Every `--save-every` steps (and at `--stop-at`) rank 0 writes a resume point (`training/resume.py`:
weights, optimiser, schedule and RNG states, settings; atomic renames) to `OUT.resume`, or, without `--out`, to
`.finetune-<parent>-<dataset hash>.resume` in the user models directory. `--resume` goes on from it, bit for bit on
the same device and process count; a run killed at any moment resumes from its last resume point.

**The new version** is a checkpoint folder (safetensors + config.json + README.md model card, written atomically)
in the user models directory (`registry.user_models_dir()`), named `<base>-v<N>`, where base is the shipped model
at the root of the lineage and N the next free version number. Its config.json holds `lineage`: parent
`name@version` and the sha256 of its weights, the dataset's content hash and counts, the fine-tune settings, the
training history and metrics, and the validation gate's verdict (`training/gate.py`). A version that passes is
promoted to its family (`--no-promote` leaves it unpromoted); one that fails is kept, unpromoted, with the reasons.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import shlex
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.nn import functional as F
from tqdm import tqdm

from musegen_core.errors import CheckpointError, MusegenError
from musegen_core.models import registry
from musegen_core.models.checkpoint import load_checkpoint, save_checkpoint, write_meta
from musegen_core.training import gate as gates
from musegen_core.training import resume
from musegen_core.training.preferences import (
    LIKELIHOOD_FAMILIES,
    FeedbackData,
    ScoredTake,
    Scorer,
    collate,
    heldout,
    layout,
    logits_of,
    read_feedback,
    scored_take,
    take_scores,
)

FROZEN_VAE = ("token_embedding.", "position_embedding.", "encoder.", "to_latent.")  # the VAE parts left as they are
NOT_SETTINGS = {  # options that may change between an interrupted run and its --resume
    "resume", "stop_at", "device", "threads", "progress_file", "out", "save_every", "gate", "promote",
    "max_test_tunes", "cache_only", "workers", "nll_tolerance", "dataset", "version",
}  # fmt: skip
ProgressCallback = Callable[[dict], None]
OBJECTIVE = "DPO (pairs) + reward-weighted likelihood (stars) + KL anchors to the parent (takes, corpus windows)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `musegen finetune` (and of `python -m musegen_core.training.finetune`)."""
    add = parser.add_argument
    add("--model", required=True, help="parent: an installed model's name, or a family for its promoted model")
    add("--dataset", required=True, help="feedback dataset folder (musegen feedback export OUT/)")
    add("--device", default="auto", choices=["auto", "cpu", "cuda"], help="where to train (auto: CUDA if present)")
    add("--steps", type=int, default=200, help="optimiser steps")
    add("--batch-size", type=int, default=16, help="feedback records per step (all processes together)")
    add("--lr", type=float, default=1e-4, help="peak learning rate (AdamW)")
    add("--warmup", type=int, default=10, help="linear warm-up steps")
    add("--beta", type=float, default=0.1, help="DPO β: scale of the implicit reward (pairs)")
    add("--star-weight", type=float, default=1.0, help="α: weight of the reward-weighted likelihood term (stars)")
    add("--kl-weight", type=float, default=0.1, help="λ: weight of the KL anchor to the parent on the takes")
    add("--corpus-weight", type=float, default=1.0, help="γ: weight of the KL anchor on corpus windows (0 = off)")
    add("--corpus-windows", type=int, default=16, help="train-split windows per step for the corpus anchor")
    add("--corpus-window", type=int, default=128, help="steps per corpus window (LSTM, Transformer; VAE: 32)")
    add("--clip", type=float, default=1.0, help="gradient-norm clip")
    add("--holdout", type=float, default=0.2, help="share of feedback records held out for the gate (0–0.9)")
    add("--split-seed", type=int, default=0, help="seed of the held-out split of the feedback")
    add("--seed", type=int, default=0, help="seed of the batch draws")
    add("--save-every", type=int, default=50, help="steps between resume points")
    add("--out", default=None, help="version folder to write (default: <user models dir>/<base>-v<N>)")
    add("--version", default=None, help="version recorded in the registry (default: the next free number)")
    add("--resume", action="store_true", help="continue the interrupted run from its resume point")
    add("--stop-at", type=int, default=None, help="stop after this step, leaving a resume point (no version)")
    add("--threads", type=int, default=0, help="torch CPU threads per process (0 = torch's default)")
    add("--gate", default=True, action=argparse.BooleanOptionalAction, help="run the validation gate")
    add("--promote", default=True, action=argparse.BooleanOptionalAction, help="promote the version if it passes")
    add("--nll-tolerance", type=float, default=gates.NLL_TOLERANCE, help="gate: largest relative rise of test NLL")
    add("--max-test-tunes", type=int, default=None, help="gate: score at most this many test tunes (evenly spaced)")
    add("--collections", default=None, help="corpus anchor and gate: comma list of corpora (default: the parent's)")
    add("--cache-only", action="store_true", help="read the corpus from its caches only")
    add("--max-tunes", type=int, default=None, help="corpus: per collection, for quick tests")
    add("--workers", type=int, default=2, help="corpus parser processes (first build only)")
    add("--progress-file", default=None, help="write {phase, step, steps, loss} JSON here as the run goes (rank 0)")


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="musegen finetune", description=__doc__.split("\n")[0])
    add_arguments(parser)
    return parser.parse_args(argv)


@dataclass(frozen=True)
class FinetuneResult:
    """What a finished fine-tune produced (None fields on ranks > 0 and after --stop-at)."""

    name: str | None
    folder: Path | None
    gate: gates.GateResult | None
    promoted: bool


def finetune(
    model: str, dataset: str | Path, *, on_progress: ProgressCallback | None = None, **options: object
) -> FinetuneResult:
    """Python API of `musegen finetune` (for the app's background job): `options` are the CLI options by their
    Python names (`steps=100`, `device="cpu"`, `promote=False`, ...). `on_progress` gets the same dicts
    `--progress-file` holds. Admin action: the caller checks the admin secret."""
    args = parse(["--model", model, "--dataset", str(dataset)])
    if isinstance(dataset, FeedbackData):
        args.dataset = dataset
    for key, value in options.items():
        if not hasattr(args, key):
            raise TypeError(f"unknown fine-tune option {key!r}")
        setattr(args, key, value)
    return run_finetune(args, on_progress)


def run(args: argparse.Namespace) -> int:
    """`musegen finetune`: returns a process exit code."""
    run_finetune(args)
    return 0


# ---------------------------------------------------------------------------------------------------------------
# Examples


@dataclass(frozen=True)
class Example:
    """A training record laid out for the model: a pair (preferred take, other take) or a rating (one take)."""

    kind: str  # "pair" or "rating"
    takes: tuple[ScoredTake, ...]
    weight: float
    advantage: float = 0.0  # ratings: clip((stars − s̄) / 2, −1, 1)


@dataclass(frozen=True)
class Examples:
    train: list[Example]
    heldout: gates.PreferenceSet
    counts: dict


def build_examples(model: torch.nn.Module, data: FeedbackData, share: float, seed: int) -> Examples:
    """Lay out every usable record for `model` and split it (see the module docstring). Records whose MIDI cannot
    be read, or whose take does not follow its prime, are skipped and counted."""
    train_pairs, train_ratings, skipped = [], [], {}
    held_takes, held_pairs, held_ratings = [], [], []

    def take(prime: bytes, midi: bytes, controls: dict) -> ScoredTake:
        return scored_take(model, layout(model, prime, midi, controls))

    for pair in data.pairs:
        if pair.choice == "tie":
            continue
        try:
            a, b = (
                take(pair.prime_midi, pair.a_midi, pair.controls_a),
                take(pair.prime_midi, pair.b_midi, pair.controls_b),
            )
        except MusegenError as error:
            skipped[str(error)] = skipped.get(str(error), 0) + 1
            continue
        preferred, other = (a, b) if pair.choice == "a" else (b, a)
        if heldout(pair.key(), seed, share):
            held_takes += [preferred, other]
            held_pairs.append((len(held_takes) - 2, len(held_takes) - 1, pair.weight))
        else:
            train_pairs.append(Example("pair", (preferred, other), pair.weight))
    for rating in data.ratings:
        try:
            laid = take(rating.prime_midi, rating.take_midi, rating.controls)
        except MusegenError as error:
            skipped[str(error)] = skipped.get(str(error), 0) + 1
            continue
        if heldout(rating.key(), seed, share):
            held_takes.append(laid)
            held_ratings.append((len(held_takes) - 1, rating.stars, rating.weight))
        else:
            train_ratings.append((laid, rating.stars, rating.weight))
    weights = sum(w for _, _, w in train_ratings)
    mean = sum(s * w for _, s, w in train_ratings) / weights if weights > 0 else 3.0
    ratings = [Example("rating", (t,), w, float(np.clip((s - mean) / 2, -1, 1))) for t, s, w in train_ratings]
    counts = data.counts() | {
        "train_pairs": len(train_pairs), "train_ratings": len(ratings), "heldout_pairs": len(held_pairs),
        "heldout_ratings": len(held_ratings), "skipped": sum(skipped.values()), "skipped_reasons": skipped,
        "train_mean_stars": mean,
    }  # fmt: skip
    return Examples(train_pairs + ratings, gates.PreferenceSet(tuple(held_takes), tuple(held_pairs),
                                                                tuple(held_ratings)), counts)  # fmt: skip


# ---------------------------------------------------------------------------------------------------------------
# Loss


def batch_loss(
    policy: torch.nn.Module,
    reference: torch.nn.Module,
    examples: list[Example],
    total_weight: float,
    args: argparse.Namespace,
    device: torch.device,
) -> tuple[torch.Tensor, dict]:
    """The loss of this process's records of a batch (see the module docstring), normalised by the whole batch's
    weight `total_weight`; and its parts (sums, for logging)."""
    takes = [t for example in examples for t in example.takes]
    rows = collate(takes).to(device)
    logits = logits_of(policy, rows)
    with torch.no_grad():
        ref_logits = logits_of(reference, rows)
        ref = take_scores(ref_logits, rows).loglik
    scores = take_scores(logits, rows, ref_logits)
    steps = scores.steps.clamp(min=1)
    terms, kls, parts, index = [], [], {"dpo": 0.0, "stars": 0.0, "kl": 0.0}, 0
    for example in examples:
        count = len(example.takes)
        kl = (scores.kl[index : index + count] / steps[index : index + count]).mean()
        if example.kind == "pair":
            win, lose = index, index + 1
            margin = args.beta * ((scores.loglik[win] - ref[win]) - (scores.loglik[lose] - ref[lose]))
            term = F.softplus(-margin)
            parts["dpo"] += float(term.detach()) * example.weight
        else:
            a = example.advantage
            if a > 0:
                term = a * -scores.loglik[index] / steps[index]
            elif a < 0:
                term = -a * scores.unlikelihood[index] / steps[index]
            else:
                term = torch.zeros((), device=device)
            term = args.star_weight * term
            parts["stars"] += float(term.detach()) * example.weight
        parts["kl"] += float(kl.detach()) * example.weight
        terms.append(example.weight * (term + args.kl_weight * kl))
        kls.append(kl)
        index += count
    loss = torch.stack(terms).sum() / total_weight
    return loss, {k: v / total_weight for k, v in parts.items()}


class CorpusAnchor:
    """KL(parent ‖ policy) per step on windows of the parent's own training tunes, so that what raters teach does
    not cost the model its grip on real music (the held-out NLL the gate checks). Each step draws `--corpus-windows`
    windows (the whole batch on every process, from the run's generator; each process scores its share): for the
    LSTM and Transformer random `--corpus-window`-step windows with the tunes' styles; for the VAE bar-aligned 2-bar
    windows decoded from their (frozen) latent mean."""

    def __init__(self, parent: torch.nn.Module, tunes: list, args: argparse.Namespace) -> None:
        if not tunes:
            raise MusegenError("the corpus anchor needs train tunes (or turn it off with --corpus-weight 0)")
        self.tunes, self.styles, self.family = tunes, parent.styles, parent.family
        self.count, self.window = args.corpus_windows, args.corpus_window
        if self.family == "vae":
            from musegen_core.training.vae_train import bar_windows

            self.windows = bar_windows(tunes, parent.styles)
            if not len(self.windows[0]):
                raise MusegenError("the corpus has no bar-aligned 2-bar window for the VAE's corpus anchor")

    def rows(self, rng: np.random.Generator, reference: torch.nn.Module, device: torch.device):
        """The global batch of windows as a `RowBatch` (one row per window)."""
        from musegen_core.models.vae import START
        from musegen_core.training.batches import window_batch
        from musegen_core.training.preferences import RowBatch

        if self.family != "vae":
            batch = window_batch(self.tunes, rng, self.count, self.window, 0, styles=self.styles)
            inputs, positions, targets, styles, z = batch.inputs, batch.positions, batch.targets, batch.styles, None
        else:
            pick = torch.from_numpy(rng.integers(0, len(self.windows[0]), size=self.count))
            targets, positions = self.windows[0][pick], self.windows[1][pick]
            styles = self.windows[2][pick] if self.styles else None
            with torch.no_grad():
                z, _ = reference.model.encode(targets.to(device), positions.to(device))
            inputs = torch.cat([torch.full_like(targets[:, :1], START), targets[:, :-1]], dim=1)
        owner = torch.arange(len(inputs))
        return RowBatch(inputs, positions, targets, styles, z, owner, len(inputs)).to(device)

    def loss(self, policy, reference, rng: np.random.Generator, rank: int, world: int, device) -> torch.Tensor:
        """This process's share of the mean per-step KL over the global batch of windows."""
        from musegen_core.training.preferences import RowBatch

        rows = self.rows(rng, reference, device)
        total_steps = float((rows.targets != -100).sum())
        mine = torch.arange(rank, rows.takes, world, device=device)
        share = RowBatch(rows.inputs[mine], rows.positions[mine], rows.targets[mine],
                         None if rows.styles is None else rows.styles[mine], None if rows.z is None else rows.z[mine],
                         torch.arange(len(mine), device=device), len(mine))  # fmt: skip
        logits = logits_of(policy, share)
        with torch.no_grad():
            ref_logits = logits_of(reference, share)
        return take_scores(logits, share, ref_logits).kl.sum() / max(total_steps, 1.0)


# ---------------------------------------------------------------------------------------------------------------
# The run


def _distributed(device_name: str) -> tuple[int, int, torch.device]:
    """(rank, world size, device); initialises the process group under torchrun (WORLD_SIZE > 1)."""
    from musegen_core.training.train import _device

    device = _device(device_name)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        _import_dynamo_first()
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size(), device


def _import_dynamo_first() -> None:
    """Import `torch._dynamo` before the process group exists. The first optimiser (or DDP wrapper) imports it
    lazily, and imported while a group exists it keeps ~10 references to that group (measured with torch 2.13): then
    `destroy_process_group` cannot free the group, gloo's threads run on into interpreter shutdown, and a process
    occasionally died with SIGABRT ("terminate called without an active exception") after a finished run.
    Imported first, the group is freed, and its threads joined, in `destroy_process_group`."""
    import torch._dynamo  # noqa: F401


def _policy(parent: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """A trainable copy of the parent: dropout off (scored like the reference), the VAE's encoder side frozen."""
    policy = copy.deepcopy(parent).to(device)
    for module in policy.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
        if isinstance(module, torch.nn.LSTM):
            module.dropout = 0.0
    if policy.family == "vae":
        for name, parameter in policy.named_parameters():
            parameter.requires_grad_(not name.startswith(FROZEN_VAE))
    return policy.train()


def _lr_factor(step: int, warmup: int, total: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))


def _check(args: argparse.Namespace) -> None:
    if args.steps < 1 or args.batch_size < 1 or args.lr <= 0 or args.beta <= 0:
        raise MusegenError("--steps, --batch-size, --lr and --beta must be positive")
    if not 0 <= args.holdout <= 0.9:
        raise MusegenError(f"--holdout must be within 0 and 0.9 (received {args.holdout})")
    if args.max_test_tunes is not None and args.max_test_tunes < 1:
        raise MusegenError(f"--max-test-tunes must be at least 1 (received {args.max_test_tunes})")


def load_parent(name: str):
    """The parent's name, folder and loaded checkpoint; refuses the GAN and other families without a likelihood."""
    resolved = registry.resolve_model_name(name)
    folder = registry.model_folder(resolved)
    loaded = load_checkpoint(folder)
    family = loaded.meta["family"]
    if family not in LIKELIHOOD_FAMILIES:
        raise MusegenError(
            f"{resolved} is a {family} model: it defines no likelihood of a take, so it cannot be fine-tuned on "
            f"feedback (neither DPO nor reward-weighted likelihood applies). Fine-tune an LSTM, Transformer or VAE."
        )
    return resolved, folder, loaded


def run_finetune(args: argparse.Namespace, on_progress: ProgressCallback | None = None) -> FinetuneResult:
    """The whole fine-tune: train (DDP under torchrun), then on rank 0 gate, write the version and promote."""
    started = time.perf_counter()
    _check(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    rank, world, device = _distributed(args.device)
    try:
        if args.batch_size < world:
            raise MusegenError(f"--batch-size ({args.batch_size}) must be at least the number of processes ({world})")
        name, folder, loaded = load_parent(args.model)
        parent = loaded.model
        data = read_feedback(args.dataset) if not isinstance(args.dataset, FeedbackData) else args.dataset
        examples = build_examples(parent, data, args.holdout, args.split_seed)
        if not examples.train:
            raise MusegenError(
                f"no feedback to train on in {_dataset_path(args, data)}: {examples.counts['ratings']} ratings, "
                f"{examples.counts['pairs']} pairs ({examples.counts['ties']} ties), "
                f"{examples.counts['skipped']} unusable, {examples.counts['heldout_pairs']} + "
                f"{examples.counts['heldout_ratings']} held out"
            )
        settings = _settings(args, loaded.meta["sha256"], data.sha256, world)
        reporter = _Reporter(args.progress_file, on_progress, rank)
        corpus = parent_corpus(args, loaded.meta) if args.corpus_weight > 0 or (args.gate and rank == 0) else None
        anchor = CorpusAnchor(parent, corpus.split("train"), args) if args.corpus_weight > 0 else None
        policy, progress = _train(parent, examples, args, device, rank, world, settings, name, data, reporter,
                                  anchor)  # fmt: skip
    finally:
        if world > 1 and dist.is_initialized():
            dist.destroy_process_group()
    if policy is None or rank != 0:
        return FinetuneResult(None, None, None, False)
    result = _finish(args, name, folder, loaded, policy, examples, data, progress, device, world, started, reporter,
                     corpus)  # fmt: skip
    _remove(resume_folder(args, name, data.sha256))
    return result


def resume_folder(args: argparse.Namespace, parent: str, dataset_sha: str) -> Path:
    """`OUT.resume` beside an explicit --out; else a hidden folder in the user models directory per parent and
    dataset."""
    if args.out:
        return Path(f"{str(args.out).rstrip('/')}.resume")
    return registry.user_models_dir() / f".finetune-{parent}-{dataset_sha[:12]}.resume"


def _settings(args: argparse.Namespace, parent_sha: str, dataset_sha: str, world: int) -> dict:
    kept = {k: v for k, v in vars(args).items() if k not in NOT_SETTINGS and not callable(v)}
    return kept | {"parent_sha256": parent_sha, "dataset_sha256": dataset_sha}


class _Reporter:
    """Progress for the UI: a JSON file (atomic rewrites) and/or a callback; rank 0 only."""

    def __init__(self, path: str | None, callback: ProgressCallback | None, rank: int) -> None:
        self.path, self.callback, self.active = path, callback, rank == 0
        self.last = 0.0

    def __call__(self, force: bool = False, **state: object) -> None:
        if not self.active:
            return
        if self.callback is not None:
            self.callback(dict(state))
        now = time.monotonic()
        if self.path and (force or now - self.last > 0.5):
            self.last = now
            path = Path(self.path)
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_name(f".{path.name}.tmp")
            temporary.write_text(json.dumps(state, default=str))
            os.replace(temporary, path)


def read_progress(path: str | Path) -> dict | None:
    """The latest state a run wrote to its `--progress-file` (None before the first write)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def _train(parent, examples: Examples, args, device, rank: int, world: int, settings: dict, name: str, data,
           reporter: _Reporter, anchor: CorpusAnchor | None = None):  # fmt: skip
    """Optimise a copy of `parent`; returns (policy on `device`, progress), or (None, progress) at --stop-at."""
    reference = Scorer(copy.deepcopy(parent).to(device).eval())
    for parameter in reference.parameters():
        parameter.requires_grad_(False)
    policy = _policy(parent, device)
    trainable = [p for p in policy.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(trainable, lr=args.lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda step: _lr_factor(step, args.warmup, args.steps))
    rng = np.random.default_rng(args.seed)
    folder = resume_folder(args, name, data.sha256)
    state = (policy, optimiser, schedule, rng)
    progress = resume.load(folder, *state, settings) if args.resume else resume.Progress()
    scorer = Scorer(policy)
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        scorer = DistributedDataParallel(scorer, device_ids=[device.index] if device.type == "cuda" else None)
    train = examples.train
    bar = tqdm(range(progress.step + 1, args.steps + 1), desc="fine-tuning", unit="step", initial=progress.step,
               total=args.steps, disable=rank != 0)  # fmt: skip
    start, before = time.perf_counter(), progress.train_seconds
    for step in bar:
        chosen = rng.choice(len(train), size=min(args.batch_size, len(train)), replace=False)
        batch = [train[i] for i in chosen]
        total_weight = sum(example.weight for example in batch)
        mine = batch[rank::world]
        loss, parts = batch_loss(scorer, reference, mine, total_weight, args, device)
        if anchor is not None:  # drawn after the records, from the same generator (saved in resume points)
            corpus_kl = anchor.loss(scorer, reference, rng, rank, world, device)
            parts["corpus_kl"] = float(corpus_kl.detach())
            loss = loss + args.corpus_weight * corpus_kl
        optimiser.zero_grad(set_to_none=True)
        (loss * world).backward()  # DDP averages gradients over processes: ×world makes them the global sum
        torch.nn.utils.clip_grad_norm_(trainable, args.clip)
        optimiser.step()
        schedule.step()
        progress.step, progress.train_seconds = step, before + time.perf_counter() - start
        progress.history.append({"step": step} | _global({"loss": loss.item(), **parts}, world, device))
        bar.set_postfix(loss=f"{progress.history[-1]['loss']:.4f}")
        reporter(phase="training", step=step, steps=args.steps, loss=progress.history[-1]["loss"])
        if step % args.save_every == 0 or step == args.stop_at:
            if rank == 0:
                resume.save(folder, progress, *state, settings)
            if world > 1:
                dist.barrier()
        if step == args.stop_at:
            if rank == 0:
                print(f"stopped at step {step}; continue with the same command and --resume")
            return None, progress
    return policy, progress


def _global(values: dict[str, float], world: int, device: torch.device) -> dict[str, float]:
    """Per-process shares summed over all processes (the loss of the whole batch and its parts)."""
    if world <= 1:
        return values
    total = torch.tensor(list(values.values()), dtype=torch.float64, device=device)  # NCCL reduces CUDA tensors
    dist.all_reduce(total)
    return dict(zip(values, total.tolist(), strict=True))


def _remove(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)


# ---------------------------------------------------------------------------------------------------------------
# Gate, version, promotion


def parent_corpus(args: argparse.Namespace, parent_meta: dict):
    """The parent's corpus (its collections and split seed, unless --collections names others): its train split
    feeds the corpus anchor, its test split the gate."""
    from musegen_core.training.corpus import DEFAULT_COLLECTIONS
    from musegen_core.training.train import training_corpus

    training = parent_meta.get("training", {})
    names = [n.strip() for n in (args.collections or "").split(",") if n.strip()]
    names = names or list(training.get("collections") or DEFAULT_COLLECTIONS)
    options = argparse.Namespace(
        cache_only=args.cache_only, split_seed=int(training.get("split_seed", 0)), max_tunes=args.max_tunes,
        workers=args.workers,
    )  # fmt: skip
    return training_corpus(names, options)


def gate_tunes(args: argparse.Namespace, parent_meta: dict, corpus=None) -> list:
    """The held-out test tunes the gate scores: the test split of the parent's collections and split seed."""
    tunes = (corpus or parent_corpus(args, parent_meta)).split("test")
    if not tunes:
        raise MusegenError("the corpus has no test tunes to gate on")
    return gates.pick_test_tunes(tunes, args.max_test_tunes)


def _finish(args, name, folder, loaded, policy, examples: Examples, data: FeedbackData, progress, device, world,
            started, reporter, corpus=None) -> FinetuneResult:  # fmt: skip
    policy.eval()
    verdict = None
    if args.gate:
        reporter(force=True, phase="gate", step=progress.step, steps=args.steps)
        tunes = gate_tunes(args, loaded.meta, corpus)
        verdict = gates.evaluate(loaded.model.to(device), policy, tunes, examples.heldout, device, args.nll_tolerance)
        loaded.model.cpu()
    reporter(force=True, phase="saving", step=progress.step, steps=args.steps)
    base = loaded.meta.get("lineage", {}).get("base") or name
    with registry.registry_lock():
        version = args.version or str(registry.next_version(base))
        out = Path(args.out) if args.out else registry.user_models_dir() / f"{base}-v{version}"
        if out.exists():
            raise MusegenError(f"{out} exists already: versions are never overwritten (choose another --out)")
        meta = _meta(args, name, loaded, examples, data, progress, device, world, started, verdict, base, version)
        save_checkpoint(policy.cpu(), loaded.model.config, out, card_text(out.name, meta), meta["metrics"],
                        info=meta["info"], training=meta["training"], lineage=meta["lineage"])  # fmt: skip
    promoted = False
    if verdict is not None and verdict.passed and args.promote:
        if out.parent == registry.user_models_dir():
            registry.promote(out.name, by="finetune")
            promoted = True
            _record_gate(out, replace(verdict, promoted=True))
        else:
            print(f"not promoted: {out} is outside the user models directory {registry.user_models_dir()}")
    summary = (
        "not gated" if verdict is None else ("passed" if verdict.passed else "failed: " + "; ".join(verdict.reasons))
    )
    print(f"wrote {out} (gate {summary}{'; promoted' if promoted else ''})")
    reporter(force=True, phase="done", step=progress.step, steps=args.steps, name=out.name, promoted=promoted,
             gate=None if verdict is None else verdict.as_dict())  # fmt: skip
    return FinetuneResult(out.name, out, verdict, promoted)


def _meta(args, name, loaded, examples, data, progress, device, world, started, verdict, base, version) -> dict:
    parent_meta = loaded.meta
    counts = examples.counts
    settings = {k: v for k, v in vars(args).items() if k in _FINETUNE_KEYS}
    lineage = {
        "base": base,
        "parent": {"name": name, "version": str(parent_meta["info"].get("version", "1")),
                   "sha256": parent_meta["sha256"]},
        "dataset": {"path": _dataset_path(args, data), "sha256": data.sha256} | counts,
        "finetune": settings | {"objective": OBJECTIVE,
                                "ties": "skipped", "trained": _trained_parts(parent_meta["family"])},
        "gate": None if verdict is None else verdict.as_dict(),
    }  # fmt: skip
    metrics = {"train_loss_last": progress.history[-1]["loss"] if progress.history else None}
    if verdict is not None:
        metrics |= {
            "heldout_nll_bits_per_step": verdict.nll["candidate_bits_per_step"],
            "parent_heldout_nll_bits_per_step": verdict.nll["parent_bits_per_step"],
            "heldout_nll_change": verdict.nll["change"],
            "heldout_nll_tunes": verdict.nll.get("tunes"),
            "preference_score": verdict.preference["candidate"]["score"],
            "parent_preference_score": verdict.preference["parent"]["score"],
        }
        for key in ("pair_accuracy", "pair_margin_bits", "star_covariance"):
            if key in verdict.preference["candidate"]:
                metrics[key] = verdict.preference["candidate"][key]
                metrics[f"parent_{key}"] = verdict.preference["parent"][key]
    lineage["metrics"] = metrics
    info = dict(parent_meta["info"]) | {
        "version": version,
        "base": base,
        "description": f"{parent_meta['info'].get('description', name)}; fine-tuned from {name}@"
        f"{lineage['parent']['version']} on feedback {data.sha256[:12]} ({counts['train_pairs']} pairs, "
        f"{counts['train_ratings']} ratings)",
    }
    kind = "cuda" if device.type == "cuda" else "cpu"
    training = {
        "command": "musegen finetune " + shlex.join(_argv_of(args, data)),
        "kind": "finetune",
        "parent_command": parent_meta.get("training", {}).get("command"),
        "collections": parent_meta.get("training", {}).get("collections", []),
        "steps": args.steps,
        "steps_done": progress.step,
        "device": f"{device} ({torch.cuda.get_device_name(device)})" if kind == "cuda" else "cpu",
        "processes": world,
        "backend": None if world == 1 else ("nccl" if kind == "cuda" else "gloo"),
        "torch_threads": torch.get_num_threads(),
        "train_seconds": round(progress.train_seconds, 1),
        "total_seconds": round(time.perf_counter() - started, 1),
        "history": progress.history[-200:],
    }
    return {"family": parent_meta["family"], "info": info, "training": training, "metrics": metrics,
            "lineage": lineage, "model": parent_meta["model"]}  # fmt: skip


_FINETUNE_KEYS = ("steps", "batch_size", "lr", "warmup", "beta", "star_weight", "kl_weight", "corpus_weight",
                  "corpus_windows", "corpus_window", "clip", "holdout", "split_seed", "seed", "nll_tolerance",
                  "max_test_tunes", "collections", "max_tunes")  # fmt: skip


def _dataset_path(args: argparse.Namespace, data: FeedbackData) -> str:
    return data.source or "(in memory)" if isinstance(args.dataset, FeedbackData) else str(args.dataset)


def _trained_parts(family: str) -> str:
    if family == "vae":
        return "decoder (to_state, decoder LSTM, head, style table); encoder, to_latent, embeddings frozen"
    return "every weight"


def _argv_of(args: argparse.Namespace, data: FeedbackData) -> list[str]:
    """The options that reproduce this run (a dataset built in code is named by its source)."""
    from musegen_core.training.train import options_of

    spelled = argparse.Namespace(**{**vars(args), "dataset": _dataset_path(args, data)})
    return options_of(add_arguments, spelled, frozenset({"help", "resume", "stop_at", "progress_file"}))


def _record_gate(folder: Path, verdict: gates.GateResult) -> None:
    """Rewrite a version's gate record (config.json and card; the weights are untouched)."""
    meta = json.loads((folder / "config.json").read_text())
    meta["lineage"] = meta.get("lineage", {}) | {"gate": verdict.as_dict()}
    write_meta(folder, meta, card_text(folder.name, meta))


def gate(
    name: str,
    *,
    dataset: str | Path | FeedbackData | None = None,
    device: str = "auto",
    max_test_tunes: int | None = None,
    nll_tolerance: float = gates.NLL_TOLERANCE,
    collections: str | None = None,
    cache_only: bool = False,
    max_tunes: int | None = None,
    promote: bool = False,
) -> gates.GateResult:
    """Run the validation gate on an existing fine-tuned version against its parent, on the held-out part of its
    dataset (by default the one its lineage names, checked against the recorded content hash), record the verdict
    in its config.json and card, and with `promote` promote it if it passed. Admin action (the caller checks)."""
    from musegen_core.training.train import _device

    info = registry.model_info(name)
    lineage = info.lineage
    if not lineage.get("parent"):
        raise MusegenError(f"{name} is no fine-tuned version: the gate compares a version with its parent")
    folder = registry.model_folder(name)
    candidate = load_checkpoint(folder).model
    parent_name = lineage["parent"]["name"]
    try:
        parent = load_checkpoint(registry.model_folder(parent_name))
    except CheckpointError as error:
        raise MusegenError(f"the parent {parent_name} of {name} cannot be loaded ({error})") from None
    if parent.meta["sha256"] != lineage["parent"]["sha256"]:
        raise MusegenError(f"the parent {parent_name} changed since {name} was fine-tuned (sha256 differs)")
    data = dataset if isinstance(dataset, FeedbackData) else read_feedback(dataset or lineage["dataset"]["path"])
    if dataset is None and data.sha256 != lineage["dataset"]["sha256"]:
        raise MusegenError(f"the dataset at {lineage['dataset']['path']} changed since {name} was fine-tuned")
    settings = lineage.get("finetune", {})
    examples = build_examples(parent.model, data, settings.get("holdout", 0.2), settings.get("split_seed", 0))
    options = argparse.Namespace(collections=collections, cache_only=cache_only, max_tunes=max_tunes, workers=2,
                                 max_test_tunes=max_test_tunes)  # fmt: skip
    where = _device(device)
    verdict = gates.evaluate(parent.model.to(where), candidate.to(where), gate_tunes(options, parent.meta),
                             examples.heldout, where, nll_tolerance)  # fmt: skip
    if verdict.passed and promote:
        _record_gate(folder, verdict)
        registry.promote(name, by="gate")
        verdict = replace(verdict, promoted=True)
    _record_gate(folder, verdict)
    return verdict


# ---------------------------------------------------------------------------------------------------------------
# Model card


def card_text(name: str, meta: dict) -> str:
    """README.md of a fine-tuned version, from its config.json contents."""
    lineage, training, info = meta["lineage"], meta["training"], meta["info"]
    parent, dataset, settings = lineage["parent"], lineage["dataset"], lineage["finetune"]
    verdict = lineage.get("gate")
    return f"""# {name} — {meta["family"]} v{info["version"]}, fine-tuned on rater feedback

Fine-tuned from **{parent["name"]}@{parent["version"]}** (weights sha256 `{parent["sha256"][:16]}…`), lineage
root `{lineage["base"]}`. Licence and training data are the parent's: {"; ".join(info.get("trained_on", [])) or "—"}.
**Commercial use: {"cleared" if info.get("commercial_use_cleared") else "NOT cleared"}.**

## Feedback
Dataset `{dataset["path"]}`, content sha256 `{dataset["sha256"][:16]}…`: {dataset["ratings"]} ratings, {
        dataset["pairs"]
    } pairs ({dataset["ties"]} ties, skipped). Trained on {dataset["train_pairs"]} pairs and {
        dataset["train_ratings"]
    } ratings; held out {dataset["heldout_pairs"]} pairs and {dataset["heldout_ratings"]} ratings (seeded hash, {
        settings["holdout"]:.0%}); {dataset["skipped"]} records unusable.

## Fine-tuning
{settings["objective"]}: DPO β {settings["beta"]}, star weight α {settings["star_weight"]}, KL weight λ {
        settings["kl_weight"]
    }, corpus KL weight γ {settings.get("corpus_weight", 0)}; {training["steps_done"]} of {settings["steps"]} steps × {
        settings["batch_size"]
    } records, AdamW lr {settings["lr"]}; trained: {settings["trained"]}. Device {training["device"]}, {
        training["processes"]
    } process(es), {training["train_seconds"]} s training, {training["total_seconds"]} s in all.

Reproduce: `{training["command"]}`

## Validation gate
{_gate_lines(verdict)}
"""


def _gate_lines(verdict: dict | None) -> str:
    if not verdict:
        return "Not run (`--no-gate`): this version cannot be promoted without force until it is gated."
    nll, before, after = verdict["nll"], verdict["preference"]["parent"], verdict["preference"]["candidate"]
    rows = [
        f"**{'Passed' if verdict['passed'] else 'Failed'}**" + ("" if verdict["passed"] else ": " + "; ".join(
            verdict["reasons"])) + ("; promoted." if verdict.get("promoted") else "."),
        "",
        "| measure | parent | this version |",
        "| --- | ---: | ---: |",
        f"| held-out NLL, bits/step ({nll.get('measure', '')}, {nll.get('tunes')} test tunes; ≤ {nll['tolerance']:+.0%}"
        f") | {nll['parent_bits_per_step']:.4f} | {nll['candidate_bits_per_step']:.4f} ({nll['change']:+.2%}) |",
    ]  # fmt: skip
    for key, label in (("score", "preference score"), ("pair_margin_bits", "pair margin, bits/step"),
                       ("pair_accuracy", "preference accuracy"), ("star_covariance", "star covariance")):  # fmt: skip
        if before.get(key) is not None and after.get(key) is not None:
            rows.append(f"| {label} (held out) | {before[key]:+.4f} | {after[key]:+.4f} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    """`python -m musegen_core.training.finetune` (what torchrun starts in every process)."""
    import sys

    try:
        return run(parse(sys.argv[1:] if argv is None else argv))
    except MusegenError as error:
        print(f"musegen finetune: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
