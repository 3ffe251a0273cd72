"""Markdown tables of a `musegen eval` report (the dict that `harness.evaluate` returns)."""

from __future__ import annotations

from musegen_core.evaluation.features import FEATURES

REAL = "real (valid)"  # column/row name of the real-continuation ceiling


def markdown(report: dict) -> str:
    """The headline table, then overlap per feature, per style and per family."""
    sections = [
        _headline(report),
        _feature_table(report),
        _style_table(report),
        _family_table(report),
        _footer(report),
    ]
    return "\n\n".join(section for section in sections if section)


def _number(value: float | None, digits: int = 3, percent: bool = False) -> str:
    if value is None:
        return "—"
    return f"{100 * value:+.1f} %" if percent else f"{value:.{digits}f}"


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


HEADLINE = ("model", "family", "NLL bits/step", "vs n-gram", "overlap mean", "copies ≥ 2 bars",
            "longest copy (notes / bars)", "diversity", "ms/bar")  # fmt: skip


def _headline(report: dict) -> str:
    protocol, baseline, real = report["protocol"], report["baseline"], report["real"]
    lines = [
        f"### Held-out {report['split']} split: {protocol['excerpts']} excerpts "
        f"({protocol['prime_bars']}-bar prime → {protocol['generated_bars']} bars)",
        "",
        _row(list(HEADLINE)),
        _row(["---", "---", *["---:"] * (len(HEADLINE) - 2)]),
    ]
    for name, entry in report["models"].items():
        nll = [_number(entry["nll_bits_per_step"]), _number(entry["nll_vs_baseline"], percent=True)]
        speed = [_number(entry["diversity"]), _number(entry["ms_per_bar"], 2)]
        lines.append(_row([f"`{name}`", entry["family"], *nll, *_set_cells(entry), *speed]))
    lines.append(_row([f"{baseline['name']} (baseline)", "n-gram", _number(baseline["nll_bits_per_step"])]
                      + ["—"] * (len(HEADLINE) - 3)))  # fmt: skip
    if "overlap_mean" in real:
        lines.append(_row([REAL, "real tunes", "—", "—", *_set_cells(real), "—", "—"]))
    return "\n".join(lines)


def _set_cells(entry: dict) -> list[str]:
    """Overlap mean, copy rate and longest copy of a model's takes (or of real continuations)."""
    return [
        _number(entry["overlap_mean"]),
        f"{100 * entry['copy_rate_2bars']:.1f} %",
        f"{entry['longest_copy_notes']} / {entry['longest_copy_bars']:.2f}",
    ]


def _columns(report: dict) -> dict[str, dict]:
    """Model name → its entry, plus the real-continuation ceiling when it was computed."""
    columns = {f"`{name}`": entry for name, entry in report["models"].items()}
    if "overlap" in report["real"]:
        columns[REAL] = report["real"]
    return columns


def _feature_table(report: dict) -> str:
    columns = _columns(report)
    lines = ["Overlap area per feature (reference intra-set vs inter-set):", "",
             _row(["feature", *columns]), _row(["---", *["---:"] * len(columns)])]  # fmt: skip
    for feature in FEATURES:
        lines.append(_row([feature, *(_number(entry["overlap"][feature]) for entry in columns.values())]))
    lines.append(_row(["**mean**", *(f"**{_number(entry['overlap_mean'])}**" for entry in columns.values())]))
    return "\n".join(lines)


def _style_table(report: dict) -> str:
    columns = _columns(report)
    styles = sorted({style for entry in columns.values() for style in entry.get("overlap_by_style", {})})
    if not styles:
        return ""
    lines = ["Mean overlap per style (style of the prime's tune; excerpts per style in brackets):", "",
             _row(["style", *columns]), _row(["---", *["---:"] * len(columns)])]  # fmt: skip
    counts = report["protocol"]["excerpts_by_style"]
    for style in styles:
        styled = [entry.get("overlap_by_style", {}).get(style, {}) for entry in columns.values()]
        cells = [_number(found.get("overlap_mean")) for found in styled]
        lines.append(_row([f"{style} ({counts.get(style, 0)})", *cells]))
    return "\n".join(lines)


def _family_table(report: dict) -> str:
    families = report["families"]
    if not families:
        return ""
    lines = ["Per family (mean over its models):", "",
             _row(["family", "models", "NLL bits/step", "overlap mean", "copies ≥ 2 bars", "diversity", "ms/bar"]),
             _row(["---", "---", *["---:"] * 5])]  # fmt: skip
    for family, f in families.items():
        copies = "—" if f["copy_rate_2bars"] is None else f"{100 * f['copy_rate_2bars']:.1f} %"
        numbers = [_number(f["nll_bits_per_step"]), _number(f["overlap_mean"]), copies, _number(f["diversity"])]
        lines.append(_row([family, ", ".join(f["models"]), *numbers, _number(f["ms_per_bar"], 2)]))
    return "\n".join(lines)


def _footer(report: dict) -> str:
    b = report["baseline"]
    return (
        f"n-gram baselines on the same split: unigram {b['unigram_bits_per_step']:.3f}, KN bigram "
        f"{b['bigram_bits_per_step']:.3f}, {b['name']} {b['nll_bits_per_step']:.3f} bits/step (order {b['order']} "
        f"best on valid: {b['valid_bits_per_step']:.3f}). Run took {report['seconds']['total']:.0f} s."
    )
