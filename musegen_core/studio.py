"""What the Compose page does, without the page: make a take from a prime and turn a judgement into a rating.

Kept free of Streamlit so the CLI, tests and benches run the very same steps as the app.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from musegen_core import encoding
from musegen_core.controls import ALL_CONTROLS, Controls, refused_controls
from musegen_core.errors import FormatError
from musegen_core.evaluation.control_measures import contour_similarity, rhythm_similarity
from musegen_core.evaluation.style_classifier import StyleClassifier
from musegen_core.feedback import Rating
from musegen_core.formats.export import EXPORT_FORMATS, export_piece, takes_zip
from musegen_core.formats.midi import piece_to_midi
from musegen_core.generate import Continuation, Restyled, continue_melody, interpolate, restyle, variations
from musegen_core.models.registry import ModelInfo, model_folder
from musegen_core.music import Part, Piece
from musegen_core.render.audio import RenderSettings, render
from musegen_core.render.audio_export import encode_mp3
from musegen_core.workers import continue_isolated


@dataclass(frozen=True)
class Take:
    """One generated continuation and everything that produced it."""

    number: int  # per-session counter, so each take gets fresh rating widgets
    continuation: Continuation
    model: ModelInfo
    seed: int
    controls: dict[str, Any]  # every field of `Controls`, part/tune index, where the take starts and the pickup
    prime_name: str

    @property
    def source(self) -> tuple[str, int, int]:
        """(file name, tune index, part index) of the prime this take continues."""
        return (self.prime_name, self.controls["tune_index"], self.controls["part_index"])


def describe_piece(piece: Piece) -> str:
    """One line a musician reads at a glance: parts, notes, bars, meter, key, tempo."""
    parts = f"{len(piece.parts)} part{'s' if len(piece.parts) != 1 else ''}"
    key = piece.key.name if piece.key else "key not given"
    return (
        f"{parts} · {piece.note_count} notes · {piece.bar_count()} bars · {piece.time_signature} · {key} · "
        f"{piece.tempo_bpm:g} bpm"
    )


def abilities(info: ModelInfo) -> str:
    """One line for the Models page: which controls and modes the model honours, and which not, and why."""
    refused = refused_controls(info.family, info.styles)
    honoured = [_control_label(name) for name in ALL_CONTROLS if name not in refused]
    line = f"Honours: {', '.join(honoured)}."
    if refused:
        line += f" Not: {', '.join(map(_control_label, refused))} ({next(iter(refused.values()))})."
    modes = "continue, variations, interpolate, restyle" if info.family == "vae" else "continue"
    return f"{line} Modes: {modes}."


def _control_label(name: str) -> str:
    return name.replace("key_mode", "key/mode").replace("_", " ")


ISOLATED = "isolated"  # `make_take`'s model: generate in a worker process


def make_take(
    number: int,
    model: Any,
    info: ModelInfo,
    prime: Piece,
    controls: Controls,
    *,
    prime_name: str,
    part_index: int = 0,
    tune_index: int = 0,
) -> Take:
    """Continue the chosen part of `prime` under `controls` with `model`, a loaded model, or with `ISOLATED`: the
    model of `info` in a generating worker process (`workers.continue_isolated`), which is what the app does."""
    if model is ISOLATED:
        continuation = continue_isolated(model_folder(info.name), prime, controls, part_index)
    else:
        continuation = continue_melody(model, prime, controls, part_index=part_index)
    layout = {"start_beats": continuation.start_beats, "pickup_beats": continuation.prime.pickup_beats}  # for MIDI
    settings = {**controls.as_dict(), "part_index": part_index, "tune_index": tune_index, **layout}
    return Take(number, continuation, info, controls.seed, settings, prime_name)


def rating_for(
    take: Take, stars: int, comment: str = "", *, tags: Iterable[str] = (), rater: str | None = None
) -> Rating:
    """The rating record for a take: stars 1–5, with prime and result stored as MIDI; optional tags (from
    `feedback.TAGS`) and rater (a chosen name or an anonymous per-browser id)."""
    return Rating(
        stars=stars,
        comment=comment.strip(),
        model_name=take.model.name,
        model_version=take.model.version,
        seed=take.seed,
        controls=take.controls,
        prime_name=take.prime_name,
        prime_midi=piece_to_midi(take.continuation.prime),
        generated_midi=piece_to_midi(take.continuation.generated),
        tags=tuple(tags),
        rater=rater,
    )


@dataclass(frozen=True)
class LatentTakes:
    """Melodies from a VAE's latent space: variations around one melody, or the steps from melody A to melody B.

    Each piece is one part that starts at beat 0 on a bar line, in the first melody's tempo, meter and key.
    """

    number: int  # per-session counter, like `Take.number`
    mode: str  # "variations", "interpolation" or "restyle"
    pieces: tuple[Piece, ...]
    model: ModelInfo
    seed: int
    controls: dict[str, Any]  # n and distance, steps, or style and strength; part and tune indices; file B's name
    prime_name: str
    summary: str = ""  # one line of measurements to show with the set (restyle: what survived, what changed)

    @property
    def labels(self) -> list[str]:
        """What to call each piece: "Variation 1", … or "A", "Step 2", …, "B"."""
        count = len(self.pieces)
        if self.mode == "variations":
            return [f"Variation {i + 1}" for i in range(count)]
        if self.mode == "restyle":
            return ["Original", f"Restyled: {self.controls['style'].replace('_', ' ')}"]
        return ["A", *(f"Step {i + 1}" for i in range(1, count - 1)), "B"]

    @property
    def source(self) -> tuple[str, int, int]:
        """(file name, tune index, part index) of the (first) melody these takes come from."""
        return (self.prime_name, self.controls["tune_index"], self.controls["part_index"])

    def laid_out(self, gap_bars: int = 1) -> list[Piece]:
        """The pieces moved to play one after another, `gap_bars` bars of rest between them."""
        return laid_out(self.pieces, gap_bars)

    def in_a_row(self, gap_bars: int = 1) -> Piece:
        """All pieces in one part, one after another (to hear the whole set in one go)."""
        return in_a_row(self.pieces, gap_bars)


def laid_out(pieces: Sequence[Piece], gap_bars: int = 1) -> list[Piece]:
    """`pieces` moved to play one after another, each from a bar line, `gap_bars` bars of rest between them (bars
    of the first piece's meter)."""
    bar = pieces[0].time_signature.bar_beats
    moved, start = [], 0.0
    for piece in pieces:
        moved.append(piece.shifted(start))
        start += (max(1, math.ceil(piece.end_beats / bar - 1e-9)) + gap_bars) * bar
    return moved


def in_a_row(pieces: Sequence[Piece], gap_bars: int = 1) -> Piece:
    """The first part of every piece in one part, one after another (`laid_out`): to hear takes back to back."""
    first = pieces[0].parts[0]
    notes = tuple(note for piece in laid_out(pieces, gap_bars) for note in piece.parts[0].notes)
    return pieces[0].with_parts((Part(first.name, notes, first.program, first.is_drum),))


def make_variations(
    number: int,
    model: Any,
    info: ModelInfo,
    prime: Piece,
    *,
    prime_name: str,
    n: int,
    distance: float,
    seed: int,
    style: str | None = None,
    part_index: int = 0,
    tune_index: int = 0,
) -> LatentTakes:
    """`n` variations of the chosen part's first bars; raises `ControlError` for out-of-range controls."""
    pieces = variations(model, prime, part_index=part_index, n=n, distance=distance, seed=seed, style=style)
    controls = {"n": n, "distance": distance, "style": style, "part_index": part_index, "tune_index": tune_index}
    return LatentTakes(number, "variations", tuple(pieces), info, seed, controls, prime_name)


def make_interpolation(
    number: int,
    model: Any,
    info: ModelInfo,
    a: Piece,
    b: Piece,
    *,
    prime_name: str,
    other_name: str,
    steps: int,
    seed: int,
    part_index: int = 0,
    tune_index: int = 0,
    part_index_b: int = 0,
    tune_index_b: int = 0,
) -> LatentTakes:
    """`steps` melodies from a's first bars to b's; raises `ControlError` for out-of-range controls."""
    pieces = interpolate(model, a, b, steps=steps, seed=seed, part_index_a=part_index, part_index_b=part_index_b)
    controls = {
        "steps": steps,
        "part_index": part_index,
        "tune_index": tune_index,
        "other_name": other_name,
        "part_index_b": part_index_b,
        "tune_index_b": tune_index_b,
    }
    return LatentTakes(number, "interpolation", tuple(pieces), info, seed, controls, prime_name)


def make_restyle(
    number: int,
    model: Any,
    info: ModelInfo,
    prime: Piece,
    *,
    prime_name: str,
    style: str,
    strength: float,
    part_index: int = 0,
    tune_index: int = 0,
) -> LatentTakes:
    """The chosen part's first bars and the same bars turned towards `style`, with how much of the melody's contour
    and rhythm survived and how the independent style classifier hears the result."""
    result = restyle(model, prime, style=style, strength=strength, part_index=part_index)
    controls = {"style": style, "strength": strength, "part_index": part_index, "tune_index": tune_index}
    pieces = (result.original, result.restyled)
    return LatentTakes(number, "restyle", pieces, info, 0, controls, prime_name, restyle_summary(result, style))


def restyle_summary(result: Restyled, style: str) -> str:
    """E.g. "Keeps 71 % of the melody's contour and 80 % of its rhythm; the style classifier hears irish (41 %)."."""
    bar_steps = round(result.original.time_signature.bar_beats * encoding.STEPS_PER_BEAT)
    steps = max(bar_steps, math.ceil(result.original.end_beats * encoding.STEPS_PER_BEAT / bar_steps) * bar_steps)
    contour = contour_similarity(result.original, result.restyled, steps)
    rhythm = rhythm_similarity(result.original, result.restyled)
    tokens = encoding.piece_to_tokens(result.restyled, total_steps=steps).tokens
    posteriors = style_classifier().posteriors(tokens, bar_steps)
    heard = max(posteriors, key=posteriors.get)
    kept = "a flat line" if math.isnan(contour) else f"{max(contour, 0):.0%} of the melody's contour"
    return (
        f"Keeps {kept} and {rhythm:.0%} of its rhythm; the style classifier hears {heard.replace('_', ' ')} "
        f"({posteriors[heard]:.0%}; {style.replace('_', ' ')}: {posteriors[style]:.0%})."
    )


@functools.cache
def style_classifier() -> StyleClassifier:
    """The shipped style classifier, loaded once per process."""
    return StyleClassifier.load()


# ---------------------------------------------------------------------------------------------------------------
# Downloads and listening to several takes.


@dataclass(frozen=True)
class Download:
    """One file offered for download: its bytes, or a function that makes them when the file is asked for."""

    label: str  # the button's text, e.g. "MusicXML"
    data: bytes | Callable[[], bytes]
    file_name: str
    mime: str

    def content(self) -> bytes:
        return self.data() if callable(self.data) else self.data


def downloads(piece: Piece, stem: str, settings: RenderSettings) -> tuple[list[Download], list[str]]:
    """`piece` as MIDI, MusicXML, ABC (where ABC can hold it), WAV and MP3 (rendered with `settings`), named
    `stem.<ext>`; and a sentence for each format left out and why.

    The MP3 is encoded only when asked for (`Download.content`): ~150 ms of CPU for an 8-bar take, which the
    server spent on every take of every session while few takes are downloaded as MP3. The other formats are made
    now (a few ms each; the WAV comes with the take's audio), so a format that cannot hold the piece is said at once.
    """
    files, left_out = [], []
    for label, fmt in (("MIDI", "midi"), ("MusicXML", "musicxml"), ("ABC", "abc")):
        try:
            data = export_piece(piece, fmt)
        except FormatError as error:
            left_out.append(f"No {label}: {error}")
            continue
        spec = EXPORT_FORMATS[fmt]
        files.append(Download(label, data, stem + spec.extension, spec.mime))
    rendered = render(piece, settings)
    files.append(Download("WAV", rendered.wav, f"{stem}.wav", "audio/wav"))
    mp3 = functools.partial(encode_mp3, rendered.audio, rendered.sample_rate)
    files.append(Download("MP3", mp3, f"{stem}.mp3", "audio/mpeg"))
    return files, left_out


def takes_archive(takes: list[Take], settings: RenderSettings) -> bytes:
    """Every take (prime + continuation) in one zip: MIDI, MusicXML, ABC where possible and WAV per take."""
    named = [(f"take {take.number} {take.model.name} seed {take.seed}", take.continuation.joined()) for take in takes]
    return takes_zip(named, [render(piece, settings).wav for _, piece in named])
