"""Do the controls do what their labels say? Every control × every family, measured on generated music.

For each family's promoted model and each control: `--settings` values of that control (the others at their
defaults) × `--takes` takes. Take i continues the 2-bar prime of held-out **test** excerpt i (the `musegen eval`
excerpts, stratified over styles) for `--bars` bars with seed i, in the excerpt's style; only the control changes
between settings. Each take's measured property (`evaluation/control_measures.py`) is paired with its setting, and
the table reports Spearman's ρ three ways: over the per-setting means (`spearman` in the JSON: does the property
move with the slider on average — what the ≥ 0.9 target is judged on), per prime (the same melody under every
setting, averaged over primes: does the slider move *this* melody's take) and over all takes pooled (each take one
point: also counts how much the property varies between melodies, which no slider removes).

Temperature and top-p are measured as the take's surprisal (bits per step) under an independent Kneser–Ney 5-gram
fitted on the train split: how unexpected the take is to a model that shares nothing with the generator.

Style recognisability: an independent classifier (`evaluation/style_classifier.py`, trained on corpus features only)
classifies 8-bar continuations of `--style-takes` test excerpts (requested style = the excerpt's) and the same
excerpts' real next 8 bars; and, harder, continuations asked for a *different* style than the prime's — at style
strength 1 (plain conditioning), at the default strength and at the strongest. Above 1, style strength is classifier-
free guidance (not for the GAN; the VAE also pulls its latent towards the style's centroid); above 2 also *style
focus*: a separately trained style judge (`models/style_judge.py`, not this classifier) keeps the most typical of
several candidates for each bar (`generate.focus_candidates`; `bench/style_focus.py` measured it on valid excerpts).

    .venv/bin/python bench/controls.py [--takes 50] [--bars 4] [--families lstm,transformer,vae,gan]

Prints Markdown tables and writes bench/results/controls.json. Needs the corpus cache (`musegen data stats` builds it).
On two cores, half the families in each of two processes, then one report:

    .venv/bin/python bench/controls.py --families lstm,transformer --json /tmp/a.json &
    .venv/bin/python bench/controls.py --families vae,gan --json /tmp/b.json; wait
    .venv/bin/python bench/controls.py --json /tmp/a.json --merge /tmp/b.json   # b's families folded into a
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from musegen_core import encoding
from musegen_core.controls import SCALES, STYLE_STRENGTH_RANGE, Controls, key_of
from musegen_core.evaluation import control_measures as measure
from musegen_core.evaluation import takes
from musegen_core.evaluation.style_classifier import StyleClassifier, confusion_matrix, style_hits
from musegen_core.generate import Continuation, continue_melody, focus_candidates
from musegen_core.models.registry import load_model, resolve_model_name
from musegen_core.music import PITCH_NAMES, Key, Piece
from musegen_core.training.corpus import COLLECTIONS, STYLES, load_corpus
from musegen_core.training.ngram import NGramModel, bits_per_step

RESULTS = Path(__file__).resolve().parent / "results" / "controls.json"
FAMILIES = ("lstm", "transformer", "vae", "gan")


@dataclass(frozen=True)
class Context:
    """One take's excerpt, prime and the key its prime is in."""

    excerpt: takes.Excerpt
    prime: Piece
    key: Key


@dataclass(frozen=True)
class Sweep:
    """One control: its settings, the `Controls` values a setting means, and what to measure on a take."""

    control: str
    prop: str  # what is measured, for the table
    settings: tuple[float, ...]
    values: Callable[[float, Context], dict]
    measured: Callable[[Continuation, Context, float], float]


def _other_mode(context: Context) -> dict:
    """Key/mode sweeps ask for the prime's tonic in the other mode (G major → G minor), so the pull has something to
    change."""
    return {"key": PITCH_NAMES[context.key.tonic_pc], "mode": "minor" if context.key.mode == "major" else "major"}


def _in_target_scale(take: Continuation, context: Context, _: float) -> float:
    scale = SCALES[_other_mode(context)["mode"]]
    return measure.in_scale_share(take.generated_alone(), context.key.tonic_pc, scale)


