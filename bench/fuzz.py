"""Fuzz the upload path and the controls at scale, with the strategies and checks of tests/test_fuzz.py.

    .venv/bin/python bench/fuzz.py [--examples 10000] [--seed 0] [--only midi,abc] [--regressions tests/data/fuzz]

For each loader (midi, musicxml, mxl, abc: through `upload_path`, i.e. `open_music_file` + `.load` of every tune,
each input under a 10 s limit) and each controls check, hypothesis generates `--examples` inputs (generate phase
only: nothing is shrunk, every problem is counted and the run goes on). Prints a Markdown table and writes
bench/results/fuzz.json: inputs, verdicts, unhandled exceptions, hangs, invalid pieces, refusals whose message shows
Python internals, seconds; and each distinct problem (exception type and where it was raised) with its count, detail
and first input. With --regressions DIR the first input of each distinct problem is saved in DIR (tests/data/fuzz/
holds them; tests/test_fuzz.py replays every file there).
"""

from __future__ import annotations

import argparse
import ast
import datetime
import hashlib
import json
import os
import platform
import re
import sys
import time
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

TESTS = Path(__file__).resolve().parents[1] / "tests"
sys.path.insert(0, str(TESTS))  # the checks live in the test modules

import test_fuzz as fuzz  # noqa: E402
from upload_harness import message_problems, run_upload  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "fuzz.json"
EXAMPLES_KEPT = 3


@dataclass
class Tally:
    """What one loader or controls check did with its inputs."""

    inputs: int = 0
    seconds: float = 0.0
    verdicts: Counter[str] = field(default_factory=Counter)
    problems: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    leaks: dict[str, dict[str, Any]] = field(default_factory=dict)

    def add_problem(self, problem: fuzz.Problem, example: str) -> bool:
        """Count a problem; True when it is the first of its kind and place."""
        key = (problem.kind, problem.site)
        first = key not in self.problems
        entry = self.problems.setdefault(key, {"kind": problem.kind, "site": problem.site, "count": 0})
        entry["count"] += 1
        entry.setdefault("detail", problem.detail)
        entry.setdefault("example", example)
        return first

    def add_leak(self, message: str) -> None:
        """Count a refusal whose message shows Python internals, by what shows (e.g. "'EOFError'")."""
        for problem in message_problems(message):
            if problem.startswith("Python internals"):
                entry = self.leaks.setdefault(problem, {"count": 0, "examples": []})
                entry["count"] += 1
                if len(entry["examples"]) < EXAMPLES_KEPT:
                    entry["examples"].append(message[:300])

    def report(self) -> dict[str, Any]:
        by_kind: Counter[str] = Counter()
        for (kind, _), entry in self.problems.items():
            by_kind[kind] += entry["count"]
        return {
            "inputs": self.inputs,
            "seconds": round(self.seconds, 1),
            "verdicts": dict(self.verdicts),
            "unhandled_exceptions": by_kind["crash"],
            "hangs": by_kind["hang"],
            "other_problems": sum(by_kind.values()) - by_kind["crash"] - by_kind["hang"],
            "python_text_in_messages": sum(entry["count"] for entry in self.leaks.values()),
            "problems": sorted(self.problems.values(), key=lambda entry: -entry["count"]),
            "message_leaks": dict(sorted(self.leaks.items(), key=lambda item: -item[1]["count"])),
        }


def run_examples(strategy: st.SearchStrategy[Any], examples: int, seed: int, record: Callable[[Any], None]) -> None:
    """`record` each of `examples` inputs hypothesis generates from `strategy` (reproducibly for a seed)."""

    @hypothesis_seed(seed)
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def one(value: Any) -> None:
        record(value)

    one()


def fuzz_loader(loader: str, examples: int, seed: int, keep: Path | None) -> Tally:
    tally = Tally()

    def record(upload: fuzz.Upload) -> None:
        outcome = run_upload(upload.data, upload.name)
        tally.inputs += 1
        tally.seconds += outcome.seconds
        tally.verdicts[outcome.verdict] += 1
        for message in outcome.messages:
            tally.add_leak(message)
        problem = fuzz.outcome_problem(outcome)
        if problem:
            name = f"{loader}-{_slug(problem.kind)}-{_slug(problem.site)}{Path(upload.name).suffix}"
            if tally.add_problem(problem, name) and keep:
                (keep / name).write_bytes(upload.data)

    run_examples(fuzz.UPLOADS[loader](), examples, seed, record)
    return tally


