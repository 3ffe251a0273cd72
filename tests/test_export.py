"""Exports: MIDI laid out for DAWs, MusicXML/.mxl and ABC written and read back equal, the takes zip, the CLI call."""

from __future__ import annotations

import io
import json
import os
import zipfile
from dataclasses import replace
from pathlib import Path

import mido
import music21
import pytest

from musegen_core.errors import FormatError, MusegenError
from musegen_core.formats import load_piece, open_music_file
from musegen_core.formats.abc import piece_to_abc
from musegen_core.formats.export import EXPORT_FORMATS, TAKES_FOLDER, export_file, export_piece, takes_zip
from musegen_core.formats.midi import piece_to_midi
from musegen_core.formats.musicxml import piece_to_musicxml, piece_to_mxl
from musegen_core.formats.notation import quantised
from musegen_core.formats.spelling import key_name, spell
from musegen_core.music import Key, Note, Part, Piece, TimeSignature

DATA = Path(__file__).parent / "data"
GALLERY = Path(__file__).resolve().parents[1] / "musegen_core" / "data" / "gallery.abc"
FILE_NAMES = {"midi": "take.mid", "musicxml": "take.musicxml", "mxl": "take.mxl", "abc": "take.abc"}


def _part(notes: list[tuple], name: str = "Melody", program: int = 0, is_drum: bool = False) -> Part:
    """A part from (pitch, start, duration[, velocity]) tuples."""
    return Part(name, tuple(Note(*note) for note in notes), program=program, is_drum=is_drum)


def _upbeat() -> Piece:
    """4/4 in G with a one-beat pickup, a rest, a note tied over a bar line, and F natural then F# in one bar."""
    notes = [(67, 0.0, 0.5, 80), (69, 0.5, 0.5, 84)]  # the pickup
    notes += [(71, 1.0, 1.0, 96), (74, 2.0, 0.75), (72, 2.75, 0.25, 70), (71, 3.5, 2.5, 100)]  # rest at 3, tie at 5
    notes += [(69, 6.0, 1.0), (66, 7.0, 1.0), (67, 8.0, 1.0)]
    notes += [(65, 9.0, 2.0), (66, 11.0, 1.0)]  # last bar ends with a rest
    return Piece((_part(notes, "Whistle", 78),), 100.0, TimeSignature(4, 4), Key(7), "Upbeat", pickup_beats=1.0)


def _jig() -> Piece:
    """6/8 in D (its tempo is a whole number of dotted quarters), a 16th, a dotted eighth and a rest."""
    notes = [(62, 0.0, 0.5), (66, 0.5, 0.5), (69, 1.0, 0.5), (74, 1.5, 1.5)]
    notes += [(73, 3.0, 1.0), (71, 4.0, 0.5), (69, 4.5, 0.5), (67, 5.25, 0.25), (66, 6.0, 3.0)]
    return Piece((_part(notes, "Fiddle", 40),), 108.0, TimeSignature(6, 8), Key(2), "Jig")


def _lament() -> Piece:
    """3/4 in D minor with an eighth pickup: C# (raised seventh), B natural then Bb in one bar, Eb, a low D."""
    notes = [(69, 0.0, 0.5)]
    notes += [(74, 0.5, 1.0), (73, 1.5, 0.5), (74, 2.0, 0.5), (70, 2.5, 1.0)]
    notes += [(71, 3.5, 0.5), (70, 4.0, 0.5), (69, 4.5, 1.0), (63, 5.5, 1.0)]
    notes += [(62, 6.5, 1.5), (61, 8.0, 0.5), (50, 8.5, 1.0)]
    return Piece((_part(notes),), 84.0, TimeSignature(3, 4), Key(2, "minor"), "Lament", pickup_beats=0.5)


def _duet() -> Piece:
    """2/4 in Bb, two parts: triplets, a chord with a longer note under it (two voices), varied velocities."""
    violin = [(70, 0.0, 1 / 3, 70), (72, 1 / 3, 1 / 3, 75), (74, 2 / 3, 1 / 3, 80), (75, 1.0, 1.0, 85)]
    violin += [(65, 2.0, 1.0, 60), (70, 2.0, 1.0, 60), (62, 2.0, 2.0, 50), (77, 3.0, 1.0, 99)]
    cello = [(46, 0.0, 2.0, 70), (53, 2.0, 1.0, 80), (46, 3.0, 1.0, 90)]
    parts = (_part(violin, "Violin", 40), _part(cello, "Cello", 42))
    return Piece(parts, 72.0, TimeSignature(2, 4), Key(10), "Duet")


