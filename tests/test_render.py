"""Rendering with the real FluidSynth and TimGM6mb (no mocks), and piano-roll figures."""

from __future__ import annotations

import io
import random
import wave
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import fluidsynth
import numpy as np
import pytest

from musegen_core.errors import RenderError
from musegen_core.music import Note, Part, Piece, TimeSignature
from musegen_core.render.audio import (
    MAX_RENDER_SECONDS,
    PEAK_LIMIT,
    SAMPLE_RATE,
    TAIL_SECONDS,
    Synthesizer,
    wav_duration_seconds,
)
from musegen_core.render.pianoroll import PRIME_COLOR, TAKE_COLOR, RollLayer, piano_roll

C_MAJOR_UP = (60, 62, 64, 65, 67, 69, 71, 72)


def _melody(pitches: tuple[int, ...] = C_MAJOR_UP, tempo_bpm: float = 120.0, **piece_fields: object) -> Piece:
    """One crotchet per pitch: 8 pitches = 2 bars of 4/4 = 4 s at 120 bpm."""
    notes = tuple(Note(pitch, float(i), 1.0) for i, pitch in enumerate(pitches))
    return Piece((Part("melody", notes),), tempo_bpm=tempo_bpm, **piece_fields)


def _band() -> Piece:
    """Dense and varied: a chord, a bass line, a drum part; exercises many voices and both banks."""
    chord = Part("chord", tuple(Note(p, 0.0, 3.0, velocity=110) for p in (48, 55, 60, 64, 67)), program=48)
    bass = Part("bass", tuple(Note(36 + i % 3, float(i), 0.5) for i in range(4)), program=33)
    drums = Part("drums", tuple(Note(36 if i % 2 == 0 else 38, i * 0.5, 0.25) for i in range(8)), is_drum=True)
    return Piece((chord, bass, drums), tempo_bpm=100.0)


def _rms(audio: np.ndarray, start_s: float, end_s: float) -> float:
    window = audio[round(start_s * SAMPLE_RATE) : round(end_s * SAMPLE_RATE)].astype(np.float64)
    return float(np.sqrt(np.mean(window**2)))


@pytest.fixture(scope="module")
def synth() -> Iterator[Synthesizer]:
    with Synthesizer() as shared:
        yield shared


# --- audio -----------------------------------------------------------------------------------------------------


def test_wav_lasts_the_piece_plus_the_tail(synth: Synthesizer) -> None:
    piece = _melody()
    wav = synth.render_wav(piece)
    assert piece.duration_seconds == 4.0
    assert wav_duration_seconds(wav) == pytest.approx(4.0 + TAIL_SECONDS, abs=1 / SAMPLE_RATE)
    with wave.open(io.BytesIO(wav)) as reader:
        assert (reader.getnchannels(), reader.getsampwidth(), reader.getframerate()) == (2, 2, SAMPLE_RATE)


def test_render_is_float32_stereo_within_range(synth: Synthesizer) -> None:
    audio = synth.render(_melody())
    assert audio.dtype == np.float32
    assert audio.shape == (round((4.0 + TAIL_SECONDS) * SAMPLE_RATE), 2)
    assert np.abs(audio).max() <= 1.0


def test_notes_are_audible_and_the_tail_dies_away(synth: Synthesizer) -> None:
    audio = synth.render(_melody())
    for beat in range(8):  # every crotchet (0.5 s) sounds
        assert _rms(audio, beat * 0.5, beat * 0.5 + 0.5) > 0.01
    assert _rms(audio, 4.0 + TAIL_SECONDS - 0.1, 4.0 + TAIL_SECONDS) < 1e-4


def test_same_piece_gives_identical_samples_whatever_was_rendered_before(synth: Synthesizer) -> None:
    first = synth.render(_melody())
    synth.render(_band())  # leaves many voices cut off mid-release
    assert np.array_equal(synth.render(_melody()), first)


def test_concurrent_renders_match_sequential_ones(synth: Synthesizer) -> None:
    pieces = [_melody(), _band(), _melody(tempo_bpm=90.0), _band()]
    sequential = [synth.render(piece) for piece in pieces]
    with ThreadPoolExecutor(max_workers=2) as pool:
        concurrent = list(pool.map(synth.render, pieces))
    assert all(np.array_equal(a, b) for a, b in zip(sequential, concurrent, strict=True))


def test_soundfont_is_loaded_once_for_many_renders(monkeypatch: pytest.MonkeyPatch) -> None:
    loads: list[str] = []
    real_sfload = fluidsynth.Synth.sfload

    def counting_sfload(self: fluidsynth.Synth, filename: str, update_midi_preset: int = 0) -> int:
        loads.append(filename)
        return real_sfload(self, filename, update_midi_preset)

    monkeypatch.setattr(fluidsynth.Synth, "sfload", counting_sfload)
    with Synthesizer() as fresh:
        for piece in (_melody(), _band(), _melody()):
            assert fresh.render(piece).any()
    assert len(loads) == 1


