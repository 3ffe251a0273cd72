"""Hum-to-melody transcription (`musegen_core.transcribe`): a sung-like melody made here with bench/transcription.py's
`sing` synth (vibrato, drift, glides, soft onsets, noise) comes back as its pitches and rhythm, in every container
and sample rate accepted; every bad recording is refused quickly with a one-line `FormatError`.

The first transcription in a fresh virtual environment compiles librosa's numba kernels (~30 s, once per venv).
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from types import ModuleType

import lameenc
import numpy as np
import pytest
import soundfile
import soxr
from conftest import bench_module

from musegen_core import transcribe as tr
from musegen_core.errors import ControlError, FormatError
from musegen_core.music import Key

TEMPO = 100.0
BEAT_S = 60.0 / TEMPO
LEAD_IN_S = 0.3
RATE = 22_050  # of the sung melody
# (MIDI pitch, start beat, duration in beats): G3 A3 B3 B3 D4 B3 A3 G3, eighths and quarters, a repeated B3
MELODY = ((55, 0, 1), (57, 1, 0.5), (59, 1.5, 0.5), (59, 2, 1), (62, 3, 2), (59, 5, 1), (57, 6, 0.5), (55, 6.5, 1.5))
PITCHES = [pitch for pitch, _, _ in MELODY]
STARTS = [start for _, start, _ in MELODY]


@pytest.fixture(scope="module")
def bench() -> Iterator[ModuleType]:
    with bench_module("transcription") as module:
        yield module


@pytest.fixture(scope="module")
def sung(bench: ModuleType) -> np.ndarray:
    """The melody, sung-like, as mono float32 at `RATE`."""
    notes = tuple(
        (LEAD_IN_S + start * BEAT_S, LEAD_IN_S + (start + length) * BEAT_S, pitch) for pitch, start, length in MELODY
    )
    audio, _ = bench.sing(notes, seed=3, rate=RATE)
    return audio


def encode(audio: np.ndarray, rate: int, file_format: str = "WAV", subtype: str | None = None) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, audio, rate, format=file_format, subtype=subtype)
    return buffer.getvalue()


def resampled(audio: np.ndarray, rate: int) -> np.ndarray:
    return soxr.resample(audio, RATE, rate).astype(np.float32)


def mp3(audio: np.ndarray, rate: int) -> bytes:
    encoder = lameenc.Encoder()
    encoder.set_bit_rate(96)
    encoder.set_in_sample_rate(rate)
    encoder.set_channels(1)
    encoder.set_quality(2)
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
    return bytes(encoder.encode(pcm) + encoder.flush())


def assert_melody(result: tr.Transcription) -> None:
    """The transcription holds MELODY: the same pitches, on the same 16ths (first note on beat 0)."""
    notes = result.piece.parts[0].notes
    assert [n.pitch for n in notes] == PITCHES
    assert [n.start_beats for n in notes] == STARTS
    for note, (_, start, length) in zip(notes, MELODY, strict=True):
        assert abs(note.end_beats - (start + length)) <= 0.25  # a breath may shorten a note by a 16th


def refused(data: bytes, filename: str, match: str, within_s: float = 0.5) -> FormatError:
    """The FormatError `transcribe` raises on `data` within `within_s`, after checking its message is one line."""
    started = time.perf_counter()
    with pytest.raises(FormatError, match=match) as caught:
        tr.transcribe(data, filename)
    assert time.perf_counter() - started < within_s
    assert "\n" not in str(caught.value)
    return caught.value


def test_a_sung_melody_comes_back_as_its_pitches_rhythm_tempo_and_key(sung: np.ndarray) -> None:
    result = tr.transcribe(encode(sung, RATE), "humming.wav")
    assert abs(result.estimated_tempo_bpm / TEMPO - 1) <= 0.04
    assert result.tempo_bpm == result.estimated_tempo_bpm == result.piece.tempo_bpm
    assert result.key == result.piece.key == Key(7, "major")
    assert result.piece.title == "humming"
    assert result.piece.parts[0].is_monophonic()
    assert (result.sample_rate, result.channels, result.grid, result.warnings) == (RATE, 1, 4, ())
    assert abs(result.duration_s - len(sung) / RATE) < 1e-6
    assert abs(result.notes[0].onset_s - LEAD_IN_S) <= 0.05
    assert len(result.frame_times_s) == len(result.f0_hz) and not result.f0_hz.flags.writeable
    assert_melody(tr.transcribe(encode(sung, RATE), "humming.wav", tempo_bpm=TEMPO))


def test_requantise_with_another_tempo_or_grid_rescales_and_snaps_without_tracking_again(sung: np.ndarray) -> None:
    result = tr.transcribe(encode(sung, RATE), "humming.wav", tempo_bpm=TEMPO)
    started = time.perf_counter()
    half = tr.requantise(result, TEMPO / 2)
    assert time.perf_counter() - started < 0.1
    assert half.tempo_bpm == TEMPO / 2
    assert [n.start_beats for n in half.parts[0].notes] == [start / 2 for start in STARTS]
    assert [n.pitch for n in half.parts[0].notes] == PITCHES
    quarters = tr.requantise(result, TEMPO, grid=1)  # eighths snap to quarters; a note never loses its place
    starts = [n.start_beats for n in quarters.parts[0].notes]
    assert all(start == int(start) for start in starts) and starts == sorted(set(starts))
    assert quarters.parts[0].is_monophonic()
    with pytest.raises(ControlError, match="tempo"):
        tr.requantise(result, 500.0)
    with pytest.raises(ControlError, match="grid"):
        tr.requantise(result, TEMPO, grid=5)
    with pytest.raises(ControlError, match="grid"):
        tr.transcribe(b"", "x.wav", grid=0)


@pytest.mark.parametrize("rate", [8_000, 16_000, 44_100, 48_000])
def test_any_sample_rate_is_resampled_and_transcribed_alike(sung: np.ndarray, rate: int) -> None:
    result = tr.transcribe(encode(resampled(sung, rate), rate), "take.wav", tempo_bpm=TEMPO)
    assert result.sample_rate == rate
    assert_melody(result)


@pytest.mark.parametrize("file_format", ["FLAC", "OGG", "MP3"])
def test_flac_ogg_and_mp3_decode_offline(sung: np.ndarray, file_format: str) -> None:
    data = mp3(sung, RATE) if file_format == "MP3" else encode(sung, RATE, file_format)
    assert_melody(tr.transcribe(data, f"take.{file_format.lower()}", tempo_bpm=TEMPO))


def test_stereo_is_mixed_down_even_with_the_voice_in_one_channel(sung: np.ndarray) -> None:
    stereo = np.stack([sung, np.zeros_like(sung)], axis=1)
    result = tr.transcribe(encode(stereo, RATE), "left-only.wav", tempo_bpm=TEMPO)
    assert result.channels == 2
    assert_melody(result)


def test_a_clipping_recording_is_transcribed_with_a_warning(sung: np.ndarray) -> None:
    clipped = np.clip(sung * 3, -1.0, 1.0)  # 13 % of the samples at full scale
    result = tr.transcribe(encode(clipped, RATE, subtype="FLOAT"), "loud.wav", tempo_bpm=TEMPO)
    assert_melody(result)
    assert len(result.warnings) == 1 and "clips" in result.warnings[0]


def test_silence_is_refused() -> None:
    refused(encode(np.zeros(3 * 16_000, np.float32), 16_000), "quiet.wav", r"quiet\.wav is silent")


def test_noise_without_a_pitch_is_refused() -> None:
    noise = np.random.default_rng(0).normal(0.0, 0.2, 3 * RATE).astype(np.float32)
    # tracked, so not instant: the first tracking in a fresh venv also compiles librosa's kernels (~20 s)
    refused(encode(noise, RATE), "hiss.wav", r"no melody found in hiss\.wav", within_s=60)


def test_a_file_that_is_not_audio_is_refused() -> None:
    refused(b"X:1\nT:not a recording\nK:G\nGABc|\n", "tune.mp3", r"tune\.mp3 is not audio .*Format not recognised$")


def test_an_empty_file_or_one_without_samples_is_refused() -> None:
    refused(b"", "nothing.wav", r"nothing\.wav is empty")
    refused(encode(np.zeros(0, np.float32), RATE), "header.wav", r"header\.wav holds no audio")


def test_a_recording_over_the_length_limit_is_refused_from_its_header() -> None:
    seconds = tr.MAX_SECONDS + 1
    error = refused(encode(np.zeros(int(seconds * 8000), np.float32), 8000), "long.wav", "too long")
    assert f"at most {tr.MAX_SECONDS:.0f} s" in str(error)


def test_an_upload_over_the_size_limit_is_refused_unread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tr, "MAX_UPLOAD_BYTES", 1000)
    refused(b"RIFF" + bytes(2000), "big.wav", r"big\.wav is too large")


def test_a_sample_rate_below_the_range_is_refused() -> None:
    refused(encode(np.zeros(2000, np.float32), 2000), "phone.wav", "sample rate of 2000 Hz")
