"""Standard MIDI files ↔ `Piece`: the mirrored pair `midi_to_piece` / `piece_to_midi`.

Reading goes through pretty_midi (music21 needs seconds on ordinary MIDI files); note times are converted back
to ticks and divided by the file's ticks-per-beat, so tempo changes do not bend the beat grid. Writing uses mido
directly: format 1, 480 ticks per beat, a conductor track (title, tempo, meter, key) and one track per `Part`.

This module also holds the rules every reader shares (beat grid, meter fallback, tempo clamp, size limits), so
MusicXML and ABC land on exactly the same grid as MIDI.
"""

from __future__ import annotations

import contextlib
import io
import math
import re
import struct

import mido

from musegen_core.errors import FormatError
from musegen_core.music import ALLOWED_DENOMINATORS, Key, Note, Part, Piece, TimeSignature
from musegen_core.quiet_import import import_quietly

pretty_midi = import_quietly("pretty_midi")

TICKS_PER_BEAT = 480  # resolution of the files we write, and the grid (1/480 beat) every reader snaps to
MAX_NOTES = 20_000  # larger pieces are refused: no melody upload needs them and they slow every page
MAX_PARTS = 64
MIN_TEMPO_BPM, MAX_TEMPO_BPM = 10.0, 400.0  # the range `Piece` accepts; file tempi are clamped into it
DRUM_CHANNEL = 9  # General MIDI channel 10, counted from 0

