"""The one UI-support module: cached shared resources, typed session state and error display for the pages.

Nothing else in `musegen_core` imports Streamlit. Resources from `st.cache_resource` are shared by every
session of the server: the store and the models are thread-safe (see their modules); renders are cached per
(piece, settings) by `render.audio` itself.
"""

from __future__ import annotations

import base64
import functools
import logging
import secrets
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import streamlit as st

from musegen_core import admin
from musegen_core.analysis import compare
from musegen_core.compare import Pair, Prime, builtin_primes, make_pair, pair_spec
from musegen_core.controls import Controls, controls_from_strings, key_of
from musegen_core.errors import MusegenError, StoreError
from musegen_core.feedback import FeedbackStore
from musegen_core.feedback.store import check_rater, default_db_url, is_anonymous_rater, new_anonymous_rater_id
from musegen_core.formats import UPLOAD_EXTENSIONS, MusicFile, default_melody_part, describe_part, piece_to_midi
from musegen_core.formats.abc import AbcTune
from musegen_core.formats.typed import MAX_TYPED_CHARS, SYNTAX_HELP, Syntax, parse_typed
from musegen_core.gallery import BUILTIN_FILE, Gallery, builtin_data, gallery_of
from musegen_core.harmony.service import harmonize_melody
from musegen_core.models.registry import ModelInfo, list_models, load_model, model_folder, promoted
from musegen_core.music import Piece
from musegen_core.render import pianoroll
from musegen_core.render.analysis_plots import analysis_figure
from musegen_core.render.audio import RenderSettings, render
from musegen_core.render.notation import Engraving
from musegen_core.render.soundfonts import installed_soundfonts, user_soundfont_file, user_soundfonts_allowed
from musegen_core.studio import Download, LatentTakes, Take, downloads, takes_archive
from musegen_core.transcribe import (
    DEFAULT_GRID,
    GRIDS,
    MAX_SECONDS,
    TEMPO_RANGE_BPM,
    TRACKER_RATE,
    Transcription,
    requantise,
)
from musegen_core.workers import (
    engrave_isolated,
    load_untrusted,
    open_untrusted,
    style_takes_isolated,
    transcribe_untrusted,
)

log = logging.getLogger("musegen.ui")
UPLOAD, HUM, TYPE, BUILT_IN = "Upload a file", "Hum or sing", "Type it", "Built-in tunes"
RECORDING_TYPES = ["wav", "flac", "ogg", "opus", "mp3"]
GRID_NAMES = {4: "sixteenths", 2: "eighths", 1: "quarters", 3: "triplet eighths", 6: "triplet sixteenths", 8: "32nds"}
TYPED_FILE = "typed melody.mid"
TYPED_SYNTAXES: dict[str, Syntax] = {"Recognise it": "auto", "Note names": "notes", "ABC": "abc"}


def feedback_store() -> FeedbackStore:
    """The store for the configured database URL (`MUSEGEN_DB_URL`), one engine per URL per process."""
    return _store_for(default_db_url())


@st.cache_resource(show_spinner=False)
def _store_for(url: str) -> FeedbackStore:
    return FeedbackStore(url)


@st.cache_resource(show_spinner="Loading model…")
def model(name: str) -> Any:
    return load_model(name)


@st.cache_data(show_spinner=False, ttl=60)
def models() -> list[ModelInfo]:
    return list_models()


@st.cache_data(show_spinner="Reading the file…", max_entries=32)
def music_file(data: bytes, filename: str) -> MusicFile:
    """The uploaded file's format and tunes, read in a worker process (`workers`: time and memory limits)."""
    return open_untrusted(data, filename)


@st.cache_data(show_spinner="Reading the tune…", max_entries=32)
def load_tune(data: bytes, filename: str, tune_index: int) -> Piece:
    """One tune of the uploaded file, parsed in a worker process (`workers`: time and memory limits)."""
    return load_untrusted(data, filename, tune_index)


@st.cache_data(show_spinner="Continuing the melody in every style…", max_entries=16)
def gallery(
    data: bytes, filename: str, tune_index: int, part_index: int, model_name: str, bars: int, seed: int
) -> Gallery:
    """The Style Gallery of one tune, its takes made in a generating worker (`workers.style_takes_isolated`), cached
    per (file, tune, part, model, bars, seed): reruns are instant."""
    prime = load_tune(data, filename, tune_index)
    takes = style_takes_isolated(model_folder(model_name), prime, part_index=part_index, bars=bars, seed=seed)
    return gallery_of(takes, bars, seed)


