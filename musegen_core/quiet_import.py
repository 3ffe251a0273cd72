"""Import a third-party module whose import prints to stdout.

pyfluidsynth prints "'fluidsynth' was found at ..." on import whenever the `CI` environment variable is set, and
pretty_midi imports pyfluidsynth. On stdout that line would corrupt `musegen check --json`, and on stderr it would
sit above every one-line error message, so such imports are silenced (failures still raise ImportError).
"""

from __future__ import annotations

import contextlib
import importlib
import os
from types import ModuleType


def import_quietly(name: str) -> ModuleType:
    """`importlib.import_module(name)` with anything it prints to stdout discarded."""
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
        return importlib.import_module(name)
