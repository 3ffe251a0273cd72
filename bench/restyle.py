"""Restyle's trade-off: how much of the melody survives, and how much the target style shows, per strength.

Sources: the real 8-bar continuations of `--sources` held-out **test** excerpts (the `musegen eval` excerpts,
stratified over styles). Each is restyled by the promoted VAE into each of the four *other* styles at every
strength (greedy decoding, so no sampling noise). Measured against the source, on the restyled span:
- **contour**: Pearson correlation of the two pitch lines on the sixteenth grid (`control_measures`);
- **rhythm**: F1 overlap of the onset sets;
and for the target: how often the independent style classifier (`evaluation/style_classifier.py`) names the target
style (**hit rate**) and its mean posterior for it. Strength 0 is the VAE's reconstruction conditioned on the target
style: the ceiling of likeness, and the floor of style change.

    .venv/bin/python bench/restyle.py [--sources 60] [--model vae]

Prints a table and writes bench/results/restyle.json. Needs the corpus cache.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from musegen_core import encoding
from musegen_core.errors import ControlError
from musegen_core.evaluation import control_measures as measure
from musegen_core.evaluation import takes
from musegen_core.evaluation.style_classifier import StyleClassifier
from musegen_core.generate import restyle
from musegen_core.models.registry import load_model, resolve_model_name
from musegen_core.training.corpus import COLLECTIONS, load_corpus

RESULTS = Path(__file__).resolve().parent / "results" / "restyle.json"
STRENGTHS = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0)


def restyle_rows(model, classifier: StyleClassifier, excerpts: list[takes.Excerpt]) -> list[dict]:
    """One row per (source, target style, strength)."""
    rows = []
    for excerpt in tqdm(excerpts, desc="restyling", file=sys.stderr):
        source = takes.melody_piece(excerpt.tune, excerpt.reference)
        for target in (s for s in model.styles if s != excerpt.style):
            for strength in STRENGTHS:
                try:
                    result = restyle(model, source, style=target, strength=strength)
                except ControlError:  # a meter the VAE cannot window (bars longer than 2 bars of 4/4)
                    continue
                steps = round(result.original.time_signature.bar_beats * encoding.STEPS_PER_BEAT) * 8
                tokens = encoding.piece_to_tokens(result.restyled, total_steps=steps).tokens
                posterior = classifier.posteriors(tokens, excerpt.tune.bar_steps)
                rows.append({
                    "source_style": excerpt.style, "target": target, "strength": strength,
                    "contour": measure.contour_similarity(result.original, result.restyled, steps),
                    "rhythm": measure.rhythm_similarity(result.original, result.restyled),
                    "hit": max(posterior, key=posterior.get) == target, "posterior": posterior[target],
                })  # fmt: skip
    return rows


def summary(rows: list[dict]) -> dict:
    """Per strength: mean contour and rhythm similarity, hit rate and mean posterior of the target style."""
    table = {}
    for strength in STRENGTHS:
        chosen = [r for r in rows if r["strength"] == strength]
        table[str(strength)] = {
            "restyles": len(chosen),
            "contour": float(np.nanmean([r["contour"] for r in chosen])),
            "rhythm": float(np.mean([r["rhythm"] for r in chosen])),
            "hit_rate": float(np.mean([r["hit"] for r in chosen])),
            "posterior": float(np.mean([r["posterior"] for r in chosen])),
            "hit_rate_by_target": {
                t: float(np.mean([r["hit"] for r in chosen if r["target"] == t]))
                for t in sorted({r["target"] for r in chosen})
            },
        }
    return table


def markdown(table: dict) -> str:
    lines = [
        "| strength | contour similarity | rhythm similarity | target-style hit rate | target posterior "
        "| hit rate by target |",
        "|---:|---:|---:|---:|---:|---|",
    ]
    for strength, row in table.items():
        by_target = ", ".join(f"{t} {v:.2f}" for t, v in row["hit_rate_by_target"].items())
        lines.append(
            f"| {strength} | {row['contour']:.3f} | {row['rhythm']:.3f} | {row['hit_rate']:.3f} | "
            f"{row['posterior']:.3f} | {by_target} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sources", type=int, default=60, help="test excerpts restyled")
    parser.add_argument("--model", default="vae", help="a VAE model name or the family 'vae'")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    started = time.perf_counter()
    name = resolve_model_name(args.model)
    model, classifier = load_model(name), StyleClassifier.load()
    test = load_corpus(tuple(COLLECTIONS), progress=False).split("test")
    excerpts = takes.choose_excerpts(test, args.sources, args.seed)
    rows = restyle_rows(model, classifier, excerpts)
    table = summary(rows)
    result = {
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "model": name,
        "protocol": {"sources": len(excerpts), "split": "test", "bars": 8, "strengths": list(STRENGTHS)},
        "by_strength": table,
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(markdown(table))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json} in {result['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