@st.cache_data(show_spinner="Harmonizing…", max_entries=32)
def harmonized(data: bytes, filename: str, tune_index: int, part_index: int, idiom: str, seed: int) -> Piece:
    """One tune's melody with its accompaniment (`harmony.service.harmonize_melody`), cached per choice."""
    return harmonize_melody(load_tune(data, filename, tune_index), idiom, seed=seed, part_index=part_index)


def melody_source(default: str = UPLOAD, key: str = "a") -> tuple[bytes, str] | None:
    """Where the melody comes from — an uploaded file, typed text or the built-in tunes — as (file bytes, file name)
    for `choose_melody`; None until there is one. `key` keeps two pickers on one page apart.

    Raises:
        FormatError: the typed text cannot be read (the message names the bad token).
    """
    sources = [UPLOAD, HUM, TYPE, BUILT_IN]
    source = st.radio("Melody", sources, index=sources.index(default), horizontal=True, key=f"source-{key}")
    if source == BUILT_IN:
        return builtin_data(), BUILTIN_FILE
    if source == TYPE:
        return _typed_melody(key)
    if source == HUM:
        return _hummed_melody(key)
    upload = st.file_uploader("Melody file (MIDI, MusicXML, ABC)", type=list(UPLOAD_EXTENSIONS), key=f"upload-{key}")
    return None if upload is None else (upload.getvalue(), upload.name)


def _typed_melody(key: str) -> tuple[bytes, str] | None:
    text = st.text_area(
        "Type a melody",
        placeholder="C4q D4q E4q C4q | E4q F4q G4h   or ABC:   DEFG ABcd | e2 d2",
        max_chars=MAX_TYPED_CHARS,
        key=f"typed-{key}",
    )
    syntax = st.radio("Read it as", list(TYPED_SYNTAXES), horizontal=True, key=f"syntax-{key}")
    st.caption(SYNTAX_HELP)
    return (typed_midi(text, TYPED_SYNTAXES[syntax]), TYPED_FILE) if text.strip() else None


def _hummed_melody(key: str) -> tuple[bytes, str] | None:
    """A recording (made here, or uploaded) transcribed, with the tempo and grid the user may correct; as MIDI."""
    recorded = st.audio_input(
        "Record yourself humming, singing or playing", sample_rate=TRACKER_RATE, key=f"record-{key}"
    )  # recorded at the pitch tracker's own rate: nothing to resample
    uploaded = st.file_uploader(
        f"…or upload a recording (at most {MAX_SECONDS:g} s)", type=RECORDING_TYPES, key=f"recording-{key}"
    )
    audio = recorded or uploaded
    if audio is None:
        return None
    heard = transcription(audio.getvalue(), audio.name)
    st.audio(audio.getvalue())
    for warning in heard.warnings:
        st.warning(warning)
    tempo_column, grid_column = st.columns(2)
    estimated = float(round(heard.estimated_tempo_bpm))
    tempo = tempo_column.number_input(
        "Tempo of the recording (bpm)", *TEMPO_RANGE_BPM, estimated, 1.0, key=f"hum-tempo-{key}",
        help=f"Estimated: {heard.estimated_tempo_bpm:.0f} bpm. Halve or double it if the notes come out too short "
        "or too long.",
    )  # fmt: skip
    grid = grid_column.selectbox("Round notes to", GRIDS, GRIDS.index(DEFAULT_GRID), GRID_NAMES.get, key=f"grid-{key}")
    stem = Path(audio.name).stem or "recording"
    return piece_to_midi(requantise(heard, float(tempo), grid)), f"{stem} (transcribed).mid"


@st.cache_data(show_spinner="Listening…", max_entries=8)
def transcription(data: bytes, filename: str) -> Transcription:
    """What `transcribe` hears in a recording, in a listening worker process (time and memory limits)."""
    return transcribe_untrusted(data, filename)


@st.cache_data(show_spinner=False, max_entries=32)
def typed_midi(text: str, syntax: Syntax) -> bytes:
    """A typed melody as MIDI bytes, which the upload path then reads like any file (ABC is parsed in a worker)."""
    return piece_to_midi(parse_typed(text, syntax, read_abc=_abc_in_worker))


def _abc_in_worker(tune: AbcTune) -> Piece:
    return load_untrusted(tune.text.encode("utf-8"), "typed.abc")


