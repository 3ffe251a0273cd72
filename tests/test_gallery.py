"""The Style Gallery: built-in tunes, one take per style, the numbers and the sentences, and the page itself."""

from __future__ import annotations

import math
import statistics
import tomllib
from dataclasses import replace
from pathlib import Path

import pytest
import streamlit as st
import torch
from streamlit.testing.v1 import AppTest

from musegen_core import gallery
from musegen_core.controls import Controls
from musegen_core.errors import ControlError
from musegen_core.formats.midi import piece_to_midi
from musegen_core.gallery import describe, explain, make_gallery, style_takes
from musegen_core.generate import continue_melody
from musegen_core.models.checkpoint import save_checkpoint
from musegen_core.models.lstm import PRESETS, LSTMConfig, MelodyLSTM
from musegen_core.models.registry import load_model
from musegen_core.music import Key, Note, Part, Piece, TimeSignature

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "models" / "lstm-folk"
needs_shipped = pytest.mark.skipif(not SHIPPED.exists(), reason="shipped model missing")


def melody(notes: list[tuple[int, float, float]], meter=(4, 4), key: Key | None = None) -> Piece:
    part = Part("m", tuple(Note(p, start, length) for p, start, length in notes))
    return Piece((part,), tempo_bpm=120, time_signature=TimeSignature(*meter), key=key)


SCALE_UP = melody([(60 + step, float(i), 1.0) for i, step in enumerate((0, 2, 4, 5, 7, 9, 11, 12))])  # 2 bars


def tiny(styles: tuple[str, ...] = ()) -> MelodyLSTM:
    config = LSTMConfig(**{**PRESETS["lstm-tiny"].to_dict(), "styles": styles})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = MelodyLSTM(config).eval()
    if styles:
        with torch.no_grad():  # untrained logits are near-uniform: make the style decide what is sampled
            model.head.weight.mul_(30)
            model.style_embedding.table.weight.mul_(10)
    return model


# --- built-in tunes --------------------------------------------------------------------------------------------


def test_built_in_tunes_load_through_the_abc_reader() -> None:
    titles = gallery.builtin_titles()
    assert len(titles) == 4 and titles[2] == "Ode to Joy"
    tunes = [gallery.builtin_tune(i) for i in range(len(titles))]
    assert [tune.key.name for tune in tunes] == ["C major", "F major", "D major", "A minor"]
    assert all(tune.note_count >= 14 and tune.parts[0].is_monophonic() for tune in tunes)
    assert tunes[3].time_signature == TimeSignature(6, 8) and tunes[3].pickup_beats == 0.5  # Greensleeves
    ode = [n.pitch for n in tunes[2].parts[0].notes[:4]]
    assert ode == [66, 66, 67, 69]  # F# F# G A


def test_built_in_tunes_are_package_data() -> None:
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert "data/*.abc" in package_data["musegen_core"]
    assert gallery.builtin_data().startswith(b"%abc")


# --- one take per style ----------------------------------------------------------------------------------------


def test_one_take_per_style_and_only_the_style_differs() -> None:
    model = tiny(("irish", "bach_chorale", "german_folk"))
    takes = style_takes(model, SCALE_UP, bars=4, seed=3)
    assert [take.style for take in takes] == ["irish", "bach_chorale", "german_folk"]
    assert all(replace(take.controls, style=None) == Controls(bars=4, seed=3) for take in takes)
    for take in takes:
        assert take.continuation == continue_melody(model, SCALE_UP, bars=4, seed=3, style=take.style)
        assert take.stats == describe(take.continuation.generated, 4, Key(0, "major"))
    assert len({take.continuation.generated.parts[0].notes for take in takes}) == 3


def test_a_model_without_styles_is_refused_clearly() -> None:
    with pytest.raises(ControlError, match="needs a style-conditioned model; this lstm model was trained without"):
        style_takes(tiny(), SCALE_UP)


def test_an_empty_part_is_refused_like_everywhere_else() -> None:
    with pytest.raises(ControlError, match="no notes"):
        style_takes(tiny(("irish",)), Piece((Part("empty"),)))


class StyleBlind:
    """Claims two styles and ignores them: every style gives the same notes."""

    family, styles = "lstm", ("irish", "bach_chorale")

    def __init__(self) -> None:
        self.model = tiny()

    def generate_many(self, context, positions, steps, *, style=None, **controls):
        return self.model.generate_many(context, positions, steps, **controls)


def test_takes_with_the_same_notes_say_so() -> None:
    result = make_gallery(StyleBlind(), SCALE_UP, bars=2, seed=1)
    irish, bach = result.takes
    assert irish.explanation[0] == "Same notes as Bach chorale: here the style changed nothing."
    assert bach.explanation[0] == "Same notes as Irish: here the style changed nothing."
    assert irish.explanation[1:] == ("Nothing stands out: close to others on every measure.",)


