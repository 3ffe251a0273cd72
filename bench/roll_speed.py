"""Piano-roll speed: building the plotly figure and serialising it (what Streamlit sends), optionally drawing it.

Cases: one take, and four takes overlaid and side by side (each under a 64-note prime), at 1,000 and 10,000 notes
per take. The music is seeded random: 4/4, pitches 36–96, lengths 1/16 to a dotted 1/4, some two-note chords,
velocities 20–127. Each figure is built once untimed, then timed `--repeats` times (and so is each draw); the
table gives medians. Target: 10,000 notes build + serialise in under a second.

    .venv/bin/python bench/roll_speed.py [--repeats 5] [--browser]

`--browser` also times drawing in headless Chromium (/usr/bin/chromium via Playwright, software rendering):
`Plotly.newPlot` until the next frame, and one zoom (`Plotly.relayout` of the x range to 16 bars: what a wheel step
or the end of a pan redraws).

Prints a table and writes bench/results/roll_speed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import timeit
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from importlib import metadata
from pathlib import Path
from typing import Any

import plotly
import plotly.graph_objects as go

from musegen_core.music import Note, Part, Piece
from musegen_core.render.pianoroll import takes_roll

RESULTS = Path(__file__).resolve().parent / "results" / "roll_speed.json"
SIZES = (1_000, 10_000)
PRIME_NOTES = 64
LENGTHS = (0.25, 0.5, 0.5, 1.0, 1.0, 1.5)
TARGET_S = 1.0
CHROMIUM = Path("/usr/bin/chromium")
ZOOM_BEATS = 64.0  # 16 bars of 4/4
DRAW_SCRIPT = """async ([figure, zoom]) => {
    const frame = () => new Promise(resolve => requestAnimationFrame(() => setTimeout(resolve)));
    const div = document.getElementById("roll");
    Plotly.purge(div);
    let start = performance.now();
    await Plotly.newPlot(div, figure.data, figure.layout);
    await frame();
    const draw_ms = performance.now() - start;
    start = performance.now();
    await Plotly.relayout(div, {"xaxis.range": zoom});
    await frame();
    return {draw_ms, zoom_ms: performance.now() - start};
}"""


def random_piece(notes: int, seed: int, start_beats: float = 0.0) -> Piece:
    """`notes` notes one after another from `start_beats`, one in eight stacked on the previous as a chord."""
    rng = random.Random(seed)
    made: list[Note] = []
    position = start_beats
    for i in range(notes):
        length = rng.choice(LENGTHS)
        chord = i > 0 and rng.random() < 0.125
        start = made[-1].start_beats if chord else position
        made.append(Note(rng.randint(36, 96), start, length, rng.randint(20, 127)))
        position = max(position, start + length)
    return Piece((Part("melody", tuple(made)),))


def cases(notes: int) -> dict[str, Callable[[], go.Figure]]:
    """Figure builders for one size: one take alone, four takes overlaid, four takes side by side."""
    prime = random_piece(PRIME_NOTES, seed=0)
    takes = [(f"Take {i + 1}", random_piece(notes, seed=i + 1, start_beats=prime.end_beats)) for i in range(4)]
    return {
        "1 take": lambda: takes_roll(None, takes[:1], overlaid=True),
        "4 takes overlaid": lambda: takes_roll(prime, takes, overlaid=True),
        "4 takes side by side": lambda: takes_roll(prime, takes, overlaid=False),
    }


def median_seconds(action: Callable[[], object], repeats: int) -> float:
    return statistics.median(timeit.repeat(action, number=1, repeat=repeats))


def measure(build: Callable[[], go.Figure], repeats: int) -> dict[str, Any]:
    figure = build()  # also the warm-up of both timings
    serialised = figure.to_json()
    build_s = median_seconds(build, repeats)
    json_s = median_seconds(figure.to_json, repeats)
    return {
        "notes": sum(len(trace.x) for trace in figure.data if trace.type == "bar"),
        "traces": len(figure.data),
        "build_s": round(build_s, 4),
        "json_s": round(json_s, 4),
        "total_s": round(build_s + json_s, 4),
        "json_mb": round(len(serialised) / 1e6, 2),
    }


@contextmanager
def browser_timer(repeats: int) -> Iterator[Callable[[go.Figure], dict[str, float]]]:
    """A function drawing a figure `repeats` times in headless Chromium and returning the median draw and zoom
    milliseconds."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        page = browser.new_page(viewport={"width": 1300, "height": 3000})
        page.set_content('<div id="roll" style="width:1200px"></div>')
        page.add_script_tag(path=Path(plotly.__file__).parent / "package_data" / "plotly.min.js")

        def timed(figure: go.Figure) -> dict[str, float]:
            start = figure.layout.xaxis.range[0]
            spec = [json.loads(figure.to_json()), [start, start + ZOOM_BEATS]]
            results = [page.evaluate(DRAW_SCRIPT, spec) for _ in range(repeats)]
            return {name: round(statistics.median(result[name] for result in results), 1) for name in results[0]}

        yield timed
        browser.close()


def run(repeats: int, browser: bool) -> list[dict[str, Any]]:
    rows = []
    with browser_timer(repeats) if browser else nullcontext() as draw:
        for notes in SIZES:
            for case, build in cases(notes).items():
                row = {"case": case, "notes_per_take": notes, **measure(build, repeats)}
                if draw is not None:
                    row |= draw(build())
                rows.append(row)
    return rows


def print_table(rows: list[dict[str, Any]], repeats: int) -> None:
    browser = "draw_ms" in rows[0]
    print(f"median of {repeats} after warm-up; target build + JSON < {TARGET_S:g} s\n")
    head = "| case | notes/take | notes | traces | build s | JSON s | build+JSON s | JSON MB |"
    print(head + (" draw ms | zoom ms |" if browser else ""))
    print("|" + "---|" * (head.count("|") - 1 + (2 if browser else 0)))
    for row in rows:
        line = (
            f"| {row['case']} | {row['notes_per_take']:,} | {row['notes']:,} | {row['traces']} | {row['build_s']:.3f} "
            f"| {row['json_s']:.3f} | {row['total_s']:.3f} | {row['json_mb']:.2f} |"
        )
        print(line + (f" {row['draw_ms']:.0f} | {row['zoom_ms']:.0f} |" if browser else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--repeats", type=int, default=5, help="timed builds, serialisations and draws per case (default 5)"
    )
    parser.add_argument("--browser", action="store_true", help="also time drawing in headless Chromium")
    args = parser.parse_args()
    rows = run(args.repeats, args.browser)
    print_table(rows, args.repeats)
    ten_thousand = [row for row in rows if row["case"] == "1 take" and row["notes_per_take"] == 10_000]
    report = {
        "repeats": args.repeats,
        "target_s": TARGET_S,
        "ten_thousand_notes_within_target": all(row["total_s"] < TARGET_S for row in ten_thousand),
        "rows": rows,
        "drawn_in": "headless Chromium, software rendering" if args.browser else None,
        "machine": {
            "python": platform.python_version(),
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "load_average_1min": round(os.getloadavg()[0], 2),
        },
        "versions": {name: metadata.version(name) for name in ("plotly", "numpy")},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
