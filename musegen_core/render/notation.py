"""Engraved notation: MusicXML → SVG pages with verovio (offline; its fonts ship inside the wheel).

`engrave_musicxml` engraves MusicXML bytes (plain or `.mxl`, checked for safety by `formats.musicxml` first);
`notation_svg` engraves a `Piece`, written as MusicXML by `formats.musicxml.piece_to_musicxml`. Both return an
`Engraving`: the SVG pages (usually one: a page is up to `PAGE_HEIGHT` units tall), and how many bars were shown.

Sizes. Verovio draws `scale` % of its natural size, where a staff space (the gap between two staff lines) is 18
px, so a five-line staff is 4 staff spaces tall. Every page is `width_px` wide, its height fits the music.

- `SCREEN_SCALE` (40 %): staff space 7.2 px, staff 28.8 px tall, about the size of a printed part on a laptop.
- `PROJECTOR_SCALE` (80 %, `projector=True`): staff space 14.4 px, staff 57.6 px tall, twice the screen size:
  readable from the back of a classroom on a projected 1280-px-wide screen (fewer bars per line).

Cap. A huge piece engraves only its first bars (`Engraving.note` says so, e.g. "Showing the first 128 of 300
bars."): at most `MAX_BARS` bars, and only the bars whose notes (all parts together) fit in `MAX_NOTES`, but always
at least the first bar. Verovio needs about 0.2 s and writes about 0.8 MB of SVG per 1,000 notes, so a capped
engraving takes under half a second and never hangs the page (the cap is applied before the MusicXML export).

Verovio's log is switched off (it prints warnings about odd MusicXML to stderr); it only reads its resource folder.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, replace
from pathlib import Path

import verovio

from musegen_core.errors import FormatError
from musegen_core.formats.musicxml import musicxml_bytes, parse_musicxml_root
from musegen_core.music import Note, Part, Piece

SCREEN_SCALE = 40
PROJECTOR_SCALE = 80
DEFAULT_WIDTH_PX = 800
WIDTH_PX_RANGE = (200, 4000)
PAGE_HEIGHT = 60_000  # verovio's largest page, in its units (× scale / 100 = pixels): most scores fit on one page
MAX_BARS = 128
MAX_NOTES = 2_000
_BEAT_TOLERANCE = 1e-9


@dataclass(frozen=True)
class Engraving:
    """SVG pages of engraved notation.

    Attributes:
        pages: one SVG document per page, each `width_px` wide (its height fits the music).
        bars_shown: bars engraved (a pickup counts as one).
        bars_total: bars in the music; more than `bars_shown` when the cap cut it short.
    """

    pages: tuple[str, ...]
    bars_shown: int
    bars_total: int

    @property
    def capped(self) -> bool:
        return self.bars_shown < self.bars_total

    @property
    def note(self) -> str:
        """A line to show under the notation when it was capped, else ""."""
        if not self.capped:
            return ""
        return f"Showing the first {self.bars_shown} of {self.bars_total} bars."


def notation_svg(piece: Piece, *, width_px: int = DEFAULT_WIDTH_PX, projector: bool = False) -> Engraving:
    """Engrave a piece: its first bars within the cap, written as MusicXML by `formats.musicxml.piece_to_musicxml`.

    Raises:
        FormatError: the piece could not be written as MusicXML, or verovio could not engrave it.
        ValueError: `width_px` outside `WIDTH_PX_RANGE`.
    """
    from musegen_core.formats.musicxml import piece_to_musicxml  # imported here: the writer is new alongside this

    shown = _bars_within_cap(piece)
    engraving = engrave_musicxml(piece_to_musicxml(first_bars(piece, shown)), width_px=width_px, projector=projector)
    return Engraving(engraving.pages, shown, bar_count(piece))


def engrave_musicxml(xml: bytes, *, width_px: int = DEFAULT_WIDTH_PX, projector: bool = False) -> Engraving:
    """Engrave MusicXML (plain or `.mxl`) as SVG pages, capped to its first bars (see the module docstring).

    Raises:
        FormatError: unsafe or malformed MusicXML, or MusicXML verovio cannot engrave.
        ValueError: `width_px` outside `WIDTH_PX_RANGE`.
    """
    low, high = WIDTH_PX_RANGE
    if not low <= width_px <= high:
        raise ValueError(f"width_px must be within {low} and {high} (received {width_px})")
    root = parse_musicxml_root(musicxml_bytes(xml))
    parts = root.findall("part")
    total = max((len(part.findall("measure")) for part in parts), default=0)
    shown = _measures_within_cap(parts)
    for part in parts:
        for measure in part.findall("measure")[shown:]:
            part.remove(measure)
    pages = _engrave(ET.tostring(root, encoding="unicode"), width_px, PROJECTOR_SCALE if projector else SCREEN_SCALE)
    return Engraving(pages, shown, total)


def bar_count(piece: Piece) -> int:
    """`Piece.bar_count()` by arithmetic (that method steps through every bar line and is slow on long pieces)."""
    bar, pickup, end = piece.time_signature.bar_beats, piece.pickup_beats, piece.end_beats
    if pickup > 0:
        return 1 + max(0, _ceil_bars(end - pickup, bar))
    return max(1, _ceil_bars(end, bar))


def first_bars(piece: Piece, bars: int) -> Piece:
    """The piece up to the end of its `bars`-th bar (a pickup counts as one); notes crossing that bar line end
    there."""
    cut = _bar_start(piece, bars)
    return piece.with_parts([_part_until(part, cut) for part in piece.parts])


def _bars_within_cap(piece: Piece) -> int:
    """Bars to engrave: at most `MAX_BARS`, and none from the bar holding the (`MAX_NOTES` + 1)-th note on, but at
    least one."""
    starts = sorted(note.start_beats for part in piece.parts for note in part.notes)
    bars = min(MAX_BARS, bar_count(piece))
    if len(starts) > MAX_NOTES:
        bars = min(bars, max(1, _bar_index(piece, starts[MAX_NOTES])))
    return bars


def _measures_within_cap(parts: list[ET.Element]) -> int:
    """Measures to engrave: at most `MAX_BARS`, while the notes of the measures so far (all parts) stay within
    `MAX_NOTES`, but at least one."""
    per_measure: list[int] = []
    for part in parts:
        for index, measure in enumerate(part.findall("measure")[:MAX_BARS]):
            if index == len(per_measure):
                per_measure.append(0)
            per_measure[index] += len(measure.findall("note"))
    shown, notes = 0, 0
    for count in per_measure:
        notes += count
        if notes > MAX_NOTES and shown > 0:
            break
        shown += 1
    return shown


def _engrave(xml: str, width_px: int, scale: int) -> tuple[str, ...]:
    verovio.enableLog(verovio.LOG_OFF)
    toolkit = verovio.toolkit()  # a fresh toolkit per call (2 ms): no state shared between the app's threads
    # verovio keeps its resource path per thread and sets it only in the thread that imported it: Streamlit runs
    # pages in other threads, where the default points into the wheel's build folder and no font loads.
    toolkit.setResourcePath(str(Path(verovio.__file__).parent / "data"))
    toolkit.setOptions(
        {
            "inputFrom": "musicxml",
            "scale": scale,
            "pageWidth": round(width_px * 100 / scale),
            "pageHeight": PAGE_HEIGHT,
            "adjustPageHeight": True,
            "breaks": "auto",
            "header": "none",  # the page shows the title itself
            "footer": "none",
        }
    )
    if not toolkit.loadData(xml) or toolkit.getPageCount() == 0:
        raise FormatError("This music could not be engraved as notation (verovio did not accept its MusicXML).")
    return tuple(toolkit.renderToSVG(page) for page in range(1, toolkit.getPageCount() + 1))


def _ceil_bars(beats: float, bar: float) -> int:
    """Whole bars needed to cover `beats` (a hair over a bar line does not start a new bar)."""
    return -int(-(beats - _BEAT_TOLERANCE) // bar)


def _bar_start(piece: Piece, index: int) -> float:
    """Beat at which bar `index` (0-based; a pickup is bar 0) starts."""
    bar, pickup = piece.time_signature.bar_beats, piece.pickup_beats
    return index * bar if pickup == 0 else pickup + (index - 1) * bar


def _bar_index(piece: Piece, beat: float) -> int:
    """0-based index of the bar holding `beat` (a pickup is bar 0)."""
    bar, pickup = piece.time_signature.bar_beats, piece.pickup_beats
    if pickup == 0:
        return int((beat + _BEAT_TOLERANCE) // bar)
    return 0 if beat < pickup - _BEAT_TOLERANCE else 1 + int((beat - pickup + _BEAT_TOLERANCE) // bar)


def _part_until(part: Part, cut: float) -> Part:
    """The notes of `part` that start before beat `cut`, each ending by then."""
    kept = [note for note in part.notes if note.start_beats < cut - _BEAT_TOLERANCE]
    return replace(part, notes=tuple(_clipped(note, cut) for note in kept))


def _clipped(note: Note, cut: float) -> Note:
    return note if note.end_beats <= cut else replace(note, duration_beats=cut - note.start_beats)
