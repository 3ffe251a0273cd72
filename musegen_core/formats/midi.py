"""Standard MIDI files ↔ `Piece`: the mirrored pair `midi_to_piece` / `piece_to_midi`.

Reading goes through pretty_midi (music21 needs seconds on ordinary MIDI files); note times are converted back
to ticks and divided by the file's ticks-per-beat, so tempo changes do not bend the beat grid. Writing uses mido
directly: format 1, 480 ticks per beat, a conductor track (title, tempo, meter, key) and one track per `Part`, laid
out so that DAWs import it cleanly (see `piece_to_midi`).

A pickup (anacrusis) travels as notation programs write it: the first bar gets a time signature of its own length
(1/4 before 3/4), and a reader takes a first meter that lasts exactly one bar, shorter than the next, as a pickup.

This module also holds the rules every reader shares (beat grid, meter fallback, tempo clamp, size limits), so
MusicXML and ABC land on exactly the same grid as MIDI.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import re
import struct
from fractions import Fraction

import mido

from musegen_core.errors import FormatError
from musegen_core.formats.spelling import key_name
from musegen_core.music import ALLOWED_DENOMINATORS, Key, Note, Part, Piece, TimeSignature
from musegen_core.quiet_import import import_quietly

pretty_midi = import_quietly("pretty_midi")

TICKS_PER_BEAT = 480  # resolution of the files we write, and the grid (1/480 beat) every reader snaps to
MAX_NOTES = 20_000  # larger pieces are refused: no melody upload needs them and they slow every page
MAX_PARTS = 64
MAX_PIECE_BEATS = 50_000  # ~7 hours at 120 bpm; beyond that a file is damaged (a note of millions of beats)
MAX_BAR_BEATS = 64  # a bar of more beats is refused: music21 needs ~6 s for one bar of 500 beats, 96 s at 2,000
MIN_TEMPO_BPM, MAX_TEMPO_BPM = 10.0, 400.0  # the range `Piece` accepts; file tempi are clamped into it
DRUM_CHANNEL = 9  # General MIDI channel 10, counted from 0
MIDI_CLOCKS_PER_QUARTER = 24  # the time-signature event's metronome unit
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
log = logging.getLogger("musegen.formats")


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


def check_length(piece: Piece) -> None:
    """Refuse a piece longer than `MAX_PIECE_BEATS` (damaged or hostile: one note can claim millions of beats)."""
    if piece.end_beats > MAX_PIECE_BEATS:
        raise FormatError(
            f"This file's music lasts {piece.end_beats:,.0f} beats; MuseGen reads pieces of at most "
            f"{MAX_PIECE_BEATS:,} beats, so the file is probably damaged. Export it again, or upload a shorter excerpt."
        )


# --- MIDI → Piece -----------------------------------------------------------------------------------------------


def midi_to_piece(data: bytes) -> Piece:
    """Read a Standard MIDI File into a `Piece` (beats = quarter notes; drums kept with `is_drum`).

    The first tempo, time signature and key signature become the piece's, and a pickup bar written as its own
    meter becomes `pickup_beats` (see the module docstring); zero-length notes are dropped. A piece with no notes at
    all comes back with no parts (empty in → empty out).

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
    time_signature, pickup_beats = _meter_and_pickup(pm)
    return Piece(
        parts=tuple(part for part in parts if part.notes),
        tempo_bpm=clamp_tempo(pm.get_tempo_changes()[1][0]),
        time_signature=time_signature,
        key=_first_key(pm),
        title=title,
        pickup_beats=pickup_beats,
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


def _meter_and_pickup(pm: pretty_midi.PrettyMIDI) -> tuple[TimeSignature, float]:
    """The first meter and no pickup; or, when the first meter lasts exactly one bar and is shorter than the meter
    after it, that meter and the first bar's length as the pickup."""
    changes = pm.time_signature_changes
    if not changes:
        return TimeSignature(), 0.0
    first = changes[0]
    meter = time_signature_or_default(first.numerator, first.denominator)
    if len(changes) < 2 or first.time > 0:
        return meter, 0.0
    following = changes[1]
    after = time_signature_or_default(following.numerator, following.denominator)
    first_bar_beats = snap_beats(pm.time_to_tick(following.time) / pm.resolution)
    if abs(first_bar_beats - first.numerator * 4 / first.denominator) < 1e-9 and first_bar_beats < after.bar_beats:
        return after, first_bar_beats
    return meter, 0.0


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
    """A library exception as a short single-line phrase for people: mido's own messages about the MIDI data (a
    ValueError or OSError such as "undefined status byte 0xf4") are kept; a file that ends early is "it ends too early";
    anything else (an IndexError or ZeroDivisionError deep in pretty_midi) says nothing a musician could use, so it
    becomes "its data does not follow the MIDI format" and its text goes to the log."""
    text = " ".join(str(error).split())
    if isinstance(error, EOFError):
        return "it ends too early"
    if text and type(error) in (ValueError, OSError):
        return text[:120]
    log.info("unreadable MIDI data", exc_info=error)
    return "its data does not follow the MIDI format"


# --- Piece → MIDI -----------------------------------------------------------------------------------------------


def piece_to_midi(piece: Piece) -> bytes:
    """Write `piece` as a format-1 Standard MIDI File at 480 ticks per beat, laid out for DAWs to import cleanly.

    Track 0 (the conductor track) carries at tick 0 the title as track name, the tempo, the time signature (with a
    pickup, the pickup bar's own meter first: see the module docstring) and the key where known. Then one track per
    `Part`: its name, a program change to its General MIDI program, its notes (note-offs before note-ons at equal
    ticks), and an end-of-track event like every track.

    Channels: drums play on channel 10, melodic parts on 1–9 and 11–16 in turn. Beyond 15 melodic parts, channels
    are shared by program: parts with the same program share one, and programs beyond the 15th take channels
    round-robin (on a shared channel the later program change wins). DAWs play each track through its own
    instrument anyway; sharing only matters to players that route by channel.
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
    pickup_meter = _pickup_meter(piece)
    clocks = round(MIDI_CLOCKS_PER_QUARTER * meter.beat_beats)  # one metronome click per felt beat (6/8: 36)
    first_numerator, first_denominator = pickup_meter or (meter.numerator, meter.denominator)
    track.append(_time_signature(first_numerator, first_denominator, clocks))
    if piece.key is not None:
        track.append(mido.MetaMessage("key_signature", key=key_name(piece.key)))
    if pickup_meter is not None:
        pickup_ticks = round(piece.pickup_beats * TICKS_PER_BEAT)
        track.append(_time_signature(meter.numerator, meter.denominator, clocks, time=pickup_ticks))
    track.append(mido.MetaMessage("end_of_track"))
    return track


def _time_signature(numerator: int, denominator: int, clocks: int, time: int = 0) -> mido.MetaMessage:
    return mido.MetaMessage(
        "time_signature", numerator=numerator, denominator=denominator, clocks_per_click=clocks, time=time
    )


def _pickup_meter(piece: Piece) -> tuple[int, int] | None:
    """The pickup bar as a meter, in the piece's note value or finer (1 beat in 6/8 → 2/8; 1.5 in 4/4 → 3/8).

    None without a pickup, or for one a time signature cannot state (not a whole number of 128th notes, e.g. a
    triplet-eighth pickup, or over 255 of its note values): that pickup is not written and reads back as 0.
    """
    whole_notes = Fraction(round(piece.pickup_beats * TICKS_PER_BEAT), 4 * TICKS_PER_BEAT)
    power_of_two = whole_notes.denominator & (whole_notes.denominator - 1) == 0
    denominator = max(whole_notes.denominator, piece.time_signature.denominator)
    numerator = whole_notes * denominator
    if whole_notes == 0 or not power_of_two or numerator > 255:  # a time signature holds a byte over a power of 2
        return None
    return int(numerator), denominator


def _channels(parts: tuple[Part, ...]) -> list[int]:
    """MIDI channel (0-based) per part, as `piece_to_midi` describes."""
    melodic = [c for c in range(16) if c != DRUM_CHANNEL]
    pitched = [part for part in parts if not part.is_drum]
    if len(pitched) <= len(melodic):
        slots = iter(range(len(pitched)))
    else:
        programs = list(dict.fromkeys(part.program for part in pitched))
        slots = iter(programs.index(part.program) for part in pitched)
    return [DRUM_CHANNEL if part.is_drum else melodic[next(slots) % len(melodic)] for part in parts]


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
