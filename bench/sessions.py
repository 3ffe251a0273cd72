"""Many sessions on one server: a class of students generating and rating at the same time.

Starts `streamlit run app.py` (a fresh SQLite store in a temporary folder) and drives `--sessions` real browser
sessions (Playwright contexts in one Debian Chromium, never `playwright install`) for `--minutes`. Each session uploads
its own melody (a different length per session, so its note count identifies it), then loops: a new seed, Generate
an 8-bar take (the default), listen (`--think-seconds`, 10 s on average: an 8-bar take at 100 bpm lasts 19 s), give
it stars, Save rating, pause again. `--think-seconds 0` is a stress test instead of a class. Measured:

- rating submit: click on the enabled "Save rating" → the "rating #… saved" line is on screen (p50/p95/max, ms;
  target p95 < 300); the star click before it, which enables the button, is not counted. Timed by the server
  (`bench/server_clock.py`: the rerun request taken off the websocket → the answer handed to it: what the server
  adds, whatever the client's machine), by the tab's websocket as Chromium's DevTools report it, by the page itself
  (the timestamp of the button's pointerdown → a MutationObserver sees the line in the DOM: what the student waits
  for) and by the driver (Playwright's click, with its actionability checks and round trips to the browser, → the
  page's observer answering it: that plus the harness's own overhead). With every tab on the server's two cores, the
  browser-side times include each starved tab's own delays;
- generate: click on "Generate" → the take's heading is on screen (p50/p95);
- a heavy upload: halfway through, one extra session uploads a large MusicXML file; the others' submit latencies while
  it is being read are reported separately;
- leakage: every session's page must show its own melody's note count, and every stored rating must name the
  session's own file (`prime_name`) — any mismatch is counted;
- memory: resident memory of the server and of its worker processes (reading, rendering, generating: a fixed number
  per pool, `MUSEGEN_WORKERS`), each reported, when started, after one warm-up session's first take (models,
  SoundFont and music21 loaded), once every session has a take, and at the end; growth per session = (every session −
  warm, both summed) / sessions. Models and SoundFonts are loaded once per process that uses them and shared by every
  session, so per-session growth is session state (takes, uploads), not model copies;
- the server's own log: its output is kept, and its tracebacks and error or warning lines are counted and quoted in
  the result (`server_log`), so that a session error can be matched with what the server said.

    .venv/bin/python bench/sessions.py [--sessions 30] [--minutes 3]

Prints Markdown tables and writes bench/results/sessions.json. On the 2-core development machine the browser's tabs
and the server share two cores; by default the browser runs at nice 19 (`--browser-nice`), so the server gets the CPU
first, as it would with the students' browsers on their own machines; `--browser-nice 0` is the worst case. Starved
that way, 30 tabs turn the server's answers into pixels slowly, so the last `--observers` sessions (default 3) run in
a second browser that is not niced: their page times are what a student whose browser has CPU waits for while the
server carries all 30 sessions.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import datetime
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from server_clock import KINDS, SAVED, read_times  # noqa: E402  (a sibling bench script: bench/ is on sys.path)

from musegen_core.feedback import FeedbackStore  # noqa: E402
from musegen_core.formats.midi import piece_to_midi  # noqa: E402
from musegen_core.formats.musicxml import piece_to_musicxml  # noqa: E402
from musegen_core.music import Note, Part, Piece  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "sessions.json"
CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--mute-audio"]
TIMEOUT_MS = 300_000
# Installed in the page before a Save click: window.__musegenSaved, a promise of the milliseconds from the next
# pointerdown (its event's timestamp) to a "saved." alert in the DOM. (From the release instead — the click event,
# which the button acts on — it is the same to 0.1 ms: Playwright's press and release follow each other at once.)
# The driver awaits the promise instead of a text locator: Playwright waits for text by querying every element's
# text again at each animation frame, on the tab's main thread — ~35 ms of it per submit on this page, competing
# with the page's own work for the time being measured.
PAGE_TIMER = """() => {
  let pressed = null;
  document.addEventListener("pointerdown", (event) => { pressed = event.timeStamp; }, { capture: true, once: true });
  window.__musegenSaved = new Promise((resolve) => {
    const observer = new MutationObserver(() => {
      const alerts = document.querySelectorAll("[data-testid='stAlert']");
      if (pressed !== null && [...alerts].some((alert) => alert.textContent.includes("saved."))) {
        observer.disconnect();
        resolve(performance.now() - pressed);
      }
    });
    observer.observe(document.body, { childList: true, subtree: true, characterData: true });
  });
}"""
SERVER_TIMES = "server-times.jsonl"  # what bench/server_clock.py writes in the run's folder
SERVER_LOG = "server.log"  # the server's output


class WireClock:
    """The page's websocket traffic as Chromium timestamps it (DevTools protocol): from the first frame the page
    sends after `arm()` (the Save click's rerun request) to the first frame it receives holding "saved." — the
    server's answer time plus the loopback, without the time a tab takes to turn the click into a message and the
    answer into pixels. Chromium reports websocket frames from the tab's renderer, so a CPU-starved tab still adds
    the time it takes to notice a frame; `bench/server_clock.py` times the server alone."""

    def __init__(self) -> None:
        self.armed = False
        self.sent: float | None = None
        self.ms: float | None = None

    async def attach(self, context, page) -> None:
        session = await context.new_cdp_session(page)
        await session.send("Network.enable")
        session.on("Network.webSocketFrameSent", self._sent)
        session.on("Network.webSocketFrameReceived", self._received)

    def arm(self) -> None:
        self.armed, self.sent, self.ms = True, None, None

    def _sent(self, event: dict) -> None:
        if self.armed and self.sent is None:
            self.sent = event["timestamp"]

    def _received(self, event: dict) -> None:
        if self.sent is None or self.ms is not None:
            return
        frame = event["response"]
        payload = frame["payloadData"]
        data = base64.b64decode(payload) if frame.get("opcode") == 2 else payload.encode()
        if SAVED in data:
            self.ms, self.armed = (event["timestamp"] - self.sent) * 1000, False


HEAVY_NOTES = 8_000  # the heavy upload: a long legal MusicXML melody (music21 needs several seconds for it)


def melody(notes: int) -> Piece:
    """A D-major line of `notes` eighth notes (the note count tells sessions apart)."""
    scale = [62, 64, 66, 67, 69, 71, 73, 74]
    return Piece((Part("Whistle", tuple(Note(scale[i % 8], i * 0.5, 0.5) for i in range(notes)), 78),), 100)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(folder: Path) -> tuple[subprocess.Popen, str, str]:
    db_url = f"sqlite:///{folder / 'ratings.sqlite3'}"
    port = free_port()
    env = {**os.environ, "MUSEGEN_DB_URL": db_url, "MUSEGEN_USER_MODELS_DIR": str(folder / "models")}
    clock = [str(ROOT / "bench" / "server_clock.py"), str(folder / SERVER_TIMES)]  # `streamlit run`, timing submits
    command = [sys.executable, *clock, "run", "app.py", "--server.port", str(port), "--server.headless=true"]
    with (folder / SERVER_LOG).open("wb") as log:  # the child keeps its own copy of the file
        server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://localhost:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2):
                return server, url, db_url
        except OSError:
            time.sleep(0.3)
    server.kill()
    raise TimeoutError("streamlit did not start")


def rss_mb(pid: int) -> float:
    """Resident memory of a process, MB (from /proc); 0 for one that has ended."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return 0.0
    return next((int(line.split()[1]) / 1024 for line in lines if line.startswith("VmRSS:")), 0.0)


def descendants(pid: int) -> list[int]:
    """Every process started by `pid`, and by those (the server's worker processes), from /proc."""
    children = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            children += [int(child) for child in (task / "children").read_text().split()]
    return [grandchild for child in children for grandchild in (child, *descendants(child))]


def memory_mb(pid: int) -> tuple[float, float]:
    """(server, its worker processes): resident memory in MB."""
    return rss_mb(pid), sum(map(rss_mb, descendants(pid)))


class Session:
    """One student: their own melody file, and the latencies they saw."""

    def __init__(self, number: int, folder: Path, think_s: float = 0.0, observer: bool = False) -> None:
        self.number = number
        self.observer = observer  # in the browser that is not niced (`--observers`)
        self.think_s = think_s
        self.random = random.Random(number)
        self.notes = 12 + number  # unique per session
        self.file = folder / f"student-{number:02d}.mid"
        self.file.write_bytes(piece_to_midi(melody(self.notes)))
        self.submits: list[tuple[float, float]] = []  # (when, ms) as the driver times it
        self.submits_in_page: list[tuple[float, float]] = []  # (when, ms) as the page times it
        self.submits_on_wire: list[tuple[float, float]] = []  # (when, ms) as the browser's network stack times it
        self.wire = WireClock()
        self.generates: list[float] = []
        self.leaks = 0
        self.errors: list[str] = []

    async def open(self, context, url: str) -> object:
        page = await context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        await self.wire.attach(context, page)
        await page.goto(url)
        await page.get_by_text("Upload a melody to begin").wait_for()
        await page.locator("input[type=file]").set_input_files(str(self.file))
        await page.get_by_text(f"{self.notes} notes").first.wait_for()
        return page

    async def one_round(self, page, round_number: int) -> None:
        seed = page.get_by_role("spinbutton", name="Seed")
        await seed.fill(str(round_number + 1))  # a new take each round (rating the same take again replaces it)
        started = time.perf_counter()
        await page.get_by_role("button", name="Generate").click()
        await page.get_by_text(f"Take {round_number + 1} —").first.wait_for()
        self.generates.append((time.perf_counter() - started) * 1000)
        if not await page.get_by_text(f"{self.notes} notes").count():
            self.leaks += 1
        await self.think()  # listens to the take before rating it
        stars = page.locator("[data-testid='stFeedback'] button, [data-testid='stButtonGroup'] button")
        await stars.nth(3).click()
        save = page.get_by_role("button", name="Save rating")
        await save.and_(page.locator(":enabled")).wait_for()  # the star click's own rerun has enabled it
        await page.evaluate(PAGE_TIMER)
        self.wire.arm()
        started = time.perf_counter()
        await save.click()
        in_page = await self.saved_after_click(page)
        when = time.time()
        self.submits.append((when, (time.perf_counter() - started) * 1000))
        self.submits_in_page.append((when, in_page))
        if self.wire.ms is not None:
            self.submits_on_wire.append((when, self.wire.ms))
        await self.think()  # changes a control or two before the next take

    async def saved_after_click(self, page) -> float:
        """The page timer's milliseconds, once the "saved." line is in the page (see `PAGE_TIMER`)."""
        try:
            return await asyncio.wait_for(page.evaluate("window.__musegenSaved"), TIMEOUT_MS / 1000)
        except TimeoutError:
            shown = await page.get_by_text("saved.").count()
            raise TimeoutError(f"the page timer saw no 'saved.' line ({shown} on the page)") from None

    async def think(self) -> None:
        """A student's pause: `think_s` on average (uniformly 0.5–1.5 times it), none when it is 0."""
        if self.think_s:
            await asyncio.sleep(self.think_s * self.random.uniform(0.5, 1.5))

    async def run(self, context, url: str, until: float) -> None:
        try:
            page = await self.open(context, url)
            rounds = 0
            while time.time() < until:
                await self.one_round(page, rounds)
                rounds += 1
        except Exception as error:  # a session that breaks is counted, not fatal to the bench
            lines = str(error).splitlines() or [""]  # Playwright names what it waited for in a later line
            waited = next((line.strip() for line in lines if "waiting for" in line), "")
            self.errors.append(f"{type(error).__name__}: {lines[0][:200]} {waited[:200]}".rstrip())


async def heavy_upload(context, url: str, folder: Path, delay_s: float) -> tuple[float, float]:
    """Upload a large MusicXML file after `delay_s`; returns (start, end) wall times of reading it."""
    await asyncio.sleep(delay_s)
    path = folder / "heavy.musicxml"
    path.write_bytes(piece_to_musicxml(melody(HEAVY_NOTES)))
    page = await context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    await page.goto(url)
    await page.get_by_text("Upload a melody to begin").wait_for()
    start = time.time()
    await page.locator("input[type=file]").set_input_files(str(path))
    await page.get_by_text(f"{HEAVY_NOTES} notes").first.or_(page.locator("[data-testid='stAlert']")).first.wait_for()
    return start, time.time()


def percentiles(values: list[float]) -> dict:
    if not values:
        return {"count": 0}
    ordered = sorted(values)
    pick = lambda q: ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]  # noqa: E731
    return {"count": len(values), "p50": pick(0.5), "p95": pick(0.95), "max": ordered[-1],
            "mean": statistics.fmean(values)}  # fmt: skip


