"""Fine-tunes started from the app, run in the background: export the feedback dataset, start `musegen finetune` in a
process of its own (the server stays responsive, and the run outlives the page that started it), read its progress.

Each job is a folder `<data dir>/jobs/<id>/`: `job.json` (model, settings, start time, process id), `dataset/` (the
export it trains on), `progress.json` (the fine-tune's `--progress-file`) and `log.txt` (its output). Starting one is
an admin action (`admin.admin_action`): a non-admin session cannot reach it.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from musegen_core.admin import admin_action
from musegen_core.errors import MusegenError
from musegen_core.feedback.export import export_dataset
from musegen_core.feedback.store import FeedbackStore, default_data_dir
from musegen_core.training.finetune import read_progress

JOB_FILE, PROGRESS_FILE, LOG_FILE, DATASET_DIR = "job.json", "progress.json", "log.txt", "dataset"
MAX_STEPS = 2000


@dataclass(frozen=True)
class Job:
    """One background fine-tune."""

    id: str
    model: str
    steps: int
    started: str  # ISO time, UTC
    pid: int
    folder: Path

    def progress(self) -> dict | None:
        """What the run last reported: {phase: training|gate|saving|done, step, steps, loss, name?, promoted?}."""
        return read_progress(self.folder / PROGRESS_FILE)

    def state(self) -> str:
        """ "done" (it reported its end), "running" (its process is alive) or "failed" (it stopped without)."""
        progress = self.progress() or {}
        if progress.get("phase") == "done":
            return "done"
        return "running" if _alive(self.pid) else "failed"

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join((self.folder / LOG_FILE).read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def jobs_dir() -> Path:
    return default_data_dir() / "jobs"


@admin_action
def start_finetune(model: str, store: FeedbackStore, *, steps: int = 200) -> Job:
    """Export the feedback in `store` and fine-tune `model` on it in a background process (device auto)."""
    if not 1 <= steps <= MAX_STEPS:
        raise MusegenError(f"steps must be within 1 and {MAX_STEPS} (received {steps})")
    started = datetime.datetime.now(datetime.UTC)
    folder = jobs_dir() / f"{started:%Y%m%dT%H%M%S%f}-{model}"
    folder.mkdir(parents=True)
    manifest = export_dataset(store, folder / DATASET_DIR)
    if not manifest["counts"]["ratings"] and not manifest["counts"]["pairs"]:
        shutil.rmtree(folder)
        raise MusegenError("there is no feedback to fine-tune on yet: rate some takes first")
    command = [sys.executable, "-m", "musegen_core.training.finetune", "--model", model, "--dataset",
               str(folder / DATASET_DIR), "--steps", str(steps), "--device", "auto",
               "--progress-file", str(folder / PROGRESS_FILE)]  # fmt: skip
    with open(folder / LOG_FILE, "wb") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"},
        )  # fmt: skip
    job = Job(folder.name, model, steps, started.isoformat(timespec="seconds"), process.pid, folder)
    record = {"id": job.id, "model": model, "steps": steps, "started": job.started, "pid": job.pid}
    (folder / JOB_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return job


def jobs() -> list[Job]:
    """Every job started on this server, newest first."""
    found = []
    for path in sorted(jobs_dir().glob(f"*/{JOB_FILE}"), reverse=True):
        try:
            record = json.loads(path.read_text())
            found.append(Job(record["id"], record["model"], record["steps"], record["started"], record["pid"],
                             path.parent))  # fmt: skip
        except (OSError, ValueError, KeyError):
            continue  # a job folder being written, or damaged: not listed
    return found


def _alive(pid: int) -> bool:
    """Whether process `pid` still runs (reaping it first if it is our finished child, so it is not a zombie)."""
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass  # not our child (started by an earlier server process)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
