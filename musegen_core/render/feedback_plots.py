"""Plots of the feedback numbers for the Feedback page: star ratings over time and per model version and style, and
win rates between model versions in the pair votes (from `FeedbackStore.rating_stats` and `.win_rates`)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import date

import plotly.graph_objects as go

from musegen_core.feedback.store import RatingStat, WinRate
from musegen_core.render.figures import use_musegen_look
from musegen_core.render.pianoroll import SET_COLORS

use_musegen_look()

BY_MODEL, BY_STYLE = "model", "style"
HEIGHT = 380


def version_label(name: str, version: str) -> str:
    return f"{name} v{version}"


def _label(stat: RatingStat, by: str) -> str:
    return version_label(stat.model_name, stat.model_version) if by == BY_MODEL else stat.style.replace("_", " ")


def daily_means(stats: Sequence[RatingStat], by: str = BY_MODEL) -> dict[str, list[tuple[date, int, float]]]:
    """Per model version (or per style): (day, ratings, mean stars) for every day with ratings, oldest first —
    the stats' groups merged, each weighted by its count."""
    totals: dict[str, dict[date, list[float]]] = defaultdict(lambda: defaultdict(lambda: [0, 0.0]))
    for stat in stats:
        cell = totals[_label(stat, by)][stat.day]
        cell[0] += stat.count
        cell[1] += stat.count * stat.mean_stars
    return {
        label: [(day, int(n), total / n) for day, (n, total) in sorted(days.items())]
        for label, days in sorted(totals.items())
    }


def ratings_over_time(stats: Sequence[RatingStat], by: str = BY_MODEL) -> go.Figure:
    """Mean stars per day, one line per model version (or per style); marker size grows with the day's ratings."""
    figure = go.Figure()
    for i, (label, days) in enumerate(daily_means(stats, by).items()):
        counts = [n for _, n, _ in days]
        figure.add_trace(
            go.Scatter(
                name=label,
                x=[day.isoformat() for day, _, _ in days],
                y=[mean for _, _, mean in days],
                mode="lines+markers",
                marker={"size": [min(24, 7 + 2 * n**0.5) for n in counts], "color": SET_COLORS[i % len(SET_COLORS)]},
                line={"color": SET_COLORS[i % len(SET_COLORS)]},
                customdata=counts,
                hovertemplate="%{x}: %{y:.2f} stars from %{customdata} rating(s)<extra>%{fullData.name}</extra>",
            )
        )
    title = "Mean stars per day (UTC), by " + ("model version" if by == BY_MODEL else "style asked")
    _layout(figure, title, y_title="mean stars")
    figure.update_yaxes(range=[0.8, 5.2], dtick=1)
    figure.update_xaxes(type="date")
    return figure


def ratings_by_model_and_style(stats: Sequence[RatingStat]) -> go.Figure:
    """Mean stars per model version (x), one bar per style asked, the number of ratings on each bar."""
    cells: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0, 0.0])
    for stat in stats:
        cell = cells[(version_label(stat.model_name, stat.model_version), stat.style)]
        cell[0] += stat.count
        cell[1] += stat.count * stat.mean_stars
    models = sorted({model for model, _ in cells})
    styles = sorted({style for _, style in cells})
    figure = go.Figure()
    for i, style in enumerate(styles):
        present = [m for m in models if (m, style) in cells]
        figure.add_trace(
            go.Bar(
                name=style.replace("_", " "),
                x=present,
                y=[cells[(m, style)][1] / cells[(m, style)][0] for m in present],
                text=[f"n={int(cells[(m, style)][0])}" for m in present],
                textposition="outside",
                marker={"color": SET_COLORS[i % len(SET_COLORS)]},
                hovertemplate="%{x}: %{y:.2f} stars (%{text})<extra>%{fullData.name}</extra>",
            )
        )
    _layout(figure, "Mean stars per model version and style asked", y_title="mean stars")
    figure.update_layout(barmode="group")
    figure.update_yaxes(range=[0, 5.6], dtick=1)
    return figure


def win_matrix(wins: Sequence[WinRate]) -> tuple[list[str], list[list[float | None]], list[list[str]]]:
    """(versions, share, text): share[i][j] = how often version i beat version j in the pair votes between them
    (a tie counting half; None where they never met), text[i][j] e.g. "63 % of 8"."""
    versions = sorted({version_label(*w.first) for w in wins} | {version_label(*w.second) for w in wins})
    index = {v: i for i, v in enumerate(versions)}
    share: list[list[float | None]] = [[None] * len(versions) for _ in versions]
    text = [[""] * len(versions) for _ in versions]
    for w in wins:
        i, j = index[version_label(*w.first)], index[version_label(*w.second)]
        if not w.votes:
            continue
        share[i][j], share[j][i] = w.first_rate, 1 - w.first_rate
        text[i][j] = f"{w.first_rate:.0%} of {w.votes}"
        text[j][i] = f"{1 - w.first_rate:.0%} of {w.votes}"
    return versions, share, text


def win_rates(wins: Sequence[WinRate]) -> go.Figure:
    """Heat map: the row's version beat the column's version this share of the time (ties count half)."""
    versions, share, text = win_matrix(wins)
    figure = go.Figure(
        go.Heatmap(
            x=versions,
            y=versions,
            z=share,
            text=text,
            texttemplate="%{text}",
            zmin=0,
            zmax=1,
            colorscale="RdBu",
            colorbar={"title": {"text": "row wins"}, "tickformat": ".0%"},
            hovertemplate="%{y} beat %{x} in %{text} votes<extra></extra>",
        )
    )
    _layout(figure, "Win rate in A/B votes (row vs column; ties count half, skips left out)")
    figure.update_xaxes(title_text="against")
    figure.update_yaxes(autorange="reversed")
    return figure


def _layout(figure: go.Figure, title: str, *, y_title: str = "") -> None:
    figure.update_layout(
        title={"text": title, "x": 0.0, "xanchor": "left"},
        height=HEIGHT,
        margin={"l": 10, "r": 10, "t": 50, "b": 10},
        legend={"orientation": "h", "y": -0.2},
    )
    if y_title:
        figure.update_yaxes(title_text=y_title)
