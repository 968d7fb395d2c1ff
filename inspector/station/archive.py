"""The reject archive on disk: entry folders with their files, indexed by SQLite.

Layout (docs/station.md)::

    ARCHIVE/
      index.sqlite                  the index (WAL): entries, counters, events, meta
      entries/YYYYMMDD/NAME/        one folder per entry: entry.json + its files
        entry.json                  the verdict, what made it, and each file's size and SHA-256
        original.png                the camera's pixels, lossless (absent when the tap lost the frame)
        map.png, overlay.jpg, thumb.jpg
      tmp/                          entries being written (emptied at open)

Crash safety, the order of every write (:meth:`Archive.add`, :meth:`Archive.add_many`): files are
written into ``tmp/``, each fsynced, then the folder is renamed into ``entries/`` (atomic on one file system) and the parent
fsynced, and only then is the index row committed (a transaction). An entry is *acknowledged* once
its row is committed. At open, :meth:`Archive.recover` removes everything in ``tmp/`` and every
entry folder without a row: after a kill -9 at any point there is no half entry and no row that
points at something missing. Deletions go the other way (row first, then the folder).

Limits (:meth:`Archive.enforce_limits`): a disk quota and a retention time; the oldest entries go
first, each deletion counted (``deleted_quota``, ``deleted_age``). Room is made before a write, so
the entries' bytes (files + entry.json) never exceed the quota. A write that would leave less
than ``min_free_bytes`` free on the disk is refused (:class:`ArchiveFull`), so the archive never fills it.

Loaders refuse what they do not understand: an index of another ``ARCHIVE_FORMAT`` is refused at
open; a file whose SHA-256 differs from its entry's record makes the entry *corrupt*
(:meth:`Archive.verify`): reported, counted, flagged in the index and skipped by readers.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import sqlite3
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from inspector import __version__

log = logging.getLogger("inspector.archive")

ARCHIVE_FORMAT = 1
INDEX = "index.sqlite"
ENTRY_JSON = "entry.json"
DEFAULT_MIN_FREE_BYTES = 256 * 2**20
FIELDS = ("camera", "seq", "part_id", "capture_ns", "decided_ns", "decision", "reason", "score", "threshold",
          "defect_area_px", "label")

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS entries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    camera TEXT NOT NULL, seq INTEGER NOT NULL, part_id TEXT NOT NULL,
    capture_ns INTEGER NOT NULL, decided_ns INTEGER NOT NULL, archived_ns INTEGER NOT NULL,
    decision TEXT NOT NULL, reason TEXT NOT NULL, score REAL, threshold REAL, defect_area_px INTEGER, label TEXT,
    dir TEXT NOT NULL UNIQUE, bytes INTEGER NOT NULL, files TEXT NOT NULL,
    false_reject INTEGER NOT NULL DEFAULT 0, marked_by TEXT, marked_ns INTEGER,
    corrupt TEXT
);
CREATE INDEX IF NOT EXISTS entries_camera ON entries (camera, capture_ns);
CREATE INDEX IF NOT EXISTS entries_decision ON entries (decision, capture_ns);
CREATE INDEX IF NOT EXISTS entries_reason ON entries (reason, capture_ns);
CREATE INDEX IF NOT EXISTS entries_time ON entries (capture_ns);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY AUTOINCREMENT, t_ns INTEGER NOT NULL, user TEXT NOT NULL,
                                   kind TEXT NOT NULL, detail TEXT NOT NULL);
"""


class ArchiveError(RuntimeError):
    """The archive cannot be used (another format, an unreadable index)."""


class ArchiveFull(ArchiveError):
    """Writing would leave less than the archive's ``min_free_bytes`` free on the disk."""


class CorruptEntry(ArchiveError):
    """An entry's file is missing or differs from its recorded SHA-256."""