def test_drums_and_other_programs_sound(synth: Synthesizer) -> None:
    audio = synth.render(_band())
    assert _rms(audio, 0.0, 1.8) > 0.02
    drums_only = synth.render(_band().only_part(2))
    assert _rms(drums_only, 0.0, 2.4) > 0.005


def test_a_repeated_key_inside_a_longer_note_does_not_cut_it(synth: Synthesizer) -> None:
    held = Piece((Part("organ", (Note(60, 0.0, 4.0), Note(60, 1.0, 1.0)), program=19),))
    audio = synth.render(held)  # 2 s at 120 bpm; the inner note ends at 1 s, the outer one at 2 s
    assert _rms(audio, 1.5, 1.9) > 0.2 * _rms(audio, 0.1, 0.9)


def test_dense_loud_piece_is_limited_not_clipped(synth: Synthesizer) -> None:
    cluster = tuple(Part(f"p{i}", tuple(Note(p, 0.0, 2.0, velocity=127) for p in range(48, 72))) for i in range(4))
    audio = synth.render(Piece(cluster))
    assert 0.5 < np.abs(audio).max() <= PEAK_LIMIT


@pytest.mark.timeout(5)
def test_too_long_piece_is_refused_before_rendering(synth: Synthesizer) -> None:
    hours_long = Piece((Part("drone", (Note(60, 0.0, 2000.0),)),), tempo_bpm=10.0)  # 12,000 s
    with pytest.raises(RenderError, match=f"limit is {MAX_RENDER_SECONDS:.0f} s"):
        synth.render_wav(hours_long)


def _many_parts() -> Piece:
    return Piece(tuple(Part(f"p{i}", (Note(60, 0.0, 1.0),)) for i in range(65)))


def _many_notes() -> Piece:
    return Piece((Part("swarm", tuple(Note(60 + i % 12, i / 1000, 1.0) for i in range(100_001))),))


@pytest.mark.parametrize(("make_piece", "message"), [(_many_parts, "too many parts"), (_many_notes, "too many notes")])
def test_oversized_pieces_are_refused(synth: Synthesizer, make_piece: Callable[[], Piece], message: str) -> None:
    with pytest.raises(RenderError, match=message):
        synth.render(make_piece())


def test_empty_piece_is_refused(synth: Synthesizer) -> None:
    with pytest.raises(RenderError, match="nothing to play"):
        synth.render(Piece((Part("silence"),)))


@pytest.mark.parametrize("content", [None, b"", b"RIFF\x10\x00\x00\x00sfbkLIST not really a soundfont"])
def test_missing_or_invalid_soundfont_raises(tmp_path: Path, content: bytes | None) -> None:
    path = tmp_path / "broken.sf2"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(RenderError, match="SoundFont"):
        Synthesizer(path)


def test_closed_synthesizer_refuses_to_render() -> None:
    closed = Synthesizer()
    closed.close()
    closed.close()
    with pytest.raises(RenderError, match="closed"):
        closed.render(_melody())


def test_wav_duration_of_garbage_raises() -> None:
    with pytest.raises(RenderError, match="not a WAV"):
        wav_duration_seconds(b"definitely not audio")


# --- piano roll ------------------------------------------------------------------------------------------------


def _note_traces(figure):  # type: ignore[no-untyped-def]
    return [trace for trace in figure.data if trace.type == "bar"]


def _bar_line_count(figure) -> int:  # type: ignore[no-untyped-def]
    (lines,) = [trace for trace in figure.data if trace.name == "bar lines"]
    return sum(1 for x in lines.x if x is None)


def test_one_note_trace_per_layer_with_every_note() -> None:
    prime = _melody()
    take = Piece((Part("a", (Note(72, 8.0, 2.0),)), Part("b", (Note(48, 8.0, 4.0), Note(50, 12.0, 1.0)))))
    figure = piano_roll([RollLayer("Prime", prime, PRIME_COLOR), RollLayer("Continuation", take, TAKE_COLOR)])
    traces = _note_traces(figure)
    assert [trace.name for trace in traces] == ["Prime", "Continuation"]
    assert [len(trace.x) for trace in traces] == [8, 3]
    assert [trace.marker.color for trace in traces] == [PRIME_COLOR, TAKE_COLOR]
    assert list(traces[1].base) == [8.0, 8.0, 12.0] and list(traces[1].x) == [2.0, 4.0, 1.0]
    assert figure.layout.barmode == "overlay"  # layers drawn where they are, not side by side


def test_bar_lines_are_one_trace_covering_all_layers() -> None:
    prime = _melody()  # 2 bars
    take = Piece((Part("a", (Note(72, 9.0, 4.0),)),))  # bars 3 and 4
    figure = piano_roll([RollLayer("Prime", prime, PRIME_COLOR), RollLayer("Take", take, TAKE_COLOR)])
    assert _bar_line_count(figure) == len(take.bar_lines_beats()) == 5  # at beats 0, 4, 8, 12, 16
    (lines,) = [trace for trace in figure.data if trace.name == "bar lines"]
    assert lines.hoverinfo == "skip" and lines.showlegend is False


