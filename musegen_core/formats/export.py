"""Exports for DAWs and notation programs: a `Piece` as MIDI, MusicXML (`.musicxml`, `.mxl`) or ABC; a music file
converted on the command line (`export_file`); and every take of a session in one zip (`takes_zip`).

Typical use::

    data = export_piece(piece, "musicxml")                       # bytes for a download button
    export_file(Path("tune.abc"), "midi", Path("tune.mid"))      # what `musegen export` runs
    archive = takes_zip([("LSTM take 1", piece_a), ("VAE take 2", piece_b)], wavs=[wav_a, None])
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from musegen_core.errors import FormatError, MusegenError
from musegen_core.formats.abc import piece_to_abc
from musegen_core.formats.midi import piece_to_midi
from musegen_core.formats.musicxml import MUSICXML_MIMETYPE, MXL_MIMETYPE, piece_to_musicxml, piece_to_mxl, zip_bytes
from musegen_core.music import Piece
from musegen_core.workers import load_untrusted

TAKES_FOLDER = "musegen-takes"  # every member of a takes zip lies in this folder, so unzipping makes one folder
_SLUG_LENGTH = 40


@dataclass(frozen=True)
class ExportFormat:
    """One export format: file extension (with the dot), MIME type and writer."""

    extension: str
    mime: str
    write: Callable[[Piece], bytes]


EXPORT_FORMATS: dict[str, ExportFormat] = {
    "midi": ExportFormat(".mid", "audio/midi", piece_to_midi),
    "musicxml": ExportFormat(".musicxml", MUSICXML_MIMETYPE, piece_to_musicxml),
    "mxl": ExportFormat(".mxl", MXL_MIMETYPE, piece_to_mxl),
    "abc": ExportFormat(".abc", "text/vnd.abc", lambda piece: piece_to_abc(piece).encode()),
}


def export_piece(piece: Piece, fmt: str) -> bytes:
    """`piece` written in format `fmt`, one of `EXPORT_FORMATS` ("midi", "musicxml", "mxl", "abc").

    Raises:
        FormatError: an unknown format; ABC for a piece ABC export cannot hold (see `abc.piece_to_abc`: several
            parts, chords, drums, triplets); music21's MusicXML exporter failing.
    """
    return _export_format(fmt).write(piece)


def export_file(path_in: Path, fmt: str, path_out: Path, tune_index: int = 0) -> Piece:
    """Read a music file (MIDI, MusicXML/.mxl or ABC, through `formats.load_piece`), write it to `path_out` in
    format `fmt` ("midi", "musicxml", "mxl" or "abc"), and return the piece written.

    `tune_index` picks the tune of a multi-tune ABC file (from 0). Nothing is written when anything fails.

    Raises:
        FormatError: an unknown format (checked before reading); `path_in` cannot be read, or is not music
            `load_piece` accepts (including a tune index out of range); the piece cannot be written as `fmt`
            (ABC of several parts, chords, drums or triplets).
        MusegenError: `path_out` cannot be written.
    """
    writer = _export_format(fmt).write
    try:
        data = path_in.read_bytes()
    except OSError as error:
        raise FormatError(f"Cannot read {path_in}: {error.strerror or error}.") from error
    piece = load_untrusted(data, path_in.name, tune_index)  # parsed in a killable worker
    exported = writer(piece)
    try:
        path_out.write_bytes(exported)
    except OSError as error:
        raise MusegenError(f"Cannot write {path_out}: {error.strerror or error}.") from error
    return piece


def _export_format(fmt: str) -> ExportFormat:
    if fmt not in EXPORT_FORMATS:
        raise FormatError(f"MuseGen cannot export {fmt!r}; choose one of {', '.join(EXPORT_FORMATS)}.")
    return EXPORT_FORMATS[fmt]


def takes_zip(takes: Sequence[tuple[str, Piece]], wavs: Sequence[bytes | None] = ()) -> bytes:
    """Every take in one zip: per take a MIDI file, a MusicXML file, an ABC file where ABC can hold the take, and
    the WAV bytes the caller rendered (`wavs[i]` for `takes[i]`, None or absent for none); plus README.txt saying
    what is where and manifest.json listing the same for programs.

    Files are named `NN-<label>.<ext>` (NN = 01, 02, ... in take order, the label reduced to lowercase ASCII
    letters, digits and hyphens), so names are unique and sort in take order; all lie in the folder `TAKES_FOLDER`.

    Raises:
        ValueError: more WAVs than takes.
        FormatError: a take cannot be written as MIDI or MusicXML (ABC is skipped, and the README says why).
    """
    if len(wavs) > len(takes):
        raise ValueError(f"got {len(wavs)} WAVs for {len(takes)} takes")
    members: list[tuple[str, bytes]] = []
    entries = []
    for index, (label, piece) in enumerate(takes):
        wav = wavs[index] if index < len(wavs) else None
        files, abc_problem = _take_files(f"{index + 1:02d}-{_slug(label)}", piece, wav)
        members += files
        entries.append(_manifest_entry(label, piece, [name for name, _ in files], abc_problem))
    manifest = {"format": "musegen-takes", "version": 1, "takes": entries}
    members.append(("README.txt", _readme(entries).encode()))
    members.append(("manifest.json", json.dumps(manifest, indent=2, ensure_ascii=False).encode()))
    return zip_bytes((f"{TAKES_FOLDER}/{name}", content) for name, content in members)


def _take_files(stem: str, piece: Piece, wav: bytes | None) -> tuple[list[tuple[str, bytes]], str | None]:
    """A take's `(file name, bytes)` pairs, and why it has no ABC file (None when it has one)."""
    files = [(stem + EXPORT_FORMATS[fmt].extension, export_piece(piece, fmt)) for fmt in ("midi", "musicxml")]
    abc_problem = None
    try:
        files.append((stem + ".abc", export_piece(piece, "abc")))
    except FormatError as error:
        abc_problem = str(error)
    if wav is not None:
        files.append((stem + ".wav", wav))
    return files, abc_problem


