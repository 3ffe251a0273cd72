"""Piano-roll figures: takes overlaid or side by side, velocity shading, hover, bar/beat grid, zoom bounds.

The first roll tests (one trace per layer, bar lines, pitch labels, fixed ranges) live in tests/test_render.py.
"""

from __future__ import annotations

import random

import plotly.graph_objects as go
import pytest

from musegen_core.music import Note, Part, Piece, TimeSignature
from musegen_core.render.pianoroll import (
    MIN_OPACITY,
    PRIME_COLOR,
    ROLL_CONFIG,
    TAKE_COLOR,
    TAKE_COLORS,
    RollLayer,
    piano_roll,
    takes_roll,
)


def _piece(*notes: Note, **piece_fields: object) -> Piece:
    return Piece((Part("melody", notes),), **piece_fields)


def _scale(start_beats: float = 0.0, count: int = 8) -> Piece:
    """Crotchets C4 upwards from `start_beats`, in 4/4."""
    return _piece(*(Note(60 + i, start_beats + i, 1.0) for i in range(count)))


def _note_traces(figure: go.Figure) -> list[go.Bar]:
    return [trace for trace in figure.data if trace.type == "bar"]


def _grid(figure: go.Figure, name: str) -> list[float]:
    """Beats of the grid lines in the trace `name`: each line is [x, x, None]."""
    (trace,) = [trace for trace in figure.data if trace.name == name]
    return list(trace.x[0::3])


def test_ten_thousand_notes_are_one_trace_per_layer_and_no_shapes() -> None:
    rng = random.Random(0)
    notes = tuple(Note(rng.randint(36, 96), i * 0.25, 0.25, rng.randint(1, 127)) for i in range(10_000))
    prime = _scale()
    figure = piano_roll([RollLayer("Prime", prime, PRIME_COLOR), RollLayer("Big", _piece(*notes), TAKE_COLOR)])
    assert [len(trace.x) for trace in _note_traces(figure)] == [8, 10_000]
    assert len(figure.layout.shapes) == 0
    assert [trace.name for trace in figure.data if trace.type == "scatter"] == ["beat lines", "bar lines"]
    assert len(figure.data) == 4


def test_grid_follows_a_waltz_with_a_pickup() -> None:
    # 3/4 with a one-beat pickup, notes up to beat 10: bars at 0, 1, 4, 7, 10
    waltz = _piece(
        *(Note(60, float(beat), 1.0) for beat in range(10)), time_signature=TimeSignature(3, 4), pickup_beats=1
    )
    figure = piano_roll([RollLayer("Prime", waltz, PRIME_COLOR)])
    assert _grid(figure, "bar lines") == [0.0, 1.0, 4.0, 7.0, 10.0]
    assert _grid(figure, "beat lines") == [2.0, 3.0, 5.0, 6.0, 8.0, 9.0]  # the pickup bar has no beat line
    bars, beats = (next(trace for trace in figure.data if trace.name == name) for name in ("bar lines", "beat lines"))
    assert bars.line.width == beats.line.width and bars.line.color != beats.line.color  # bar lines darker
    low, high = figure.layout.yaxis.range
    assert min(y for y in bars.y if y is not None) < low and max(y for y in bars.y if y is not None) > high


def test_compound_meter_beats_are_dotted_crotchets_counted_from_the_bar_line() -> None:
    # 6/8 with a quaver pickup: bars at 0, 0.5, 3.5, 6.5; felt beats 1.5 before each bar line
    jig = _piece(Note(67, 0.0, 0.5), Note(72, 0.5, 6.0), time_signature=TimeSignature(6, 8), pickup_beats=0.5)
    figure = piano_roll([RollLayer("Prime", jig, PRIME_COLOR)])
    assert _grid(figure, "bar lines") == [0.0, 0.5, 3.5, 6.5]
    assert _grid(figure, "beat lines") == [2.0, 5.0]


