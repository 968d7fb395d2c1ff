"""Operator feedback for the next threshold and model: the false rejects marked on the operator
page, as good parts.

``inspector calibrate --from-archive ARCHIVE`` and ``inspector train --from-archive ARCHIVE`` add
the archived original image of every marked false reject (optionally of one camera) to their good
parts. Each image is read through the archive's SHA-256 check: a corrupt or missing one is reported
and skipped, never used. Entries stored without their frame (the tap lost it) have no original and
are counted as skipped.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from inspector.station.archive import Archive

log = logging.getLogger("inspector.archive")

ORIGINAL = "original.png"


@dataclass
class FalseRejects:
    """The usable originals (paths inside the archive, oldest first) and what was skipped, why."""

    paths: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def describe(self, archive: str | Path) -> str:
        return (f"{len(self.paths)} false reject(s) marked by operators in {archive} taken as good parts"
                + (f"; {len(self.skipped)} skipped ({'; '.join(self.skipped[:3])})" if self.skipped else ""))


def false_reject_images(archive_path: str | Path, camera: str | None = None) -> FalseRejects:
    """Originals of the entries marked as false rejects in the archive at ``archive_path``
    (of ``camera`` only, when given). Raises ArchiveError for a folder that is not an archive."""
    if not (Path(archive_path) / "index.sqlite").is_file():
        from inspector.station.archive import ArchiveError

        raise ArchiveError(f"{archive_path}: not an inspector archive (no index.sqlite)")
    archive = Archive(archive_path, recover=False)
    try:
        found = FalseRejects()
        for entry in archive.query(camera=camera, false_reject=True, include_corrupt=True, limit=1_000_000,
                                   newest_first=False):
            if entry.corrupt:
                found.skipped.append(f"entry {entry.id}: corrupt ({entry.corrupt})")
            elif ORIGINAL not in entry.files:
                found.skipped.append(f"entry {entry.id}: stored without its frame")
            else:
                problems = archive.verify(entry)
                if problems:
                    found.skipped.append(f"entry {entry.id}: {problems[0]}")
                else:
                    found.paths.append(archive.path(entry, ORIGINAL))
        for why in found.skipped:
            log.warning("false reject not used: %s", why)
        return found
    finally:
        archive.close()