# Key-signature names mido writes, per tonic pitch class (flats/sharps chosen for the fewest accidentals).
_MAJOR_KEYS = ("C", "Db", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_MINOR_KEYS = ("Cm", "C#m", "Dm", "Ebm", "Em", "Fm", "F#m", "Gm", "G#m", "Am", "Bbm", "Bm")


# --- rules shared by every reader -------------------------------------------------------------------------------


def snap_beats(beats: float) -> float:
    """`beats` rounded to the 1/480-beat grid, which removes float noise from tick and tuplet arithmetic."""
    return round(beats * TICKS_PER_BEAT) / TICKS_PER_BEAT


def time_signature_or_default(numerator: int, denominator: int) -> TimeSignature:
    """The meter a file states, or 4/4 when `Piece` cannot represent it (e.g. 7/32 or 99/4)."""
    if 1 <= numerator <= 64 and denominator in ALLOWED_DENOMINATORS:
        return TimeSignature(numerator, denominator)
    return TimeSignature()


def clamp_tempo(bpm: float | None) -> float:
    """A file's tempo (quarter notes per minute) clamped into 10–400; 120 when missing or not a number."""
    if bpm is None or not math.isfinite(bpm) or bpm <= 0:
        return 120.0
    return round(min(max(bpm, MIN_TEMPO_BPM), MAX_TEMPO_BPM), 3)


def check_size(part_count: int, note_count: int) -> None:
    """Refuse pieces beyond `MAX_PARTS` parts or `MAX_NOTES` notes with a `FormatError` naming the limit."""
    if part_count > MAX_PARTS:
        raise FormatError(f"This file has {part_count} parts; MuseGen reads at most {MAX_PARTS}.")
    if note_count > MAX_NOTES:
        raise FormatError(f"This file has {note_count:,} notes; MuseGen reads at most {MAX_NOTES:,}.")


# --- MIDI → Piece -----------------------------------------------------------------------------------------------


def midi_to_piece(data: bytes) -> Piece:
    """Read a Standard MIDI File into a `Piece` (beats = quarter notes; pickup 0; drums kept with `is_drum`).

    The first tempo, time signature and key signature become the piece's; zero-length notes are dropped. A piece
    with no notes at all comes back with no parts (empty in → empty out).

    Raises:
        FormatError: not a MIDI file, damaged/truncated, SMPTE-timed, or beyond `MAX_PARTS`/`MAX_NOTES`.
    """
    midi = _read_mido(data)
    title = _conductor_title(midi)
    if not midi.tracks:
        return Piece(parts=(), title=title)
    try:
        pm = pretty_midi.PrettyMIDI(mido_object=midi)
    except Exception as error:  # boundary: pretty_midi raises ValueError/IndexError/KeyError on odd files
        raise FormatError(f"This MIDI file is damaged and cannot be read ({_reason(error)}).") from error
    instruments = [inst for inst in pm.instruments if inst.notes]
    check_size(len(instruments), sum(len(inst.notes) for inst in instruments))
    parts = [_instrument_to_part(pm, inst) for inst in instruments]
    return Piece(
        parts=tuple(part for part in parts if part.notes),
        tempo_bpm=clamp_tempo(pm.get_tempo_changes()[1][0]),
        time_signature=_first_time_signature(pm),
        key=_first_key(pm),
        title=title,
    )


def _read_mido(data: bytes) -> mido.MidiFile:
    """Parse the chunks with mido, after keeping only the header and `MTrk` chunks (others must be skipped)."""
    cleaned = _keep_track_chunks(data)
    try:
        midi = mido.MidiFile(file=io.BytesIO(cleaned))
    except Exception as error:  # boundary: mido raises OSError/EOFError/ValueError/KeyError on damaged data
        raise FormatError(f"This MIDI file is damaged and cannot be read ({_reason(error)}).") from error
    midi.tracks = [track for track in midi.tracks if len(track) > 0]
    return midi


def _keep_track_chunks(data: bytes) -> bytes:
    """The file rebuilt from its `MThd` header and `MTrk` chunks; unknown chunks and trailing bytes dropped."""
    if not data.startswith(b"MThd"):
        raise FormatError(
            "This file is not a MIDI file (it does not start with MThd). Upload a .mid, .musicxml/.mxl or .abc file."
        )
    if len(data) < 14:
        raise FormatError("This MIDI file is truncated (its header is incomplete). Try exporting it again.")
    header_length = int.from_bytes(data[4:8], "big")
    file_format, _, division = struct.unpack(">HHH", data[8:14])
    if division & 0x8000:
        raise FormatError(
            "This MIDI file uses SMPTE (clock-time) timing, which MuseGen cannot read; "
            "export it with beat-based timing (ticks per quarter note)."
        )
    tracks, position = [], 8 + header_length
    while position + 8 <= len(data):
        chunk_id, length = data[position : position + 4], int.from_bytes(data[position + 4 : position + 8], "big")
        end = position + 8 + length
        if chunk_id == b"MTrk" and end > len(data):
            raise FormatError("This MIDI file is truncated (a track ends early). Try exporting it again.")
        if chunk_id == b"MTrk":
            tracks.append(data[position:end])
        elif end > len(data):  # garbage after the last track: ignore it, as most players do
            break
        position = end
    header = b"MThd" + struct.pack(">IHHH", 6, min(file_format, 1), len(tracks), division)
    return header + b"".join(tracks)


def _conductor_title(midi: mido.MidiFile) -> str:
    """The title of a format-1 file: the name of its first track when that track plays no notes."""
    if midi.type != 1 or len(midi.tracks) < 2:
        return ""
    first = midi.tracks[0]
    if any(msg.type == "note_on" for msg in first):
        return ""
    names = [msg.name for msg in first if msg.type == "track_name"]
    return _decode_text(names[0]) if names else ""


def _instrument_to_part(pm: pretty_midi.PrettyMIDI, inst: pretty_midi.Instrument) -> Part:
    """One pretty_midi instrument as a `Part`, times converted seconds → ticks → beats."""
    notes = []
    for note in inst.notes:
        start = snap_beats(pm.time_to_tick(note.start) / pm.resolution)
        end = snap_beats(pm.time_to_tick(note.end) / pm.resolution)
        if end > start:
            notes.append(Note(note.pitch, start, snap_beats(end - start), min(max(note.velocity, 1), 127)))
    return Part(name=_part_name(inst), notes=tuple(notes), program=inst.program, is_drum=inst.is_drum)


def _part_name(inst: pretty_midi.Instrument) -> str:
    """The track name, else "Drums" or the General MIDI instrument name of the program."""
    name = _decode_text(inst.name)
    if name:
        return name
    return "Drums" if inst.is_drum else pretty_midi.program_to_instrument_name(inst.program)


def _first_time_signature(pm: pretty_midi.PrettyMIDI) -> TimeSignature:
    if not pm.time_signature_changes:
        return TimeSignature()
    first = pm.time_signature_changes[0]
    return time_signature_or_default(first.numerator, first.denominator)


def _first_key(pm: pretty_midi.PrettyMIDI) -> Key | None:
    """pretty_midi key numbers: 0–11 major keys on C..B, 12–23 minor keys on C..B."""
    if not pm.key_signature_changes:
        return None
    number = pm.key_signature_changes[0].key_number
    return Key(number % 12, "minor" if number >= 12 else "major")


def _decode_text(text: str) -> str:
    """Meta-event text as a clean single line.

    mido decodes meta text as Latin-1; most files (and ours) hold UTF-8, so that is undone when the bytes are
    valid UTF-8. Control characters (NUL terminators, C1 codes from other charsets) are removed.
    """
    with contextlib.suppress(UnicodeError):
        text = text.encode("latin-1").decode("utf-8")
    return " ".join(_CONTROL_CHARACTERS.sub(" ", text).split())


def _encode_text(text: str) -> str:
    """Inverse of `_decode_text`: UTF-8 bytes carried in a str that mido writes back as Latin-1."""
    return text.encode("utf-8").decode("latin-1")


def _reason(error: Exception) -> str:
    """A library exception as a short single-line phrase."""
    text = " ".join(str(error).split())
    return text[:120] if text else type(error).__name__


# --- Piece → MIDI -----------------------------------------------------------------------------------------------


def piece_to_midi(piece: Piece) -> bytes:
    """Write `piece` as a format-1 Standard MIDI File at 480 ticks per beat.

    Track 0 carries the title, tempo, time signature and key; then one track per `Part` with its name and General
    MIDI program, drums on channel 10. `pickup_beats` is not stored (MIDI has no anacrusis; it reads back as 0).
    """
    midi = mido.MidiFile(type=1, ticks_per_beat=TICKS_PER_BEAT)
    midi.tracks.append(_conductor_track(piece))
    for part, channel in zip(piece.parts, _channels(piece.parts), strict=True):
        midi.tracks.append(_part_track(part, channel))
    buffer = io.BytesIO()
    midi.save(file=buffer)
    return buffer.getvalue()


def _conductor_track(piece: Piece) -> mido.MidiTrack:
    track = mido.MidiTrack()
    if piece.title:
        track.append(mido.MetaMessage("track_name", name=_encode_text(piece.title)))
    track.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(piece.tempo_bpm)))
    meter = piece.time_signature
    track.append(mido.MetaMessage("time_signature", numerator=meter.numerator, denominator=meter.denominator))
    if piece.key is not None:
        names = _MINOR_KEYS if piece.key.mode == "minor" else _MAJOR_KEYS
        track.append(mido.MetaMessage("key_signature", key=names[piece.key.tonic_pc]))
    track.append(mido.MetaMessage("end_of_track"))
    return track


