"""The harmonizer on the JSB chorales' held-out splits: framewise NLL next to Coconet's published number and a
baseline, and voice-leading sanity of its harmonizations next to Bach's own.

1. **NLL** (`evaluation/harmonizer_eval.py`, what `musegen eval --harmonizer` runs): `--max-frames` random frames
   of the **test** split × `--orderings` random orderings, Coconet's way (per-frame probabilities averaged over the
   orderings) and the single-ordering likelihood; the per-voice bigram baseline fitted on the train split in the same
   run; Coconet's published 0.57 nats per frame (Huang et al. 2017, Table 1, 16th-note grid — taken as quoted by
   reimplementations, not verified against the paper here).
2. **Voice leading** (`harmony/voice_leading.py`): `--sopranos` held-out chorales (the test split, then valid ones
   to make up the number): each one's soprano alone is harmonized by the shipped model exactly as the app does
   (`models.harmonizer.harmonize`, default Gibbs steps and temperature, seed = its index), and the four-part result
   is measured — parallel fifths and octaves per bar, voice crossings, spacing, diatonic beats — next to Bach's own
   four parts of the same chorales.
3. **Temperature** (`--temperatures`): the same statistics on the first 8 bars of the *tuning* chorales — the last
   16 of the valid split, never in a report above — at each sampling temperature: where
   `harmonizer.DEFAULT_TEMPERATURE` was chosen.

`--nll-json` takes part 1 from a `musegen eval --harmonizer` report instead of recomputing it (it does not depend on
sampling).

    .venv/bin/python bench/harmonizer.py [--max-frames 2000] [--orderings 5] [--sopranos 100] [--nll-json FILE]

Prints Markdown tables and writes bench/results/harmonizer.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from musegen_core.evaluation.harmonizer_eval import evaluate_harmonizer
from musegen_core.harmony.voice_leading import STAT_NAMES, average_stats, jsb_chorale_pieces
from musegen_core.models.harmonizer import DEFAULT_TEMPERATURE, harmonize, shipped_harmonizer
from musegen_core.music import Piece

RESULTS = Path(__file__).resolve().parent / "results" / "harmonizer.json"


TUNING = 16  # the last valid chorales: where the sampling temperature was chosen, kept out of the held-out report


def held_out_chorales(count: int) -> list[Piece]:
    """The first `count` held-out chorales: every test chorale, then valid ones (never the tuning chorales)."""
    return (jsb_chorale_pieces("test") + jsb_chorale_pieces("valid")[:-TUNING])[:count]


def tuning_chorales(bars: int = 8) -> list[Piece]:
    """The first `bars` bars of the last `TUNING` valid chorales."""
    end = 4.0 * bars
    return [
        chorale.with_parts(
            tuple(replace(p, notes=tuple(n for n in p.notes if n.end_beats <= end)) for p in chorale.parts)
        )
        for chorale in jsb_chorale_pieces("valid")[-TUNING:]
    ]


def harmonized_sopranos(
    chorales: list[Piece], temperature: float = DEFAULT_TEMPERATURE
) -> tuple[list[Piece], list[float]]:
    """Each chorale's soprano harmonized by the shipped model (seed = index), and the seconds each took."""
    model, results, seconds = shipped_harmonizer(), [], []
    for i, chorale in enumerate(chorales):
        started = time.perf_counter()
        results.append(harmonize(model, chorale.only_part(0), seed=i, temperature=temperature))
        seconds.append(time.perf_counter() - started)
    return results, seconds


def temperature_choice(temperatures: list[float]) -> dict:
    """Voice-leading statistics of the tuning chorales' harmonizations at each temperature, and of Bach's."""
    chorales = tuning_chorales()
    rows = {f"{t:g}": average_stats(harmonized_sopranos(chorales, t)[0]) for t in temperatures}
    return {"chorales": len(chorales), "bars": 8, "by_temperature": rows, "bach": average_stats(chorales)}


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
    choice = result["temperature_choice"]
    lines += ["", "| tuning chorales at temperature | " + " | ".join(STAT_NAMES[3:]) + " |",
              "|---|" + "---:|" * len(STAT_NAMES[3:])]  # fmt: skip
    for label, row in [*choice["by_temperature"].items(), ("Bach", choice["bach"])]:
        lines.append(f"| {label} | " + " | ".join(f"{row[name]:.3f}" for name in STAT_NAMES[3:]) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-frames", type=int, default=2000, help="random test frames scored (all: 18,900)")
    parser.add_argument("--orderings", type=int, default=5)
    parser.add_argument("--sopranos", type=int, default=100)
    parser.add_argument(
        "--temperatures", default="1,0.7,0.5,0.3", help="sampling temperatures tried on tuning chorales"
    )
    parser.add_argument("--nll-json", type=Path, default=None, help="a `musegen eval --harmonizer` report to reuse")
    parser.add_argument("--json", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    started = time.perf_counter()
    if args.nll_json:
        nll = json.loads(args.nll_json.read_text()) | {"reused_from": str(args.nll_json)}
    else:
        nll = evaluate_harmonizer(shipped_harmonizer(), "test", orderings=args.orderings, max_frames=args.max_frames)
    choice = temperature_choice([float(t) for t in args.temperatures.split(",") if t])
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
            "temperature": DEFAULT_TEMPERATURE,
            "seconds_per_harmonization_median": statistics.median(seconds),
        },
        "temperature_choice": choice,
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(markdown(result))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json} in {result['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
