"""Feedback: what the raters have said, in numbers — counts, star ratings per model version and style over time,
win rates between versions in the A/B votes — and, for an admin, the dataset export the fine-tuner reads."""

from __future__ import annotations

import streamlit as st

from musegen_core import admin, ui
from musegen_core.render import feedback_plots as plots

EXPORT = "feedback-export"


def show_numbers() -> None:
    store = ui.feedback_store()
    counts, stats, wins = store.counts(), store.rating_stats(), store.win_rates()
    columns = st.columns(5)
    columns[0].metric("Ratings", counts.ratings)
    columns[1].metric("Pair votes", counts.pair_votes - counts.skipped)
    columns[2].metric("Skipped pairs", counts.skipped)
    columns[3].metric("Raters", counts.raters)
    columns[4].metric("Pieces stored", counts.pieces)
    if stats:
        by = st.radio("Lines per", [plots.BY_MODEL, plots.BY_STYLE], horizontal=True,
                      format_func={plots.BY_MODEL: "model version", plots.BY_STYLE: "style asked"}.get)  # fmt: skip
        st.plotly_chart(plots.ratings_over_time(stats, by), key="ratings-over-time")
        st.plotly_chart(plots.ratings_by_model_and_style(stats), key="ratings-by-model")
    else:
        st.info("No star ratings yet: rate a take on Compose.")
    if wins:
        st.plotly_chart(plots.win_rates(wins), key="win-rates")
    else:
        st.info("No A/B votes between two different model versions yet: vote on Compare & Rate.")


def show_export() -> None:
    """Admin only: the dataset `musegen feedback export` writes, as a zip."""
    st.subheader("Dataset export")
    st.caption(
        "The same folder `musegen feedback export` writes (manifest with counts and content hash, ratings.jsonl, "
        "pairs.jsonl without skips, pieces/*.mid), zipped. Raters appear as rater-<number>, never by name."
    )
    if st.button("Prepare export", key="prepare-export"):
        st.session_state[EXPORT] = admin.export_zip(ui.admin_session(), ui.feedback_store())
    export = st.session_state.get(EXPORT)
    if export is not None:
        counts = export.manifest["counts"]
        st.caption(
            f"{counts['ratings']} ratings, {counts['pairs']} pairs, {counts['pieces']} pieces, {counts['raters']} "
            f"raters · content sha256 {export.manifest['content_sha256'][:16]}…"
        )
        st.download_button("Download dataset (.zip)", export.data, file_name=export.file_name, mime="application/zip",
                           key="download-export", on_click="ignore")  # fmt: skip


st.title("Feedback")
ui.page_sidebar()  # the rater and the admin unlock, when app.py has not drawn them
with ui.user_errors():
    show_numbers()
    st.divider()
    if ui.admin_unlocked():
        show_export()
    else:
        st.session_state.pop(EXPORT, None)  # a locked session keeps no export
        if admin.status() == "on":
            st.caption("The dataset export is an admin action: unlock Admin in the sidebar.")
        else:
            st.caption("The dataset export is an admin action, and admin actions are off on this server.")
