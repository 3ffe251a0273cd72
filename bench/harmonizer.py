"""The harmonizer on the JSB chorales' held-out splits: framewise NLL next to Coconet's published number and a
baseline, and voice-leading sanity of its harmonizations next to Bach's own.

1. **NLL** (`evaluation/harmonizer_eval.py`, what `musegen eval --harmonizer` runs): `--max-frames` random frames
   of the **test** split × `--orderings` random orderings, Coconet's way (per-frame probabilities averaged over the
   orderings) and the single-ordering likelihood; the per-voice bigram baseline fitted on the train split in the same
   run; Coconet's published 0.57 nats per frame (Huang et al. 2017, Table 1, 16th-note grid — taken as quoted by
   reimplementations, not verified against the paper here).
2. **Voice leading** (`harmony/voice_leading.py`): `--sopranos` held-out chorales (the test split, then valid ones
   to make up the number): each one's soprano alone is harmonized by the shipped model exactly as the app does
   (`models.harmonizer.harmonize`, default Gibbs steps, seed = its index), and the four-part result is measured —
   parallel fifths and octaves per bar, voice crossings, spacing, diatonic beats — next to Bach's own four parts
   of the same chorales.

    .venv/bin/python bench/harmonizer.py [--max-frames 2000] [--orderings 5] [--sopranos 100]

Prints Markdown tables and writes bench/results/harmonizer.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from musegen_core.evaluation.harmonizer_eval import evaluate_harmonizer
from musegen_core.harmony.voice_leading import STAT_NAMES, average_stats, jsb_chorale_pieces
from musegen_core.models.harmonizer import harmonize, shipped_harmonizer
from musegen_core.music import Piece

RESULTS = Path(__file__).resolve().parent / "results" / "harmonizer.json"


def held_out_chorales(count: int) -> list[Piece]:
    """The first `count` held-out chorales: every test chorale, then valid ones."""
    return (jsb_chorale_pieces("test") + jsb_chorale_pieces("valid"))[:count]


def harmonized_sopranos(chorales: list[Piece]) -> tuple[list[Piece], list[float]]:
    """Each chorale's soprano harmonized by the shipped model (seed = index), and the seconds each took."""
    model, results, seconds = shipped_harmonizer(), [], []
    for i, chorale in enumerate(chorales):
        started = time.perf_counter()
        results.append(harmonize(model, chorale.only_part(0), seed=i))
        seconds.append(time.perf_counter() - started)
    return results, seconds


def markdown(result: dict) -> str:
    nll = result["nll"]
    lines = [
        "| model | Coconet-style framewise NLL (nats/frame) | one ordering |",
        "|---|---:|---:|",
        f"| harmonizer-bach | {nll['jsb_test_nll']:.3f} ± {nll['sem']:.3f} | {nll['single_ordering_nll']:.3f} |",
        f"| per-voice bigram baseline | {nll['baseline_nll']:.3f} | {nll['baseline_single_ordering_nll']:.3f} |",
        f"| Coconet (published) | {nll['coconet_published_nll']:.2f} | — |",
        "",
        "| statistic | harmonizer | Bach |",
        "|---|---:|---:|",
    ]
    generated, real = result["voice_leading"]["harmonizer"], result["voice_leading"]["bach"]
    lines += [f"| {name} | {generated[name]:.4f} | {real[name]:.4f} |" for name in STAT_NAMES]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-frames", type=int, default=2000, help="random test frames scored (all: 18,900)")
    parser.add_argument("--orderings", type=int, default=5)
    parser.add_argument("--sopranos", type=int, default=100)
    parser.add_argument("--json", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    started = time.perf_counter()
    nll = evaluate_harmonizer(shipped_harmonizer(), "test", orderings=args.orderings, max_frames=args.max_frames)
    chorales = held_out_chorales(args.sopranos)
    harmonized, seconds = harmonized_sopranos(chorales)
    generated, real = average_stats(harmonized), average_stats(chorales)
    result = {
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "jsb_test_nll": nll["jsb_test_nll"],
        "baseline_nll": nll["baseline_nll"],
        "coconet_published_nll": nll["coconet_published_nll"],
        "parallel_fifths_per_bar": generated["parallel_fifths_per_bar"],
        "bach_parallel_fifths_per_bar": real["parallel_fifths_per_bar"],
        "nll": nll,
        "voice_leading": {
            "sopranos": len(chorales),
            "source": "JSB test chorales, then valid ones; mean over chorales (harmony/voice_leading.average_stats)",
            "harmonizer": generated,
            "bach": real,
            "seconds_per_harmonization_median": statistics.median(seconds),
        },
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(markdown(result))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json} in {result['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