async def drive(args: argparse.Namespace, url: str, folder: Path, server_pid: int) -> dict:
    from playwright.async_api import async_playwright

    observers = range(args.sessions - args.observers, args.sessions)
    sessions = [Session(i, folder, args.think_seconds, i in observers) for i in range(args.sessions)]
    memory = {"before_mb": memory_mb(server_pid)}
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=browser_command(folder, args.browser_nice), headless=True, args=FLAGS
        )
        unniced = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        warm_up = Session(99, folder)  # loads the model, SoundFont and music21 once, before the class arrives
        await warm_up.one_round(await warm_up.open(await browser.new_context(), url), 0)
        memory["warm_mb"] = memory_mb(server_pid)
        class_starts = time.time()
        contexts = [
            await (unniced if s.observer else browser).new_context(viewport={"width": 1200, "height": 900})
            for s in sessions
        ]
        until = time.time() + 60 * args.minutes
        runs = [asyncio.create_task(s.run(c, url, until)) for s, c in zip(sessions, contexts, strict=True)]
        heavy = asyncio.create_task(heavy_upload(await browser.new_context(), url, folder, 30 * args.minutes))
        while not all(s.submits or s.errors for s in sessions) and time.time() < until:
            await asyncio.sleep(1)
        memory["all_sessions_mb"] = memory_mb(server_pid)
        arrived = time.time()  # every session has rated once: the class has arrived
        await asyncio.gather(*runs)
        heavy_window = await heavy
        memory["end_mb"] = memory_mb(server_pid)
        await browser.close()
        await unniced.close()
    server_times = {
        kind: [(when, ms) for when, ms in read_times(folder / SERVER_TIMES, kind) if when > class_starts]
        for kind in KINDS
    }
    return summarise(sessions, server_times, memory, heavy_window, arrived)


