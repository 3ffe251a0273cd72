"""Voice-leading statistics on hand-made four-part progressions with known answers, and the JSB chorale loader."""

from __future__ import annotations

import json
import math

import pytest

from musegen_core.harmony.voice_leading import (
    JSB_PATH_ENV,
    STAT_NAMES,
    average_stats,
    jsb_chorale_pieces,
    jsb_path,
    voice_leading_stats,
)
from musegen_core.music import Key, Note, Part, Piece, TimeSignature

C_MAJOR = Key(0, "major")


def satb(chords: list[tuple[int, int, int, int]], beats: float | list[float] = 1.0, **piece: object) -> Piece:
    """Four parts (S, A, T, B) striking each (s, a, t, b) chord in turn for `beats` beats (one number, or one per
    chord)."""
    lengths = beats if isinstance(beats, list) else [beats] * len(chords)
    starts = [sum(lengths[:index]) for index in range(len(chords))]
    parts = []
    for voice, name in enumerate(("S", "A", "T", "B")):
        notes = tuple(Note(c[voice], t, d) for c, t, d in zip(chords, starts, lengths, strict=True))
        parts.append(Part(name, notes))
    return Piece(tuple(parts), **piece)


def test_one_parallel_fifth_counts_once_and_per_bar() -> None:
    # C (C5 E4 G3 C3) → (B4 D4 A3 D3): tenor and bass both rise a tone a fifth apart; no other pair moves in fifths
    # or octaves. The second bar repeats the last chord: no new sonority, but one more bar.
    piece = satb([(72, 64, 55, 48), (71, 62, 57, 50), (71, 62, 57, 50), (71, 62, 57, 50)], beats=2.0)
    stats = voice_leading_stats(piece)
    assert stats["bars"] == 2.0
    assert stats["parallel_fifths"] == 1.0
    assert stats["parallel_fifths_per_bar"] == 0.5
    assert stats["parallel_octaves"] == 0.0


def test_contrary_fifths_and_octave_leaps_are_not_counted() -> None:
    contrary = satb([(72, 64, 55, 48), (71, 62, 57, 38)])  # T–B: fifth (G3/C3) to twelfth (A3/D2), opposite ways
    octave_leaps = satb([(72, 64, 55, 48), (72, 64, 67, 60)])  # T–B both leap an octave: still G over C
    for piece in (contrary, octave_leaps):
        assert voice_leading_stats(piece)["parallel_fifths"] == 0.0


def test_parallel_octaves_and_unisons() -> None:
    # S–B: C5/C3 → D5/D3 (double octave, similar motion); A and T: E4 unison → F4 unison.
    piece = satb([(72, 64, 64, 48), (74, 65, 65, 50)], beats=4.0)
    stats = voice_leading_stats(piece)
    assert stats["parallel_octaves"] == 2.0
    assert stats["parallel_octaves_per_bar"] == 1.0
    assert stats["parallel_fifths"] == 0.0


def test_voice_crossing_share_by_hand() -> None:
    # Four quarter chords (16 sixteenth steps); in the third the alto (E5) is above the soprano (C5): 4 / 16.
    piece = satb([(72, 67, 64, 48), (71, 67, 62, 55), (72, 76, 67, 48), (72, 67, 64, 48)])
    assert voice_leading_stats(piece)["voice_crossings"] == pytest.approx(0.25)


def test_spacing_counts_upper_pairs_only() -> None:
    # Chord 1: S–A 13 semitones (violation, 2 beats); chord 2: T–B 19 semitones (allowed, 1 beat); chord 3: fine.
    s_a_wide, t_b_wide, close = (77, 64, 60, 48), (72, 67, 64, 45), (72, 67, 64, 48)
    piece = satb([s_a_wide, t_b_wide, close], beats=[2.0, 1.0, 1.0])
    assert voice_leading_stats(piece)["spacing_violations"] == pytest.approx(0.5)


def test_diatonic_beat_share_in_major_and_minor() -> None:
    # I IV V I with one chromatic beat (F#4 in the alto of the third chord): 3 of 4 beats diatonic.
    chords = [(72, 67, 64, 48), (72, 69, 65, 53), (74, 66, 62, 50), (72, 67, 64, 48)]
    assert voice_leading_stats(satb(chords, key=C_MAJOR))["diatonic_beat_share"] == pytest.approx(0.75)
    assert voice_leading_stats(satb(chords))["diatonic_beat_share"] == pytest.approx(0.75)  # key estimated: C major
    # A minor: the raised seventh (G#) is diatonic, B-flat is not.
    a_minor = Key(9, "minor")
    leading_tone = satb([(69, 64, 60, 45), (71, 68, 64, 52), (69, 64, 60, 45)], key=a_minor)
    flat_two = satb([(69, 64, 60, 45), (70, 65, 62, 50), (69, 64, 60, 45)], key=a_minor)
    assert voice_leading_stats(leading_tone)["diatonic_beat_share"] == 1.0
    assert voice_leading_stats(flat_two)["diatonic_beat_share"] == pytest.approx(2 / 3)


