"""Which SoundFonts a render may use, and a structural check of any SoundFont before FluidSynth parses it.

Built-in choices (`installed_soundfonts()` lists those present on this machine):

- ``timgm6mb``: TimGM6mb, 6 MB, bundled with pretty_midi: always there, the default.
- ``fluidr3_gm``: FluidR3 GM, 148 MB (Debian package ``fluid-soundfont-gm``).
- ``musescore_general``: MuseScore General, SF3 (Debian ``musescore-general-soundfont-small``, or the larger
  ``musescore-general-soundfont`` / ``musescore-general-soundfont-lossless``; found through the Debian
  alternatives link ``/usr/share/sounds/sf3/MuseScore_General.sf3``).

A user's own ``.sf2``/``.sf3`` file is refused unless the server sets ``MUSEGEN_ALLOW_USER_SOUNDFONTS=1``:
libfluidsynth's SoundFont parser has had memory-safety bugs (CVE-2021-21417 and later). When allowed, the file
must be at most `MAX_USER_SOUNDFONT_BYTES` and pass `check_soundfont_structure` before FluidSynth sees it.
Every refusal is a `SoundFontError` (a `RenderError`) with a message fit for the user.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import stat
import struct
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO

from musegen_core.errors import SoundFontError

ALLOW_USER_SOUNDFONTS_ENV = "MUSEGEN_ALLOW_USER_SOUNDFONTS"
MAX_USER_SOUNDFONT_BYTES = 64 * 2**20  # 64 MiB: a full GM bank as SF3, or a few good SF2 instruments
SOUNDFONT_SUFFIXES = (".sf2", ".sf3")
DEFAULT_SOUNDFONT_ID = "timgm6mb"
USER_SOUNDFONT_ID = "user"
MAX_INFO_ITEM_BYTES = 65_536  # FluidSynth refuses larger INFO sub-chunks
# The nine "hydra" sub-chunks of `pdta`, in the order FluidSynth reads them, with their record sizes (SF2 spec 7.2).
PDTA_RECORDS = (
    ("phdr", 38),
    ("pbag", 4),
    ("pmod", 10),
    ("pgen", 4),
    ("inst", 22),
    ("ibag", 4),
    ("imod", 10),
    ("igen", 4),
    ("shdr", 46),
)


def _pretty_midi_soundfont() -> Path:
    """The General MIDI SoundFont bundled with pretty_midi (found without importing it: that takes ~0.2 s)."""
    spec = importlib.util.find_spec("pretty_midi")
    folder = Path(spec.origin).parent if spec and spec.origin else Path("pretty_midi-is-not-installed")
    return folder / "TimGM6mb.sf2"


DEFAULT_SOUNDFONT = _pretty_midi_soundfont()


@dataclass(frozen=True)
class SoundFont:
    """A SoundFont a render can use. `id` is a built-in id or `USER_SOUNDFONT_ID`; `label` is for people."""

    id: str
    label: str
    path: Path
    builtin: bool = True

    def identity(self) -> tuple[str, int, int]:
        """(real path, size, modification time): changes when the file is replaced, so caches can tell."""
        try:
            info = self.path.stat()
        except OSError as error:
            raise SoundFontError(f"SoundFont not found: {self.path} ({error.strerror or error})") from error
        return str(self.path.resolve()), info.st_size, info.st_mtime_ns


@dataclass(frozen=True)
class _Builtin:
    id: str
    label: str
    paths: tuple[Path, ...]  # first one present wins
    package: str  # what installs it, for the "not installed" message


_SF2 = Path("/usr/share/sounds/sf2")
_SF3 = Path("/usr/share/sounds/sf3")
_BUILTINS = (
    _Builtin(DEFAULT_SOUNDFONT_ID, "TimGM6mb (small, built in)", (DEFAULT_SOUNDFONT,), "pretty_midi"),
    _Builtin("fluidr3_gm", "FluidR3 GM", (_SF2 / "FluidR3_GM.sf2",), "fluid-soundfont-gm"),
    _Builtin(
        "musescore_general",
        "MuseScore General",
        (_SF3 / "MuseScore_General.sf3", _SF2 / "MuseScore_General.sf2", _SF3 / "MuseScore_General_Lite.sf3"),
        "musescore-general-soundfont-small",
    ),
)
_BUILTIN_BY_ID = {builtin.id: builtin for builtin in _BUILTINS}
BUILTIN_SOUNDFONT_IDS = tuple(_BUILTIN_BY_ID)


def installed_soundfonts() -> tuple[SoundFont, ...]:
    """The built-in SoundFonts present on this machine, default first (looked up on every call: cheap)."""
    found = (_find(builtin) for builtin in _BUILTINS)
    return tuple(soundfont for soundfont in found if soundfont is not None)


def user_soundfonts_allowed() -> bool:
    """True when the server configuration (`MUSEGEN_ALLOW_USER_SOUNDFONTS`) allows users' own SoundFonts."""
    return os.environ.get(ALLOW_USER_SOUNDFONTS_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def resolve_soundfont(choice: str | Path | None = None) -> SoundFont:
    """The SoundFont for `choice`: None → the default; a built-in id; otherwise the path of the user's own file.

    Raises:
        SoundFontError: an unknown id, a built-in one that is not installed, or a user SoundFont that is not
            allowed here, too large or malformed (see `user_soundfont`).
    """
    if choice is None or choice == "":
        choice = DEFAULT_SOUNDFONT_ID
    if isinstance(choice, str) and choice in _BUILTIN_BY_ID:
        builtin = _BUILTIN_BY_ID[choice]
        soundfont = _find(builtin)
        if soundfont is None:
            raise SoundFontError(
                f"the {builtin.label} SoundFont is not installed on this server (package {builtin.package})"
            )
        return soundfont
    if isinstance(choice, str) and Path(choice).suffix.lower() not in SOUNDFONT_SUFFIXES:
        raise SoundFontError(
            f"unknown SoundFont {choice!r}: choose one of {', '.join(BUILTIN_SOUNDFONT_IDS)} "
            "or give the path of a .sf2/.sf3 file"
        )
    return user_soundfont(Path(choice))


def user_soundfont(path: Path, max_bytes: int = MAX_USER_SOUNDFONT_BYTES) -> SoundFont:
    """A user's own SoundFont, after the server's permission, its size and its RIFF structure are checked.

    FluidSynth later opens the file again by its name, so keep users' files where only the server writes (an
    upload saved to a private temporary folder), or a swap between the check and the load goes unseen.

    Raises:
        SoundFontError: user SoundFonts are off (the default), the name does not end in .sf2/.sf3, the file is
            missing, larger than `max_bytes`, or not a well-formed SoundFont.
    """
    if not user_soundfonts_allowed():
        raise SoundFontError(
            "this server does not accept your own SoundFonts; choose an installed one "
            f"(the administrator can allow them with {ALLOW_USER_SOUNDFONTS_ENV}=1)"
        )
    if path.suffix.lower() not in SOUNDFONT_SUFFIXES:
        raise SoundFontError(f"{path.name} is not a SoundFont: the name must end in .sf2 or .sf3")
    check_soundfont_file(path, max_bytes)
    return SoundFont(USER_SOUNDFONT_ID, path.name, path, builtin=False)


def user_soundfont_file(data: bytes, name: str, folder: Path) -> SoundFont:
    """An uploaded SoundFont: written to `folder` (a private one; named by its sha256, so a user cannot choose a
    path) once its size is known to be allowed, then checked like `user_soundfont`.

    Raises:
        SoundFontError: as `user_soundfont`; also before anything is written when the upload is too large.
    """
    if not user_soundfonts_allowed():
        return user_soundfont(Path(name))  # raises the "not accepted here" message
    if len(data) > MAX_USER_SOUNDFONT_BYTES:
        raise SoundFontError(f"{name} is larger than {MAX_USER_SOUNDFONT_BYTES // 2**20} MB, the most accepted here")
    suffix = Path(name).suffix.lower()
    if suffix not in SOUNDFONT_SUFFIXES:
        raise SoundFontError(f"{name} is not a SoundFont: the name must end in .sf2 or .sf3")
    path = folder / f"{hashlib.sha256(data).hexdigest()}{suffix}"
    if not path.exists():
        path.write_bytes(data)
    return replace(user_soundfont(path), label=name)


def check_soundfont_file(path: Path, max_bytes: int | None = MAX_USER_SOUNDFONT_BYTES) -> None:
    """Check that `path` is a regular file of at most `max_bytes` (None: any size) with a sound SF2 structure.

    Opened without blocking and checked through the open descriptor, so a FIFO or device cannot hang or feed it.

    Raises:
        SoundFontError: missing, unreadable, not a regular file, too large or malformed.
    """
    try:
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as error:
        reason = "not found" if isinstance(error, FileNotFoundError) else (error.strerror or str(error))
        raise SoundFontError(f"SoundFont {reason}: {path}") from error
    with os.fdopen(descriptor, "rb") as stream:
        info = os.fstat(stream.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise SoundFontError(f"{path.name} is not a regular file")
        if max_bytes is not None and info.st_size > max_bytes:
            raise SoundFontError(
                f"{path.name} is {info.st_size / 2**20:.1f} MB; SoundFonts may be at most {max_bytes / 2**20:g} MB"
            )
        check_soundfont_structure(stream, info.st_size, path.name)


def check_soundfont_structure(stream: BinaryIO, size: int, name: str = "the file") -> None:
    """Walk the RIFF chunks of a SoundFont (`size` bytes from the start of `stream`) the way FluidSynth reads them.

    Checked: the RIFF header and its 'sfbk' form type; the declared RIFF size equals the file size minus 8 (as
    FluidSynth requires); the LIST chunks INFO, sdta and pdta follow one another in that order, each inside the file
    and tiled by its sub-chunks (no padding between chunks, as FluidSynth reads them; one trailing pad byte is
    allowed); INFO holds a 4-byte 'ifil' of version 2 or 3 and no sub-chunk over 64 KiB; sdta starts with 'smpl';
    pdta holds the nine hydra sub-chunks in order, each a non-zero whole number of records (phdr at least one preset
    plus the terminal record). Only chunk headers and the tiny 'ifil' are read: a 148 MB SoundFont takes ~20 reads.
    Cross-references inside the hydra (bag and generator indices, sample offsets) are left to FluidSynth.

    Why by hand: no maintained Python library validates SF2 structure. The Python SoundFont readers parse with C
    code themselves (tinysoundfont, or FluidSynth again) or are small unmaintained parsers, and none of them
    promises to reject what FluidSynth's parser would trip on; this walk is a few dozen lines of `struct`.

    Raises:
        SoundFontError: the structure is not that of a SoundFont; the message says what is wrong.
    """
    try:
        _walk(_Reader(stream, size))
    except _Malformed as error:
        raise SoundFontError(f"{name} is not a valid SoundFont: {error}") from error


class _Malformed(ValueError):
    """What is wrong with a file's structure (becomes part of a SoundFontError message)."""


class _Reader:
    """Bounds-checked reads of chunk headers from a binary stream of known size."""

    def __init__(self, stream: BinaryIO, size: int) -> None:
        self.stream = stream
        self.size = size

    def read(self, position: int, fmt: str) -> tuple:
        length = struct.calcsize(fmt)
        if position + length > self.size:
            raise _Malformed(f"it ends early (byte {self.size} of at least {position + length})")
        self.stream.seek(position)
        data = self.stream.read(length)
        if len(data) != length:
            raise _Malformed("it ends before its declared size (the file is truncated)")
        return struct.unpack(fmt, data)

    def chunk(self, position: int, end: int) -> tuple[str, int, int]:
        """(id, data start, data end) of the chunk at `position`, which must lie within `end`."""
        if position + 8 > end:
            raise _Malformed(f"a chunk header at byte {position} runs past the end of its container")
        raw_id, length = self.read(position, "<4sI")
        chunk_id = raw_id.decode("latin-1")
        if position + 8 + length > end:
            raise _Malformed(
                f"chunk {chunk_id!r} at byte {position} declares {length} bytes, beyond the end of its container "
                f"(byte {end})"
            )
        return chunk_id, position + 8, position + 8 + length

    def sub_chunks(self, start: int, end: int) -> list[tuple[str, int, int]]:
        """The chunks laid end to end from `start` to `end` (one trailing pad byte allowed)."""
        chunks = []
        position = start
        while end - position > 1:
            chunk = self.chunk(position, end)
            chunks.append(chunk)
            position = chunk[2]
        return chunks


def _walk(reader: _Reader) -> None:
    if reader.size < 12:
        raise _Malformed(f"it is only {reader.size} bytes long")
    riff, declared, form = reader.read(0, "<4sI4s")
    if riff != b"RIFF":
        raise _Malformed("it is not a RIFF file")
    if form != b"sfbk":
        raise _Malformed(f"it is a RIFF file of type {form.decode('latin-1')!r}, not a SoundFont ('sfbk')")
    if declared + 8 != reader.size:
        raise _Malformed(
            f"its header declares {declared + 8} bytes but the file has {reader.size} (truncated or altered)"
        )
    position = 12
    for list_type, check in _LIST_CHECKS:
        chunk_id, start, end = reader.chunk(position, reader.size)
        if chunk_id != "LIST" or end - start < 4:
            raise _Malformed(f"expected the {list_type} LIST chunk at byte {position}, found {chunk_id!r}")
        (found,) = reader.read(start, "<4s")
        if found.decode("latin-1") != list_type:
            raise _Malformed(f"expected the {list_type} LIST chunk at byte {position}, found {found!r}")
        check(reader, reader.sub_chunks(start + 4, end))
        position = end


def _check_info(reader: _Reader, chunks: list[tuple[str, int, int]]) -> None:
    for chunk_id, start, end in chunks:
        if end - start > MAX_INFO_ITEM_BYTES:
            raise _Malformed(f"INFO item {chunk_id!r} is {end - start} bytes (at most {MAX_INFO_ITEM_BYTES})")
    versions = [(start, end) for chunk_id, start, end in chunks if chunk_id == "ifil"]
    if len(versions) != 1 or versions[0][1] - versions[0][0] != 4:
        raise _Malformed("its INFO chunk lacks the 4-byte 'ifil' version")
    major, _minor = reader.read(versions[0][0], "<HH")
    if major not in (2, 3):
        raise _Malformed(f"it is SoundFont version {major}; only 2 (.sf2) and 3 (.sf3) are supported")


def _check_sdta(_reader: _Reader, chunks: list[tuple[str, int, int]]) -> None:
    if not chunks or chunks[0][0] != "smpl":
        raise _Malformed("its sdta chunk holds no 'smpl' sample data")


def _check_pdta(_reader: _Reader, chunks: list[tuple[str, int, int]]) -> None:
    found = [chunk_id for chunk_id, _, _ in chunks]
    expected = [chunk_id for chunk_id, _ in PDTA_RECORDS]
    if found[: len(expected)] != expected:
        raise _Malformed(f"its pdta chunk holds {found} instead of {expected}")
    for (chunk_id, record), (_, start, end) in zip(PDTA_RECORDS, chunks, strict=False):
        minimum = 2 * record if chunk_id == "phdr" else record
        if (end - start) % record or end - start < minimum:
            raise _Malformed(
                f"its {chunk_id!r} chunk is {end - start} bytes, not a whole number (at least {minimum // record}) "
                f"of {record}-byte records"
            )


_LIST_CHECKS: tuple[tuple[str, Callable[[_Reader, list[tuple[str, int, int]]], None]], ...] = (
    ("INFO", _check_info),
    ("sdta", _check_sdta),
    ("pdta", _check_pdta),
)


def _find(builtin: _Builtin) -> SoundFont | None:
    for path in builtin.paths:
        if path.is_file():
            return SoundFont(builtin.id, builtin.label, path)
    return None
