"""Models: the installed models, what they were trained on, their held-out numbers and licence status."""

from __future__ import annotations

import streamlit as st

from musegen_core import ui
from musegen_core.studio import abilities

st.title("Models")
with ui.user_errors():
    infos = ui.models()
    if not infos:
        st.warning("No model is installed in models/.")
    for info in infos:
        with st.expander(f"{info.name} — v{info.version} ({info.family})", expanded=len(infos) == 1):
            st.caption(info.licence_note)
            st.caption(abilities(info))
            st.markdown(info.card_markdown)