def test_a_fixed_beat_range_cuts_the_grid_mid_bar() -> None:
    figure = piano_roll([RollLayer("Take", _scale(), TAKE_COLOR)], beat_range=(0.0, 6.0))
    assert _grid(figure, "bar lines") == [0.0, 4.0]
    assert _grid(figure, "beat lines") == [1.0, 2.0, 3.0, 5.0, 6.0]


def test_velocity_sets_each_notes_opacity_on_the_one_trace() -> None:
    piece = _piece(Note(60, 0.0, 1.0, velocity=30), Note(62, 1.0, 1.0, velocity=120), Note(64, 2.0, 1.0, 1))
    piece = piece.with_parts((*piece.parts, Part("loud", (Note(65, 3.0, 1.0, velocity=127),))))
    (trace,) = _note_traces(piano_roll([RollLayer("Prime", piece, PRIME_COLOR)]))
    soft, loud, softest, loudest = trace.marker.opacity
    assert softest == pytest.approx(MIN_OPACITY) and loudest == pytest.approx(1.0)
    assert softest < soft < loud < loudest  # a velocity-30 note is lighter than a velocity-120 one
    assert trace.marker.color == PRIME_COLOR  # one colour per layer; velocity only fades it
    assert "velocity 30" in trace.hovertext[0] and "velocity 120" in trace.hovertext[1]


def test_hover_gives_name_bar_and_beat_length_and_note_value() -> None:
    piece = _piece(
        Note(66, 0.0, 1.0),  # the pickup
        Note(70, 1.5, 1.5),  # dotted crotchet
        Note(71, 3.0, 1 / 3),  # triplet quaver
        Note(72, 5.0, 1.25),  # no single note value
        pickup_beats=1.0,
    )
    first, dotted, triplet, tied = _note_traces(piano_roll([RollLayer("Prime", piece, PRIME_COLOR)]))[0].hovertext
    assert first.startswith("F#4") and "bar 0 beat 4 (0:4)" in first and "length 1 beat (1/4)" in first
    assert "Bb4" in dotted and "(1:1.5)" in dotted and "length 1.5 beats (1/4.)" in dotted
    assert "(1:3)" in triplet and "length 0.333 beats (1/8T)" in triplet
    assert "(2:1)" in tied and tied.endswith("length 1.25 beats")


def test_overlaid_takes_share_one_panel_in_their_own_colours() -> None:
    takes = [(f"Take {i}", _scale(8.0 + i, 4)) for i in range(1, 4)]
    figure = takes_roll(_scale(), takes, overlaid=True, title="Three takes")
    traces = _note_traces(figure)
    assert [trace.name for trace in traces] == ["Prime", "Take 1", "Take 2", "Take 3"]
    assert [trace.marker.color for trace in traces] == [PRIME_COLOR, *TAKE_COLORS[:3]]
    assert TAKE_COLORS[0] == TAKE_COLOR and PRIME_COLOR not in TAKE_COLORS
    assert len(list(figure.select_xaxes())) == len(list(figure.select_yaxes())) == 1
    assert all(trace.showlegend is not False for trace in traces)  # a legend click hides or shows each take
    assert figure.layout.xaxis.title.text == "beats" and figure.layout.title.text == "Three takes"


def test_side_by_side_takes_get_one_panel_each_on_shared_axes() -> None:
    takes = [("Low", _piece(Note(48, 8.0, 4.0))), ("High", _piece(Note(84, 8.0, 2.0))), ("Mid", _scale(8.0))]
    figure = takes_roll(_scale(), takes, overlaid=False)
    x_axes, y_axes = list(figure.select_xaxes()), list(figure.select_yaxes())
    assert len(x_axes) == len(y_axes) == 3
    assert {tuple(axis.range) for axis in x_axes} == {(0.0, 16.0)}  # every take's notes, up to the last bar line
    low, high = y_axes[0].range
    assert {tuple(axis.range) for axis in y_axes} == {(low, high)} and low < 48 and high > 84
    linked = [axis.matches for axis in (*x_axes, *y_axes)]
    assert linked.count(None) == 2 and len(set(linked) - {None}) == 2  # zoom or pan one panel: all follow
    assert [annotation.text for annotation in figure.layout.annotations] == ["Low", "High", "Mid"]
    assert [axis.title.text for axis in x_axes] == [None, None, "beats"]


