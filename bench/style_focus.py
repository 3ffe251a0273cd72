"""How many candidate takes should style focus judge? Hit rates of the asked style against the number of candidates,
measured on **valid** excerpts only — this is where `generate.focus_candidates` was chosen, so that the test
excerpts `bench/controls.py` reports stay unseen by that choice.

For each family's promoted model, style strength (guidance) and candidate count: `--excerpts` valid excerpts
(stratified over styles), each continued for 8 bars in its own style and in the next style, scored by the
independent style classifier (not the judge that picks). Real valid continuations give the bar.

    .venv/bin/python bench/style_focus.py [--excerpts 200] [--candidates 1,2,4,8,16] [--strengths 1,2,4]

Prints a Markdown table and writes bench/results/style_focus.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

import torch
from controls import FAMILIES, hit_rates, style_recognition  # a sibling bench script (bench/ is on sys.path)

from musegen_core.evaluation import takes
from musegen_core.evaluation.style_classifier import StyleClassifier
from musegen_core.models.registry import load_model, resolve_model_name
from musegen_core.training.corpus import COLLECTIONS, load_corpus

RESULTS = Path(__file__).resolve().parent / "results" / "style_focus.json"


def _numbers(text: str, kind: type) -> list:
    return [kind(part) for part in text.split(",") if part]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--excerpts", type=int, default=200)
    parser.add_argument("--candidates", default="1,2,4,8,16")
    parser.add_argument("--strengths", default="1,2,4")
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    started = time.perf_counter()
    corpus = load_corpus(tuple(COLLECTIONS), progress=False)
    excerpts = takes.choose_excerpts(corpus.split("valid"), args.excerpts, args.seed)
    classifier = StyleClassifier.load()
    real = hit_rates(classifier.predict_batch([(e.reference, e.tune.bar_steps) for e in excerpts]),
                     [e.style for e in excerpts])  # fmt: skip
    rows = []
    lines = [
        "| family | strength | candidates | own style | per style | another style |",
        "|---|---:|---:|---:|---|---:|",
    ]
    lines.append(f"| real valid continuations | | | {real['hit_rate']:.3f} | {_per_style(real)} | |")
    for family in args.families.split(","):
        model = load_model(resolve_model_name(family))
        for strength in _numbers(args.strengths, float):
            for count in _numbers(args.candidates, int):
                found = style_recognition(model, classifier, excerpts, args.seed, strength, count)
                rows.append({"family": family, **found})
                same, other = found["same_style"], found["other_style"]
                lines.append(f"| {family} | {strength:g} | {count} | {same['hit_rate']:.3f} | {_per_style(same)} "
                             f"| {other['hit_rate']:.3f} |")  # fmt: skip
                print(lines[-1], flush=True)
    result = {
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "split": "valid",
        "excerpts": len(excerpts),
        "real_style_recognition": real,
        "rows": rows,
        "seconds": round(time.perf_counter() - started, 1),
    }
    print("\n".join(lines))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json} in {result['seconds']} s")
    return 0


def _per_style(rates: dict) -> str:
    return ", ".join(f"{style} {v['hit_rate']:.2f}" for style, v in sorted(rates["by_style"].items()))


if __name__ == "__main__":
    sys.exit(main())
