"""Ratings: what raters have said so far, newest first (read back from the feedback database)."""

from __future__ import annotations

import streamlit as st

from musegen_core import ui

st.title("Ratings")
with ui.user_errors():
    store = ui.feedback_store()
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
                "comment": r.comment,
            }
            for r in ratings
        ],
        hide_index=True,
    )
