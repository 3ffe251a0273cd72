"""Rater feedback as training data: records, their model-ready layout, and the log-likelihood of a take.

**Records.** A `RatedTake` (stars 1–5 on one take) or a `TakePair` (two takes of one prime, A better / B better /
tie), each with a weight (the dataset's per-rater weighting) and the controls the take was made with. `read_feedback`
reads an exported dataset (`musegen feedback export`) with `musegen_core.feedback.dataset.load_dataset` (which checks
its content hash) and adapts it to these records (`from_export`); `write_feedback` writes records built in code
(tests, simulated raters) to a folder it reads back too.

**Layout: exactly `continue_melody`'s.** The prime MIDI is read back into a melody and laid out by
`generate._model_inputs` (padded with rests to its next bar line, at most `CONTEXT_BARS` bars of it); the take is the
next `bars` bars of steps after that bar line (`bars` from the take's controls, else from its last note). MIDI
written before the exporter marked pickups (as a short first bar) keeps none: a record's controls may name it
(`pickup_beats`, or the continuation's `start_beats`), which makes the layout exact; without them the prime is read
with the pickup its MIDI shows, unless the take's first note lies before the bar line computed that way, which only a
pickup explains (a bar line is then put on that note). The style is the take's (its
controls' style and style mix) where the model knows it, else "any style".

**Log-likelihood of a take given its prime** (natural log, summed over the take's steps), per family:
- LSTM / Transformer: the next-step distributions over the whole sequence prime + take, scored on the take's steps
  (at temperature 1, with plain style conditioning, without steering, nucleus filtering or style-strength guidance:
  the model's own distribution; those controls are fixed transforms of it applied at sampling time).
- VAE (decoder): the take is cut into `vae.WINDOW`-step windows from its first bar line, as `MelodyVAE.generate`
  decodes it; window k is scored by the decoder from z_k = μ(encoder(the 32 steps before window k)), the latent
  mean without the continuation noise, decoding from START with teacher forcing. log p(take) = Σ_k log p_dec(window
  k | z_k). The encoder is frozen while fine-tuning, so each z_k is computed once, with the parent.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from musegen_core import encoding
from musegen_core.controls import Controls
from musegen_core.errors import ControlError, FormatError, MusegenError
from musegen_core.formats.midi import midi_to_piece
from musegen_core.generate import _melody_part, _model_inputs, _model_style
from musegen_core.models.style import StyleMix
from musegen_core.models.vae import START, WINDOW, _pad_window
from musegen_core.music import Piece
from musegen_core.training.batches import IGNORE

LIKELIHOOD_FAMILIES = ("lstm", "transformer", "vae")
CHOICES = ("a", "b", "tie")
RECORDS_FORMAT = "musegen-preference-records"  # manifest "format" of folders written by `write_feedback`


# ---------------------------------------------------------------------------------------------------------------
# Records


@dataclass(frozen=True)
class RatedTake:
    """One take rated 1–5 stars."""

    prime_midi: bytes
    take_midi: bytes  # the generated bars only, on the prime's time line (`Continuation.generated`)
    stars: int
    weight: float = 1.0  # the dataset's weight of this rating (per-rater caps, duplicates)
    model: str = ""  # model name and version that made the take
    version: str = ""
    controls: dict = field(default_factory=dict)  # `Controls.as_dict()` (+ part/tune indices)

    def key(self) -> str:
        """Content hash: decides the held-out split."""
        return _digest(self.prime_midi, self.take_midi)


@dataclass(frozen=True)
class TakePair:
    """Two takes continuing one prime and the rater's choice."""

    prime_midi: bytes
    a_midi: bytes
    b_midi: bytes
    choice: str  # "a", "b" or "tie"
    weight: float = 1.0
    models: tuple[str, str] = ("", "")  # "name@version" of each take's model
    controls_a: dict = field(default_factory=dict)
    controls_b: dict = field(default_factory=dict)

    def key(self) -> str:
        """Content hash (order of A and B does not matter): decides the held-out split."""
        return _digest(self.prime_midi, *sorted((self.a_midi, self.b_midi)))