@needs_shipped
def test_the_shipped_model_continues_a_built_in_tune_in_each_of_its_styles() -> None:
    model = load_model("lstm-folk")
    result = make_gallery(model, gallery.builtin_tune(0), bars=4, seed=0)
    assert [take.style for take in result.takes] == list(model.styles)
    bar = 4.0
    start = result.takes[0].continuation.start_beats
    assert start == 16.0 and result.beat_range == (0.0, start + 4 * bar)
    low, high = result.pitch_range
    for take in result.takes:
        notes = take.continuation.generated.parts[0].notes
        assert notes and all(low <= n.pitch <= high and start <= n.start_beats < start + 4 * bar for n in notes)
        assert 1 <= len(take.explanation) <= gallery.MAX_SENTENCES + 1  # + "Same notes as …" where it applies
    rows = result.table()
    assert [row[""] for row in rows] == ["Your melody", *(take.label for take in result.takes)]
    assert rows[0]["Notes per bar"] == "3.5" and rows[0]["In the key"] == "100%"  # Twinkle: 14 notes in 4 bars


# --- the numbers -----------------------------------------------------------------------------------------------


def test_describe_gives_known_numbers() -> None:
    stats = describe(SCALE_UP, 2, Key(0, "major"))
    assert stats["notes_per_bar"] == 4 and stats["off_beat_share"] == 0
    assert stats["pitch_span"] == 12 and stats["mean_interval"] == pytest.approx(12 / 7)
    assert stats["mean_pitch"] == pytest.approx(statistics.fmean([60, 62, 64, 65, 67, 69, 71, 72]))
    assert stats["majorness"] == 3 / 8 and stats["in_scale_share"] == 1.0
    assert stats["notes_per_second"] == 2
    assert describe(SCALE_UP, 2, Key(0, "minor"))["in_scale_share"] == 6 / 8  # E and A are not in C minor; B is
    syncopated = melody([(69, 0, 0.5), (72, 0.5, 1), (76, 1.5, 1), (68, 2.5, 1.5)], key=Key(9, "minor"))
    stats = describe(syncopated, 1)  # key from the piece: A minor, whose scale holds the leading tone G#
    assert stats["off_beat_share"] == 0.75 and stats["in_scale_share"] == 1.0  # onsets 0.5, 1.5, 2.5 off the beat
    assert stats["majorness"] == pytest.approx(1 / 4 - 1 / 4)  # G# (major 7th) against C (minor 3rd)
    assert stats["pitch_class_entropy"] == 2.0  # four pitch classes, once each


def test_describe_of_an_empty_melody() -> None:
    stats = describe(melody([]), 4, Key(0, "major"))
    assert stats["notes_per_bar"] == 0 and stats["pitch_span"] == 0
    assert math.isnan(stats["off_beat_share"]) and math.isnan(stats["mean_pitch"])


# --- the sentences ---------------------------------------------------------------------------------------------

BASE = {
    "notes_per_bar": 3.9,
    "off_beat_share": 0.1,
    "mean_interval": 2.0,
    "pitch_span": 12.0,
    "mean_pitch": 67.0,
    "majorness": 0.2,
    "in_scale_share": 0.95,
    "pitch_class_entropy": 2.5,
}


def others(**spread: float) -> list[dict[str, float]]:
    """Three reference takes with BASE's means; each named measure spread ± its value around the mean."""
    return [{**BASE, **{name: BASE[name] + sign * size for name, size in spread.items()}} for sign in (-1, 0, 1)]


def test_explain_words_the_biggest_difference_first_with_both_numbers() -> None:
    take = {**BASE, "notes_per_bar": 6.2, "mean_interval": 2.6}
    sentences = explain(take, others())
    assert sentences[0] == "Busier: 6.2 notes per bar (others: 3.9)."
    assert sentences[1] == "Leaps more: 2.6 semitones from note to note (others: 2.0)."
    assert len(sentences) == 2


def test_explain_standardises_by_how_much_the_other_styles_spread() -> None:
    # the same 1.5-unit difference: unremarkable where the others spread by 3, striking where they agree
    take = {**BASE, "notes_per_bar": 3.9 + 1.5, "pitch_span": 12.0 + 4.5}
    assert explain(take, others(pitch_span=3.0))[0].startswith("Busier")
    assert explain(take, others(notes_per_bar=3.0))[0].startswith("Wider range: spans 16 semitones (others: 12)")


def test_explain_words_both_directions_and_the_minor_side() -> None:
    take = {**BASE, "notes_per_bar": 2.0, "majorness": -0.4, "off_beat_share": 0.0}
    assert explain(take, others()) == [
        "More minor: majorness −0.40 (others: +0.20).",
        "Sparser: 2.0 notes per bar (others: 3.9).",
        "Plainer rhythm: 0% of the notes start between the beats (others: 10%).",
    ]  # at most three sentences, largest standardised difference first