def browser_command(folder: Path, nice: int) -> str:
    """Chromium, or a wrapper that starts it (and so every tab process) at `nice`: the students' browsers then take
    only the CPU the server leaves, as if each ran on their own laptop.

    Nice alone does not do that here: Playwright starts the browser in a session of its own (setsid), and with the
    kernel's autogroup scheduling (`/proc/sys/kernel/sched_autogroup_enabled`) each session is a group that gets
    an equal share of the CPU whatever its processes' nice values — and Chromium, run as root, raises some of its
    threads to nice −8 inside its group. So the wrapper sets its new group's nice (`/proc/self/autogroup`) too."""
    if not nice:
        return CHROMIUM
    wrapper = folder / "chromium-niced"
    group = f"echo {nice} > /proc/self/autogroup 2>/dev/null"  # absent without autogroup scheduling: then nice suffices
    wrapper.write_text(f'#!/bin/sh\n{group}\nexec nice -n {nice} {CHROMIUM} "$@"\n')
    wrapper.chmod(0o755)
    return str(wrapper)


@contextlib.contextmanager
def browsers_temp(parent: str):
    """Browsers started inside keep their temporary files (profiles, blobs paged out of memory: the WAVs their
    players fetch) in a new folder under `parent`, removed afterwards; "" keeps the system's temporary folder.

    With `--browser-temp /dev/shm` (the default, a memory file system) they do not write on the server's disk, as
    the students' browsers on their own machines would not: 30 tabs here write ~1 GB to it in a 6-minute run, and
    every database commit's fsync then waits behind their writes (ext4 flushes them in the same journal commit)."""
    if not parent:
        yield
        return
    with (
        tempfile.TemporaryDirectory(prefix="musegen-browsers-", dir=parent) as temporary,
        mock.patch.dict(os.environ, {"TMPDIR": temporary}),  # read by Playwright's driver and the browsers it starts
    ):
        yield


