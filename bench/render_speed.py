"""FluidSynth render speed: our `Synthesizer` next to `pretty_midi.PrettyMIDI.fluidsynth()` on the same music,
and our render speed with every SoundFont installed here.

The music is Bach's chorale BWV 66.6 from music21's corpus (4 parts), loaded with `musegen_core.formats`.
Each method is warmed up once, then timed `--repeats` times; the tables give the median.

Per SoundFont (`soundfonts.installed_soundfonts()`: TimGM6mb always, FluidR3 GM and MuseScore General where their
Debian packages are installed): the one-off load time, then × real time (audio seconds per second of rendering) of
the engine dry (`Synthesizer.render`), with reverb and chorus, and of the whole `render_uncached` path with the
default settings (loudness normalisation and fades included).

    .venv/bin/python bench/render_speed.py [--repeats 10]

Prints Markdown tables and writes bench/results/render_speed.json. `measure_render_speed(piece, repeats)` is
importable (bench/latency.py uses it).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import platform
import statistics
import time
import warnings
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import fluidsynth
import music21
import pretty_midi

from musegen_core.formats import load_piece
from musegen_core.music import Piece
from musegen_core.render.audio import (
    DEFAULT_SOUNDFONT,
    EFFECTS_TAIL_SECONDS,
    SAMPLE_RATE,
    TAIL_SECONDS,
    RenderSettings,
    Synthesizer,
    render_uncached,
)
from musegen_core.render.soundfonts import SoundFont, installed_soundfonts

RESULTS = Path(__file__).resolve().parent / "results" / "render_speed.json"
CHORALE = "bach/bwv66.6"


def piece_to_pretty_midi(piece: Piece) -> pretty_midi.PrettyMIDI:
    """The same notes as a PrettyMIDI (times in seconds), one instrument per part."""
    midi = pretty_midi.PrettyMIDI(initial_tempo=piece.tempo_bpm)
    seconds = piece.seconds_per_beat
    for part in piece.parts:
        instrument = pretty_midi.Instrument(program=part.program, is_drum=part.is_drum, name=part.name)
        instrument.notes = [
            pretty_midi.Note(note.velocity, note.pitch, note.start_beats * seconds, note.end_beats * seconds)
            for note in part.notes
        ]
        midi.instruments.append(instrument)
    return midi


def median_seconds(action: Callable[[], object], repeats: int) -> float:
    """Median wall time (seconds) of `repeats` calls, after one untimed warm-up call."""
    action()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure_render_speed(piece: Piece, repeats: int = 10) -> dict[str, Any]:
    """Median render times (s), × real time and speed-ups of our synthesiser over pretty_midi, as JSON-ready dict.

    Methods: `ours` (float32 stereo array), `ours_wav` (+ 16-bit WAV encoding), `pretty_midi` (its usual call,
    which loads the SoundFont every time; mono float64) and `pretty_midi_preloaded` (a loaded `fluidsynth.Synth`
    passed in, so only synthesis is timed). Audio seconds are the piece plus our release tail.
    """
    start = time.perf_counter()
    synth = Synthesizer()
    soundfont_load_s = time.perf_counter() - start
    midi = piece_to_pretty_midi(piece)
    preloaded = fluidsynth.Synth(samplerate=SAMPLE_RATE)
    preloaded_sfid = preloaded.sfload(str(DEFAULT_SOUNDFONT))
    methods: dict[str, Callable[[], object]] = {
        "ours": lambda: synth.render(piece),
        "ours_wav": lambda: synth.render_wav(piece),
        "pretty_midi": lambda: midi.fluidsynth(fs=SAMPLE_RATE, synthesizer=str(DEFAULT_SOUNDFONT)),
        "pretty_midi_preloaded": lambda: midi.fluidsynth(fs=SAMPLE_RATE, synthesizer=preloaded, sfid=preloaded_sfid),
    }
    audio_seconds = piece.duration_seconds + TAIL_SECONDS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            medians = {name: median_seconds(action, repeats) for name, action in methods.items()}
    finally:
        synth.close()
        preloaded.delete()
    return {
        "piece": {"title": piece.title, "parts": len(piece.parts), "notes": piece.note_count},
        "audio_seconds": round(audio_seconds, 3),
        "repeats": repeats,
        "soundfont_load_s": round(soundfont_load_s, 4),
        "methods": {
            name: {"median_s": round(median, 5), "x_realtime": round(audio_seconds / median, 1)}
            for name, median in medians.items()
        },
        "speedup_vs_pretty_midi": round(medians["pretty_midi"] / medians["ours"], 2),
        "speedup_vs_pretty_midi_preloaded": round(medians["pretty_midi_preloaded"] / medians["ours"], 2),
    }


def measure_soundfont_speed(piece: Piece, repeats: int = 10) -> list[dict[str, Any]]:
    """Per installed SoundFont: load time (s) and median render time (s) and × real time of three paths.

    Paths: `dry` (the engine, no effects), `effects` (reverb + chorus, with their longer tail) and `mastered`
    (`render_uncached` with the default settings: normalised to -18 LUFS, faded; its SoundFont is loaded once by
    the warm-up call).
    """
    return [_soundfont_row(soundfont, piece, repeats) for soundfont in installed_soundfonts()]


def _soundfont_row(soundfont: SoundFont, piece: Piece, repeats: int) -> dict[str, Any]:
    start = time.perf_counter()
    synth = Synthesizer(soundfont.path)
    load_s = time.perf_counter() - start
    dry_seconds = piece.duration_seconds + TAIL_SECONDS
    paths: dict[str, tuple[Callable[[], object], float]] = {
        "dry": (lambda: synth.render(piece), dry_seconds),
        "effects": (lambda: synth.render(piece, effects=True), piece.duration_seconds + EFFECTS_TAIL_SECONDS),
        "mastered": (lambda: render_uncached(piece, RenderSettings(soundfont=soundfont.id)), dry_seconds),
    }
    try:
        medians = {name: (median_seconds(action, repeats), seconds) for name, (action, seconds) in paths.items()}
    finally:
        synth.close()
    return {
        "id": soundfont.id,
        "label": soundfont.label,
        "file": soundfont.path.name,
        "size_mb": round(soundfont.path.stat().st_size / 2**20, 1),
        "load_s": round(load_s, 3),
        **{
            name: {"median_s": round(median, 5), "x_realtime": round(seconds / median, 1)}
            for name, (median, seconds) in medians.items()
        },
    }


def load_chorale() -> Piece:
    path = Path(str(music21.corpus.getWork(CHORALE)))
    return load_piece(path.read_bytes(), path.name)


def print_table(report: dict[str, Any]) -> None:
    ours = report["methods"]["ours"]["median_s"]
    piece = report["piece"]
    print(f"{piece['title']}: {piece['parts']} parts, {piece['notes']} notes, {report['audio_seconds']} s")
    print(f"of audio; median of {report['repeats']} renders after warm-up\n")
    print("| method | median s | × real time | time / ours |\n|---|---|---|---|")
    for name, row in report["methods"].items():
        print(f"| {name} | {row['median_s']:.4f} | {row['x_realtime']:.1f} | {row['median_s'] / ours:.2f} |")
    print(
        f"\nspeed ratio ours / pretty_midi: {report['speedup_vs_pretty_midi']}× faster "
        f"({report['speedup_vs_pretty_midi_preloaded']}× against a pre-loaded synth); "
        f"SoundFont load once: {report['soundfont_load_s'] * 1000:.0f} ms\n"
    )
    print("| SoundFont | file | MB | load s | dry × real time | reverb + chorus × real time | normalised × real time |")
    print("|---|---|---|---|---|---|---|")
    for row in report["soundfonts"]:
        speeds = " | ".join(f"{row[path]['x_realtime']:.0f}" for path in ("dry", "effects", "mastered"))
        print(f"| {row['label']} | {row['file']} | {row['size_mb']:g} | {row['load_s']:.2f} | {speeds} |")


def _libfluidsynth_version() -> str:
    version = ctypes.CDLL(fluidsynth.lib).fluid_version_str
    version.restype = ctypes.c_char_p
    return version().decode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10, help="timed renders per method (default 10)")
    args = parser.parse_args()
    chorale = load_chorale()
    report = measure_render_speed(chorale, args.repeats)
    report["soundfonts"] = measure_soundfont_speed(chorale, args.repeats)
    report["piece"]["title"] = report["piece"]["title"] or CHORALE
    report["machine"] = {"python": platform.python_version(), "cpu": platform.processor() or platform.machine()}
    report["versions"] = {
        name: metadata.version(name) for name in ("pyfluidsynth", "pretty_midi", "numpy", "pyloudnorm")
    } | {"libfluidsynth": _libfluidsynth_version()}
    print_table(report)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
