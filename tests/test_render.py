"""Rendering with the real FluidSynth and real SoundFonts (no mocks), and piano-roll figures.

Tests of the optional SoundFonts (FluidR3 GM, MuseScore General) skip where their Debian packages are missing.
"""

from __future__ import annotations

import io
import os
import random
import struct
import wave
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise
from pathlib import Path

import fluidsynth
import numpy as np
import pytest

from musegen_core.errors import FormatError, RenderError, SoundFontError
from musegen_core.formats import piece_to_midi
from musegen_core.music import Note, Part, Piece, TimeSignature
from musegen_core.render import soundfonts
from musegen_core.render.audio import (
    EFFECTS_TAIL_SECONDS,
    MAX_RENDER_NOTES,
    MAX_RENDER_SECONDS,
    PEAK_LIMIT,
    SAMPLE_RATE,
    TAIL_SECONDS,
    Render,
    RenderCache,
    RenderSettings,
    Synthesizer,
    fit_to_render_limits,
    render,
    render_uncached,
    wav_duration_seconds,
)
from musegen_core.render.audio_export import render_file
from musegen_core.render.mastering import measure_loudness
from musegen_core.render.pianoroll import PRIME_COLOR, TAKE_COLOR, RollLayer, piano_roll
from musegen_core.render.soundfonts import (
    ALLOW_USER_SOUNDFONTS_ENV,
    BUILTIN_SOUNDFONT_IDS,
    DEFAULT_SOUNDFONT,
    MAX_USER_SOUNDFONT_BYTES,
    check_soundfont_file,
    installed_soundfonts,
    resolve_soundfont,
    user_soundfont,
)

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


# --- SoundFonts ------------------------------------------------------------------------------------------------

INSTALLED_IDS = {soundfont.id for soundfont in installed_soundfonts()}


def _needs(soundfont_id: str) -> None:
    if soundfont_id not in INSTALLED_IDS:
        pytest.skip(f"SoundFont {soundfont_id} is not installed (see soundfonts.py for its Debian package)")


@pytest.fixture(scope="module")
def timgm_bytes() -> bytes:
    return DEFAULT_SOUNDFONT.read_bytes()


def _list_offsets(data: bytes) -> dict[str, int]:
    """Byte offset of each top-level LIST chunk (INFO, sdta, pdta) of a well-formed SoundFont."""
    offsets, position = {}, 12
    while position + 12 <= len(data):
        _, size, kind = struct.unpack_from("<4sI4s", data, position)
        offsets[kind.decode()] = position
        position += 8 + size
    return offsets


def _set_u32(data: bytes, offset: int, value: int) -> bytes:
    return data[:offset] + struct.pack("<I", value) + data[offset + 4 :]


def _user_file(tmp_path: Path, data: bytes, name: str = "mine.sf2") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.fixture
def allow_user_soundfonts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ALLOW_USER_SOUNDFONTS_ENV, "1")


def test_installed_soundfonts_start_with_the_default_and_pass_the_structure_check() -> None:
    installed = installed_soundfonts()
    assert installed[0].id == "timgm6mb" and installed[0].path == DEFAULT_SOUNDFONT
    assert {soundfont.id for soundfont in installed} <= set(BUILTIN_SOUNDFONT_IDS)
    for soundfont in installed:
        check_soundfont_file(soundfont.path, max_bytes=None)
    assert resolve_soundfont(None) == resolve_soundfont("timgm6mb") == installed[0]


def _truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _not_riff(data: bytes) -> bytes:
    return b"MThd" + data[4:]


def _wrong_form(data: bytes) -> bytes:
    return data[:8] + b"WAVE" + data[12:]


def _list_beyond_the_end(data: bytes) -> bytes:
    return _set_u32(data, _list_offsets(data)["sdta"] + 4, len(data))


def _sample_chunk_beyond_its_list(data: bytes) -> bytes:
    return _set_u32(data, _list_offsets(data)["sdta"] + 16, len(data))


def _hydra_chunk_missing(data: bytes) -> bytes:
    shdr = data.rindex(b"shdr")
    return data[:shdr] + b"xhdr" + data[shdr + 4 :]