MELODIES = {"upbeat": _upbeat, "jig": _jig, "lament": _lament}
PIECES = {**MELODIES, "duet": _duet}


def _shipped() -> dict[str, Piece]:
    """The melodies shipped with the tests and the gallery, read as an upload would be."""
    files = [(DATA / "waltz.musicxml", 0), *((DATA / "three_tunes.abc", i) for i in range(3))]
    files += [(GALLERY, i) for i in range(4)]
    return {f"{path.name}#{index}": load_piece(path.read_bytes(), path.name, index) for path, index in files}


SHIPPED = _shipped()
ALL_PIECES = {**{name: make() for name, make in PIECES.items()}, **SHIPPED}


def _music(piece: Piece) -> tuple:
    """What ABC keeps: title, tempo, meter, key, pickup and every note's pitch, start and length."""
    notes = [(n.pitch, n.start_beats, n.duration_beats) for part in piece.parts for n in part.notes]
    return piece.title, piece.tempo_bpm, piece.time_signature, piece.key, piece.pickup_beats, notes


def _abc_ready(piece: Piece) -> bool:
    try:
        piece_to_abc(piece)
    except FormatError:
        return False
    return True


# --- round trips -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL_PIECES)
def test_midi_round_trip_is_exact(name: str) -> None:
    piece = ALL_PIECES[name]
    assert load_piece(piece_to_midi(piece), "take.mid") == piece


@pytest.mark.parametrize("fmt", ["musicxml", "mxl"])
@pytest.mark.parametrize("name", ALL_PIECES)
def test_musicxml_round_trip_is_exact(name: str, fmt: str) -> None:
    piece = ALL_PIECES[name]
    assert load_piece(export_piece(piece, fmt), FILE_NAMES[fmt]) == piece


@pytest.mark.parametrize("name", [name for name, piece in ALL_PIECES.items() if _abc_ready(piece)])
def test_abc_round_trip_keeps_notes_meter_key_tempo_and_pickup(name: str) -> None:
    piece = ALL_PIECES[name]
    assert _music(load_piece(piece_to_abc(piece).encode(), "take.abc")) == _music(piece)


def test_the_shipped_melodies_that_abc_cannot_hold_are_the_ones_with_chords() -> None:
    refused = sorted(name for name, piece in SHIPPED.items() if not _abc_ready(piece))
    assert refused == ["three_tunes.abc#1", "waltz.musicxml#0"]


def test_drums_survive_midi_and_musicxml() -> None:
    kit = _part([(36, 0.0, 0.5, 110), (42, 0.5, 0.5, 70), (38, 1.0, 1.0, 100)], "Kit", is_drum=True)
    piece = _duet().with_parts((_duet().parts[0], kit))
    assert load_piece(piece_to_midi(piece), "drums.mid") == piece
    assert load_piece(piece_to_musicxml(piece), "drums.musicxml") == piece


# --- MIDI for DAWs -----------------------------------------------------------------------------------------------


def _absolute(track: mido.MidiTrack) -> list[tuple[int, mido.Message]]:
    tick, timed = 0, []
    for message in track:
        tick += message.time
        timed.append((tick, message))
    return timed


def test_midi_has_a_conductor_track_and_one_named_track_per_part() -> None:
    piece = replace(_duet(), pickup_beats=1.0)
    midi = mido.MidiFile(file=io.BytesIO(piece_to_midi(piece)))
    assert (midi.type, midi.ticks_per_beat, len(midi.tracks)) == (1, 480, 3)
    conductor = [(tick, m.type, getattr(m, "numerator", None)) for tick, m in _absolute(midi.tracks[0])]
    assert conductor == [
        (0, "track_name", None),
        (0, "set_tempo", None),
        (0, "time_signature", 1),  # the pickup bar: 1/4
        (0, "key_signature", None),
        (480, "time_signature", 2),  # then 2/4 from the first full bar
        (480, "end_of_track", None),
    ]
    meta = {m.type: m for m in midi.tracks[0]}
    assert (meta["track_name"].name, round(mido.tempo2bpm(meta["set_tempo"].tempo), 3)) == ("Duet", 72.0)
    assert (meta["key_signature"].key, meta["time_signature"].clocks_per_click) == ("Bb", 24)
    for track, (name, program, channel) in zip(midi.tracks[1:], [("Violin", 40, 0), ("Cello", 42, 1)], strict=True):
        assert (track[0].type, track[0].name) == ("track_name", name)
        assert (track[1].type, track[1].program, track[1].channel, track[1].time) == (
            "program_change",
            program,
            channel,
            0,
        )
        assert track[-1].type == "end_of_track"
        assert {m.channel for m in track if m.type.startswith("note")} == {channel}


