"""The feedback side of the app in Streamlit's AppTest: rater identity, Compare & Rate (blind A/B votes), star tags,
the Feedback page's plots, and the admin unlock that guards the dataset export and deleting."""

from __future__ import annotations

import io
import json
import logging
import zipfile
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from musegen_core import admin
from musegen_core.compare import builtin_primes
from musegen_core.feedback import FeedbackStore, PairTake, PairVote, Rating
from musegen_core.formats.midi import piece_to_midi
from musegen_core.models.registry import list_models
from musegen_core.music import Note, Part, Piece, TimeSignature

ROOT = Path(__file__).resolve().parent.parent
SECRET = "counterpoint 1725"
HASH = admin.hash_secret(SECRET)
pytestmark = pytest.mark.skipif(not (ROOT / "models" / "lstm-folk").exists(), reason="shipped model missing")


@pytest.fixture(autouse=True)
def run_app_py_every_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make AppTest run app.py on every run, as the server does (so the sidebar it draws is there after a click).

    AppTest resets `PagesManager.uses_pages_directory` before each run; with a pages/ folder beside app.py it then
    runs a rerun's page script alone (Streamlit's old pages/-folder mode), skipping app.py. The server sets the flag
    to False once, at the first `st.navigation`, and runs app.py every time after.
    """
    from streamlit.runtime.pages_manager import PagesManager

    original = PagesManager.__init__

    def init(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        original(self, *args, **kwargs)
        PagesManager.uses_pages_directory = False

    monkeypatch.setattr(PagesManager, "__init__", init)


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'feedback.sqlite3'}"
    monkeypatch.setenv("MUSEGEN_DB_URL", url)
    monkeypatch.setenv(admin.SECRET_HASH_ENV, HASH)
    return url


def _app(rater: str | None = None) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    if rater is not None:
        at.query_params["rater"] = rater
    return at.run()


def _rendered(at: AppTest) -> str:
    """Everything the page sent to the browser (every element's message, plot specs included)."""
    parts: list[str] = []

    def walk(node) -> None:  # type: ignore[no-untyped-def]
        proto = getattr(node, "proto", None)
        if proto is not None:
            parts.append(str(proto))
        for child in getattr(node, "children", {}).values():
            walk(child)

    walk(at._tree)
    return "\n".join(parts)


def _button(at: AppTest, key: str):
    return at.button(key=key)


def _model_names() -> set[str]:
    return {info.name for info in list_models()}


def _tune_midi() -> bytes:
    notes = tuple(Note(p, i * 0.5, 0.5) for i, p in enumerate([67, 69, 71, 72, 74, 72, 71, 69, 67, 71, 74, 79]))
    return piece_to_midi(Piece((Part("Fiddle", notes, program=40),), 110, TimeSignature(2, 4)))


def _seed_feedback(url: str) -> None:
    store = FeedbackStore(url)
    for i, (model, version, stars, style) in enumerate(
        [("lstm-folk", "2", 4, "irish"), ("lstm-folk", "2", 2, "bach_chorale"), ("transformer-folk", "1", 5, None)]
    ):
        store.add(Rating(stars=stars, model_name=model, model_version=version, seed=i, controls={"style": style},
                         prime_midi=b"prime", generated_midi=f"take {i}".encode(), rater="Ada"))  # fmt: skip
    models = [("lstm-folk", "2"), ("transformer-folk", "1")]
    takes = [PairTake(f"t{i}".encode(), name, version, i, {}) for i, (name, version) in enumerate(models)]
    store.add_pair_vote(PairVote(b"prime", takes[0], takes[1], "a", "Ada"))
    store.add_pair_vote(PairVote(b"prime", takes[1], takes[0], "tie", "Bo"))
    store.dispose()


# ---------------------------------------------------------------------------------------------------------------
# Rater identity.


def test_an_anonymous_rater_id_is_kept_in_the_address_and_survives_a_reload(db: str) -> None:
    at = _app()
    rater = at.query_params["rater"]
    rater = rater[0] if isinstance(rater, list) else rater
    assert rater.startswith("anon-") and len(rater) == 37
    assert at.session_state["rater"] == rater
    at.switch_page("pages/ratings.py").run()
    assert at.query_params["rater"] in (rater, [rater])  # page switches keep it
    reloaded = _app(rater)  # a reload: a new session, same address
    assert reloaded.session_state["rater"] == rater
    assert _app().session_state["rater"] != rater  # a new browser without the address: a new id


def test_a_chosen_name_is_the_rater_and_goes_into_the_address(db: str) -> None:
    at = _app()
    at.sidebar.text_input(key="rater-name").input("  Ada   Lovelace ").run()
    assert at.session_state["rater"] == "Ada Lovelace" and at.query_params["rater"] in ("Ada Lovelace",
                                                                                          ["Ada Lovelace"])  # fmt: skip
    assert "as **Ada Lovelace**" in " ".join(c.value for c in at.sidebar.caption)
    assert _app("Ada Lovelace").sidebar.text_input(key="rater-name").value == "Ada Lovelace"
    at.sidebar.text_input(key="rater-name").input("").run()
    assert at.session_state["rater"].startswith("anon-")  # back to this browser's anonymous id
    at.sidebar.text_input(key="rater-name").input("Ada\u0007").run()
    assert at.sidebar.error and at.session_state["rater"].startswith("anon-")


def test_a_star_rating_on_compose_stores_tags_and_the_rater(db: str) -> None:
    at = _app("Clara")
    at.file_uploader[0].upload("tune.mid", _tune_midi(), "audio/midi").run()
    next(s for s in at.slider if s.label == "Bars to add").set_value(2)
    next(b for b in at.button if b.label == "Generate").click().run()
    at.feedback[0].set_value(4).run()
    next(m for m in at.multiselect if m.label == "Tags (optional)").set_value(["catchy", "too busy"]).run()
    next(b for b in at.button if b.label == "Save rating").click().run()
    assert not at.exception and not at.warning and "saved" in at.success[0].value  # ?rater= is not a control
    [rating] = FeedbackStore(db).recent()
    assert (rating.stars, rating.tags, rating.rater) == (5, ("catchy", "too busy"), "Clara")


# ---------------------------------------------------------------------------------------------------------------
# Compare & Rate.


def test_compare_is_blind_until_the_vote_then_reveals_and_stores_it(db: str) -> None:
    at = _app("Ada")
    at.switch_page("pages/compare.py").run()
    assert not at.exception and not at.error
    state = at.session_state["compare"]
    pair = state.pair
    page = _rendered(at)
    assert not [name for name in _model_names() if name in page]  # blind: no model name anywhere on the page
    assert "A was" not in page and "B was" not in page
    assert len(at.get("plotly_chart")) == 3 and len(at.get("audio")) == 3  # the melody once, then A and B
    shortcuts = {b.label: b.proto.shortcut for b in at.button}
    assert [shortcuts[label] for label in ("A better", "B better", "Tie", "Skip")] == ["a", "b", "t", "s"]

    at.multiselect(key=f"pair-tags-{state.queue_seed}-0").set_value(["good continuation", "catchy"])
    _button(at, "vote-b").click().run()
    assert not at.exception
    [vote] = FeedbackStore(db).pair_votes()
    assert (vote.choice, vote.rater, vote.tags) == ("b", "Ada", ("catchy", "good continuation"))
    assert (vote.a.model_name, vote.a.seed, vote.b.model_name, vote.b.seed) == (
        pair.a.model_name, pair.a.seed, pair.b.model_name, pair.b.seed,
    )  # fmt: skip
    assert vote.prime_name == pair.spec.prime.name
    revealed = at.success[0].value
    assert f"A was {pair.a.model_name} v{pair.a.model_version} seed {pair.a.seed}" in revealed
    assert f"B was {pair.b.model_name} v{pair.b.model_version} seed {pair.b.seed}" in revealed
    assert pair.a.model_name in _rendered(at)
    assert not [b for b in at.button if b.label in ("A better", "B better")]  # one vote per pair

    _button(at, "next-pair").click().run()
    following = at.session_state["compare"].pair
    assert following.spec.number == 1 and at.session_state["compare"].choice is None
    page = _rendered(at)
    assert not [name for name in _model_names() if name in page] and "A was" not in page


def test_skip_is_stored_as_a_skip(db: str) -> None:
    at = _app("Bo")
    at.switch_page("pages/compare.py").run()
    _button(at, "vote-skip").click().run()
    [vote] = FeedbackStore(db).pair_votes()
    assert (vote.choice, vote.rater) == ("skip", "Bo")
    assert "skipped" in at.success[0].value
    counts = FeedbackStore(db).counts()
    assert (counts.pair_votes, counts.skipped) == (1, 1)


def test_compare_can_use_the_melody_uploaded_on_compose(db: str) -> None:
    at = _app()
    at.file_uploader[0].upload("mine.mid", _tune_midi(), "audio/midi").run()
    at.switch_page("pages/compare.py").run()
    melodies = next(r for r in at.radio if r.label == "Melodies")
    assert melodies.options == ["Built-in tunes", "Your melody from Compose: mine.mid"]
    assert melodies.value == "mine.mid"  # preselected
    assert not at.exception and at.session_state["compare"].pair.spec.prime.name == "mine.mid"
    melodies.set_value("built-in").run()
    assert at.session_state["compare"].pair.spec.prime.name in {p.name for p in builtin_primes()}
    next(r for r in at.radio if r.label == "Melodies").set_value("mine.mid").run()
    assert at.session_state["compare"].pair.spec.prime.name == "mine.mid"
    _button(at, "vote-tie").click().run()
    [vote] = FeedbackStore(db).pair_votes()
    assert vote.prime_name == "mine.mid" and vote.choice == "tie" and vote.rater.startswith("anon-")


# ---------------------------------------------------------------------------------------------------------------
# Feedback page and admin.


def test_feedback_page_plots_the_numbers_and_hides_the_export_without_admin(db: str) -> None:
    _seed_feedback(db)
    at = _app()
    at.switch_page("pages/feedback.py").run()
    assert not at.exception and not at.error
    assert [m.value for m in at.metric][:3] == ["3", "2", "0"]
    charts = at.get("plotly_chart")
    assert len(charts) == 3  # over time, per model and style, win rates
    assert "transformer-folk v1" in charts[2].proto.spec and "lstm-folk v2" in charts[0].proto.spec
    assert not at.get("download_button") and not [b for b in at.button if b.label == "Prepare export"]
    assert "admin action" in " ".join(c.value for c in at.caption)


def _unlock(at: AppTest, secret: str) -> AppTest:
    at.sidebar.text_input(key="admin-secret").input(secret)
    return next(b for b in at.sidebar.button if b.label == "Unlock").click().run()


def test_the_right_admin_secret_unlocks_the_export_and_it_downloads_a_dataset_zip(
    db: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    _seed_feedback(db)
    at = _app()
    at.switch_page("pages/feedback.py").run()
    _unlock(at, "counterpoint 1724")
    assert "not the admin secret" in at.sidebar.error[0].value
    assert at.sidebar.text_input(key="admin-secret").value == ""  # the box is emptied at once
    assert not [b for b in at.button if b.label == "Prepare export"]

    _unlock(at, SECRET)
    assert not at.exception and "unlocked" in at.sidebar.success[0].value
    assert not _has_key(at, "admin-secret")  # unlocked: the box is gone (and was cleared before)
    next(b for b in at.button if b.label == "Prepare export").click().run()
    [download] = at.get("download_button")
    assert download.proto.label == "Download dataset (.zip)"
    export = at.session_state["feedback-export"]
    with zipfile.ZipFile(io.BytesIO(export.data)) as archive:
        manifest = json.loads(archive.read(f"{export.folder}/manifest.json"))
        assert {f"{export.folder}/ratings.jsonl", f"{export.folder}/pairs.jsonl"} <= set(archive.namelist())
    assert manifest["counts"]["ratings"] == 3 and manifest["counts"]["pairs"] == 2
    assert download.proto.url.endswith(".zip")

    # the secret is nowhere: not on the page, not in the session, not in the log
    assert SECRET not in _rendered(at) and HASH not in _rendered(at)
    assert SECRET not in repr(at.session_state.to_dict())
    assert SECRET not in caplog.text and "counterpoint 1724" not in caplog.text

    next(b for b in at.sidebar.button if b.label == "Lock").click().run()
    assert not [b for b in at.button if b.label == "Prepare export"] and not at.get("download_button")


def test_without_a_configured_secret_admin_is_off_and_says_so(db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(admin.SECRET_HASH_ENV)
    at = _app()
    at.switch_page("pages/feedback.py").run()
    assert not _has_key(at, "admin-secret")
    assert "off on this server" in " ".join(c.value for c in at.sidebar.caption)
    assert "admin actions are off" in " ".join(c.value for c in at.caption)
    assert not [b for b in at.button if b.label == "Prepare export"]


def _has_key(at: AppTest, key: str) -> bool:
    try:
        at.text_input(key=key)
    except KeyError:
        return False
    return True


def test_a_non_admin_session_cannot_reach_admin_actions(db: str) -> None:
    _seed_feedback(db)
    at = _app()
    at.switch_page("pages/ratings.py").run()
    assert not [b for b in at.button if b.key == "delete-record"]  # the admin widgets are not rendered at all
    session = at.session_state["admin"]  # this browser session's own admin state, never unlocked
    store = FeedbackStore(db)
    for action in (lambda: admin.export_zip(session, store), lambda: admin.delete_rating(session, store, 1),
                   lambda: admin.delete_pair_vote(session, store, 1), lambda: admin.promote(session, "lstm-folk"),
                   lambda: admin.rollback(session, "lstm")):  # fmt: skip
        with pytest.raises(admin.AdminError):
            action()
    assert store.count() == 3 and store.counts().pair_votes == 2


def test_an_admin_deletes_a_rating_on_the_ratings_page(db: str) -> None:
    _seed_feedback(db)
    at = _app()
    at.switch_page("pages/ratings.py").run()
    _unlock(at, SECRET)
    at.number_input(key="delete-id").set_value(2)
    _button(at, "delete-record").click().run()
    assert not at.exception and "Deleted rating #2" in at.main.success[0].value
    assert [r.id for r in FeedbackStore(db).ratings()] == [1, 3]
    at.radio(key="delete-kind").set_value("pair vote")
    at.number_input(key="delete-id").set_value(9)
    _button(at, "delete-record").click().run()
    assert "no pair vote #9" in at.main.warning[0].value


@pytest.mark.parametrize("page", ["pages/compare.py", "pages/feedback.py", "pages/ratings.py"])
def test_the_new_pages_render_on_their_own_with_the_sidebar(page: str, db: str) -> None:
    at = AppTest.from_file(str(ROOT / page), default_timeout=120).run()  # as on a fresh server's first visit
    assert not at.exception and not at.error
    assert at.sidebar.text_input(key="rater-name") and at.sidebar.text_input(key="admin-secret")
