"""How well does `musegen_core.transcribe` hear a melody? Held-out corpus melodies, synthesised two ways, transcribed.

Melodies: `--per-collection` tunes from each of Essen, O'Neill's, Ryan's and the Bach chorales (soprano), from the
**test** split of `load_corpus` over all four collections (the split bench/controls.py uses; no tune the models
trained on), picked by a seeded shuffle; each is cut to its first `EXCERPT_SECONDS` and played at a seeded tempo
of 80–130 bpm. `--split valid` runs the same on validation tunes: that is where the segmentation constants of
`transcribe` were tuned, so the test numbers reported were never looked at while tuning.

Two renditions of each melody:
- clean: FluidSynth through the app's renderer (`render_in_process`, default SoundFont), GM flute, octave-shifted so
  its median pitch lies in G4–F#5; a 44.1 kHz stereo WAV;
- sung-like: `sing`, an additive "vowel" synth at 22.05 kHz mono (so the tracker resamples): formant-shaped
  harmonics, vibrato (5–6 Hz, ±30–50 cents, fading in), a slow random pitch drift of ±20 cents, a breath (fade
  to silence) before rests, repeated pitches and half the other notes, a soft 50 ms attack after each breath, legato
  elsewhere (a ~30 ms glide from the previous pitch, the level barely dipping), ±3 dB of loudness per note, breath
  noise and a noise floor; octave-shifted so its median lies in G3–F#4.

Scores (mir_eval): note precision / recall / F1 with 50 ms onset and 50 cent pitch tolerance, offsets ignored
(`mir_eval.transcription`, pooled over melodies as the mean of per-melody scores); raw pitch accuracy of the pitch
track over the reference's voiced frames (`mir_eval.melody`, reference: the nominal note pitches for clean, the
synth's own f0 contour for sung-like); tempo estimates within 4 % (and within 4 % of half/double); the share of
notes whose quantised onset (at the true tempo, 16th grid) lands on the right 16th; real-time factor = audio
seconds / seconds spent in `transcribe` (decoding to `Piece`, first call excluded). Why pYIN and not basic-pitch:
`TRACKER_CHOICE` (also in the JSON).

    .venv/bin/python bench/transcription.py [--per-collection 15] [--split test] [--seed 0]

Prints a Markdown table; a `--split test` run also writes bench/results/transcription.json. Needs the corpus cache
(`musegen data stats --collections essen,oneills,ryans,bach`).
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import io
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import mir_eval
import numpy as np
import soundfile

from musegen_core import encoding, transcribe
from musegen_core.music import Note, Part, Piece
from musegen_core.render.audio import RenderSettings, encode_wav, render_in_process
from musegen_core.render.soundfonts import DEFAULT_SOUNDFONT_ID, resolve_soundfont
from musegen_core.training.corpus import COLLECTIONS, Tune, load_corpus

RESULTS = Path(__file__).resolve().parent / "results" / "transcription.json"
EXCERPT_SECONDS = 12.0
TEMPO_RANGE = (80.0, 130.0)
LEAD_IN_SECONDS = 0.3
FLUTE = 73  # GM program 74
SUNG_RATE = 22_050
CLEAN_MEDIAN = 67  # G4: clean melodies are octave-shifted so their median pitch lies in [67, 79)
SUNG_MEDIAN = 55  # G3: sung ones in [55, 67)
ONSET_TOLERANCE_S = 0.05
PITCH_TOLERANCE_CENTS = 50.0
TEMPO_TOLERANCE = 0.04
FRAME_S = 0.01  # reference pitch-track hop
TRACKER_CHOICE = (
    "librosa.pyin over basic-pitch 0.4.0: on the same 120 validation renditions basic-pitch (its bundled ONNX model on "
    "onnxruntime 1.31.1, minimum note 70 ms, other settings default, no monophonic post-filter tried) scored clean "
    "note F1 0.898 (P 0.840, R 0.973) and sung-like 0.753 (P 0.642, R 0.992: a polyphonic model adds ghost notes) "
    "at 27-42x real time, against 0.972 and 0.986 at 21-23x for this pipeline; and basic-pitch does not install "
    "cleanly here (on Linux with Python 3.11 it requires tensorflow<2.15.1, which needs numpy<2)"
)
CAVEATS = (
    "Synthetic audio only: the sung-like synth has vibrato, drift, glides, soft onsets and noise, but no consonants, "
    "no scoops or wobbles beyond those, and perfect timing, so real humming and singing will score lower; the "
    "tempo estimate is judged on tempi of 80-130 bpm, near its 100 bpm preference (a tune hummed at 60 may come "
    "out at 120); clean raw pitch accuracy counts each note's tongued 40 ms gap and release as misses"
)
# formant (centre Hz, bandwidth Hz, gain) triples of three vowels: "ah", "oh", "oo"
VOWELS = (
    ((730, 90, 1.0), (1090, 110, 0.5), (2440, 170, 0.25)),
    ((570, 80, 1.0), (840, 90, 0.6), (2410, 170, 0.2)),
    ((300, 60, 1.0), (870, 90, 0.3), (2240, 170, 0.1)),
)


@dataclass(frozen=True)
class Melody:
    """A reference melody: notes as (onset s, offset s, MIDI pitch), at `tempo_bpm`, from `collection`/`tune_id`."""

    collection: str
    tune_id: str
    tempo_bpm: float
    notes: tuple[tuple[float, float, int], ...]

    def transposed(self, median_floor: int) -> Melody:
        """The melody shifted by octaves so its median pitch lies in [median_floor, median_floor + 12)."""
        median = int(np.median([pitch for _, _, pitch in self.notes]))
        shift = 12 * ((median_floor - median + 11) // 12)
        notes = tuple((on, off, pitch + shift) for on, off, pitch in self.notes)
        return Melody(self.collection, self.tune_id, self.tempo_bpm, notes)

    @property
    def seconds(self) -> float:
        return self.notes[-1][1] + 0.5


@dataclass(frozen=True)
class Rendition:
    """A melody as an audio file, and its reference pitch track (times s, Hz; 0 where silent)."""

    melody: Melody
    wav: bytes
    ref_times: np.ndarray
    ref_hz: np.ndarray


# ---------------------------------------------------------------------------------------------------------------
# Melodies


def pick_melodies(split: str, per_collection: int, seed: int) -> list[Melody]:
    """`per_collection` tunes of each collection from `split`, seeded shuffle, as excerpts at seeded tempi."""
    corpus = load_corpus(tuple(COLLECTIONS), progress=False)
    chosen = []
    for name in COLLECTIONS:
        tunes = sorted((t for t in corpus.split(split) if t.collection == name), key=lambda t: _digest(t.tune_id, seed))
        chosen += [melody_of(tune, seed) for tune in tunes[:per_collection]]
    return chosen


def _digest(text: str, seed: int) -> str:
    return hashlib.sha256(f"{seed}:{text}".encode()).hexdigest()


def melody_of(tune: Tune, seed: int) -> Melody:
    """The first `EXCERPT_SECONDS` of a tune (whole notes only), after `LEAD_IN_SECONDS`, at a seeded tempo."""
    rng = np.random.default_rng(int(_digest(tune.tune_id, seed)[:8], 16))
    tempo = float(round(rng.uniform(*TEMPO_RANGE)))
    beat_s = 60.0 / tempo
    notes = encoding.tokens_to_notes(tune.tokens)
    first = notes[0].start_beats
    timed = [
        (LEAD_IN_SECONDS + (n.start_beats - first) * beat_s, LEAD_IN_SECONDS + (n.end_beats - first) * beat_s, n.pitch)
        for n in notes
    ]
    excerpt = [note for note in timed if note[1] <= LEAD_IN_SECONDS + EXCERPT_SECONDS] or timed[:1]
    return Melody(tune.collection, tune.tune_id, tempo, tuple(excerpt))


# ---------------------------------------------------------------------------------------------------------------
# Synthesis


def render_clean(melody: Melody) -> Rendition:
    """FluidSynth flute through the app's renderer: 44.1 kHz stereo WAV."""
    melody = melody.transposed(CLEAN_MEDIAN)
    beats = 60.0 / melody.tempo_bpm
    notes = tuple(Note(p, on / beats, (off - on - _articulation(on, off)) / beats) for on, off, p in melody.notes)
    piece = Piece(parts=(Part("flute", notes, program=FLUTE),), tempo_bpm=melody.tempo_bpm)
    settings = RenderSettings(programs=(FLUTE,))
    rendered = render_in_process(piece, settings, resolve_soundfont(DEFAULT_SOUNDFONT_ID))
    times = np.arange(0.0, len(rendered.audio) / rendered.sample_rate, FRAME_S)
    hz = np.zeros_like(times)
    for on, off, pitch in melody.notes:
        hz[(times >= on) & (times < off)] = mir_eval.util.midi_to_hz(pitch)
    return Rendition(melody, encode_wav(rendered.audio, rendered.sample_rate), times, hz)


