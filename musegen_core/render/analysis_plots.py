"""The analysis panel: a prime and a take compared in one compact figure of four small panels (2 × 2).

Scale degrees, intervals and rhythm are grouped bars, prime beside take in the piano roll's colours, as percentages
of each melody's own total (duration for degrees, counts for intervals and rhythm) so melodies of different
lengths compare; hovering shows the raw beats or counts. The range panel draws each melody's lowest-to-highest
span as a thick line with its mean pitch as a diamond. The estimated keys are in the legend. The figure is plain plotly:
Streamlit draws it with its own bundled plotly.js (no CDN).
"""

from __future__ import annotations

from collections.abc import Sequence

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from musegen_core.analysis import INTERVALS, MAX_INTERVAL, RHYTHM_LABELS, Analysis, degree_labels
from musegen_core.music import pitch_name
from musegen_core.render.figures import use_musegen_look
from musegen_core.render.pianoroll import PRIME_COLOR, TAKE_COLOR

use_musegen_look()

HEIGHT = 420  # the piano roll's default height, to sit beside one
INTERVAL_TICKS = (-12, -7, -5, -2, 0, 2, 5, 7, 12)
# where each panel sits: keyword arguments of `add_trace` and `update_xaxes`
DEGREES, STEPS, RHYTHM, RANGE = ({"row": row, "col": col} for row, col in ((1, 1), (1, 2), (2, 1), (2, 2)))
FONT_SIZE = 11
RANGE_LINE_PX = 10
OCTAVE_TICKS = tuple(range(0, 128, 12))  # the range panel labels each C
RHYTHM_TICKS = ("1/16", "1/8 (3)", "1/8", "1/8 ·", "1/4", "1/4 ·", "1/2", "1/2 ·", "1", "other")
"""Short names of `analysis.RHYTHM_LABELS` for the axis (a dot = dotted, (3) = triplet); the hover has the long."""


def analysis_figure(
    prime: Analysis,
    take: Analysis | None = None,
    *,
    labels: tuple[str, str] = ("Prime", "Take"),
    height: int = HEIGHT,
) -> go.Figure:
    """Prime (and take, if given) compared: scale degrees, intervals, rhythm and range.

    Each melody has one legend entry, "<label> · <estimated key>", that shows or hides all its traces. The degree
    axis is named in the prime's degree key (`analysis.compare` measures the take in the prime's key); each bar's
    hover names its degree in its own melody's degree key. `height` is in pixels.
    """
    figure = make_subplots(rows=2, cols=2, subplot_titles=_titles(prime), vertical_spacing=0.22, horizontal_spacing=0.1)
    melodies = [(labels[0], prime, PRIME_COLOR)]
    if take is not None:
        melodies.append((labels[1], take, TAKE_COLOR))
    for label, analysis, color in melodies:
        legend_name = f"{label} · {analysis.key.name}" if analysis.key else label
        for index, (trace, panel) in enumerate(_traces(label, analysis, color)):
            trace.update(legendgroup=label, name=legend_name, showlegend=index == 0)
            figure.add_trace(trace, **panel)
    _style(figure, prime, height)
    return figure


def _titles(prime: Analysis) -> tuple[str, str, str, str]:
    degrees = f"Scale degrees in {prime.degree_key.name}" if prime.degree_key else "Scale degrees"
    return f"{degrees} (% of time)", "Intervals (% of steps)", "Rhythm (% of notes)", "Range"


def _traces(label: str, analysis: Analysis, color: str) -> list[tuple[go.BaseTraceType, dict[str, int]]]:
    """One melody's traces, each with the panel it goes in."""
    own_degrees = degree_labels(analysis.degree_key.mode) if analysis.degree_key else ("",) * 12
    return [
        (_bars(list(range(12)), analysis.degrees, own_degrees, " beats", color), DEGREES),
        (_bars(list(INTERVALS), analysis.intervals, [_interval_name(i) for i in INTERVALS], "", color), STEPS),
        (_bars(list(RHYTHM_LABELS), analysis.rhythm, RHYTHM_LABELS, "", color), RHYTHM),
        *((trace, RANGE) for trace in _range_traces(label, analysis, color)),
    ]


