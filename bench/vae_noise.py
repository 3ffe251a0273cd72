"""Continuation noise of the melody VAE, chosen on the valid split (the test split is never read).

`MelodyVAE.generate` decodes each next 2-bar window from the last window's μ + `continue_noise` × temperature ×
unit Gaussian (`VAEConfig.continue_noise`). For each setting this samples one continuation of each of `--takes`
valid-split excerpts with the `musegen eval` protocol (`evaluation.takes`: 2-bar prime, 8 bars, T = 1, the tune's
style; take i seeded S + i) and scores the takes exactly like `musegen eval` does (`evaluation.harness.set_scores` on
a valid-split `harness.Context`): mean Yang–Lerch overlap with the same valid tunes' real continuations, share of
takes copying ≥ 2 bars of a training tune, and the median sampling time per bar (one torch thread). One such draw
of excerpts and takes is noisy (±0.01–0.02 overlap), so it is repeated for `--draws` seeds S = `--seed`, `--seed` + 1,
...; every setting gets the same excerpts and seeds, and the table shows the means over draws.

    .venv/bin/python bench/vae_noise.py [--model vae-folk] [--takes 200] [--draws 5] [--settings 0,0.4,...] [--apply]

Prints a Markdown table and writes bench/results/vae_noise.json. The best setting is the one with the highest mean
overlap (averaged over draws); `--apply` writes it into the checkpoint's config.json ("model" → continue_noise) and
rewrites its card (the weights file is untouched). On a shared CPU also `export OMP_WAIT_POLICY=PASSIVE`.
"""

from __future__ import annotations

import argparse
import datetime
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from musegen_core.evaluation import harness, takes
from musegen_core.models.checkpoint import load_checkpoint, write_meta
from musegen_core.models.registry import models_dir
from musegen_core.training import card
from musegen_core.training.card import cpu_name
from musegen_core.training.corpus import COLLECTIONS, load_corpus

RESULTS = Path(__file__).resolve().parent / "results" / "vae_noise.json"
SETTINGS = (0.0, 0.4, 0.6, 0.8, 1.0, 1.2, 1.5)
SCRIPT = "bench/vae_noise.py"


def sweep(model: torch.nn.Module, contexts: dict[int, harness.Context], settings: list[float]) -> list[dict]:
    """One row per setting: its scores averaged over the draws (seed → context), and each draw's scores."""
    rows = []
    for noise in settings:
        model.config = replace(model.config, continue_noise=noise)  # read by MelodyVAE.generate
        draws = []
        for seed, context in contexts.items():
            made = harness.sample_takes(model, context.excerpts, seed, desc=f"continue_noise {noise:g}, seed {seed}")
            scores = harness.set_scores([t.tokens for t in made], context.excerpts, context)
            draws.append({"seed": seed, "takes": len(made), "ms_per_bar": harness.ms_per_bar(made)} | scores)
        overlaps = np.array([d["overlap_mean"] for d in draws])
        rows.append({
            "continue_noise": noise,
            "overlap_mean": float(overlaps.mean()),
            "overlap_mean_sd": float(overlaps.std(ddof=1)) if len(draws) > 1 else None,
            "copy_rate_2bars": float(np.mean([d["copy_rate_2bars"] for d in draws])),
            "copy_rate_4bars": float(np.mean([d["copy_rate_4bars"] for d in draws])),
            "longest_copy_notes": max(d["longest_copy_notes"] for d in draws),
            "ms_per_bar": float(np.median([d["ms_per_bar"] for d in draws])),
            "draws": draws,
        })  # fmt: skip
    return rows


