"""Uploads → `Piece`: MIDI round trips, MusicXML/ABC exact notes and safety checks (the foreign conformance corpus:
tests/test_conformance.py)."""

from __future__ import annotations

import io
import random
import time
import zipfile
from pathlib import Path

import mido
import music21
import pytest

from musegen_core.errors import FormatError
from musegen_core.formats import (
    MAX_NOTES,
    MAX_UPLOAD_BYTES,
    MusicFile,
    default_melody_part,
    describe_part,
    load_piece,
    midi_to_piece,
    open_music_file,
    piece_to_midi,
)
from musegen_core.formats import abc as abc_module
from musegen_core.formats.midi import snap_beats
from musegen_core.music import Key, Note, Part, Piece, TimeSignature

DATA = Path(__file__).parent / "data"
WALTZ_NOTES = [(74, 0.0, 1.0), (67, 1.0, 1.0), (71, 2.0, 0.5), (74, 3.0, 3.0), (67, 6.0, 1.0), (71, 6.0, 1.0)]
WALTZ_NOTES.append((78, 7.0, 3.0))  # F#5: the key signature's sharp


def _notes(part: Part) -> list[tuple[int, float, float]]:
    return [(n.pitch, n.start_beats, n.duration_beats) for n in part.notes]


def _melody(pitches: list[int], name: str = "Melody", program: int = 0, step: float = 1.0) -> Part:
    return Part(name, tuple(Note(p, i * step, step) for i, p in enumerate(pitches)), program=program)


def _song() -> Piece:
    """Two parts with triplets, dotted notes, a chord, varied velocities, a drum part and a non-ASCII name."""
    lead = (
        Note(62, 0.0, 1.5, velocity=100),
        Note(64, 1.5, 0.5, velocity=64),
        *(Note(65 + i, snap_beats(2 + i / 3), snap_beats(1 / 3), velocity=30 + i) for i in range(3)),
        Note(60, 3.0, 3.0),
        Note(67, 3.0, 3.0),
        Note(72, 6.25, 0.25, velocity=127),
    )
    drums = tuple(Note(36 + (i % 2) * 2, i * 0.5, 0.25, velocity=110) for i in range(12))
    parts = (Part("Flöte 1", lead, program=73), Part("Drum Kit", drums, program=0, is_drum=True))
    return Piece(parts, tempo_bpm=96.0, time_signature=TimeSignature(6, 8), key=Key(4, "minor"), title="Song")


def _midi_file(*tracks: list[mido.Message | mido.MetaMessage], ticks_per_beat: int = 480) -> bytes:
    midi = mido.MidiFile(type=1, ticks_per_beat=ticks_per_beat)
    midi.tracks.extend(mido.MidiTrack(track) for track in tracks)
    buffer = io.BytesIO()
    midi.save(file=buffer)
    return buffer.getvalue()


def _mxl(members: dict[str, bytes | str], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def _container(path: str) -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?><container><rootfiles>'
        f'<rootfile full-path="{path}" media-type="application/vnd.recordare.musicxml+xml"/>'
        "</rootfiles></container>"
    )


# --- MIDI --------------------------------------------------------------------------------------------------------


def test_midi_round_trip_keeps_notes_and_metadata_exactly() -> None:
    song = _song()
    again = midi_to_piece(piece_to_midi(song))
    assert [_notes(p) for p in again.parts] == [_notes(p) for p in song.parts]
    assert [n.velocity for n in again.parts[0].notes] == [n.velocity for n in song.parts[0].notes]
    assert [(p.name, p.program, p.is_drum) for p in again.parts] == [("Flöte 1", 73, False), ("Drum Kit", 0, True)]
    assert (again.tempo_bpm, again.time_signature, again.key, again.title) == (
        96.0,
        TimeSignature(6, 8),
        Key(4, "minor"),
        "Song",
    )
    assert piece_to_midi(again) == piece_to_midi(song)


def test_written_midi_is_format_1_at_480_ppq_with_drums_on_channel_10() -> None:
    midi = mido.MidiFile(file=io.BytesIO(piece_to_midi(_song())))
    assert (midi.type, midi.ticks_per_beat, len(midi.tracks)) == (1, 480, 3)
    names = [m.name.encode("latin-1") for t in midi.tracks[1:] for m in t if m.type == "track_name"]
    assert names == ["Flöte 1".encode(), b"Drum Kit"]  # UTF-8 bytes (mido shows meta text as Latin-1)
    channels = [{m.channel for m in t if m.type == "note_on"} for t in midi.tracks[1:]]
    assert channels == [{0}, {9}]
    assert [m.program for m in midi.tracks[1] if m.type == "program_change"] == [73]