def test_midi_note_offs_come_before_note_ons_at_the_same_tick() -> None:
    piece = Piece((_part([(60, 0.0, 1.0), (60, 1.0, 1.0), (60, 2.0, 0.5)]),))
    track = mido.MidiFile(file=io.BytesIO(piece_to_midi(piece))).tracks[1]
    notes = [(tick, m.type) for tick, m in _absolute(track) if m.type.startswith("note")]
    assert notes == [
        (0, "note_on"),
        (480, "note_off"),
        (480, "note_on"),
        (960, "note_off"),
        (960, "note_on"),
        (1200, "note_off"),
    ]


@pytest.mark.parametrize(
    ("meter", "pickup", "expected"),
    [
        ((4, 4), 1.0, (1, 4)),
        ((4, 4), 1.5, (3, 8)),
        ((4, 4), 2.0, (2, 4)),
        ((6, 8), 1.0, (2, 8)),
        ((3, 4), 0.25, (1, 16)),
    ],
)
def test_a_pickup_is_written_as_a_bar_of_its_own_meter(meter: tuple[int, int], pickup: float, expected: tuple) -> None:
    piece = Piece(
        (_part([(60, 0.0, pickup), (62, pickup, 1.0)]),), time_signature=TimeSignature(*meter), pickup_beats=pickup
    )
    midi = mido.MidiFile(file=io.BytesIO(piece_to_midi(piece)))
    meters = [(tick, m.numerator, m.denominator) for tick, m in _absolute(midi.tracks[0]) if m.type == "time_signature"]
    assert meters == [(0, *expected), (round(pickup * 480), *meter)]
    assert load_piece(piece_to_midi(piece), "p.mid").pickup_beats == pickup


def test_a_triplet_pickup_is_not_written_to_midi() -> None:
    piece = Piece((_part([(60, 0.0, 1 / 3), (62, 1 / 3, 1.0)]),), pickup_beats=1 / 3)
    again = load_piece(piece_to_midi(piece), "p.mid")
    assert (again.pickup_beats, again.time_signature, again.parts) == (0.0, TimeSignature(4, 4), piece.parts)


def _conductor_file(*meters: tuple[int, int, int]) -> bytes:
    """A MIDI file whose conductor track holds time signatures (tick, numerator, denominator) and one note track."""
    conductor, tick = mido.MidiTrack(), 0
    for at, numerator, denominator in meters:
        conductor.append(
            mido.MetaMessage("time_signature", numerator=numerator, denominator=denominator, time=at - tick)
        )
        tick = at
    notes = mido.MidiTrack([mido.Message("note_on", note=60, velocity=90), mido.Message("note_off", note=60, time=480)])
    buffer = io.BytesIO()
    mido.MidiFile(type=1, ticks_per_beat=480, tracks=[conductor, notes]).save(file=buffer)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("meters", "expected"),
    [
        ([(0, 2, 4), (960, 4, 4)], (TimeSignature(4, 4), 2.0)),  # a DAW's short first bar is a pickup
        ([(0, 3, 8), (720, 6, 8)], (TimeSignature(6, 8), 1.5)),
        ([(0, 4, 4), (1920, 2, 4)], (TimeSignature(4, 4), 0.0)),  # a longer first bar is a meter change
        ([(0, 2, 4), (1920, 4, 4)], (TimeSignature(2, 4), 0.0)),  # two bars of 2/4 first: not a pickup
        ([(0, 3, 4)], (TimeSignature(3, 4), 0.0)),
    ],
)
def test_midi_reads_a_one_bar_shorter_first_meter_as_a_pickup(meters: list, expected: tuple) -> None:
    piece = load_piece(_conductor_file(*meters), "daw.mid")
    assert (piece.time_signature, piece.pickup_beats) == expected


