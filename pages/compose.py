"""Compose: upload a melody, continue it with a trained model (or, with a VAE, vary it or morph it into another),
see it, hear it, download it, rate it."""

from __future__ import annotations

import streamlit as st

from musegen_core import ui
from musegen_core.compare import uploaded_prime
from musegen_core.controls import MOODS, SCALES, Controls, key_of, refused_controls
from musegen_core.encoding import MAX_PITCH, MIN_PITCH
from musegen_core.feedback import TAGS
from musegen_core.formats import UPLOAD_EXTENSIONS
from musegen_core.formats.midi import piece_to_midi
from musegen_core.models.registry import ModelInfo
from musegen_core.music import PITCH_NAMES, Piece, pitch_name
from musegen_core.render.pianoroll import (
    PRIME_COLOR,
    ROLL_CONFIG,
    TAKE_COLOR,
    RollLayer,
    set_layers,
)
from musegen_core.studio import (
    ISOLATED,
    LatentTakes,
    describe_piece,
    in_a_row,
    make_interpolation,
    make_restyle,
    make_take,
    make_variations,
    rating_for,
)

MAX_SEED = 2**31 - 1
ANY_STYLE = "any style"
CONTINUE, VARIATIONS, INTERPOLATE, RESTYLE = "Continue", "Variations", "Interpolate", "Restyle"
LATENT_MODES = {VARIATIONS: "variations", INTERPOLATE: "interpolation", RESTYLE: "restyle"}  # → `LatentTakes.mode`
STRENGTH_HELP = (
    "The trade-off: 0 keeps your melody; higher sounds more like the target style and less like yours. "
    "The line above the result says how much of your melody survived and which style the classifier hears."
)
NO_MOOD = "no particular mood"
STRENGTH_OF_STYLE_HELP = (
    "How hard the model leans on the chosen style: 1 as trained, 0 ignores it, above 1 it leans on the style while "
    "it writes (not the GAN). Above 2 each bar is also written several times at once (2 at 2.5 … 16 at 4; the faster "
    "VAE and GAN up to 32 and 64: up to a few times slower) and the one that sounds most like the style is kept. Does "
    "nothing with 'any style'."
)
PITCHES = list(range(MIN_PITCH, MAX_PITCH + 1))
COMPLEXITY_HELP = "−1 notes on the beat … +1 more syncopation (notes between the beats)."
SCALE_HELP = "0: free. 1: every new note in the key's scale (Key and Mode above)."
TOP_P_HELP = "Sample only from the likeliest notes that make up this share of the probability (1 = all)."
MODE_HELP = (
    "Continue: add bars after your melody. Variations: new takes on your melody's first bars, as close or as far "
    "as the distance slider says. Interpolate: a path of melodies from yours to a second one. Restyle: your "
    "melody's first bars turned towards another style."
)


def show_prime(piece: Piece, part: int) -> None:
    melody = piece.only_part(part)
    st.caption(describe_piece(piece))
    st.plotly_chart(ui.piano_roll([RollLayer("Prime", melody, PRIME_COLOR)], title="Your melody"), config=ROLL_CONFIG)
    ui.audio(melody)


def generate_controls(state: ui.ComposeState, piece: Piece, name: str, tune: int, part: int) -> str:
    """Model and mode pickers and the chosen mode's form; returns the mode."""
    infos = ui.models()
    if not infos:
        st.error("No trained model is installed in models/. Run `musegen train` or restore the shipped models.")
        return CONTINUE
    info = st.selectbox("Model", infos, format_func=lambda m: f"{m.name} (v{m.version}, {m.family})")
    st.caption(info.licence_note)
    mode = CONTINUE
    if info.family == "vae":
        mode = st.radio("Mode", [CONTINUE, VARIATIONS, INTERPOLATE, RESTYLE], horizontal=True, help=MODE_HELP)
    forms = {CONTINUE: continue_form, VARIATIONS: variations_form, INTERPOLATE: interpolate_form, RESTYLE: restyle_form}
    forms[mode](state, info, piece, name, tune, part)
    return mode


def style_picker(info: ModelInfo) -> str | None:
    style = st.selectbox(
        "Style",
        [ANY_STYLE, *info.styles],
        format_func=lambda s: s.replace("_", " "),
        disabled=not info.styles,
        help="Styles this model was trained on." if info.styles else "This model is not style-conditioned.",
    )
    return None if style == ANY_STYLE else style