def memory_growth(memory: dict, sessions: int) -> dict:
    """The server's growth per session from warm to every session having a take (session state: takes, uploads),
    and the workers' growth over the same time: pools filling up to `MUSEGEN_WORKERS` each, a fixed cost whatever
    the number of sessions, so not divided by it."""
    (server_warm, workers_warm), (server_all, workers_all) = memory["warm_mb"], memory["all_sessions_mb"]
    return {
        "growth_per_session_mb": (server_all - server_warm) / sessions,
        "workers_growth_mb": workers_all - workers_warm,
    }


def summarise(
    sessions: list[Session],
    server_times: dict[str, list[tuple[float, float]]],
    memory: dict,
    heavy: tuple[float, float],
    arrived: float,
) -> dict:
    """Percentiles over the whole run, and over the submits after `arrived` (every session had rated once: after
    the class's arrival, when 30 tabs load the app and make their first take at once). `server_times`: (when, ms)
    of each submit and take as the server timed them (`bench/server_clock.py`), by kind."""
    submits = [ms for s in sessions for _, ms in s.submits]
    if submits and not server_times["submit"]:
        raise SystemExit("bench/server_clock.py timed no submit: its hooks no longer match Streamlit's internals")
    during = [ms for s in sessions for when, ms in s.submits if heavy[0] <= when <= heavy[1] + 1]
    memory.update(memory_growth(memory, len(sessions)))
    timings = {
        "submit_server_ms": server_times["submit"],
        "generate_server_ms": server_times["take"],
        "store_write_ms": server_times["store"],
        "submit_ms": [when_ms for s in sessions for when_ms in s.submits],
        "submit_in_page_ms": [when_ms for s in sessions for when_ms in s.submits_in_page],
        "submit_in_page_ms_observers": [when_ms for s in sessions if s.observer for when_ms in s.submits_in_page],
        "submit_on_wire_ms": [when_ms for s in sessions for when_ms in s.submits_on_wire],
    }
    return {
        "sessions": len(sessions),
        "ratings_submitted": len(submits),
        **{name: percentiles([ms for _, ms in values]) for name, values in timings.items()},
        "after_arrival": {
            name: percentiles([ms for when, ms in values if when > arrived]) for name, values in timings.items()
        },
        "submit_ms_during_heavy_upload": percentiles(during),
        "heavy_upload_seconds": round(heavy[1] - heavy[0], 2),
        "generate_ms": percentiles([ms for s in sessions for ms in s.generates]),
        "page_leaks": sum(s.leaks for s in sessions),
        "session_errors": [e for s in sessions for e in s.errors],
        "memory": memory,
    }


