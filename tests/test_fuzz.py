"""Fuzzing the upload path and the controls with hypothesis.

Generated and mutated MIDI, MusicXML (plain and `.mxl`) and ABC files go through `upload_path`
(tests/upload_harness.py: `open_music_file` + `.load` of every tune, in this process), which must, within
`HANG_SECONDS` per file, return valid pieces (`piece_problem`) or refuse with a `MusegenError` whose message is one
non-empty line.
`Controls(**values)`, `Controls.from_dict` and `controls_from_strings` must validate, with every field of its declared
type and JSON-ready, or raise `ControlError`.

CI runs `CI_EXAMPLES` derandomized examples per check (the same inputs on every run; a failing one is reported as
generated, unshrunk); `bench/fuzz.py` runs the same strategies and checks at scale (10,000+ inputs each) and writes
bench/results/fuzz.json. Every bug found is kept, minimised by hand, under tests/data/fuzz/ and replayed by
`test_regression_file` (see `regression_problem`).
"""

from __future__ import annotations

import ast
import copy
import functools
import io
import json
import math
import re
import signal
import struct
import warnings
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Callable
from dataclasses import Field, fields
from fractions import Fraction
from pathlib import Path
from typing import NamedTuple

import mido
import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from upload_harness import FAILURES, PYTHON_INTERNALS, Hang, Outcome, describe_crash, run_upload, time_limit, where

from musegen_core.controls import MOODS, SCALES, Controls, controls_from_strings
from musegen_core.errors import ControlError
from musegen_core.formats import MAX_NOTES, MAX_PARTS, default_melody_part, piece_to_midi
from musegen_core.formats.musicxml import piece_to_musicxml
from musegen_core.music import PITCH_NAMES, Key, Note, Part, Piece, TimeSignature

DATA = Path(__file__).parent / "data"
REGRESSIONS = DATA / "fuzz"
CI_EXAMPLES = 200
MAX_SANE_BARS = 1_000_000  # days of music; `Piece.bar_count` lists every bar line (32 MB here, and on without bound)
CI_SETTINGS = settings(
    max_examples=CI_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: a hang would be rerun, 10 s each time, for minutes
    suppress_health_check=list(HealthCheck),
)


class Upload(NamedTuple):
    data: bytes
    name: str


# --- the properties -------------------------------------------------------------------------------------------------


class Problem(NamedTuple):
    """What went wrong with one input: `site` tells distinct bugs apart, `detail` says everything."""

    kind: str  # a verdict of FAILURES, "invalid piece", "bad message", "accepted a wrong type", "not JSON-ready"
    site: str
    detail: str


def upload_problem(upload: Upload) -> Problem | None:
    """None when the upload path loads valid pieces or refuses in time with a one-line message free of Python text
    (exception names, "list index out of range", ...); else the problem."""
    return outcome_problem(run_upload(upload.data, upload.name))


def outcome_problem(outcome: Outcome) -> Problem | None:
    """`upload_problem` for what the upload path did with an input."""
    if outcome.verdict in FAILURES:
        return Problem(outcome.verdict, outcome.site, outcome.crash)
    for message in outcome.messages:
        if not message.strip() or "\n" in message:
            return Problem("bad message", "empty or several lines", repr(message))
        leak = PYTHON_INTERNALS.search(message)
        if leak:
            return Problem("bad message", f"Python text {leak.group(0)!r}", repr(message))
    for piece in outcome.pieces:
        problem = piece_problem(piece)
        if problem:
            return Problem("invalid piece", problem.split(":")[0], problem)
    return None


def piece_problem(piece: object) -> str | None:
    """Why a loaded piece is not what the upload page can use (None: it is): a `Piece` within the limits, with a
    pitched note, at most `MAX_SANE_BARS` long, whose melody part can be picked and whose bars can be counted."""
    if not isinstance(piece, Piece):
        return f"not a Piece: {type(piece).__name__}"
    if not 1 <= piece.note_count <= MAX_NOTES or len(piece.parts) > MAX_PARTS:
        return f"beyond the limits: {piece.note_count} notes in {len(piece.parts)} parts"
    if not any(part.notes and not part.is_drum for part in piece.parts):
        return "no pitched note"
    bars = piece.end_beats / piece.time_signature.bar_beats
    if bars > MAX_SANE_BARS:  # checked before `bar_count`, which would take that much memory
        return f"absurdly long: {bars:.3g} bars"
    try:
        piece.only_part(default_melody_part(piece))
        piece.bar_count()
    except Exception as error:  # the finding itself
        return f"unusable piece: {describe_crash(error)}"
    return None


def controls_problem(make: Callable[[], Controls]) -> Problem | None:
    """None when `make()` raises `ControlError` or returns controls whose every field has its declared type and
    whose `as_dict()` is JSON; else the problem."""
    try:
        controls = make()
    except ControlError as error:
        return None if str(error).strip() else Problem("bad message", "empty ControlError", "")
    except Exception as error:  # the finding itself
        return Problem("crash", f"{type(error).__name__} at {where(error)}", describe_crash(error))
    wrong = [f for f in fields(Controls) if not _typed(f, controls)]
    if wrong:
        site = " and ".join(sorted({f"{f.type} field" for f in wrong}))
        return Problem(
            "accepted a wrong type", site, ", ".join(f"{f.name}={getattr(controls, f.name)!r}" for f in wrong)
        )
    try:
        json.dumps(controls.as_dict(), allow_nan=False)
    except (TypeError, ValueError) as error:
        return Problem("not JSON-ready", type(error).__name__, str(error))
    return None


def _typed(field: Field, controls: Controls) -> bool:
    """The value of a `Controls` field is of the type its annotation names (an int, a finite float, a str, None)."""
    annotation, value = str(field.type), getattr(controls, field.name)
    if value is None:
        return "None" in annotation
    if isinstance(value, bool):
        return False
    if "int" in annotation:
        return isinstance(value, int)
    if "float" in annotation:
        return isinstance(value, int | float) and math.isfinite(value)
    return isinstance(value, str)


