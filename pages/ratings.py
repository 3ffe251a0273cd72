"""Ratings: what raters have said so far, newest first (read back from the feedback database); an admin can delete
a rating or a vote."""

from __future__ import annotations

import streamlit as st

from musegen_core import admin, ui
from musegen_core.feedback import FeedbackStore
from musegen_core.feedback.store import is_anonymous_rater


def who(rater: str | None) -> str:
    if rater is None:
        return "—"
    return "anonymous" if is_anonymous_rater(rater) else rater


def show_ratings(store: FeedbackStore) -> None:
    ratings = store.recent(limit=200)
    st.caption(f"{store.count()} ratings stored in the feedback database.")
    if not ratings:
        st.info("No ratings yet. Generate a take on the Compose page and rate it.")
    st.dataframe(
        [
            {
                "#": r.id,
                "when (UTC)": r.created_at.strftime("%Y-%m-%d %H:%M") if r.created_at else "",
                "stars": "★" * r.stars,
                "model": f"{r.model_name} v{r.model_version}",
                "seed": r.seed,
                "prime": r.prime_name,
                "tags": ", ".join(r.tags),
                "comment": r.comment,
                "rater": who(r.rater),
            }
            for r in ratings
        ],
        hide_index=True,
    )


def show_votes(store: FeedbackStore) -> None:
    votes = store.recent_pair_votes(limit=200)
    if not votes:
        st.caption("No A/B votes yet: vote on Compare & Rate.")
        return
    said = {"a": "A better", "b": "B better", "tie": "tie", "skip": "skipped"}
    st.dataframe(
        [
            {
                "#": v.id,
                "when (UTC)": v.created_at.strftime("%Y-%m-%d %H:%M") if v.created_at else "",
                "vote": said[v.choice],
                "A": f"{v.a.model_name} v{v.a.model_version} seed {v.a.seed}",
                "B": f"{v.b.model_name} v{v.b.model_version} seed {v.b.seed}",
                "prime": v.prime_name,
                "tags": ", ".join(v.tags),
                "rater": who(v.rater),
            }
            for v in votes
        ],
        hide_index=True,
    )


def delete_form(store: FeedbackStore) -> None:
    """Admin only (and `admin.delete_*` refuse a locked session on their own)."""
    with st.expander("Delete a rating or a vote (admin)", icon=":material/delete:"):
        kind = st.radio("What", ["rating", "pair vote"], horizontal=True, key="delete-kind")
        number = st.number_input("Number (#)", min_value=1, step=1, key="delete-id")
        if st.button(f"Delete {kind} #{number}", key="delete-record", type="primary"):
            session = ui.admin_session()
            delete = admin.delete_rating if kind == "rating" else admin.delete_pair_vote
            if delete(session, store, int(number)):
                st.success(f"Deleted {kind} #{number}.")
            else:
                st.warning(f"There is no {kind} #{number}.")


st.title("Ratings")
ui.page_sidebar()  # the rater and the admin unlock, when app.py has not drawn them
with ui.user_errors():
    store = ui.feedback_store()
    if ui.admin_unlocked():
        delete_form(store)
    show_ratings(store)
    st.subheader("A/B votes")
    show_votes(store)