def stored_leaks(db_url: str, sessions: int) -> dict:
    """Ratings in the store, and how many name another session's file than their rater's."""
    ratings = FeedbackStore(db_url).recent(limit=1_000_000)
    by_file: dict[str, int] = {}
    for rating in ratings:
        by_file[rating.prime_name] = by_file.get(rating.prime_name, 0) + 1
    expected = {f"student-{i:02d}.mid" for i in [*range(sessions), 99]}  # 99: the warm-up session
    return {"ratings_stored": len(ratings), "files_rated": len(by_file),
            "ratings_naming_unknown_files": sum(n for f, n in by_file.items() if f not in expected)}  # fmt: skip


def server_log_problems(path: Path, keep: int = 40) -> dict:
    """How many tracebacks and error or warning lines the server logged, and the first `keep` such lines: a session
    error or a lost rating can then be matched with what the server said."""
    lines = path.read_text(errors="replace").splitlines() if path.exists() else []
    flagged = [line for line in lines if any(word in line for word in ("Traceback", "ERROR", "WARNING", "Error"))]
    return {"tracebacks": sum("Traceback" in line for line in lines), "flagged": len(flagged), "first": flagged[:keep]}


def markdown(result: dict) -> str:
    rows = [
        ("rating submit, timed by the server (request in → answer out)", result["submit_server_ms"]),
        ("… by the server, once every session has rated once", result["after_arrival"]["submit_server_ms"]),
        ("… of which the database write (commit and fsync)", result["store_write_ms"]),
        ("rating submit, timed on the wire (the tab's websocket)", result["submit_on_wire_ms"]),
        ("rating submit, timed by the page", result["submit_in_page_ms"]),
        ("… by the page, in the observers' unniced browser", result["submit_in_page_ms_observers"]),
        ("… on the wire, once every session has rated once", result["after_arrival"]["submit_on_wire_ms"]),
        ("… by the page, once every session has rated once", result["after_arrival"]["submit_in_page_ms"]),
        (
            "… by the page, observers, once every session has rated once",
            result["after_arrival"]["submit_in_page_ms_observers"],
        ),
        ("rating submit, timed by the driver", result["submit_ms"]),
        ("… while a heavy file is read", result["submit_ms_during_heavy_upload"]),
        ("generate (8-bar take, to screen)", result["generate_ms"]),
        ("generate, timed by the server (request in → the take's heading out)", result["generate_server_ms"]),
        ("… by the server, once every session has rated once", result["after_arrival"]["generate_server_ms"]),
    ]
    lines = ["| what | n | p50 ms | p95 ms | max ms |", "|---|---:|---:|---:|---:|"]
    for name, p in rows:
        if p["count"]:
            lines.append(f"| {name} | {p['count']} | {p['p50']:.0f} | {p['p95']:.0f} | {p['max']:.0f} |")
    m = result["memory"]
    lines += [
        "",
        f"sessions {result['sessions']}, ratings submitted {result['ratings_submitted']}, stored "
        f"{result['store']['ratings_stored']}, page leaks {result['page_leaks']}, stored ratings naming another "
        f"file {result['store']['ratings_naming_unknown_files']}, session errors {len(result['session_errors'])}; "
        f"server log: {result['server_log']['tracebacks']} tracebacks, {result['server_log']['flagged']} error or "
        "warning lines; "
        f"heavy upload read in {result['heavy_upload_seconds']} s; memory, server + its workers: "
        f"{_mb(m['before_mb'])} (started) → {_mb(m['warm_mb'])} (one session warm) → {_mb(m['all_sessions_mb'])} "
        f"(every session has a take) → {_mb(m['end_mb'])} MB (end): {m['growth_per_session_mb']:.1f} MB per "
        f"session (server), workers +{m['workers_growth_mb']:.0f} MB (pools filling)",
    ]
    return "\n".join(lines)


