"""MuseGen: the Streamlit entry point. Builds the navigation; every page lives in pages/."""

from __future__ import annotations

import streamlit as st

st.set_page_config(page_title="MuseGen", page_icon=":material/music_note:", layout="wide")
st.navigation(
    [
        st.Page("pages/compose.py", title="Compose", icon=":material/piano:", default=True),
        st.Page("pages/gallery.py", title="Style Gallery", icon=":material/palette:"),
        st.Page("pages/ratings.py", title="Ratings", icon=":material/star:"),
        st.Page("pages/models.py", title="Models", icon=":material/model_training:"),
    ]
).run()
