"""MuseGen: the Streamlit entry point. Builds the navigation and the sidebar; every page lives in pages/."""

from __future__ import annotations

import streamlit as st

from musegen_core import ui

st.set_page_config(page_title="MuseGen", page_icon=":material/music_note:", layout="wide")
page = st.navigation(
    [
        st.Page("pages/compose.py", title="Compose", icon=":material/piano:", default=True),
        st.Page("pages/compare.py", title="Compare & Rate", icon=":material/compare_arrows:"),
        st.Page("pages/gallery.py", title="Style Gallery", icon=":material/palette:"),
        st.Page("pages/harmonize.py", title="Harmonize", icon=":material/queue_music:"),
        st.Page("pages/ratings.py", title="Ratings", icon=":material/star:"),
        st.Page("pages/feedback.py", title="Feedback", icon=":material/insights:"),
        st.Page("pages/models.py", title="Models", icon=":material/model_training:"),
    ]
)
ui.sidebar()  # on every page: who is rating, and the admin unlock
page.run()
