"""Image file sources: a list of files, an image folder, an MVTec AD-layout test set.

Files are read by :func:`inspector.core.images.read_image` (the reader every part of inspector
uses: truncated PNG/JPEG refused, 16-bit ``>> 8``, mono8 / bgr8); the MVTec folders are found by
:mod:`inspector.core.dataset_layout`. A file the reader refuses is skipped with a warning and
counted in ``source.skipped``.
"""

from __future__ import annotations

import logging
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

from inspector.core import dataset_layout
from inspector.core.images import DatasetError, read_image
from inspector.line.source_base import BaseSource, SourceError, SourceFrame

__all__ = ["FileEntry", "FileListSource", "image_folder_source", "interleave_kinds", "mvtec_source"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FileEntry:
    """One file of a :class:`FileListSource`: its path, label (or None) and ``source`` name."""

    path: Path
    label: str | None
    name: str


class FileListSource(BaseSource):
    """Yields image files in the given order; with ``loop`` repeats the list forever.

    Files that :func:`inspector.core.images.read_image` refuses (unreadable, truncated,
    unsupported pixels) are skipped with a warning, counted once in ``skipped`` and left out of
    later passes. A pass that yields nothing ends the iteration (no busy loop).
    """

    def __init__(self, entries: Sequence[FileEntry], *, loop: bool = False, description: str = "") -> None:
        super().__init__()
        if not entries:
            raise SourceError(f"no images in {description or 'the file list'}")
        self.entries = list(entries)
        self.loop = loop
        self.description = description or f"{len(self.entries)} image files"
        self._bad: set[int] = set()

    def __iter__(self) -> Iterator[SourceFrame]:
        while not self.closed:
            yielded = 0
            for index, entry in enumerate(self.entries):
                if self.closed:
                    return
                if index in self._bad:
                    continue
                try:
                    image, pixel_format = read_image(entry.path)
                except DatasetError as exc:
                    self._bad.add(index)
                    self.skipped += 1
                    log.warning("skipping %s: %s", entry.path, exc)
                    continue
                yielded += 1
                yield SourceFrame(image, pixel_format, entry.label, entry.name, time.time_ns())
            if not self.loop:
                return
            if yielded == 0:
                log.warning("%s: no readable image in a whole pass; stopping", self.description)
                return


def image_folder_source(folder: str | os.PathLike, *, loop: bool = False) -> FileListSource:
    """Images directly in ``folder`` (sorted by name); ``label`` None, ``source`` = file name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SourceError(f"image folder {folder} does not exist")
    entries = [FileEntry(p, None, p.name) for p in dataset_layout.list_images(folder)]
    return FileListSource(entries, loop=loop, description=f"image folder {folder}")


def interleave_kinds(files_by_kind: dict[str, list[Path]], seed: int | None = None) -> list[tuple[str, Path]]:
    """Order MVTec test files so that a stream shows a mix of kinds.

    Without ``seed``: a deterministic proportional interleave; the i-th of n files of a kind is
    placed at (i + 0.5) / n of the stream (ties by kind name), so every kind is spread evenly.
    With ``seed``: a ``random.Random(seed)`` shuffle of all files (reproducible).
    Files within a kind are taken in name order.
    """
    pairs = [(kind, path) for kind in sorted(files_by_kind) for path in sorted(files_by_kind[kind])]
    if seed is not None:
        random.Random(seed).shuffle(pairs)
        return pairs
    keyed = []
    for kind in sorted(files_by_kind):
        files = sorted(files_by_kind[kind])
        keyed += [((i + 0.5) / len(files), kind, path) for i, path in enumerate(files)]
    keyed.sort(key=lambda k: (k[0], k[1], k[2].name))
    return [(kind, path) for _, kind, path in keyed]


def mvtec_source(root: str | os.PathLike, *, loop: bool = False, seed: int | None = None,
                 split: str = "test") -> FileListSource:
    """An MVTec AD-layout category (``root/<split>/<kind>/*.png``) as a labelled stream.

    ``label`` = kind ("good", "crack", ...), ``source`` = "<kind>/<file>"; order by
    :func:`interleave_kinds`. Raises :class:`SourceError` when ``root/<split>`` is missing or empty.
    """
    if not dataset_layout.has_split(root, split):
        raise SourceError(f"{root} is not an MVTec AD-layout folder: {Path(root) / split} does not exist")
    ordered = interleave_kinds(dataset_layout.files_by_kind(root, split), seed)
    entries = [FileEntry(path, kind, f"{kind}/{path.name}") for kind, path in ordered]
    return FileListSource(entries, loop=loop, description=f"MVTec {split} set {root}")
