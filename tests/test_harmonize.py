"""Harmonize a user's melody and regenerate chosen bars — the service, `musegen harmonize` and the page (AppTest)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from musegen_core.cli import main
from musegen_core.errors import ControlError
from musegen_core.formats.midi import midi_to_piece, piece_to_midi
from musegen_core.formats.musicxml import musicxml_to_piece
from musegen_core.harmony.service import harmonize_melody, parse_bar_range, regenerate_bars
from musegen_core.harmony.voice_leading import jsb_path
from musegen_core.music import Note, Part, Piece, TimeSignature

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(not (ROOT / "models" / "harmonizer-bach").exists(), reason="shipped model missing")

HYMN = [67, 67, 69, 71, 71, 69, 67, 66, 64, 64, 66, 67, 67, 66, 66, 66]  # quarter notes, G major, 4 bars


def hymn(bars: int = 4) -> Piece:
    notes = tuple(Note(p, float(i), 1.0) for i, p in enumerate((HYMN * 4)[: 4 * bars]))
    return Piece((Part("Melody", notes, program=73),), 90, TimeSignature(4, 4), title="Hymn")


def outside(piece: Piece, first_bar: int, last_bar: int) -> list[tuple[Note, ...]]:
    """Each part's notes that do not lie wholly inside bars first..last (4/4, no pickup)."""
    start, end = 4.0 * (first_bar - 1), 4.0 * last_bar
    return [tuple(n for n in p.notes if not (n.start_beats >= start and n.end_beats <= end)) for p in piece.parts]


@pytest.mark.parametrize("idiom", ["bach", "folk"])
def test_the_melody_stays_note_for_note_under_either_idiom(idiom: str) -> None:
    melody = hymn()
    result = harmonize_melody(melody, idiom, seed=1)
    assert result.parts[0].notes == melody.parts[0].notes
    assert len(result.parts) == (4 if idiom == "bach" else 3)
    assert all(part.notes for part in result.parts)
    assert harmonize_melody(melody, idiom, seed=1) == result  # same seed, same harmony


def test_regenerating_bars_of_a_harmony_leaves_every_other_note_alone() -> None:
    harmony = harmonize_melody(hymn(), "bach", seed=0)
    again = regenerate_bars(harmony, 2, 3, seed=5)
    assert outside(again, 2, 3) == outside(harmony, 2, 3)
    assert again != harmony  # something inside the span changed


def test_regenerating_bars_of_a_melody_rewrites_only_those_bars() -> None:
    melody = hymn()
    again = regenerate_bars(melody, 3, 3, seed=2)
    assert len(again.parts) == 1 and again.parts[0].name == "Melody" and again.parts[0].program == 73
    assert outside(again, 3, 3) == outside(melody, 3, 3)
    assert all(8.0 <= n.start_beats < 12.0 for n in set(again.parts[0].notes) - set(melody.parts[0].notes))


@pytest.mark.parametrize(("text", "expected"), [("5-8", (5, 8)), (" 3 ", (3, 3)), ("2–4", (2, 4))])
def test_bar_ranges_are_read(text: str, expected: tuple[int, int]) -> None:
    assert parse_bar_range(text) == expected


@pytest.mark.parametrize("text", ["", "8-5", "0-2", "a-b", "1-2-3"])
def test_bad_bar_ranges_are_refused_with_the_expected_form(text: str) -> None:
    with pytest.raises(ControlError, match="5-8"):
        parse_bar_range(text)


def test_other_requests_get_clear_messages() -> None:
    with pytest.raises(ControlError, match="one of"):
        harmonize_melody(hymn(), "jazz")
    with pytest.raises(ControlError, match="bars must satisfy"):
        regenerate_bars(harmonize_melody(hymn(), "bach"), 3, 9)
    with pytest.raises(ControlError, match="3 parts"):
        regenerate_bars(harmonize_melody(hymn(), "folk"), 1, 2)


