"""Engraved notation (`musegen_core.render.notation`): key and time signatures, pickups, projector size, the cap.

Verovio's SVG is checked through its classes (`keySig`, `meterSig`, `measure`, `note`, `staff`) and the SMuFL
glyphs it draws (`<use xlink:href="#E262-…">`): E262 is a sharp, E260 a flat, E080 + n the time-signature digit n, E08A
the common-time C.
"""

from __future__ import annotations

import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import music21
import pytest

from musegen_core.errors import FormatError
from musegen_core.formats import musicxml as musicxml_format
from musegen_core.music import Key, Note, Part, Piece, TimeSignature
from musegen_core.render import notation
from musegen_core.render.notation import Engraving, bar_count, engrave_musicxml, first_bars, notation_svg

SVG = "{http://www.w3.org/2000/svg}"
XLINK_HREF = "{http://www.w3.org/1999/xlink}href"
SHARP, FLAT, COMMON_TIME = "E262", "E260", "E08A"
DATA = Path(__file__).parent / "data"
BACH_CHORALE = Path(music21.__file__).parent / "corpus" / "bach" / "bwv66.6.mxl"  # F♯ minor: three sharps
DIVISIONS = 4  # per quarter note in the hand-written MusicXML below
NOTE_TYPES = {1: "16th", 2: "eighth", 3: "eighth", 4: "quarter", 6: "quarter", 8: "half", 12: "half", 16: "whole"}


# ---------------------------------------------------------------------------------------------------------------
# hand-written MusicXML and SVG inspection


def musicxml(measures: list[list[tuple[str, int]]], *, fifths: int = 0, time_sig: str = "4/4", pickup: bool = False):
    """One-part MusicXML: each measure a list of (pitch like "F#5"/"Bb4", duration in 16ths); the first measure is
    an implicit pickup measure (number 0) when `pickup`."""
    beats, beat_type = time_sig.split("/")
    attributes = (
        f"<attributes><divisions>{DIVISIONS}</divisions><key><fifths>{fifths}</fifths></key>"
        f"<time><beats>{beats}</beats><beat-type>{beat_type}</beat-type></time>"
        "<clef><sign>G</sign><line>2</line></clef></attributes>"
    )
    body = []
    for index, notes in enumerate(measures):
        number = index if pickup else index + 1
        implicit = ' implicit="yes"' if pickup and index == 0 else ""
        content = "".join(_note(pitch, sixteenths) for pitch, sixteenths in notes)
        body.append(f'<measure number="{number}"{implicit}>{attributes if index == 0 else ""}{content}</measure>')
    return (
        '<?xml version="1.0" encoding="UTF-8"?><score-partwise version="4.0">'
        '<part-list><score-part id="P1"><part-name>Melody</part-name></score-part></part-list>'
        f'<part id="P1">{"".join(body)}</part></score-partwise>'
    ).encode()


def _note(pitch: str, sixteenths: int) -> str:
    step, octave = pitch[0], pitch[-1]
    alter = {"#": 1, "b": -1}.get(pitch[1:-1], 0)
    dot = "<dot/>" if sixteenths in (3, 6, 12) else ""
    return (
        f"<note><pitch><step>{step}</step>{f'<alter>{alter}</alter>' if alter else ''}<octave>{octave}</octave>"
        f"</pitch><duration>{sixteenths}</duration><type>{NOTE_TYPES[sixteenths]}</type>{dot}</note>"
    )


def elements(svg: str, css_class: str) -> list[ET.Element]:
    return [element for element in ET.fromstring(svg).iter(f"{SVG}g") if element.get("class") == css_class]


def glyphs(element: ET.Element) -> list[str]:
    """SMuFL code points drawn inside `element`, in order ("E262", …)."""
    return [use.get(XLINK_HREF, "").lstrip("#").split("-")[0] for use in element.iter(f"{SVG}use")]


def key_accidentals(svg: str) -> list[str]:
    """Glyphs of the first key signature."""
    return glyphs(elements(svg, "keySig")[0])


def meter_digits(svg: str) -> list[str]:
    """The first time signature's digits, top to bottom ("6", "8")."""
    return [str(int(code, 16) - 0xE080) for code in glyphs(elements(svg, "meterSig")[0])]


