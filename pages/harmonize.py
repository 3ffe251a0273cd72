"""Harmonize: the user's melody as the soprano of a Bach-style four-part harmony, or with a folk chord-and-bass
backing; then any bars rewritten on demand, everything else kept note for note."""

from __future__ import annotations

import streamlit as st

from musegen_core import ui
from musegen_core.harmony.service import IDIOMS, regenerate_bars
from musegen_core.hashing import bytes_sha256
from musegen_core.music import Piece
from musegen_core.render.pianoroll import set_layers
from musegen_core.studio import describe_piece

MAX_SEED = 2**31 - 1
RESULT = "harmonize-result"  # session state: (what was harmonized, the current result)


def show(result: Piece, choice: tuple) -> None:
    """Piano roll (a colour per voice), player, bar-range regeneration, notation and downloads."""
    st.markdown(f"**Result:** {describe_piece(result)}")
    parts = [result.only_part(i) for i in range(len(result.parts))]
    st.plotly_chart(ui.piano_roll(set_layers(parts, [p.name for p in result.parts]), height=420), key="harmony-roll")
    ui.audio(result)
    regenerate(result, choice)
    ui.notation(result, "Score", projector=False)
    ui.download_buttons(result, "harmonized")


def regenerate(result: Piece, choice: tuple) -> None:
    """The bar-range selector under the roll: rewrite only those bars (four-part results and melodies)."""
    bars = result.bar_count()
    if bars < 2:
        return
    four_parts = len(result.parts) == 4
    first, last = st.select_slider(
        "Bars to regenerate", options=list(range(1, bars + 1)), value=(1, min(2, bars)),
        help="Only these bars are written anew (by the harmonizer, which reads the bars on both sides); every note "
        "outside them stays exactly as it is.",
    )  # fmt: skip
    seed = int(st.number_input("Seed for the new bars", 0, MAX_SEED, 1, key="infill-seed"))
    pressed = st.button(
        f"Regenerate bars {first}–{last}", disabled=not four_parts,
        help=None if four_parts else "Regenerating works on the Bach four-part harmony (the folk backing is rules).",
    )  # fmt: skip
    if pressed:
        st.session_state[RESULT] = (choice, regenerate_bars(result, first, last, seed=seed))
        st.rerun()


st.title("Harmonize")
ui.page_sidebar()  # the rater and the admin unlock, when app.py has not drawn them
st.caption(
    "Your melody stays as it is; MuseGen writes the parts under it. Bach style: alto, tenor and bass by a model "
    "trained on Bach's chorales. Folk: chords and a bass line by the rules of harmony."
)
with ui.user_errors():
    source_column, settings_column = st.columns([3, 2])
    with source_column:
        melody = ui.melody_source(key="h")
    with settings_column:
        idiom = st.radio("Style", list(IDIOMS), format_func=lambda name: IDIOMS[name], key="harmony-idiom")
        seed = int(st.number_input("Seed", 0, MAX_SEED, 0, help="Same seed → the same harmony; try another."))
    if melody is None:
        st.info("Upload a .mid, .musicxml/.xml/.mxl or .abc file, hum or type a melody, or pick a built-in tune.")
    else:
        piece, tune, part = ui.choose_melody(*melody, key="h")
        choice = (bytes_sha256(melody[0]), tune, part, idiom, seed)
        if st.button("Harmonize", type="primary"):
            st.session_state[RESULT] = (choice, ui.harmonized(*melody, tune, part, idiom, seed))
        saved = st.session_state.get(RESULT)
        if saved is not None and saved[0] == choice:
            show(saved[1], choice)
