"""`streamlit run`, timing the rating submit inside the server: a bench-only wrapper for `bench/sessions.py`.

    .venv/bin/python bench/server_clock.py TIMES.jsonl run app.py [streamlit options]

Starts Streamlit exactly as `python -m streamlit` would, with read-only hooks: the moment the server's event loop
takes a session's rerun request off its websocket (`Runtime.handle_backmsg`), and the moment a message answering it
has been handed to that websocket (`starlette.websockets.WebSocket.send_bytes`). Two answers are timed — the
server's own time for them: queueing for the interpreter lock and the CPU, the rerun, worker round trips, the
database write, the message out — and go to TIMES.jsonl, one `{"kind", "when": unix time, "ms"}` line each:

- "submit": the message holding "saved." (the save click's rerun request is the last one before it: the star
  click's rerun has answered by then, it is what enables the button);
- "take": the message holding a take's heading ("Take 3 — …"), after the Generate click's rerun request (in
  `bench/sessions.py` no other full rerun follows a take before the next Generate).

A third hook times the database write inside a submit (`FeedbackStore.add`, the commit's fsync included): "store".

Timing in the browser cannot separate this from the client's own delays here: with 30 tabs on the server's two
cores, a tab learns of a frame only when its starved renderer gets to it (Chromium reports websocket frames from
the renderer). The hooks lean on internals of the pinned Streamlit and Starlette (the session client's `_websocket`);
if those change, no line is written, and `bench/sessions.py` stops with an error rather than report nothing.
"""

from __future__ import annotations

import json
import re
import sys
import threading
import time
from pathlib import Path

from starlette.websockets import WebSocket
from streamlit.runtime.runtime import Runtime
from streamlit.web import cli

from musegen_core.feedback.store import FeedbackStore

SAVED = b"saved."  # in the ForwardMsg (protobuf) that puts "rating #… saved." on the page
# A take's heading is the title of its piano roll: in plotly's JSON, the dash may be escaped.
ANSWERS = {"submit": re.compile(re.escape(SAVED)), "take": re.compile(rb"Take \d+ (?:\xe2\x80\x94|\\u2014)")}
KINDS = (*ANSWERS, "store")  # what TIMES.jsonl lines can be


def install(times: Path) -> None:
    """Wrap the three methods so each answer's server time, and each database write's, is appended to `times`."""
    out = times.open("a", buffering=1)
    lock = threading.Lock()  # lines come from the event loop (answers) and from script threads (database writes)
    asked: dict[int, float] = {}  # id(websocket) → monotonic time of its latest rerun request
    handle_backmsg, send_bytes, add = Runtime.handle_backmsg, WebSocket.send_bytes, FeedbackStore.add

    def write(kind: str, ms: float) -> None:
        line = json.dumps({"kind": kind, "when": time.time(), "ms": round(ms, 2)}) + "\n"
        with lock:
            out.write(line)

    def timed_handle_backmsg(self, session_id, msg, *, client=None):
        websocket = getattr(client, "_websocket", None)
        if websocket is not None and msg.WhichOneof("type") == "rerun_script":
            asked[id(websocket)] = time.monotonic()
        return handle_backmsg(self, session_id, msg, client=client)

    async def timed_send_bytes(self, data: bytes) -> None:
        await send_bytes(self, data)
        kind = next((kind for kind, marker in ANSWERS.items() if marker.search(data)), None)
        if kind is not None and id(self) in asked:
            write(kind, (time.monotonic() - asked.pop(id(self))) * 1000)

    def timed_add(self, rating):
        started = time.monotonic()
        try:
            return add(self, rating)
        finally:
            write("store", (time.monotonic() - started) * 1000)

    Runtime.handle_backmsg = timed_handle_backmsg
    WebSocket.send_bytes = timed_send_bytes
    FeedbackStore.add = timed_add


def read_times(times: Path, kind: str) -> list[tuple[float, float]]:
    """(when, ms) of every answer of `kind` in a TIMES.jsonl file (none if the server wrote none)."""
    if not times.exists():
        return []
    rows = [json.loads(line) for line in times.read_text().splitlines() if line.strip()]
    return [(row["when"], row["ms"]) for row in rows if row["kind"] == kind]


if __name__ == "__main__":
    install(Path(sys.argv[1]))
    sys.argv = ["streamlit", *sys.argv[2:]]
    cli.main(prog_name="streamlit")