def _version_one(data: bytes) -> bytes:
    ifil = data.index(b"ifil")
    return data[: ifil + 8] + struct.pack("<HH", 1, 0) + data[ifil + 12 :]


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (_truncated, "declares 5994284 bytes but the file has 2997142"),
        (_not_riff, "not a RIFF file"),
        (_wrong_form, "RIFF file of type 'WAVE', not a SoundFont"),
        (_list_beyond_the_end, "chunk 'LIST' at byte 96 declares .* beyond the end"),
        (_sample_chunk_beyond_its_list, "chunk 'smpl' at byte 108 declares .* beyond the end"),
        (_hydra_chunk_missing, "pdta chunk holds"),
        (_version_one, "SoundFont version 1"),
    ],
)
def test_malformed_soundfonts_are_refused_before_fluidsynth_sees_them(
    tmp_path: Path,
    timgm_bytes: bytes,
    allow_user_soundfonts: None,
    corrupt: Callable[[bytes], bytes],
    message: str,
) -> None:
    path = _user_file(tmp_path, corrupt(timgm_bytes))
    with pytest.raises(SoundFontError, match=f"mine.sf2 is not a valid SoundFont: .*{message}"):
        resolve_soundfont(str(path))
    with pytest.raises(SoundFontError, match=message):  # the engine checks too, whoever hands it a path
        Synthesizer(path)


def test_an_oversized_soundfont_is_refused_without_reading_it(tmp_path: Path, allow_user_soundfonts: None) -> None:
    path = tmp_path / "huge.sf2"
    with path.open("wb") as sparse:
        sparse.truncate(MAX_USER_SOUNDFONT_BYTES + 1)
    with pytest.raises(SoundFontError, match=r"huge\.sf2 is 64\.0 MB; SoundFonts may be at most 64 MB"):
        resolve_soundfont(path)


def test_a_fifo_is_refused_without_blocking(tmp_path: Path, allow_user_soundfonts: None) -> None:
    fifo = tmp_path / "pipe.sf2"
    os.mkfifo(fifo)
    with pytest.raises(SoundFontError, match="not a regular file"):
        resolve_soundfont(fifo)


def test_user_soundfonts_are_refused_while_the_server_does_not_allow_them(
    tmp_path: Path, timgm_bytes: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ALLOW_USER_SOUNDFONTS_ENV, raising=False)
    path = _user_file(tmp_path, timgm_bytes)
    with pytest.raises(SoundFontError, match=f"does not accept your own SoundFonts.*{ALLOW_USER_SOUNDFONTS_ENV}=1"):
        render(_melody(), RenderSettings(soundfont=path))
    monkeypatch.setenv(ALLOW_USER_SOUNDFONTS_ENV, "0")
    with pytest.raises(SoundFontError, match="does not accept"):
        user_soundfont(path)


def test_an_allowed_user_soundfont_renders(tmp_path: Path, timgm_bytes: bytes, allow_user_soundfonts: None) -> None:
    path = _user_file(tmp_path, timgm_bytes, "Mine.SF2")
    mine = render(_melody(), RenderSettings(soundfont=str(path)))
    assert mine.soundfont == "Mine.SF2"
    assert np.array_equal(mine.audio, render(_melody()).audio)  # the same SoundFont, the same samples


def test_user_soundfont_names_must_end_in_sf2_or_sf3(
    tmp_path: Path, timgm_bytes: bytes, allow_user_soundfonts: None
) -> None:
    with pytest.raises(SoundFontError, match=r"must end in \.sf2 or \.sf3"):
        user_soundfont(_user_file(tmp_path, timgm_bytes, "mine.dls"))


def test_unknown_and_uninstalled_soundfonts_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SoundFontError, match=r"unknown SoundFont 'fluidr3'.*fluidr3_gm"):
        resolve_soundfont("fluidr3")
    absent = soundfonts._Builtin(
        "fluidr3_gm", "FluidR3 GM", (Path("/nonexistent/FluidR3_GM.sf2"),), "fluid-soundfont-gm"
    )
    monkeypatch.setitem(soundfonts._BUILTIN_BY_ID, "fluidr3_gm", absent)
    with pytest.raises(SoundFontError, match=r"FluidR3 GM SoundFont is not installed.*fluid-soundfont-gm"):
        render(_melody(), RenderSettings(soundfont="fluidr3_gm"))


@pytest.mark.parametrize("soundfont_id", BUILTIN_SOUNDFONT_IDS)
def test_every_installed_soundfont_renders_at_the_loudness_target(soundfont_id: str) -> None:
    _needs(soundfont_id)
    result = render(_melody(), RenderSettings(soundfont=soundfont_id))
    assert result.soundfont == resolve_soundfont(soundfont_id).label
    assert result.seconds == pytest.approx(4.0 + TAIL_SECONDS)
    assert measure_loudness(result.audio, SAMPLE_RATE) == pytest.approx(-18.0, abs=1.0)
    assert np.abs(result.audio).max() <= PEAK_LIMIT


