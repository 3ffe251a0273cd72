"""An independent style classifier over melodies: does a take sound like the style it was asked for?

It shares no weights (and no code path) with any generator: a small network over hand-made, documented features of
a melody's tokens (the shared encoding, `musegen_core.encoding`) and its meter. It is trained on 8-bar windows of
train-split tunes (`musegen_core.training.style_classifier_train`, `musegen style-classifier train`) with every
style weighted equally, so its posteriors assume a uniform prior over styles.

A melody is a stretch of tokens that starts on a bar line, as in `features` (step 0 is a downbeat; a HOLD at step 0
or after a REST is silent). Every feature is transposition-invariant: pitch classes are taken relative to the
melody's own most likely tonic, pitches only enter as differences. Time is in sixteenth-note steps; the "beat" of
the rhythm features is the quarter note (4 steps) whatever the meter.

- `tonic_pitch_classes` (12): `features.pitch_class_histogram` (share of sounding steps per pitch class),
  rotated so that the estimated tonic is 0;
- `key_fit` (2): its correlation with the best major and the best minor Krumhansl–Kessler key profile;
- `interval_histogram` (25): `features.interval_histogram`, consecutive-note intervals −12..+12 semitones;
- `note_length_histogram` (16): `features.note_length_histogram`, notes lasting 1..16 steps;
- `pitch_spread` (4): `features.pitch_count`, `features.pitch_range`, the standard deviation of the pitches, and
  where their mean lies in the range (0 = the lowest note, 1 = the highest);
- `beat_phase` (4): share of onsets 0, 1, 2, 3 steps after a quarter-note beat (counted from the bar line);
- `downbeats` (1): share of bars with an onset on the downbeat;
- `syncopation` (1): share of notes that start off the beat and sound across the next beat;
- `rest_share` (1): share of steps that are silent;
- `notes_per_bar` (2): mean and standard deviation over bars of `features.notes_per_bar`;
- `onsets_per_beat` (1): notes per quarter-note beat;
- `meter` (8): one-hot of the bar length in steps: 6, 8, 12, 16, 18, 24, 32, other.

The tonic is the key of the best of the 24 Krumhansl–Kessler profiles (Krumhansl 1990): each of the 12 rotations
of the histogram is correlated with the fixed major and minor profiles, so a transposed melody yields the very same
numbers, only at other rotations. A melody without notes has all-zero pitch features.

`StyleClassifier` holds the network and the feature standardisation (train-set mean and scale); it saves as
`model.safetensors` (weights, mean, scale) plus `config.json` (styles, feature names, hidden size, training facts,
metrics, sha256 of the weights) — no pickles. The shipped one lives in `models/style-classifier/`; it is not a
generator, and the model registry leaves it out (its `config.json` is not a generator checkpoint's).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from musegen_core import encoding
from musegen_core.controls import key_fits
from musegen_core.errors import CheckpointError
from musegen_core.evaluation import features
from musegen_core.evaluation.features import Notes, notes_of
from musegen_core.hashing import file_sha256

KIND = "style-classifier"  # `config.json`'s "kind"; generator checkpoints have a "family" instead
FORMAT_VERSION = 1
WEIGHTS, CONFIG, CARD = "model.safetensors", "config.json", "README.md"
IDENTITY = ("styles", "features", "hidden", "sha256")  # config.json keys that describe the weights, not `meta`
SHIPPED_NAME = "style-classifier"  # folder under the models directory
BEAT_STEPS = encoding.STEPS_PER_BEAT  # the quarter-note beat of the rhythm features
METER_BUCKETS = (6, 8, 12, 16, 18, 24, 32)  # bar lengths in steps with their own one-hot slot; others share "other"
FIDDLE_STYLES = ("irish", "american_fiddle")  # one shared repertoire: also scored merged
MERGED_FIDDLE = "irish+american_fiddle"


# ---------------------------------------------------------------------------------------------------------------
# Features


def estimate_key(pc_histogram: np.ndarray) -> tuple[int, bool, float, float]:
    """(tonic pitch class, minor?, best major fit, best minor fit) of a 12-bin pitch-class histogram: the best of
    the 24 Krumhansl–Kessler key profiles by Pearson correlation (`controls.key_fits`). An empty histogram gives
    (0, False, 0.0, 0.0)."""
    if not pc_histogram.any():
        return 0, False, 0.0, 0.0
    fits = key_fits(pc_histogram)  # (mode, tonic)
    mode, tonic = np.unravel_index(int(np.argmax(fits)), fits.shape)
    return int(tonic), bool(mode), float(fits[0].max()), float(fits[1].max())


def _tonal(notes: Notes, bar_steps: int, bars: int) -> dict[str, np.ndarray]:
    histogram = features.pitch_class_histogram(notes, bar_steps, bars)
    tonic, _, major_fit, minor_fit = estimate_key(histogram)
    return {"tonic_pitch_classes": np.roll(histogram, -tonic), "key_fit": np.array([major_fit, minor_fit])}


def _pitch_spread(notes: Notes, bar_steps: int, bars: int) -> np.ndarray:
    count, span = features.pitch_count(notes, bar_steps, bars), features.pitch_range(notes, bar_steps, bars)
    if not len(notes):
        return np.zeros(4)
    pitches = notes.pitches.astype(np.float64)
    middle = (pitches.mean() - pitches.min()) / span[0] if span[0] else 0.5
    return np.concatenate([count, span, [pitches.std(), middle]])


def _rhythm(notes: Notes, bar_steps: int, bars: int, steps: int) -> dict[str, np.ndarray]:
    phase = notes.onsets % bar_steps % BEAT_STEPS  # steps after the last quarter-note beat of the bar
    off_beat = phase != 0
    next_beat = notes.onsets - phase + BEAT_STEPS
    per_bar = features.notes_per_bar(notes, bar_steps, bars)
    count = max(len(notes), 1)
    return {
        "beat_phase": np.bincount(phase, minlength=BEAT_STEPS) / count,
        "downbeats": np.array([len(np.unique(notes.onsets[notes.onsets % bar_steps == 0])) / bars]),
        "syncopation": np.array([np.sum(off_beat & (notes.onsets + notes.lengths > next_beat)) / count]),
        "rest_share": np.array([1.0 - notes.lengths.sum() / steps]),
        "notes_per_bar": np.array([per_bar.mean(), per_bar.std()]),
        "onsets_per_beat": np.array([len(notes) * BEAT_STEPS / steps]),
    }


def _meter(bar_steps: int) -> np.ndarray:
    one_hot = np.zeros(len(METER_BUCKETS) + 1)
    one_hot[METER_BUCKETS.index(bar_steps) if bar_steps in METER_BUCKETS else -1] = 1.0
    return one_hot


FEATURE_GROUPS: dict[str, tuple[str, ...]] = {  # group → the names of its columns, in feature-vector order
    "tonic_pitch_classes": tuple(f"degree_{k}" for k in range(12)),
    "key_fit": ("major", "minor"),
    "interval_histogram": tuple(f"{k:+d}" for k in range(-features.INTERVAL_CLIP, features.INTERVAL_CLIP + 1)),
    "note_length_histogram": tuple(f"{k}_steps" for k in range(1, features.LENGTH_BINS + 1)),
    "pitch_spread": ("pitch_count", "pitch_range", "pitch_std", "mean_in_range"),
    "beat_phase": tuple(f"phase_{k}" for k in range(BEAT_STEPS)),
    "downbeats": ("share",),
    "syncopation": ("share",),
    "rest_share": ("share",),
    "notes_per_bar": ("mean", "std"),
    "onsets_per_beat": ("rate",),
    "meter": (*(f"bar_{steps}" for steps in METER_BUCKETS), "bar_other"),
}
FEATURE_NAMES: tuple[str, ...] = tuple(f"{group}.{name}" for group, names in FEATURE_GROUPS.items() for name in names)


def style_features(tokens: np.ndarray | Sequence[int], bar_steps: int) -> dict[str, np.ndarray]:
    """Every group of `FEATURE_GROUPS` for one melody that starts on a bar line (see the module docstring)."""
    tokens = np.asarray(tokens, dtype=np.int64)
    if bar_steps < 1:
        raise ValueError(f"bar_steps must be positive (received {bar_steps})")
    steps = max(len(tokens), 1)
    bars = max(1, -(-len(tokens) // bar_steps))  # a last, partial bar counts
    notes = notes_of(tokens)
    groups = {
        **_tonal(notes, bar_steps, bars),
        "interval_histogram": features.interval_histogram(notes, bar_steps, bars),
        "note_length_histogram": features.note_length_histogram(notes, bar_steps, bars),
        "pitch_spread": _pitch_spread(notes, bar_steps, bars),
        **_rhythm(notes, bar_steps, bars, steps),
        "meter": _meter(bar_steps),
    }
    return {name: groups[name].astype(np.float64) for name in FEATURE_GROUPS}


def feature_vector(tokens: np.ndarray | Sequence[int], bar_steps: int) -> np.ndarray:
    """`style_features` concatenated in `FEATURE_NAMES` order, float64, shape (len(FEATURE_NAMES),)."""
    return np.concatenate(list(style_features(tokens, bar_steps).values()))


def feature_matrix(melodies: Sequence[tuple[np.ndarray | Sequence[int], int]]) -> np.ndarray:
    """`feature_vector` of every (tokens, bar_steps) pair, shape (melodies, features)."""
    if not melodies:
        return np.zeros((0, len(FEATURE_NAMES)))
    return np.stack([feature_vector(tokens, bar_steps) for tokens, bar_steps in melodies])


# ---------------------------------------------------------------------------------------------------------------
# The network and the classifier


class StyleNet(nn.Module):
    """Standardise, then multinomial logistic regression (`hidden == 0`) or one hidden ReLU layer; returns logits."""

    def __init__(self, inputs: int, styles: int, hidden: int = 0) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(inputs))
        self.register_buffer("scale", torch.ones(inputs))
        if hidden:
            self.layers = nn.Sequential(nn.Linear(inputs, hidden), nn.ReLU(), nn.Linear(hidden, styles))
        else:
            self.layers = nn.Sequential(nn.Linear(inputs, styles))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers((x - self.mean) / self.scale)

    def weight_penalty(self) -> torch.Tensor:
        """Sum of squared weights (biases and the standardisation excluded), for L2 regularisation."""
        return sum((layer.weight**2).sum() for layer in self.layers if isinstance(layer, nn.Linear))


class StyleClassifier:
    """Style posteriors of melodies. `melodies` arguments are sequences of (tokens, bar_steps) pairs, each melody
    starting on a bar line (e.g. the 8 bars of a take, or of a real continuation)."""

    def __init__(self, net: StyleNet, styles: Sequence[str], meta: dict | None = None) -> None:
        self.net = net.eval()
        self.styles = tuple(styles)
        self.meta = dict(meta or {})  # config.json contents beyond the model (training facts, metrics)

    @property
    def hidden(self) -> int:
        first = self.net.layers[0]
        return first.out_features if len(self.net.layers) > 1 else 0

    def posteriors_batch(self, melodies: Sequence[tuple[np.ndarray | Sequence[int], int]]) -> np.ndarray:
        """Style probabilities, shape (melodies, styles), columns in `self.styles` order."""
        x = torch.from_numpy(feature_matrix(melodies)).float()
        with torch.no_grad():
            return torch.softmax(self.net(x), dim=-1).double().numpy()

    def predict_batch(self, melodies: Sequence[tuple[np.ndarray | Sequence[int], int]]) -> list[str]:
        """The most probable style of every melody."""
        return [self.styles[i] for i in self.posteriors_batch(melodies).argmax(axis=1)]

    def posteriors(self, tokens: np.ndarray | Sequence[int], bar_steps: int) -> dict[str, float]:
        """Style → probability for one melody (they sum to 1)."""
        return dict(zip(self.styles, self.posteriors_batch([(tokens, bar_steps)])[0].tolist(), strict=True))

    def predict(self, tokens: np.ndarray | Sequence[int], bar_steps: int) -> str:
        """The most probable style of one melody."""
        return self.predict_batch([(tokens, bar_steps)])[0]

    def save(self, folder: Path | str, card_text: str | None = None) -> Path:
        """Write `model.safetensors` + `config.json` (+ `README.md` when `card_text` is given) into `folder`."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        state = {name: tensor.detach().cpu().contiguous() for name, tensor in self.net.state_dict().items()}
        save_file(state, str(folder / WEIGHTS), metadata={"kind": KIND})
        config = {
            "kind": KIND,
            "format_version": FORMAT_VERSION,
            "encoding_version": encoding.ENCODING_VERSION,
            "styles": list(self.styles),
            "features": list(FEATURE_NAMES),
            "hidden": self.hidden,
            "sha256": file_sha256(folder / WEIGHTS),
        }
        config |= {key: value for key, value in self.meta.items() if key not in config}
        (folder / CONFIG).write_text(json.dumps(config, indent=2) + "\n")
        if card_text is not None:
            (folder / CARD).write_text(card_text)
        for name in (WEIGHTS, CONFIG, CARD):  # safetensors writes 0600; a shipped file is readable by everyone
            if (folder / name).is_file():
                (folder / name).chmod(0o644)
        return folder

    @classmethod
    def load(cls, folder: Path | str | None = None) -> StyleClassifier:
        """Load a saved classifier (default: the shipped one, `shipped_dir()`).

        Raises:
            CheckpointError: missing or mismatched files, other features or encoding than this code computes.
        """
        folder = Path(folder) if folder is not None else shipped_dir()
        try:
            config = json.loads((folder / CONFIG).read_text())
        except (OSError, ValueError) as error:
            raise CheckpointError(f"no readable style classifier in {folder} ({error})") from None
        expected = {"kind": KIND, "format_version": FORMAT_VERSION, "encoding_version": encoding.ENCODING_VERSION}
        wrong = {key: config.get(key) for key, value in expected.items() if config.get(key) != value}
        if wrong or config.get("features") != list(FEATURE_NAMES):
            raise CheckpointError(f"{folder / CONFIG} does not match this code ({wrong or 'other features'}); retrain")
        if not (folder / WEIGHTS).is_file() or file_sha256(folder / WEIGHTS) != config.get("sha256"):
            raise CheckpointError(f"{folder / WEIGHTS} is missing or does not match config.json's sha256")
        net = StyleNet(len(FEATURE_NAMES), len(config["styles"]), int(config["hidden"]))
        try:
            net.load_state_dict(load_file(str(folder / WEIGHTS), device="cpu"), strict=True)
        except (SafetensorError, RuntimeError) as error:
            raise CheckpointError(f"{folder / WEIGHTS} does not fit the classifier ({error})") from None
        meta = {key: value for key, value in config.items() if key not in (*expected, *IDENTITY)}
        return cls(net, config["styles"], meta)


