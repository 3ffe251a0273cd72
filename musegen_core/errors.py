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


class WorkerError(MusegenError):
    """A worker process (`workers`) ran out of time or memory, crashed, was killed or sent back something
    unacceptable; it was stopped, and the next job gets a fresh one.

    `reason` says which: "timeout", "cpu" (time), "memory", "crash" (a signal or an unexpected exit), "killed"
    (SIGKILL from outside MuseGen), "garbled" (an answer refused), "failed" (an unexpected exception in the job),
    "start" (no worker could be started) or "config" (a limit in the environment is not valid).
    """

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason


class ParseWorkerError(WorkerError, FormatError):
    """The worker reading an uploaded file failed (a `FormatError` too: the file could not be read)."""


class RenderWorkerError(WorkerError, RenderError):
    """The worker rendering audio failed (a `RenderError` too)."""


class GenerateWorkerError(WorkerError):
    """The worker generating a take failed."""