def test_soundfonts_sound_different() -> None:
    _needs("fluidr3_gm")
    tim = render(_melody()).audio
    fluid = render(_melody(), RenderSettings(soundfont="fluidr3_gm")).audio
    assert np.abs(_octave_bands_db(tim) - _octave_bands_db(fluid)).max() > 3.0


# --- render settings -------------------------------------------------------------------------------------------


def _octave_bands_db(audio: np.ndarray) -> np.ndarray:
    """Share of the energy in each octave from 125 Hz to 16 kHz, in dB: the shape of the spectrum."""
    power = np.abs(np.fft.rfft(audio.mean(axis=1).astype(np.float64))) ** 2
    frequencies = np.fft.rfftfreq(len(audio), 1 / SAMPLE_RATE)
    edges = 125.0 * 2.0 ** np.arange(8)
    energy = np.array([power[(frequencies >= low) & (frequencies < high)].sum() for low, high in pairwise(edges)])
    return 10 * np.log10(energy / energy.sum())


def test_default_settings_normalise_and_fade_a_melody() -> None:
    result = render(_melody())
    assert isinstance(result, Render) and not result.truncated and result.message == ""
    assert result.audio.dtype == np.float32 and result.audio.shape == (round(5.0 * SAMPLE_RATE), 2)
    assert measure_loudness(result.audio, SAMPLE_RATE) == pytest.approx(-18.0, abs=0.1)
    assert wav_duration_seconds(result.wav) == pytest.approx(5.0)


def test_a_program_override_changes_the_spectrum() -> None:
    piano = render(_melody()).audio
    flute = render(_melody(), RenderSettings(programs=(73,))).audio
    assert np.abs(_octave_bands_db(piano) - _octave_bands_db(flute)).max() > 6.0
    assert np.array_equal(
        render(_melody(), RenderSettings(programs=(None, 40))).audio, piano
    )  # None keeps; extras ignored


def test_reverb_and_chorus_give_a_longer_decaying_tail() -> None:
    staccato = Piece((Part("piano", (Note(60, 0.0, 0.5, velocity=110),)),))  # 0.25 s at 120 bpm
    dry = render(staccato, RenderSettings(normalize=False)).audio
    wet = render(staccato, RenderSettings(normalize=False, effects=True)).audio
    assert len(wet) - len(dry) == round((EFFECTS_TAIL_SECONDS - TAIL_SECONDS) * SAMPLE_RATE)
    for start in (0.6, 0.9):  # after the note's release: the room still rings, and dies away
        assert _rms(wet, start, start + 0.2) > 5 * _rms(dry, start, start + 0.2)
    assert _rms(wet, 0.6, 0.8) > 3 * _rms(wet, 1.4, 1.6) > 0
    assert np.array_equal(wet, render_uncached(staccato, RenderSettings(normalize=False, effects=True)).audio)


def test_a_tempo_change_changes_the_duration() -> None:
    assert render(_melody(), RenderSettings(tempo_bpm=60.0)).seconds == pytest.approx(8.0 + TAIL_SECONDS)
    assert render(_melody(tempo_bpm=60.0), RenderSettings(tempo_bpm=240.0)).seconds == pytest.approx(2.0 + TAIL_SECONDS)


@pytest.mark.parametrize("target", [-18.0, -23.0])
def test_loudness_is_normalised_whatever_the_velocity(target: float) -> None:
    soft, loud = (_melody_at_velocity(velocity) for velocity in (30, 120))
    raw = [measure_loudness(render(p, RenderSettings(normalize=False)).audio, SAMPLE_RATE) for p in (soft, loud)]
    assert raw[1] - raw[0] > 6.0
    for piece in (soft, loud):
        audio = render(piece, RenderSettings(target_lufs=target)).audio
        assert measure_loudness(audio, SAMPLE_RATE) == pytest.approx(target, abs=1.0)


def _melody_at_velocity(velocity: int) -> Piece:
    notes = tuple(Note(pitch, float(i), 1.0, velocity=velocity) for i, pitch in enumerate(C_MAJOR_UP))
    return Piece((Part("melody", notes),))


