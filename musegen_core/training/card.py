"""Model cards and registry facts of trained checkpoints, and the CPU sampling time they report.

The card (`README.md` of a checkpoint) is a pure function of the checkpoint's `config.json` (`card_text`, for every
family), so it can be rebuilt after the fact. Models trained on a GPU machine are re-timed on the machine that will
serve them with

    python -m musegen_core.training.card models/lstm-folk models/transformer-folk

which measures `sampling_ms_per_16_bars` here and rewrites config.json and README.md (the weights are unchanged).
With `--eval bench/results/eval.json` it instead records each model's row of a `musegen eval` report in
`metrics["eval"]` (shown by every card) and rewrites config.json and README.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from musegen_core import encoding
from musegen_core.models.checkpoint import load_checkpoint, read_meta, write_meta
from musegen_core.training.corpus_tables import stats_markdown
from musegen_core.training.sources import COLLECTIONS

FAMILY_NAMES = {
    "lstm": "melody LSTM",
    "transformer": "melody Transformer (decoder-only, RoPE, KV cache)",
    "vae": "melody VAE (2-bar latent, BiLSTM encoder)",
    "gan": "melody GAN (bar-conditional, WGAN-GP)",
}
EVAL_KEYS = ("overlap_mean", "copy_rate_2bars", "copy_rate_4bars", "longest_copy_notes", "diversity", "ms_per_bar")


def registry_info(names: list[str], family: str, preset: str, styles: tuple[str, ...], version: str) -> dict:
    """The registry fields of `config.json`: version, description, licences, commercial clearance."""
    conditioning = f"style-conditioned ({', '.join(styles)})" if styles else "no style conditioning"
    return {
        "version": version,
        "description": f"{preset} {FAMILY_NAMES[family]}, {conditioning}, trained on {', '.join(names)}",
        "trained_on": [COLLECTIONS[name].licence for name in names],
        "commercial_use_cleared": all(COLLECTIONS[name].commercial_use for name in names),
    }


def cpu_name() -> str:
    """The processor's model name (from /proc/cpuinfo where there is one)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def measure_sampling(model: torch.nn.Module, repeats: int = 7) -> dict:
    """Median ms to sample 16 bars of 4/4 (256 steps) after an 8-bar context, on the CPU with one thread."""
    model = model.cpu().eval()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        context = torch.tensor([encoding.NOTE_ON + 24, encoding.HOLD, encoding.HOLD, encoding.HOLD] * 32)
        positions = torch.from_numpy(encoding.bar_positions(128 + 256, 16))
        times = []
        for seed in range(repeats + 1):  # the first run warms up
            start = time.perf_counter()
            model.generate(context, positions, 256, generator=torch.Generator().manual_seed(seed))
            times.append(1000 * (time.perf_counter() - start))
    finally:
        torch.set_num_threads(threads)
    return {"sampling_ms_per_16_bars": round(statistics.median(times[1:]), 1), "sampling_cpu": cpu_name()}


