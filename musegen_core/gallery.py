"""The Style Gallery without the page: one melody continued in every style of a model, side by side, with the
numbers that tell the takes apart and a few plain sentences saying what differs most.

Every take gets the same prime, controls and seed; only the style changes, so what differs between two takes is
what the style does (and the sampling noise that comes with it — change the seed to see how much of it stays).

The sentences come from `explain`: each measure of `describe` is compared with the other styles' mean, in units of
how much those styles spread on that measure (their standard deviation, but never less than a difference a
listener can hear, `Measure.floor`). The largest standardised differences are worded, with both numbers, most
striking first. Nothing is written per style: the same rule words every take.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from importlib import resources

from musegen_core.controls import SCALES, Controls, key_of
from musegen_core.errors import ControlError
from musegen_core.evaluation import control_measures as measure
from musegen_core.formats import open_music_file
from musegen_core.generate import Continuation, continue_melody
from musegen_core.models.registry import MelodyModel
from musegen_core.music import Key, Piece, pitch_name

BUILTIN_FILE = "gallery.abc"  # package data: hand-written public-domain tunes (no Essen: it is non-commercial)
SHOWN_PRIME_BARS = 8  # the rolls show the prime's last 8 bars (all of it if that hides less than a bar)
STANDOUT = 1.0  # a standardised difference at least this big is worth a sentence …
NOTICEABLE = 0.5  # … and at least this big, when fewer than MIN_SENTENCES stand out
MIN_SENTENCES, MAX_SENTENCES = 2, 3
OTHER_STYLES = "others"
LEADING_TONE = 11  # semitones above the tonic: counted in a minor key's scale, as in harmonic minor


# ---------------------------------------------------------------------------------------------------------------
# Built-in melodies.


def builtin_data() -> bytes:
    """The built-in tunes as one ABC file (read them with `musegen_core.formats.open_music_file`)."""
    return resources.files("musegen_core").joinpath("data", BUILTIN_FILE).read_bytes()


def builtin_titles() -> tuple[str, ...]:
    return open_music_file(builtin_data(), BUILTIN_FILE).tune_titles


def builtin_tune(index: int) -> Piece:
    return open_music_file(builtin_data(), BUILTIN_FILE).load(index)


# ---------------------------------------------------------------------------------------------------------------
# One take per style.


def style_label(style: str) -> str:
    """What to call a style on screen: "american_fiddle" → "American fiddle"."""
    text = style.replace("_", " ").strip()
    return text[:1].upper() + text[1:]


@dataclass(frozen=True)
class StyleTake:
    """The melody continued in one style; `stats` from `describe`, `explanation` from `explain`."""

    style: str
    continuation: Continuation
    controls: Controls
    stats: dict[str, float]
    explanation: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return style_label(self.style)


def style_takes(
    model: MelodyModel, prime: Piece, *, part_index: int = 0, bars: int = 8, seed: int = 0
) -> list[StyleTake]:
    """One continuation of `prime`'s part per style of `model`, in the model's order, all with the same seed.

    Raises:
        ControlError: the model has no styles, a control is out of range, or the part is missing or empty.
    """
    styles = tuple(getattr(model, "styles", ()))
    if not styles:
        family = getattr(model, "family", "")
        raise ControlError(
            f"the Style Gallery needs a style-conditioned model; this {family} model was trained without style "
            "labels. Pick a model that lists styles."
        )
    return [
        style_take(style, continue_melody(model, prime, style_controls(style, bars, seed), part_index=part_index),
                   bars, seed)
        for style in styles
    ]  # fmt: skip


def style_controls(style: str, bars: int, seed: int) -> Controls:
    """What every take of a gallery is made with: only the style differs."""
    return Controls(bars=bars, seed=seed, style=style)


def style_take(style: str, continuation: Continuation, bars: int, seed: int) -> StyleTake:
    """A gallery's take in `style` (made with `style_controls(style, bars, seed)`), measured (`describe`)."""
    stats = describe(continuation.generated, bars, key_of(continuation.prime))
    return StyleTake(style, continuation, style_controls(style, bars, seed), stats)


# ---------------------------------------------------------------------------------------------------------------
# The numbers, and the sentences.