def _slug(label: str) -> str:
    """`label` as a file-name part: "Transformer — take 3!" → "transformer-take-3"; "take" when nothing is left."""
    ascii_label = unicodedata.normalize("NFKD", label).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_label.lower()).strip("-")
    return slug[:_SLUG_LENGTH].rstrip("-") or "take"


def _manifest_entry(label: str, piece: Piece, files: list[str], abc_problem: str | None) -> dict[str, object]:
    return {
        "label": label,
        "files": files,
        "abc_skipped": abc_problem,
        "parts": [part.name for part in piece.parts],
        "notes": piece.note_count,
        "bars": piece.bar_count(),
        "time_signature": str(piece.time_signature),
        "tempo_bpm": piece.tempo_bpm,
        "key": piece.key.name if piece.key is not None else None,
        "pickup_beats": piece.pickup_beats,
    }


def _readme(entries: list[dict[str, object]]) -> str:
    lines = [
        "MuseGen takes",
        "",
        "Each take comes as:",
        "  .mid       Standard MIDI file (type 1): a tempo/meter track, then one named track per part - for any DAW.",
        "  .musicxml  MusicXML for notation programs; notes quantised to 16ths and eighth-note triplets.",
        "  .abc       ABC notation, where the take is one melody line in 16th-note rhythms.",
        "  .wav       audio, where it was rendered.",
        "",
    ]
    for entry in entries:
        key = entry["key"] or "no key"
        lines.append(
            f"{entry['label']}: {entry['notes']} notes, {entry['bars']} bars, {entry['time_signature']}, "
            f"{entry['tempo_bpm']:g} BPM, {key}"
        )
        lines += [f"  {name}" for name in entry["files"]]
        if entry["abc_skipped"]:
            lines.append(f"  (no ABC: {entry['abc_skipped']})")
    return "\n".join(lines) + "\n"