# --- byte mutations (any format) ------------------------------------------------------------------------------------

INTERESTING_BYTES = (0x00, 0x01, 0x7F, 0x80, 0x81, 0xF0, 0xF7, 0xFE, 0xFF)
INTERESTING_INTS = (0, 1, 2, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF)


def _uniform(draw: st.DrawFn, low: int, high: int) -> int:
    """An integer in [low, high], evenly (`st.integers` leans hard towards its bounds: 0 comes ~40% of the time)."""
    return draw(st.sampled_from(range(low, high + 1)))


def _one_in(draw: st.DrawFn, n: int) -> bool:
    """True about once in `n` draws (on the last choice: hypothesis starts from the first ones)."""
    return draw(st.sampled_from(range(n))) == n - 1


def _position(draw: st.DrawFn, data: bytearray) -> int:
    return _uniform(draw, 0, len(data))


def _flip_bit(draw: st.DrawFn, data: bytearray) -> bytearray:
    if data:
        data[_uniform(draw, 0, len(data) - 1)] ^= 1 << draw(st.integers(0, 7))
    return data


def _set_byte(draw: st.DrawFn, data: bytearray) -> bytearray:
    if data:
        data[_uniform(draw, 0, len(data) - 1)] = draw(st.sampled_from(INTERESTING_BYTES) | st.integers(0, 255))
    return data


def _truncate(draw: st.DrawFn, data: bytearray) -> bytearray:
    return data[: _position(draw, data)]


def _delete_range(draw: st.DrawFn, data: bytearray) -> bytearray:
    start = _position(draw, data)
    del data[start : start + draw(st.integers(1, 64))]
    return data


def _insert_bytes(draw: st.DrawFn, data: bytearray) -> bytearray:
    start = _position(draw, data)
    data[start:start] = draw(st.binary(min_size=1, max_size=32))
    return data


def _duplicate_range(draw: st.DrawFn, data: bytearray) -> bytearray:
    start = _position(draw, data)
    piece = data[start : start + draw(st.integers(1, 256))]
    target = _position(draw, data)
    data[target:target] = piece * draw(st.integers(1, 8))
    return data


def _overwrite_int(draw: st.DrawFn, data: bytearray) -> bytearray:
    size = draw(st.sampled_from((1, 2, 4)))
    if len(data) >= size:
        start = _uniform(draw, 0, len(data) - size)
        value = draw(st.sampled_from(INTERESTING_INTS)) % 256**size
        data[start : start + size] = value.to_bytes(size, "big")
    return data


Mutation = Callable[[st.DrawFn, bytearray], bytearray]
BYTE_MUTATIONS: tuple[Mutation, ...] = (
    _flip_bit,
    _set_byte,
    _truncate,
    _delete_range,
    _insert_bytes,
    _duplicate_range,
    _overwrite_int,
)


@st.composite
def mutated(
    draw: st.DrawFn, base: st.SearchStrategy[bytes], mutations: tuple[Mutation, ...] = BYTE_MUTATIONS, keep: int = 0
) -> bytes:
    """`base` bytes after one to six mutations drawn from `mutations`, then with their first `keep` bytes put back
    (a format's magic number only tells the format: keeping it lets the mutations reach the parsers)."""
    original = draw(base)
    data = bytearray(original)
    for mutation in draw(st.lists(st.sampled_from(mutations), min_size=1, max_size=6)):
        data = mutation(draw, data)
    return original[:keep] + bytes(data[keep:])


# --- MIDI -----------------------------------------------------------------------------------------------------------


def _vlq(value: int) -> bytes:
    """A MIDI variable-length quantity (7 bits a byte, high bit set on all but the last)."""
    out = [value & 0x7F]
    while value > 0x7F:
        value >>= 7
        out.append(0x80 | (value & 0x7F))
    return bytes(reversed(out))


@functools.cache
def _midi_seeds() -> tuple[bytes, ...]:
    """Valid MIDI files: a format-1 song written by MuseGen, and a format-0 track with running status, sysex and
    every meta event the reader looks at."""
    events = b"".join(
        [
            b"\x00\xff\x03\x04Lead",  # track name
            b"\x00\xff\x51\x03\x07\xa1\x20",  # tempo 120
            b"\x00\xff\x58\x04\x03\x02\x18\x08",  # 3/4
            b"\x00\xff\x59\x02\x02\x01",  # B minor
            b"\x00\xf0\x05\x7e\x7f\x09\x01\xf7",  # GM on (sysex)
            b"\x00\xc0\x49",  # flute
            b"\x00\x90\x3c\x50",
            b"\x60\x3e\x50",  # running status
            b"\x00\x3c\x00",
            b"\x60\x40\x50\x00\x3e\x00",
            b"\x00\x99\x24\x64\x30\x24\x00",  # a drum
            b"\x60\x80\x40\x40",
            b"\x00\xff\x2f\x00",
        ]
    )
    format0 = b"MThd\x00\x00\x00\x06\x00\x00\x00\x01\x00\x60" + b"MTrk" + len(events).to_bytes(4, "big") + events
    return piece_to_midi(_song()), format0


def _song() -> Piece:
    """Two parts with a pickup, a chord, triplets, a tie-length note and a drum part."""
    lead = (
        Note(67, 0.0, 1.0),
        *(Note(69 + i, 1 + i / 3, 1 / 3) for i in range(3)),
        Note(72, 2.0, 3.5),
        Note(76, 2.0, 3.5),
        Note(74, 5.5, 0.5),
    )
    drums = tuple(Note(36 + 2 * (i % 2), i * 0.5, 0.25) for i in range(8))
    parts = (Part("Flute", lead, program=73), Part("Kit", drums, is_drum=True))
    return Piece(parts, tempo_bpm=96.0, time_signature=TimeSignature(3, 4), key=Key(7, "major"), title="Song")