def test_compound_meter_clicks_every_dotted_quarter() -> None:
    midi = mido.MidiFile(file=io.BytesIO(piece_to_midi(_jig())))
    meter = next(m for m in midi.tracks[0] if m.type == "time_signature")
    assert (meter.numerator, meter.denominator, meter.clocks_per_click, meter.notated_32nd_notes_per_beat) == (
        6,
        8,
        36,
        8,
    )


def test_drums_play_on_channel_10_and_beyond_15_melodic_parts_channels_follow_programs() -> None:
    melodic = [_part([(60 + i, 0.0, 1.0)], f"P{i}", program=i % 16) for i in range(17)]  # programs 0-15, then 0 again
    kit = _part([(36, 0.0, 1.0)], "Kit", is_drum=True)
    midi = mido.MidiFile(file=io.BytesIO(piece_to_midi(Piece((kit, *melodic)))))
    channels = [next(m.channel for m in track if m.type == "program_change") for track in midi.tracks[1:]]
    assert channels == [9, 0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 14, 15, 0, 0]  # program 15 wraps; 0 shares
    assert [p.name for p in load_piece(piece_to_midi(Piece((kit, *melodic))), "x.mid").parts] == ["Kit"] + [
        f"P{i}" for i in range(17)
    ]


# --- MusicXML ----------------------------------------------------------------------------------------------------


def test_musicxml_has_an_implicit_pickup_measure_ties_tempo_names_and_programs() -> None:
    xml = piece_to_musicxml(_upbeat()).decode()
    assert '<measure implicit="yes" number="0">' in xml and '<measure implicit="no" number="1">' in xml
    assert xml.count('<tie type="start" />') == 1 and xml.count('<tie type="stop" />') == 1  # 71 over beat 5
    assert "<part-name>Whistle</part-name>" in xml and "<midi-program>79</midi-program>" in xml  # 1-based
    assert '<sound tempo="100" />' in xml and "<fifths>1</fifths>" in xml and "<beats>4</beats>" in xml
    assert "<work-title>Upbeat</work-title>" in xml
    jig = piece_to_musicxml(_jig()).decode()
    assert "<beat-unit-dot />" in jig and "<per-minute>72</per-minute>" in jig  # 108 quarters = 72 dotted quarters


def test_mxl_is_a_zip_with_mimetype_first_and_a_container() -> None:
    with zipfile.ZipFile(io.BytesIO(piece_to_mxl(_jig()))) as archive:
        assert archive.namelist() == ["mimetype", "META-INF/container.xml", "score.musicxml"]
        assert archive.infolist()[0].compress_type == zipfile.ZIP_STORED
        assert archive.read("mimetype") == b"application/vnd.recordare.musicxml"
        assert b'full-path="score.musicxml"' in archive.read("META-INF/container.xml")
        assert archive.read("score.musicxml") == piece_to_musicxml(_jig())


def test_off_grid_notes_are_quantised_to_16ths_and_eighth_triplets() -> None:
    played = _part([(60, 0.02, 0.47), (62, 0.51, 0.3), (64, 0.98, 0.36), (65, 1.32, 0.02), (67, 2.1, 1.93)])
    again = load_piece(piece_to_musicxml(Piece((played,), pickup_beats=0.9)), "played.musicxml")
    expected = [(60, 0.0, 0.5), (62, 0.5, 0.25), (64, 1.0, 1 / 3), (65, 4 / 3, 1 / 3), (67, 2.0, 2.0)]
    assert [(n.pitch, n.start_beats, n.duration_beats) for n in again.parts[0].notes] == expected
    assert again.pickup_beats == 1.0


def test_quantising_keeps_a_piece_on_the_grid_unchanged() -> None:
    """music21's `Stream.quantize` would turn the triplet before the rest into a 16th: ours must not."""
    piece = _duet().with_parts((_part([(60, 0.0, 1 / 3), (62, 1.0, 1 / 3), (64, 2.0, 0.25), (65, 3.5, 0.5)]),))
    assert quantised(piece) == piece
    assert all(quantised(piece) == piece for piece in ALL_PIECES.values())


