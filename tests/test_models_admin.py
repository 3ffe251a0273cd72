"""The Models page's admin half — promote, roll back, fine-tune in the background — and the jobs behind it."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from musegen_core import admin, jobs
from musegen_core.feedback import FeedbackStore, Rating
from musegen_core.models.registry import promoted

ROOT = Path(__file__).resolve().parent.parent
SECRET = "fugue in g minor"
HASH = admin.hash_secret(SECRET)


@pytest.fixture(autouse=True)
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A private data dir (jobs), feedback database and admin secret for each test."""
    monkeypatch.setenv("MUSEGEN_DATA_DIR", str(tmp_path / "data"))
    url = f"sqlite:///{tmp_path / 'feedback.sqlite3'}"
    monkeypatch.setenv("MUSEGEN_DB_URL", url)
    monkeypatch.setenv(admin.SECRET_HASH_ENV, HASH)
    return url


def _models_page() -> AppTest:
    return AppTest.from_file(str(ROOT / "pages" / "models.py"), default_timeout=120).run()


def _unlock(at: AppTest) -> AppTest:
    at.sidebar.text_input(key="admin-secret").input(SECRET)
    return next(b for b in at.sidebar.button if b.label == "Unlock").click().run()


def _unlocked_session() -> admin.AdminSession:
    session = admin.AdminSession()
    assert session.unlock(SECRET)
    return session


def test_without_admin_the_models_page_offers_no_admin_action() -> None:
    at = _models_page()
    assert not at.exception
    labels = {b.label for b in at.button}
    assert not labels & {"Promote", "Roll back", "Delete version", "Start fine-tune"}


def test_an_admin_promotes_and_rolls_back_from_the_models_page() -> None:
    at = _unlock(_models_page())
    assert promoted()["families"]["lstm"] == "lstm-folk"
    at.button(key="promote-lstm-cleared").click().run()
    assert not at.exception and promoted()["families"]["lstm"] == "lstm-cleared"
    at.button(key="rollback-lstm").click().run()
    assert not at.exception and promoted()["families"]["lstm"] == "lstm-folk"


def test_starting_a_fine_tune_needs_an_unlocked_admin_session(server: str) -> None:
    with pytest.raises(admin.AdminError):
        jobs.start_finetune(admin.AdminSession(), "lstm-folk", FeedbackStore(server))
    assert jobs.jobs() == []


def test_a_fine_tune_without_feedback_is_refused_and_leaves_no_job(server: str) -> None:
    with pytest.raises(Exception, match="no feedback to fine-tune on"):
        jobs.start_finetune(_unlocked_session(), "lstm-folk", FeedbackStore(server))
    assert jobs.jobs() == []


def test_a_background_job_exports_runs_and_reports_its_failure_with_the_log(server: str) -> None:
    store = FeedbackStore(server)
    store.add(Rating(stars=4, model_name="lstm-folk", model_version="2", seed=0, controls={}, prime_midi=b"p",
                     generated_midi=b"t"))  # fmt: skip
    job = jobs.start_finetune(_unlocked_session(), "no-such-model", store, steps=20)
    assert (job.folder / "dataset" / "manifest.json").is_file() and jobs.jobs() == [job]
    deadline = time.monotonic() + 120
    while job.state() == "running" and time.monotonic() < deadline:
        time.sleep(0.5)
    assert job.state() == "failed" and "no-such-model" in job.log_tail()


def test_an_admin_gets_the_fine_tune_form() -> None:
    at = _unlock(_models_page())
    assert "Start fine-tune" in {b.label for b in at.button}
    assert not at.exception