def model_card(name: str, meta: dict) -> str:
    """The README.md of a checkpoint from its `config.json` contents."""
    info, training, metrics, family = meta["info"], meta["training"], meta["metrics"], meta["family"]
    names = training["collections"]
    licences = "\n".join(f"- **{n}** — {COLLECTIONS[n].licence}" for n in names)
    cleared = info["commercial_use_cleared"]
    styles = meta["model"].get("styles", [])
    return f"""# {name} — {training["preset"]} {FAMILY_NAMES[family]} (v{info["version"]})

Continues a monophonic melody one sixteenth-note step at a time (encoding v{meta["encoding_version"]}: REST / HOLD /
NOTE_ON tokens plus the position in the bar). {_styles_line(styles, training)}

## Data and licences
{licences}

**Commercial use: {"cleared" if cleared else "NOT cleared"}** — {
        "every training corpus is public domain (or used by permission without a non-commercial restriction)."
        if cleared
        else "the Essen collection may be used for non-commercial purposes only, so this model and its output are "
        "for non-commercial use."
    }

Tunes and sixteenth steps per style and split (split by a seeded hash of transposition-invariant content;
near-duplicates share a split):

{stats_markdown(training["corpus"])}

## Model and training
- family `{family}`, preset `{training["preset"]}`: {training["parameters"]:,} parameters (fp32 safetensors)
- {training["steps_done"]} of {training["steps"]} steps × {training["batch_size"]} windows × {
        training["window_steps"]
    } steps, AdamW lr {training["lr"]} (warm-up + cosine), transposition ±{
        training["transpose"]
    } semitones, style dropout {training["style_dropout"]}, best-by-valid weights kept
- device {training["device"]}, training {training["train_seconds"]} s, whole run {training["total_seconds"]} s

Reproduce: `{training["command"]}`
(on a busy shared CPU also set `OMP_WAIT_POLICY=PASSIVE`: spinning torch threads can make each step ~25× slower).

## Held-out results (full tunes; every step after a tune's first)
{_results_table(metrics, family)}

{_style_table(metrics)}

Pitch accuracy at note onsets (the most likely new pitch is the true one): valid {
        metrics["valid_onset_pitch_accuracy"]:.3f}, test {metrics["test_onset_pitch_accuracy"]:.3f}.

Sampling 16 bars (256 steps after an 8-bar context), CPU, one thread: **{metrics["sampling_ms_per_16_bars"]} ms**
(median, {metrics["sampling_cpu"]}).

## Generated takes (`musegen eval`: overlap with real continuations, originality, diversity, speed)
{eval_table(metrics.get("eval"))}
"""


def _styles_line(styles: list[str], training: dict) -> str:
    if not styles:
        return "No style conditioning."
    return (
        f"Style-conditioned: {', '.join(f'`{s}`' for s in styles)}, or no style (trained with "
        f"{training['style_dropout']:.0%} of windows unlabelled)."
    )


def _results_table(metrics: dict, family: str) -> str:
    base = metrics["baselines"]
    change = metrics["test_nll_bits_per_step"] / base["kn_best_test_bits"] - 1
    rows = [
        "| model | valid bits/step | test bits/step |",
        "| --- | ---: | ---: |",
        f"| this {family}, true style | {metrics['valid_nll_bits_per_step']:.4f} | "
        f"**{metrics['test_nll_bits_per_step']:.4f}** ({change:+.1%} vs the best n-gram) |",
    ]
    if "test_nll_bits_per_step_any_style" in metrics:
        rows.append(f"| this {family}, no style given | | {metrics['test_nll_bits_per_step_any_style']:.4f} |")
    rows += [
        f"| Kneser–Ney {base['kn_best_order']}-gram (order best on valid) | {base['kn_best_valid_bits']:.4f} | "
        f"{base['kn_best_test_bits']:.4f} |",
        f"| Kneser–Ney bigram | | {base['kn_bigram_test_bits']:.4f} |",
        f"| unigram (add-one) | | {base['unigram_test_bits']:.4f} |",
    ]
    return "\n".join(rows)