def _bars(x: list, values: Sequence[float], names: Sequence[str], unit: str, color: str) -> go.Bar:
    """Values as percentages of their total; the hover shows each bar's name and raw value (+ `unit`)."""
    total = sum(values)
    return go.Bar(
        x=x,
        y=[100 * value / total if total else 0.0 for value in values],
        customdata=[f"{name}: {round(value, 2):g}{unit}" for name, value in zip(names, values, strict=True)],
        hovertemplate="%{customdata} (%{y:.0f} %)<extra>%{fullData.name}</extra>",
        marker={"color": color},
    )


def _range_traces(label: str, analysis: Analysis, color: str) -> list[go.Scatter]:
    """Lowest → highest as a thick line and the mean as a diamond, on the melody's own row."""
    found = analysis.range
    if found is None:
        return []
    span = go.Scatter(
        x=[found.lowest, found.highest],
        y=[label, label],
        mode="lines+markers",
        line={"color": color, "width": RANGE_LINE_PX},
        marker={"color": color, "size": RANGE_LINE_PX},
        hovertext=[f"lowest {pitch_name(found.lowest)}", f"highest {pitch_name(found.highest)} (span {found.span})"],
        hoverinfo="text+name",
    )
    mean = go.Scatter(
        x=[found.mean],
        y=[label],
        mode="markers",
        marker={"symbol": "diamond", "size": RANGE_LINE_PX, "color": "white", "line": {"color": color, "width": 2}},
        hovertext=[f"mean pitch {found.mean:.1f} (≈ {pitch_name(round(found.mean))})"],
        hoverinfo="text+name",
    )
    return [span, mean]


def _interval_name(semitones: int) -> str:
    if abs(semitones) == MAX_INTERVAL:
        return f"{'≤ −' if semitones < 0 else '≥ +'}{MAX_INTERVAL} semitones"
    return f"{semitones:+d} semitones" if semitones else "repeated note"


def _style(figure: go.Figure, prime: Analysis, height: int) -> None:
    figure.update_layout(
        height=height,
        barmode="group",
        bargap=0.15,
        font={"size": FONT_SIZE},
        margin={"l": 50, "r": 10, "t": 60, "b": 30},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.1, "xanchor": "left", "x": 0.0},  # clear of the modebar
    )
    figure.update_annotations(font_size=FONT_SIZE + 1)  # the subplot titles
    degree_names = degree_labels(prime.degree_key.mode if prime.degree_key else "major")
    figure.update_xaxes(tickmode="array", tickvals=list(range(12)), ticktext=list(degree_names), **DEGREES)
    figure.update_xaxes(tickmode="array", tickvals=list(INTERVAL_TICKS), ticktext=_interval_ticks(), **STEPS)
    rhythm_ticks = {"tickvals": list(RHYTHM_LABELS), "ticktext": list(RHYTHM_TICKS), "tickangle": -45}
    figure.update_xaxes(tickmode="array", **rhythm_ticks, **RHYTHM)
    pitch_names = [pitch_name(pitch) for pitch in OCTAVE_TICKS]
    figure.update_xaxes(tickmode="array", tickvals=list(OCTAVE_TICKS), ticktext=pitch_names, **RANGE)
    figure.update_yaxes(ticksuffix=" %", rangemode="tozero")
    figure.update_yaxes(ticksuffix="", rangemode="normal", autorange="reversed", **RANGE)  # prime on top


def _interval_ticks() -> list[str]:
    ends = {-MAX_INTERVAL: f"≤−{MAX_INTERVAL}", MAX_INTERVAL: f"≥+{MAX_INTERVAL}"}
    return [ends.get(step, f"{step:+d}" if step else "0") for step in INTERVAL_TICKS]