def choose_melody(data: bytes, name: str, key: str = "a") -> tuple[Piece, int, int]:
    """Tune and melody-track pickers for an opened file (shown only when there is a choice); returns (piece, tune
    index, part index). `key` keeps two pickers on one page apart."""
    titles = music_file(data, name).tune_titles
    tune = 0
    if len(titles) > 1:
        tune = st.selectbox(
            "Tune", range(len(titles)), format_func=lambda i: f"{i + 1}. {titles[i]}", key=f"tune-{key}"
        )
    piece = load_tune(data, name, tune)
    part = 0
    if len(piece.parts) > 1:
        part = st.selectbox(
            "Melody track",
            range(len(piece.parts)),
            index=default_melody_part(piece),
            format_func=lambda i: describe_part(piece.parts[i]),
            key=f"part-{key}",
        )
    return piece, tune, part


def url_controls() -> Controls:
    """Controls preset by the address bar (`?density=0.5&mood=happy&seed=3`); absurd values are reported once and
    the defaults used instead."""
    try:
        return controls_from_strings({k: v for k, v in st.query_params.to_dict().items() if k != RATER_PARAM})
    except MusegenError as exc:
        st.warning(f"Ignoring the settings in the address: {exc}")
        return Controls()


@contextmanager
def user_errors() -> Iterator[None]:
    """Show a `MusegenError` as a one-line message; anything else as a short apology (traceback in the log)."""
    try:
        yield
    except MusegenError as exc:
        st.error(str(exc))
    except Exception:
        log.exception("unexpected error in a page")
        st.error("Something went wrong on our side; the details are in the server log. Please try again.")


@dataclass
class ComposeState:
    """Typed view of this session's Compose-page state (one key in `st.session_state`)."""

    takes_made: int = 0
    take: Take | None = None
    latent: LatentTakes | None = None  # the last variations or interpolation
    saved_ratings: dict[int, int] = field(default_factory=dict)  # take number → rating id
    history: list[Take] = field(default_factory=list)  # the latest takes (newest last), for comparing them
    prime: Prime | None = None  # the melody uploaded last (its chosen part), offered as a prime on Compare & Rate

    def keep(self, take: Take) -> None:
        """Make `take` the current take and remember it among the last `HISTORY` takes."""
        self.take = take
        self.history = [*self.history, take][-HISTORY:]

    def takes_of(self, source: tuple[str, int, int]) -> list[Take]:
        """The remembered takes of one prime (file, tune, part), oldest first."""
        return [take for take in self.history if take.source == source]


HISTORY = 8  # takes remembered for the comparison


def compose_state() -> ComposeState:
    if "compose" not in st.session_state:
        st.session_state["compose"] = ComposeState()
    return st.session_state["compose"]


# ---------------------------------------------------------------------------------------------------------------
# Rater identity: a chosen name, else an anonymous id for this browser; kept in the session and in the address.

RATER_PARAM = "rater"  # ?rater=… in the address bar: a reload of the same address keeps the rater
_RATER, _ANONYMOUS, _NAME_BOX, _RATER_ERROR = "rater", "rater-anonymous-id", "rater-name", "rater-error"


def rater() -> str:
    """Who is rating in this session: the name chosen in the sidebar, else an anonymous per-browser id
    (`anon-` + 32 hex digits). Taken from the address (`?rater=`) when the session starts, so a reload keeps it,
    and written back there on every run (page switches drop the query string)."""
    current = st.session_state.get(_RATER)
    if current is None:
        current = _rater_from_address() or _anonymous_id()
        st.session_state[_RATER] = current
    if st.query_params.get(RATER_PARAM) != current:
        st.query_params[RATER_PARAM] = current
    return current


def _rater_from_address() -> str | None:
    given = st.query_params.get(RATER_PARAM)
    if not given:
        return None
    try:
        name = check_rater(given)
    except StoreError:
        return None
    if is_anonymous_rater(name):
        st.session_state[_ANONYMOUS] = name
    return name


def _anonymous_id() -> str:
    if _ANONYMOUS not in st.session_state:
        st.session_state[_ANONYMOUS] = new_anonymous_rater_id()
    return st.session_state[_ANONYMOUS]