def _chunk_offsets(data: bytearray) -> list[int]:
    """Where each chunk (MThd, MTrk, …) starts, following the declared lengths from the start of the file."""
    offsets, position = [], 0
    while position + 8 <= len(data):
        offsets.append(position)
        position += 8 + int.from_bytes(data[position + 4 : position + 8], "big")
    return offsets


def _track_offsets(data: bytearray) -> list[int]:
    return [offset for offset in _chunk_offsets(data) if data[offset : offset + 4] == b"MTrk"]


def _lie_about_a_chunk_length(draw: st.DrawFn, data: bytearray) -> bytearray:
    offsets = _chunk_offsets(data)
    if offsets:
        offset = draw(st.sampled_from(offsets))
        true_length = int.from_bytes(data[offset + 4 : offset + 8], "big")
        lie = draw(
            st.sampled_from((0, 1, true_length - 1, true_length + 1, 2 * true_length)) | st.integers(0, 2**32 - 1)
        )
        data[offset + 4 : offset + 8] = (lie % 2**32).to_bytes(4, "big")
    return data


def _rewrite_a_header_field(draw: st.DrawFn, data: bytearray) -> bytearray:
    """Format, track count or division (ticks per beat; the top bit set means SMPTE timing) set to any 16 bits."""
    if len(data) >= 14:
        start = draw(st.sampled_from((8, 10, 12)))
        value = draw(st.sampled_from((0, 1, 2, 3, 0x7FFF, 0x8000, 0xE728, 0xFFFF)) | st.integers(0, 0xFFFF))
        data[start : start + 2] = value.to_bytes(2, "big")
    return data


@functools.cache
def _midi_event() -> st.SearchStrategy[bytes]:
    """Raw track events, many of them lying: huge or overlong delta times, meta events whose length does not match
    their data, a sysex without its end, an end of track mid-track, data bytes relying on running status."""
    delta = st.sampled_from((b"\x00", b"\x8f\xff\xff\x7f", b"\xff\xff\xff\xff\x7f", b"\x81\x00")) | st.integers(
        0, 0x0FFFFFFF
    ).map(_vlq)
    meta = st.builds(
        lambda kind, length, payload: b"\xff" + bytes([kind]) + _vlq(length) + payload,
        st.sampled_from((0x00, 0x01, 0x03, 0x20, 0x21, 0x2F, 0x51, 0x54, 0x58, 0x59, 0x7F)) | st.integers(0, 0xFF),
        st.integers(0, 0x0FFFFFFF) | st.integers(0, 8),
        st.binary(max_size=12),
    )
    sysex = st.builds(
        lambda length, payload: b"\xf0" + _vlq(length) + payload, st.integers(0, 300), st.binary(max_size=12)
    )
    channel_message = st.builds(
        lambda status, data: bytes([status]) + data, st.integers(0x80, 0xFF), st.binary(min_size=0, max_size=3)
    )
    running = st.binary(min_size=1, max_size=2).map(lambda data: bytes(b & 0x7F for b in data))
    return st.builds(bytes.__add__, delta, st.one_of(meta, sysex, channel_message, running))


def _insert_an_event(draw: st.DrawFn, data: bytearray) -> bytearray:
    """An event from `_midi_event` inside a track; the track's length is corrected unless the draw says not to."""
    tracks = _track_offsets(data)
    if not tracks:
        return data
    offset = draw(st.sampled_from(tracks))
    length = int.from_bytes(data[offset + 4 : offset + 8], "big")
    position = offset + 8 + _uniform(draw, 0, min(length, len(data) - offset - 8))
    event = draw(_midi_event())
    data[position:position] = event
    if draw(st.booleans()):
        data[offset + 4 : offset + 8] = ((length + len(event)) % 2**32).to_bytes(4, "big")
    return data


def _drop_a_status_byte(draw: st.DrawFn, data: bytearray) -> bytearray:
    """Delete one channel-message status byte, so its data bytes read as running status of the event before."""
    tracks = _track_offsets(data)
    if not tracks:
        return data
    offset = draw(st.sampled_from(tracks))
    length = int.from_bytes(data[offset + 4 : offset + 8], "big")
    body = range(offset + 8, min(offset + 8 + length, len(data)))
    statuses = [i for i in body if 0x80 <= data[i] <= 0xEF]
    if statuses:
        del data[draw(st.sampled_from(statuses))]
        data[offset + 4 : offset + 8] = max(length - 1, 0).to_bytes(4, "big")
    return data


def _repeat_a_track(draw: st.DrawFn, data: bytearray) -> bytearray:
    """Append copies of one track (up to 300 tracks) and set the header's track count, to the truth or not."""
    tracks = _track_offsets(data)
    if not tracks or len(data) < 14:
        return data
    offset = draw(st.sampled_from(tracks))
    chunk = data[offset : offset + 8 + int.from_bytes(data[offset + 4 : offset + 8], "big")]
    copies = draw(st.integers(1, 300))
    data += chunk * copies
    count = draw(st.just(len(tracks) + copies) | st.integers(0, 0xFFFF))
    data[10:12] = (count % 0x10000).to_bytes(2, "big")
    return data


MIDI_MUTATIONS: tuple[Mutation, ...] = (
    *BYTE_MUTATIONS,
    _lie_about_a_chunk_length,
    _rewrite_a_header_field,
    _insert_an_event,
    _insert_an_event,
    _drop_a_status_byte,
    _repeat_a_track,
)
MIDI_KEYS = ("C", "A", "Cb", "C#", "Gb", "F#", "Am", "A#m", "Ebm", "Abm")