def markdown(rows: list[dict], best: float) -> str:
    lines = [
        "| continue_noise | mean overlap (± sd over draws) | takes copying ≥ 2 bars | longest copy (notes) | ms/bar |",
        "|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        mark = "**" if row["continue_noise"] == best else ""
        sd = "—" if row["overlap_mean_sd"] is None else f"{row['overlap_mean_sd']:.3f}"
        lines.append(
            f"| {mark}{row['continue_noise']:g}{mark} | {mark}{row['overlap_mean']:.3f}{mark} ± {sd} | "
            f"{100 * row['copy_rate_2bars']:.1f} % | {row['longest_copy_notes']} | {row['ms_per_bar']:.2f} |"
        )
    return "\n".join(lines)


def apply(folder: Path, best: float, settings: list[float], excerpts: int, draws: int) -> None:
    """Write the chosen setting and how it was chosen into the checkpoint's config.json and card."""
    meta = json.loads((folder / "config.json").read_text())
    choice = {"split": "valid", "excerpts": excerpts, "draws": draws, "settings": settings,
              "criterion": "mean overlap", "script": SCRIPT, "results": "bench/results/vae_noise.json"}  # fmt: skip
    meta = meta | {"model": meta["model"] | {"continue_noise": best}}
    meta["metrics"] = meta["metrics"] | {"continue_noise_choice": choice}
    write_meta(folder, meta, card.card_text(folder.name, meta))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="vae-folk", help="installed VAE checkpoint (folder under models/)")
    parser.add_argument("--takes", type=int, default=harness.DEFAULT_TAKES, help="valid excerpts, one take each")
    parser.add_argument("--settings", default=",".join(f"{s:g}" for s in SETTINGS), help="comma list of values")
    parser.add_argument("--draws", type=int, default=5, help="draws of excerpts and takes, averaged")
    parser.add_argument("--seed", type=int, default=0, help="first draw's seed: excerpts, and take i seeded S + i")
    parser.add_argument("--apply", action="store_true", help="write the best setting into the checkpoint")
    args = parser.parse_args()
    settings = [float(s) for s in args.settings.split(",")]
    torch.set_num_threads(1)
    start = time.perf_counter()
    folder = models_dir() / args.model
    model = load_checkpoint(folder).model
    if model.family != "vae":
        parser.error(f"{args.model} is a {model.family} model, not a VAE")
    shipped = model.config.continue_noise
    corpus = load_corpus(list(COLLECTIONS), workers=1)
    seeds = range(args.seed, args.seed + args.draws)
    contexts = {seed: harness.Context(corpus, args.takes, seed, split="valid", baseline=False) for seed in seeds}
    excerpts = len(contexts[args.seed].excerpts)
    rows = sweep(model, contexts, settings)
    best = max(rows, key=lambda row: row["overlap_mean"])["continue_noise"]
    print(f"{args.model}: {args.draws} draws of {excerpts} valid excerpts, {takes.PRIME_BARS}-bar primes → "
          f"{takes.BARS} bars")  # fmt: skip
    print(markdown(rows, best))
    print(f"best on valid: continue_noise = {best:g} (checkpoint had {shipped:g})")
    result = {
        "model": args.model,
        "split": "valid",
        "excerpts": excerpts,
        "draws": args.draws,
        "seeds": list(seeds),
        "distinct_excerpts": len({e.tune.tune_id for c in contexts.values() for e in c.excerpts}),
        "criterion": "highest mean overlap, averaged over draws",
        "best": best,
        "checkpoint_had": shipped,
        "rows": rows,
        "protocol": {"prime_bars": takes.PRIME_BARS, "generated_bars": takes.BARS, "temperature": takes.TEMPERATURE,
                     "reference": "the same valid tunes' real next bars", "copies": "against the train split"},
        "cpu": cpu_name(),
        "torch_threads": torch.get_num_threads(),
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "seconds": round(time.perf_counter() - start, 1),
    }  # fmt: skip
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(harness.rounded(result), indent=2, allow_nan=False) + "\n")
    print(f"wrote {RESULTS}")
    if args.apply:
        apply(folder, best, settings, excerpts, args.draws)
        print(f"wrote continue_noise = {best:g} into {folder / 'config.json'} and its card")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
