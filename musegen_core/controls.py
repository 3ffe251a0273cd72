"""The user's controls over generation: one object for every model family, and the logit steering behind them.

`Controls` holds every knob a user can turn (style or a mix of two, mood, density, complexity, pitch range, key and
mode, temperature, top-p, length, tempo, seed). It validates itself, so the CLI, the app and the API all refuse an
absurd value with one clear `ControlError`.

Most knobs are implemented by *steering*: an additive bias on the next-token logits that depends only on the token
and on the step's position in the bar, so every family applies it the same way (`steering_table` builds a
(positions, vocab) table; the models add row `position` to each step's logits after temperature, before top-p):

- **density** d ∈ [−1, 1]: every NOTE_ON token gets `DENSITY_NATS · d` — more or fewer note onsets per bar.
- **complexity** c ∈ [−1, 1]: NOTE_ON off the beat gets `COMPLEXITY_NATS · c`, on the beat `−½ COMPLEXITY_NATS · c`
  — more or fewer syncopated onsets.
- **pitch range** [low, high]: NOTE_ON outside it is forbidden (−inf).
- **key and mode** with **scale pull** s ∈ [0, 1]: NOTE_ON outside the scale gets `−SCALE_NATS · s`; s = 1 forbids
  it (notes kept in the scale).
- **mood** = valence v (sad −1 … happy +1) and energy e (calm −1 … energetic +1), named presets in `MOODS`: v pulls
  towards the major (v > 0) or minor (v < 0) third, sixth and seventh of the tonic (`VALENCE_NATS · v`); e adds
  `ENERGY_NATS · e` to every NOTE_ON and, unless a tempo is set, scales the tempo by `1 + TEMPO_PER_ENERGY · e`.

Style and style mixes are conditioning (the models' style embeddings, mixed by weight), and *style strength* is
classifier-free guidance: each step's logits = any-style logits + strength × (styled − any-style logits), so 1 is
plain conditioning and higher pushes harder towards the asked style (it does nothing without one); temperature and
top-p act on the sampling distribution; bars, tempo and seed shape the request. `refused_controls` says which knobs
a model does not honour; the UI disables those.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch

from musegen_core import encoding
from musegen_core.errors import ControlError
from musegen_core.music import PITCH_NAMES, Key, Piece

MAX_BARS = 64
TEMPERATURE_RANGE = (0.05, 5.0)
MAX_SEED = 2**31 - 1
TEMPO_RANGE = (20.0, 300.0)
STYLE_STRENGTH_RANGE = (0.0, 4.0)
MIN_RANGE_SEMITONES = 5  # narrower leaves little to choose from; any 5-semitone span holds a note of every scale

DENSITY_NATS = 2.5
COMPLEXITY_NATS = 2.5
SCALE_NATS = 6.0  # scale pull 1 forbids out-of-scale notes outright; below 1 it is this many nats per unit pull
VALENCE_NATS = 2.5
ENERGY_NATS = 1.5
TEMPO_PER_ENERGY = 0.2

SCALES = {  # semitones above the tonic
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "mixolydian": (0, 2, 4, 5, 7, 9, 10),
    "major pentatonic": (0, 2, 4, 7, 9),
    "minor pentatonic": (0, 3, 5, 7, 10),
}
MAJOR_DEGREES = (4, 9, 11)  # major third, sixth, seventh: what makes a tune sound major
MINOR_DEGREES = (3, 8, 10)
MOODS = {"happy": (1.0, 0.5), "sad": (-1.0, -0.5), "calm": (0.0, -1.0), "energetic": (0.5, 1.0)}  # (valence, energy)

STEERING = ("density", "complexity", "pitch_range", "key_mode", "mood")
ALL_CONTROLS = ("style", "style_mix", "style_strength", *STEERING, "temperature", "top_p", "bars", "tempo", "seed")


@dataclass(frozen=True)
class Controls:
    """Everything a user can ask of one generation. Defaults leave the model alone (no steering)."""

    bars: int = 8  # bars to generate, 1–64
    temperature: float = 1.0  # 0.05–5: lower = safer
    top_p: float = 1.0  # nucleus mass in (0, 1]; 1 = off
    seed: int = 0  # 0 … 2**31 − 1
    style: str | None = None  # one of the model's styles; None = any
    mix_style: str | None = None  # a second style to blend in …
    mix: float = 0.0  # … with this weight (0 = only `style`, 1 = only `mix_style`)
    style_strength: float = 2.0  # 0–4: 1 as trained; above, guidance towards the style and style focus (needs one)
    density: float = 0.0  # −1 sparser … +1 busier
    complexity: float = 0.0  # −1 plainer rhythm … +1 more syncopated
    low: int = encoding.MIN_PITCH  # lowest MIDI pitch a new note may have
    high: int = encoding.MAX_PITCH  # highest
    key: str | None = None  # tonic name ("C", "F#", "Bb" …); None = the prime's key
    mode: str | None = None  # one of SCALES; None = the prime's mode
    scale_pull: float = 0.0  # 0 = no pull … 1 = every new note in the scale
    valence: float = 0.0  # −1 sad … +1 happy (see MOODS)
    energy: float = 0.0  # −1 calm … +1 energetic
    tempo_bpm: float | None = None  # None = the prime's tempo (scaled by energy)

    def __post_init__(self) -> None:
        check_whole("bars", self.bars, 1, MAX_BARS)
        check_whole("seed", self.seed, 0, MAX_SEED)
        check_real("temperature", self.temperature, *TEMPERATURE_RANGE)
        check_real("top_p", self.top_p, 0.0, 1.0)
        if self.top_p == 0:
            raise ControlError(f"top_p must be above 0 (received {self.top_p!r})")
        for name in ("density", "complexity", "valence", "energy"):
            check_real(name, getattr(self, name), -1.0, 1.0)
        for name in ("mix", "scale_pull"):
            check_real(name, getattr(self, name), 0.0, 1.0)
        check_real("style_strength", self.style_strength, *STYLE_STRENGTH_RANGE)
        check_whole("low", self.low, encoding.MIN_PITCH, encoding.MAX_PITCH)
        check_whole("high", self.high, encoding.MIN_PITCH, encoding.MAX_PITCH)
        if self.high - self.low < MIN_RANGE_SEMITONES:
            raise ControlError(
                f"the pitch range must span at least {MIN_RANGE_SEMITONES} semitones (received {self.low}–{self.high})"
            )
        check_choice("key", self.key, PITCH_NAMES)
        check_choice("mode", self.mode, tuple(SCALES))
        for name in ("style", "mix_style"):  # which styles exist depends on the model: it checks the names
            if not isinstance(getattr(self, name), str | None):
                raise ControlError(f"{name} must be a style name (received {getattr(self, name)!r})")
        if self.tempo_bpm is not None:
            check_real("tempo_bpm", self.tempo_bpm, *TEMPO_RANGE)
        if self.mix > 0 and (self.style is None or self.mix_style is None):
            raise ControlError("a style mix needs both a style and a second style to blend in")
        self._store_plain_numbers()

    def _store_plain_numbers(self) -> None:
        """Store validated numbers as plain `int`/`float` (a `Fraction` or `numpy.int64` is not JSON-ready)."""
        for field in fields(self):
            value = getattr(self, field.name)
            if isinstance(value, numbers.Real) and not isinstance(value, bool):
                object.__setattr__(self, field.name, int(value) if field.type == "int" else float(value))

    @classmethod
    def with_mood(cls, mood: str, **values: object) -> Controls:
        """Controls with a named mood's valence and energy (see `MOODS`)."""
        if mood not in MOODS:
            raise ControlError(f"mood must be one of {list(MOODS)} (received {mood!r})")
        valence, energy = MOODS[mood]
        return cls(**{"valence": valence, "energy": energy, **values})

    def as_dict(self) -> dict:
        """JSON-ready values (what a rating stores)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> Controls:
        """Controls from a mapping (CLI, URL, API); unknown names are refused."""
        unknown = set(values) - {f.name for f in fields(cls)}
        if unknown:
            raise ControlError(f"unknown controls: {sorted(map(str, unknown))}")
        return cls(**values)

    def steered(self) -> tuple[str, ...]:
        """The steering knobs this object actually turns (names from `STEERING`)."""
        turned = {
            "density": self.density != 0,
            "complexity": self.complexity != 0,
            "pitch_range": (self.low, self.high) != (encoding.MIN_PITCH, encoding.MAX_PITCH),
            "key_mode": self.scale_pull > 0,
            "mood": self.valence != 0 or self.energy != 0,
        }
        return tuple(name for name in STEERING if turned[name])


def controls_from_strings(values: dict[str, str]) -> Controls:
    """Controls from text (a URL's query string): each value read as its field's type; `mood` names a preset.

    Raises:
        ControlError: an unknown name, a value that is not of its field's type, or an out-of-range value.
    """
    values = dict(values)
    mood = values.pop("mood", None)
    types = {f.name: f.type for f in fields(Controls)}
    unknown = set(values) - set(types)
    if unknown:
        raise ControlError(f"unknown controls: {sorted(unknown)}")
    typed = {name: _parsed(name, text, types[name]) for name, text in values.items()}
    return Controls.with_mood(mood, **typed) if mood else Controls(**typed)


def _parsed(name: str, text: str, annotation: str) -> object:
    """One text value as the type its `Controls` annotation names (`int`, `float`, `str`, or one of them | None)."""
    if "int" in annotation or "float" in annotation:
        kind = int if "int" in annotation else float
        try:
            return kind(text)
        except ValueError:
            raise ControlError(
                f"{name} must be a {'whole ' if kind is int else ''}number (received {text!r})"
            ) from None
    return text


def check_whole(name: str, value: object, low: int, high: int) -> None:
    whole = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if not (whole and low <= value <= high):
        raise ControlError(f"{name} must be a whole number within {low} and {high} (received {_shown(value)})")


def check_real(name: str, value: object, low: float, high: float) -> None:
    real = isinstance(value, numbers.Real) and not isinstance(value, bool)
    # The range first: NaN fails it, and a 300-digit int never reaches isfinite (which cannot convert it).
    if not (real and low <= value <= high and math.isfinite(value)):
        raise ControlError(f"{name} must be a number within {low:g} and {high:g} (received {_shown(value)})")


def check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    """`value` is None or one of `choices` (anything else, unhashable values included, is a `ControlError`)."""
    if value is not None and not (isinstance(value, str) and value in choices):
        raise ControlError(f"{name} must be one of {list(choices)} (received {_shown(value)})")


def _shown(value: object) -> str:
    """A received value for a message: its repr, cut to 40 characters (a 300-digit number stays readable)."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "…"


FAMILY_REFUSALS = {  # measured by bench/controls.py (bench/results/controls.json): no monotonic effect. Generation
    # applies a refused style strength as 1 (plain conditioning); the other refused knobs simply change nothing.
    "gan": {
        "temperature": "the GAN's outputs are nearly one-hot, so temperature changes nothing measurable",
        "top_p": "the GAN's outputs are nearly one-hot, so top-p changes nothing measurable",
    },
    "vae": {
        "top_p": "the VAE's decoder is nearly sure of each step given its latent, so top-p moves the take's "
        "surprisal by under 0.15 bits, and not steadily",
    },
}


def refused_controls(family: str, styles: tuple[str, ...]) -> dict[str, str]:
    """Controls a model does NOT honour, each with why (for the UI's disabled widgets and tooltips): style controls
    without style labels, and what `bench/controls.py` found to have no effect in a family (`FAMILY_REFUSALS`).
    Every family honours the steering knobs, length, tempo and seed: all of them sample tokens step by step or chunk
    by chunk through the same steering table."""
    refused = dict(FAMILY_REFUSALS.get(family, {}))
    if not styles:
        why = f"this {family} model was trained without style labels"
        refused |= {"style": why, "style_mix": why, "style_strength": why}
    return refused


# ---------------------------------------------------------------------------------------------------------------
# Key of a melody and the steering table.

# Krumhansl & Kessler (1982) probe-tone ratings of the 12 pitch classes above the tonic. Hand-written rather than
# music21's analyser because it runs on every generation and over thousands of melodies in benches and the style
# classifier, where building a music21 stream per melody costs far more than these dot products.
KK_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
KK_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])