@pytest.mark.parametrize("key", [Key(pc, mode) for pc in range(12) for mode in ("major", "minor")], ids=str)
def test_every_key_survives_midi(key: Key) -> None:
    piece = Piece((_melody([60, 62]),), key=key)
    assert midi_to_piece(piece_to_midi(piece)).key == key


def test_midi_tempo_change_does_not_bend_the_beat_grid() -> None:
    notes = []
    for beat in range(8):
        notes += [
            mido.Message("note_on", note=60 + beat, velocity=80),
            mido.Message("note_off", note=60 + beat, time=480),
        ]
    conductor = [
        mido.MetaMessage("set_tempo", tempo=500_000),
        mido.MetaMessage("set_tempo", tempo=1_000_000, time=1920),
    ]
    piece = midi_to_piece(_midi_file(conductor, notes))
    assert _notes(piece.parts[0]) == [(60 + beat, float(beat), 1.0) for beat in range(8)]
    assert piece.tempo_bpm == 120.0


def test_midi_odd_meter_falls_back_to_4_4_and_tempo_is_clamped() -> None:
    conductor = [
        mido.MetaMessage("time_signature", numerator=7, denominator=32),
        mido.MetaMessage("set_tempo", tempo=60_000),  # 1000 bpm
    ]
    piece = midi_to_piece(
        _midi_file(
            conductor, [mido.Message("note_on", note=60), mido.Message("note_off", note=60, time=96)], ticks_per_beat=96
        )
    )
    assert (piece.time_signature, piece.tempo_bpm, piece.pickup_beats) == (TimeSignature(4, 4), 400.0, 0.0)
    assert _notes(piece.parts[0]) == [(60, 0.0, 1.0)]


def test_midi_zero_length_notes_are_dropped_and_unnamed_tracks_get_gm_names() -> None:
    track = [
        mido.Message("program_change", program=40),
        mido.Message("note_on", note=60, velocity=90),
        mido.Message("note_off", note=60),
        mido.Message("note_on", note=62, velocity=90),
        mido.Message("note_off", note=62, time=240),
    ]
    part = midi_to_piece(_midi_file([], track)).parts[0]
    assert (_notes(part), part.name, part.program) == ([(62, 0.0, 0.5)], "Violin", 40)


def test_midi_unknown_chunks_and_trailing_bytes_are_skipped() -> None:
    data = piece_to_midi(Piece((_melody([60, 64, 67]),)))
    header_end = 14
    vendor_chunk = b"XFIH" + (4).to_bytes(4, "big") + b"\x00\x01\x02\x03"
    piece = midi_to_piece(data[:header_end] + vendor_chunk + data[header_end:] + b"\x00\x00")
    assert _notes(piece.parts[0]) == [(60, 0.0, 1.0), (64, 1.0, 1.0), (67, 2.0, 1.0)]


def test_smpte_timed_midi_is_refused_with_a_reason() -> None:
    data = bytearray(piece_to_midi(Piece((_melody([60]),))))
    data[12:14] = bytes([0xE2, 40])  # -30 fps, 40 ticks per frame
    with pytest.raises(FormatError, match="SMPTE"):
        midi_to_piece(bytes(data))


def test_too_many_notes_or_parts_are_refused_naming_the_limit() -> None:
    crowded = Piece((Part("Busy", tuple(Note(60 + i % 12, i * 0.125, 0.125) for i in range(MAX_NOTES + 1))),))
    with pytest.raises(FormatError, match="20,000"):
        midi_to_piece(piece_to_midi(crowded))
    orchestra = Piece(tuple(_melody([60], name=f"P{i}") for i in range(65)))
    with pytest.raises(FormatError, match="at most 64"):
        midi_to_piece(piece_to_midi(orchestra))


def test_drums_only_midi_upload_is_refused() -> None:
    drums = Piece((Part("Kit", (Note(36, 0, 1), Note(38, 1, 1)), is_drum=True),))
    with pytest.raises(FormatError, match="only drum"):
        load_piece(piece_to_midi(drums), "beat.mid")


# --- MusicXML ----------------------------------------------------------------------------------------------------