@functools.cache
def _mido_message() -> st.SearchStrategy[mido.Message | mido.MetaMessage | list[mido.Message]]:
    """Any message mido can write, with values across their whole ranges (tempo 0, meter 0/256, delta 2^28 − 1),
    or a note (`_note_pair`)."""
    time = st.integers(0, 960) | st.integers(0, 0x0FFFFFFF)
    channel, data7 = st.integers(0, 15), st.integers(0, 127)

    def message(kind: str, **values: st.SearchStrategy[object]) -> st.SearchStrategy[mido.Message]:
        return st.builds(functools.partial(mido.Message, kind), time=time, **values)

    def meta(kind: str, **values: st.SearchStrategy[object]) -> st.SearchStrategy[mido.MetaMessage]:
        return st.builds(functools.partial(mido.MetaMessage, kind), time=time, **values)

    return st.one_of(
        _note_pair(time),
        _note_pair(time),
        message("note_on", channel=channel, note=data7, velocity=data7),
        message("note_off", channel=channel, note=data7, velocity=data7),
        message("program_change", channel=channel, program=data7),
        message("control_change", channel=channel, control=data7, value=data7),
        message("pitchwheel", channel=channel, pitch=st.integers(-8192, 8191)),
        message("sysex", data=st.lists(data7, max_size=16)),
        meta("set_tempo", tempo=st.integers(0, 0xFFFFFF)),
        meta(
            "time_signature",
            numerator=st.integers(0, 255),
            denominator=st.integers(0, 10).map(lambda power: 2**power),
            clocks_per_click=st.integers(0, 255),
            notated_32nd_notes_per_beat=st.integers(0, 255),
        ),
        meta("key_signature", key=st.sampled_from(MIDI_KEYS)),
        meta("track_name", name=st.text(st.characters(max_codepoint=0xFF), max_size=40)),
        meta("end_of_track"),
        st.builds(
            mido.UnknownMetaMessage,
            type_byte=st.sampled_from((0x51, 0x58, 0x59, 0x2F, 0x03, 0x60)),
            data=st.lists(st.integers(0, 255), max_size=8).map(tuple),
            time=time,
        ),
    )


@st.composite
def _note_pair(draw: st.DrawFn, time: st.SearchStrategy[int]) -> list[mido.Message]:
    """A note: its note-on and, after any delta time, its note-off (or a note-on of velocity 0)."""
    channel, note = draw(st.integers(0, 15)), draw(st.integers(0, 127))
    on = mido.Message("note_on", channel=channel, note=note, velocity=draw(st.integers(1, 127)), time=draw(time))
    off_kind = draw(st.sampled_from(("note_off", "note_on")))
    return [on, mido.Message(off_kind, channel=channel, note=note, velocity=0, time=draw(time))]


@st.composite
def mido_files(draw: st.DrawFn) -> bytes:
    """A MIDI file written by mido from generated messages: format 0, 1 or 2, up to 4 tracks (sometimes the last
    one repeated up to 80 times), any ticks per beat."""
    file_type = draw(st.sampled_from((0, 1, 2)))
    events = st.lists(_mido_message(), max_size=30)
    tracks = draw(st.lists(events, min_size=1, max_size=1 if file_type == 0 else 4))
    if file_type and _one_in(draw, 10):
        tracks += [tracks[-1]] * draw(st.integers(60, 80))
    ticks = draw(st.sampled_from((1, 24, 96, 480, 960, 0x7FFF)) | st.integers(1, 0x7FFF))
    midi = mido.MidiFile(type=file_type, ticks_per_beat=ticks)
    for track in tracks:
        midi.tracks.append(
            mido.MidiTrack(m for event in track for m in (event if isinstance(event, list) else [event]))
        )
    buffer = io.BytesIO()
    midi.save(file=buffer)
    return buffer.getvalue()


def midi_uploads() -> st.SearchStrategy[Upload]:
    """Generated MIDI files, mutations of them and of valid seeds (bit flips, truncation, lying chunk lengths and
    header fields, huge delta times, meta events with lying lengths, dropped status bytes, hundreds of tracks)."""
    valid = mido_files() | st.sampled_from(_midi_seeds())
    data = st.one_of(mido_files(), mutated(valid, MIDI_MUTATIONS, keep=4))
    return st.builds(Upload, data, st.sampled_from(("fuzz.mid", "fuzz.midi", "fuzz.kar")))


# --- MusicXML ---------------------------------------------------------------------------------------------------------

NUMERIC_TAGS = (
    "duration", "divisions", "octave", "alter", "beats", "beat-type", "fifths", "staff", "staves", "voice",
    "actual-notes", "normal-notes", "midi-program", "midi-channel", "per-minute", "step",
)  # fmt: skip
ABSURD_NUMBERS = (
    "0", "-1", "-0", "1e308", "1e309", "-1e309", "nan", "inf", "99999999999999999999999999", "0.0000001", "1/3", "",
    " ", "٣", "abc", "1,5", "0x10", "2147483648", "-2147483649", "1e-320", "H",
)  # fmt: skip
ATTRIBUTES = ("number", "type", "tempo", "dynamics", "implicit", "id", "size", "default-x", "print-object")
MAX_TREE_ELEMENTS = 30_000  # enough for more notes than MuseGen reads (20,000), small enough to generate quickly
TAGS = ("note", "rest", "chord", "measure", "part", "backup", "forward", "grace", "tie", "pitch", "time", "attributes")
XML_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
ENTITY_DECLARATIONS = (
    '<!DOCTYPE score-partwise [<!ENTITY a "aaaaaaaaaa">]>',
    '<!DOCTYPE score-partwise [<!ENTITY x SYSTEM "file:///etc/passwd">]>',
    '<!DOCTYPE score-partwise [<!ENTITY % p SYSTEM "http://example.invalid/p.dtd"> %p;]>',
    '<!DOCTYPE score-partwise [<!ENTITY a "a"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
    '<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]>',
    '<!DOCTYPE score-partwise PUBLIC "-//Recordare//DTD MusicXML 4.0 Partwise//EN" "http://www.musicxml.org/dtd">',
)


