"""Models: the installed models and versions, what they were trained on, their held-out numbers and licence status;
for an unlocked admin, promotion, rollback, deleting versions and fine-tuning from feedback in the background."""

from __future__ import annotations

import streamlit as st

from musegen_core import admin, jobs, ui
from musegen_core.models.registry import ModelInfo, promoted
from musegen_core.studio import abilities

FINETUNABLE = ("lstm", "transformer", "vae")  # the GAN has no likelihood of a take to fine-tune


def model_entry(info: ModelInfo, current: dict) -> None:
    promoted_for = [family for family, name in current.get("families", {}).items() if name == info.name]
    badges = (" · default" if current.get("default") == info.name else "") + "".join(
        f" · promoted for {family}" for family in promoted_for
    )
    with st.expander(f"{info.name} — v{info.version} ({info.family}, {info.source}){badges}"):
        st.caption(info.licence_note)
        st.caption(abilities(info))
        if info.parent:
            verdict = {True: "passed", False: "failed", None: "not run"}[info.gate_passed]
            st.caption(f"Fine-tuned from {info.parent}; validation gate {verdict}.")
        if ui.admin_unlocked():
            admin_buttons(info)
        st.markdown(info.card_markdown)


def admin_buttons(info: ModelInfo) -> None:
    left, right = st.columns(2)
    if left.button("Promote", key=f"promote-{info.name}", help="Make it its family's model (and the default's, if "
                   "its family is the default's). A version that failed its gate cannot be promoted."):  # fmt: skip
        with ui.user_errors():
            admin.promote(ui.admin_session(), info.name)
            ui.models.clear()
            st.rerun()
    if info.source == "user" and right.button("Delete version", key=f"delete-{info.name}"):
        with ui.user_errors():
            admin.delete_version(ui.admin_session(), info.name)
            ui.models.clear()
            st.rerun()


def promotions(current: dict) -> None:
    st.subheader("Promotions")
    for family, name in sorted(current.get("families", {}).items()):
        left, right = st.columns([3, 1])
        left.markdown(f"**{family}**: {name}")
        if right.button("Roll back", key=f"rollback-{family}", help="Back to the model promoted before this one."):
            with ui.user_errors():
                admin.rollback(ui.admin_session(), family)
                ui.models.clear()
                st.rerun()


def finetune_form(infos: list[ModelInfo]) -> None:
    st.subheader("Fine-tune from feedback")
    candidates = [info.name for info in infos if info.family in FINETUNABLE]
    with st.form("finetune"):
        name = st.selectbox("Model", candidates)
        steps = st.slider("Steps", 20, 1000, 200, 20)
        submitted = st.form_submit_button("Start fine-tune")
    if submitted:
        with ui.user_errors():
            job = jobs.start_finetune(ui.admin_session(), name, ui.feedback_store(), steps=steps)
            st.success(f"Started fine-tuning {job.model} ({job.id}).")


@st.fragment(run_every=2)
def job_list() -> None:
    """Every background fine-tune with its progress (refreshed every 2 s)."""
    for job in jobs.jobs()[:5]:
        progress, state = job.progress() or {}, job.state()
        step, steps = progress.get("step", 0), progress.get("steps", job.steps)
        st.progress(min(1.0, step / max(steps, 1)), text=f"{job.model} · {state} · {progress.get('phase', 'starting')} "
                    f"· step {step}/{steps}")  # fmt: skip
        if state == "done":
            st.caption(f"Wrote {progress.get('name')}; {'promoted' if progress.get('promoted') else 'not promoted'}.")
            seen = st.session_state.setdefault("finished_jobs", set())
            if job.id not in seen:  # a new version exists: list it now, not after the cache's minute
                seen.add(job.id)
                ui.models.clear()
        elif state == "failed":
            st.code(job.log_tail() or "no output", language=None)


st.title("Models")
ui.page_sidebar()
with ui.user_errors():
    infos, current = ui.models(), promoted()
    if not infos:
        st.warning("No model is installed in models/.")
    for info in infos:
        model_entry(info, current)
    if ui.admin_unlocked():
        promotions(current)
        finetune_form(infos)
        job_list()
