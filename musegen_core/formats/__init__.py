"""Uploaded music files → `Piece`: MIDI, MusicXML (`.musicxml`/`.xml`/`.mxl`) and ABC.

Typical use (what the upload page does)::

    music_file = open_music_file(uploaded.getvalue(), uploaded.name)   # cheap: sniffs the format, lists tunes
    piece = music_file.load(tune_index)                                 # parses one tune
    melody = piece.only_part(default_melody_part(piece))

Every failure is a `FormatError` whose message is one line saying what is wrong and what to do.

These functions parse in the calling process. Bytes from outside (uploads, files given to the CLI) are read through
`musegen_core.workers.open_untrusted` / `load_untrusted`, which run them in a killable worker process.

XML safety: entity declarations (billion laughs, external entities) are refused before any XML parser runs
(`formats.musicxml`), and MusicXML is read only where Python's expat is at least `EXPAT_MIN_VERSION` (2.4.1, the first
with expat's own limits on entity amplification), checked at import: with an older expat, MusicXML uploads are
refused and a warning is logged.
"""

from __future__ import annotations

import logging
import pyexpat
import re
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import PurePath

from musegen_core.errors import FormatError
from musegen_core.formats.abc import abc_tune_to_piece, decode_abc, split_tunes
from musegen_core.formats.midi import MAX_NOTES, MAX_PARTS, check_length, midi_to_piece, piece_to_midi
from musegen_core.formats.musicxml import musicxml_bytes, musicxml_title, musicxml_to_piece
from musegen_core.music import Part, Piece, pitch_name

__all__ = [
    "MAX_NOTES",
    "MAX_PARTS",
    "MAX_UPLOAD_BYTES",
    "UPLOAD_EXTENSIONS",
    "MusicFile",
    "check_upload_size",
    "default_melody_part",
    "describe_part",
    "expat_is_safe",
    "load_piece",
    "midi_to_piece",
    "open_music_file",
    "piece_to_midi",
]

MAX_UPLOAD_BYTES = 2 * 1024 * 1024  # a long melody is a few KB; a 2 MB MIDI file already holds ~100k notes
MIDI_EXTENSIONS = (".mid", ".midi", ".kar")
MUSICXML_EXTENSIONS = (".musicxml", ".xml", ".mxl")
ABC_EXTENSIONS = (".abc",)
UPLOAD_EXTENSIONS = tuple(ext.lstrip(".") for ext in (*MIDI_EXTENSIONS, *MUSICXML_EXTENSIONS, *ABC_EXTENSIONS))
UPLOAD_HINT = "Upload a .mid, .musicxml/.mxl or .abc file."
EXPAT_MIN_VERSION = (2, 4, 1)
MIN_MELODY_NOTES = 4
# Part names that announce a melody line (matched at the start of a word, case-insensitive).
_MELODY_NAME = re.compile(
    r"\b(melod|lead|vocal|voice|vox|singer|soprano|solo|flute|piccolo|violin|fiddle|oboe|clarinet|trumpet|sax"
    r"|recorder|whistle|tune)",
    re.IGNORECASE,
)
log = logging.getLogger("musegen.formats")


def expat_is_safe(version_info: tuple[int, int, int]) -> bool:
    """True when an expat of this version limits entity amplification itself (2.4.1 or later)."""
    return tuple(version_info) >= EXPAT_MIN_VERSION


EXPAT_SAFE = expat_is_safe(pyexpat.version_info)
if not EXPAT_SAFE:
    log.warning("%s is older than 2.4.1: MusicXML uploads are refused until it is updated", pyexpat.EXPAT_VERSION)


@dataclass(frozen=True)
class MusicFile:
    """An uploaded file whose format is known; `load` parses it (one tune of a multi-tune ABC file at a time)."""

    format: str  # "midi" | "musicxml" | "abc"
    filename: str
    tune_titles: tuple[str, ...]  # one entry per tune; more than one only for multi-tune ABC files
    data: bytes = field(default=b"", repr=False, compare=False)  # the file's bytes, as uploaded

    def load(self, tune_index: int = 0) -> Piece:
        """Parse tune `tune_index` (0-based) into a `Piece` with at least one pitched note.

        A piece without a title of its own is titled after its tune (`tune_titles[tune_index]`).

        Raises:
            FormatError: the index is out of range, the file cannot be read, it is longer than `MAX_PIECE_BEATS`,
                or it holds no pitched notes.
        """
        if not 0 <= tune_index < len(self.tune_titles):
            raise FormatError(
                f"{self.filename} holds {len(self.tune_titles)} tune(s); tune index {tune_index} does not exist "
                f"(choose 0 to {len(self.tune_titles) - 1})."
            )
        try:
            piece = _LOADERS[self.format](self.data, tune_index)
        except FormatError:
            raise
        except Exception as error:  # boundary: any library failure becomes a FormatError (details in the log)
            log.info("reading %s failed", self.filename, exc_info=True)
            raise FormatError(
                f"MuseGen could not read {self.filename}: it is damaged or not what its name says. {UPLOAD_HINT}"
            ) from error
        check_length(piece)
        piece = _with_pitched_notes(piece, self.filename)
        return piece if piece.title else replace(piece, title=self.tune_titles[tune_index])


def open_music_file(data: bytes, filename: str) -> MusicFile:
    """Recognise an uploaded file by its content and extension and list its tunes (parses no music yet).

    Content wins over the extension for MIDI (`MThd`), `.mxl` (zip) and XML; otherwise the extension decides.

    Raises:
        FormatError: empty, larger than `MAX_UPLOAD_BYTES`, unknown extension, or content that does not match it.
    """
    check_upload_size(data, filename)
    file_format = _sniff_format(data, filename)
    stem = PurePath(filename).stem or filename
    if file_format == "abc":
        titles = tuple(tune.title for tune in split_tunes(decode_abc(data)))
    elif file_format == "musicxml":
        _require_safe_expat()
        titles = (musicxml_title(musicxml_bytes(data)) or stem,)
    else:
        titles = (stem,)
    return MusicFile(format=file_format, filename=filename, tune_titles=titles, data=data)


