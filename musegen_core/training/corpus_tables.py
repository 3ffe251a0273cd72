"""Markdown tables of corpus statistics (`Corpus.summary()` → text), for `musegen data stats` and model cards."""

from __future__ import annotations

COLUMNS = ("train", "valid", "test", "all")  # the splits, then all of them


def stats_markdown(summary: dict) -> str:
    """Render `Corpus.summary()` (optionally with "load_seconds") as Markdown tables."""
    lines = [
        "| style | train | valid | test | all | train steps | valid steps | test steps | all steps |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for style, cells in summary["styles"].items():
        tunes = [f"{cells[split]['tunes']:,}" for split in COLUMNS]
        steps = [f"{cells[split]['steps']:,}" for split in COLUMNS]
        lines.append(f"| {'**all**' if style == 'all' else style} | " + " | ".join(tunes + steps) + " |")
    lines += ["", "| collection | skipped | reasons | build s |", "| --- | ---: | --- | ---: |"]
    for name, reasons in summary["skipped"].items():
        why = ", ".join(f"{reason}: {count}" for reason, count in sorted(reasons.items(), key=lambda kv: -kv[1]))
        built = summary["build_seconds"].get(name, 0.0)
        took = f"{built:.1f}" if built else f"{summary['cached_build_seconds'].get(name, 0.0):.1f} (cached)"
        lines.append(f"| {name} | {sum(reasons.values()):,} | {why or '–'} | {took} |")
    lines += ["", _grouping_line(summary["near_duplicates"])]
    if "load_seconds" in summary:
        lines.append(f"Loaded in {summary['load_seconds']:.1f} s.")
    return "\n".join(lines)


def _grouping_line(grouping: dict | None) -> str:
    if grouping is None:
        return "Near-duplicates: not grouped (exact transposition-invariant signatures only)."
    return (
        f"Near-duplicates (Jaccard ≥ {grouping['threshold']} over {grouping['ngram']}-event shingles): "
        f"{grouping['groups']:,} groups holding {grouping['grouped_tunes']:,} tunes; "
        f"{grouping['moved_tunes']:,} tunes moved to their group's split ({grouping['seconds']:.1f} s)."
    )
