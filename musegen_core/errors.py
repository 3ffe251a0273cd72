"""One family of errors, raised where data enters, each with a message fit to show a user."""

from __future__ import annotations


class MusegenError(Exception):
    """Base class: the message is one human-readable line (no traceback needed to act on it)."""


class FormatError(MusegenError):
    """An uploaded or given file cannot be read as music."""


class CheckpointError(MusegenError):
    """A model checkpoint is missing, malformed or does not match its config."""


class RenderError(MusegenError):
    """Audio could not be rendered (SoundFont or synthesiser problem)."""


class SoundFontError(RenderError):
    """A SoundFont is not installed, not allowed on this server, too large, or not a well-formed SF2/SF3 file."""


class ControlError(MusegenError):
    """A generation control (bars, temperature, seed, ...) is out of range."""


class StoreError(MusegenError):
    """The feedback database could not be read or written."""
