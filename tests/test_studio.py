"""The Compose page's steps without the page: latent-mode takes laid out and joined for playback."""

from __future__ import annotations

import io
import zipfile

from musegen_core.formats.midi import midi_to_piece
from musegen_core.generate import continue_melody
from musegen_core.models.registry import ModelInfo, load_model
from musegen_core.music import Note, Part, Piece, TimeSignature
from musegen_core.render.audio import RenderSettings
from musegen_core.studio import LatentTakes, Take, abilities, downloads, takes_archive


def _melody(pitches: list[int], length: float = 1.0) -> Piece:
    notes = tuple(Note(p, i * length, length) for i, p in enumerate(pitches))
    return Piece((Part("melody", notes, program=73),), 90, TimeSignature(3, 4))


def _takes(pieces: list[Piece], mode: str = "variations") -> LatentTakes:
    info = ModelInfo("vae-test", "vae", "1", "a test VAE", (), commercial_use_cleared=True)
    return LatentTakes(1, mode, tuple(pieces), info, 0, {"tune_index": 0, "part_index": 0}, "a.mid")


def test_laid_out_melodies_follow_each_other_on_bar_lines_with_a_bar_of_rest() -> None:
    one_bar, two_bars = _melody([60, 62, 64]), _melody([67, 65, 64, 62, 60])  # 3/4: 3 beats; 5 beats → 2 bars
    laid = _takes([one_bar, two_bars, one_bar]).laid_out()
    starts = [piece.parts[0].notes[0].start_beats for piece in laid]
    assert starts == [0.0, 6.0, 15.0]  # 1 bar + 1 rest bar; then 2 bars + 1 rest bar
    assert all(piece.pickup_beats == 0 for piece in laid)


def test_in_a_row_holds_every_note_once_in_one_part_with_the_first_melodys_settings() -> None:
    pieces = [_melody([60, 62, 64]), _melody([72, 71]), _melody([55])]
    joined = _takes(pieces).in_a_row()
    assert len(joined.parts) == 1 and joined.note_count == 6
    assert (joined.tempo_bpm, joined.time_signature, joined.parts[0].program) == (90, TimeSignature(3, 4), 73)
    assert [n.pitch for n in joined.parts[0].notes] == [60, 62, 64, 72, 71, 55]


def test_an_empty_take_still_gets_its_bar() -> None:
    silent = Piece((Part("melody", ()),), 90, TimeSignature(3, 4))
    laid = _takes([silent, _melody([60])]).laid_out()
    assert laid[1].parts[0].notes[0].start_beats == 6.0


def test_labels_name_variations_and_interpolation_steps() -> None:
    pieces = [_melody([60])] * 4
    assert _takes(pieces).labels == ["Variation 1", "Variation 2", "Variation 3", "Variation 4"]
    assert _takes(pieces, "interpolation").labels == ["A", "Step 2", "Step 3", "B"]


def test_abilities_name_the_controls_and_modes_a_model_honours():
    styled = ModelInfo("v", "transformer", "1", "", (), commercial_use_cleared=True, styles=("irish",))
    assert "style mix" in abilities(styled) and "Not:" not in abilities(styled)
    vae = ModelInfo("v", "vae", "1", "", (), commercial_use_cleared=True, styles=("irish",))
    assert "Not: top p (the VAE's decoder" in abilities(vae) and "restyle" in abilities(vae)
    plain = ModelInfo("l", "lstm", "1", "", (), commercial_use_cleared=True)
    line = abilities(plain)
    assert line.startswith("Honours: density") and "Not: style, style mix, style strength (this lstm model was" in line
    assert line.endswith("Modes: continue.")


def test_downloads_offer_every_format_and_say_why_abc_is_missing() -> None:
    melody = _melody([60, 62, 64, 65])
    files, left_out = downloads(melody, "take-1", RenderSettings())
    assert [(f.label, f.file_name) for f in files] == [
        ("MIDI", "take-1.mid"), ("MusicXML", "take-1.musicxml"), ("ABC", "take-1.abc"), ("WAV", "take-1.wav"),
        ("MP3", "take-1.mp3"),
    ]  # fmt: skip
    assert left_out == [] and midi_to_piece(files[0].data).parts[0].notes == melody.parts[0].notes
    assert callable(files[4].data)  # the MP3 is encoded when asked for, not with every take
    assert files[3].content()[:4] == b"RIFF" and files[4].content()[:2] == b"\xff\xfb"  # an MPEG-1 layer III frame
    chord = melody.with_parts((Part("chords", (Note(60, 0, 1), Note(64, 0, 1))),))
    files, left_out = downloads(chord, "take-2", RenderSettings())
    assert "ABC" not in [f.label for f in files] and len(left_out) == 1 and left_out[0].startswith("No ABC: ")


def test_the_takes_archive_holds_each_take_as_midi_musicxml_and_wav() -> None:
    info = ModelInfo("lstm-folk", "lstm", "2", "the shipped LSTM", (), commercial_use_cleared=False)
    model = load_model("lstm-folk")
    takes = [
        Take(seed, continue_melody(model, _melody([60, 62, 64, 65]), bars=1, seed=seed), info, seed, {}, "tune.mid")
        for seed in (1, 2)
    ]
    names = zipfile.ZipFile(io.BytesIO(takes_archive(takes, RenderSettings()))).namelist()
    for suffix in (".mid", ".musicxml", ".wav"):
        assert sorted(n for n in names if n.endswith(suffix)) == [
            f"musegen-takes/01-take-1-lstm-folk-seed-1{suffix}", f"musegen-takes/02-take-2-lstm-folk-seed-2{suffix}"
        ]  # fmt: skip