def fuzz_controls(check: str, examples: int, seed: int, keep: Path | None) -> Tally:
    tally = Tally()
    strategy, make = fuzz.CONTROL_CHECKS[check]

    def record(values: dict) -> None:
        started = time.perf_counter()
        problem = fuzz.controls_problem(lambda: make(values))
        tally.inputs += 1
        tally.seconds += time.perf_counter() - started
        tally.verdicts["problem" if problem else "validated or refused"] += 1
        if problem:
            name = f"controls-{_slug(check)}-{_slug(problem.kind)}-{_slug(problem.site)}.literal"
            if tally.add_problem(problem, repr(values)[:300]) and keep:
                _keep_controls_case(keep / name, check, values)

    run_examples(strategy(), examples, seed, record)
    return tally


def _keep_controls_case(path: Path, check: str, values: dict) -> None:
    """Save a controls case as tests/test_fuzz.py replays it: a Python literal, where the values are literals
    (nan, numpy values or Fractions are not)."""
    text = repr({"check": check, "values": values})
    try:
        saved = ast.literal_eval(text) == {"check": check, "values": values}
    except (ValueError, SyntaxError):
        saved = False
    if saved:
        path.write_text(text + "\n", encoding="utf-8")
    else:
        print(f"  not saved ({path.name}): its values are not literals: {values!r}"[:300])


def _slug(text: str) -> str:
    """A file-name part for `text`: its words, cut short, and a hash of all of it (so two long sites differ)."""
    words = re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")[:40]
    return f"{words}-{hashlib.sha1(text.encode()).hexdigest()[:6]}"


def markdown(results: dict[str, dict[str, Any]]) -> str:
    lines = [
        "| input | inputs | loaded / validated | refused | unhandled exceptions | hangs | other problems "
        "| Python text in messages | s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, result in results.items():
        verdicts = result["verdicts"]
        ok = verdicts.get("loaded", 0) + verdicts.get("validated or refused", 0)
        refused = verdicts.get("refused", 0) + verdicts.get("partly refused", 0)
        lines.append(
            f"| {name} | {result['inputs']} | {ok} | {refused} | {result['unhandled_exceptions']} | {result['hangs']} "
            f"| {result['other_problems']} | {result['python_text_in_messages']} | {result['seconds']} |"
        )
    lines.append("\nDistinct problems:")
    for name, result in results.items():
        for problem in result["problems"]:
            lines.append(f"- {name}: {problem['count']}× {problem['kind']}: {problem['detail'][:240]}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=10_000, help="inputs per loader and controls check")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", default=None, help="comma-separated names: midi, musicxml, mxl, abc, controls")
    parser.add_argument("--regressions", type=Path, default=None, help="save the first input of each problem here")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # music21 and pretty_midi warn about most fuzzed files
    only = set(args.only.split(",")) if args.only else None
    if args.regressions:
        args.regressions.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, Any]] = {}
    started = time.perf_counter()
    for loader in fuzz.UPLOADS:
        if only is None or loader in only:
            results[loader] = fuzz_loader(loader, args.examples, args.seed, args.regressions).report()
            print(f"{loader}: {results[loader]['inputs']} inputs in {results[loader]['seconds']} s", flush=True)
    for check in fuzz.CONTROL_CHECKS:
        if only is None or "controls" in only:
            results[check] = fuzz_controls(check, args.examples, args.seed, args.regressions).report()
            print(f"{check}: {results[check]['inputs']} inputs", flush=True)
    print(markdown(results))
    report = {
        "date": datetime.date.today().isoformat(),
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform()},
        "examples_asked": args.examples,
        "seed": args.seed,
        "wall_seconds": round(time.perf_counter() - started, 1),
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