def test_the_command_line_harmonizes_and_regenerates(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    source = tmp_path / "hymn.mid"
    source.write_bytes(piece_to_midi(hymn()))
    assert main(["harmonize", str(source), "--out", str(tmp_path / "satb.mid"), "--seed", "3"]) == 0
    satb = midi_to_piece((tmp_path / "satb.mid").read_bytes())
    assert [part.program for part in satb.parts] == [40, 41, 42, 43]  # a track and an instrument per voice
    assert [n.pitch for n in satb.parts[0].notes] == [n.pitch for n in hymn().parts[0].notes]
    assert main(["harmonize", str(source), "--out", str(tmp_path / "folk.musicxml"), "--style", "folk"]) == 0
    assert len(musicxml_to_piece((tmp_path / "folk.musicxml").read_bytes()).parts) == 3
    assert main(["harmonize", str(tmp_path / "satb.mid"), "--out", str(tmp_path / "infill.mid"),
                 "--bars-to-regenerate", "2-3"]) == 0  # fmt: skip
    infilled = midi_to_piece((tmp_path / "infill.mid").read_bytes())
    assert [[(n.pitch, n.start_beats) for n in notes] for notes in outside(infilled, 2, 3)] == [
        [(n.pitch, n.start_beats) for n in notes] for notes in outside(satb, 2, 3)
    ]
    assert "bars 2–3 regenerated" in capsys.readouterr().out
    assert main(["harmonize", str(source), "--out", str(tmp_path / "x.wav")]) == 1
    assert main(["harmonize", str(source), "--out", str(tmp_path / "x.mid"), "--bars-to-regenerate", "9-2"]) == 1
    assert "--out must end in one of" in capsys.readouterr().err


def test_the_page_harmonizes_plays_and_regenerates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MUSEGEN_DB_URL", f"sqlite:///{tmp_path / 'ratings.sqlite3'}")
    at = AppTest.from_file(str(ROOT / "pages" / "harmonize.py"), default_timeout=120).run()
    assert not at.exception and "Upload" in at.info[0].value
    at.file_uploader[0].upload("hymn.mid", piece_to_midi(hymn()), "audio/midi").run()
    next(b for b in at.button if b.label == "Harmonize").click().run()
    assert not at.exception and not at.error
    roll = at.get("plotly_chart")[0].proto.spec
    assert all(voice in roll for voice in ("Soprano", "Alto", "Tenor", "Bass"))
    assert len(at.get("audio")) == 1
    assert [b.proto.label for b in at.get("download_button")][:2] == ["MIDI", "MusicXML"]
    at.select_slider[0].set_value((2, 3)).run()
    next(b for b in at.button if b.label == "Regenerate bars 2–3").click().run()
    assert not at.exception and not at.error and len(at.get("plotly_chart")) == 1
    next(r for r in at.radio if r.label == "Style").set_value("folk").run()
    next(b for b in at.button if b.label == "Harmonize").click().run()
    assert not at.exception and not at.error
    assert next(b for b in at.button if b.label.startswith("Regenerate")).disabled


@pytest.mark.skipif(not jsb_path().exists(), reason="JSB chorales not in ../shared/datasets")
def test_the_harmonizer_commands_train_and_evaluate(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "harmonizer-tiny"
    train = ["train", "--model", "harmonizer", "--preset", "harmonizer-tiny", "--steps", "3", "--batch", "2",
             "--valid-every", "3", "--out", str(out)]  # fmt: skip
    assert main(train) == 0 and (out / "model.safetensors").is_file()
    report = tmp_path / "nll.json"
    evaluation = ["eval", "--harmonizer", "--model", str(out), "--max-frames", "16", "--orderings", "2",
                  "--out", str(report)]  # fmt: skip
    assert main(evaluation) == 0
    scores = json.loads(report.read_text())
    assert scores["frames_scored"] == 16 and scores["jsb_test_nll"] > 0 and scores["coconet_published_nll"] == 0.57
    assert "nats/frame" in capsys.readouterr().out