def _name_typed() -> None:
    """Sidebar callback: the typed name becomes the rater; an empty box goes back to this browser's anonymous id."""
    typed = st.session_state.get(_NAME_BOX) or ""
    st.session_state[_RATER_ERROR] = None
    if not typed.strip():
        st.session_state[_RATER] = _anonymous_id()
        return
    try:
        name = check_rater(typed)
    except StoreError as exc:
        st.session_state[_RATER_ERROR] = str(exc)
        return
    st.session_state[_RATER] = name


def rater_sidebar() -> None:
    """The sidebar box to rate under a chosen name (empty: anonymous)."""
    current = rater()
    if _NAME_BOX not in st.session_state:
        st.session_state[_NAME_BOX] = "" if is_anonymous_rater(current) else current
    st.sidebar.text_input(
        "Your name (optional)", key=_NAME_BOX, on_change=_name_typed, max_chars=100, placeholder="anonymous",
        help="Your ratings and votes are stored under this name; leave it empty to rate anonymously (an id kept "
        "for this browser). The address bar keeps it (?rater=…): reload or bookmark that address to stay you.",
    )  # fmt: skip
    if st.session_state.get(_RATER_ERROR):
        st.sidebar.error(st.session_state[_RATER_ERROR])
    who = "anonymously" if is_anonymous_rater(current) else f"as **{current}**"
    st.sidebar.caption(f"Rating {who}.")


# ---------------------------------------------------------------------------------------------------------------
# Admin: the sidebar unlock and this session's `admin.AdminSession` (the actions check it themselves).

_ADMIN, _SECRET_BOX, _ADMIN_MESSAGE = "admin", "admin-secret", "admin-message"


def admin_session() -> admin.AdminSession:
    """This browser session's admin state (locked until the sidebar's Unlock is given the server's secret)."""
    if _ADMIN not in st.session_state:
        st.session_state[_ADMIN] = admin.AdminSession()
    return st.session_state[_ADMIN]


def admin_unlocked() -> bool:
    """Whether to render admin widgets at all (the actions refuse on their own when the session is locked)."""
    return admin_session().unlocked


def _unlock() -> None:
    """Unlock callback: read the secret typed, clear the box at once, check it; only a verdict stays."""
    typed = st.session_state.get(_SECRET_BOX) or ""
    st.session_state[_SECRET_BOX] = ""
    try:
        ok = admin_session().unlock(typed)
        st.session_state[_ADMIN_MESSAGE] = None if ok else "That is not the admin secret."
    except admin.AdminError as exc:
        st.session_state[_ADMIN_MESSAGE] = str(exc)


def admin_sidebar() -> None:
    """The sidebar's Admin section: why admin is off, the unlock form, or the lock button."""
    state = admin.status()
    session = admin_session()
    with st.sidebar.expander("Admin", icon=":material/admin_panel_settings:", expanded=session.unlocked):
        if state == "off":
            st.caption(
                "Admin actions (fine-tune, promote, roll back, export, delete) are off on this server: no admin "
                f"secret is configured ({admin.SECRET_HASH_ENV}; see the README)."
            )
            return
        if state == "invalid":
            st.warning(
                f"Admin actions are off: {admin.SECRET_HASH_ENV} is set but is not a valid hash. Make one with "
                "`musegen admin hash-secret`."
            )
            return
        if session.unlocked:
            st.success("Admin unlocked for this session.")
            st.button("Lock", key="admin-lock", on_click=session.lock)
            return
        with st.form("admin-unlock-form", border=False):
            st.text_input("Admin secret", key=_SECRET_BOX, type="password", autocomplete="off")
            st.form_submit_button("Unlock", on_click=_unlock)
        if st.session_state.get(_ADMIN_MESSAGE):
            st.error(st.session_state[_ADMIN_MESSAGE])
        st.caption("Fine-tune, promote, roll back, export and delete need the admin secret; everyone can rate.")


_SIDEBAR_DRAWN = "sidebar-drawn"


def sidebar() -> None:
    """What every page shows in the sidebar (app.py calls this on every run): sound, the rater, the admin unlock."""
    _sidebar_boxes()
    st.session_state[_SIDEBAR_DRAWN] = True


def _sidebar_boxes() -> None:
    sound_sidebar()
    rater_sidebar()
    admin_sidebar()


def page_sidebar() -> None:
    """For the top of a page: the sidebar, unless app.py has drawn it in this run.

    Streamlit runs app.py before the page once `st.navigation` has run in the server process. Until then — a
    fresh server whose first visitor opens a page's own address, e.g. /compare — it treats pages/ as the old
    pages-folder app and runs the page alone; AppTest does the same on every rerun. The flag `sidebar` sets is
    taken back here, so the next run without app.py draws the sidebar from the page.
    """
    if not st.session_state.pop(_SIDEBAR_DRAWN, False):
        _sidebar_boxes()