def key_fits(pc_histogram: np.ndarray) -> np.ndarray:
    """(2, 12) Pearson correlations of a 12-bin pitch-class histogram with the major (row 0) and minor (row 1)
    Krumhansl–Kessler profile of every tonic (column); 0 where the histogram is constant."""
    rotations = np.stack([np.roll(pc_histogram, -tonic) for tonic in range(12)]).astype(np.float64)
    centred = rotations - rotations.mean(axis=1, keepdims=True)
    fits = []
    for profile in (KK_MAJOR, KK_MINOR):
        reference = profile - profile.mean()
        norms = np.linalg.norm(centred, axis=1) * np.linalg.norm(reference)
        fits.append(np.divide(centred @ reference, norms, out=np.zeros(12), where=norms > 0))
    return np.stack(fits)


def estimate_key(pitches: np.ndarray, weights: np.ndarray | None = None) -> Key:
    """The major or minor key whose Krumhansl–Kessler profile best fits the (duration-weighted) pitch classes;
    C major when nothing fits (no notes, or every pitch class equally often)."""
    histogram = np.bincount(np.asarray(pitches, dtype=np.int64) % 12, weights=weights, minlength=12)[:12]
    fits = key_fits(histogram)
    if not fits.any():
        return Key(0, "major")
    mode, tonic = np.unravel_index(int(np.argmax(fits)), fits.shape)
    return Key(int(tonic), ("major", "minor")[mode])