def sweeps(bars: int, ngram: NGramModel) -> list[Sweep]:
    """The controls measured, with their settings and properties (`ngram`: the independent model whose surprisal
    says how unexpected a take is)."""
    alone = Continuation.generated_alone

    def surprisal(take: Continuation, context: Context, _: float) -> float:
        return bits_per_step(ngram, [_tokens(take, bars)[0]])

    return [
        Sweep("density", "onsets per bar", (-1, -0.5, 0, 0.5, 1), lambda s, c: {"density": s},
              lambda t, c, s: measure.onsets_per_bar(alone(t), bars)),
        Sweep("complexity", "off-beat onset share", (-1, -0.5, 0, 0.5, 1), lambda s, c: {"complexity": s},
              lambda t, c, s: measure.off_beat_share(alone(t))),
        Sweep("pitch_range", "pitch span (semitones)", (6, 10, 14, 19, 24),
              lambda s, c: {"low": 74 - int(s) // 2, "high": 74 - int(s) // 2 + int(s)},
              lambda t, c, s: measure.pitch_span(alone(t))),
        Sweep("key_mode", "share of notes in the asked scale", (0, 0.25, 0.5, 0.75, 1),
              lambda s, c: {"scale_pull": s, **_other_mode(c)}, _in_target_scale),
        Sweep("mood_valence", "majorness (major − minor degrees)", (-1, -0.5, 0, 0.5, 1),
              lambda s, c: {"valence": s}, lambda t, c, s: measure.majorness(alone(t), c.key.tonic_pc)),
        Sweep("mood_energy", "notes per second", (-1, -0.5, 0, 0.5, 1), lambda s, c: {"energy": s},
              lambda t, c, s: measure.notes_per_second(alone(t), bars)),
        Sweep("temperature", "surprisal under a KN 5-gram (bits/step)", (0.5, 0.75, 1.0, 1.25, 1.5),
              lambda s, c: {"temperature": s}, surprisal),
        Sweep("top_p", "surprisal under a KN 5-gram (bits/step)", (0.5, 0.7, 0.85, 0.95, 1.0),
              lambda s, c: {"top_p": s}, surprisal),
        Sweep("tempo", "tempo of the take (bpm)", (60, 90, 120, 150, 180), lambda s, c: {"tempo_bpm": float(s)},
              lambda t, c, s: t.generated.tempo_bpm),
        Sweep("bars", "bars generated", (1, 2, 3, 4, 6), lambda s, c: {"bars": int(s)},
              lambda t, c, s: math.ceil(alone(t).end_beats / t.generated.time_signature.bar_beats)),
    ]  # fmt: skip


def _next_style(context: Context) -> str:
    """A style other than the prime's: the next one in corpus order."""
    return STYLES[(STYLES.index(context.excerpt.style) + 1) % len(STYLES)]


def style_sweeps(classifier: StyleClassifier, bars: int) -> list[Sweep]:
    """Style blend weight (prime's style → the next style) and style strength (asking for the next style) → the
    classifier's posterior for that next style on the take."""

    def posterior(take: Continuation, context: Context, _: float) -> float:
        tokens, bar_steps = _tokens(take, bars)
        return classifier.posteriors(tokens, bar_steps)[_next_style(context)]

    return [
        Sweep("style_mix", "classifier posterior of the blended-in style", (0, 0.25, 0.5, 0.75, 1),
              lambda s, c: {"style": c.excerpt.style, "mix_style": _next_style(c), "mix": s}, posterior),
        Sweep("style_strength", "classifier posterior of an asked style other than the prime's", (0, 1, 2, 3, 4),
              lambda s, c: {"style": _next_style(c), "style_strength": s}, posterior),
    ]  # fmt: skip


def _tokens(take: Continuation, bars: int) -> tuple[np.ndarray, int]:
    """The take's `bars` bars as tokens (trailing rests included) and its bar length in steps."""
    bar_steps = round(take.generated.time_signature.bar_beats * encoding.STEPS_PER_BEAT)
    return encoding.piece_to_tokens(take.generated_alone(), total_steps=bars * bar_steps).tokens, bar_steps


def run_sweep(model, sweep: Sweep, contexts: list[Context], bars: int) -> dict:
    """Every setting × every context; Spearman over takes and over setting means."""
    settings, values = [], []
    for setting in sweep.settings:
        for i, context in enumerate(contexts):
            asked = {"bars": bars, "seed": i, "style": _style(model, context), **sweep.values(setting, context)}
            take = continue_melody(model, context.prime, Controls(**asked))
            settings.append(setting)
            values.append(sweep.measured(take, context, setting))
    settings_array, values_array = np.array(settings, dtype=float), np.array(values, dtype=float)
    means = [float(np.nanmean(values_array[settings_array == s])) for s in sweep.settings]
    by_prime = values_array.reshape(len(sweep.settings), len(contexts)).T  # row i: prime i under every setting
    per_prime = [measure.spearman(list(sweep.settings), row) for row in by_prime]
    return {
        "property": sweep.prop,
        "settings": list(sweep.settings),
        "means": means,
        "spearman_means": measure.spearman(list(sweep.settings), means),
        "spearman_per_prime": float(np.nanmean(per_prime)),
        "spearman_takes": measure.spearman(settings_array, values_array),
        "takes_per_setting": len(contexts),
    }


def _style(model, context: Context) -> str | None:
    return context.excerpt.style if context.excerpt.style in model.styles else None


def style_recognition(
    model,
    classifier: StyleClassifier,
    excerpts: list[takes.Excerpt],
    seed: int,
    strength: float,
    candidates: int | None = None,
) -> dict:
    """Hit rates of the requested style at one style strength: the prime's style, and another (the next in corpus
    order). `candidates` overrides the style focus's number of candidate takes (None: the strength's own)."""
    same, other, wanted_other = [], [], []
    for i, excerpt in enumerate(excerpts):
        prime = takes.prime_piece(excerpt)
        target = STYLES[(STYLES.index(excerpt.style) + 1) % len(STYLES)]
        for style, out in ((excerpt.style, same), (target, other)):
            controls = Controls(bars=takes.BARS, seed=seed + i, style=style, style_strength=strength)
            out.append(_tokens(continue_melody(model, prime, controls, candidates=candidates), takes.BARS))
        wanted_other.append(target)
    wanted = [e.style for e in excerpts]
    return {
        "style_strength": strength,
        "candidates": focus_candidates(strength, model.family) if candidates is None else candidates,
        "same_style": hit_rates(classifier.predict_batch(same), wanted),
        "other_style": hit_rates(classifier.predict_batch(other), wanted_other),
    }


def hit_rates(predicted: list[str], wanted: list[str]) -> dict:
    """`style_hits` (overall, Irish+fiddle merged, per style) plus the confusion matrix (rows: wanted style)."""
    return {**style_hits(predicted, wanted), "confusion": confusion_matrix(predicted, wanted, STYLES)}


def markdown(result: dict) -> str:
    lines = [
        "| family | control | property | ρ of means | ρ per prime | ρ over takes | means per setting |",
        "|---|---|---|---:|---:|---:|---|",
    ]
    for family, controls in result["sweeps"].items():
        for control, row in controls.items():
            means = ", ".join(f"{s:g}→{m:.2f}" for s, m in zip(row["settings"], row["means"], strict=True))
            rhos = " | ".join(f"{row[k]:.3f}" for k in ("spearman_means", "spearman_per_prime", "spearman_takes"))
            lines.append(f"| {family} | {control} | {row['property']} | {rhos} | {means} |")
    lines += ["", "| melodies | asked style | hit rate | Irish+fiddle merged | per style |", "|---|---|---:|---:|---|"]
    real = result["real_style_recognition"]
    lines.append(_hit_line("real test continuations", "their own", real))
    for family, by_strength in result["style_recognition"].items():
        for rows in by_strength:
            who = f"{family}, style strength {rows['style_strength']:g}"
            lines.append(_hit_line(who, "the prime's", rows["same_style"]))
            lines.append(_hit_line(who, "another", rows["other_style"]))
    return "\n".join(lines)


def _hit_line(who: str, asked: str, rates: dict) -> str:
    per_style = ", ".join(f"{s} {v['hit_rate']:.2f}" for s, v in sorted(rates["by_style"].items()))
    return f"| {who} | {asked} | {rates['hit_rate']:.3f} | {rates['hit_rate_merged']:.3f} | {per_style} |"


def updated(previous: dict, result: dict) -> dict:
    """`previous` report with the families of `result` replaced (same protocol); `family_created` says when each
    family's entries were measured."""
    if previous.get("protocol") != result["protocol"]:
        raise SystemExit("--update needs the same protocol (takes, bars, style takes, seed) as the report it updates")
    created = previous.get("family_created") or dict.fromkeys(previous["models"], previous["created"])
    merged = previous | {key: previous[key] | result[key] for key in ("models", "sweeps", "style_recognition")}
    return merged | {
        "created": result["created"],
        "family_created": created | dict.fromkeys(result["models"], result["created"]),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--takes", type=int, default=50, help="takes per setting (one per test excerpt)")
    parser.add_argument("--bars", type=int, default=4, help="bars per take in the control sweeps")
    parser.add_argument("--style-takes", type=int, default=200, help="test excerpts for style recognition")
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=RESULTS)
    parser.add_argument("--update", action="store_true", help="replace only --families' entries in the --json report")
    parser.add_argument("--merge", type=Path, help="measure nothing: fold this report's families into --json's")
    args = parser.parse_args(argv)
    if args.merge:
        into, other = json.loads(args.json.read_text()), json.loads(args.merge.read_text())
        return write(summarised(updated(into, other) | {"seconds": into["seconds"] + other["seconds"]}), args.json)
    torch.set_num_threads(1)
    started = time.perf_counter()
    corpus = load_corpus(tuple(COLLECTIONS), progress=False)
    test = corpus.split("test")
    ngram = NGramModel(5, encoding.VOCAB_SIZE).fit([t.tokens for t in corpus.split("train")])
    sweep_excerpts = takes.choose_excerpts(test, args.takes, args.seed)
    style_excerpts = takes.choose_excerpts(test, args.style_takes, args.seed)
    contexts = [Context(e, p, key_of(p)) for e in sweep_excerpts for p in [takes.prime_piece(e)]]
    classifier = StyleClassifier.load()
    real = [(e.reference, e.tune.bar_steps) for e in style_excerpts]
    result = {
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "protocol": {
            "takes_per_setting": len(contexts),
            "bars": args.bars,
            "style_takes": len(style_excerpts),
            "split": "test",
            "seed": args.seed,
        },
        "models": {},
        "sweeps": {},
        "style_recognition": {},
        "real_style_recognition": hit_rates(classifier.predict_batch(real), [e.style for e in style_excerpts]),
    }
    for family in args.families.split(","):
        name = resolve_model_name(family)
        model = load_model(name)
        result["models"][family] = name
        family_sweeps = sweeps(args.bars, ngram) + (style_sweeps(classifier, args.bars) if model.styles else [])
        result["sweeps"][family] = {
            sweep.control: run_sweep(model, sweep, contexts, args.bars)
            for sweep in tqdm(family_sweeps, desc=f"{name} controls", file=sys.stderr)
        }
        result["style_recognition"][family] = [
            style_recognition(model, classifier, style_excerpts, args.seed, strength)
            for strength in sorted({1.0, Controls().style_strength, STYLE_STRENGTH_RANGE[1]})
        ]
    if args.update:
        result = updated(json.loads(args.json.read_text()), result)
    result["seconds"] = round(time.perf_counter() - started, 1)
    return write(summarised(result), args.json)


def summarised(result: dict) -> dict:
    """`result` with the headline keys computed from its sweeps and style recognition."""
    for key, field in (("spearman", "spearman_means"), ("spearman_per_prime", "spearman_per_prime"),
                       ("spearman_takes", "spearman_takes")):  # fmt: skip
        result[key] = {f: {c: r[field] for c, r in rows.items()} for f, rows in result["sweeps"].items()}
    default = Controls().style_strength  # the headline: what the app and CLI do unless told otherwise
    result["style_hit_rate"] = {
        f: next(r["same_style"]["hit_rate"] for r in rows if r["style_strength"] == default)
        for f, rows in result["style_recognition"].items()
    }
    result["real_style_accuracy"] = result["real_style_recognition"]["hit_rate"]
    return result


def write(result: dict, path: Path) -> int:
    print(markdown(result))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path} ({result['seconds']} s of measuring)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