def test_a_score_too_long_for_music21_is_refused_before_it_is_built() -> None:
    sparse = Piece((_part([(60, 0.0, 1.0), (62, 40_004.0, 1.0)]),))  # 10,002 bars of 4/4, nearly all rests
    with pytest.raises(
        FormatError, match=r"need 10,002 measures of score; MuseGen writes at most 10,000 \(bars × parts\)"
    ):
        piece_to_musicxml(sparse)


def test_pitches_are_spelled_in_the_key() -> None:
    xml = piece_to_musicxml(_lament()).decode()
    assert "<step>C</step>\n          <alter>1</alter>" in xml  # C#, the raised seventh, not Db
    assert "<step>E</step>\n          <alter>-1</alter>" in xml  # Eb, a flat in a flat key


# --- ABC ---------------------------------------------------------------------------------------------------------


def test_abc_minor_tune_is_exact() -> None:
    """Accidentals against Dm's Bb: C# (raised seventh), B natural then Bb in one bar ("=B2_B2"), Eb; a low D."""
    assert piece_to_abc(_lament()) == (
        "X:1\nT:Lament\nM:3/4\nL:1/16\nQ:1/4=84\nK:Dm\nA2 | d4 ^c2d2 B4 | =B2_B2 A4 _E4 | D6^C2 D,4 |]\n"
    )


def test_abc_has_pickup_rest_tie_over_the_bar_line_and_natural_then_sharp() -> None:
    body = piece_to_abc(_upbeat()).split("K:G\n")[1]
    assert body == "G2A2 | B4 d3c z2B6- | B4 A4 F4 G4 | =F8 ^F4 z4 |]\n"


def test_abc_groups_notes_by_dotted_quarter_beats_in_6_8() -> None:
    assert piece_to_abc(_jig()).splitlines()[4:] == ["Q:3/8=72", "K:D", "D2F2A2 d6 | c4B2 A2zGz2 | F12 |]"]


def test_abc_splits_lengths_one_note_cannot_show_and_breaks_lines_every_four_bars() -> None:
    piece = Piece((_part([(72, 0.0, 1.25), (74, 1.25, 2.75), *((60, float(b), 4.0) for b in range(4, 20, 4))]),))
    assert piece_to_abc(piece).split("K:C\n")[1] == "c4-cd8-d3 | C16 | C16 | C16 |\nC16 |]\n"


@pytest.mark.parametrize(
    ("piece", "match"),
    [
        (_duet(), "one melody; this piece has 2 parts"),
        (Piece((_duet().parts[0],)), "chords or overlapping notes"),
        (Piece((_part([(60, 0.0, 1 / 3), (62, 1 / 3, 2 / 3)]),)), "triplets \\(from beat 0\\)"),
        (Piece((_part([(36, 0.0, 1.0)], "Kit", is_drum=True),)), "'Kit' is a drum part"),
        (Piece(()), "no notes"),
    ],
    ids=["two-parts", "chords", "triplets", "drums", "empty"],
)
def test_abc_refuses_what_it_cannot_hold_saying_why(piece: Piece, match: str) -> None:
    with pytest.raises(FormatError, match=match):
        piece_to_abc(piece)