def check_upload_size(data: bytes, filename: str) -> None:
    """Refuse an empty file, or one larger than `MAX_UPLOAD_BYTES`, with a `FormatError`."""
    if not data:
        raise FormatError(f"{filename} is empty (0 bytes). {UPLOAD_HINT}")
    if len(data) > MAX_UPLOAD_BYTES:
        raise FormatError(
            f"{filename} is {len(data) / 2**20:.1f} MB; MuseGen accepts files up to {MAX_UPLOAD_BYTES / 2**20:g} MB."
        )


def load_piece(data: bytes, filename: str, tune_index: int = 0) -> Piece:
    """`open_music_file(data, filename).load(tune_index)` in one call."""
    return open_music_file(data, filename).load(tune_index)


def _sniff_format(data: bytes, filename: str) -> str:
    extension = PurePath(filename).suffix.lower()
    if extension and extension not in (*MIDI_EXTENSIONS, *MUSICXML_EXTENSIONS, *ABC_EXTENSIONS):
        raise FormatError(f"MuseGen cannot read {extension} files. {UPLOAD_HINT}")
    if data.startswith(b"MThd"):
        return "midi"
    if data.startswith(b"PK\x03\x04") or _looks_like_xml(data):
        return "musicxml"
    if extension in MIDI_EXTENSIONS:
        raise FormatError(f"This file is not a MIDI file (it does not start with MThd). {UPLOAD_HINT}")
    if extension == ".mxl":
        raise FormatError(f"This file is not a compressed MusicXML file (it is not a zip archive). {UPLOAD_HINT}")
    if extension in MUSICXML_EXTENSIONS:
        raise FormatError(f"This file is not MusicXML (it does not start with an XML tag). {UPLOAD_HINT}")
    return "abc"


def _looks_like_xml(data: bytes) -> bool:
    """True when the first non-blank character is "<" (UTF-8, with or without BOM, or UTF-16 with a BOM)."""
    head = data[:256]
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return head.decode("utf-16", errors="ignore").lstrip().startswith("<")
    return head.removeprefix(b"\xef\xbb\xbf").lstrip().startswith(b"<")


def _load_midi(data: bytes, tune_index: int) -> Piece:
    return midi_to_piece(data)


def _load_musicxml(data: bytes, tune_index: int) -> Piece:
    _require_safe_expat()
    return musicxml_to_piece(data)


def _require_safe_expat() -> None:
    if not EXPAT_SAFE:
        raise FormatError(
            f"This server cannot read MusicXML safely: its XML parser ({pyexpat.EXPAT_VERSION}) is older than 2.4.1. "
            "Upload a MIDI or ABC file, or ask the administrator to update expat (libexpat1)."
        )


def _load_abc(data: bytes, tune_index: int) -> Piece:
    return abc_tune_to_piece(split_tunes(decode_abc(data))[tune_index])


_LOADERS: dict[str, Callable[[bytes, int], Piece]] = {
    "midi": _load_midi,
    "musicxml": _load_musicxml,
    "abc": _load_abc,
}


def _with_pitched_notes(piece: Piece, filename: str) -> Piece:
    """`piece` itself, or a `FormatError` when it holds no pitched (non-drum) note."""
    if any(part.notes and not part.is_drum for part in piece.parts):
        return piece
    if piece.note_count:
        raise FormatError(f"{filename} holds only drum notes; MuseGen needs a pitched melody to continue.")
    raise FormatError(f"{filename} holds no notes. Upload a file that contains a melody.")


def default_melody_part(piece: Piece) -> int:
    """Index of the part most likely to carry the melody, for preselecting the part picker.

    Heuristic, in order:
      1. candidates are the non-drum parts with at least `MIN_MELODY_NOTES` notes (else any non-drum part with
         notes; else part 0);
      2. a candidate whose name announces a melody ("Melody", "Lead", "Vocals", "Flute", "Violin"...) beats one
         whose name does not;
      3. then the highest top line wins: the median of the highest pitch sounding at each onset;
      4. then the part with more notes.
    """
    parts = piece.parts
    pitched = [i for i, part in enumerate(parts) if part.notes and not part.is_drum]
    candidates = [i for i in pitched if len(parts[i].notes) >= MIN_MELODY_NOTES] or pitched
    if not candidates:
        return 0
    return max(
        candidates,
        key=lambda i: (bool(_MELODY_NAME.search(parts[i].name)), _top_line_median(parts[i]), len(parts[i].notes)),
    )


def _top_line_median(part: Part) -> float:
    """Median MIDI pitch of the part's top line (highest pitch at each onset)."""
    top: dict[float, int] = {}
    for note in part.notes:
        top[note.start_beats] = max(top.get(note.start_beats, 0), note.pitch)
    return float(statistics.median(top.values()))


def describe_part(part: Part) -> str:
    """A short label for a part picker, e.g. "Violin — 123 notes, G4–E6" or "Drums — 40 notes, drums"."""
    count = len(part.notes)
    if count == 0:
        return f"{part.name} — no notes"
    notes = f"{count} note{'s' if count != 1 else ''}"
    if part.is_drum:
        return f"{part.name} — {notes}, drums"
    low, high = min(n.pitch for n in part.notes), max(n.pitch for n in part.notes)
    return f"{part.name} — {notes}, {pitch_name(low)}–{pitch_name(high)}"
