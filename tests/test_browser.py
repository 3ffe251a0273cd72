"""End to end in a real browser: `streamlit run` on localhost, Debian's Chromium driven by Playwright.

Uploads a MIDI file, generates a continuation, checks the piano-roll and a playable WAV `<audio>` element, rates
the take and finds the rating in the database the server wrote; opens the Style Gallery and plays a style's take;
votes on a blind Compare & Rate pair with a keyboard shortcut.
"""

from __future__ import annotations

import base64
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_app import _hummed_wav

from musegen_core.feedback import FeedbackStore
from musegen_core.formats.midi import piece_to_midi
from musegen_core.models.registry import list_models
from musegen_core.music import Note, Part, Piece

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
BROWSER_TIMEOUT_MS = 180_000  # generous: a 2-core CI runner renders every style's take and audio before the rolls show
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium not installed (scripts/run-tests installs it)"),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_healthy(url: str, server: subprocess.Popen, log: Path, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"streamlit exited early: {log.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError("streamlit did not become healthy")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    folder = tmp_path_factory.mktemp("db")
    db_url = f"sqlite:///{folder / 'ratings.sqlite3'}"
    port = _free_port()
    command = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port)]
    env = {**os.environ, "MUSEGEN_DB_URL": db_url}
    # The server's log goes to a file: a pipe nobody reads fills up (64 KB) and then blocks the server for good —
    # after five tests' worth of log lines a page load hung here.
    log = (folder / "streamlit.log").open("w")
    server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://localhost:{port}"
    try:
        _wait_healthy(url, server, folder / "streamlit.log")
        yield url, db_url
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:  # a script thread still busy (e.g. a gallery being computed): stop it
            server.kill()
            server.wait(timeout=20)
        log.close()


@pytest.fixture
def page(server: tuple[str, str]):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(BROWSER_TIMEOUT_MS)
        yield page
        browser.close()


def test_upload_generate_listen_rate(server: tuple[str, str], page, tmp_path: Path) -> None:
    url, db_url = server
    melody = tmp_path / "jig.mid"
    pitches = [62, 66, 69, 74, 73, 71, 69, 66, 67, 69, 71, 69, 66, 64, 62, 62]
    notes = tuple(Note(p, i * 0.5, 0.5) for i, p in enumerate(pitches))
    melody.write_bytes(piece_to_midi(Piece((Part("Whistle", notes, program=78),), tempo_bpm=100)))

    page.goto(url)
    page.get_by_text("Upload a melody to begin").wait_for()
    page.locator("input[type=file]").set_input_files(str(melody))
    page.locator(".js-plotly-plot").first.wait_for()

    page.get_by_role("button", name="Generate").click()
    page.get_by_text("Take 1").first.wait_for()
    assert page.locator(".js-plotly-plot").count() == 2  # the prime's roll and the take's (the analysis is in a tab)
    notation = page.locator(".musegen-notation img")
    notation.nth(1).wait_for()  # the prime and the take, engraved
    assert notation.count() == 2 and all(
        img.evaluate("i => i.complete && i.naturalWidth > 300") for img in notation.all()
    )
    svg = base64.b64decode(notation.nth(1).get_attribute("src").split(",", 1)[1]).decode()
    assert 'class="meterSig"' in svg and 'class="staff"' in svg
    audio = page.locator("audio")
    audio.nth(2).wait_for(state="attached")
    source = audio.nth(1).get_attribute("src")
    response = page.request.get(source if source.startswith("http") else f"{url}{source}")
    assert response.ok and response.body()[:4] == b"RIFF" and len(response.body()) > 44_100
    played = audio.nth(1).evaluate(
        "a => { a.muted = true; return a.play().then(() => new Promise(r => setTimeout(() => r(a.currentTime), 600))) }"
    )
    assert played > 0.1  # the browser decoded the WAV and its clock moved

    with page.expect_download() as download:  # the MP3 is encoded only now, when it is asked for
        page.get_by_role("button", name="MP3").click()
    assert download.value.suggested_filename == "musegen-take-1.mp3"
    assert Path(download.value.path()).read_bytes()[:2] == b"\xff\xfb"  # an MPEG-1 layer III frame

    page.get_by_role("button", name="Save rating").wait_for()
    page.locator("[data-testid='stFeedback'] button, [data-testid='stButtonGroup'] button").nth(4).click()
    page.get_by_role("button", name="Save rating").click()
    page.get_by_text("rating #").wait_for()

    [rating] = FeedbackStore(db_url).recent()
    assert rating.stars == 5 and rating.prime_name == "jig.mid"

    assert page.locator(".js-plotly-plot").count() == 2  # the analysis is drawn only when its tab is opened
    page.get_by_role("tab", name="Analysis").click()
    page.get_by_text("Intervals (% of steps)").wait_for()
    assert page.locator(".js-plotly-plot").count() == 3 and not page.locator(".musegen-notation img").count()