def _style_table(metrics: dict) -> str:
    rows = [
        "Test bits/step per style (the model told the tune's style):",
        "",
        "| style | test tunes | model | best n-gram | model vs n-gram |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for style, row in metrics["test_by_style"].items():
        change = row["nll_bits_per_step"] / row["kn_best_bits"] - 1
        rows.append(
            f"| {style} | {row['tunes']} | {row['nll_bits_per_step']:.4f} | {row['kn_best_bits']:.4f} | {change:+.1%} |"
        )
    return "\n".join(rows)


def card_text(name: str, meta: dict) -> str:
    """The README.md of a checkpoint of any family from its `config.json` contents."""
    from musegen_core.training import gan_train, vae_train  # they import this module

    writers = {"vae": vae_train.model_card, "gan": gan_train.model_card}
    return writers.get(meta["family"], model_card)(name, meta)


def eval_table(evaluation: dict | None) -> str:
    """A model's row of a `musegen eval` report as recorded in `metrics["eval"]` (see `eval_entry`), with its note."""
    if not evaluation:
        return "Not yet measured with `musegen eval`."
    header = "| " + " | ".join(EVAL_KEYS) + " |\n|" + "---:|" * len(EVAL_KEYS)
    cells = [
        f"{evaluation[k]:.3f}" if isinstance(evaluation.get(k), float) else str(evaluation.get(k)) for k in EVAL_KEYS
    ]
    return f"{header}\n| {' | '.join(cells)} |\n\n{evaluation.get('note', '')}"


def eval_entry(report: dict, name: str, source: str = "bench/results/eval.json") -> dict:
    """What a model card records of model `name`'s row in a `musegen eval` report (`harness.evaluate`'s dict)."""
    row, real, protocol = report["models"][name], report["real"], report["protocol"]
    styles = {style: round(entry["overlap_mean"], 3) for style, entry in row["overlap_by_style"].items()}
    families = ", ".join(f"{family} {entry['overlap_mean']:.3f}" for family, entry in report["families"].items())
    note = (
        f"Per-style mean overlap: {', '.join(f'{style} {value:.3f}' for style, value in styles.items())}. "
        f"Real valid continuations scored the same way: overlap {real['overlap_mean']:.3f}, "
        f"{real['copy_rate_2bars']:.1%} copying ≥ 2 bars of a training tune. Mean overlap per family in the same run: "
        f"{families}. From `musegen eval` ({protocol['excerpts']} {report['split']} excerpts, CPU, "
        f"{protocol['torch_threads']} thread; `{source}`, {report['created']})."
    )
    return {key: row[key] for key in EVAL_KEYS} | {
        "nll_bits_per_step": row["nll_bits_per_step"],
        "overlap_by_style": styles,
        "real_valid_overlap_mean": real["overlap_mean"],
        "real_valid_copy_rate_2bars": real["copy_rate_2bars"],
        "takes": row["takes"],
        "split": report["split"],
        "created": report["created"],
        "note": note,
    }


def record_eval(folder: Path, report: dict, source: str = "bench/results/eval.json") -> dict:
    """Store this checkpoint's row of a `musegen eval` report in `metrics["eval"]`; rewrite config.json and the
    card (the weights are unchanged). Returns the recorded entry."""
    meta = read_meta(folder)
    entry = eval_entry(report, folder.name, source)
    meta = meta | {"metrics": meta["metrics"] | {"eval": entry}}
    write_meta(folder, meta, card_text(folder.name, meta))
    return entry


def restamp(folder: Path) -> dict:
    """Measure the sampling time of the checkpoint in `folder` on this CPU; rewrite its config.json and card (the
    weights are unchanged)."""
    loaded = load_checkpoint(folder)
    meta = loaded.meta
    metrics = meta["metrics"] | measure_sampling(loaded.model)
    meta = meta | {"metrics": metrics}
    write_meta(folder, meta, card_text(folder.name, meta))
    return metrics


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m musegen_core.training.card", description=__doc__.split("\n")[0])
    parser.add_argument("folders", nargs="+", type=Path, help="checkpoint folders to re-time on this CPU")
    parser.add_argument("--eval", type=Path, default=None, help="record this `musegen eval` JSON report instead")
    args = parser.parse_args(argv)
    report = json.loads(args.eval.read_text()) if args.eval else None
    for folder in args.folders:
        if report is not None:
            entry = record_eval(folder, report, str(args.eval))
            print(f"{folder}: recorded overlap {entry['overlap_mean']:.3f}, copies {entry['copy_rate_2bars']:.1%}")
            continue
        metrics = restamp(folder)
        print(f"{folder}: {metrics['sampling_ms_per_16_bars']} ms per 16 bars on {metrics['sampling_cpu']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
