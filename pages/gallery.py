"""Style Gallery: one melody continued in every style of a model, side by side — piano roll, audio and what differs —
for a class looking at one projected screen."""

from __future__ import annotations

import html

import streamlit as st

from musegen_core import ui
from musegen_core.gallery import Gallery
from musegen_core.render.pianoroll import PRIME_COLOR, SET_COLORS, RollLayer
from musegen_core.studio import describe_piece

STYLE_COLORS = SET_COLORS[1:]  # the input melody keeps PRIME_COLOR (blue) in every roll
ROLL_HEIGHT = 280
MAX_SEED = 2**31 - 1


def choose_source() -> tuple[bytes, str, int, int] | None:
    """Melody pickers; returns (file bytes, file name, tune index, part index), or None while there is no melody."""
    melody = ui.melody_source(default=ui.BUILT_IN)
    if melody is None:
        st.info("Upload a .mid, .musicxml/.xml/.mxl or .abc file, type a melody, or pick a built-in tune.")
        return None
    _, tune, part = ui.choose_melody(*melody)
    return *melody, tune, part


def show_gallery(gallery: Gallery) -> None:
    melody = gallery.prime
    st.markdown(f"**Your melody:** {melody.title or 'untitled'} — {describe_piece(melody)}")
    ui.audio(melody)
    st.caption(
        "In every roll: your melody in blue, then the style's continuation in the style's colour. "
        "In brackets: the other styles' average. Majorness runs from −1 (minor) to +1 (major)."
    )
    for i, take in enumerate(gallery.takes):
        color = STYLE_COLORS[i % len(STYLE_COLORS)]
        st.divider()
        words, roll = st.columns([2, 3], vertical_alignment="center")
        sentences = "".join(f"<li>{html.escape(sentence)}</li>" for sentence in take.explanation)
        words.markdown(
            f'<h2 style="color:{color}; padding:0 0 0.3rem 0">{html.escape(take.label)}</h2>'
            f'<ul style="font-size:1.2rem">{sentences}</ul>',
            unsafe_allow_html=True,
        )
        ui.audio(take.continuation.generated_alone(), words)
        layers = [
            RollLayer("Your melody", melody, PRIME_COLOR),
            RollLayer(take.label, take.continuation.generated, color),
        ]
        roll.plotly_chart(
            ui.piano_roll(layers, height=ROLL_HEIGHT, pitch_range=gallery.pitch_range, beat_range=gallery.beat_range),
            key=f"roll-{take.style}",
        )
    st.divider()
    with st.expander("The numbers behind the sentences"):
        st.caption(
            f"Continuations of {gallery.bars} bars, seed {gallery.seed}; scale and majorness in {gallery.key.name}. "
            "Each sentence names a measure where the style differs most from the other styles' mean, measured in "
            "how much the other styles spread on it. Variety: the number of equally used notes with the same "
            "spread of pitch classes."
        )
        st.table(gallery.table())


st.title("Style Gallery")
ui.page_sidebar()  # the rater and the admin unlock, when app.py has not drawn them
st.caption("One melody continued in every style a model knows, with the same seed: only the style changes.")
with ui.user_errors():
    infos = [info for info in ui.models() if info.styles]
    source_column, model_column, settings_column = st.columns([2, 2, 1])
    with source_column:
        chosen = choose_source()
    with model_column:
        if not infos:
            st.error("No style-conditioned model is installed in models/. Restore the shipped models.")
        else:
            info = st.selectbox("Model", infos, format_func=lambda m: f"{m.name} (v{m.version}, {m.family})")
            cleared = "Cleared" if info.commercial_use_cleared else "Not cleared"
            st.caption(f"{len(info.styles)} styles · {cleared} for commercial use", help=info.licence_note)
    with settings_column:
        bars = st.slider("Bars to add", 1, 16, 8)
        seed = int(st.number_input("Seed", 0, MAX_SEED, 0, help="Same seed → the same gallery; try another."))
    if chosen is not None and infos:
        data, name, tune, part = chosen
        show_gallery(ui.gallery(data, name, tune, part, info.name, bars, seed))