def _channels(parts: tuple[Part, ...]) -> list[int]:
    """MIDI channel per part: drums on 9, the others on 0–8, 10–15 in turn (shared beyond 15 melodic parts)."""
    melodic = [c for c in range(16) if c != DRUM_CHANNEL]
    channels, next_melodic = [], 0
    for part in parts:
        if part.is_drum:
            channels.append(DRUM_CHANNEL)
        else:
            channels.append(melodic[next_melodic % len(melodic)])
            next_melodic += 1
    return channels


def _part_track(part: Part, channel: int) -> mido.MidiTrack:
    """One part's track; at equal ticks note-offs come before note-ons so repeated notes are not cut short."""
    events: list[tuple[int, int, mido.Message]] = []
    for note in part.notes:
        start = round(note.start_beats * TICKS_PER_BEAT)
        end = max(round(note.end_beats * TICKS_PER_BEAT), start + 1)
        events.append((start, 1, mido.Message("note_on", channel=channel, note=note.pitch, velocity=note.velocity)))
        events.append((end, 0, mido.Message("note_off", channel=channel, note=note.pitch, velocity=0)))
    events.sort(key=lambda event: (event[0], event[1]))
    track = mido.MidiTrack()
    track.append(mido.MetaMessage("track_name", name=_encode_text(part.name)))
    track.append(mido.Message("program_change", channel=channel, program=part.program))
    tick = 0
    for event_tick, _, message in events:
        track.append(message.copy(time=event_tick - tick))
        tick = event_tick
    track.append(mido.MetaMessage("end_of_track"))
    return track