def describe(piece: Piece, bars: float, key: Key | None = None) -> dict[str, float]:
    """What can be measured in a one-part melody of `bars` bars (see `MEASURES` for each entry). Scale and mode
    measures are relative to `key` (default: `controls.key_of(piece)`); a minor key's scale is the natural minor
    plus the leading tone. Ratios of a melody without notes are NaN."""
    key = key or key_of(piece)
    scale = SCALES[key.mode] + ((LEADING_TONE,) if key.mode == "minor" else ())  # G♯ belongs to A minor
    pitches = [note.pitch for part in piece.parts[:1] for note in part.notes]
    return {
        "notes_per_bar": measure.onsets_per_bar(piece, bars),
        "off_beat_share": measure.off_beat_share(piece),
        "mean_interval": measure.mean_interval(piece),
        "pitch_span": measure.pitch_span(piece),
        "mean_pitch": statistics.fmean(pitches) if pitches else math.nan,
        "majorness": measure.majorness(piece, key.tonic_pc),
        "in_scale_share": measure.in_scale_share(piece, key.tonic_pc, scale),
        "pitch_class_entropy": measure.pitch_class_entropy(piece),
        "notes_per_second": measure.notes_per_second(piece, bars),
    }


@dataclass(frozen=True)
class Measure:
    """How one number of `describe` is compared and worded.

    `floor` is the smallest spread the standardised difference divides by: roughly the smallest difference a
    listener notices, so that styles that all agree on a measure do not make a tiny difference look big.
    """

    name: str  # key in `describe`'s dict
    column: str  # short table heading
    floor: float
    higher: str  # headline when the take's value is above the reference
    lower: str
    below_zero: tuple[str, str] | None = None  # (higher, lower) headlines when the take's value is negative
    sentence: str = ""  # the take's side of the sentence, "{take}" its formatted value
    show: Callable[[float], str] = str

    def headline(self, value: float, higher: bool) -> str:
        higher_word, lower_word = self.below_zero if self.below_zero and value < 0 else (self.higher, self.lower)
        return higher_word if higher else lower_word


def _percent(value: float) -> str:
    return f"{value:.0%}"


def _one_decimal(value: float) -> str:
    return f"{value:.1f}"


def _whole(value: float) -> str:
    return f"{value:.0f}"


def _signed(value: float) -> str:
    return f"{value:+.2f}".replace("-", "−")


def _note(value: float) -> str:
    return pitch_name(round(value))


def _different_notes(entropy_bits: float) -> str:
    """Pitch-class entropy as the number of equally used pitch classes with that entropy (2 ** bits)."""
    return f"{2**entropy_bits:.1f}"


MEASURES = (
    Measure("notes_per_bar", "Notes per bar", 0.75, "Busier", "Sparser",
            sentence="{take} notes per bar", show=_one_decimal),
    Measure("off_beat_share", "Between the beats", 0.08, "More syncopated", "Plainer rhythm",
            sentence="{take} of the notes start between the beats", show=_percent),
    Measure("mean_interval", "Step (semitones)", 0.5, "Leaps more", "Moves more by step",
            sentence="{take} semitones from note to note", show=_one_decimal),
    Measure("pitch_span", "Range (semitones)", 3.0, "Wider range", "Narrower range",
            sentence="spans {take} semitones", show=_whole),
    Measure("mean_pitch", "Centre", 2.0, "Sits higher", "Sits lower",
            sentence="average pitch near {take}", show=_note),
    Measure("majorness", "Majorness", 0.1, "More major", "Less major", below_zero=("Less minor", "More minor"),
            sentence="majorness {take}", show=_signed),
    Measure("in_scale_share", "In the key", 0.05, "Stays closer to the key", "Strays from the key",
            sentence="{take} of the notes in the key's scale", show=_percent),
    Measure("pitch_class_entropy", "Variety", 0.25, "More varied notes", "Fewer different notes",
            sentence="as varied as {take} equally used notes",
            show=_different_notes),
)  # fmt: skip
"""The measures `explain` compares, in the order tables show them (notes per second is left out: every take has
the prime's tempo, so it only repeats notes per bar)."""


@dataclass(frozen=True)
class Difference:
    measure: Measure
    value: float
    reference: float
    z: float  # standardised difference: (value − reference) / spread

    def sentence(self, against: str) -> str:
        """E.g. "Busier: 6.2 notes per bar (others: 3.9)."."""
        headline = self.measure.headline(self.value, higher=self.z > 0)
        detail = self.measure.sentence.format(take=self.measure.show(self.value))
        return f"{headline}: {detail} ({against}: {self.measure.show(self.reference)})."