# ---------------------------------------------------------------------------------------------------------------
# Sound: the listener's render settings (sidebar) and the players.

_SOUND = "sound-settings"
AS_WRITTEN = "as in the file"


@st.cache_data(show_spinner=False)
def instrument_names() -> list[str]:
    """General MIDI program names, 0–127."""
    from pretty_midi import program_to_instrument_name

    return [program_to_instrument_name(program) for program in range(128)]


def sound_settings() -> RenderSettings:
    """The render settings this session chose in the sidebar's Sound box (defaults before it is drawn)."""
    return st.session_state.get(_SOUND, RenderSettings())


def sound_sidebar() -> None:
    """SoundFont, instrument, reverb and loudness for every player on the page; stored for `sound_settings`."""
    fonts = {font.label: font.id for font in installed_soundfonts()}
    names = instrument_names()
    with st.sidebar.expander("Sound", expanded=False):
        font = st.selectbox("SoundFont", list(fonts), key="sound-font", help=_SOUNDFONT_HELP)
        instrument = st.selectbox(
            "Instrument", [AS_WRITTEN, *names], key="sound-instrument", help="General MIDI instrument of every part."
        )
        effects = st.toggle("Reverb and chorus", key="sound-effects", help="A medium room; drier and faster when off.")
        normalize = st.toggle("Even loudness", value=True, key="sound-normalize", help=_LOUDNESS_HELP)
        soundfont = _own_soundfont() or fonts[font]
    program = None if instrument == AS_WRITTEN else names.index(instrument)
    st.session_state[_SOUND] = RenderSettings(
        soundfont=soundfont, programs=(program,) * 64 if program is not None else (), effects=effects,
        normalize=normalize,
    )  # fmt: skip


def _own_soundfont() -> Path | None:
    """The user's uploaded SoundFont, checked and saved in this session's private folder — only where the server
    allows users' SoundFonts (`MUSEGEN_ALLOW_USER_SOUNDFONTS=1`; off by default)."""
    if not user_soundfonts_allowed():
        return None
    upload = st.file_uploader("Your own SoundFont (.sf2, .sf3)", type=["sf2", "sf3"], key="sound-upload")
    if upload is None:
        return None
    with user_errors():
        return user_soundfont_file(upload.getvalue(), upload.name, _private_folder()).path
    return None


def _private_folder() -> Path:
    """A folder only this server process writes to, one per session (the uploaded SoundFont lives there)."""
    if "sound-folder" not in st.session_state:
        st.session_state["sound-folder"] = Path(tempfile.mkdtemp(prefix="musegen-soundfont-"))
    return st.session_state["sound-folder"]


_SOUNDFONT_HELP = (
    "The instrument samples the audio is played with. Debian's FluidR3 GM and MuseScore General appear when the "
    "server has them installed."
)
_LOUDNESS_HELP = "Every player at the same loudness (−18 LUFS), whatever the SoundFont or the number of notes."


def audio(piece: Piece, where: Any = st) -> None:
    """A player for `piece` with this session's sound settings (and a note when the render had to be cut)."""
    result = render(piece, sound_settings())
    where.audio(result.wav, format="audio/wav")
    if result.truncated:
        where.caption(result.message)


def wav_bytes(piece: Piece) -> bytes:
    """The WAV of `piece` with this session's sound settings (cached per piece and settings by the renderer)."""
    return render(piece, sound_settings()).wav


# ---------------------------------------------------------------------------------------------------------------
# Looking at a melody: notation, analysis, downloads.


@st.cache_data(show_spinner="Engraving…", max_entries=64)
def _engraving(piece: Piece, projector: bool) -> Engraving:
    """`render.notation.notation_svg` in a rendering worker (`workers.engrave_isolated`): music21 and verovio take
    ~30 ms a melody of CPU the server's sessions need."""
    return engrave_isolated(piece, 1100 if projector else 800, projector)