@dataclass(frozen=True)
class Entry:
    """One index row. ``files``: name -> {"bytes", "sha256"}; ``corrupt``: why, or None."""

    id: int
    camera: str
    seq: int
    part_id: str
    capture_ns: int
    decided_ns: int
    archived_ns: int
    decision: str
    reason: str
    score: float | None
    threshold: float | None
    defect_area_px: int | None
    label: str | None
    dir: str
    bytes: int
    files: dict[str, dict[str, Any]]
    false_reject: bool
    marked_by: str | None
    marked_ns: int | None
    corrupt: str | None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> "Entry":
        values = dict(row)
        values["files"] = json.loads(values["files"])
        values["false_reject"] = bool(values["false_reject"])
        return cls(**values)

    def public(self) -> dict[str, Any]:
        """The JSON the operator page gets (file names, no paths)."""
        out = {key: getattr(self, key) for key in ("id", *FIELDS, "archived_ns", "false_reject", "marked_by",
                                                   "marked_ns", "corrupt")}
        out["files"] = sorted(self.files)
        return out


def _safe(text: str) -> str:
    """A camera id as a folder-name part: [A-Za-z0-9._-] kept, anything else as _xx hex."""
    return re.sub(r"[^A-Za-z0-9._-]", lambda m: "".join(f"_{b:02x}" for b in m.group().encode()), text)[:64]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Archive:
    """An archive folder, opened for reading and writing (several processes may open one: SQLite
    serialises the writers). ``quota_bytes`` / ``retention_s``: the limits :meth:`add` keeps."""

    def __init__(self, root: str | Path, *, quota_bytes: int | None = None, retention_s: float | None = None,
                 min_free_bytes: int = DEFAULT_MIN_FREE_BYTES, recover: bool = True) -> None:
        self.root = Path(root)
        self.entries_dir, self.tmp_dir = self.root / "entries", self.root / "tmp"
        for folder in (self.root, self.entries_dir, self.tmp_dir):
            folder.mkdir(parents=True, exist_ok=True)
        self.quota_bytes, self.retention_s, self.min_free_bytes = quota_bytes, retention_s, min_free_bytes
        self.db = sqlite3.connect(self.root / INDEX, timeout=10.0, isolation_level=None, check_same_thread=False)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self._init_schema()
        if recover:
            self.recover()

    # ---------------------------------------------------------------------------------- opening
    def _init_schema(self) -> None:
        with self.transaction():
            for statement in filter(str.strip, SCHEMA.split(";")):
                self.db.execute(statement)
            row = self.db.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
            if row is None:
                self.db.executemany("INSERT INTO meta VALUES (?, ?)", [
                    ("format", str(ARCHIVE_FORMAT)), ("created_by", f"inspector {__version__}"),
                    ("created_ns", str(time.time_ns()))])
            elif row["value"] != str(ARCHIVE_FORMAT):
                raise ArchiveError(f"{self.root}: archive format {row['value']}, this inspector reads "
                                   f"{ARCHIVE_FORMAT}")

    def transaction(self):
        """``with archive.transaction():`` BEGIN IMMEDIATE ... COMMIT (ROLLBACK on an exception)."""
        return _Transaction(self.db)

    def recover(self) -> dict[str, int]:
        """Remove what a crash left: everything in ``tmp/`` and entry folders without an index row
        (never acknowledged). Returns the counts (also logged)."""
        removed_tmp = 0
        for child in list(self.tmp_dir.iterdir()):
            shutil.rmtree(child, ignore_errors=True) if child.is_dir() else child.unlink(missing_ok=True)
            removed_tmp += 1
        indexed = {row[0] for row in self.db.execute("SELECT dir FROM entries")}
        orphans = [d for day in sorted(self.entries_dir.iterdir()) if day.is_dir() for d in day.iterdir()
                   if f"{day.name}/{d.name}" not in indexed]
        for folder in orphans:
            shutil.rmtree(folder, ignore_errors=True)
        if removed_tmp or orphans:
            log.warning("archive recovery: removed %d unfinished write(s) and %d unacknowledged entry folder(s)",
                        removed_tmp, len(orphans))
            self.count("recovered_removed", removed_tmp + len(orphans))
        return {"tmp": removed_tmp, "orphans": len(orphans)}

    def close(self) -> None:
        self.db.close()

    # ---------------------------------------------------------------------------------- writing
    def add(self, fields: dict[str, Any], files: dict[str, bytes], made_by: dict[str, Any]) -> int:
        """Store one entry crash-safely (module docstring) and return its id once acknowledged
        (its row committed); then apply the limits. ``fields``: the verdict (:data:`FIELDS`);
        ``files``: name -> encoded bytes. Raises ArchiveFull, OSError, sqlite3.Error."""
        return self.add_many([(fields, files, made_by)])[0]

    def add_many(self, items: list[tuple[dict[str, Any], dict[str, bytes], dict[str, Any]]]) -> list[int]:
        """Store several entries as one group commit: every file of every entry written, then all
        fsynced, the folders renamed, their parents fsynced once, and all rows committed in one
        transaction (a disk's fsyncs cost the same for one file or many: under a flood this keeps
        up where one entry at a time cannot). All or none are acknowledged; returns their ids."""
        archived_ns = time.time_ns()
        documents = [self._document(fields, files, made_by, archived_ns) for fields, files, made_by in items]
        sizes = [sum(len(d) for d in files.values()) + len(doc) for (_, files, _), (doc, _) in zip(items, documents)]
        if self.quota_bytes is not None and sum(sizes) > self.quota_bytes:
            raise ArchiveFull(f"{self.root}: {sum(sizes)} bytes to write, more than the whole quota")
        if shutil.disk_usage(self.root).free - sum(sizes) < self.min_free_bytes:
            raise ArchiveFull(f"{self.root}: writing {sum(sizes)} bytes would leave less than "
                              f"{self.min_free_bytes} bytes free on the disk")
        self.enforce_limits(incoming=sum(sizes))  # room first: the quota holds at every moment
        staged = [self._stage(fields, files, doc, records) for (fields, files, _), (doc, records) in
                  zip(items, documents)]
        for staging, _, _ in staged:
            for child in staging.iterdir():
                _fsync_file(child)
            _fsync_dir(staging)
        parents = set()
        for staging, relative, _ in staged:
            day_dir = self.entries_dir / relative.split("/")[0]
            if not day_dir.is_dir():
                day_dir.mkdir(exist_ok=True)
                _fsync_dir(self.entries_dir)
            os.rename(staging, self.entries_dir / relative)
            parents.add(day_dir)
        for parent in (*parents, self.tmp_dir):
            _fsync_dir(parent)
        ids = []
        with self.transaction():
            for (fields, _, _), (_, relative, records), size in zip(items, staged, sizes):
                cursor = self.db.execute(
                    f"INSERT INTO entries ({', '.join(FIELDS)}, archived_ns, dir, bytes, files) "
                    f"VALUES ({', '.join('?' * (len(FIELDS) + 4))})",
                    (*(fields.get(k) for k in FIELDS), archived_ns, relative, size, json.dumps(records)))
                ids.append(int(cursor.lastrowid))
        self.enforce_limits()
        return ids

    @staticmethod
    def _document(fields: dict[str, Any], files: dict[str, bytes], made_by: dict[str, Any],
                  archived_ns: int) -> tuple[bytes, dict[str, Any]]:
        """(entry.json's bytes, the file records: name -> size and SHA-256)."""
        records = {key: {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()} for key, data in files.items()}
        document = {"format": ARCHIVE_FORMAT, **{k: fields.get(k) for k in FIELDS}, "archived_ns": archived_ns,
                    "files": records, "made_by": made_by}
        return json.dumps(document, indent=1).encode(), records

    def _stage(self, fields: dict[str, Any], files: dict[str, bytes], document: bytes,
               records: dict[str, Any]) -> tuple[Path, str, dict[str, Any]]:
        """One entry's folder in tmp/ (written, not yet fsynced): (folder, its path under
        entries/, the file records)."""
        day = time.strftime("%Y%m%d", time.gmtime(fields["capture_ns"] / 1e9))
        name = f"{fields['capture_ns']}-{_safe(fields['camera'])}-{fields['seq']}-{uuid.uuid4().hex[:8]}"
        staging = self.tmp_dir / name
        staging.mkdir()
        for key, data in files.items():
            (staging / key).write_bytes(data)
        (staging / ENTRY_JSON).write_bytes(document)
        return staging, f"{day}/{name}", records

    def enforce_limits(self, now_ns: int | None = None, incoming: int = 0) -> dict[str, int]:
        """Delete the oldest entries beyond the retention time, then beyond the quota (making room
        for ``incoming`` more bytes); returns what was deleted now ({"age": n, "quota": m}); the
        totals are counters."""
        deleted = {"age": 0, "quota": 0}
        if self.retention_s is not None:
            cutoff = (now_ns or time.time_ns()) - int(self.retention_s * 1e9)
            while True:
                rows = self.db.execute("SELECT id, dir FROM entries WHERE capture_ns < ? ORDER BY capture_ns, id "
                                       "LIMIT 64", (cutoff,)).fetchall()
                if not rows:
                    break
                deleted["age"] += self._delete(rows, "deleted_age")
        if self.quota_bytes is not None:
            while self.total_bytes() + incoming > self.quota_bytes:
                rows = self.db.execute("SELECT id, dir FROM entries ORDER BY capture_ns, id LIMIT 8").fetchall()
                if not rows:
                    break
                excess = self.total_bytes() + incoming - self.quota_bytes
                chosen, freed = [], 0
                for row in rows:
                    chosen.append(row)
                    freed += self.db.execute("SELECT bytes FROM entries WHERE id = ?", (row["id"],)).fetchone()[0]
                    if freed >= excess:
                        break
                deleted["quota"] += self._delete(chosen, "deleted_quota")
        return deleted

    def _delete(self, rows: list[sqlite3.Row], counter: str) -> int:
        """Rows first (one transaction, counted), then their folders (a crash in between leaves
        orphans, which :meth:`recover` removes)."""
        with self.transaction():
            self.db.executemany("DELETE FROM entries WHERE id = ?", [(row["id"],) for row in rows])
            self._count(counter, len(rows))
        for row in rows:
            shutil.rmtree(self.entries_dir / row["dir"], ignore_errors=True)
        return len(rows)

    # ---------------------------------------------------------------------------------- counters, events
    def _count(self, name: str, n: int) -> None:
        self.db.execute("INSERT INTO counters VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = value + ?",
                        (name, n, n))

    def count(self, name: str, n: int = 1) -> None:
        with self.transaction():
            self._count(name, n)

    def counters(self) -> dict[str, int]:
        return {row["name"]: row["value"] for row in self.db.execute("SELECT name, value FROM counters")}

    def event(self, user: str, kind: str, detail: dict[str, Any]) -> None:
        """An audit record (who did what): logins, acknowledgements, false-reject marks."""
        with self.transaction():
            self.db.execute("INSERT INTO events (t_ns, user, kind, detail) VALUES (?, ?, ?, ?)",
                            (time.time_ns(), user, kind, json.dumps(detail)))

    def events(self, limit: int = 50) -> list[dict[str, Any]]:
        rows = self.db.execute("SELECT * FROM events ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
        return [{**dict(row), "detail": json.loads(row["detail"])} for row in rows]

    # ---------------------------------------------------------------------------------- reading
    def total_bytes(self) -> int:
        return int(self.db.execute("SELECT COALESCE(SUM(bytes), 0) FROM entries").fetchone()[0])

    def __len__(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM entries").fetchone()[0])

    def get(self, entry_id: int) -> Entry | None:
        row = self.db.execute("SELECT * FROM entries WHERE id = ?", (entry_id,)).fetchone()
        return None if row is None else Entry.from_row(row)

    def query(self, *, camera: str | None = None, since_ns: int | None = None, until_ns: int | None = None,
              decision: str | None = None, reason: str | None = None, false_reject: bool | None = None,
              after_id: int | None = None, include_corrupt: bool = False, rejects_only: bool = False,
              limit: int = 100, newest_first: bool = True) -> list[Entry]:
        """Entries by camera, capture-time range [since, until), decision (``rejects_only``: REJECT
        and FAULT), reason, operator mark; ``after_id``: only newer rows (what a live page has not
        seen yet)."""
        where, args = ["decision != 'OK'"] if rejects_only else [], []
        for clause, value in (("camera = ?", camera), ("capture_ns >= ?", since_ns), ("capture_ns < ?", until_ns),
                              ("decision = ?", decision), ("reason = ?", reason), ("id > ?", after_id),
                              ("false_reject = ?", None if false_reject is None else int(false_reject))):
            if value is not None:
                where.append(clause)
                args.append(value)
        if not include_corrupt:
            where.append("corrupt IS NULL")
        sql = "SELECT * FROM entries" + (" WHERE " + " AND ".join(where) if where else "")
        sql += f" ORDER BY id {'DESC' if newest_first else 'ASC'} LIMIT ?"
        return [Entry.from_row(row) for row in self.db.execute(sql, (*args, max(0, int(limit))))]

    def path(self, entry: Entry, name: str) -> Path:
        if name not in entry.files:
            raise KeyError(f"entry {entry.id} has no file {name!r}")
        return self.entries_dir / entry.dir / name

    def read(self, entry: Entry, name: str) -> bytes:
        """The bytes of ``entry``'s file ``name``, checked against its SHA-256. Raises CorruptEntry
        (after flagging the entry) when the file is missing or differs; KeyError for no such file."""
        path = self.path(entry, name)
        try:
            data = path.read_bytes()
        except OSError as exc:
            self.flag_corrupt(entry, f"{name}: {exc.strerror or exc}")
            raise CorruptEntry(f"entry {entry.id}: {name} unreadable: {exc}") from None
        if hashlib.sha256(data).hexdigest() != entry.files[name]["sha256"]:
            self.flag_corrupt(entry, f"{name}: SHA-256 differs from the record")
            raise CorruptEntry(f"entry {entry.id}: {name} differs from its recorded SHA-256")
        return data

    def verify(self, entry: Entry) -> list[str]:
        """Problems with ``entry`` (each file read and hashed); [] = intact. A problem flags it."""
        problems = []
        for name in entry.files:
            try:
                self.read(entry, name)
            except CorruptEntry as exc:
                problems.append(str(exc))
        return problems

    def flag_corrupt(self, entry: Entry, why: str) -> None:
        """Report ``entry`` as corrupt: logged, counted once, flagged (readers skip it)."""
        with self.transaction():
            changed = self.db.execute("UPDATE entries SET corrupt = ? WHERE id = ? AND corrupt IS NULL",
                                      (why, entry.id)).rowcount
            if changed:
                self._count("corrupt_entries", 1)
        if changed:
            log.error("corrupt archive entry %d (%s/%s seq %d): %s; skipped from now on", entry.id, entry.dir,
                      entry.camera, entry.seq, why)

    def check_all(self) -> list[tuple[int, list[str]]]:
        """Verify every entry; [(id, problems)] for the corrupt ones."""
        bad = []
        for row in self.db.execute("SELECT * FROM entries ORDER BY id").fetchall():
            problems = self.verify(Entry.from_row(row))
            if problems:
                bad.append((int(row["id"]), problems))
        return bad

    # ---------------------------------------------------------------------------------- feedback
    def mark_false_reject(self, entry_id: int, user: str) -> Entry:
        """An operator says this REJECT / FAULT was a good part. Idempotent; recorded as an event.
        Raises KeyError (no such entry) or ValueError (an OK entry)."""
        entry = self.get(entry_id)
        if entry is None:
            raise KeyError(f"no archive entry {entry_id}")
        if entry.decision == "OK":
            raise ValueError(f"entry {entry_id} is an OK frame, not a reject")
        if not entry.false_reject:
            with self.transaction():
                self.db.execute("UPDATE entries SET false_reject = 1, marked_by = ?, marked_ns = ? WHERE id = ?",
                                (user, time.time_ns(), entry_id))
                self._count("false_rejects_marked", 1)
            self.event(user, "false_reject", {"entry": entry_id, "camera": entry.camera, "seq": entry.seq})
        return self.get(entry_id)

    def readable(self, entries: Iterable[Entry], name: str) -> list[tuple[Entry, Path]]:
        """(entry, path of its file ``name``) for the entries that have it intact; corrupt ones are
        reported (flagged, logged) and skipped."""
        out = []
        for entry in entries:
            if name in entry.files and not self.verify(entry):
                out.append((entry, self.path(entry, name)))
        return out


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, kind, value, tb) -> None:
        self.db.execute("COMMIT" if kind is None else "ROLLBACK")
