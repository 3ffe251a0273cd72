"""MuseGen: the Streamlit entry point. Builds the navigation; every page lives in pages/."""

from __future__ import annotations

import streamlit as st

st.set_page_config(page_title="MuseGen", page_icon="🎼", layout="wide")
st.navigation(
    [
        st.Page("pages/compose.py", title="Compose", icon="🎹", default=True),
        st.Page("pages/ratings.py", title="Ratings", icon="⭐"),
        st.Page("pages/models.py", title="Models", icon="🧠"),
    ]
).run()