def test_a_loud_target_is_limited_not_clipped() -> None:
    cluster = tuple(Part(f"p{i}", tuple(Note(p, 0.0, 2.0, velocity=127) for p in range(48, 72))) for i in range(4))
    audio = render(Piece(cluster), RenderSettings(target_lufs=-8.0)).audio
    assert np.abs(audio).max() == pytest.approx(PEAK_LIMIT, abs=1e-6)


def test_a_note_shorter_than_a_loudness_block_is_normalised() -> None:
    blip = Piece((Part("blip", (Note(72, 0.0, 0.1),)),))  # 50 ms
    audio = render(blip, RenderSettings(effects=False, fade_out_ms=0.0)).audio
    assert measure_loudness(audio[: round(0.3 * SAMPLE_RATE)], SAMPLE_RATE) > -40.0
    assert measure_loudness(audio, SAMPLE_RATE) == pytest.approx(-18.0, abs=1.0)


def test_fades_start_and_end_at_silence_and_touch_only_the_edges() -> None:
    organ = Piece((Part("organ", (Note(60, 0.0, 8.0, velocity=120),), program=19),))  # 4 s held, 1 s tail
    faded = render(organ, RenderSettings(fade_out_ms=3000.0)).audio
    unfaded = render(organ, RenderSettings(fade_out_ms=0.0)).audio
    assert np.all(faded[0] == 0) and np.all(faded[-1] == 0)
    assert np.abs(faded[:20]).max() < 1e-3
    assert _rms(faded, 3.4, 3.9) < 0.6 * _rms(unfaded, 3.4, 3.9)  # fading out while the note still holds
    short_fade = render(organ).audio  # default: 3 ms in, 50 ms out
    edge = round(0.05 * SAMPLE_RATE)
    assert np.array_equal(short_fade[edge:-edge], unfaded[edge:-edge])


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"programs": (128,)}, "program must be within 0 and 127"),
        ({"programs": ("piano",)}, "program must be within 0 and 127"),
        ({"tempo_bpm": 5.0}, "tempo must be within 10 and 400 bpm"),
        ({"tempo_bpm": float("nan")}, "tempo must be within"),
        ({"target_lufs": -3.0}, "loudness target must be within -40 and -8 LUFS"),
        ({"fade_out_ms": -1.0}, "fade-out must be within 0 and 10000 ms"),
        ({"soundfont": 3}, "soundfont must be an id or a path"),
    ],
)
def test_out_of_range_settings_are_refused(fields: dict[str, object], message: str) -> None:
    with pytest.raises(RenderError, match=message):
        RenderSettings(**fields)  # type: ignore[arg-type]


def test_settings_apply_programs_and_tempo_to_a_copy_of_the_piece() -> None:
    band = _band()
    played = RenderSettings(programs=(None, 0), tempo_bpm=90.0).apply(band)
    assert [part.program for part in played.parts] == [48, 0, 0] and played.tempo_bpm == 90.0
    assert [part.program for part in band.parts] == [48, 33, 0] and band.tempo_bpm == 100.0
    from_a_widget = RenderSettings(programs=[np.int64(73), None])  # type: ignore[arg-type]
    assert from_a_widget == RenderSettings(programs=(73, None)) and type(from_a_widget.programs[0]) is int


# --- render cache ----------------------------------------------------------------------------------------------


def test_the_same_piece_and_settings_return_the_same_render() -> None:
    first = render(_melody(), RenderSettings(tempo_bpm=100.0))
    assert render(_melody(), RenderSettings(tempo_bpm=100)) is first  # equal, not identical, inputs
    assert render(_melody(), RenderSettings(tempo_bpm=101.0)) is not first
    assert render_uncached(_melody(), RenderSettings(tempo_bpm=100.0)) is not first
    assert first.wav is first.wav
    with pytest.raises(ValueError, match="read-only"):
        first.audio[0, 0] = 1.0  # a shared render cannot be changed by one caller


def _fake_render(frames: int) -> Render:
    return Render(np.zeros((frames, 2), dtype=np.float32), SAMPLE_RATE, "test")


def test_the_render_cache_is_bounded_by_count_and_by_bytes() -> None:
    cache = RenderCache(max_entries=2, max_bytes=8 * 1000)  # 1,000 stereo float32 frames
    a, b, c = (_fake_render(100) for _ in range(3))
    assert cache.put("a", a) is a and cache.put("b", b) is b
    assert cache.get("a") is a  # "b" is now the least recently used
    cache.put("c", c)
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (a, None, c)
    assert cache.put("c", _fake_render(100)) is c  # a racing second render of a key gets the first
    big = _fake_render(950)
    assert cache.put("big", big) is big and len(cache) == 1  # evicted both others to fit
    huge = _fake_render(2000)
    assert cache.put("huge", huge) is huge and cache.get("huge") is None and len(cache) == 1


