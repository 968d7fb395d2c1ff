"""File identity: the SHA-256 of a file's bytes (teacher weights, checkpoints, engines).

The one definition; ``inspector.model.teachers.sha256_file``, ``inspector.engine.manifest.sha256_file``
and ``inspector.model.checkpoint.file_sha256`` are this function under their old names.
"""

from __future__ import annotations

import hashlib
from pathlib import Path


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