@functools.cache
def _musicxml_seeds() -> tuple[bytes, ...]:
    """Valid MusicXML: the hand-written waltz (pickup, tie, grace note, chord, percussion) and MuseGen's export of
    a two-part song (triplets, chord, drums)."""
    return (DATA / "waltz.musicxml").read_bytes(), piece_to_musicxml(_song())


def _pick(draw: st.DrawFn, root: ET.Element, tags: tuple[str, ...] = ()) -> tuple[ET.Element, ET.Element] | None:
    """A (parent, child) pair of the tree, the child preferably one of `tags`."""
    pairs = [(parent, child) for parent in root.iter() for child in parent]
    preferred = [pair for pair in pairs if pair[1].tag in tags] or pairs
    return draw(st.sampled_from(preferred)) if preferred else None


def _absurd_number(draw: st.DrawFn, root: ET.Element) -> None:
    pair = _pick(draw, root, NUMERIC_TAGS)
    if pair:
        pair[1].text = draw(st.sampled_from(ABSURD_NUMBERS) | st.integers().map(str) | st.floats().map(repr))


def _odd_attribute(draw: st.DrawFn, root: ET.Element) -> None:
    pair = _pick(draw, root)
    if pair:
        pair[1].set(draw(st.sampled_from(ATTRIBUTES)), draw(st.sampled_from(ABSURD_NUMBERS) | XML_TEXT))


def _delete_element(draw: st.DrawFn, root: ET.Element) -> None:
    pair = _pick(draw, root, draw(st.sampled_from((TAGS, ()))))
    if pair:
        pair[0].remove(pair[1])


def _duplicate_element(draw: st.DrawFn, root: ET.Element) -> None:
    """Up to 50 copies of an element, as long as the tree stays under `MAX_TREE_ELEMENTS` elements."""
    pair = _pick(draw, root, draw(st.sampled_from((TAGS, ()))))
    if pair:
        parent, child = pair
        room = (MAX_TREE_ELEMENTS - sum(1 for _ in root.iter())) // sum(1 for _ in child.iter())
        index = list(parent).index(child)
        for _ in range(min(draw(st.integers(1, 50)), room)):
            parent.insert(index, copy.deepcopy(child))


def _move_element(draw: st.DrawFn, root: ET.Element) -> None:
    pair, target = _pick(draw, root), _pick(draw, root)
    if pair and target and pair[1] is not target[1] and pair[1] not in target[1].iter():
        pair[0].remove(pair[1])
        target[1].append(pair[1])


def _rename_element(draw: st.DrawFn, root: ET.Element) -> None:
    pair = _pick(draw, root)
    if pair:
        pair[1].tag = draw(st.sampled_from(TAGS))


def _unicode_text(draw: st.DrawFn, root: ET.Element) -> None:
    pair = _pick(draw, root)
    if pair:
        pair[1].text = draw(XML_TEXT)


TREE_MUTATIONS = (
    _absurd_number,
    _absurd_number,
    _odd_attribute,
    _delete_element,
    _duplicate_element,
    _move_element,
    _rename_element,
    _unicode_text,
)


def _declare_entities(draw: st.DrawFn, xml: bytes) -> bytes:
    declaration = draw(st.sampled_from(ENTITY_DECLARATIONS)).encode()
    body = xml.split(b"?>", 1)[-1]
    reference = draw(st.sampled_from((b"", b"&a;", b"&c;", b"&x;")))
    return b'<?xml version="1.0"?>' + declaration + body.replace(b"<step>", b"<step>" + reference, 1)


def _nest_deeply(draw: st.DrawFn, xml: bytes) -> bytes:
    """Thousands of nested elements at a tag boundary (written as text: ElementTree serialises recursively)."""
    tag = draw(st.sampled_from((b"x", b"note", b"measure", b"part", b"chord")))
    depth = _uniform(draw, 10, 20_000)
    starts = [match.start() for match in re.finditer(rb"<(?![?!/])", xml)]
    at = draw(st.sampled_from(starts)) if starts else len(xml)
    return xml[:at] + (b"<" + tag + b">") * depth + (b"</" + tag + b">") * depth + xml[at:]


def _reencode(draw: st.DrawFn, xml: bytes) -> bytes:
    """The same document as UTF-16 (with a BOM), as Latin-1 saying so, or claiming an encoding that does not exist."""
    text = xml.decode("utf-8").split("?>", 1)[-1]
    encoding = draw(st.sampled_from(("utf-16", "latin-1", "x-no-such-encoding")))
    declaration = f'<?xml version="1.0" encoding="{encoding}"?>'
    if encoding == "utf-16":
        return (declaration + text).encode("utf-16")
    return (declaration + text).encode("latin-1", errors="replace")


TEXT_MUTATIONS = (_declare_entities, _nest_deeply, _reencode)


@st.composite
def musicxml_documents(draw: st.DrawFn) -> bytes:
    """A seed's tree after up to eight tree mutations (absurd numbers, deleted/duplicated/moved/renamed elements,
    unicode text), then maybe entity declarations, deep nesting or another encoding, then maybe byte mutations."""
    root = ET.fromstring(draw(st.sampled_from(_musicxml_seeds())))
    if draw(st.booleans()):
        root.tag = "score-timewise" if root.tag == "score-partwise" else root.tag
    for mutation in draw(st.lists(st.sampled_from(TREE_MUTATIONS), max_size=8)):
        mutation(draw, root)
    xml = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    for mutation in draw(st.lists(st.sampled_from(TEXT_MUTATIONS), max_size=1)):
        xml = mutation(draw, xml)
    return draw(st.just(xml) | mutated(st.just(xml)))


def musicxml_uploads() -> st.SearchStrategy[Upload]:
    return st.builds(Upload, musicxml_documents(), st.sampled_from(("fuzz.musicxml", "fuzz.xml")))


# --- compressed MusicXML (.mxl) ---------------------------------------------------------------------------------------