def test_key_names_and_spellings() -> None:
    names = [key_name(Key(pc, mode)) for mode in ("major", "minor") for pc in range(12)]
    assert names == [
        *("C", "Db", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"),
        *("Cm", "C#m", "Dm", "Ebm", "Em", "Fm", "F#m", "Gm", "G#m", "Am", "Bbm", "Bm"),
    ]
    cases = [(71, Key(6)), (71, Key(1)), (61, Key(2, "minor")), (67, Key(8, "minor")), (70, None), (70, Key(4))]
    assert [spell(pitch, key).name for pitch, key in cases] == ["B4", "B4", "C#4", "F##4", "A#4", "A#4"]
    assert spell(71, Key(11, "minor")).name == "B4" and spell(59, Key(3, "minor")).name == "Cb4"


# --- takes zip and the CLI call ---------------------------------------------------------------------------------


def test_takes_zip_holds_every_take_in_every_format_that_fits_and_they_re_import() -> None:
    takes = [("LSTM — take 1!", _upbeat()), ("LSTM — take 1!", _duet()), ("", _jig())]
    archive = zipfile.ZipFile(io.BytesIO(takes_zip(takes, wavs=[b"RIFF-one", None])))
    names = [name.removeprefix(f"{TAKES_FOLDER}/") for name in archive.namelist()]
    assert names == [
        *("01-lstm-take-1.mid", "01-lstm-take-1.musicxml", "01-lstm-take-1.abc", "01-lstm-take-1.wav"),
        *("02-lstm-take-1.mid", "02-lstm-take-1.musicxml"),
        *("03-take.mid", "03-take.musicxml", "03-take.abc"),
        *("README.txt", "manifest.json"),
    ]
    read = {name: archive.read(f"{TAKES_FOLDER}/{name}") for name in names}
    assert read["01-lstm-take-1.wav"] == b"RIFF-one"
    for name, data in read.items():
        if name.endswith((".mid", ".musicxml")):
            assert load_piece(data, name) == takes[int(name[:2]) - 1][1], name
        elif name.endswith(".abc"):
            assert _music(load_piece(data, name)) == _music(takes[int(name[:2]) - 1][1]), name
    manifest = json.loads(read["manifest.json"])
    assert [(t["label"], len(t["files"]), t["bars"], t["key"]) for t in manifest["takes"]] == [
        ("LSTM — take 1!", 4, 4, "G major"),
        ("LSTM — take 1!", 2, 2, "Bb major"),
        ("", 3, 3, "D major"),
    ]
    assert "one melody" in manifest["takes"][1]["abc_skipped"] and manifest["takes"][0]["abc_skipped"] is None
    readme = read["README.txt"].decode()
    assert "  02-lstm-take-1.musicxml\n  (no ABC: ABC export writes one melody" in readme


def test_takes_zip_is_deterministic_and_checks_the_wav_count() -> None:
    takes = [("a", _jig())]
    assert takes_zip(takes) == takes_zip(takes)
    with pytest.raises(ValueError, match="2 WAVs for 1 takes"):
        takes_zip(takes, wavs=[b"", b""])


@pytest.mark.parametrize("fmt", list(EXPORT_FORMATS))
def test_export_file_converts_an_abc_tune(fmt: str, tmp_path: Path) -> None:
    out = tmp_path / FILE_NAMES[fmt]
    written = export_file(DATA / "three_tunes.abc", fmt, out, tune_index=2)
    assert written == SHIPPED["three_tunes.abc#2"]
    assert _music(load_piece(out.read_bytes(), out.name)) == _music(written)
    assert open_music_file(out.read_bytes(), out.name).format == {"mxl": "musicxml"}.get(fmt, fmt)


@pytest.mark.parametrize(
    ("source", "fmt", "tune", "error", "match"),
    [
        ("three_tunes.abc", "wav", 0, FormatError, "cannot export 'wav'; choose one of midi, musicxml, mxl, abc"),
        ("missing.mid", "midi", 0, FormatError, "Cannot read .*missing.mid: No such file"),
        ("three_tunes.abc", "abc", 1, FormatError, "one line of notes; 'Part 1' has chords"),
        ("three_tunes.abc", "midi", 5, FormatError, "tune index 5 does not exist"),
        ("three_tunes.abc", "midi", 0, MusegenError, "Cannot write .*no-such-folder"),
    ],
    ids=["format", "missing", "abc-chords", "tune", "unwritable"],
)
def test_export_file_errors_are_one_line_and_write_nothing(
    source: str, fmt: str, tune: int, error: type, match: str, tmp_path: Path
) -> None:
    out = tmp_path / ("no-such-folder/out" if match.startswith("Cannot write") else "out")
    with pytest.raises(error, match=match) as caught:
        export_file(DATA / source, fmt, out, tune_index=tune)
    assert "\n" not in str(caught.value) and not out.exists()


def test_exports_leave_no_files_and_never_parse_through_music21s_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("parsing from a path would read or write music21's pickle cache")

    monkeypatch.setattr(music21.converter, "parse", refuse)
    monkeypatch.setattr(music21.converter.Converter, "parseFile", refuse)
    monkeypatch.chdir(tmp_path)
    scratch = Path(music21.environment.Environment().getRootTempDir())
    before = set(scratch.iterdir())
    takes_zip([("one", _upbeat()), ("two", _duet())])
    assert os.listdir(tmp_path) == [] and set(scratch.iterdir()) == before
