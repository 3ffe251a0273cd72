"""What the Compose page does, without the page: make a take from a prime and turn a judgement into a rating.

Kept free of Streamlit so the CLI, tests and benches run the very same steps as the app.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from musegen_core.feedback import Rating
from musegen_core.formats.midi import piece_to_midi
from musegen_core.generate import Continuation, continue_melody
from musegen_core.models.registry import ModelInfo
from musegen_core.music import Piece


@dataclass(frozen=True)
class Take:
    """One generated continuation and everything that produced it."""

    number: int  # per-session counter, so each take gets fresh rating widgets
    continuation: Continuation
    model: ModelInfo
    seed: int
    controls: dict[str, Any]  # bars, temperature, top_p, style, part_index, tune_index
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


def make_take(
    number: int,
    model: Any,
    info: ModelInfo,
    prime: Piece,
    *,
    prime_name: str,
    seed: int,
    bars: int,
    temperature: float,
    top_p: float = 1.0,
    style: str | None = None,
    part_index: int = 0,
    tune_index: int = 0,
) -> Take:
    """Continue the chosen part of `prime` with `model`; raises `ControlError` for out-of-range controls."""
    continuation = continue_melody(
        model, prime, part_index=part_index, bars=bars, temperature=temperature, seed=seed, top_p=top_p, style=style
    )
    controls = {
        "bars": bars,
        "temperature": temperature,
        "top_p": top_p,
        "style": style,
        "part_index": part_index,
        "tune_index": tune_index,
    }
    return Take(number, continuation, info, seed, controls, prime_name)


def rating_for(take: Take, stars: int, comment: str = "") -> Rating:
    """The rating record for a take: stars 1–5, with prime and result stored as MIDI."""
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
    )