def test_musicxml_melody_loads_exact_notes_pickup_tempo_meter_key() -> None:
    music_file = open_music_file((DATA / "waltz.musicxml").read_bytes(), "waltz.musicxml")
    assert (music_file.format, music_file.tune_titles) == ("musicxml", ("Test Waltz",))
    piece = music_file.load()
    assert [p.name for p in piece.parts] == ["Flute"]  # the unpitched percussion part is left out
    assert _notes(piece.parts[0]) == WALTZ_NOTES  # grace note skipped, tie merged, chord split, F# from the key
    assert (piece.parts[0].program, piece.pickup_beats, piece.tempo_bpm) == (73, 1.0, 90.0)
    assert (piece.time_signature, piece.key, piece.title) == (TimeSignature(3, 4), Key(7, "major"), "Test Waltz")


def test_mxl_archive_uses_the_rootfile_named_in_container_xml() -> None:
    decoy = (DATA / "waltz.musicxml").read_text().replace("<octave>5</octave>", "<octave>6</octave>")
    data = _mxl(
        {
            "META-INF/container.xml": _container("score/waltz.musicxml"),
            "a_decoy.xml": decoy,
            "score/waltz.musicxml": (DATA / "waltz.musicxml").read_bytes(),
        }
    )
    assert _notes(load_piece(data, "waltz.mxl").parts[0]) == WALTZ_NOTES


def test_mxl_without_container_falls_back_to_the_first_score_file() -> None:
    data = _mxl({"META-INF/": b"", "waltz.xml": (DATA / "waltz.musicxml").read_bytes()})
    assert _notes(load_piece(data, "waltz.mxl").parts[0]) == WALTZ_NOTES


def test_score_timewise_musicxml_is_read_like_partwise() -> None:
    timewise = b"""<?xml version="1.0"?><score-timewise version="4.0">
      <part-list><score-part id="P1"><part-name>Oboe</part-name></score-part></part-list>
      <measure number="1"><part id="P1"><attributes><divisions>1</divisions></attributes>
        <note><pitch><step>E</step><octave>5</octave></pitch><duration>4</duration></note></part></measure>
      <measure number="2"><part id="P1">
        <note><pitch><step>C</step><octave>5</octave></pitch><duration>4</duration></note></part></measure>
    </score-timewise>"""
    piece = load_piece(timewise, "timewise.xml")
    assert (piece.parts[0].name, _notes(piece.parts[0])) == ("Oboe", [(76, 0.0, 4.0), (72, 4.0, 4.0)])


@pytest.mark.parametrize(
    ("members", "match"),
    [
        ({"score.xml": bytes(25 * 2**20)}, "unpack to 25.0 MB"),  # real zeros: ~25 KB compressed
        ({"score.xml": bytes(3 * 2**20)}, "zip bomb"),  # under the size cap, but ~1000:1
        ({"../../etc/score.xml": b"<score-partwise/>"}, "unsafe path"),
        ({f"part{i}.xml": b"<a/>" for i in range(101)}, "at most 100"),
        ({"META-INF/container.xml": _container("score.xml")}, "no MusicXML file"),
    ],
    ids=["huge", "ratio", "path", "members", "no-score"],
)
def test_unsafe_or_empty_mxl_archives_are_refused(members: dict[str, bytes], match: str) -> None:
    with pytest.raises(FormatError, match=match):
        open_music_file(_mxl(members), "bomb.mxl").load()


# --- ABC ---------------------------------------------------------------------------------------------------------


