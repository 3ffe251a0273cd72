"""The set-up commands: scripts/setup is idempotent, reports missing system packages to non-root users, and CI runs the
README's test command.

These run the real scripts against this checkout; none of them installs anything.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SETUP = ROOT / "scripts" / "setup"
STAMP = ROOT / ".venv" / ".musegen-installed"
APT_LINE = re.compile(r"^\s*sudo apt-get install -y --no-install-recommends((?: [a-z0-9][a-z0-9.+-]*)+)\s*$")
FAKE_PACKAGE = "musegen-test-no-such-package"


def _run(cmd: list[str], env: dict[str, str] | None = None, cwd: Path | str = "/") -> subprocess.CompletedProcess:
    return subprocess.run(
        cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL, check=False
    )


def _installed(pkg: str) -> bool:
    result = _run(["dpkg-query", "-W", "-f=${Status}", pkg])
    return result.returncode == 0 and result.stdout == "install ok installed"


def test_second_setup_run_is_a_fast_no_op():
    # The script's own read-only check says whether this checkout was set up (venv stamped, packages present). Under
    # scripts/run-tests (and so in CI) it just ran, so "not set up" is a failure; a developer who ran pytest directly
    # after editing requirements.txt/pyproject.toml gets a skip instead of a surprise pip run.
    check = _run([str(SETUP), "test", "--check-only"])
    if check.returncode != 0:
        message = "checkout not set up; run scripts/setup test:\n" + check.stdout + check.stderr
        if os.environ.get("MUSEGEN_SETUP_RAN") or os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    stamp_before = STAMP.stat().st_mtime_ns

    start = time.monotonic()
    result = _run([str(SETUP), "test"])  # from cwd "/": the script must find the repo root itself
    elapsed = time.monotonic() - start

    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "system packages present" in out
    assert "venv up to date" in out
    for word in ("pip", "apt-get", "installing", "creating"):
        assert word not in out, f"second run did work ({word!r}):\n{out}"
    assert STAMP.stat().st_mtime_ns == stamp_before, "the stamp was rewritten"
    assert elapsed < 5, f"a no-op setup took {elapsed:.1f} s"


def _as_nobody() -> list[str]:
    if os.geteuid() != 0:
        pytest.skip("needs root to switch to the unprivileged user nobody")
    if shutil.which("setpriv"):
        return ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
    if shutil.which("runuser"):
        return ["runuser", "-u", "nobody", "--"]
    pytest.skip("neither setpriv nor runuser is available")


@pytest.mark.parametrize("extra_args", [[], ["--check-only"]], ids=["setup", "check-only"])
def test_non_root_user_gets_the_exact_apt_line_and_nothing_is_touched(extra_args: list[str]):
    if not shutil.which("dpkg-query"):
        pytest.skip("not a Debian system")
    switch = _as_nobody()
    # A world-readable copy of the checkout's set-up inputs, so the unprivileged user can reach it wherever the clone
    # lives (a clone under /root is not traversable by nobody). Its bare state (no .venv) is what must stay untouched.
    with tempfile.TemporaryDirectory(prefix="musegen-setup-test-") as tmp:
        repo = Path(tmp)
        os.chmod(repo, 0o755)
        (repo / "scripts").mkdir(mode=0o755)
        shutil.copy2(SETUP, repo / "scripts" / "setup")
        for name in ("requirements.txt", "pyproject.toml"):
            shutil.copy2(ROOT / name, repo / name)
        before = sorted((p.relative_to(repo), p.stat().st_mtime_ns) for p in repo.rglob("*"))

        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": "/nonexistent",
            "LANG": "C.UTF-8",
            "MUSEGEN_SYSTEM_PACKAGES_EXTRA": FAKE_PACKAGE,
        }
        result = _run([*switch, str(repo / "scripts" / "setup"), "test", *extra_args], env=env)
        out = result.stdout + result.stderr

        assert result.returncode != 0, out
        apt_lines = [m for line in out.splitlines() if (m := APT_LINE.match(line))]
        assert len(apt_lines) == 1, f"expected one exact apt-get line:\n{out}"
        listed = apt_lines[0].group(1).split()
        assert FAKE_PACKAGE in listed
        # Only what is really missing is listed (python3.11-venv may be, when Debian's python3.11 lacks ensurepip).
        for pkg in ("libfluidsynth3", "chromium", "postgresql"):
            assert (pkg in listed) == (not _installed(pkg)), out
        assert not any(_installed(pkg) for pkg in listed), out
        assert "pip install" not in out
        if "--check-only" not in extra_args:
            assert "venv" not in out, f"setup went on past the missing packages:\n{out}"
        assert sorted((p.relative_to(repo), p.stat().st_mtime_ns) for p in repo.rglob("*")) == before


def _readme_test_command() -> str:
    doc = ROOT / "README.md"
    text = doc.read_text(encoding="utf-8")
    commands = re.findall(r"^\s*(scripts/run-tests)\s*$", text, flags=re.MULTILINE)
    assert commands, f"{doc.name} shows no `scripts/run-tests` command line"
    return commands[0]


def test_ci_runs_the_readme_test_command():
    command = _readme_test_command()
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    code_lines = [line.strip() for line in ci.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert any(line in (command, f"exec {command}") for line in code_lines), f".ci/run does not run `{command}`"
    assert "set -euo pipefail" in code_lines


@pytest.mark.parametrize("path", ["scripts/setup", "scripts/run-app", "scripts/run-tests", ".ci/run"])
def test_scripts_are_executable_strict_bash(path: str):
    script = ROOT / path
    assert os.access(script, os.X_OK), f"{path} is not executable"
    text = script.read_text(encoding="utf-8")
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "\nset -euo pipefail\n" in text
    syntax = _run(["bash", "-n", str(script)])
    assert syntax.returncode == 0, syntax.stderr


def test_the_shipped_streamlit_config_is_the_production_one():
    """Users never see a traceback, magic never writes stray values, no full garbage collection after every rerun
    (with music21 and torch loaded it held the GIL ~85 ms a rerun, delaying every session's clicks) and no watching
    the source files (its events and folder walks took a sixth of the server's busy time under 30 sessions)."""
    config = tomllib.loads((Path(__file__).resolve().parent.parent / ".streamlit" / "config.toml").read_text())
    assert config["client"]["showErrorDetails"] == "none"
    assert config["runner"] == {"magicEnabled": False, "postScriptGC": False}
    assert config["server"]["maxUploadSize"] <= 10  # MB, held in RAM per session
    assert config["server"]["fileWatcherType"] == "none"