MEMBER_NAMES = (
    "mimetype", "META-INF/container.xml", "score.musicxml", "score.xml", "other.xml", "../escape.xml",
    "/absolute.xml", "C:drive.xml", "dir\\back.xml", "META-INF/", "folder/", "ünïcode.musicxml", "a" * 300 + ".xml",
)  # fmt: skip
MXL_MIMETYPE = b"application/vnd.recordare.musicxml"
COMPRESSIONS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA)
CONTAINER = (
    '<?xml version="1.0"?><container{ns}><rootfiles><rootfile full-path="{path}" media-type="{media}"/>'
    "</rootfiles></container>"
)


@st.composite
def _container(draw: st.DrawFn) -> bytes:
    """META-INF/container.xml: pointing at any member name (or none), namespaced or not, or broken."""
    path = draw(st.sampled_from((*MEMBER_NAMES, "missing.xml", "")) | XML_TEXT.map(lambda t: re.sub(r'[<&"]', "", t)))
    ns = draw(st.sampled_from(("", ' xmlns="urn:oasis:names:tc:opendocument:xmlns:container"')))
    media = draw(st.sampled_from(("application/vnd.recordare.musicxml+xml", "image/png", "")))
    proper = CONTAINER.format(ns=ns, path=path, media=media).encode()
    return draw(
        st.sampled_from(
            (
                proper,
                proper.replace(b"?>", b"?>" + ENTITY_DECLARATIONS[0].encode(), 1),
                proper[: len(proper) // 2],
                b"<container><rootfiles><rootfile/></rootfiles></container>",
            )
        )
    )


def _set_zip_flags(data: bytearray, local: int, central: int, value: int) -> bytearray:
    """Write a 2-byte field into every local (`local` offset) and central (`central` offset) header."""
    for signature, offset in ((b"PK\x03\x04", local), (b"PK\x01\x02", central)):
        for match in re.finditer(re.escape(signature), bytes(data)):
            field_at = match.start() + offset
            if field_at + 2 <= len(data):
                data[field_at : field_at + 2] = struct.pack("<H", value)
    return data


def _encrypted(draw: st.DrawFn, data: bytearray) -> bytearray:
    return _set_zip_flags(data, 6, 8, 0x0001)  # general-purpose bit 0: encrypted


def _unknown_method(draw: st.DrawFn, data: bytearray) -> bytearray:
    return _set_zip_flags(data, 8, 10, draw(st.sampled_from((1, 6, 9, 12, 14, 97, 99, 0xFFFF))))


ZIP_MUTATIONS: tuple[Mutation, ...] = (*BYTE_MUTATIONS, _encrypted, _unknown_method)


@st.composite
def mxl_archives(draw: st.DrawFn) -> bytes:
    """A zip holding, two times in three, the usual mimetype, container and score, plus up to five odd members
    (odd names, a container pointing anywhere, bytes, another score); any compression per member; now and then
    over a hundred members or one that unpacks to megabytes of zeros; then maybe flagged encrypted, given an
    unknown compression method, or mutated."""
    score = draw(st.sampled_from(_musicxml_seeds()) | musicxml_documents())
    members = [] if _one_in(draw, 3) else [("mimetype", MXL_MIMETYPE), ("META-INF/container.xml", draw(_container()))]
    members += [(draw(st.sampled_from(MEMBER_NAMES)), score)]
    names = st.sampled_from(MEMBER_NAMES) | XML_TEXT.map(lambda name: name[:20])
    members += draw(st.lists(st.tuples(names, _container() | st.binary(max_size=64) | st.just(score)), max_size=5))
    if _one_in(draw, 20):
        members.append(("zeros.xml", b"\0" * 1_500_000))
    if _one_in(draw, 20):
        members += [(f"extra{i}.txt", b"x") for i in range(_uniform(draw, 95, 130))]
    buffer = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(buffer, "w") as archive:
        warnings.simplefilter("ignore")  # duplicate member names are part of the test
        for name, data in draw(st.permutations(members)):
            info = zipfile.ZipInfo(name.replace("\0", "") or "unnamed")
            archive.writestr(info, data, compress_type=draw(st.sampled_from(COMPRESSIONS)))
    archive_bytes = buffer.getvalue()
    return draw(st.just(archive_bytes) | mutated(st.just(archive_bytes), ZIP_MUTATIONS, keep=4))


def mxl_uploads() -> st.SearchStrategy[Upload]:
    return st.builds(Upload, mxl_archives(), st.just("fuzz.mxl"))


# --- ABC --------------------------------------------------------------------------------------------------------------

ABC_FIELDS = {
    "X": ("1", "0", "-1", "99999999999999999999", "", "x"),
    "T": ("Tune", "", "ünïcødé 曲", "T" * 500),
    "M": ("4/4", "3/4", "6/8", "C", "C|", "none", "0/4", "4/0", "0/0", "-3/4", "99999/1", "1/99999", "2+3/8",
          "(2+3)/8", "abc", "4/4/4", "1e9/4", "", "7/32", "65/4"),
    "L": ("1/8", "1/4", "1/16", "1/0", "0/8", "1/99999999", "x", "1/3", "-1/8", "", "1", "3/7"),
    "Q": ("1/4=120", "1/4=0", "1/4=-5", "1/4=1e309", "1/4=99999999999", '"Allegro"', "3/8=999999", "120", "1/0=60",
          "ca. 80", "1/4=nan", "1/4=", "=", "1/4 3/8=100"),
    "K": ("C", "G", "Dmaj", "Am", "Bbmix", "F#dor", "E phrygian", "H", "Zb", "C clef=treble", "none", "HP", "Hp",
          "c#m", "K", "", "C transpose=999999", "Eb minor ^f _b", "exp _b _e ^f", "Cb", "Gbmaj",
          "C clef=bass octave=-99"),
    "V": ("1", "2 clef=bass", "", "99999"),
    "R": ("reel", ""),
    "I": ("linebreak $", "abc-charset utf-8"),
}  # fmt: skip
ABC_SYMBOLS = (
    "|", "||", "|]", "[|", "|:", ":|", "::", "[1", "[2", "|1", ":|2", "(3", "(9:2:99", "(0", "(1:0:0", "(99999",
    "(3::", "-", ">", "<", ">>", "<<<", "[CEG]", "[C]2", "[]", "[CEG", "{g}", "{/gag}", "{}", "!trill!", "!unknown!",
    "!", "~", ".", "T", "H", '"^text"', '"Am7"', '"', "[M:0/4]", "[L:1/0]", "[K:Zb]", "[Q:1/4=0]", "[V:2]", "[I:x]",
    "(", ")", "\\", "%comment", "y", " ", "\t", "&", "$", "*", "+trill+", "+", "`", "Z4", "Z999999", "z", "x8",
)  # fmt: skip
ABC_LENGTHS = ("", "", "2", "3", "/", "//", "/////", "3/2", "0", "99999999", "/0", "3//", "1/64", "128", "2/3", "-1")


@st.composite
def _abc_note(draw: st.DrawFn) -> str:
    accidental = draw(st.sampled_from(("", "", "^", "^^", "_", "__", "=", "^^^^", "_=^")))
    letter = draw(st.sampled_from("CDEFGABcdefgabzxyJ"))
    octave = draw(st.sampled_from(",'")) * draw(st.integers(0, 3) | st.integers(0, 60))
    return accidental + letter + octave + draw(st.sampled_from(ABC_LENGTHS))


@functools.cache
def _abc_token() -> st.SearchStrategy[str]:
    printable = st.characters(exclude_categories=("Cs", "Cc"))  # control characters: see `abc_files`
    return st.one_of(_abc_note(), _abc_note(), st.sampled_from(ABC_SYMBOLS), st.text(printable, max_size=4))


def _abc_field(draw: st.DrawFn, name: str) -> str:
    """A header field line: half the time the usual value, else any of `ABC_FIELDS` (absurd ones included)."""
    return f"{name}:{draw(st.just(ABC_FIELDS[name][0]) | st.sampled_from(ABC_FIELDS[name]))}"


@st.composite
def _abc_tune(draw: st.DrawFn) -> str:
    """A tune: X: (usually), header fields (M: and L: half the time) in any order, K: (usually last), then music
    lines — sometimes one line repeating a token thousands of times."""
    names = draw(st.lists(st.sampled_from(sorted(set(ABC_FIELDS) - {"X", "K"})), max_size=6))
    lines = [_abc_field(draw, name) for name in (["M", "L"] if draw(st.booleans()) else []) + names]
    if not _one_in(draw, 10):
        lines.insert(0, _abc_field(draw, "X"))
    if not _one_in(draw, 10):
        lines.insert(len(lines) if draw(st.booleans()) else _uniform(draw, 0, len(lines)), _abc_field(draw, "K"))
    for _ in range(draw(st.integers(0, 8))):
        lines.append("".join(draw(st.lists(_abc_token(), max_size=24))))
    if _one_in(draw, 10):
        lines.append(_long_line(draw))
    return "\n".join(lines)


def _long_line(draw: st.DrawFn) -> str:
    token = draw(st.sampled_from(("z", "|", "z2|", "C", "[CEG]", "(3CDE", "-", "!trill!")))
    return token * _uniform(draw, 100, 20_000)


@st.composite
def _plausible_abc_tune(draw: st.DrawFn) -> str:
    """A tune as people write them (usual header, plain notes, bars, ties, chords, tuplets), with one odd thing in
    half of them: a header field with an absurd value, an odd token, or a very long line."""
    header = ["X:1", "T:Fuzz", *(f"{name}:{draw(st.sampled_from(ABC_FIELDS[name][:4]))}" for name in "MLK")]
    note = st.builds(
        "".join,
        st.tuples(
            st.sampled_from(("", "^", "_", "=")),
            st.sampled_from("CDEFGABcdefgabz"),
            st.sampled_from(("", "", ",", "'")),
            st.sampled_from(("", "", "2", "3", "/", "3/2", "4")),
        ),
    )
    symbol = st.sampled_from(("|", "|", "-", "[CEG]", "(3", "|:", ":|", " ", "[1", "[2", '"G"', "~", ">"))
    music = ["".join(draw(st.lists(note | symbol, min_size=1, max_size=32))) for _ in range(draw(st.integers(1, 6)))]
    lines = header + music
    if draw(st.booleans()):
        odd = st.sampled_from([f"{name}:{value}" for name, values in ABC_FIELDS.items() for value in values])
        extra = draw(odd | _abc_token() | st.builds(_long_line_text, st.data()))
        lines.insert(_uniform(draw, 2, len(lines)), extra)
    return "\n".join(lines)


def _long_line_text(data: st.DataObject) -> str:
    return _long_line(data.draw)


@st.composite
def abc_files(draw: st.DrawFn) -> bytes:
    """One to three tunes (plausible or wild), maybe after file-header fields, with a control character now and
    then, encoded as UTF-8, UTF-16 or Latin-1."""
    header = [_abc_field(draw, name) for name in draw(st.lists(st.sampled_from("MLQK"), max_size=2))]
    tunes = draw(st.lists(_plausible_abc_tune() | _abc_tune(), min_size=1, max_size=3))
    text = "\n".join([*header, *tunes])
    if _one_in(draw, 10):
        at = _uniform(draw, 0, len(text))
        text = text[:at] + draw(st.sampled_from("\x00\x01\x07\x0c\x1b\x7f\x85\u2028")) + text[at:]
    encoding = draw(st.sampled_from(("utf-8", "utf-8", "utf-16", "latin-1")))
    return text.encode(encoding, errors="replace")


def abc_uploads() -> st.SearchStrategy[Upload]:
    return st.builds(Upload, abc_files(), st.just("fuzz.abc"))


UPLOADS: dict[str, Callable[[], st.SearchStrategy[Upload]]] = {
    "midi": midi_uploads,
    "musicxml": musicxml_uploads,
    "mxl": mxl_uploads,
    "abc": abc_uploads,
}


# --- controls ---------------------------------------------------------------------------------------------------------

CONTROL_NAMES = tuple(f.name for f in fields(Controls))
WEIRD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from((10**400, -(10**400), 2**63, 2**31, 2**31 - 1, -1, 0)),
    st.floats(),
    st.sampled_from((math.nan, math.inf, -math.inf, 1e308, -0.0, 5e-324)),
    st.text(max_size=12),
    st.binary(max_size=8),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.complex_numbers(),
    st.fractions(),
    st.decimals(),
    st.sampled_from(
        (np.float64("nan"), np.float32(1.5), np.int64(8), np.int8(-1), np.bool_(True), np.uint64(2**64 - 1))
    ),
    st.just(np.array([1.0])),
    st.just(Fraction(10**400, 3)),
)
SENSIBLE = {
    "bars": st.integers(1, 64),
    "seed": st.integers(0, 2**31 - 1),
    "low": st.integers(43, 60),
    "high": st.integers(70, 96),
    "style": st.sampled_from(("irish", "german")),
    "mix_style": st.sampled_from(("irish", "german")),
    "key": st.sampled_from(PITCH_NAMES),
    "mode": st.sampled_from(sorted(SCALES)),
    "tempo_bpm": st.floats(20, 300),
    "temperature": st.floats(0.05, 5),
    "style_strength": st.floats(0, 4),
}