def _articulation(onset: float, offset: float) -> float:
    """Seconds by which a clean note is cut short, as a player tongues each note: 40 ms, at most a quarter of it."""
    return min(0.04, 0.25 * (offset - onset))


def sing(
    notes: tuple[tuple[float, float, int], ...], seed: int, rate: int = SUNG_RATE
) -> tuple[np.ndarray, np.ndarray]:
    """A sung-like rendition of (onset s, offset s, MIDI pitch) notes: (mono float32 audio, f0 Hz per sample, 0
    where nothing sounds). See the module docstring for what it imitates."""
    rng = np.random.default_rng(seed)
    frames = int((notes[-1][1] + 0.5) * rate)
    t = np.arange(frames) / rate
    pitch, amplitude, vibrato_gate = _contours(notes, t, rng)
    depth = rng.uniform(0.3, 0.5)
    vibrato = depth * vibrato_gate * np.sin(2 * np.pi * rng.uniform(5.0, 6.0) * t + rng.uniform(0, 2 * np.pi))
    f0 = 440.0 * 2 ** ((pitch + vibrato + _drift(frames, rate, rng) - 69) / 12)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    formants = VOWELS[rng.integers(len(VOWELS))]
    voice = np.zeros(frames)
    for k in range(1, 40):
        if k * f0.min() > 0.45 * rate:
            break
        gain = _formant_gain(k * f0, formants) / k
        voice += np.where(k * f0 < 0.45 * rate, gain, 0.0) * np.sin(k * phase)
    voice *= amplitude / max(float(np.abs(voice).max()), 1e-9)
    breath = rng.normal(0.0, 0.02, frames) * amplitude
    floor = rng.normal(0.0, 10 ** (-50 / 20), frames)
    audio = 0.7 * (voice + breath + floor) / max(float(np.abs(voice + breath).max()), 1e-9)
    return audio.astype(np.float32), np.where(amplitude > 0.1, f0, 0.0)


