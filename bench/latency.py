"""Click-to-sound latency: what a producer waits for after pressing Generate.

One "click" = continue a real held-out tune for 16 bars with the shipped model + render the result to WAV with
FluidSynth + build the plotly piano-roll (and serialise it, as Streamlit does). Reports p50/p95 over repeats after
warm-up, per stage, and FluidSynth render speed next to `pretty_midi.PrettyMIDI.fluidsynth()` in the same run.

    .venv/bin/python bench/latency.py [--repeats 30] [--models lstm,transformer,vae,gan]

Prints a table and writes bench/results/latency.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import music21
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from render_speed import measure_render_speed

from musegen_core.formats import load_piece
from musegen_core.generate import continue_melody
from musegen_core.models.registry import load_model, resolve_model_name
from musegen_core.music import Piece
from musegen_core.render.audio import Synthesizer
from musegen_core.render.pianoroll import PRIME_COLOR, TAKE_COLOR, RollLayer, piano_roll

RESULTS = Path(__file__).resolve().parent / "results" / "latency.json"
PRIME_FILE = Path(music21.__file__).parent / "corpus" / "oneills1850" / "0001-0050.abc"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# (label, style, style strength): any style; a style at the default strength (a guidance pass where honoured); the
# strongest setting, where style focus judges the family's most candidates per bar (`generate.focus_candidates`:
# 16, the VAE 32, the GAN 64)
CASES = (("any style", None, 2.0), ("irish", "irish", 2.0), ("irish, strength 4", "irish", 4.0))


def one_click(model: object, synth: Synthesizer, prime: Piece, seed: int, style: str | None, strength: float):
    """Seconds spent per stage for one Generate click (default controls but `style` and its strength)."""
    stages: dict[str, float] = {}
    start = time.perf_counter()
    take = continue_melody(model, prime, bars=16, temperature=1.0, seed=seed, style=style, style_strength=strength)
    stages["generate"] = time.perf_counter() - start
    mark = time.perf_counter()
    synth.render_wav(take.joined())
    stages["render_wav"] = time.perf_counter() - mark
    mark = time.perf_counter()
    layers = [RollLayer("Prime", take.prime, PRIME_COLOR), RollLayer("Continuation", take.generated, TAKE_COLOR)]
    piano_roll(layers).to_json()
    stages["piano_roll"] = time.perf_counter() - mark
    stages["total"] = time.perf_counter() - start
    return stages


def timed(run: Callable[[int], dict[str, float]], repeats: int, warmup: int = 3) -> dict[str, list[float]]:
    for seed in range(warmup):
        run(seed)
    samples: dict[str, list[float]] = {}
    for seed in range(repeats):
        for stage, seconds in run(1000 + seed).items():
            samples.setdefault(stage, []).append(seconds)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--models", default="lstm,transformer,vae,gan", help="names, or families for their promoted")
    args = parser.parse_args()

    torch.set_num_threads(torch.get_num_threads())
    prime = load_piece(PRIME_FILE.read_bytes(), PRIME_FILE.name, tune_index=0)
    synth = Synthesizer()
    per_model = {}
    for asked in args.models.split(","):
        name = resolve_model_name(asked)
        model = load_model(name)
        for label, style, strength in CASES:
            samples = timed(
                lambda seed, m=model, s=style, k=strength: one_click(m, synth, prime, seed, s, k), args.repeats
            )
            per_model[f"{name}, {label}"] = {
                stage: {"p50_ms": 1000 * statistics.median(v), "p95_ms": 1000 * percentile(v, 0.95)}
                for stage, v in samples.items()
            }
    default = resolve_model_name("lstm")
    render = measure_render_speed(continue_melody(load_model(default), prime, bars=16, seed=0).joined(), repeats=10)
    report = {
        "machine": {"cpu_count": torch.get_num_threads(), "platform": platform.platform()},
        "controls": "defaults; 'any style' (no guidance pass), 'irish' at the default style strength 2 and at 4 "
        "(style focus: the family's most candidates per bar — 16, VAE 32, GAN 64 — judged)",
        "prime": f"{PRIME_FILE.name} tune 1 ({prime.note_count} notes)",
        "repeats": args.repeats,
        "click_to_sound": per_model,
        "render_speed": render,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print_table(report)


def print_table(report: dict) -> None:
    print(f"click to sound: 16-bar continuation, {report['repeats']} repeats after warm-up, p50 / p95 ms")
    models = list(report["click_to_sound"])
    print("| stage | " + " | ".join(models) + " |\n|---|" + "---:|" * len(models))
    for stage in report["click_to_sound"][models[0]]:
        cells = [report["click_to_sound"][m][stage] for m in models]
        print(f"| {stage} | " + " | ".join(f"{c['p50_ms']:.0f} / {c['p95_ms']:.0f}" for c in cells) + " |")
    render = report["render_speed"]
    print(f"\nrender speed: prime + 16 new bars, {render['audio_seconds']} s of audio, median of {render['repeats']}")
    print("| renderer | median ms | × real time |\n|---|---:|---:|")
    for name, values in render["methods"].items():
        print(f"| {name} | {1000 * values['median_s']:.1f} | {values['x_realtime']:.0f} |")
    print(f"ours vs pretty_midi.fluidsynth(): {render['speedup_vs_pretty_midi']}× faster")


if __name__ == "__main__":
    main()