def seed_input(default: int = 0) -> int:
    return int(st.number_input("Seed", 0, MAX_SEED, default, help="Same seed and settings → the same result."))


def continue_form(state: ui.ComposeState, info: ModelInfo, piece: Piece, name: str, tune: int, part: int) -> None:
    asked = ui.url_controls()  # ?density=0.5&mood=happy… in the address bar presets the form
    refused = refused_controls(info.family, info.styles)
    melody_key = key_of(piece.only_part(part))
    with st.form("generate"):
        left, middle, right = st.columns(3)
        with left:
            style = style_picker(info)
        strength = middle.slider(
            "Style strength", 0.0, 4.0, asked.style_strength, 0.25, disabled="style_strength" in refused,
            help=refused.get("style_strength", STRENGTH_OF_STYLE_HELP),
        )  # fmt: skip
        mood = right.selectbox("Mood", [NO_MOOD, *MOODS], help="Happy/sad pull towards major/minor; calm/energetic "
                               "change how busy and how fast it is.")  # fmt: skip
        left, middle, right = st.columns(3)
        mix_style = left.selectbox(
            "Blend with", [None, *info.styles], format_func=lambda s: "—" if s is None else s.replace("_", " "),
            disabled="style_mix" in refused, help=refused.get("style_mix", "A second style to mix in."),
        )  # fmt: skip
        mix = middle.slider("Blend", 0.0, 1.0, asked.mix, 0.05, disabled="style_mix" in refused, help="0: only Style.")
        density = right.slider("Note density", -1.0, 1.0, asked.density, 0.1, help="−1 sparser … +1 busier.")
        left, middle, right = st.columns(3)
        key = left.selectbox(
            "Key", [None, *PITCH_NAMES], format_func=lambda k: f"melody's ({melody_key.name})" if k is None else k
        )
        mode = middle.selectbox("Mode", [None, *SCALES], format_func=lambda m: "melody's" if m is None else m)
        scale_pull = right.slider("Stay in key", 0.0, 1.0, asked.scale_pull, 0.1, help=SCALE_HELP)
        left, right = st.columns([2, 1])
        low, high = left.select_slider(
            "Pitch range of new notes", options=PITCHES, value=(asked.low, asked.high), format_func=pitch_name
        )
        complexity = right.slider("Rhythmic complexity", -1.0, 1.0, asked.complexity, 0.1, help=COMPLEXITY_HELP)
        left, middle, right = st.columns(3)
        bars = left.slider("Bars to add", 1, 32, min(asked.bars, 32))
        temperature = middle.slider(
            "Temperature", 0.1, 2.0, asked.temperature, 0.05, disabled="temperature" in refused,
            help=refused.get("temperature", "Lower: safer."),
        )  # fmt: skip
        top_p = right.slider(
            "Top-p", 0.5, 1.0, max(asked.top_p, 0.5), 0.01, disabled="top_p" in refused,
            help=refused.get("top_p", TOP_P_HELP),
        )  # fmt: skip
        left, middle, _ = st.columns(3)
        tempo = left.number_input("Tempo (bpm)", 20.0, 300.0, asked.tempo_bpm, placeholder=f"{piece.tempo_bpm:g}")
        with middle:
            seed = seed_input(asked.seed)
        submitted = st.form_submit_button("Generate", type="primary")
    if submitted:
        values = dict(
            bars=bars, temperature=temperature, top_p=top_p, seed=seed, style=style, mix_style=mix_style,
            mix=mix if mix_style else 0.0, style_strength=strength, density=density, complexity=complexity, low=low,
            high=high, key=key, mode=mode, scale_pull=scale_pull, tempo_bpm=tempo,
        )  # fmt: skip
        controls = Controls.with_mood(mood, **values) if mood != NO_MOOD else Controls(**values)
        state.takes_made += 1
        state.keep(make_take(
            state.takes_made, ISOLATED, info, piece, controls, prime_name=name, part_index=part, tune_index=tune,
        ))  # fmt: skip


