"""Audio files from music files: `render_file` (what `musegen render` runs), and MP3 encoding.

WAV is `Render.wav` (16-bit PCM stereo). MP3 is LAME through lameenc: constant `MP3_BITRATE_KBPS`, LAME quality 2
(its recommended near-best setting; over 40× real time even on white noise, its hardest case).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from musegen_core.errors import FormatError, RenderError
from musegen_core.formats import MAX_UPLOAD_BYTES
from musegen_core.music import Piece
from musegen_core.render.audio import Render, RenderSettings, pcm16, render_uncached
from musegen_core.render.soundfonts import DEFAULT_SOUNDFONT_ID
from musegen_core.workers import load_untrusted

AUDIO_SUFFIXES = (".wav", ".mp3")
MP3_BITRATE_KBPS = 192
_LAME_QUALITY = 2


def render_file(
    path_in: Path | str,
    path_out: Path | str,
    soundfont: str | Path | None = None,
    program: int | None = None,
    *,
    tune: int = 0,
    tempo_bpm: float | None = None,
    effects: bool = False,
    normalize: bool = True,
) -> Render:
    """Render a music file (MIDI, MusicXML, ABC: every part) to a WAV or MP3 file, by `path_out`'s suffix.

    Args:
        soundfont: a built-in SoundFont id (`soundfonts.installed_soundfonts()`) or the path of a .sf2/.sf3 file,
            which needs `MUSEGEN_ALLOW_USER_SOUNDFONTS=1`; None: the default (TimGM6mb).
        program: a General MIDI program (0–127) for every pitched part; drum parts keep their kit; None keeps
            each part's own.
        tune: which tune of a multi-tune ABC file (from 0).
        tempo_bpm, effects, normalize: as in `RenderSettings`.

    Returns:
        The `Render`; when the piece was longer than a render may be, it was cut and `message` says so.

    Raises:
        FormatError: the input cannot be read, is larger than `formats.MAX_UPLOAD_BYTES` or is not a music file.
        SoundFontError: the SoundFont is unknown, not installed, not allowed, too large or malformed.
        RenderError: the output suffix is not .wav or .mp3, `program`/`tempo_bpm` is out of range, the piece
            has no notes or too many parts, FluidSynth failed, or the output cannot be written.
    """
    path_in, path_out = Path(path_in), Path(path_out)
    suffix = path_out.suffix.lower()
    if suffix not in AUDIO_SUFFIXES:
        raise RenderError(f"cannot write {path_out.name}: the output must end in .wav or .mp3")
    piece = _read_piece(path_in, tune)
    programs = () if program is None else tuple(None if part.is_drum else program for part in piece.parts)
    settings = RenderSettings(
        soundfont=soundfont or DEFAULT_SOUNDFONT_ID,
        programs=programs,
        tempo_bpm=tempo_bpm,
        effects=effects,
        normalize=normalize,
    )
    rendered = render_uncached(piece, settings)
    data = rendered.wav if suffix == ".wav" else encode_mp3(rendered.audio, rendered.sample_rate)
    try:
        path_out.write_bytes(data)
    except OSError as error:
        raise RenderError(f"cannot write {path_out}: {error.strerror or error}") from error
    return rendered


def encode_mp3(audio: np.ndarray, sample_rate: int, bitrate_kbps: int = MP3_BITRATE_KBPS) -> bytes:
    """MP3 bytes (constant bit rate) of float audio shaped (frames, channels), 1 or 2 channels, values in [-1, 1]."""
    import lameenc  # only when an MP3 is asked for

    encoder = lameenc.Encoder()
    encoder.set_bit_rate(bitrate_kbps)
    encoder.set_in_sample_rate(sample_rate)
    encoder.set_channels(audio.shape[1])
    encoder.set_quality(_LAME_QUALITY)
    return bytes(encoder.encode(pcm16(audio).tobytes()) + encoder.flush())


def _read_piece(path: Path, tune: int) -> Piece:
    """The piece in a music file, read only when it is no larger than an upload may be."""
    try:
        size = path.stat().st_size
        data = path.read_bytes() if size <= MAX_UPLOAD_BYTES else b""
    except OSError as error:
        raise FormatError(f"Cannot read {path}: {error.strerror or error}.") from error
    if size > MAX_UPLOAD_BYTES:
        limit = MAX_UPLOAD_BYTES / 2**20
        raise FormatError(f"{path.name} is {size / 2**20:.1f} MB; MuseGen reads music files up to {limit:g} MB.")
    return load_untrusted(data, path.name, tune)
