"""The app in Streamlit's AppTest: upload → piano-roll → generate → audio → download → rate → stored."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile
from streamlit.testing.v1 import AppTest

from musegen_core.feedback import FeedbackStore
from musegen_core.formats.midi import midi_to_piece, piece_to_midi
from musegen_core.music import Note, Part, Piece, TimeSignature

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(not (ROOT / "models" / "lstm-folk").exists(), reason="shipped model missing")


def _melody_midi() -> bytes:
    steps = [67, 69, 71, 72, 74, 72, 71, 69, 67, 71, 74, 79, 78, 76, 74, 72]
    notes = [Note(p, i * 0.5, 0.5) for i, p in enumerate(steps)]
    return piece_to_midi(Piece((Part("Fiddle", tuple(notes), program=40),), 110, TimeSignature(2, 4)))


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    monkeypatch.setenv("MUSEGEN_DB_URL", f"sqlite:///{tmp_path / 'ratings.sqlite3'}")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    return at.run()


def _button(at: AppTest, label: str):
    return next(b for b in at.button if b.label == label)


def _labelled(widgets, label: str):
    return next(w for w in widgets if w.label == label)


def test_first_screen_asks_for_a_melody(app: AppTest) -> None:
    assert not app.exception
    assert app.title[0].value == "Compose"
    assert "Upload a melody" in app.info[0].value


def test_upload_generate_rate_is_stored(app: AppTest, tmp_path: Path) -> None:
    app.file_uploader[0].upload("tune.mid", _melody_midi(), "audio/midi").run()
    assert not app.exception and not app.error
    assert len(app.get("plotly_chart")) == 1 and len(app.get("audio")) == 1

    _labelled(app.slider, "Bars to add").set_value(4)
    _button(app, "Generate").click().run()
    assert not app.exception and not app.error
    assert len(app.get("plotly_chart")) == 2  # the prime; prime + continuation (the analysis tab is not open)
    assert len(app.get("audio")) == 3  # prime; prime + continuation; continuation only
    labels = [button.proto.label for button in app.get("download_button")]
    assert labels == ["MIDI", "MusicXML", "ABC", "WAV", "MP3"]
    engraved = [element.proto.body for element in app.get("html")]
    assert len(engraved) == 2 and all('<img alt="' in body for body in engraved)  # the prime and the take
    svg = base64.b64decode(engraved[1].split('src="data:image/svg+xml;base64,')[1].split('"')[0]).decode()
    assert 'class="meterSig"' in svg and 'class="note"' in svg

    app.feedback[0].set_value(3).run()  # the fourth star
    app.text_input[0].input("lovely ending").run()
    _button(app, "Save rating").click().run()
    assert not app.exception
    assert "saved" in app.success[0].value

    [rating] = FeedbackStore(f"sqlite:///{tmp_path / 'ratings.sqlite3'}").recent()
    assert (rating.stars, rating.comment, rating.prime_name) == (4, "lovely ending", "tune.mid")
    assert rating.controls["bars"] == 4 and rating.seed == 0 and rating.model_name == "lstm-folk"
    generated = midi_to_piece(rating.generated_midi)
    assert generated.note_count > 0 and generated.time_signature == TimeSignature(2, 4)


def test_the_take_s_notation_or_analysis_is_drawn_when_its_tab_is_open(app: AppTest) -> None:
    """Only the open tab of "look closer" is drawn (a rerun when the student switches): the page a student rates on
    stays small for the browser."""
    app.file_uploader[0].upload("tune.mid", _melody_midi(), "audio/midi").run()
    _button(app, "Generate").click().run()
    assert len(app.get("html")) == 2 and len(app.get("plotly_chart")) == 2  # notation: the prime and the take

    app.session_state["look-closer"] = "Analysis"
    app.run()
    assert not app.exception and not app.error
    assert not app.get("html") and len(app.get("plotly_chart")) == 3  # the analysis instead of the notation
    analysis = json.loads(app.get("plotly_chart")[2].proto.spec)
    assert [trace["legendgroup"] for trace in analysis["data"]][:1] == ["Prime"]


def test_same_seed_gives_the_same_take_in_the_app(app: AppTest) -> None:
    app.file_uploader[0].upload("tune.mid", _melody_midi(), "audio/midi").run()
    _button(app, "Generate").click().run()
    first = app.session_state["compose"].take.continuation.generated
    _button(app, "Generate").click().run()
    assert app.session_state["compose"].take.continuation.generated == first
    _labelled(app.number_input, "Seed").set_value(1)
    _button(app, "Generate").click().run()
    assert app.session_state["compose"].take.continuation.generated != first


def test_a_corrupt_upload_gets_one_clear_message(app: AppTest) -> None:
    app.file_uploader[0].upload("broken.mid", b"MThd\x00\x00\x00\x06garbage", "audio/midi").run()
    assert not app.exception
    assert len(app.error) == 1 and "\n" not in app.error[0].value
    assert "Traceback" not in app.error[0].value


@pytest.mark.parametrize("page", ["pages/ratings.py", "pages/models.py"])
def test_other_pages_render(page: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MUSEGEN_DB_URL", f"sqlite:///{tmp_path / 'ratings.sqlite3'}")
    at = AppTest.from_file(str(ROOT / page), default_timeout=30).run()
    assert not at.exception and not at.error


def test_multi_tune_abc_lets_the_user_pick_the_tune(app: AppTest) -> None:
    abc = (ROOT / "tests" / "data" / "three_tunes.abc").read_bytes()
    app.file_uploader[0].upload("three.abc", abc, "text/plain").run()
    assert not app.exception and not app.error
    tune_picker = next(s for s in app.selectbox if s.label == "Tune")
    assert len(tune_picker.options) == 3
    tune_picker.set_value(2).run()
    assert not app.exception and not app.error
    assert next(s for s in app.selectbox if s.label == "Tune").value == 2
    _button(app, "Generate").click().run()
    assert app.session_state["compose"].take.controls["tune_index"] == 2


def test_multi_track_midi_preselects_the_melody_track(app: AppTest) -> None:
    bass = Part("Bass", tuple(Note(36 + (i % 3), i * 1.0, 1.0) for i in range(16)), program=33)
    lead = Part("Lead", tuple(Note(72 + (i % 5), i * 0.5, 0.5) for i in range(32)), program=80)
    midi = piece_to_midi(Piece((bass, lead)))
    app.file_uploader[0].upload("band.mid", midi, "audio/midi").run()
    picker = next(s for s in app.selectbox if s.label == "Melody track")
    assert picker.value == 1 and picker.options[1].startswith("Lead")
    _button(app, "Generate").click().run()
    take = app.session_state["compose"].take
    assert take.controls["part_index"] == 1 and take.continuation.prime.parts[0].name == "Lead"


def test_pages_hold_no_music_or_model_logic() -> None:
    forbidden = ("torch", "music21", "pretty_midi", "mido", "fluidsynth", "sqlalchemy", "numpy")
    for page in [ROOT / "app.py", *(ROOT / "pages").glob("*.py")]:
        imports = [line for line in page.read_text().splitlines() if line.startswith(("import ", "from "))]
        assert not [line for line in imports if any(f" {name}" in line for name in forbidden)], page.name


def test_every_installed_model_and_its_styles_can_be_picked(app: AppTest) -> None:
    app.file_uploader[0].upload("tune.mid", _melody_midi(), "audio/midi").run()
    model_picker = next(s for s in app.selectbox if s.label == "Model")
    assert model_picker.value.name == "lstm-folk"  # the promoted default comes first
    assert {"lstm-cleared", "lstm-folk", "transformer-cleared", "transformer-folk"} <= {
        option.split(" ")[0] for option in model_picker.options
    }
    model_picker.select_index(next(i for i, o in enumerate(model_picker.options) if o.startswith("transformer-folk")))
    app.run()
    style_picker = next(s for s in app.selectbox if s.label == "Style")
    assert "bach chorale" in style_picker.options and not style_picker.disabled
    style_picker.set_value("bach_chorale")
    _button(app, "Generate").click().run()
    assert not app.exception and not app.error
    take = app.session_state["compose"].take
    assert take.model.name == "transformer-folk" and take.controls["style"] == "bach_chorale"


def _pick_model(at: AppTest, name: str) -> None:
    picker = next(s for s in at.selectbox if s.label == "Model")
    picker.select_index(next(i for i, o in enumerate(picker.options) if o.startswith(name))).run()


def test_vae_variations_are_shown_played_and_downloadable(app: AppTest) -> None:
    app.file_uploader[0].upload("tune.mid", _melody_midi(), "audio/midi").run()
    _pick_model(app, "vae-folk")
    next(r for r in app.radio if r.label == "Mode").set_value("Variations").run()
    assert not app.exception and not app.error
    next(s for s in app.slider if s.label == "Variations").set_value(3)
    next(s for s in app.slider if s.label == "Distance").set_value(1.0)
    _button(app, "Make variations").click().run()
    assert not app.exception and not app.error
    latent = app.session_state["compose"].latent
    assert latent.mode == "variations" and len(latent.pieces) == 3 and latent.controls["distance"] == 1.0
    assert len({piece.parts[0].notes for piece in latent.pieces}) == 3  # three different takes
    assert len(app.get("plotly_chart")) == 2  # the prime, then the set
    assert len(app.get("audio")) == 1 + 1 + 3  # prime; all in a row; one per variation
    assert [b.proto.label for b in app.get("download_button")] == ["MIDI"] * 3


def test_vae_interpolation_goes_from_a_to_b(app: AppTest) -> None:
    app.file_uploader[0].upload("tune.mid", _melody_midi(), "audio/midi").run()
    _pick_model(app, "vae-folk")
    next(r for r in app.radio if r.label == "Mode").set_value("Interpolate").run()
    assert "second melody" in app.info[0].value
    low = Piece((Part("Low", tuple(Note(55 + (i % 3), i * 0.5, 0.5) for i in range(16))),), 110, TimeSignature(2, 4))
    app.file_uploader[1].upload("low.mid", piece_to_midi(low), "audio/midi").run()
    next(s for s in app.slider if s.label == "Steps").set_value(4)
    _button(app, "Interpolate").click().run()
    assert not app.exception and not app.error
    latent = app.session_state["compose"].latent
    assert latent.mode == "interpolation" and latent.labels == ["A", "Step 2", "Step 3", "B"]
    assert latent.controls["other_name"] == "low.mid"
    mean_pitch = [sum(n.pitch for n in p.parts[0].notes) / len(p.parts[0].notes) for p in latent.pieces]
    assert mean_pitch[0] > 64 > mean_pitch[-1]  # A is the high fiddle line, B the low one
    assert len(app.get("audio")) == 1 + 1 + 4


def test_continue_only_models_offer_no_latent_modes(app: AppTest) -> None:
    app.file_uploader[0].upload("tune.mid", _melody_midi(), "audio/midi").run()
    assert not [r for r in app.radio if r.label == "Mode"]  # lstm-folk, the default


def test_every_control_reaches_the_take_and_the_music(app: AppTest) -> None:
    app.file_uploader[0].upload("tune.mid", _melody_midi(), "audio/midi").run()
    _labelled(app.selectbox, "Mood").set_value("sad")
    _labelled(app.selectbox, "Key").set_value("D")
    _labelled(app.selectbox, "Mode").set_value("minor")
    _labelled(app.slider, "Stay in key").set_value(1.0)
    _labelled(app.select_slider, "Pitch range of new notes").set_value((62, 79))
    _labelled(app.slider, "Note density").set_value(0.5)
    _labelled(app.slider, "Rhythmic complexity").set_value(-0.4)
    _labelled(app.selectbox, "Style").set_value("irish")
    _labelled(app.selectbox, "Blend with").set_value("german_folk")
    _labelled(app.slider, "Blend").set_value(0.25)
    _labelled(app.number_input, "Tempo (bpm)").set_value(90.0)
    _button(app, "Generate").click().run()
    assert not app.exception and not app.error
    take = app.session_state["compose"].take
    expected = {"valence": -1.0, "energy": -0.5, "key": "D", "mode": "minor", "scale_pull": 1.0, "low": 62, "high": 79}
    expected |= {"density": 0.5, "complexity": -0.4, "style": "irish", "mix_style": "german_folk", "mix": 0.25}
    assert {name: take.controls[name] for name in expected} == expected
    new = take.continuation.generated.parts[0].notes
    assert new and all(62 <= n.pitch <= 79 and (n.pitch - 2) % 12 in (0, 2, 3, 5, 7, 8, 10) for n in new)
    assert take.continuation.joined().tempo_bpm == 90


def test_the_address_bar_presets_controls_and_absurd_ones_are_reported(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MUSEGEN_DB_URL", f"sqlite:///{tmp_path / 'ratings.sqlite3'}")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.query_params.update({"density": "0.7", "seed": "42"})
    at.run()
    at.file_uploader[0].upload("tune.mid", _melody_midi(), "audio/midi").run()
    assert _labelled(at.slider, "Note density").value == 0.7 and _labelled(at.number_input, "Seed").value == 42
    bad = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    bad.query_params.update({"density": "9"})
    bad.run()
    bad.file_uploader[0].upload("tune.mid", _melody_midi(), "audio/midi").run()
    assert not bad.exception and "density must be a number within -1 and 1" in bad.warning[0].value
    assert _labelled(bad.slider, "Note density").value == 0.0


def test_vae_restyle_shows_the_original_and_the_restyled_bars_with_what_survived(app: AppTest) -> None:
    app.file_uploader[0].upload("tune.mid", _melody_midi(), "audio/midi").run()
    _pick_model(app, "vae-folk")
    next(r for r in app.radio if r.label == "Mode").set_value("Restyle").run()
    _labelled(app.selectbox, "Target style").set_value("bach_chorale")
    _labelled(app.slider, "Strength").set_value(2.0)
    _button(app, "Restyle").click().run()
    assert not app.exception and not app.error
    latent = app.session_state["compose"].latent
    assert latent.mode == "restyle" and latent.labels == ["Original", "Restyled: bach chorale"]
    original, restyled = latent.pieces
    assert original.parts[0].notes != restyled.parts[0].notes
    assert "of the melody's contour" in app.info[0].value and "bach chorale:" in app.info[0].value
    assert len(app.get("audio")) == 1 + 1 + 2


def test_controls_a_family_does_not_honour_are_disabled_with_the_reason(app: AppTest) -> None:
    app.file_uploader[0].upload("tune.mid", _melody_midi(), "audio/midi").run()
    _pick_model(app, "gan-folk")
    temperature, top_p = _labelled(app.slider, "Temperature"), _labelled(app.slider, "Top-p")
    assert temperature.disabled and top_p.disabled and "nearly one-hot" in temperature.help
    assert not _labelled(app.slider, "Note density").disabled
    _pick_model(app, "lstm-folk")
    assert not _labelled(app.slider, "Temperature").disabled


def test_several_takes_are_compared_in_one_roll_one_player_and_one_zip(app: AppTest) -> None:
    app.file_uploader[0].upload("tune.mid", _melody_midi(), "audio/midi").run()
    _labelled(app.slider, "Bars to add").set_value(2)
    for seed in (1, 2):
        _labelled(app.number_input, "Seed").set_value(seed)
        _button(app, "Generate").click().run()
    assert not app.exception and not app.error
    assert app.subheader[-1].value == "Compare takes"
    assert _labelled(app.multiselect, "Takes").value == ["Take 1 — lstm-folk, seed 1", "Take 2 — lstm-folk, seed 2"]
    zipped = next(b for b in app.get("download_button") if b.proto.label.startswith("Download all 2 takes"))
    assert zipped.proto.label == "Download all 2 takes (zip: MIDI, MusicXML, ABC, WAV)"
    overlaid = len(app.get("plotly_chart"))
    _labelled(app.toggle, "Overlay in one roll").set_value(False).run()
    assert not app.exception and len(app.get("plotly_chart")) == overlaid  # the same roll, now one panel per take
    assert len(app.get("audio")) == 4  # prime; the take twice; the chosen takes one after another


def test_a_typed_melody_is_shown_and_continued(app: AppTest) -> None:
    _labelled(app.radio, "Melody").set_value("Type it").run()
    _labelled(app.text_area, "Type a melody").input("tempo=90 C4q D4q E4q C4q | E4q F4q G4h").run()
    assert not app.exception and not app.error
    assert any("7 notes" in element.value for element in [*app.markdown, *app.caption])
    assert len(app.get("plotly_chart")) == 1 and len(app.get("audio")) == 1
    _labelled(app.slider, "Bars to add").set_value(2)
    _button(app, "Generate").click().run()
    assert not app.exception and not app.error and len(app.get("audio")) == 3


def test_a_typing_mistake_is_pointed_at(app: AppTest) -> None:
    _labelled(app.radio, "Melody").set_value("Type it").run()
    _labelled(app.text_area, "Type a melody").input("C4q D4q H4q").run()
    assert not app.exception
    assert 'Cannot read "H4q" (token 3, column 9)' in app.error[0].value


def test_a_built_in_tune_is_one_click_away(app: AppTest) -> None:
    _labelled(app.radio, "Melody").set_value("Built-in tunes").run()
    assert not app.exception and not app.error
    assert len(_labelled(app.selectbox, "Tune").options) > 1 and len(app.get("audio")) == 1


def _hummed_wav(pitches: tuple[int, ...] = (60, 62, 64, 65, 67), rate: int = 16_000) -> bytes:
    """Sine tones, an eighth note each at 120 bpm with a short breath between: a clean "hummed" melody."""
    tones = []
    for pitch in pitches:
        t = np.arange(int(0.23 * rate)) / rate
        tones += [0.5 * np.sin(2 * np.pi * 440 * 2 ** ((pitch - 69) / 12) * t), np.zeros(int(0.02 * rate))]
    buffer = io.BytesIO()
    soundfile.write(buffer, np.concatenate([np.zeros(rate // 4), *tones, np.zeros(rate // 4)]), rate, format="WAV")
    return buffer.getvalue()


def test_a_hummed_melody_is_transcribed_and_its_tempo_can_be_fixed(app: AppTest) -> None:
    _labelled(app.radio, "Melody").set_value("Hum or sing").run()
    app.file_uploader[0].upload("hum.wav", _hummed_wav(), "audio/wav").run()
    assert not app.exception and not app.error
    assert any("5 notes" in element.value for element in [*app.markdown, *app.caption])
    tempo = _labelled(app.number_input, "Tempo of the recording (bpm)")
    assert abs(tempo.value - 120) <= 5  # estimated from the onsets
    tempo.set_value(60.0).run()  # the user corrects the tempo: the same notes, quantised again without tracking
    assert not app.exception and not app.error and len(app.get("audio")) >= 2
    assert any("5 notes" in element.value for element in [*app.markdown, *app.caption])


def test_a_recording_that_is_not_audio_gets_one_clear_message(app: AppTest) -> None:
    _labelled(app.radio, "Melody").set_value("Hum or sing").run()
    app.file_uploader[0].upload("hum.wav", b"RIFF not really a wave file", "audio/wav").run()
    assert not app.exception and len(app.error) == 1 and "\n" not in app.error[0].value
