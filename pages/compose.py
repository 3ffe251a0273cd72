"""Compose: upload a melody, continue it with a trained model, see it, hear it, download it, rate it."""

from __future__ import annotations

import streamlit as st

from musegen_core import ui
from musegen_core.formats import UPLOAD_EXTENSIONS, default_melody_part, describe_part
from musegen_core.formats.midi import piece_to_midi
from musegen_core.music import Piece
from musegen_core.render.pianoroll import PRIME_COLOR, TAKE_COLOR, RollLayer, piano_roll
from musegen_core.studio import describe_piece, make_take, rating_for

MAX_SEED = 2**31 - 1
ANY_STYLE = "any style"


def choose_prime(data: bytes, name: str) -> tuple[Piece, int, int]:
    """Tune and melody-part pickers; returns (piece, tune index, part index)."""
    music_file = ui.music_file(data, name)
    tune = 0
    if len(music_file.tune_titles) > 1:
        titles = music_file.tune_titles
        tune = st.selectbox("Tune", range(len(titles)), format_func=lambda i: f"{i + 1}. {titles[i]}")
    piece = ui.load_tune(data, name, tune)
    part = 0
    if len(piece.parts) > 1:
        part = st.selectbox(
            "Melody track",
            range(len(piece.parts)),
            index=default_melody_part(piece),
            format_func=lambda i: describe_part(piece.parts[i]),
        )
    return piece, tune, part


def show_prime(piece: Piece, part: int) -> None:
    melody = piece.only_part(part)
    st.caption(describe_piece(piece))
    st.plotly_chart(piano_roll([RollLayer("Prime", melody, PRIME_COLOR)], title="Your melody"))
    st.audio(ui.wav_bytes(melody), format="audio/wav")


def generate_controls(state: ui.ComposeState, piece: Piece, name: str, tune: int, part: int) -> None:
    infos = ui.models()
    if not infos:
        st.error("No trained model is installed in models/. Run `musegen train` or restore the shipped models.")
        return
    info = st.selectbox("Model", infos, format_func=lambda m: f"{m.name} (v{m.version}, {m.family})")
    st.caption(info.licence_note)
    with st.form("generate"):
        style = st.selectbox(
            "Style",
            [ANY_STYLE, *info.styles],
            format_func=lambda s: s.replace("_", " "),
            disabled=not info.styles,
            help="Styles this model was trained on." if info.styles else "This model is not style-conditioned.",
        )
        bars = st.slider("Bars to add", 1, 32, 8)
        temperature = st.slider("Temperature", 0.1, 2.0, 1.0, 0.05, help="Lower: safer, more repetitive.")
        seed = st.number_input("Seed", 0, MAX_SEED, 0, help="Same seed and settings → the same take.")
        submitted = st.form_submit_button("Generate", type="primary")
    if submitted:
        state.takes_made += 1
        state.take = make_take(
            state.takes_made, ui.model(info.name), info, piece, prime_name=name, seed=int(seed), bars=bars,
            temperature=temperature, style=None if style == ANY_STYLE else style, part_index=part, tune_index=tune,
        )  # fmt: skip


def show_take(state: ui.ComposeState) -> None:
    take = state.take
    result = take.continuation
    layers = [RollLayer("Prime", result.prime, PRIME_COLOR), RollLayer("Continuation", result.generated, TAKE_COLOR)]
    st.plotly_chart(piano_roll(layers, title=f"Take {take.number} — {take.model.name}, seed {take.seed}"))
    left, right = st.columns(2)
    left.markdown("**Prime + continuation**")
    left.audio(ui.wav_bytes(result.joined()), format="audio/wav")
    right.markdown("**Continuation only**")
    right.audio(ui.wav_bytes(result.generated_alone()), format="audio/wav")
    st.download_button(
        "Download MIDI", piece_to_midi(result.joined()), file_name=f"musegen-take-{take.number}.mid", mime="audio/midi"
    )
    rate(state)


def rate(state: ui.ComposeState) -> None:
    take = state.take
    if take.number in state.saved_ratings:
        st.success(f"Thanks — rating #{state.saved_ratings[take.number]} saved.")
        return
    st.markdown("**How good is this take?**")
    stars = st.feedback("stars", key=f"stars-{take.number}")
    comment = st.text_input("Comment (optional)", key=f"comment-{take.number}", max_chars=1000)
    if st.button("Save rating", disabled=stars is None):
        rating_id = ui.feedback_store().add(rating_for(take, stars + 1, comment))  # st.feedback gives 0–4
        state.saved_ratings[take.number] = rating_id
        st.rerun()


st.title("Compose")
state = ui.compose_state()
upload = st.file_uploader("Melody file (MIDI, MusicXML, ABC)", type=list(UPLOAD_EXTENSIONS))
if upload is None:
    st.info("Upload a melody to begin: a .mid, .musicxml/.xml/.mxl or .abc file.")
with ui.user_errors():
    if upload is not None:
        data = upload.getvalue()
        piece, tune, part = choose_prime(data, upload.name)
        show_prime(piece, part)
        generate_controls(state, piece, upload.name, tune, part)
        if state.take is not None and state.take.source == (upload.name, tune, part):
            show_take(state)