def variations_form(state: ui.ComposeState, info: ModelInfo, piece: Piece, name: str, tune: int, part: int) -> None:
    with st.form("variations"):
        style = style_picker(info)
        n = st.slider("Variations", 1, 8, 4)
        distance = st.slider(
            "Distance", 0.0, 3.0, 0.5, 0.1, help="0: your melody as the model hears it; higher strays further."
        )
        seed = seed_input()
        submitted = st.form_submit_button("Make variations", type="primary")
    if submitted:
        state.takes_made += 1
        state.latent = make_variations(
            state.takes_made, ui.model(info.name), info, piece, prime_name=name, n=n, distance=distance, seed=seed,
            style=style, part_index=part, tune_index=tune,
        )  # fmt: skip


def interpolate_form(state: ui.ComposeState, info: ModelInfo, piece: Piece, name: str, tune: int, part: int) -> None:
    upload_b = st.file_uploader("Melody B: where the path ends", type=list(UPLOAD_EXTENSIONS), key="upload-b")
    if upload_b is None:
        st.info("Upload a second melody to interpolate from yours (A) to it (B).")
        return
    data_b = upload_b.getvalue()
    piece_b, tune_b, part_b = ui.choose_melody(data_b, upload_b.name, key="b")
    st.caption(f"B: {describe_piece(piece_b)}")
    with st.form("interpolate"):
        steps = st.slider("Steps", 3, 9, 5, help="Melodies on the path, A and B included.")
        seed = seed_input()
        submitted = st.form_submit_button("Interpolate", type="primary")
    if submitted:
        state.takes_made += 1
        state.latent = make_interpolation(
            state.takes_made, ui.model(info.name), info, piece, piece_b, prime_name=name, other_name=upload_b.name,
            steps=steps, seed=seed, part_index=part, tune_index=tune, part_index_b=part_b, tune_index_b=tune_b,
        )  # fmt: skip


def restyle_form(state: ui.ComposeState, info: ModelInfo, piece: Piece, name: str, tune: int, part: int) -> None:
    with st.form("restyle"):
        style = st.selectbox("Target style", info.styles, format_func=lambda s: s.replace("_", " "))
        strength = st.slider("Strength", 0.0, 4.0, 1.5, 0.25, help=STRENGTH_HELP)
        submitted = st.form_submit_button("Restyle", type="primary")
    if submitted:
        state.takes_made += 1
        state.latent = make_restyle(
            state.takes_made, ui.model(info.name), info, piece, prime_name=name, style=style, strength=strength,
            part_index=part, tune_index=tune,
        )  # fmt: skip


def show_latent(takes: LatentTakes) -> None:
    """The whole set in one piano roll and one player, then each melody with its own player and MIDI download."""
    title = {"variations": "Variations", "interpolation": "Interpolation A → B", "restyle": "Restyle"}[takes.mode]
    labels = takes.labels
    if takes.summary:
        st.info(takes.summary)
    roll = ui.piano_roll(set_layers(takes.laid_out(), labels), title=f"{title} — {takes.model.name}")
    st.plotly_chart(roll, config=ROLL_CONFIG)
    st.markdown("**All in a row**")
    ui.audio(takes.in_a_row())
    columns = st.columns(min(4, len(takes.pieces)))
    for i, (piece, label) in enumerate(zip(takes.pieces, labels, strict=True)):
        column = columns[i % len(columns)]
        column.markdown(f"**{label}**")
        ui.audio(piece, column)
        column.download_button(
            "MIDI", piece_to_midi(piece), file_name=f"musegen-{takes.number}-{label.lower().replace(' ', '-')}.mid",
            mime="audio/midi", key=f"midi-{takes.number}-{i}", on_click="ignore",
        )  # fmt: skip


def show_take(state: ui.ComposeState) -> None:
    take = state.take
    result = take.continuation
    layers = [RollLayer("Prime", result.prime, PRIME_COLOR), RollLayer("Continuation", result.generated, TAKE_COLOR)]
    roll = ui.piano_roll(layers, title=f"Take {take.number} — {take.model.name}, seed {take.seed}")
    st.plotly_chart(roll, config=ROLL_CONFIG)
    left, right = st.columns(2)
    left.markdown("**Prime + continuation**")
    ui.audio(result.joined(), left)
    right.markdown("**Continuation only**")
    ui.audio(result.generated_alone(), right)
    look_closer(result.prime, result.generated_alone())
    st.markdown("**Download the take** (prime + continuation)")
    ui.download_buttons(result.joined(), f"musegen-take-{take.number}")
    rate(state)


