"""Compare & Rate: a queue of blind A/B pairs — two takes continuing the same melody, the models hidden until the
rater has voted (A better / B better / tie / skip, keys A, B, T, S; N for the next pair)."""

from __future__ import annotations

import streamlit as st

from musegen_core import ui
from musegen_core.compare import SEEDS, Pair
from musegen_core.feedback import TAGS
from musegen_core.render.pianoroll import PRIME_COLOR, TAKE_COLOR, RollLayer
from musegen_core.studio import describe_piece

B_COLOR = "#54A24B"
VOTES = (("A better", "a", "A"), ("B better", "b", "B"), ("Tie", "tie", "T"), ("Skip", "skip", "S"))
SAID = {"a": "A better", "b": "B better", "tie": "a tie", "skip": "skipped"}


def choose_primes(state: ui.CompareState) -> list:
    """The melodies the queue continues: the built-in tunes, or (preselected) the melody uploaded on Compose in this
    session."""
    uploaded = ui.compose_state().prime
    if uploaded is None:
        st.caption("The pairs continue the built-in tunes; upload a melody on Compose to compare takes on yours.")
        return ui.primes()
    options = [ui.BUILT_IN_PRIMES, uploaded.name]
    if st.session_state.get("compare-melodies") not in options:  # first time here, or a new upload
        st.session_state["compare-melodies"] = state.source if state.source in options else uploaded.name
    state.source = st.radio(
        "Melodies", options, key="compare-melodies", horizontal=True,
        format_func=lambda o: "Built-in tunes" if o == ui.BUILT_IN_PRIMES else f"Your melody from Compose: {o}",
        help="Every pair continues one of these. Upload a melody on Compose to compare takes on yours.",
    )  # fmt: skip
    return ui.primes() if state.source == ui.BUILT_IN_PRIMES else [uploaded]


def show_pair(pair: Pair, revealed: bool) -> None:
    spec = pair.spec
    style = f"in the {spec.style.replace('_', ' ')} style" if spec.style else "in any style"
    st.markdown(f"**Pair {spec.number + 1}** · both takes continue *{spec.prime.name}* for {spec.bars} bars, {style}")
    st.caption(describe_piece(pair.prime))
    left, right = st.columns([3, 2], vertical_alignment="center")
    left.plotly_chart(
        ui.piano_roll([RollLayer("Melody", pair.prime, PRIME_COLOR)], title="The melody", height=240), key="pair-prime"
    )
    right.markdown("**The melody**")
    ui.audio(pair.prime, right)
    pitch_range, beat_range = pair.pitch_range(), pair.beat_range()
    columns = st.columns(2)
    for column, letter, (side, take), color in zip(columns, "AB", pair.sides, (TAKE_COLOR, B_COLOR), strict=True):
        heading = f"{letter}: {side.label}" if revealed else letter
        column.subheader(heading)
        column.plotly_chart(
            ui.piano_roll(
                [RollLayer(f"Take {letter}", take.generated, color)], title=f"Take {letter}", height=260,
                pitch_range=pitch_range, beat_range=beat_range,
            ),
            key=f"pair-take-{letter}",
        )  # fmt: skip
        column.markdown(f"The melody, then **{letter}**")
        ui.audio(take.joined(), column)


def vote(state: ui.CompareState, pair: Pair) -> None:
    st.markdown("**Which continuation is better?**")
    tags = st.multiselect(
        "Tags (optional)", list(TAGS), key=f"pair-tags-{state.queue_seed}-{state.number}",
        placeholder="catchy, boring, off-style…", help="; ".join(f"{tag}: {meaning}" for tag, meaning in TAGS.items()),
    )  # fmt: skip
    chosen = None
    for column, (label, choice, key) in zip(st.columns(len(VOTES)), VOTES, strict=True):
        if column.button(label, key=f"vote-{choice}", shortcut=key, type="primary" if choice != "skip" else "secondary",
                         width="stretch"):  # fmt: skip
            chosen = choice
    st.caption("Keys: A, B, T (tie), S (skip). Which model made which take is shown after you vote.")
    if chosen is not None:
        state.vote_id = ui.feedback_store().add_pair_vote(pair.vote(chosen, ui.rater(), tags))
        state.choice = chosen
        state.judged += 1
        st.rerun()


def reveal(state: ui.CompareState, pair: Pair) -> None:
    kind = "the same model with two seeds" if pair.spec.kind == SEEDS else "two different models or versions"
    st.success(f"Saved ({SAID[state.choice]}, vote #{state.vote_id}). {pair.reveal()} This pair was {kind}.")
    if st.button("Next pair", key="next-pair", shortcut="N", type="primary"):
        ui.next_pair(state)
        st.rerun()
    st.caption(f"Key: N. Pairs judged in this session: {state.judged}.")


st.title("Compare & Rate")
ui.page_sidebar()  # the rater and the admin unlock, when app.py has not drawn them
st.caption("Two takes continue the same melody. Listen to both and say which is better: the models stay hidden "
           "until you have voted.")  # fmt: skip
with ui.user_errors():
    state = ui.compare_state()
    pool = choose_primes(state)
    if not ui.models():
        st.error("No trained model is installed in models/. Restore the shipped models.")
    else:
        pair = ui.current_pair(state, pool)
        revealed = state.choice is not None
        show_pair(pair, revealed)
        if revealed:
            reveal(state, pair)
        else:
            vote(state, pair)