def test_explain_says_so_when_nothing_stands_out() -> None:
    assert explain(dict(BASE), others()) == ["Nothing stands out: close to others on every measure."]
    small = {**BASE, "pitch_span": 12.0 + 1.6}  # 0.53 of the 3-semitone floor: noticeable, not a standout
    assert explain(small, others()) == ["Wider range: spans 14 semitones (others: 12)."]


def test_explain_against_the_input_melody() -> None:
    take = {**BASE, "mean_pitch": 72.0}
    assert explain(take, [BASE], against="your melody") == ["Sits higher: average pitch near C5 (your melody: G4)."]


# --- the page --------------------------------------------------------------------------------------------------


@pytest.fixture
def page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    monkeypatch.setenv("MUSEGEN_DB_URL", f"sqlite:///{tmp_path / 'ratings.sqlite3'}")
    return AppTest.from_file(str(ROOT / "pages" / "gallery.py"), default_timeout=120).run()


@needs_shipped
def test_the_page_shows_a_roll_a_player_and_words_per_style(page: AppTest) -> None:
    assert not page.exception and not page.error
    assert page.title[0].value == "Style Gallery"
    styles = load_model("lstm-folk").styles
    assert len(page.get("plotly_chart")) == len(styles)
    assert len(page.get("audio")) == 1 + len(styles)  # the melody, then each continuation
    headings = [m.value for m in page.markdown if m.value.startswith("<h2")]
    assert len(headings) == len(styles) and "Bach chorale" in headings[-1] and "<li>" in headings[-1]
    model_picker = next(s for s in page.selectbox if s.label == "Model")
    assert model_picker.value.name == "lstm-folk"  # the promoted default
    assert {"lstm-cleared", "transformer-folk", "vae-folk"} <= {option.split(" ")[0] for option in model_picker.options}


@needs_shipped
def test_the_page_switches_tune_model_and_seed(page: AppTest) -> None:
    next(s for s in page.selectbox if s.label == "Tune").set_value(3).run()  # Greensleeves, 6/8
    assert not page.exception and not page.error
    picker = next(s for s in page.selectbox if s.label == "Model")
    picker.select_index(next(i for i, o in enumerate(picker.options) if o.startswith("lstm-cleared"))).run()
    assert not page.exception and not page.error
    assert len(page.get("plotly_chart")) == 3  # lstm-cleared knows three styles
    next(n for n in page.number_input if n.label == "Seed").set_value(5).run()
    assert not page.exception and not page.error and len(page.get("audio")) == 4


@needs_shipped
def test_the_page_takes_an_upload(page: AppTest) -> None:
    next(r for r in page.radio if r.label == "Melody").set_value("Upload a file").run()
    assert "Upload" in page.info[0].value and not page.get("plotly_chart")
    notes = tuple(Note(p, i * 0.5, 0.5) for i, p in enumerate([67, 69, 71, 72, 74, 72, 71, 69]))
    midi = piece_to_midi(Piece((Part("Flute", notes, program=73),), 100, TimeSignature(2, 4)))
    page.file_uploader[0].upload("air.mid", midi, "audio/midi").run()
    assert not page.exception and not page.error
    assert len(page.get("plotly_chart")) == len(load_model("lstm-folk").styles)


@needs_shipped
def test_the_gallery_is_in_the_apps_navigation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MUSEGEN_DB_URL", f"sqlite:///{tmp_path / 'ratings.sqlite3'}")
    app = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    app.switch_page("pages/gallery.py").run()
    assert not app.exception and not app.error
    assert app.title[0].value == "Style Gallery" and app.get("plotly_chart")


@pytest.fixture
def models_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """An empty models directory for the page (and the model list cached by the UI forgotten before and after)."""
    monkeypatch.setenv("MUSEGEN_DB_URL", f"sqlite:///{tmp_path / 'ratings.sqlite3'}")
    monkeypatch.setenv("MUSEGEN_MODELS_DIR", str(tmp_path / "models"))
    st.cache_data.clear()
    yield tmp_path / "models"
    st.cache_data.clear()


def _install(folder: Path, styles: tuple[str, ...]) -> None:
    model = tiny(styles)
    save_checkpoint(model, model.config, folder, "# tiny\n", {})


def test_the_page_offers_only_style_conditioned_models(models_dir: Path) -> None:
    _install(models_dir / "plain", ())
    _install(models_dir / "styled", ("irish", "bach_chorale"))
    at = AppTest.from_file(str(ROOT / "pages" / "gallery.py"), default_timeout=120).run()
    assert not at.exception and not at.error
    assert next(s for s in at.selectbox if s.label == "Model").options == ["styled (v1, lstm)"]
    assert len(at.get("plotly_chart")) == 2 and len(at.get("audio")) == 3


def test_without_a_style_conditioned_model_the_page_says_so(models_dir: Path) -> None:
    _install(models_dir / "plain", ())
    at = AppTest.from_file(str(ROOT / "pages" / "gallery.py"), default_timeout=120).run()
    assert not at.exception and len(at.error) == 1 and "No style-conditioned model" in at.error[0].value
    assert not at.get("plotly_chart")