def differences(take_stats: dict[str, float], reference_stats: Sequence[dict[str, float]]) -> list[Difference]:
    """Each measure's standardised difference from the references' mean, largest first (ties: `MEASURES` order).

    The spread is the references' standard deviation (0 for a single reference), never less than the measure's
    `floor`. Measures that are NaN for the take or every reference are left out.
    """
    found = []
    for m in MEASURES:
        value = take_stats.get(m.name, math.nan)
        references = [stats[m.name] for stats in reference_stats if not math.isnan(stats.get(m.name, math.nan))]
        if math.isnan(value) or not references:
            continue
        reference = statistics.fmean(references)
        spread = max(statistics.stdev(references) if len(references) > 1 else 0.0, m.floor)
        found.append(Difference(m, value, reference, (value - reference) / spread))
    return sorted(found, key=lambda d: -abs(d.z))


def explain(
    take_stats: dict[str, float], reference_stats: Sequence[dict[str, float]], *, against: str = OTHER_STYLES
) -> list[str]:
    """2–3 sentences on what sets a take apart from the references (the other styles, or the input melody), biggest
    standardised difference first, each with both numbers: "Busier: 6.2 notes per bar (others: 3.9)." (`against`
    names the references). Measures that differ by at least `STANDOUT` spreads are worded, up to `MAX_SENTENCES`;
    when fewer than `MIN_SENTENCES` do, the largest ones that reach `NOTICEABLE` are; when none does, one sentence
    says so."""
    ranked = differences(take_stats, reference_stats)
    picked = [d for d in ranked if abs(d.z) >= STANDOUT][:MAX_SENTENCES]
    if len(picked) < MIN_SENTENCES:
        picked = [d for d in ranked if abs(d.z) >= NOTICEABLE][:MIN_SENTENCES]
    if not picked:
        return [f"Nothing stands out: close to {against} on every measure."]
    return [d.sentence(against) for d in picked]


# ---------------------------------------------------------------------------------------------------------------
# The whole gallery.


@dataclass(frozen=True)
class Gallery:
    """Every style's take on one melody, explained, with the axes their piano rolls share."""

    prime: Piece  # the chosen part as a one-part piece
    prime_stats: dict[str, float]
    takes: tuple[StyleTake, ...]
    key: Key  # what scale and mode measures refer to
    bars: int
    seed: int
    pitch_range: tuple[int, int]  # lowest and highest pitch shown in any roll
    beat_range: tuple[float, float]  # x axis of every roll: the last bars of the prime, then the continuation

    def table(self) -> list[dict[str, str]]:
        """One row per take and one for the input melody, each measure formatted as `explain` words it."""
        rows = [("Your melody", self.prime_stats), *((take.label, take.stats) for take in self.takes)]
        return [
            {"": label, **{m.column: "–" if math.isnan(stats[m.name]) else m.show(stats[m.name]) for m in MEASURES}}
            for label, stats in rows
        ]


def _same_as(take: StyleTake, takes: Sequence[StyleTake]) -> list[str]:
    """A sentence when other styles gave exactly the same notes (a strong prime can outweigh the style)."""
    notes = take.continuation.generated.parts[0].notes
    same = [
        other.label for other in takes if other is not take and other.continuation.generated.parts[0].notes == notes
    ]
    return [f"Same notes as {' and '.join(same)}: here the style changed nothing."] if same else []


def make_gallery(model: MelodyModel, prime: Piece, *, part_index: int = 0, bars: int = 8, seed: int = 0) -> Gallery:
    """`style_takes`, each explained against the others, plus the input melody's numbers and the shared roll axes.

    Raises:
        ControlError: as `style_takes`.
    """
    return gallery_of(style_takes(model, prime, part_index=part_index, bars=bars, seed=seed), bars, seed)


def gallery_of(takes: Sequence[StyleTake], bars: int, seed: int) -> Gallery:
    """The gallery of `takes` (one per style, all of the same prime, `bars` and `seed`): each take explained against
    the others, the input melody's numbers and the shared roll axes."""
    explained = tuple(
        replace(
            take, explanation=(*_same_as(take, takes), *explain(take.stats, [o.stats for o in takes if o is not take]))
        )
        for take in takes
    )
    melody, start = takes[0].continuation.prime, takes[0].continuation.start_beats
    key = key_of(melody)
    bar = melody.time_signature.bar_beats
    first_shown = start - SHOWN_PRIME_BARS * bar
    beat_range = (first_shown if first_shown >= bar else 0.0, start + bars * bar)  # never hide just a pickup
    shown = [n.pitch for n in melody.parts[0].notes if n.end_beats > beat_range[0]]
    shown += [n.pitch for take in takes for n in take.continuation.generated.parts[0].notes]
    return Gallery(
        prime=melody,
        prime_stats=describe(melody, start / bar, key),
        takes=explained,
        key=key,
        bars=bars,
        seed=seed,
        pitch_range=(min(shown), max(shown)),
        beat_range=beat_range,
    )
