"""Content hashes of files: checkpoints, resume points, the style classifier and feedback exports all name their
bytes by sha256. Kept apart so light modules (the feedback export) need not import torch to use it."""

from __future__ import annotations

import hashlib
from pathlib import Path


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def bytes_sha256(data: bytes) -> str:
    """Hex sha256 of bytes in memory (e.g. an upload, to tell two files of the same name apart)."""
    return hashlib.sha256(data).hexdigest()