def test_vae_variations_play_in_the_browser(server: tuple[str, str], page, tmp_path: Path) -> None:
    url, _ = server
    melody = tmp_path / "air.mid"
    pitches = [67, 69, 71, 72, 74, 72, 71, 69, 67, 71, 74, 79, 78, 76, 74, 72]
    notes = tuple(Note(p, i * 0.5, 0.5) for i, p in enumerate(pitches))
    melody.write_bytes(piece_to_midi(Piece((Part("Flute", notes, program=73),), tempo_bpm=96)))

    page.goto(url)
    page.locator("input[type=file]").first.set_input_files(str(melody))
    page.locator(".js-plotly-plot").first.wait_for()
    model_picker = page.locator("[data-testid='stSelectbox']").filter(has_text="Model").get_by_role("combobox")
    model_picker.click()
    page.get_by_role("option", name=re.compile(r"^vae-folk")).click()
    page.get_by_text("Variations", exact=True).first.click()
    page.get_by_role("button", name="Make variations").click()
    page.get_by_text("All in a row").wait_for()
    page.get_by_text("Variation 4", exact=True).last.wait_for()
    assert page.locator(".js-plotly-plot").count() == 2
    audio = page.locator("audio")
    audio.nth(5).wait_for(state="attached")  # prime, all in a row, four variations
    source = audio.nth(1).get_attribute("src")
    response = page.request.get(source if source.startswith("http") else f"{url}{source}")
    assert response.ok and response.body()[:4] == b"RIFF" and len(response.body()) > 44_100
    if os.environ.get("MUSEGEN_SCREENSHOTS"):
        page.screenshot(path=os.path.join(os.environ["MUSEGEN_SCREENSHOTS"], "variations.png"), full_page=True)


def test_style_gallery_shows_and_plays_every_style(server: tuple[str, str], page) -> None:
    url, _ = server
    page.goto(url)
    page.get_by_role("link", name="Style Gallery").click()
    page.get_by_role("heading", name="Bach chorale").wait_for()  # the last of lstm-folk's five styles
    page.wait_for_function("document.querySelectorAll('.js-plotly-plot').length === 5")
    audio = page.locator("audio")
    audio.nth(5).wait_for(state="attached")  # the melody, then one continuation per style
    source = audio.nth(1).get_attribute("src")
    response = page.request.get(source if source.startswith("http") else f"{url}{source}")
    assert response.ok and response.body()[:4] == b"RIFF" and len(response.body()) > 44_100
    if os.environ.get("MUSEGEN_SCREENSHOTS"):
        page.screenshot(path=os.path.join(os.environ["MUSEGEN_SCREENSHOTS"], "gallery.png"), full_page=True)