@dataclass(frozen=True)
class FeedbackData:
    """A feedback dataset: its ratings, pairs, content hash and where it came from."""

    ratings: tuple[RatedTake, ...]
    pairs: tuple[TakePair, ...]
    sha256: str  # the export's content hash (manifest), or a hash of the records when there is none
    source: str = ""

    def counts(self) -> dict[str, int]:
        return {
            "ratings": len(self.ratings),
            "pairs": len(self.pairs),
            "ties": sum(p.choice == "tie" for p in self.pairs),
        }


def _digest(*parts: bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(hashlib.sha256(part).digest())
    return digest.hexdigest()


def records_sha256(ratings: Sequence[RatedTake], pairs: Sequence[TakePair]) -> str:
    """A content hash of records (for data built in code, without an export manifest)."""
    digest = hashlib.sha256()
    for r in ratings:
        digest.update(f"r|{r.key()}|{r.stars}|{r.weight}|{json.dumps(r.controls, sort_keys=True)}\n".encode())
    for p in pairs:
        digest.update(f"p|{p.key()}|{p.choice}|{p.weight}\n".encode())
    return digest.hexdigest()


def read_feedback(path: Path | str) -> FeedbackData:
    """A feedback dataset as records: an export of `musegen feedback export` (read and verified by
    `feedback.dataset.load_dataset`) or a folder written by `write_feedback`. Raises `MusegenError` naming what is
    missing or malformed."""
    path = Path(path)
    if not path.exists():
        raise MusegenError(f"no feedback dataset at {path} (export one with `musegen feedback export OUT/`)")
    manifest = path / "manifest.json"
    if manifest.is_file() and _json(manifest).get("format") == RECORDS_FORMAT:
        return _read_export_folder(path)  # written by `write_feedback`
    from musegen_core.feedback.dataset import load_dataset  # checks format, content hash and every piece

    return from_export(load_dataset(path), str(path))


def write_feedback(data: FeedbackData, folder: Path | str) -> Path:
    """Write records in the export's layout (manifest.json with `format` = RECORDS_FORMAT and the content hash,
    ratings.jsonl, pairs.jsonl, pieces/<sha256>.mid): for feedback built in code (tests, simulated raters)."""
    folder = Path(folder)
    (folder / "pieces").mkdir(parents=True, exist_ok=True)

    def piece(data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        (folder / "pieces" / f"{sha}.mid").write_bytes(data)
        return sha

    ratings = [
        {"prime": piece(r.prime_midi), "take": piece(r.take_midi), "stars": r.stars, "weight": r.weight,
         "model_name": r.model, "model_version": r.version, "controls": r.controls}
        for r in data.ratings
    ]  # fmt: skip
    pairs = [
        {"prime": piece(p.prime_midi), "a": piece(p.a_midi), "b": piece(p.b_midi), "choice": p.choice,
         "weight": p.weight, "models": list(p.models), "controls_a": p.controls_a, "controls_b": p.controls_b}
        for p in data.pairs
    ]  # fmt: skip
    for name, rows in (("ratings.jsonl", ratings), ("pairs.jsonl", pairs)):
        (folder / name).write_text("".join(json.dumps(row, sort_keys=True) + "\n" for row in rows))
    manifest = {"format": RECORDS_FORMAT, "content_sha256": data.sha256} | data.counts()
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return folder


def from_export(data: Any, source: str = "") -> FeedbackData:
    """Adapt a dataset object or dict to `FeedbackData`: `feedback.dataset.load_dataset`'s `FeedbackDataset`
    (ratings with prime_midi/take_midi, pairs whose takes `a`/`b` carry midi, controls and model), or the dicts of
    `write_feedback`'s folders."""
    ratings = tuple(
        RatedTake(
            prime_midi=_field(r, "prime_midi"),
            take_midi=_field(r, "take_midi"),
            stars=int(_field(r, "stars")),
            weight=float(_field(r, "weight", default=1.0)),
            model=str(_field(r, "model_name", default="")),
            version=str(_field(r, "model_version", default="")),
            controls=dict(_field(r, "controls", default={}) or {}),
        )
        for r in _field(data, "ratings", default=())
    )
    pairs = []
    for p in _field(data, "pairs", default=()):
        a, b = _field(p, "a"), _field(p, "b")
        if isinstance(a, bytes):  # write_feedback's dicts: the takes' MIDI inline, controls beside them
            sides = [(a, _field(p, "controls_a", default={}), ""), (b, _field(p, "controls_b", default={}), "")]
            models = tuple(_field(p, "models", default=("", "")))
        else:  # feedback.dataset.DatasetTake
            sides = [(t.midi, t.controls, f"{t.model_name}@{t.model_version}") for t in (a, b)]
            models = (sides[0][2], sides[1][2])
        pairs.append(
            TakePair(
                prime_midi=_field(p, "prime_midi"),
                a_midi=sides[0][0],
                b_midi=sides[1][0],
                choice=_choice(_field(p, "choice")),
                weight=float(_field(p, "weight", default=1.0)),
                models=models,
                controls_a=dict(sides[0][1] or {}),
                controls_b=dict(sides[1][1] or {}),
            )
        )
    sha = _field(data, "content_sha256", default=None) or records_sha256(ratings, pairs)
    return FeedbackData(ratings, tuple(pairs), str(sha), source)


_MISSING = object()


def _field(record: Any, *names: str, default: Any = _MISSING) -> Any:
    for name in names:
        if isinstance(record, dict) and name in record:
            return record[name]
        if not isinstance(record, dict) and hasattr(record, name):
            return getattr(record, name)
    if default is _MISSING:
        raise MusegenError(f"feedback record lacks the field {names[0]!r}")
    return default


def _choice(value: Any) -> str:
    choice = str(value).lower()
    if choice not in CHOICES:
        raise MusegenError(f"a pair's choice must be one of {CHOICES} (received {value!r})")
    return choice


def _read_export_folder(folder: Path) -> FeedbackData:
    """Read a folder written by `write_feedback`: records whose piece fields name files in pieces/."""
    manifest = _json(folder / "manifest.json")

    def piece(digest: str) -> bytes:
        try:
            return (folder / "pieces" / f"{digest}.mid").read_bytes()
        except OSError:
            raise MusegenError(f"{folder}: missing piece {digest}.mid") from None

    def rows(name: str) -> list[dict]:
        file = folder / name
        if not file.is_file():
            return []
        return [json.loads(line) for line in file.read_text(encoding="utf-8").splitlines() if line.strip()]

    try:
        ratings = [{**r, "prime_midi": piece(r["prime"]), "take_midi": piece(r["take"])} for r in rows("ratings.jsonl")]
        pairs = [
            {**p, "prime_midi": piece(p["prime"]), "a": piece(p["a"]), "b": piece(p["b"])} for p in rows("pairs.jsonl")
        ]
    except (KeyError, TypeError, ValueError) as error:
        raise MusegenError(f"{folder} has a malformed record ({error})") from None
    data = {"ratings": ratings, "pairs": pairs, "content_sha256": manifest.get("content_sha256")}
    return from_export(data, str(folder))


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise MusegenError(f"{path} cannot be read as JSON ({error})") from None


def heldout(key: str, seed: int, share: float) -> bool:
    """Whether a record (by its content `key`) is held out: a seeded hash bucket below `share` (0–1)."""
    bucket = int(hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()[:8], 16) % 10000
    return bucket < round(share * 10000)


# ---------------------------------------------------------------------------------------------------------------
# Layout


@dataclass(frozen=True)
class Layout:
    """A take after its prime, as `continue_melody` lays them out: tokens and bar positions of every step."""

    tokens: np.ndarray  # (time,) context then take
    positions: np.ndarray  # (time,) bar position of every step
    start: int  # index of the take's first step
    style: object  # what `generate` gets as style (int, StyleMix or None)


def layout(model: nn.Module, prime_midi: bytes, take_midi: bytes, controls: dict) -> Layout:
    """Lay out one take after its prime for `model` (see the module docstring). Raises `MusegenError` (e.g.
    `FormatError`, `ControlError`) when the MIDI cannot be read or the take does not follow the prime."""
    prime = _melody_part(midi_to_piece(prime_midi), 0)
    take = midi_to_piece(take_midi)
    if not take.parts or not take.parts[0].notes:
        raise FormatError("the take has no notes")
    bar_steps = encoding.bar_steps_of(prime)
    prime_end = len(encoding.piece_to_tokens(prime).tokens)
    onsets = [round(n.start_beats * encoding.STEPS_PER_BEAT) for n in take.parts[0].notes]
    if min(onsets) < prime_end:
        raise FormatError("the take starts before the prime ends")
    pickup = _pickup_steps(prime, controls, min(onsets), bar_steps)
    if pickup:
        prime = replace(prime, pickup_beats=pickup / encoding.STEPS_PER_BEAT)
    end = len(encoding.piece_to_tokens(take).tokens)
    _, _, start = _model_inputs(prime, 1)
    bars = controls.get("bars")
    if not isinstance(bars, int) or bars < 1:
        bars = max(1, math.ceil((end - start) / bar_steps))
    context, positions, start = _model_inputs(prime, bars)
    target = encoding.piece_to_tokens(take, total_steps=start + bars * bar_steps).tokens[start:]
    return Layout(np.concatenate([context, target]), positions, len(context), _style(model, controls))


def _pickup_steps(prime: Piece, controls: dict, first_onset: int, bar_steps: int) -> int:
    """The prime's pickup in steps: from the record's `pickup_beats` or `start_beats` (the continuation's first bar
    line) where it has one, else 0 unless the take's first note comes before the first bar line after a pickup-less
    prime, which only a pickup explains: then a bar line is put on that note."""
    if isinstance(controls.get("pickup_beats"), int | float):
        return round(controls["pickup_beats"] * encoding.STEPS_PER_BEAT) % bar_steps
    if isinstance(controls.get("start_beats"), int | float):
        return round(controls["start_beats"] * encoding.STEPS_PER_BEAT) % bar_steps
    _, _, start = _model_inputs(prime, 1)
    return first_onset % bar_steps if first_onset < start else 0


def _style(model: nn.Module, controls: dict) -> object:
    """The take's style for this model: its controls' style (and mix), or None where the model lacks it."""
    names = {"style", "mix_style", "mix"}
    try:
        return _model_style(model, Controls(**{k: v for k, v in controls.items() if k in names}))
    except (ControlError, TypeError):
        return None


def style_weights(model: nn.Module, style: object) -> np.ndarray | None:
    """(len(styles) + 1,) float mixing weights of the style table rows (None for a model without styles)."""
    if not getattr(model, "styles", ()):
        return None
    weights = np.zeros(len(model.styles) + 1, dtype=np.float32)
    if isinstance(style, StyleMix):
        weights[style.first] += 1 - style.weight
        weights[style.second] += style.weight
    else:
        weights[len(model.styles) if style is None else int(style)] = 1.0
    return weights


@dataclass(frozen=True)
class Row:
    """One row a family scores: inputs, bar positions and targets (IGNORE where not part of the take), plus, for
    the VAE, the window's z."""

    inputs: np.ndarray
    positions: np.ndarray
    targets: np.ndarray
    z: np.ndarray | None = None


@dataclass(frozen=True)
class ScoredTake:
    """A take in a family's rows, with its style weights and the number of steps scored."""

    rows: tuple[Row, ...]
    style: np.ndarray | None
    steps: int


def scored_take(model: nn.Module, laid: Layout) -> ScoredTake:
    """The rows that score `laid`'s take under `model`'s family (`model` gives the VAE's z: the parent)."""
    family = model.family
    if family not in LIKELIHOOD_FAMILIES:
        raise MusegenError(f"the {family} family has no likelihood to score takes with")
    tokens, positions, start = laid.tokens, laid.positions, laid.start
    steps = len(tokens) - start
    if family != "vae":
        targets = tokens[1:].copy()
        targets[: start - 1] = IGNORE
        rows = (Row(tokens[:-1], positions[1:], targets),)
    else:
        rows = tuple(_vae_rows(model, tokens, positions, start))
    return ScoredTake(rows, style_weights(model, laid.style), steps)


@torch.no_grad()
def _vae_rows(model: nn.Module, tokens: np.ndarray, positions: np.ndarray, start: int) -> list[Row]:
    rows = []
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    for begin in range(start, len(tokens), WINDOW):
        source = slice(max(0, begin - WINDOW), begin)
        window, where = _pad_window(torch.from_numpy(tokens[source]), torch.from_numpy(positions[source]))
        mu, _ = model.encode(window[None].to(device), where[None].to(device))
        size = min(WINDOW, len(tokens) - begin)
        target = tokens[begin : begin + size]
        previous = np.concatenate([[START], target[:-1]]).astype(np.int64)
        rows.append(Row(previous, positions[begin : begin + size], target.copy(), mu[0].cpu().numpy()))
    model.train(was_training)
    return rows


# ---------------------------------------------------------------------------------------------------------------
# Scoring


@dataclass
class RowBatch:
    """Padded rows of several takes: `owner[r]` is the index (in the batch's take list) of row r's take."""

    inputs: torch.Tensor
    positions: torch.Tensor
    targets: torch.Tensor
    styles: torch.Tensor | None
    z: torch.Tensor | None
    owner: torch.Tensor
    takes: int

    def to(self, device: torch.device) -> RowBatch:
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return RowBatch(*(move(t) for t in (self.inputs, self.positions, self.targets, self.styles, self.z)),
                        self.owner.to(device), self.takes)  # fmt: skip


def collate(takes: Sequence[ScoredTake]) -> RowBatch:
    """Rows of `takes`, padded at the end to the longest (padding is never a target)."""
    rows = [(i, row) for i, take in enumerate(takes) for row in take.rows]
    width = max(len(row.inputs) for _, row in rows)
    inputs = np.zeros((len(rows), width), dtype=np.int64)
    positions = np.zeros((len(rows), width), dtype=np.int64)
    targets = np.full((len(rows), width), IGNORE, dtype=np.int64)
    for r, (_, row) in enumerate(rows):
        inputs[r, : len(row.inputs)], positions[r, : len(row.inputs)] = row.inputs, row.positions
        targets[r, : len(row.targets)] = row.targets
    styles = None
    if takes[0].style is not None:
        styles = torch.from_numpy(np.stack([takes[i].style for i, _ in rows]))
    z = torch.from_numpy(np.stack([row.z for _, row in rows])) if rows[0][1].z is not None else None
    owner = torch.tensor([i for i, _ in rows])
    return RowBatch(torch.from_numpy(inputs), torch.from_numpy(positions), torch.from_numpy(targets), styles, z,
                    owner, len(takes))  # fmt: skip


class Scorer(nn.Module):
    """Next-step logits of a `RowBatch` for any likelihood family: the module that DDP wraps while fine-tuning."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, inputs, positions, styles=None, z=None) -> torch.Tensor:
        if self.model.family == "vae":
            return self.model.decode(z, inputs, positions, styles)[0]
        return self.model(inputs, positions, styles=styles)[0]


def logits_of(scorer: nn.Module, batch: RowBatch) -> torch.Tensor:
    return scorer(batch.inputs, batch.positions, batch.styles, batch.z)


@dataclass
class TakeScores:
    """Per take of a batch (natural logs): summed log-likelihood, steps, summed unlikelihood −log(1 − p) and
    summed KL(reference ‖ model) over the take's steps (zeros without a reference)."""

    loglik: torch.Tensor
    steps: torch.Tensor
    unlikelihood: torch.Tensor
    kl: torch.Tensor


def take_scores(logits: torch.Tensor, batch: RowBatch, reference: torch.Tensor | None = None) -> TakeScores:
    """Scores of every take of `batch` from the model's (and optionally the reference's) logits."""
    mask = batch.targets != IGNORE
    log_probs = F.log_softmax(logits.float(), dim=-1)
    token = log_probs.gather(-1, batch.targets.clamp(min=0)[..., None])[..., 0] * mask
    unlikely = -torch.log1p(-token.exp().clamp(max=1 - 1e-6)) * mask
    if reference is not None:
        ref = F.log_softmax(reference.float(), dim=-1)
        kl = (ref.exp() * (ref - log_probs)).sum(-1) * mask
    else:
        kl = torch.zeros_like(token)

    def per_take(values: torch.Tensor) -> torch.Tensor:
        return torch.zeros(batch.takes, device=values.device, dtype=values.dtype).index_add(
            0, batch.owner, values.sum(-1)
        )

    return TakeScores(per_take(token), per_take(mask.float()), per_take(unlikely), per_take(kl))


@torch.no_grad()
def mean_logliks(model: nn.Module, takes: Sequence[ScoredTake], device: torch.device, batch: int = 32) -> np.ndarray:
    """Mean log-likelihood per step (bits) of each take under `model` (eval mode)."""
    was_training = model.training
    model.eval()
    scorer, out = Scorer(model), []
    for i in range(0, len(takes), batch):
        rows = collate(takes[i : i + batch]).to(device)
        scores = take_scores(logits_of(scorer, rows), rows)
        out.append((scores.loglik / scores.steps.clamp(min=1) / math.log(2)).cpu().numpy())
    model.train(was_training)
    return np.concatenate(out) if out else np.zeros(0)