def shipped_dir() -> Path:
    """Where the shipped classifier lives: `style-classifier/` in the models directory."""
    from musegen_core.models.registry import models_dir

    return models_dir() / SHIPPED_NAME


# ---------------------------------------------------------------------------------------------------------------
# Scoring


def merge_fiddle(style: str) -> str:
    """Irish and American fiddle tunes as one style (much of Ryan's repertoire is O'Neill's); others unchanged."""
    return MERGED_FIDDLE if style in FIDDLE_STYLES else style


def style_hits(predicted: Sequence[str], wanted: Sequence[str]) -> dict:
    """How often the predicted style is the wanted one: `hit_rate` (5-way), `hit_rate_merged` (Irish and American
    fiddle as one), `balanced_hit_rate` (mean over wanted styles) and `by_style` (count, hit rate, merged hit rate)."""
    if len(predicted) != len(wanted):
        raise ValueError(f"{len(predicted)} predictions for {len(wanted)} wanted styles")
    hits = np.array([p == w for p, w in zip(predicted, wanted, strict=True)], dtype=bool)
    merged = np.array([merge_fiddle(p) == merge_fiddle(w) for p, w in zip(predicted, wanted, strict=True)], dtype=bool)
    wanted_array = np.array(wanted)
    by_style = {
        style: {
            "count": int(np.sum(wanted_array == style)),
            "hit_rate": float(hits[wanted_array == style].mean()),
            "hit_rate_merged": float(merged[wanted_array == style].mean()),
        }
        for style in dict.fromkeys(wanted)
    }
    return {
        "count": len(wanted),
        "hit_rate": float(hits.mean()) if len(hits) else float("nan"),
        "hit_rate_merged": float(merged.mean()) if len(merged) else float("nan"),
        "balanced_hit_rate": float(np.mean([entry["hit_rate"] for entry in by_style.values()]))
        if by_style
        else float("nan"),
        "by_style": by_style,
    }


def confusion_matrix(predicted: Sequence[str], wanted: Sequence[str], styles: Sequence[str]) -> list[list[int]]:
    """Counts: row = wanted (true) style, column = predicted style, both in `styles` order."""
    index = {style: i for i, style in enumerate(styles)}
    matrix = np.zeros((len(styles), len(styles)), dtype=np.int64)
    for p, w in zip(predicted, wanted, strict=True):
        matrix[index[w], index[p]] += 1
    return matrix.tolist()