def key_of(piece: Piece) -> Key:
    """The piece's written key, else the key estimated from its notes."""
    if piece.key is not None:
        return piece.key
    notes = [note for part in piece.parts for note in part.notes]
    return estimate_key(np.array([n.pitch for n in notes]), np.array([n.duration_beats for n in notes]))


def target_scale(controls: Controls, prime_key: Key) -> tuple[int, tuple[int, ...]]:
    """(tonic pitch class, scale degrees) the key/mode and mood controls refer to: the asked key and mode, each
    falling back to the prime's."""
    tonic = PITCH_NAMES.index(controls.key) if controls.key is not None else prime_key.tonic_pc
    return tonic, SCALES[controls.mode or prime_key.mode]


def steering_table(controls: Controls, bar_steps: int, beat_steps: int, prime_key: Key) -> torch.Tensor | None:
    """(encoding.MAX_BAR_STEPS, VOCAB_SIZE) float32 logit biases by position in bar and token, or None when no
    steering knob is turned (so unsteered sampling stays exactly as before). `beat_steps` is the meter's beat in
    sixteenths (4 in 4/4, 6 in 6/8)."""
    if not controls.steered():
        return None
    table = torch.zeros(encoding.MAX_BAR_STEPS, encoding.VOCAB_SIZE)
    pitches = torch.arange(encoding.MIN_PITCH, encoding.MAX_PITCH + 1)
    notes = slice(encoding.NOTE_ON, encoding.VOCAB_SIZE)
    on_beat = torch.tensor([position % beat_steps == 0 for position in range(encoding.MAX_BAR_STEPS)])
    off_beat = (~on_beat).float() - 0.5 * on_beat.float()
    table[:, notes] += DENSITY_NATS * controls.density + ENERGY_NATS * controls.energy
    table[:, notes] += (COMPLEXITY_NATS * controls.complexity * off_beat)[:, None]
    tonic, scale = target_scale(controls, prime_key)
    degrees = (pitches - tonic) % 12
    valence = torch.zeros(len(pitches))
    valence[torch.isin(degrees, torch.tensor(MAJOR_DEGREES))] = VALENCE_NATS * controls.valence
    valence[torch.isin(degrees, torch.tensor(MINOR_DEGREES))] = -VALENCE_NATS * controls.valence
    table[:, notes] += valence
    outside_scale = ~torch.isin(degrees, torch.tensor(scale))
    penalty = math.inf if controls.scale_pull >= 1 else SCALE_NATS * controls.scale_pull
    table[:, notes] -= torch.where(outside_scale, penalty, 0.0)
    outside_range = (pitches < controls.low) | (pitches > controls.high)
    table[:, notes] = table[:, notes].masked_fill(outside_range, -math.inf)
    return table


def steered_tempo(controls: Controls, prime_tempo: float) -> float:
    """The take's tempo: the asked one, else the prime's scaled by energy (kept within the allowed tempi)."""
    if controls.tempo_bpm is not None:
        return float(controls.tempo_bpm)
    low, high = TEMPO_RANGE
    return float(min(high, max(low, prime_tempo * (1 + TEMPO_PER_ENERGY * controls.energy))))
