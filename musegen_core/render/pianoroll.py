"""Piano-roll figures: notes as horizontal bars, pitch up, beats across.

Built for speed: ONE bar trace per layer and ONE line trace each for all bar lines and all beat lines
(None-separated, drawn as one polyline), never a shape per note (`add_shape` per note is quadratic: 800 notes took
72 s). 10,000 notes build and serialise in well under a second (bench/roll_speed.py).

Notes fade with velocity (a per-note opacity array on the layer's one trace). Zoom and pan are plotly's own,
bounded to the notes' pitch range and the shown beats; pass `ROLL_CONFIG` to `st.plotly_chart` to zoom with the
mouse wheel too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from musegen_core.music import Note, Part, Piece, pitch_name
from musegen_core.render.figures import use_musegen_look

use_musegen_look()

PRIME_COLOR = "#4C78A8"  # blue: the user's melody
TAKE_COLOR = "#F58518"  # orange: a model's continuation
SET_COLORS = ("#4C78A8", "#F58518", "#54A24B", "#E45756", "#72B7B2", "#B279A2", "#EECA3B", "#9D755D")
"""Colours of the melodies of one set (variations, interpolation steps), cycled."""
TAKE_COLORS = SET_COLORS[1:]
"""Colours of the takes drawn next to a prime (which keeps `PRIME_COLOR`), cycled; the first is `TAKE_COLOR`."""
ROLL_CONFIG = {"scrollZoom": True, "displaylogo": False}
"""Plotly config for a roll: `st.plotly_chart(figure, config=ROLL_CONFIG)`. The wheel zooms, a drag draws a zoom
box, the mode bar switches to panning, a double click resets the view."""
BAR_LINE_COLOR = "rgba(90, 90, 90, 0.55)"
BEAT_LINE_COLOR = "rgba(120, 120, 120, 0.18)"
NOTE_HEIGHT = 0.8  # bar thickness, in semitones
MIN_OPACITY = 0.25  # of a velocity-1 note; velocity 127 is opaque, in between linear
PITCH_PADDING = 2  # semitones shown above the highest and below the lowest note
MIN_PITCH_SPAN = 12  # the y axis shows at least an octave
LABEL_EVERY_PITCH_SPAN = 24  # label every pitch when the shown range is at most this many semitones …
MIN_LABEL_SPACING_PX = 12  # … and the rows are this tall; else C, D, E, G and A (labels two rows apart or more)
SPARSE_LABEL_PITCH_CLASSES = (0, 2, 4, 7, 9)
EMPTY_PITCH_RANGE = (54, 66)  # y range (MIDI numbers) when there are no notes at all
DEFAULT_HEIGHT = 420  # pixels, of a one-panel roll
ROW_HEIGHT = 220  # pixels, of one take's panel side by side
ROW_GAP_PX = 45  # between side-by-side panels: room for the panel's title


def _note_value_names() -> dict[float, str]:
    """DAW names of exact note values by length in beats: 1 → "1/4", 1.5 → "1/4." (dotted), 1/3 → "1/8T"."""
    names: dict[float, str] = {}
    for denominator in (1, 2, 4, 8, 16, 32, 64):
        plain = 4 / denominator
        names |= {plain: f"1/{denominator}", plain * 1.5: f"1/{denominator}.", plain * 2 / 3: f"1/{denominator}T"}
    return {round(beats, 6): name for beats, name in names.items()}


NOTE_VALUE_NAMES = _note_value_names()


@dataclass(frozen=True)
class RollLayer:
    """One group of notes drawn in one colour under one legend entry.

    Attributes:
        label: legend name, e.g. "Prime", "Continuation".
        piece: all its parts are drawn in this layer's colour.
        color: CSS colour.
    """

    label: str
    piece: Piece
    color: str


@dataclass(frozen=True)
class _Frame:
    """What every panel of one figure shares: y limits (MIDI numbers), x range and grid lines (beats)."""

    low: float
    high: float
    x_range: tuple[float, float]
    bar_lines: list[float]
    beat_lines: list[float]


def piano_roll(
    layers: Sequence[RollLayer],
    *,
    title: str = "",
    height: int = DEFAULT_HEIGHT,
    pitch_range: tuple[int, int] | None = None,
    beat_range: tuple[float, float] | None = None,
) -> go.Figure:
    """A piano roll of `layers` (drawn in order, later on top), x in beats, y in pitch names.

    The bar/beat grid (drawn under the notes) follows the first layer's meter and pickup and runs to the end of the
    bar holding the last note of any layer. `height` is in pixels. No layers, or layers without notes, give an empty
    labelled roll.

    Rolls meant to be compared side by side get the same axes from the same fixed ranges: `pitch_range` (lowest,
    highest MIDI pitch) is laid out as if those were the notes (same padding, at least an octave), whatever this
    roll's own notes are; `beat_range` (start, end) is the x axis, with the grid drawn up to `end`. Notes outside
    a fixed range are cut off, so give ranges that cover every roll's notes.
    """
    frame = _frame(layers, pitch_range, beat_range)
    figure = go.Figure(_panel_traces(layers, frame))
    _style(figure, title, height, frame, rows=1)
    return figure


def takes_roll(
    prime: Piece | None,
    takes: Sequence[tuple[str, Piece]],
    *,
    overlaid: bool,
    title: str = "",
    height: int | None = None,
    prime_label: str = "Prime",
) -> go.Figure:
    """Several labelled takes in one figure, the prime (if any) in `PRIME_COLOR`, each take in its own colour.

    Overlaid: one panel holding everything; a click on a legend entry hides or shows that take. Side by side: one
    panel per take, top to bottom, each with the prime under its take; all panels share both axes, so zooming or
    panning one moves them all, and a click on the prime's one legend entry toggles it everywhere. `height` in
    pixels defaults to `DEFAULT_HEIGHT` overlaid and `ROW_HEIGHT` per take side by side.
    """
    primes = [RollLayer(prime_label, prime, PRIME_COLOR)] if prime is not None else []
    colored = [RollLayer(label, piece, TAKE_COLORS[i % len(TAKE_COLORS)]) for i, (label, piece) in enumerate(takes)]
    if overlaid or not colored:
        return piano_roll(primes + colored, title=title, height=height or DEFAULT_HEIGHT)
    return _side_by_side([[*primes, take] for take in colored], title, height or ROW_HEIGHT * len(colored))


def set_layers(pieces: Sequence[Piece], labels: Sequence[str]) -> list[RollLayer]:
    """One layer per melody of a set, each in its own colour (cycling through `SET_COLORS`)."""
    return [
        RollLayer(label, piece, SET_COLORS[i % len(SET_COLORS)])
        for i, (piece, label) in enumerate(zip(pieces, labels, strict=True))
    ]


def _side_by_side(rows: list[list[RollLayer]], title: str, height: int) -> go.Figure:
    """One panel per row of layers (titled after its last layer), all on the same shared axes."""
    frame = _frame([layer for row in rows for layer in row], None, None)
    plot_px = height - sum(_margin(title)[side] for side in ("t", "b"))
    figure = make_subplots(
        rows=len(rows),
        cols=1,
        shared_xaxes="all",
        shared_yaxes="all",
        subplot_titles=[row[-1].label for row in rows],
        vertical_spacing=min(ROW_GAP_PX / plot_px, 0.5 / max(len(rows) - 1, 1)),
    )
    for number, layers in enumerate(rows, start=1):
        figure.add_traces(_panel_traces(layers, frame), rows=number, cols=1)
    _one_legend_entry_per_label(figure)
    _style(figure, title, height, frame, rows=len(rows))
    return figure


def _one_legend_entry_per_label(figure: go.Figure) -> None:
    """Keep the first legend entry of each label: the prime, drawn in every panel, is listed (and toggled) once."""
    seen: set[str] = set()
    for trace in figure.data:
        if trace.name in seen:
            trace.showlegend = False
        seen.add(trace.name)


def _frame(
    layers: Sequence[RollLayer], pitch_range: tuple[int, int] | None, beat_range: tuple[float, float] | None
) -> _Frame:
    pitches = [note.pitch for layer in layers for part in layer.piece.parts for note in part.notes]
    low, high = _pitch_range(list(pitch_range) if pitch_range is not None else pitches)
    bar_lines, beat_lines = _grid_beats(layers, until=beat_range[1] if beat_range is not None else None)
    x_range = beat_range or (0.0, max(max(bar_lines, default=0.0), 1.0))
    return _Frame(low, high, x_range, bar_lines, beat_lines)


def _panel_traces(layers: Sequence[RollLayer], frame: _Frame) -> list[go.Scatter | go.Bar]:
    """The grid (beat lines, then bar lines over them) under one note trace per layer."""
    grid = [
        _grid_trace(name, lines, frame, color)
        for name, lines, color in (
            ("beat lines", frame.beat_lines, BEAT_LINE_COLOR),
            ("bar lines", frame.bar_lines, BAR_LINE_COLOR),
        )
        if lines
    ]
    return grid + [_note_trace(layer) for layer in layers]


def _note_trace(layer: RollLayer) -> go.Bar:
    """All notes of the layer as one horizontal bar trace: base = start, x = duration, y = pitch, opacity from
    velocity."""
    notes = [note for part in layer.piece.parts for note in part.notes]
    velocities = np.array([note.velocity for note in notes], dtype=float)
    # numpy arrays: plotly validates them as a whole instead of element by element
    return go.Bar(
        name=layer.label,
        legendgroup=layer.label,
        orientation="h",
        base=np.array([note.start_beats for note in notes], dtype=float),
        x=np.array([note.duration_beats for note in notes], dtype=float),
        y=np.array([note.pitch for note in notes], dtype=int),
        width=NOTE_HEIGHT,
        marker={
            "color": layer.color,
            "opacity": MIN_OPACITY + (1 - MIN_OPACITY) * (velocities - 1) / 126,
            "line": {"width": 0.5, "color": "white"},
        },
        hovertext=np.array([_hover_text(note, layer.piece) for note in notes], dtype=str),
        hoverinfo="text+name",
    )


def _hover_text(note: Note, piece: Piece) -> str:
    """E.g. "F#4 · velocity 90<br>bar 2 beat 1.5 (2:1.5)<br>length 0.5 beats (1/8)"."""
    return f"{note.name} · velocity {note.velocity}<br>{_bar_and_beat(note.start_beats, piece)}<br>{_length(note)}"


def _bar_and_beat(start_beats: float, piece: Piece) -> str:
    """Musical position, e.g. "bar 2 beat 1.5 (2:1.5)": bars count from 1 (a pickup is bar 0); beats within the bar
    are quarter notes from 1."""
    bar_beats = piece.time_signature.bar_beats
    if piece.pickup_beats > 0 and start_beats < piece.pickup_beats:
        bar, beat = 0, start_beats - piece.pickup_beats + bar_beats + 1
    else:
        since_first_full_bar = start_beats - piece.pickup_beats
        bar = int(since_first_full_bar // bar_beats) + 1
        beat = since_first_full_bar - (bar - 1) * bar_beats + 1
    return f"bar {bar} beat {_short(beat)} ({bar}:{_short(beat)})"


def _length(note: Note) -> str:
    """E.g. "length 1.5 beats (1/4.)"; the note value only where the length is one exactly."""
    beats = note.duration_beats
    value = NOTE_VALUE_NAMES.get(round(beats, 6))
    return f"length {_short(beats)} {'beat' if beats == 1 else 'beats'}" + (f" ({value})" if value else "")


def _short(beats: float) -> str:
    """A beat count to at most 3 decimals: 1.0 → "1", 1/3 → "0.333"."""
    return f"{round(beats, 3):g}"


def _grid_beats(layers: Sequence[RollLayer], until: float | None = None) -> tuple[list[float], list[float]]:
    """Bar lines and beat lines (beats) in the first layer's meter, up to the end of the bar holding the last note
    of any layer, or, given `until`, up to `until`.

    Beats are counted back from each bar line (`TimeSignature.beat_beats` apart), so a pickup bar gets the beats
    before its end: in 3/4 with a one-beat pickup, bar lines at 0, 1, 4, 7 and beat lines at 2, 3, 5, 6.
    """
    if not layers:
        return [], []
    # A one-note stand-in with the same extent: `Piece.bar_lines_beats` re-reads `end_beats` for every bar, which
    # is O(bars × notes) on the real parts (2.4 s for 10,000 notes) and O(bars) here.
    end_beats = max(layer.piece.end_beats for layer in layers) if until is None else until
    extent = (Part("extent", (Note(0, 0.0, end_beats),)),) if end_beats > 0 else ()
    piece = layers[0].piece
    bar_lines = piece.with_parts(extent).bar_lines_beats()
    step = piece.time_signature.beat_beats
    beat_lines = sorted(
        line - k * step
        for start, line in pairwise(bar_lines)
        for k in range(1, math.ceil((line - start) / step - 1e-9))
    )
    if until is None:
        return bar_lines, beat_lines
    return [beat for beat in bar_lines if beat <= until + 1e-9], [beat for beat in beat_lines if beat <= until + 1e-9]


def _grid_trace(name: str, lines: list[float], frame: _Frame, color: str) -> go.Scatter:
    """Vertical lines at `lines` (beats) as one line trace (no hover, no legend): each line is `[x, x, None]`.

    The lines run up and down in turn, from just below to just above the shown pitches, and `connectgaps` joins
    them: plotly.js draws one polyline, whose joins lie outside the y range (which zoom and pan cannot leave), 5 to
    10× faster than as many separate segments (5,400 beat lines: 60 ms instead of 430–730 ms in Chromium).
    """
    xs: list[float | None] = []
    ys: list[float | None] = []
    for i, beat in enumerate(lines):
        xs += [beat, beat, None]
        ys += [frame.low - 1, frame.high + 1, None] if i % 2 == 0 else [frame.high + 1, frame.low - 1, None]
    return go.Scatter(
        name=name,
        x=xs,
        y=ys,
        mode="lines",
        connectgaps=True,
        line={"color": color, "width": 1},
        hoverinfo="skip",
        showlegend=False,
    )


def _pitch_range(pitches: list[int]) -> tuple[float, float]:
    """Y-axis limits (MIDI numbers, ±0.5 around the outer rows), padded, at least `MIN_PITCH_SPAN` tall."""
    if not pitches:
        low, high = EMPTY_PITCH_RANGE
    else:
        low, high = min(pitches) - PITCH_PADDING, max(pitches) + PITCH_PADDING
        missing = MIN_PITCH_SPAN - (high - low)
        if missing > 0:
            low, high = low - missing // 2, high + (missing - missing // 2)
    return max(low, 0) - 0.5, min(high, 127) + 0.5


def _pitch_ticks(low: float, high: float, plot_px: float) -> tuple[list[int], list[str]]:
    """Tick positions and names: on small ranges every pitch (in a short roll, whose rows are too thin for a label
    each, only C, D, E, G and A), else each C."""
    shown = range(int(low + 0.5), int(high - 0.5) + 1)
    small = len(shown) <= LABEL_EVERY_PITCH_SPAN + 1
    every_pitch = small and plot_px / max(len(shown), 1) >= MIN_LABEL_SPACING_PX
    if every_pitch:
        values = list(shown)
    elif small:
        values = [pitch for pitch in shown if pitch % 12 in SPARSE_LABEL_PITCH_CLASSES]
    else:
        values = [pitch for pitch in shown if pitch % 12 == 0]
    return values, [pitch_name(pitch) for pitch in values]


def _margin(title: str) -> dict[str, int]:
    return {"l": 60, "r": 20, "t": 50 if title else 20, "b": 40}


def _style(figure: go.Figure, title: str, height: int, frame: _Frame, rows: int) -> None:
    """Layout and axes of every panel; zoom and pan stay within the frame (the notes' pitches, the shown beats)."""
    margin = _margin(title)
    row_px = (height - margin["t"] - margin["b"]) / rows
    tick_values, tick_names = _pitch_ticks(frame.low, frame.high, plot_px=row_px)
    figure.update_layout(
        title=title or None,
        height=height,
        barmode="overlay",
        hovermode="closest",
        dragmode="zoom",
        margin=margin,
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.0, "xanchor": "right", "x": 1.0},
    )
    start, end = frame.x_range
    figure.update_xaxes(range=[start, end], minallowed=start, maxallowed=end, showgrid=False, zeroline=False)
    list(figure.select_xaxes())[-1].title.text = "beats"  # the bottom panel's
    figure.update_yaxes(
        title_text="pitch",
        range=[frame.low, frame.high],
        minallowed=frame.low,
        maxallowed=frame.high,
        tickmode="array",
        tickvals=tick_values,
        ticktext=tick_names,
        zeroline=False,
    )