def test_beats_follow_the_meter_and_the_pickup() -> None:
    # 6/8 with a one-eighth pickup: felt beats are dotted quarters counted from the bar line at 0.5, so the
    # chromatic F# in [0.5, 2.0) spoils one of three beats ([0, 0.5) pickup, [0.5, 2.0), [2.0, 3.5)).
    chords = [(72, 67, 64, 48), (74, 66, 62, 50), (72, 67, 64, 48)]
    piece = satb(chords, beats=[0.5, 1.5, 1.5], time_signature=TimeSignature(6, 8), pickup_beats=0.5, key=C_MAJOR)
    stats = voice_leading_stats(piece)
    assert stats["diatonic_beat_share"] == pytest.approx(2 / 3)
    assert stats["bars"] == 2.0  # the pickup and one full bar


def test_rests_leave_voices_out() -> None:
    # The bass rests in the middle chord: its moves into and out of the rest are not parallels.
    piece = satb([(72, 64, 55, 48), (71, 62, 57, 50), (72, 64, 55, 48)])
    rests = Piece((*piece.parts[:3], Part("B", (piece.parts[3].notes[0], piece.parts[3].notes[2]))))
    assert voice_leading_stats(piece)["parallel_fifths"] == 2.0
    assert voice_leading_stats(rests)["parallel_fifths"] == 0.0


def test_average_stats_is_the_mean_per_piece() -> None:
    one_fifth = satb([(72, 64, 55, 48), (71, 62, 57, 50)], beats=2.0)  # 1 bar, 1 fifth
    none = satb([(72, 64, 55, 48)] * 8)  # 2 bars, no motion
    mean = average_stats([one_fifth, none])
    assert set(mean) == set(STAT_NAMES)
    assert mean["parallel_fifths_per_bar"] == pytest.approx(0.5)
    assert mean["bars"] == pytest.approx(1.5)
    with pytest.raises(ValueError, match="at least one piece"):
        average_stats([])


def test_one_part_is_refused() -> None:
    with pytest.raises(ValueError, match="at least two parts"):
        voice_leading_stats(Piece((Part("S", (Note(60, 0, 1),)),)))


def test_jsb_loader_merges_runs_and_reads_rests(tmp_path, monkeypatch) -> None:
    steps = [[72, 64, 55, 48], [72, 64, 55, 48], [71, 64, math.nan, 50], [71, -1, 57, 50]]
    data = {"train": [steps], "valid": [], "test": []}
    path = tmp_path / "jsb.json"
    path.write_text(json.dumps(data))  # Python writes NaN as the bare token NaN, as the original file does
    monkeypatch.setenv(JSB_PATH_ENV, str(path))
    assert jsb_path() == path
    (piece,) = jsb_chorale_pieces("train")
    soprano, alto, tenor, bass = piece.parts
    assert [(n.pitch, n.start_beats, n.duration_beats) for n in soprano.notes] == [(72, 0.0, 0.5), (71, 0.5, 0.5)]
    assert [(n.pitch, n.duration_beats) for n in alto.notes] == [(64, 0.75)]  # held, then a -1 rest
    assert [(n.pitch, n.start_beats) for n in tenor.notes] == [(55, 0.0), (57, 0.75)]  # NaN rest between
    assert [n.pitch for n in bass.notes] == [48, 50]
    with pytest.raises(ValueError, match="split must be one of"):
        jsb_chorale_pieces("dev")


def test_jsb_loader_reads_the_real_file() -> None:
    if not jsb_path().is_file():
        pytest.skip(f"JSB chorales not found at {jsb_path()} (set {JSB_PATH_ENV})")
    chorales = jsb_chorale_pieces("train")
    assert len(chorales) == 229
    first = chorales[0]
    assert [p.name for p in first.parts] == ["Soprano", "Alto", "Tenor", "Bass"]
    assert [p.notes[0].pitch for p in first.parts] == [74, 70, 65, 58]
    assert (first.tempo_bpm, str(first.time_signature), first.key) == (100.0, "4/4", None)
    assert len(jsb_chorale_pieces("test")) == 77