def _contours(
    notes: tuple[tuple[float, float, int], ...], t: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pitch in MIDI with ~30 ms glides, amplitude envelope, vibrato fade-in) per sample.

    A note ends with a breath (a 40 ms fade to silence) before a rest, before a repeat of its pitch and, at random,
    before half the other notes; otherwise it is sung legato into the next, whose onset then dips only to 85 %.
    After a breath a note starts softly (50 ms from silence)."""
    pitch = np.full(len(t), float(notes[0][2]))
    amplitude = np.zeros(len(t))
    gate = np.zeros(len(t))
    breathed = True
    for index, (on, off, p) in enumerate(notes):
        following = notes[index + 1] if index + 1 < len(notes) else None
        inside = (t >= on) & (t < off + 0.3)
        glide_from = notes[index - 1][2] if not breathed else p
        pitch[inside] = p + (glide_from - p) * np.exp(-(t[inside] - on) / 0.01)
        breath = following is None or following[0] - off > 0.01 or following[2] == p or rng.random() < 0.5
        release = np.clip((off - t) / 0.04, 0.0, 1.0) if breath else 1.0
        attack = np.clip((t - on) / 0.05, 0.0 if breathed else 0.85, 1.0)
        envelope = attack * release * 10 ** (rng.uniform(-3, 3) / 20)
        during = (t >= on) & (t < off)
        amplitude = np.where(during, envelope, amplitude)
        gate = np.where(during, np.clip((t - on - 0.1) / 0.2, 0.0, 1.0), gate)
        breathed = breath
    return pitch, amplitude, gate


def _drift(frames: int, rate: int, rng: np.random.Generator) -> np.ndarray:
    """A slow random pitch wander of at most ±0.2 semitones (smoothed noise, ~0.5 Hz)."""
    knots = rng.uniform(-1.0, 1.0, int(frames / rate * 2) + 2)
    wander = np.interp(np.arange(frames) / rate * 2, np.arange(len(knots)), knots)
    return 0.2 * wander / max(float(np.abs(wander).max()), 1e-9)


def _formant_gain(hz: np.ndarray, formants: tuple[tuple[int, int, float], ...]) -> np.ndarray:
    return 0.05 + sum(gain / (1 + ((hz - centre) / bandwidth) ** 2) for centre, bandwidth, gain in formants)


def render_sung(melody: Melody, seed: int) -> Rendition:
    """`sing` of the melody (octave-shifted into a voice's range): 22.05 kHz mono WAV."""
    melody = melody.transposed(SUNG_MEDIAN)
    audio, f0 = sing(melody.notes, int(_digest(melody.tune_id, seed)[:8], 16))
    times = np.arange(0.0, len(audio) / SUNG_RATE, FRAME_S)
    buffer = io.BytesIO()
    soundfile.write(buffer, audio, SUNG_RATE, format="WAV", subtype="PCM_16")
    return Rendition(melody, buffer.getvalue(), times, f0[np.minimum((times * SUNG_RATE).astype(int), len(f0) - 1)])


# ---------------------------------------------------------------------------------------------------------------
# Scoring


@dataclass(frozen=True)
class Score:
    precision: float
    recall: float
    f1: float
    pitch_accuracy: float
    estimated_tempo: float
    tempo_hit: bool
    tempo_hit_octave: bool
    grid_accuracy: float
    audio_s: float
    seconds: float


def score(rendition: Rendition, transcribe_fn: Callable[[bytes, str], transcribe.Transcription]) -> Score:
    """Transcribe one rendition (timed) and score it against its melody."""
    started = time.perf_counter()
    result = transcribe_fn(rendition.wav, "melody.wav")
    seconds = time.perf_counter() - started
    melody = rendition.melody
    ref_intervals = np.array([[on, off] for on, off, _ in melody.notes])
    ref_hz = mir_eval.util.midi_to_hz(np.array([p for _, _, p in melody.notes]))
    est_intervals = np.array([[n.onset_s, n.offset_s] for n in result.notes])
    est_hz = mir_eval.util.midi_to_hz(np.array([n.pitch for n in result.notes]))
    precision, recall, f1, _ = mir_eval.transcription.precision_recall_f1_overlap(
        ref_intervals,
        ref_hz,
        est_intervals,
        est_hz,
        onset_tolerance=ONSET_TOLERANCE_S,
        pitch_tolerance=PITCH_TOLERANCE_CENTS,
        offset_ratio=None,
    )
    ref_voicing, ref_cents, est_voicing, est_cents = mir_eval.melody.to_cent_voicing(
        rendition.ref_times, rendition.ref_hz, result.frame_times_s, result.f0_hz
    )
    ratio = result.estimated_tempo_bpm / melody.tempo_bpm
    return Score(
        precision=float(precision),
        recall=float(recall),
        f1=float(f1),
        pitch_accuracy=float(mir_eval.melody.raw_pitch_accuracy(ref_voicing, ref_cents, est_voicing, est_cents)),
        estimated_tempo=result.estimated_tempo_bpm,
        tempo_hit=abs(ratio - 1) <= TEMPO_TOLERANCE,
        tempo_hit_octave=any(abs(ratio * factor - 1) <= TEMPO_TOLERANCE for factor in (0.5, 1.0, 2.0)),
        grid_accuracy=grid_accuracy(result, melody),
        audio_s=melody.seconds,
        seconds=seconds,
    )


def grid_accuracy(result: transcribe.Transcription, melody: Melody) -> float:
    """Share of reference notes whose 16th-grid onset (true tempo, both melodies from their first onset) has a
    transcribed note of the right pitch on exactly that 16th."""
    piece = transcribe.requantise(result, melody.tempo_bpm, 4)
    heard = {(round(n.start_beats * 4), n.pitch) for n in piece.parts[0].notes}
    origin = result.notes[0].onset_s
    step_s = 15.0 / melody.tempo_bpm
    # the transcription starts at its own first onset: align the reference's grid to it, nearest 16th
    offset = round((origin - melody.notes[0][0]) / step_s)
    wanted = [(round((on - melody.notes[0][0]) / step_s) - offset, p) for on, _, p in melody.notes]
    return sum(note in heard for note in wanted) / len(wanted)


def summarise(scores: list[Score]) -> dict[str, float]:
    audio = sum(s.audio_s for s in scores)
    return {
        "note_precision": round(statistics.mean(s.precision for s in scores), 4),
        "note_recall": round(statistics.mean(s.recall for s in scores), 4),
        "note_f1": round(statistics.mean(s.f1 for s in scores), 4),
        "note_f1_median": round(statistics.median(s.f1 for s in scores), 4),
        "raw_pitch_accuracy": round(statistics.mean(s.pitch_accuracy for s in scores), 4),
        "tempo_within_4pct": round(statistics.mean(s.tempo_hit for s in scores), 4),
        "tempo_within_4pct_or_octave": round(statistics.mean(s.tempo_hit_octave for s in scores), 4),
        "grid_onset_accuracy_at_true_tempo": round(statistics.mean(s.grid_accuracy for s in scores), 4),
        "audio_seconds": round(audio, 1),
        "realtime_factor": round(audio / sum(s.seconds for s in scores), 2),
    }


# ---------------------------------------------------------------------------------------------------------------
# Main


def run(split: str, per_collection: int, seed: int) -> dict:
    """Render, transcribe and score every melody in both renditions; the JSON-ready report."""
    started = time.perf_counter()
    melodies = pick_melodies(split, per_collection, seed)
    transcribe.warm_up()
    sets = {"clean": [render_clean(m) for m in melodies], "sung": [render_sung(m, seed) for m in melodies]}
    results = {name: [score(r, transcribe.transcribe) for r in renditions] for name, renditions in sets.items()}
    summaries = {name: summarise(scores) for name, scores in results.items()}
    all_scores = [s for scores in results.values() for s in scores]
    return {
        "clean_note_f1": summaries["clean"]["note_f1"],
        "sung_note_f1": summaries["sung"]["note_f1"],
        "realtime_factor": summarise(all_scores)["realtime_factor"],
        "tracker": f"librosa.pyin (librosa {metadata.version('librosa')}), resolution {transcribe.RESOLUTION} "
        f"semitone, {transcribe.TRACKER_RATE} Hz, hop {transcribe.HOP_LENGTH}",
        "targets": {"clean_note_f1": 0.9, "sung_note_f1": 0.75},
        "targets_met": {
            "clean_note_f1": summaries["clean"]["note_f1"] >= 0.9,
            "sung_note_f1": summaries["sung"]["note_f1"] >= 0.75,
        },
        "sets": summaries,
        "tracker_choice": TRACKER_CHOICE,
        "caveats": CAVEATS,
        "split": split,
        "tuning": "segmentation constants tuned on validation-split melodies (`--split valid`), not on these"
        if split == "test"
        else "this is the tuning run",
        "melodies": [
            {
                "collection": m.collection,
                "tune_id": m.tune_id,
                "tempo_bpm": m.tempo_bpm,
                "notes": len(m.notes),
                "clean_f1": round(c.f1, 3),
                "sung_f1": round(s.f1, 3),
                "estimated_tempo_bpm": {"clean": c.estimated_tempo, "sung": s.estimated_tempo},
            }
            for m, c, s in zip(melodies, results["clean"], results["sung"], strict=True)
        ],
        "settings": {
            "per_collection": per_collection,
            "seed": seed,
            "excerpt_seconds": EXCERPT_SECONDS,
            "tempo_range_bpm": TEMPO_RANGE,
            "onset_tolerance_s": ONSET_TOLERANCE_S,
            "pitch_tolerance_cents": PITCH_TOLERANCE_CENTS,
            "offsets": "ignored",
            "clean": f"FluidSynth, {DEFAULT_SOUNDFONT_ID}, GM flute, 44.1 kHz stereo WAV",
            "sung": f"bench `sing` synth, {SUNG_RATE} Hz mono 16-bit WAV",
        },
        "machine": {
            "python": platform.python_version(),
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
        },
        "date": datetime.date.today().isoformat(),
        "bench_seconds": round(time.perf_counter() - started, 1),
    }


def markdown(report: dict) -> str:
    rows = [
        "| set | melodies | note P | note R | note F1 | raw pitch acc. | tempo ±4 % (or ×2, ×½) | grid onsets "
        "| × real time |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    count = len(report["melodies"])
    for name, s in report["sets"].items():
        rows.append(
            f"| {name} | {count} | {s['note_precision']:.3f} | {s['note_recall']:.3f} | {s['note_f1']:.3f} | "
            f"{s['raw_pitch_accuracy']:.3f} | {s['tempo_within_4pct']:.2f} ({s['tempo_within_4pct_or_octave']:.2f}) "
            f"| {s['grid_onset_accuracy_at_true_tempo']:.3f} | {s['realtime_factor']:.1f} |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-collection", type=int, default=15, help="melodies per collection (4 collections)")
    parser.add_argument("--split", choices=("test", "valid"), default="test")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verbose", action="store_true", help="print every melody's scores and tempo estimates")
    args = parser.parse_args()
    report = run(args.split, args.per_collection, args.seed)
    print(markdown(report))
    if args.verbose:
        print(json.dumps(report["melodies"], indent=1))
    print(f"\ntracker: {report['tracker']}; {report['bench_seconds']:.0f} s")
    if args.split == "test":
        RESULTS.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