# --- hostile lengths -------------------------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_an_absurdly_long_note_gives_a_capped_render_and_says_so() -> None:
    drone = Piece((Part("drone", (Note(60, 0.0, 2000.0),)),), tempo_bpm=10.0)  # 12,000 s
    result = render_uncached(drone)
    assert result.truncated
    assert result.audio.shape == (round(MAX_RENDER_SECONDS * SAMPLE_RATE), 2)  # 212 MB, the documented maximum
    assert result.message == (
        "Only the first 9:59 of 3:20:00 was rendered: a render lasts at most 10 minutes, release included."
    )
    assert result.audio[-1].tolist() == [0.0, 0.0]


def test_notes_beyond_the_cap_are_dropped_and_counted() -> None:
    far = Piece((Part("m", (Note(60, 0.0, 1.0), Note(62, 1e300, 1e300))),))
    kept, message = fit_to_render_limits(far)
    assert kept.note_count == 1 and kept.end_beats == 1.0  # 0.5 s at 120 bpm
    assert message.startswith("Only the first 0.5 s of more than 100 hours (1 of 2 notes) was rendered")


def test_a_piece_whose_notes_all_start_past_the_cap_is_refused() -> None:
    late = Piece((Part("m", (Note(60, 5000.0, 1.0),)),), tempo_bpm=10.0)  # starts after 500 minutes
    with pytest.raises(RenderError, match="nothing to play: no note starts before 9:59"):
        render(late)


def test_too_many_notes_are_cut_at_the_limit() -> None:
    kept, message = fit_to_render_limits(_many_notes())
    assert kept.note_count == MAX_RENDER_NOTES
    assert "(100,000 of 100,001 notes) was rendered: a render plays at most 100,000 notes" in message


def test_render_refuses_too_many_parts() -> None:
    with pytest.raises(RenderError, match="too many parts"):
        render(_many_parts())


# --- files for the CLI -----------------------------------------------------------------------------------------


@pytest.fixture
def melody_file(tmp_path: Path) -> Path:
    path = tmp_path / "tune.mid"
    path.write_bytes(piece_to_midi(_melody()))
    return path


def test_render_file_writes_a_wav(melody_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "tune.wav"
    result = render_file(melody_file, out)
    assert out.read_bytes() == result.wav
    assert wav_duration_seconds(out.read_bytes()) == pytest.approx(4.0 + TAIL_SECONDS)


def test_render_file_writes_an_mp3_with_another_program(melody_file: Path, tmp_path: Path) -> None:
    piano, flute = tmp_path / "piano.mp3", tmp_path / "flute.MP3"
    render_file(melody_file, piano)
    result = render_file(str(melody_file), str(flute), program=73)
    data = flute.read_bytes()
    assert data[:3] == b"ID3" or (data[0] == 0xFF and data[1] & 0xE0 == 0xE0)  # an MP3 tag or frame sync
    assert 50_000 < len(data) < 5.0 * 192_000 / 8 * 1.2  # about 5 s at 192 kbit/s
    assert data != piano.read_bytes() and result.seconds == pytest.approx(5.0)


def test_render_file_with_an_installed_soundfont(melody_file: Path, tmp_path: Path) -> None:
    _needs("fluidr3_gm")
    result = render_file(melody_file, tmp_path / "tune.wav", soundfont="fluidr3_gm", effects=True)
    assert result.soundfont == "FluidR3 GM" and result.seconds == pytest.approx(4.0 + EFFECTS_TAIL_SECONDS)


def test_render_file_errors(melody_file: Path, tmp_path: Path) -> None:
    with pytest.raises(RenderError, match=r"must end in \.wav or \.mp3"):
        render_file(tmp_path / "missing.mid", tmp_path / "out.ogg")
    with pytest.raises(FormatError, match="Cannot read"):
        render_file(tmp_path / "missing.mid", tmp_path / "out.wav")
    with pytest.raises(RenderError, match="program must be within 0 and 127"):
        render_file(melody_file, tmp_path / "out.wav", program=200)
    with pytest.raises(RenderError, match="cannot write"):
        render_file(melody_file, tmp_path / "no-such-folder" / "out.wav")
    with pytest.raises(SoundFontError, match="unknown SoundFont"):
        render_file(melody_file, tmp_path / "out.wav", soundfont="grand-piano")


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