def test_abc_tune_titles_are_listed_without_parsing_music(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("music21 must not parse tunes just to list titles")

    monkeypatch.setattr(music21.converter.subConverters.ConverterABC, "parseData", refuse)
    music_file = open_music_file((DATA / "three_tunes.abc").read_bytes(), "three_tunes.abc")
    assert (music_file.format, music_file.tune_titles) == ("abc", ("Pickup Waltz", "Minor Jig", "Tune 3"))


def test_abc_tunes_load_exact_notes_with_header_and_pickup() -> None:
    music_file = open_music_file((DATA / "three_tunes.abc").read_bytes(), "three_tunes.abc")
    waltz, jig, third = (music_file.load(i) for i in range(3))
    assert _notes(waltz.parts[0]) == [
        (69, 0.0, 1.0),
        (74, 1.0, 1.0),
        (78, 2.0, 0.5),
        (79, 2.5, 0.5),
        (81, 3.0, 1.0),
        (76, 4.0, 2.0),
        (74, 6.0, 1.0),
    ]
    assert (waltz.pickup_beats, waltz.time_signature, waltz.key, waltz.tempo_bpm) == (
        1.0,
        TimeSignature(3, 4),
        Key(2),
        90.0,
    )
    assert _notes(jig.parts[0]) == [
        (60, 0.0, 1.0),
        (64, 0.0, 1.0),
        (69, 0.0, 1.0),
        (71, 1.0, 0.5),
        (72, 1.5, 1.5),
        (69, 3.0, 3.0),
    ]
    assert (jig.pickup_beats, jig.key, jig.tempo_bpm) == (0.0, Key(9, "minor"), 90.0)  # Q:3/8=60 → 90 quarters/min
    assert (third.title, third.key) == ("Tune 3", Key(5))  # untitled tune: titled after its place in the file
    assert _notes(third.parts[0]) == [(65, 0.0, 1.0), (69, 1.0, 2.0), (72, 3.0, 1.0)]  # A-|A: tied over the bar


def test_abc_without_x_line_is_one_tune() -> None:
    music_file = open_music_file(b"T:Solo\nM:4/4\nL:1/4\nK:G\nG A B c|d4|]\n", "solo.abc")
    assert music_file.tune_titles == ("Solo",)
    assert [n.pitch for n in music_file.load().parts[0].notes] == [67, 69, 71, 72, 74]


def test_overlong_abc_tune_is_refused_before_music21_parses_it(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a tune this long takes music21 minutes")

    monkeypatch.setattr(music21.converter.subConverters.ConverterABC, "parseData", refuse)
    bars = "|".join("CDEF GABc" for _ in range(250))  # 2,000 notes
    with pytest.raises(FormatError, match="at most 1,500 notes"):
        load_piece(f'X:1\nT:Long\nM:4/4\nL:1/8\nK:C\n"Am"{bars}|]\n'.encode(), "long.abc")


def test_musicxml_with_too_many_notes_is_refused_before_music21_parses_it() -> None:
    note = "<note><pitch><step>C</step><octave>4</octave></pitch><duration>1</duration></note>"
    measures = "".join(f'<measure number="{m}">{note * 4}</measure>' for m in range(1, MAX_NOTES // 4 + 2))
    xml = (
        f'<score-partwise><part-list><score-part id="P1"/></part-list><part id="P1">{measures}</part></score-partwise>'
    )
    started = time.perf_counter()
    with pytest.raises(FormatError, match="at most 20,000"):
        load_piece(_mxl({"big.xml": xml}), "big.mxl")
    assert time.perf_counter() - started < 2


@pytest.mark.parametrize("index", [-1, 3])
def test_tune_index_out_of_range_is_a_format_error(index: int) -> None:
    music_file = open_music_file((DATA / "three_tunes.abc").read_bytes(), "three_tunes.abc")
    with pytest.raises(FormatError, match="0 to 2"):
        music_file.load(index)


def test_music21_never_parses_from_a_path(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("parsing from a path would read or write music21's pickle cache")

    monkeypatch.setattr(music21.converter, "parse", refuse)
    monkeypatch.setattr(music21.converter.Converter, "parseFile", refuse)
    assert load_piece((DATA / "waltz.musicxml").read_bytes(), "waltz.musicxml").note_count == 7
    assert load_piece((DATA / "three_tunes.abc").read_bytes(), "three_tunes.abc", 1).note_count == 6


# --- upload checks, melody choice, labels ------------------------------------------------------------------------


def _corrupted_uploads() -> list[object]:
    files = [(path.name, path.read_bytes()) for path in sorted((DATA / "corrupted").iterdir())]
    files.append(("huge.mid", b"MThd" + bytes(MAX_UPLOAD_BYTES)))
    files.append(("score.krn", b"**kern\n4c\n*-\n"))
    files.append(("notes.txt", b"X:1\nK:C\nCDEF|\n"))
    files.append(("fake.mxl", b"PK\x03\x04 not really a zip archive"))
    files.append(("random.mid", random.Random(7).randbytes(512)))
    return [pytest.param(name, data, id=name) for name, data in files]


@pytest.mark.parametrize(("filename", "data"), _corrupted_uploads())
def test_corrupted_uploads_raise_one_line_format_errors(filename: str, data: bytes) -> None:
    with pytest.raises(FormatError) as caught:
        load_piece(data, filename)
    message = str(caught.value)
    assert message.strip() and "\n" not in message, message


def test_xml_declaring_entities_is_refused_before_parsing() -> None:
    with pytest.raises(FormatError, match="ENTITY"):
        load_piece((DATA / "corrupted" / "entity.xml").read_bytes(), "entity.xml")
    utf16 = (DATA / "corrupted" / "entity.xml").read_text().replace("UTF-8", "UTF-16").encode("utf-16")
    with pytest.raises(FormatError, match="ENTITY"):
        load_piece(utf16, "entity.musicxml")


def _timewise(parts: str) -> bytes:
    measure = f'<measure number="1">{parts}</measure>'
    return f'<?xml version="1.0"?><score-timewise><part-list/>{measure}</score-timewise>'.encode()


@pytest.mark.parametrize(
    ("xml", "message"),
    [
        (_timewise("<part id='P'>" * 5000 + "</part>" * 5000), "nests its elements more than 64 levels"),
        (_timewise("".join(f"<part id='P{i}'/>" for i in range(65))), "65 parts; MuseGen reads at most 64"),
        (b'<?xml version="1.0" encoding="x-no-such"?><score-partwise/>', "text encoding MuseGen cannot read"),
    ],
    ids=["deeply nested", "too many parts", "unknown encoding"],
)
def test_xml_that_would_take_music21_minutes_is_refused_at_once(xml: bytes, message: str) -> None:
    started = time.perf_counter()
    with pytest.raises(FormatError, match=message):
        load_piece(xml, "score.musicxml")
    assert time.perf_counter() - started < 1.0


def test_abc_reading_skips_music21s_rebarring_without_changing_a_note() -> None:
    """music21's `reBar` (replaced by `formats.abc._no_rebar`: it hung on fuzzed tunes) only moves bar lines."""
    from music21.abcFormat import translate

    text = (DATA / "three_tunes.abc").read_bytes()
    ours = [load_piece(text, "t.abc", index) for index in range(3)]
    translate.reBar, stand_in = abc_module._MUSIC21_REBAR, translate.reBar
    try:
        music21s = [load_piece(text, "t.abc", index) for index in range(3)]
    finally:
        translate.reBar = stand_in
    assert ours == music21s and stand_in is abc_module._no_rebar


def test_an_abc_tune_without_meter_or_unit_length_reads_in_eighths() -> None:
    piece = load_piece(b"X:1\nT:Bare\nK:G\nGAB d2|\n", "bare.abc")
    assert [(n.pitch, n.start_beats, n.duration_beats) for n in piece.parts[0].notes] == [
        (67, 0.0, 0.5),
        (69, 0.5, 0.5),
        (71, 1.0, 0.5),
        (74, 1.5, 1.0),
    ]


def test_content_wins_over_a_wrong_extension() -> None:
    data = piece_to_midi(Piece((_melody([60, 62]),)))
    assert open_music_file(data, "melody.xml").format == "midi"
    assert load_piece((DATA / "waltz.musicxml").read_bytes(), "waltz.mxl").note_count == 7


def test_default_melody_part_prefers_the_highest_top_line_over_busier_bass() -> None:
    bass = _melody([36, 43, 36, 43, 41, 48, 41, 48, 36, 43], name="Bass", program=33)
    tune = _melody([72, 74, 76, 79, 76, 74], name="Track 2", program=0)
    piece = midi_to_piece(piece_to_midi(Piece((bass, tune))))
    assert default_melody_part(piece) == 1


def test_default_melody_part_names_beat_pitch_and_drums_and_tiny_parts_are_ignored() -> None:
    pad = _melody([84, 86, 88, 91, 88], name="Strings High")
    vocal = _melody([60, 62, 64, 65, 67], name="Lead Vocal")
    drums = Part("Drums", tuple(Note(42, i * 0.5, 0.5) for i in range(16)), is_drum=True)
    assert default_melody_part(Piece((drums, pad, vocal))) == 2
    assert default_melody_part(Piece((drums, _melody([40] * 8, name="Bass"), _melody([96, 98], name="Bell")))) == 1
    assert default_melody_part(Piece((drums,))) == 0


def test_describe_part_labels() -> None:
    assert describe_part(_melody([55, 88, 60], name="Violin")) == "Violin — 3 notes, G3–E6"
    assert describe_part(Part("Kit", (Note(36, 0, 1),), is_drum=True)) == "Kit — 1 note, drums"
    assert describe_part(Part("Empty")) == "Empty — no notes"


def test_music_file_is_a_frozen_value_with_a_short_repr() -> None:
    music_file = open_music_file(piece_to_midi(Piece((_melody([60]),))), "tiny.mid")
    assert isinstance(music_file, MusicFile) and "MThd" not in repr(music_file)
    assert music_file.load().title == "tiny"  # no title in the file: the file name stands in
