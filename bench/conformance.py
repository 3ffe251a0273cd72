"""The conformance corpus (../shared/conformance: music files written by others) through MuseGen, as a table.

    .venv/bin/python bench/conformance.py [--out bench/results/conformance.json]

Runs exactly the checks of tests/test_conformance.py (imported from there): each file through the app's upload
path (open it and load every tune in reading workers, as the upload page does) and through one
`musegen check --json FILE...` process, with the file's verdict (loaded, partly refused, refused, crash, hang,
memory), seconds on each path, note counts, the note count the file itself states where the test can tell, the
first refusal message and every problem found. Prints a Markdown table and the verdict counts, and writes them to
bench/results/conformance.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
import warnings
from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1] / "tests"
sys.path.insert(0, str(TESTS))  # the checks live in the test module

import test_conformance as conformance  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "conformance.json"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # music21 and pretty_midi warn about many of these files
    files = conformance.conformance_files()
    if not files:
        print(f"no conformance corpus at {conformance.CONFORMANCE}", file=sys.stderr)
        return 1
    started = time.perf_counter()
    rows = conformance.conformance_table(files)
    verdicts = Counter(str(row["verdict"]) for row in rows)
    by_category = Counter(f"{row['category']}: {row['verdict']}" for row in rows)
    with_problems = [row["file"] for row in rows if row["problems"]]
    print(conformance.markdown_table(rows))
    print(f"\n{len(rows)} files: {dict(verdicts)}; with problems: {len(with_problems)}")
    report = {
        "date": datetime.date.today().isoformat(),
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform()},
        "files": len(rows),
        "verdicts": dict(verdicts),
        "verdicts_by_category": dict(sorted(by_category.items())),
        "files_with_problems": with_problems,
        "upload_path_seconds": round(sum(float(row["seconds"]) for row in rows), 1),
        "check_seconds": round(sum(float(row["cli_seconds"] or 0) for row in rows), 1),
        "wall_seconds": round(time.perf_counter() - started, 1),
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
