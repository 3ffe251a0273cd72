"""bench/atheris_fuzz.py, coverage-guided fuzzing with atheris (libFuzzer): a short run on a real loader is clean,
and the machinery finds, tells apart and saves a planted crash and a planted hang (`--self-test`)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench" / "atheris_fuzz.py"

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("atheris") is None,
    reason="atheris is not installed (requirements.txt pins atheris==3.0.0, a cp311 manylinux wheel)",
)


def fuzz(tmp_path: Path, *options: str) -> dict[str, Any]:
    """Run the bench with `options`; assert that it exits 0 and wrote its JSON, and return the per-loader results."""
    out = tmp_path / "atheris.json"
    command = [sys.executable, str(BENCH), *options, "--out", str(out), "--crashes", str(tmp_path / "crashes")]
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=ROOT, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "| loader | runs | s | coverage | crashes | hangs |" in done.stdout
    return json.loads(out.read_text(encoding="utf-8"))["results"]


def test_short_runs_on_the_musicxml_loaders_are_clean(tmp_path: Path) -> None:
    results = fuzz(tmp_path, "--loader", "musicxml,mxl", "--runs", "200", "--max-seconds", "60")
    assert sorted(results) == ["musicxml", "mxl"]
    for result in results.values():
        assert result["runs"] == 200
        assert result["cov"] > 0 and result["ft"] > 0  # musegen_core and music21.musicxml are instrumented
        assert (result["crashes"], result["hangs"], result["errors"]) == (0, 0, []), result["findings"]


def test_the_machinery_finds_and_saves_a_planted_crash_and_hang(tmp_path: Path) -> None:
    result = fuzz(tmp_path, "--self-test", "--runs", "1500", "--max-seconds", "10", "--timeout", "2")["self-test"]
    assert (result["crashes"], result["hangs"]) == (1, 1), result["findings"]
    by_kind = {finding["kind"]: finding for finding in result["findings"]}
    assert by_kind["crash"]["site"].startswith("LookupError at ") and "planted_bugs" in by_kind["crash"]["site"]
    assert "planted_bugs" in by_kind["hang"]["site"]
    saved = tmp_path / "crashes" / "self-test"
    assert (saved / by_kind["crash"]["files"][0]).read_bytes().startswith(b"BUG!")
    assert (saved / by_kind["hang"]["files"][0]).read_bytes().startswith(b"HANG")