def notation(piece: Piece, title: str, projector: bool, where: Any = st) -> None:
    """`piece` engraved (verovio SVG) under a heading, scrolling sideways when wider than the column. The SVG goes in
    as an image (a data URL): `st.html` sanitises inline SVG away, and an image keeps verovio's glyphs intact."""
    written = piece.key is not None
    engraving = _engraving(piece if written else replace(piece, key=key_of(piece)), projector)
    where.markdown(f"**{title}**" + ("" if written else " (no key in the file: key signature estimated)"))
    for page in engraving.pages:
        source = "data:image/svg+xml;base64," + base64.b64encode(page.encode()).decode()
        where.html(f'<div class="musegen-notation" style="overflow-x:auto"><img alt="{title}" src="{source}"></div>')
    if engraving.capped:
        where.caption(engraving.note)


# Figures are made once per content and shared by every session and rerun (`st.cache_resource`): each page rerun
# draws every figure again, and making one holds the interpreter lock every session's reruns need — a piano roll
# ~16 ms, the analysis ~120 ms (music21's key estimate, plotly's subplots); a Compose rerun showing a take made three.
# Sharing a figure object is safe: `st.plotly_chart` only reads it (it serialises a copy).
piano_roll = st.cache_resource(show_spinner=False, max_entries=128)(pianoroll.piano_roll)
takes_roll = st.cache_resource(show_spinner=False, max_entries=32)(pianoroll.takes_roll)


@st.cache_resource(show_spinner=False, max_entries=64)
def _analysis_figure(prime: Piece, take: Piece) -> go.Figure:
    return analysis_figure(*compare(prime, take))


def analysis(prime: Piece, take: Piece, where: Any = st) -> None:
    """Key, scale degrees, intervals, rhythm and range of the take next to the prime's."""
    where.plotly_chart(_analysis_figure(prime, take), key=f"analysis-{hash((prime, take))}")


@st.cache_data(show_spinner="Preparing the files…", max_entries=32)
def _downloads(piece: Piece, stem: str, settings: RenderSettings) -> tuple[list[Download], list[str]]:
    return downloads(piece, stem, settings)


def download_buttons(piece: Piece, stem: str, where: Any = st) -> None:
    """One button per format (MIDI, MusicXML, ABC, WAV, MP3), and why a format is missing. A click downloads
    without rerunning the page; a deferred file (the MP3) is made then, on Streamlit's download thread."""
    files, left_out = _downloads(piece, stem, sound_settings())
    for column, file in zip(where.columns(len(files)), files, strict=True):
        column.download_button(
            file.label, file.data, file_name=file.file_name, mime=file.mime, key=file.file_name, on_click="ignore"
        )
    for reason in left_out:
        where.caption(reason)


def all_takes_zip(takes: list[Take], settings: RenderSettings) -> Callable[[], bytes]:
    """What makes the zip of `takes` when its button is clicked (~40 ms of CPU per take, every take of the
    melody: made on every new take before, for a button rarely used)."""
    return functools.partial(takes_archive, list(takes), settings)


# ---------------------------------------------------------------------------------------------------------------
# Compare & Rate.

BUILT_IN_PRIMES = "built-in"


@st.cache_data(show_spinner=False)
def primes() -> list[Prime]:
    """The built-in tunes as primes."""
    return builtin_primes()


@dataclass
class CompareState:
    """This session's Compare & Rate queue: its seed, where it is, and the pair on screen."""

    queue_seed: int = field(default_factory=lambda: secrets.randbelow(2**31))
    number: int = 0  # the pair on screen is pair `number` of the queue
    source: str | None = None  # BUILT_IN_PRIMES or the uploaded prime's name; None: not chosen yet
    pair: Pair | None = None
    choice: str | None = None  # the vote given on the pair on screen (None: not yet — names stay hidden)
    vote_id: int | None = None
    judged: int = 0  # pairs judged in this session (skips included)


def compare_state() -> CompareState:
    if "compare" not in st.session_state:
        st.session_state["compare"] = CompareState()
    return st.session_state["compare"]


def current_pair(state: CompareState, pool: list[Prime]) -> Pair:
    """The pair on screen, made (both takes generated) when the queue has moved on or the primes changed."""
    pair = state.pair
    if pair is None or pair.spec.number != state.number or pair.spec.prime not in pool:
        with st.spinner("Making the next pair…"):
            spec = pair_spec(state.queue_seed, state.number, models(), promoted(), pool)
            state.pair = make_pair(spec, model)
            state.choice = state.vote_id = None
    return state.pair


def next_pair(state: CompareState) -> None:
    state.number += 1
    state.pair = None
    state.choice = state.vote_id = None