def control_values() -> st.SearchStrategy[dict[str, object]]:
    """Some of `Controls`' fields, each a value in its range or anything at all (nan, 10**400, a list, numpy…)."""
    values = {name: SENSIBLE.get(name, st.floats(-1, 1)) | WEIRD_VALUES for name in CONTROL_NAMES}
    return st.fixed_dictionaries({}, optional=values)  # type: ignore[arg-type]


def any_mapping() -> st.SearchStrategy[dict[object, object]]:
    return st.dictionaries(
        st.sampled_from(CONTROL_NAMES) | st.text(max_size=8) | st.integers(), WEIRD_VALUES, max_size=4
    )


def control_strings() -> st.SearchStrategy[dict[str, str]]:
    """A URL query: known names (and `mood`) or any text, each with any text or a telling number-like string."""
    telling = st.sampled_from(
        ("nan", "inf", "-inf", "1e400", "1_000", "0x10", " 8 ", "８", "1e-400", "-0", "", "None", "9" * 5000, "true")
    )
    text = telling | st.sampled_from((*MOODS, *PITCH_NAMES, *SCALES)) | st.text(max_size=12) | st.integers().map(str)
    return st.dictionaries(st.sampled_from((*CONTROL_NAMES, "mood")) | st.text(max_size=8), text, max_size=5)


