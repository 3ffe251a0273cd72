"""What one rerun of the Compose page costs the server, with its figures shared or made on every rerun.

Streamlit reruns a page's whole script on every widget change, and each rerun holds the server's interpreter lock
that every session's reruns need. Compose with a take and its Analysis tab open draws three figures (the melody's
piano roll, the take's, the analysis; with the Notation tab, open by default, the two rolls only); `musegen_core.ui`
makes each once per content and shares it (`st.cache_resource`). This bench runs the page in-process (Streamlit's
AppTest, the shipped model): upload a melody, Generate an 8-bar take, open the Analysis tab, then rerun the page
`--reruns` times per round, rounds alternating between the shared figures and a baseline that makes them on every
rerun (the page as it was before: `ui.piano_roll`, `ui.takes_roll` and the analysis figure swapped for the functions
they cache). Reports the process CPU time per rerun (AppTest's own bookkeeping included, the same in both) as
medians over all reruns of each variant, and their ratio.

    .venv/bin/python bench/page_rerun.py [--reruns 10] [--rounds 3]

Prints a table and writes bench/results/page_rerun.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from streamlit.testing.v1 import AppTest  # noqa: E402

from musegen_core import ui  # noqa: E402
from musegen_core.formats.midi import piece_to_midi  # noqa: E402
from musegen_core.music import Note, Part, Piece, TimeSignature  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "page_rerun.json"
SHARED = {"piano_roll": ui.piano_roll, "takes_roll": ui.takes_roll, "_analysis_figure": ui._analysis_figure}
MADE_EACH_RERUN = {name: shared.__wrapped__ for name, shared in SHARED.items()}  # the same functions, uncached


def melody_midi() -> bytes:
    """A 16-note fiddle phrase in G (2/4), as a student would upload it."""
    steps = [67, 69, 71, 72, 74, 72, 71, 69, 67, 71, 74, 79, 78, 76, 74, 72]
    notes = tuple(Note(pitch, i * 0.5, 0.5) for i, pitch in enumerate(steps))
    return piece_to_midi(Piece((Part("Fiddle", notes, program=40),), 110, TimeSignature(2, 4)))


def page_with_a_take() -> AppTest:
    """Compose with a take and its Analysis tab open: all three figures drawn on every rerun."""
    app = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300).run()
    app.file_uploader[0].upload("tune.mid", melody_midi(), "audio/midi").run()
    next(button for button in app.button if button.label == "Generate").click().run()
    app.session_state["look-closer"] = "Analysis"
    app.run()
    if app.exception or len(app.get("plotly_chart")) != 3:
        raise SystemExit(f"the page did not show a take: {app.exception or app.get('plotly_chart')}")
    return app


def rerun_cpu_ms(app: AppTest, reruns: int, figures: dict) -> list[float]:
    for name, function in figures.items():
        setattr(ui, name, function)
    times = []
    for _ in range(reruns):
        started = time.process_time()
        app.run()
        times.append((time.process_time() - started) * 1000)
    if app.exception:
        raise SystemExit(f"the page failed: {app.exception}")
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reruns", type=int, default=10, help="reruns per round (default 10)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each variant, alternating (default 3)")
    parser.add_argument("--json", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="musegen-rerun-") as folder:
        os.environ["MUSEGEN_DB_URL"] = f"sqlite:///{folder}/ratings.sqlite3"
        app = page_with_a_take()
        rerun_cpu_ms(app, 2, SHARED)  # warm: the shared figures exist from here on
        times: dict[str, list[float]] = {"shared": [], "made_each_rerun": []}
        for _ in range(args.rounds):
            times["made_each_rerun"] += rerun_cpu_ms(app, args.reruns, MADE_EACH_RERUN)
            times["shared"] += rerun_cpu_ms(app, args.reruns, SHARED)
    medians = {name: statistics.median(values) for name, values in times.items()}
    result = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "what": "process CPU ms per rerun of Compose showing an 8-bar take, Analysis tab open (AppTest, in-process)",
        "reruns_per_variant": len(times["shared"]),
        "median_cpu_ms": {name: round(value, 1) for name, value in medians.items()},
        "p95_cpu_ms": {name: round(statistics.quantiles(values, n=20)[-1], 1) for name, values in times.items()},
        "ratio_made_over_shared": round(medians["made_each_rerun"] / medians["shared"], 2),
        "cpu": platform.processor() or platform.machine(),
    }
    print("| figures | reruns | median CPU ms per rerun | p95 |")
    print("|---|---:|---:|---:|")
    for name, values in times.items():
        p95 = result["p95_cpu_ms"][name]
        print(f"| {name.replace('_', ' ')} | {len(values)} | {medians[name]:.0f} | {p95:.0f} |")
    print(f"\nmade each rerun / shared: {result['ratio_made_over_shared']}×")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