def staff_space_px(svg: str) -> float:
    """Distance between two staff lines in pixels: SVG units × (pixel width / viewBox width)."""
    root = ET.fromstring(svg)
    inner = next(element for element in root.iter(f"{SVG}svg") if element.get("class") == "definition-scale")
    px_per_unit = float(root.get("width", "").removesuffix("px")) / float(inner.get("viewBox", "").split()[2])
    # each staff line is a path "M<x1> <y> L<x2> <y>"
    ys = sorted(float(path.get("d", "").split()[1]) for path in elements(svg, "staff")[0].findall(f"{SVG}path"))
    assert len(ys) == 5
    return (ys[1] - ys[0]) * px_per_unit


def melody_bars(bars: int, per_bar: int = 4) -> list[list[tuple[str, int]]]:
    """`bars` measures of 4/4, each `per_bar` equal notes walking up and down a D-major scale."""
    scale = ["D5", "E5", "F#5", "G5", "A5", "B5", "C#6", "D6"]
    return [[(scale[(bar + i) % len(scale)], 16 // per_bar) for i in range(per_bar)] for bar in range(bars)]


# ---------------------------------------------------------------------------------------------------------------
# engrave_musicxml


def test_four_four_in_d_major_has_two_sharps_and_a_four_four_meter() -> None:
    engraving = engrave_musicxml(musicxml(melody_bars(2), fifths=2, time_sig="4/4"))
    assert len(engraving.pages) == 1
    assert key_accidentals(engraving.pages[0]) == [SHARP, SHARP]
    assert meter_digits(engraving.pages[0]) == ["4", "4"]
    assert (engraving.bars_shown, engraving.bars_total, engraving.note) == (2, 2, "")


def test_engraving_works_in_a_worker_thread_as_the_app_runs_it() -> None:
    """Streamlit runs pages outside the main thread, where verovio's per-thread resource path is unset."""
    result: list[Engraving] = []
    worker = threading.Thread(target=lambda: result.append(engrave_musicxml(musicxml(melody_bars(2), fifths=2))))
    worker.start()
    worker.join()
    assert result and key_accidentals(result[0].pages[0]) == [SHARP, SHARP]


def test_six_eight_in_e_flat_major_has_three_flats_and_a_six_eight_meter() -> None:
    bars = [[("Eb5", 6), ("G5", 6)], [("Bb4", 2), ("C5", 2), ("D5", 2), ("Eb5", 6)]]
    svg = engrave_musicxml(musicxml(bars, fifths=-3, time_sig="6/8")).pages[0]
    assert key_accidentals(svg) == [FLAT, FLAT, FLAT]
    assert meter_digits(svg) == ["6", "8"]
    assert len(elements(svg, "note")) == 6


def test_pickup_bar_is_engraved_as_its_own_short_bar() -> None:
    bars = [[("D5", 4)], [("G5", 8), ("B5", 4)], [("A5", 12)]]
    engraving = engrave_musicxml(musicxml(bars, fifths=1, time_sig="3/4", pickup=True))
    svg = engraving.pages[0]
    measures = [ET.tostring(measure, encoding="unicode") for measure in elements(svg, "measure")]
    assert [len(elements(measure, "note")) for measure in measures] == [1, 2, 1]
    assert not elements(measures[0], "rest")
    assert engraving.bars_shown == engraving.bars_total == 3
    assert key_accidentals(svg) == [SHARP] and meter_digits(svg) == ["3", "4"]


def test_compressed_mxl_from_music21s_corpus() -> None:
    engraving = engrave_musicxml(BACH_CHORALE.read_bytes())
    svg = engraving.pages[0]
    assert key_accidentals(svg) == [SHARP] * 3
    assert glyphs(elements(svg, "meterSig")[0]) == [COMMON_TIME]
    assert len(elements(svg, "staff")) >= 4  # soprano, alto, tenor, bass
    assert engraving.bars_total == 10 and not engraving.capped


def test_hand_written_fixture_with_two_parts_and_a_grace_note() -> None:
    engraving = engrave_musicxml((DATA / "waltz.musicxml").read_bytes())
    assert engraving.bars_total == engraving.bars_shown > 0
    assert key_accidentals(engraving.pages[0]) == [SHARP]


def test_projector_size_doubles_the_staff_at_the_same_page_width() -> None:
    xml = musicxml(melody_bars(8), fifths=2)
    screen = engrave_musicxml(xml, width_px=1000).pages[0]
    projector = engrave_musicxml(xml, width_px=1000, projector=True).pages[0]
    assert ET.fromstring(screen).get("width") == ET.fromstring(projector).get("width") == "1000px"
    assert staff_space_px(screen) == pytest.approx(18 * notation.SCREEN_SCALE / 100)  # 7.2 px
    assert staff_space_px(projector) == pytest.approx(18 * notation.PROJECTOR_SCALE / 100)  # 14.4 px
    assert len(elements(projector, "system")) > len(elements(screen, "system"))  # fewer bars per line


def test_a_long_piece_is_capped_to_its_first_bars_with_a_note() -> None:
    started = time.perf_counter()
    engraving = engrave_musicxml(musicxml(melody_bars(300), fifths=2))
    assert time.perf_counter() - started < 10
    assert (engraving.bars_shown, engraving.bars_total) == (notation.MAX_BARS, 300)
    assert engraving.capped
    assert engraving.note == f"Showing the first {notation.MAX_BARS} of 300 bars."
    assert sum(len(elements(page, "measure")) for page in engraving.pages) == notation.MAX_BARS


def test_a_dense_piece_is_capped_by_its_note_count() -> None:
    engraving = engrave_musicxml(musicxml(melody_bars(200, per_bar=16)))
    assert engraving.bars_shown == notation.MAX_NOTES // 16  # 125 bars of 16 sixteenths = 2,000 notes
    assert sum(len(elements(page, "note")) for page in engraving.pages) == notation.MAX_NOTES


def test_sixty_four_bars_engrave_quickly() -> None:
    xml = musicxml(melody_bars(64, per_bar=8), fifths=2)
    started = time.perf_counter()
    engraving = engrave_musicxml(xml)
    assert time.perf_counter() - started < 5  # about 0.05 s on one core
    assert engraving.bars_shown == 64 and not engraving.capped


def test_nothing_is_printed(capfd: pytest.CaptureFixture[str]) -> None:
    engrave_musicxml(b'<score-partwise version="4.0"><part-list/></score-partwise>')
    engrave_musicxml((DATA / "waltz.musicxml").read_bytes())
    assert capfd.readouterr() == ("", "")


@pytest.mark.parametrize("xml", [b"not xml at all", b"<html><body/></html>", b'<!DOCTYPE x [<!ENTITY a "b">]><x/>'])
def test_what_is_not_musicxml_is_refused(xml: bytes) -> None:
    with pytest.raises(FormatError):
        engrave_musicxml(xml)


@pytest.mark.parametrize("width_px", [10, 100_000])
def test_absurd_widths_are_refused(width_px: int) -> None:
    with pytest.raises(ValueError, match="width_px"):
        engrave_musicxml(musicxml(melody_bars(1)), width_px=width_px)


# ---------------------------------------------------------------------------------------------------------------
# Piece → notation


def _piece(bars: int, *, per_bar: int = 4, pickup: float = 0.0, meter: TimeSignature | None = None) -> Piece:
    meter = meter or TimeSignature(4, 4)
    step = meter.bar_beats / per_bar
    notes = [Note(62 + i % 12, pickup + i * step, step) for i in range(bars * per_bar)]
    if pickup:
        notes.insert(0, Note(57, 0.0, pickup))
    return Piece(parts=(Part("Melody", tuple(notes)),), time_signature=meter, key=Key(2), pickup_beats=pickup)


@pytest.mark.parametrize(("bars", "pickup"), [(0, 0.0), (1, 0.0), (5, 0.0), (3, 1.0), (3, 2.5)])
def test_bar_count_matches_the_piece(bars: int, pickup: float) -> None:
    piece = _piece(bars, pickup=pickup)
    assert bar_count(piece) == piece.bar_count()


def test_first_bars_cuts_at_the_bar_line_and_clips_held_notes() -> None:
    piece = Piece(
        parts=(Part("m", (Note(60, 0, 1), Note(62, 1, 2.5), Note(64, 3.5, 1), Note(65, 5.5, 1), Note(67, 6, 1))),),
        pickup_beats=2.0,
    )
    cut = first_bars(piece, 1)  # the pickup bar ends at beat 2
    assert [(n.pitch, n.start_beats, n.duration_beats) for n in cut.parts[0].notes] == [(60, 0, 1), (62, 1, 1)]
    assert first_bars(piece, 2).parts[0].notes[-2:] == (Note(64, 3.5, 1), Note(65, 5.5, 0.5))  # ends at beat 6


@pytest.fixture
def fake_exporter(monkeypatch: pytest.MonkeyPatch) -> list[Piece]:
    """Stands in for the MusicXML writer: records the pieces it is given and writes each as a simple MusicXML."""
    exported: list[Piece] = []

    def piece_to_musicxml(piece: Piece) -> bytes:
        exported.append(piece)
        return musicxml(melody_bars(piece.bar_count()), fifths=2)

    monkeypatch.setattr(musicxml_format, "piece_to_musicxml", piece_to_musicxml, raising=False)
    return exported


def test_notation_svg_exports_only_the_bars_within_the_cap(fake_exporter: list[Piece]) -> None:
    engraving = notation_svg(_piece(200))
    assert (engraving.bars_shown, engraving.bars_total) == (notation.MAX_BARS, 200)
    assert fake_exporter[0].end_beats == notation.MAX_BARS * 4
    assert engraving.note == f"Showing the first {notation.MAX_BARS} of 200 bars."


def test_notation_svg_caps_a_dense_piece_by_notes(fake_exporter: list[Piece]) -> None:
    engraving = notation_svg(_piece(150, per_bar=32, pickup=1.0))
    # the pickup bar (1 note) + 62 bars of 32 notes = 1,985 notes; the next bar would pass MAX_NOTES
    assert (engraving.bars_shown, engraving.bars_total) == (63, 151)
    assert fake_exporter[0].note_count == 1 + 62 * 32


def test_notation_svg_leaves_a_short_piece_whole(fake_exporter: list[Piece]) -> None:
    piece = _piece(4, pickup=1.0)
    engraving = notation_svg(piece)
    assert fake_exporter == [piece]
    assert (engraving.bars_shown, engraving.bars_total, engraving.note) == (5, 5, "")


# ---------------------------------------------------------------------------------------------------------------
# with the real MusicXML writer (formats.musicxml.piece_to_musicxml, written alongside)

needs_exporter = pytest.mark.skipif(
    not hasattr(musicxml_format, "piece_to_musicxml"),
    reason="formats.musicxml.piece_to_musicxml (Piece → MusicXML) is not written yet",
)


@needs_exporter
@pytest.mark.parametrize(
    ("meter", "key", "accidentals", "digits"),
    [(TimeSignature(4, 4), Key(2, "major"), [SHARP] * 2, ["4", "4"]),
     (TimeSignature(6, 8), Key(0, "minor"), [FLAT] * 3, ["6", "8"]),
     (TimeSignature(3, 4), Key(11, "minor"), [SHARP] * 2, ["3", "4"])],
)  # fmt: skip
def test_pieces_engrave_with_their_key_and_meter(
    meter: TimeSignature, key: Key, accidentals: list[str], digits: list[str]
) -> None:
    melody = Part("Melody", (Note(62, 0, 1), Note(66, 1, 2), Note(69, 3, 3)))
    engraving = notation_svg(Piece((melody,), time_signature=meter, key=key))
    assert key_accidentals(engraving.pages[0]) == accidentals
    assert meter_digits(engraving.pages[0]) == digits


@needs_exporter
def test_a_piece_with_a_pickup_engraves_it() -> None:
    piece = _piece(4, pickup=1.0)
    engraving = notation_svg(piece)
    measures = elements(engraving.pages[0], "measure")
    assert len(measures) == engraving.bars_shown == 5
    pickup_bar = ET.tostring(measures[0], encoding="unicode")
    assert len(elements(pickup_bar, "note")) == 1 and not elements(pickup_bar, "rest")


@needs_exporter
def test_a_sixty_four_bar_melody_engraves_quickly() -> None:
    piece = _piece(64, per_bar=8)
    started = time.perf_counter()
    engraving = notation_svg(piece)
    assert time.perf_counter() - started < 10
    assert engraving.bars_shown == engraving.bars_total == 64


def test_engraving_note_is_empty_unless_capped() -> None:
    assert Engraving(("<svg/>",), 3, 3).note == ""
    assert Engraving(("<svg/>",), 3, 4).note == "Showing the first 3 of 4 bars."