def look_closer(prime: Piece, take: Piece) -> None:
    """Notation and analysis of the prime and the take, in tabs; only the open one is drawn (switching reruns the
    page). That keeps the page a student rates on small: the browser re-renders its elements at each step of every
    rerun, a fragment's too (see README, Many sessions)."""
    notation_tab, analysis_tab = st.tabs(["Notation", "Analysis"], key="look-closer", on_change="rerun")
    # drawn whichever tab is open, so the choice survives a visit to the analysis
    projector = notation_tab.toggle("Projector size", key="projector", help="Larger notes for a class on one screen.")
    if notation_tab.open:
        ui.notation(prime, "Your melody", projector, notation_tab)
        ui.notation(take, "The take", projector, notation_tab)
    if analysis_tab.open:
        ui.analysis(prime, take, analysis_tab)


def compare_takes(state: ui.ComposeState, source: tuple[str, int, int]) -> None:
    """The last takes of this melody in one piano-roll (overlaid or one under another), back to back in one player,
    and all of them in one zip."""
    takes = state.takes_of(source)
    if len(takes) < 2:
        return
    st.subheader("Compare takes")
    labels = {f"Take {take.number} — {take.model.name}, seed {take.seed}": take for take in takes}
    chosen = st.multiselect("Takes", list(labels), default=list(labels)[-3:], key="compare-takes")
    overlaid = st.toggle("Overlay in one roll", value=True, key="compare-overlaid")
    picked = [labels[label] for label in chosen]
    if picked:
        roll = ui.takes_roll(
            picked[0].continuation.prime, [(label, labels[label].continuation.generated) for label in chosen],
            overlaid=overlaid,
        )  # fmt: skip
        st.plotly_chart(roll, config=ROLL_CONFIG)
        st.markdown("**The chosen takes one after another**")
        ui.audio(in_a_row([take.continuation.joined() for take in picked]))
    archive = ui.all_takes_zip(takes, ui.sound_settings())
    st.download_button(
        f"Download all {len(takes)} takes (zip: MIDI, MusicXML, ABC, WAV)", archive, file_name="musegen-takes.zip",
        mime="application/zip", on_click="ignore",
    )  # fmt: skip


@st.fragment
def rate(state: ui.ComposeState) -> None:
    """Stars, tags and a comment for the take on screen. A fragment: a click here reruns only this box, not the
    page with its rolls, notation and audio, so saving a rating answers at once even on a busy server."""
    take = state.take
    if take.number in state.saved_ratings:
        st.success(saved_message(state.saved_ratings[take.number]))
        return
    box = st.empty()
    with box.container():
        st.markdown("**How good is this take?**")
        stars = st.feedback("stars", key=f"stars-{take.number}")
        tags = st.multiselect(
            "Tags (optional)", list(TAGS), key=f"tags-{take.number}", placeholder="catchy, boring, wrong notes…",
            help="; ".join(f"{tag}: {meaning}" for tag, meaning in TAGS.items()),
        )  # fmt: skip
        comment = st.text_input("Comment (optional)", key=f"comment-{take.number}", max_chars=1000)
        clicked = st.button("Save rating", disabled=stars is None)
    if clicked:
        rating = rating_for(take, stars + 1, comment, tags=tags, rater=ui.rater())  # st.feedback gives 0–4
        state.saved_ratings[take.number] = ui.feedback_store().add(rating)
        box.success(saved_message(state.saved_ratings[take.number]))


def saved_message(rating_id: int) -> str:
    return f"Thanks — rating #{rating_id} saved."


st.title("Compose")
ui.page_sidebar()  # the rater and the admin unlock, when app.py has not drawn them
state = ui.compose_state()
with ui.user_errors():
    melody = ui.melody_source()
    if melody is None:
        st.info("Upload a melody to begin (.mid, .musicxml/.xml/.mxl or .abc), or type one, or pick a built-in tune.")
    else:
        data, name = melody
        piece, tune, part = ui.choose_melody(data, name)
        state.prime = uploaded_prime(piece, name, part_index=part, tune_index=tune)  # for Compare & Rate
        show_prime(piece, part)
        mode = generate_controls(state, piece, name, tune, part)
        source = (name, tune, part)
        if mode == CONTINUE and state.take is not None and state.take.source == source:
            show_take(state)
            compare_takes(state, source)
        latent = state.latent
        if latent is not None and latent.source == source and latent.mode == LATENT_MODES.get(mode):
            show_latent(latent)
