"""Measure a trained VAE's style centroids — the mean latent μ of each style's training windows — and store them in
its `config.json` (`model.style_centroids`), which `generate.restyle` needs. The weights are not touched.

    python -m musegen_core.training.vae_centroids models/vae-folk [--per-style 2000] [--seed 0]

Uses the **train** split only (the same corpus, collections and split seed the checkpoint was trained with), at most
`--per-style` bar-aligned windows per style drawn with a seeded generator.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import torch

from musegen_core.models.checkpoint import load_checkpoint, write_meta
from musegen_core.models.vae import MelodyVAE
from musegen_core.training.card import card_text
from musegen_core.training.corpus import load_corpus
from musegen_core.training.vae_train import bar_windows

BATCH = 512


@torch.inference_mode()
def style_centroids(model: MelodyVAE, tunes: list, per_style: int, seed: int) -> tuple[tuple[float, ...], ...]:
    """One mean-μ row per style of `model.styles`, from at most `per_style` windows of that style's tunes."""
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for style in model.styles:
        tokens, positions, _ = bar_windows([t for t in tunes if t.style == style], model.styles)
        if len(tokens) == 0:
            raise ValueError(f"no training windows of style {style!r}")
        chosen = torch.randperm(len(tokens), generator=generator)[:per_style]
        means = [
            model.encode(tokens[batch], positions[batch])[0]
            for batch in torch.split(chosen, BATCH)
        ]  # fmt: skip
        rows.append(tuple(torch.cat(means).mean(dim=0).tolist()))
    return tuple(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m musegen_core.training.vae_centroids", description=__doc__)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--per-style", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    loaded = load_checkpoint(args.folder)
    meta, training = loaded.meta, loaded.meta["training"]
    corpus = load_corpus(training["collections"], seed=training["split_seed"], progress=False)
    centroids = style_centroids(loaded.model, corpus.split("train"), args.per_style, args.seed)
    config = dataclasses.replace(loaded.model.config, style_centroids=centroids)
    meta = meta | {"model": config.to_dict()}
    meta["training"] = training | {
        "style_centroids": {"split": "train", "per_style": args.per_style, "seed": args.seed}
    }
    write_meta(args.folder, meta, card_text(args.folder.name, meta))
    print(f"{args.folder}: style centroids of {', '.join(loaded.model.styles)} written")
    return 0


if __name__ == "__main__":
    sys.exit(main())
