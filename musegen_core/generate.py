"""Generation modes over `Piece`s: continue a melody with any model, optionally in one of the model's styles; and,
with a VAE, variations around a melody, interpolations between two, and restyling (at the end of this file).

The prime is encoded with the shared token encoding, padded with rests to the end of its last bar, and the model
samples whole bars after it. Sampling uses a `torch.Generator` seeded from `seed` (the global RNG is never touched),
so the same model, prime and controls always give the same notes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from musegen_core import encoding
from musegen_core.controls import (
    MAX_SEED,
    TEMPERATURE_RANGE,
    Controls,
    check_real,
    check_whole,
    key_of,
    refused_controls,
    steered_tempo,
    steering_table,
)
from musegen_core.errors import ControlError
from musegen_core.models.registry import MelodyModel
from musegen_core.models.style import Style, StyleMix
from musegen_core.models.style_judge import shipped_judge
from musegen_core.models.vae import WINDOW, slerp
from musegen_core.music import Part, Piece

CONTEXT_BARS = 16  # the model reads at most this many bars of the prime


@dataclass(frozen=True)
class Continuation:
    """A prime melody and the bars generated after it (both single-part pieces on the same time line)."""

    prime: Piece  # the user's melody part, as given (at the take's tempo)
    generated: Piece  # the new notes only, in absolute beats: they start at the first bar line after the prime
    start_beats: float  # that bar line: where the generated bars begin

    def generated_alone(self) -> Piece:
        """The generated bars moved to start at beat 0 (to play or export them without the prime's silence)."""
        return self.generated.shifted(-self.start_beats)

    def joined(self) -> Piece:
        """Prime and continuation in one part (for MIDI export and playback)."""
        part = self.prime.parts[0]
        notes = part.notes + self.generated.parts[0].notes
        return self.prime.with_parts((Part(part.name, notes, part.program, part.is_drum),))


def continue_melody(
    model: MelodyModel,
    prime: Piece,
    controls: Controls | None = None,
    *,
    part_index: int = 0,
    candidates: int | None = None,
    **values: object,
) -> Continuation:
    """Continue one part of `prime` by `controls.bars` bars of its meter.

    Args:
        model: a loaded melody model (see `musegen_core.models.registry.load_model`).
        prime: the piece holding the melody; its meter, key and pickup carry over, and its tempo unless the
            controls set one.
        controls: every knob (see `musegen_core.controls.Controls`); default: none turned.
        part_index: which part is the melody (polyphonic parts are reduced to their top line).
        candidates: candidates per bar that the style judge chooses from (*style focus*, `_focused`); None = as
            many as the style strength asks for (`focus_candidates`); 1 = no focus.
        values: single controls by name (`bars=4, seed=3`), applied over `controls`.

    Raises:
        ControlError: a control is out of range or unknown, a style is not one of the model's, the part index does
            not exist, or the melody has no notes.
    """
    controls = _merged(controls, values)
    style = _model_style(model, controls)
    if controls.style_strength == 0 and model.family in UNGUIDED_FAMILIES:
        style = None  # strength 0 ignores the style in every family (guided ones get there through guidance 0)
    melody = _melody_part(prime, part_index)
    context, positions, start_step = _model_inputs(melody, controls.bars)
    steering = steering_table(controls, *_meter_steps(melody), key_of(melody))

    def sample(done: np.ndarray, steps: int, generators: list[torch.Generator]) -> np.ndarray:
        """(candidates, steps) new tokens after the context and the tokens `done` so far, one row per generator."""
        known = np.concatenate([context, done])
        return model.generate_many(
            torch.from_numpy(known),
            torch.from_numpy(positions[: len(known) + steps]),
            steps,
            generators=generators,
            temperature=controls.temperature,
            top_p=controls.top_p,
            style=style,
            steering=steering,
            guidance=_guidance(model, controls),
        ).numpy()

    count = focus_candidates(controls.style_strength, model.family) if candidates is None else candidates
    seeds = candidate_seeds(int(controls.seed), count if style is not None else 1)
    generators = [torch.Generator().manual_seed(seed) for seed in seeds]
    total = len(positions) - len(context)
    if len(generators) == 1:
        new = sample(np.empty(0, dtype=np.int64), total, generators)[0]
    else:
        new = _focused(sample, generators, total, _meter_steps(melody)[0], _judge_target(model, style))
    melody = replace(melody, tempo_bpm=steered_tempo(controls, melody.tempo_bpm))
    start_beats = start_step / encoding.STEPS_PER_BEAT
    return Continuation(melody, _generated_piece(melody, new, start_beats), start_beats)


# Candidates per bar at the strongest style strength: as many as keep the strongest click near the LSTM's at 16
# (bench/latency.py), so the cheap VAE and GAN judge more. Chosen on valid excerpts (bench/style_focus.py: with the
# interval-reading judge, 16 / 32 / 64 candidates gave VAE 0.92 / 0.98 / 0.98, GAN 0.91 / 0.95 / 0.96, LSTM 1.00 /
# 0.98 / 0.99, Transformer 0.96 / 0.95 / 0.99 at 4× the cost), never on the test excerpts bench/controls.py reports.
MOST_CANDIDATES = {"vae": 32, "gan": 64}
DEFAULT_MOST_CANDIDATES = 16


def focus_candidates(style_strength: float, family: str = "") -> int:
    """Candidates per bar that style focus samples at a style strength: none (1) up to the default strength 2 — so
    the default costs no more than one take — then growing geometrically to the family's most at the strongest
    setting, 4 (`MOST_CANDIDATES`; 16 for a family not named there).

    >>> [focus_candidates(s) for s in (0, 1, 2, 2.5, 3, 3.5, 4)]
    [1, 1, 1, 2, 4, 8, 16]
    >>> [focus_candidates(s, "gan") for s in (2, 3, 4)]
    [1, 8, 64]
    """
    most = MOST_CANDIDATES.get(family, DEFAULT_MOST_CANDIDATES)
    return max(1, round(most ** ((style_strength - 2) / 2))) if style_strength > 2 else 1


def _focused(sample, generators: list[torch.Generator], total: int, bar_steps: int, target: dict) -> np.ndarray:
    """Style focus, bar by bar: each candidate's generator writes the next bar after the bars kept so far (all
    candidates in one batch), and the style judge keeps the candidate whose bars so far sound most like the target.
    `sample(done, steps, generators)` writes `steps` tokens after `done`, one row per generator."""
    kept = np.empty(0, dtype=np.int64)
    while len(kept) < total:
        bars = sample(kept, min(bar_steps, total - len(kept)), generators)
        kept = _most_in_style([np.concatenate([kept, bar]) for bar in bars], bar_steps, target)
    return kept


FOCUS_SEED_STRIDE = 104_729  # candidate j of seed s samples with seed (s + j × stride) mod 2**31


def candidate_seeds(seed: int, count: int) -> list[int]:
    """The seeds of style focus's candidates, `seed` first (each candidate samples all its bars from one generator
    seeded with its seed; for a one-bar take, candidate j is the take of its seed without focus)."""
    return [(seed + j * FOCUS_SEED_STRIDE) % (MAX_SEED + 1) for j in range(count)]


def _judge_target(model: MelodyModel, style: Style) -> dict[str, float]:
    """The asked style as weights over style names (a mix: both, by its weight)."""
    if isinstance(style, StyleMix):
        return {model.styles[style.first]: 1 - style.weight, model.styles[style.second]: style.weight}
    return {model.styles[style]: 1.0}


def _most_in_style(takes: list[np.ndarray], bar_steps: int, target: dict[str, float]) -> np.ndarray:
    """The take the style judge finds most in the target style: the highest target-weighted log posterior (for one
    style, its log probability). Styles the judge does not know are left out of the score; a target it knows
    nothing of keeps the first take."""
    judge = shipped_judge()
    weights = np.array([target.get(style, 0.0) for style in judge.styles])
    if not weights.any():
        return takes[0]
    scores = judge.log_posteriors([(tokens, bar_steps) for tokens in takes]) @ weights
    return takes[int(np.argmax(scores))]


# Families whose style strength works through style focus alone: classifier-free guidance made the GAN's style no
# clearer and its bars less like real tunes (bench/controls.py, measured before style focus existed).
UNGUIDED_FAMILIES = frozenset({"gan"})


def _guidance(model: MelodyModel, controls: Controls) -> float:
    """The style strength as classifier-free guidance; plain conditioning (1) for an unguided family or one that
    refuses style strength (`controls.FAMILY_REFUSALS`)."""
    if model.family in UNGUIDED_FAMILIES or "style_strength" in refused_controls(model.family, model.styles):
        return 1.0
    return controls.style_strength


def _merged(controls: Controls | None, values: dict) -> Controls:
    try:
        return replace(controls or Controls(), **values)
    except TypeError:
        raise ControlError(f"unknown controls: {sorted(set(values) - set(Controls().as_dict()))}") from None


def _model_style(model: MelodyModel, controls: Controls) -> Style:
    """The model's style argument: a style index, a mix of two, or None (any style)."""
    style = _style_index(model, controls.style)
    if controls.mix == 0 or style is None:
        return style
    return StyleMix(style, _style_index(model, controls.mix_style), controls.mix)


def _style_index(model: MelodyModel, style: str | None) -> int | None:
    """Index of `style` in the model's styles (None stays None: any style)."""
    if style is None:
        return None
    if style not in model.styles:
        offered = f"one of {list(model.styles)}" if model.styles else "None: this model has no style conditioning"
        raise ControlError(f"style must be {offered} (received {style!r})")
    return model.styles.index(style)


def _meter_steps(melody: Piece) -> tuple[int, int]:
    """(bar, beat) lengths in sixteenth steps."""
    meter = melody.time_signature
    return round(meter.bar_beats * encoding.STEPS_PER_BEAT), max(1, round(meter.beat_beats * encoding.STEPS_PER_BEAT))


def _melody_part(prime: Piece, part_index: int) -> Piece:
    """The chosen part as a one-part piece; refuses a missing part or a part without notes."""
    if not 0 <= part_index < len(prime.parts):
        raise ControlError(f"part_index must be within 0 and {len(prime.parts) - 1} (received {part_index})")
    melody = prime.only_part(part_index)
    if not melody.parts[0].notes:
        raise ControlError("the melody to continue has no notes: pick a part with notes or add a few notes first")
    return melody


def _model_inputs(melody: Piece, bars: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Context tokens (the prime padded with rests to its next bar line, at most `CONTEXT_BARS` bars of it), bar
    positions of every context and generated step, and the step (from the piece's start) where generation begins."""
    encoded = encoding.piece_to_tokens(melody)
    bar_steps, offset = encoded.bar_steps, encoded.offset_steps
    start_step = _first_bar_line(len(encoded.tokens), bar_steps, offset)
    context_start = max(0, start_step - CONTEXT_BARS * bar_steps)
    padding = np.full(start_step - len(encoded.tokens), encoding.REST, dtype=np.int64)
    context = np.concatenate([encoded.tokens, padding])[context_start:]
    positions = encoding.bar_positions(len(context) + bars * bar_steps, bar_steps, offset, start=context_start)
    return context, positions, start_step


def _first_bar_line(end_step: int, bar_steps: int, offset_steps: int) -> int:
    """The first step at or after `end_step` that starts a bar (position 0)."""
    return end_step + (-(end_step + offset_steps)) % bar_steps


def _generated_piece(melody: Piece, tokens: np.ndarray, start_beats: float) -> Piece:
    """Decode generated tokens into a one-part piece; step 0 lies at `start_beats`."""
    part = melody.parts[0]
    notes = encoding.tokens_to_notes(tokens, start_beats=start_beats)
    return melody.with_parts((Part(part.name, tuple(notes), part.program, part.is_drum),))


# ---------------------------------------------------------------------------------------------------------------
# Latent-space modes of a VAE model (`models/vae.py`): variations around a melody and interpolations between two.

MAX_TAKES = 16
DISTANCE_RANGE = (0.0, 3.0)  # standard deviations of the latent noise
MAX_INTERPOLATION_STEPS = 16
VARIATION_BARS = 8  # variations re-imagine at most this many bars of the prime, one latent window at a time


def variations(
    model: MelodyModel,
    prime: Piece,
    *,
    part_index: int = 0,
    n: int = 4,
    distance: float = 0.5,
    seed: int = 0,
    style: str | None = None,
    temperature: float = 0.0,
) -> list[Piece]:
    """`n` variations of the prime's first bars (up to 8, one latent window of 2 bars at a time, from the first
    bar line): each window's latent mean is moved by `distance` × a unit Gaussian and decoded.

    Args:
        model: a VAE model (family "vae").
        distance: 0–3 latent standard deviations (0 = the model's reconstruction of the prime).
        seed: 0 to 2**31 − 1; the same seed gives the same takes.
        temperature: 0 decodes greedily (the default); 0.05–5 samples each step.

    Returns:
        n one-part pieces with the prime's tempo, meter and key, starting at beat 0 on a bar line.

    Raises:
        ControlError: not a VAE, a control out of range, an unknown style, a missing or empty part, or bars
            longer than the model's window.
    """
    vae = _vae_model(model)
    _check_latent_controls(n, "n", MAX_TAKES, seed, temperature)
    check_real("distance", distance, *DISTANCE_RANGE)
    style_index = _style_index(model, style)
    melody = _melody_part(prime, part_index)
    windows = _latent_windows(vae, melody, VARIATION_BARS)
    generator = torch.Generator().manual_seed(int(seed))
    means = [vae.latent_of(tokens, positions)[0] for tokens, positions, _ in windows]
    takes = []
    for _ in range(int(n)):
        tokens = [
            _decode(vae, mu + distance * torch.randn(mu.shape, generator=generator), window, temperature, generator,
                    style_index)
            for mu, window in zip(means, windows, strict=True)
        ]  # fmt: skip
        takes.append(_window_piece(melody, np.concatenate(tokens)))
    return takes


def interpolate(
    model: MelodyModel,
    a: Piece,
    b: Piece,
    *,
    steps: int = 5,
    seed: int = 0,
    part_index_a: int = 0,
    part_index_b: int = 0,
    temperature: float = 0.0,
) -> list[Piece]:
    """`steps` melodies on the spherical path (slerp) from the latent mean of a's first 2 bars to b's.

    Each point is decoded on a's meter (greedily, or sampled at `temperature` with a generator seeded by `seed`)
    into a one-part piece with a's tempo, meter and key, starting at beat 0; the first is a's reconstruction, the
    last b's as the model hears it in a's meter.

    Raises:
        ControlError: not a VAE, steps outside 2–16, a bad seed or temperature, a missing or empty part, or bars
            longer than the model's window.
    """
    vae = _vae_model(model)
    _check_latent_controls(steps, "steps", MAX_INTERPOLATION_STEPS, seed, temperature, least=2)
    melody_a, melody_b = _melody_part(a, part_index_a), _melody_part(b, part_index_b)
    window_a, window_b = _latent_windows(vae, melody_a, 2)[0], _latent_windows(vae, melody_b, 2)[0]
    z_a, z_b = vae.latent_of(*window_a[:2])[0], vae.latent_of(*window_b[:2])[0]
    generator = torch.Generator().manual_seed(int(seed))
    points = [slerp(z_a, z_b, i / (int(steps) - 1)) for i in range(int(steps))]
    return [_window_piece(melody_a, _decode(vae, z, window_a, temperature, generator)) for z in points]


RESTYLE_BARS = 16  # restyle re-imagines at most this many bars of the melody
STRENGTH_RANGE = (0.0, 4.0)  # multiples of the latent step from the melody's nearest style to the target style


@dataclass(frozen=True)
class Restyled:
    """A melody's bars as the VAE reads them, and the same bars moved towards another style."""

    original: Piece  # the melody's first bars from its first bar line (what was restyled), from beat 0
    restyled: Piece  # the same span in the target style, from beat 0
    source_styles: tuple[str, ...]  # per latent window, the style whose centroid was nearest


def restyle(
    model: MelodyModel,
    prime: Piece,
    *,
    style: str,
    strength: float = 1.0,
    part_index: int = 0,
    seed: int = 0,
    temperature: float = 0.0,
) -> Restyled:
    """The prime's first bars (up to 16) turned towards `style` (MusicVAE-style attribute vectors): each 2-bar
    window's latent mean μ moves by `strength` × (centroid of `style` − centroid of the style nearest to μ), and is
    decoded with the decoder conditioned on `style`. Strength 0 keeps the melody (decoded in the target style's
    conditioning); higher values trade likeness to the melody for likeness to the style.

    Raises:
        ControlError: not a VAE, a VAE without measured style centroids, an unknown style, a control out of range,
            a missing or empty part, or bars longer than the model's window.
    """
    vae = _vae_model(model)
    _check_latent_controls(1, "n", 1, seed, temperature)
    check_real("strength", strength, *STRENGTH_RANGE)
    target = _style_index(model, style)
    if target is None or not vae.config.style_centroids:
        raise ControlError("restyle needs a target style and a VAE whose style centroids were measured")
    centroids = torch.tensor(vae.config.style_centroids)
    melody = _melody_part(prime, part_index)
    windows = _latent_windows(vae, melody, RESTYLE_BARS)
    generator = torch.Generator().manual_seed(int(seed))
    decoded, sources = [], []
    for window in windows:
        mu = vae.latent_of(*window[:2])[0]
        nearest = int(torch.cdist(mu[None], centroids)[0].argmin())
        z = mu + strength * (centroids[target] - centroids[nearest])
        decoded.append(_decode(vae, z, window, temperature, generator, target))
        sources.append(model.styles[nearest])
    original = np.concatenate([tokens[:chunk].numpy() for tokens, _, chunk in windows])
    return Restyled(_window_piece(melody, original), _window_piece(melody, np.concatenate(decoded)), tuple(sources))


def _vae_model(model: MelodyModel):
    if getattr(model, "family", None) != "vae":
        raise ControlError(
            f"variations and interpolation need a VAE model (received a {getattr(model, 'family', '?')} model)"
        )
    return model


def _check_latent_controls(count, name: str, most: int, seed, temperature: float, least: int = 1) -> None:
    check_whole(name, count, least, most)
    check_whole("seed", seed, 0, MAX_SEED)
    low, high = TEMPERATURE_RANGE
    if not (temperature == 0 or low <= temperature <= high):
        raise ControlError(f"temperature must be 0 (greedy) or within {low} and {high} (received {temperature!r})")


def _latent_windows(vae, melody: Piece, bars: int) -> list[tuple[torch.Tensor, torch.Tensor, int]]:
    """The prime's latent windows from its first bar line: (WINDOW tokens, their positions, steps kept) each, one
    per `chunk` bars (2 bars where two fit in a window, else 1) covering up to `bars` bars of the melody."""
    encoded = encoding.piece_to_tokens(melody)
    bar_steps, offset = encoded.bar_steps, encoded.offset_steps
    if bar_steps > WINDOW:
        raise ControlError(f"the VAE encodes bars of at most {WINDOW} sixteenths (received {melody.time_signature})")
    chunk = max(1, min(2, WINDOW // bar_steps)) * bar_steps
    first = (-offset) % bar_steps
    melody_steps = max(len(encoded.tokens) - first, 1)
    count = max(1, min(bars * bar_steps // chunk, -(-melody_steps // chunk)))
    tokens = np.full(first + count * chunk + WINDOW, encoding.REST, dtype=np.int64)
    tokens[: len(encoded.tokens)] = encoded.tokens[: len(tokens)]
    windows = []
    for start in range(first, first + count * chunk, chunk):
        positions = encoding.bar_positions(WINDOW, bar_steps, offset, start=start)
        windows.append((torch.from_numpy(tokens[start : start + WINDOW]), torch.from_numpy(positions), chunk))
    return windows


def _decode(vae, z: torch.Tensor, window, temperature: float, generator: torch.Generator, style=None) -> np.ndarray:
    """The first `chunk` steps decoded from z on the window's positions."""
    _, positions, chunk = window
    greedy = temperature == 0
    tokens = vae.sample_window(
        z, positions, temperature=temperature or 1.0, generator=generator, style=style, greedy=greedy
    )
    return tokens[:chunk].numpy()


def _window_piece(melody: Piece, tokens: np.ndarray) -> Piece:
    """Decoded window tokens as a one-part piece in the melody's tempo, meter and key, from beat 0 (no pickup)."""
    part = melody.parts[0]
    notes = encoding.tokens_to_notes(tokens)
    return replace(melody, parts=(Part(part.name, tuple(notes), part.program, part.is_drum),), pickup_beats=0.0)