def test_bar_lines_follow_meter_and_pickup() -> None:
    waltz = _melody(time_signature=TimeSignature(3, 4), pickup_beats=1.0)  # 8 beats: pickup + bars at 1, 4, 7
    figure = piano_roll([RollLayer("Prime", waltz, PRIME_COLOR)])
    assert _bar_line_count(figure) == len(waltz.bar_lines_beats()) == 5


def test_hover_names_the_note_and_its_place() -> None:
    piece = Piece((Part("m", (Note(66, 0.0, 1.0), Note(70, 1.5, 0.5))),), pickup_beats=1.0)
    (trace,) = _note_traces(piano_roll([RollLayer("Prime", piece, PRIME_COLOR)]))
    assert "F#4" in trace.hovertext[0] and "bar 0 beat 4" in trace.hovertext[0]
    assert "Bb4" in trace.hovertext[1] and "bar 1 beat 1.5" in trace.hovertext[1]
    assert "length 0.5 beats" in trace.hovertext[1]


def test_y_axis_is_labelled_with_pitch_names() -> None:
    narrow = piano_roll([RollLayer("Prime", _melody(), PRIME_COLOR)])
    assert {"C4", "F#4", "C5"} <= set(narrow.layout.yaxis.ticktext)  # small range: every pitch
    wide = piano_roll([RollLayer("Prime", _melody((36, 60, 84)), PRIME_COLOR)])
    assert set(wide.layout.yaxis.ticktext) == {"C2", "C3", "C4", "C5", "C6"}  # wide range: each C
    low, high = wide.layout.yaxis.range
    assert low < 36 and high > 84


def test_empty_input_gives_an_empty_roll() -> None:
    assert len(piano_roll([]).data) == 0
    figure = piano_roll([RollLayer("Prime", Piece((Part("m"),)), PRIME_COLOR)], title="nothing yet")
    assert [len(trace.x) for trace in _note_traces(figure)] == [0]
    assert figure.layout.title.text == "nothing yet"


def test_ten_thousand_notes_build_one_trace() -> None:
    rng = random.Random(0)
    notes = tuple(Note(rng.randint(36, 96), i * 0.25, 0.25) for i in range(10_000))
    figure = piano_roll([RollLayer("Big", Piece((Part("m", notes),)), PRIME_COLOR)])
    (trace,) = _note_traces(figure)
    assert len(trace.x) == 10_000
    assert _bar_line_count(figure) >= 626  # 625 bars of 4/4 need lines at beats 0, 4, …, 2,500


def test_fixed_ranges_give_rolls_the_same_axes_whatever_their_notes() -> None:
    low_tune = _melody((55, 57, 59))
    high_tune = Piece((Part("m", (Note(79, 4.0, 2.0),)),))
    rolls = [
        piano_roll([RollLayer("Take", piece, TAKE_COLOR)], pitch_range=(55, 79), beat_range=(0.0, 16.0))
        for piece in (low_tune, high_tune)
    ]
    assert rolls[0].layout.yaxis.range == rolls[1].layout.yaxis.range
    assert rolls[0].layout.yaxis.ticktext == rolls[1].layout.yaxis.ticktext
    low, high = rolls[0].layout.yaxis.range
    assert low < 55 and high > 79  # laid out as if both ends were notes: same padding
    assert tuple(rolls[0].layout.yaxis.range) == tuple(
        piano_roll([RollLayer("Both ends", _melody((55, 79)), TAKE_COLOR)]).layout.yaxis.range
    )
    assert all(tuple(roll.layout.xaxis.range) == (0.0, 16.0) for roll in rolls)
    assert all(_bar_line_count(roll) == 5 for roll in rolls)  # beats 0, 4, 8, 12, 16: up to the range's end


def test_a_beat_range_can_start_inside_the_piece() -> None:
    figure = piano_roll([RollLayer("Prime", _melody(), PRIME_COLOR)], beat_range=(4.0, 12.0))
    assert tuple(figure.layout.xaxis.range) == (4.0, 12.0)
    assert len(_note_traces(figure)[0].x) == 8  # every note is kept; the axis only shows part of them


def test_short_rolls_label_fewer_pitches() -> None:
    tall = piano_roll([RollLayer("Prime", _melody((57, 72)), PRIME_COLOR)], height=420)
    short = piano_roll([RollLayer("Prime", _melody((57, 72)), PRIME_COLOR)], height=250)
    assert "C#4" in tall.layout.yaxis.ticktext  # 20 rows in 360 px: room for every pitch
    assert set(short.layout.yaxis.ticktext) == {"G3", "A3", "C4", "D4", "E4", "G4", "A4", "C5", "D5"}  # 2+ rows apart