def test_side_by_side_draws_the_prime_in_every_panel_under_one_legend_entry() -> None:
    figure = takes_roll(_scale(), [("A", _scale(8.0)), ("B", _scale(8.0))], overlaid=False, prime_label="Melody")
    traces = _note_traces(figure)
    assert [(trace.name, trace.yaxis) for trace in traces] == [
        ("Melody", "y"),
        ("A", "y"),
        ("Melody", "y2"),
        ("B", "y2"),
    ]
    assert [trace.showlegend for trace in traces] == [None, None, False, None]
    assert {trace.legendgroup for trace in traces if trace.name == "Melody"} == {"Melody"}  # toggled together
    assert figure.layout.height == 2 * 220


def test_side_by_side_without_takes_is_the_prime_alone() -> None:
    figure = takes_roll(_scale(), [], overlaid=False)
    assert [trace.name for trace in _note_traces(figure)] == ["Prime"]
    assert takes_roll(None, [("Take", _scale())], overlaid=True).data[-1].marker.color == TAKE_COLOR


def test_zoom_and_pan_stay_within_the_notes_and_the_shown_beats() -> None:
    figure = piano_roll([RollLayer("Prime", _scale(), PRIME_COLOR)])
    assert figure.layout.dragmode == "zoom" and ROLL_CONFIG["scrollZoom"] is True
    x, y = figure.layout.xaxis, figure.layout.yaxis
    assert (x.minallowed, x.maxallowed) == tuple(x.range) == (0.0, 8.0)
    assert (y.minallowed, y.maxallowed) == tuple(y.range)
    assert x.showgrid is False  # the bar/beat grid replaces plotly's own


def test_a_roll_serialises_to_json() -> None:
    figure = takes_roll(_scale(), [("A", _scale(8.0)), ("B", _scale(8.0))], overlaid=False)
    assert '"connectgaps":true' in figure.to_json().replace(" ", "")


def test_every_figure_has_the_white_look_without_naming_a_template() -> None:
    from musegen_core.analysis import compare
    from musegen_core.render.analysis_plots import analysis_figure

    figures = [
        piano_roll([RollLayer("Prime", _scale(), PRIME_COLOR)]),
        takes_roll(_scale(), [("A", _scale(8.0))], overlaid=False),
        analysis_figure(*compare(_scale(), _scale(8.0))),
    ]
    for figure in figures:
        assert figure.layout.template.layout.plot_bgcolor == "white"  # plotly_white, not plotly's blue-grey


def test_the_app_shares_one_roll_per_content_and_drawing_it_changes_nothing() -> None:
    """Pages draw rolls through `ui.piano_roll`, made once per layers and options and shared by reruns and
    sessions: the same content gives the same figure object, other content or options another one, and
    `st.plotly_chart` leaves a shared figure as it was."""
    import streamlit as st

    from musegen_core import ui

    melody = _piece(Note(60, 0, 1), Note(64, 1, 1), Note(67, 2, 2))
    layers = [RollLayer("Prime", melody, PRIME_COLOR)]
    figure = ui.piano_roll(layers, title="Your melody")
    before = figure.to_json()
    st.plotly_chart(figure)
    assert ui.piano_roll([RollLayer("Prime", melody, PRIME_COLOR)], title="Your melody") is figure
    assert figure.to_json() == before
    assert ui.piano_roll(layers, title="Another title") is not figure
    moved = _piece(Note(60, 0, 1), Note(64, 1, 1), Note(69, 2, 2))  # one note differs
    assert ui.piano_roll([RollLayer("Prime", moved, PRIME_COLOR)], title="Your melody") is not figure