def test_compare_and_rate_votes_with_a_keyboard_shortcut(server: tuple[str, str], page) -> None:
    url, db_url = server
    page.goto(url)
    page.get_by_role("link", name="Compare & Rate").click()
    page.get_by_role("button", name="A better").wait_for()
    page.wait_for_function("document.querySelectorAll('.js-plotly-plot').length === 3")  # the melody, A, B
    audio = page.locator("audio")
    audio.nth(2).wait_for(state="attached")
    source = audio.nth(1).get_attribute("src")
    response = page.request.get(source if source.startswith("http") else f"{url}{source}")
    assert response.ok and response.body()[:4] == b"RIFF"
    shown = page.locator("body").inner_text()
    assert not [info.name for info in list_models() if info.name in shown]  # blind until the vote
    rater = re.search(r"[?&]rater=([^&]+)", page.url)
    assert rater and rater.group(1).startswith("anon-")  # the anonymous id is kept in the address

    page.get_by_role("heading", name="Compare & Rate").click()  # focus the page, not a text box
    page.keyboard.press("b")  # "B better"
    page.get_by_text("B was").wait_for()
    [vote] = FeedbackStore(db_url).pair_votes()
    assert vote.choice == "b" and vote.rater == rater.group(1)
    revealed = page.locator("body").inner_text()
    assert vote.a.model_name in revealed and vote.b.model_name in revealed
    if os.environ.get("MUSEGEN_SCREENSHOTS"):
        page.screenshot(path=os.path.join(os.environ["MUSEGEN_SCREENSHOTS"], "compare.png"), full_page=True)


def test_a_hummed_recording_becomes_the_melody(server: tuple[str, str], page, tmp_path: Path) -> None:
    url, _ = server
    recording = tmp_path / "hum.wav"
    recording.write_bytes(_hummed_wav())
    page.goto(url)
    page.get_by_text("Upload a melody to begin").wait_for()
    page.get_by_text("Hum or sing").click()
    page.get_by_text("or upload a recording").wait_for()  # the recording uploader has replaced the file uploader
    page.locator("input[type=file]").set_input_files(str(recording))
    page.get_by_text("5 notes").first.wait_for()  # transcribed, shown as the prime with its roll and audio
    page.locator(".js-plotly-plot").first.wait_for()
    tempo = page.get_by_role("spinbutton", name="Tempo of the recording (bpm)")
    assert 115 <= float(tempo.input_value()) <= 125  # estimated from the onsets
    page.get_by_role("button", name="Generate").click()
    page.get_by_text("Take 1").first.wait_for()


def test_harmonize_shows_four_voices_plays_and_regenerates_bars(server: tuple[str, str], page, tmp_path: Path) -> None:
    url, _ = server
    melody = tmp_path / "hymn.mid"
    pitches = [67, 67, 69, 71, 71, 69, 67, 66, 64, 64, 66, 67, 67, 66, 66, 66]
    notes = tuple(Note(p, float(i), 1.0) for i, p in enumerate(pitches))
    melody.write_bytes(piece_to_midi(Piece((Part("Melody", notes, program=73),), tempo_bpm=90)))

    page.goto(url)
    page.get_by_role("link", name="Harmonize").click()
    page.locator("input[type=file]").first.set_input_files(str(melody))
    page.get_by_role("button", name="Harmonize", exact=True).click()
    page.wait_for_function("() => document.querySelector('.js-plotly-plot')?.data?.length > 0")
    traces = page.evaluate("() => document.querySelector('.js-plotly-plot').data.map(t => t.name)")
    assert {"Soprano", "Alto", "Tenor", "Bass"} <= set(traces)  # one trace (one colour) per voice
    page.locator(".musegen-notation img").first.wait_for()
    audio = page.locator("audio").first
    audio.wait_for(state="attached")
    source = audio.get_attribute("src")
    response = page.request.get(source if source.startswith("http") else f"{url}{source}")
    assert response.ok and response.body()[:4] == b"RIFF" and len(response.body()) > 44_100
    played = audio.evaluate(
        "a => { a.muted = true; return a.play().then(() => new Promise(r => setTimeout(() => r(a.currentTime), 600))) }"
    )
    assert played > 0.1
    notes_drawn = "() => JSON.stringify(document.querySelector('.js-plotly-plot').data.map(t => [t.name, t.x, t.y]))"
    before = page.evaluate(notes_drawn)
    page.get_by_role("button", name="Regenerate bars 1–2").click()
    page.wait_for_function(f"before => ({notes_drawn})() !== before", arg=before)  # the roll shows the new bars
    assert not page.get_by_text("Traceback").count()
    if os.environ.get("MUSEGEN_SCREENSHOTS"):
        page.screenshot(path=os.path.join(os.environ["MUSEGEN_SCREENSHOTS"], "harmonize.png"), full_page=True)
