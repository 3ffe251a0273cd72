"""The one UI-support module: cached shared resources, typed session state and error display for the pages.

Nothing else in `musegen_core` imports Streamlit. Resources from `st.cache_resource` are shared by every
session of the server: the synthesiser, the store and the models are thread-safe (see their modules).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import streamlit as st

from musegen_core.controls import Controls, controls_from_strings
from musegen_core.errors import MusegenError
from musegen_core.feedback import FeedbackStore
from musegen_core.feedback.store import default_db_url
from musegen_core.formats import MusicFile, open_music_file
from musegen_core.gallery import Gallery, make_gallery
from musegen_core.models.registry import ModelInfo, list_models, load_model
from musegen_core.music import Piece
from musegen_core.render.audio import Synthesizer
from musegen_core.studio import LatentTakes, Take

log = logging.getLogger("musegen.ui")


@st.cache_resource(show_spinner=False)
def synthesizer() -> Synthesizer:
    """One FluidSynth instance per server process: the SoundFont is loaded once."""
    return Synthesizer()


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


@st.cache_data(show_spinner=False, max_entries=64)
def wav_bytes(piece: Piece) -> bytes:
    """Rendered audio, cached per piece."""
    return synthesizer().render_wav(piece)


@st.cache_data(show_spinner="Reading the file…", max_entries=32)
def music_file(data: bytes, filename: str) -> MusicFile:
    return open_music_file(data, filename)


@st.cache_data(show_spinner="Reading the tune…", max_entries=32)
def load_tune(data: bytes, filename: str, tune_index: int) -> Piece:
    return open_music_file(data, filename).load(tune_index)


@st.cache_data(show_spinner="Continuing the melody in every style…", max_entries=16)
def gallery(
    data: bytes, filename: str, tune_index: int, part_index: int, model_name: str, bars: int, seed: int
) -> Gallery:
    """The Style Gallery of one tune, cached per (file, tune, part, model, bars, seed): reruns are instant."""
    return make_gallery(
        model(model_name), load_tune(data, filename, tune_index), part_index=part_index, bars=bars, seed=seed
    )


def url_controls() -> Controls:
    """Controls preset by the address bar (`?density=0.5&mood=happy&seed=3`); absurd values are reported once and
    the defaults used instead."""
    try:
        return controls_from_strings(dict(st.query_params))
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


def compose_state() -> ComposeState:
    if "compose" not in st.session_state:
        st.session_state["compose"] = ComposeState()
    return st.session_state["compose"]