def _mb(server_and_workers: list[float]) -> str:
    server, workers = server_and_workers
    return f"{server:.0f} + {workers:.0f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=30)
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument(
        "--browser-nice",
        type=int,
        default=19,
        help="run the browser at this niceness (0: compete with the server as equals; default 19: as if on "
        "the students' own machines)",
    )
    parser.add_argument(
        "--think-seconds",
        type=float,
        default=10.0,
        help="a student's average pause after a take (listening) and after a rating (default 10; 0: a stress test, "
        "every session clicking as fast as the page answers)",
    )
    parser.add_argument(
        "--observers",
        type=int,
        default=3,
        help="sessions (counted in --sessions) whose tabs run in a second, unniced browser: students whose browser "
        "is not starved of CPU by the other tabs, so their page times show what the server's load costs a student",
    )
    parser.add_argument(
        "--browser-temp",
        default="/dev/shm",
        help="where the browsers keep their temporary files (default /dev/shm: in memory, off the server's disk, as "
        "on the students' own machines; \"\": the system's temporary folder, on the server's disk)",
    )
    parser.add_argument("--json", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if not 0 <= args.observers <= args.sessions:
        parser.error("--observers must be between 0 and --sessions")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="musegen-sessions-") as temporary:
        folder = Path(temporary)
        server, url, db_url = start_server(folder)
        try:
            with browsers_temp(args.browser_temp):  # the server has started: its temporary files stay on its disk
                result = asyncio.run(drive(args, url, folder, server.pid))
        finally:
            server.terminate()
            server.wait(timeout=30)
        result["store"] = stored_leaks(db_url, args.sessions)
        result["server_log"] = server_log_problems(folder / SERVER_LOG)
    result["created"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    result["minutes"] = args.minutes
    result["browser_nice"] = args.browser_nice
    result["think_seconds"] = args.think_seconds
    result["observers"] = args.observers
    result["browser_temp"] = args.browser_temp
    result["seconds"] = round(time.perf_counter() - started, 1)
    result["cpus"] = os.cpu_count()
    print(markdown(result))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