CONTROL_CHECKS: dict[str, tuple[Callable[[], st.SearchStrategy[dict]], Callable[[dict], Controls]]] = {
    "Controls(**values)": (control_values, lambda values: Controls(**values)),
    "Controls.from_dict": (any_mapping, Controls.from_dict),
    "controls_from_strings": (control_strings, controls_from_strings),
}


# --- regression files -------------------------------------------------------------------------------------------------


def regression_problem(path: Path) -> Problem | None:
    """Replay one file of tests/data/fuzz: an upload (by its extension), or, in a `.literal` file, a Python literal
    `{"check": <a name of CONTROL_CHECKS>, "values": {...}}` (read with `ast.literal_eval`: data, never code)."""
    if path.suffix != ".literal":
        return upload_problem(Upload(path.read_bytes(), path.name))
    case = ast.literal_eval(path.read_text(encoding="utf-8"))
    make = CONTROL_CHECKS[case["check"]][1]
    return controls_problem(lambda: make(case["values"]))


# --- tests ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("loader", sorted(UPLOADS))
def test_uploads_load_or_refuse(loader: str) -> None:
    @CI_SETTINGS
    @given(UPLOADS[loader]())
    def check(upload: Upload) -> None:
        assert upload_problem(upload) is None

    check()


@pytest.mark.parametrize("name", sorted(CONTROL_CHECKS))
def test_controls_validate_or_refuse(name: str) -> None:
    strategy, make = CONTROL_CHECKS[name]

    @CI_SETTINGS
    @given(strategy())
    def check(values: dict) -> None:
        assert controls_problem(lambda: make(values)) is None

    check()


@pytest.mark.parametrize("path", sorted(REGRESSIONS.glob("*.*")), ids=lambda p: p.name)
def test_regression_file(path: Path) -> None:
    assert regression_problem(path) is None


def _with_style(style: object) -> Controls:
    controls = Controls()
    object.__setattr__(controls, "style", style)  # past validation, as a lax check would let it through
    return controls


def test_the_properties_catch_what_they_look_for() -> None:
    assert controls_problem(lambda: _with_style(5)) == Problem("accepted a wrong type", "str | None field", "style=5")
    assert controls_problem(lambda: _with_style(b"x")).kind == "accepted a wrong type"  # type: ignore[union-attr]
    assert controls_problem(lambda: {}["x"]).kind == "crash"  # type: ignore[union-attr]
    assert controls_problem(lambda: Controls(bars=0)) is None
    assert piece_problem(Piece(())) == "beyond the limits: 0 notes in 0 parts"
    assert upload_problem(Upload(_midi_seeds()[1], "seed.mid")) is None


def test_time_limit_stops_a_hang_and_restores_the_outer_timer() -> None:
    outer = signal.getsignal(signal.SIGALRM)
    with pytest.raises(Hang), time_limit(0.05):
        while True:
            pass
    assert signal.getsignal(signal.SIGALRM) is outer
