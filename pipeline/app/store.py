"""The dashboard's history: every analysis result, and the pictures kept with it, on disk.

Layout of the data folder (`pipeline.config.data_home()`, outside the repository):

    history.sqlite3          one row per analysis (the result as JSON) and one per kept picture
    files/ab/abcd...ef.jpg   pictures, named by the SHA-256 of their bytes (never by upload name)
    files/.tmp/              pictures being written

Crash safety: a save writes its pictures first (each to `files/.tmp`, fsynced, then renamed into
place, so a picture file is either complete or absent), then inserts the analysis row and its
picture rows in one SQLite transaction. A crash at any point leaves either the whole row or no
row; at worst it leaves picture files no row refers to, which `clean_orphans` (run when a
`Store` opens) deletes. A result is stored once per `settings_key` (a unique index): a second
save of the same key returns the row that is already there.

Concurrency: every change (save, delete, cleanup) runs inside one `BEGIN IMMEDIATE` transaction,
which SQLite serialises across threads and processes. Picture files are only created or deleted
inside such a transaction, so a cleanup never deletes a file a save is about to refer to, and a
delete never removes a file another row still uses. The database is in WAL mode (readers never
wait for the writer) with a busy timeout (writers wait for each other instead of failing).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

from pipeline.config import data_home
from pipeline.errors import StoreError
from pipeline.results import AnalysisResult

DATABASE_FILE = "history.sqlite3"
FILES_DIR = "files"
BUSY_TIMEOUT_S = 30.0
SCHEMA_VERSION = 2
"""1: the first release. 2: pictures.frame is called position, explanation roles renamed, one
row per settings_key."""

ROLES = ("frame", "face", "explanation_face", "explanation_frame")
"""What a kept picture shows: a sampled frame (preview size), one face crop, or a model's
explanation map over a face crop or over its frame."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS analyses (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    settings_key TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    file_name TEXT NOT NULL,
    kind TEXT NOT NULL,
    verdict TEXT NOT NULL,
    fake_probability REAL,
    created TEXT NOT NULL,
    preview_scale REAL NOT NULL,
    result_json TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS analyses_by_settings ON analyses (settings_key);
CREATE INDEX IF NOT EXISTS analyses_by_created ON analyses (created);
CREATE TABLE IF NOT EXISTS pictures (
    analysis_id INTEGER NOT NULL REFERENCES analyses (id) ON DELETE CASCADE,
    role TEXT NOT NULL,
    position INTEGER NOT NULL,
    face INTEGER NOT NULL,
    track INTEGER NOT NULL,
    model TEXT NOT NULL,
    crop_box TEXT NOT NULL,
    file TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS pictures_by_analysis ON pictures (analysis_id);
CREATE INDEX IF NOT EXISTS pictures_by_file ON pictures (file);
"""


def settings_key(sha256: str, kind: str, frames: int, aggregation: str, models: Mapping[str, str]) -> str:
    """What makes two analyses interchangeable: the same bytes, analysed with the same frame
    count, aggregation rule and models (by content hash). An image always has one frame, so its
    frame count does not count."""
    canonical = {
        "sha256": sha256,
        "frames": 1 if kind == "image" else int(frames),
        "aggregation": aggregation,
        "models": dict(sorted(models.items())),
    }
    return hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()


def result_settings_key(result: AnalysisResult) -> str:
    """`settings_key` of a finished result."""
    return settings_key(result.sha256, result.kind, result.frames_requested, result.aggregation, result.models)


@dataclass(frozen=True)
class PictureData:
    """A picture to keep with a result: where it belongs, and its encoded bytes."""

    role: str
    position: int
    """Position of the frame among the sampled frames."""
    face: int
    """Index of the face in that frame's `faces` (-1 for a whole frame)."""
    track: int
    """Person the face belongs to (-1 for a whole frame)."""
    model: str
    """Model a Grad-CAM overlay explains ('' otherwise)."""
    data: bytes
    suffix: str
    """File type, with its dot: '.jpg' or '.png'."""
    crop_box: tuple[int, int, int, int] | None = None
    """For a face crop: the square of the original frame it covers (for Grad-CAM on demand)."""

    @property
    def file(self) -> str:
        """The name the picture is stored under: its content hash."""
        return hashlib.sha256(self.data).hexdigest() + self.suffix


@dataclass(frozen=True)
class Picture:
    """A stored picture; `Store.path(picture)` is its file."""

    role: str
    position: int
    face: int
    track: int
    model: str
    file: str
    crop_box: tuple[int, int, int, int] | None = None


@dataclass(frozen=True)
class Record:
    """One stored analysis."""

    id: int
    result: AnalysisResult
    preview_scale: float
    """Size of the stored frame pictures relative to the original frames."""
    pictures: tuple[Picture, ...]

    def pictures_of(self, role: str) -> list[Picture]:
        """Pictures of one role, in position, face, model order."""
        return [p for p in self.pictures if p.role == role]

    @property
    def summary(self) -> Summary:
        """The record's row in the history list."""
        r = self.result
        return Summary(self.id, r.created, r.file, r.kind, r.verdict, r.fake_probability, r.sha256)


@dataclass(frozen=True)
class Summary:
    """A row of the history list (no result JSON parsed)."""

    id: int
    created: str
    file_name: str
    kind: str
    verdict: str
    fake_probability: float | None
    sha256: str


@dataclass(frozen=True)
class HistoryFilter:
    """Which rows of the history to list; an empty field does not filter."""

    verdicts: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()
    since: date | None = None
    """First day (UTC) included."""
    until: date | None = None
    """Last day (UTC) included."""
    name_contains: str = ""


def _box(value: list[int] | None) -> tuple[int, int, int, int] | None:
    return (value[0], value[1], value[2], value[3]) if value else None


def _day_start(day: date) -> str:
    return datetime.combine(day, time(0), tzinfo=UTC).isoformat(timespec="seconds")


def _upgrade_from_1(connection: sqlite3.Connection) -> None:
    """Schema 1 -> 2, inside the caller's transaction."""
    connection.execute("ALTER TABLE pictures RENAME COLUMN frame TO position")
    connection.execute("UPDATE pictures SET role = 'explanation_face' WHERE role = 'gradcam_face'")
    connection.execute("UPDATE pictures SET role = 'explanation_frame' WHERE role = 'gradcam_frame'")
    # Version 1 could store one settings_key twice (two tabs at once): keep the first row.
    connection.execute("DELETE FROM analyses WHERE id NOT IN (SELECT MIN(id) FROM analyses GROUP BY settings_key)")
    connection.execute("DROP INDEX IF EXISTS analyses_by_settings")


class Store:
    """The history in one data folder. Cheap to create; safe to share between threads."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = (root or data_home()).expanduser()
        self.files_dir = self.root / FILES_DIR
        self.tmp_dir = self.files_dir / ".tmp"
        # Private: the history shows what people analysed.
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        self.database = self.root / DATABASE_FILE
        with closing(self._connect()) as connection:
            # WAL is a property of the database file: set once, kept by every later connection.
            connection.execute("PRAGMA journal_mode=WAL")
        with self._write() as connection:
            version = connection.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"the history in {self.root} was written by a newer version of this app (schema "
                    f"{version}; this one reads up to {SCHEMA_VERSION}); update the app or set "
                    "DEEPFAKE_DATA_HOME to another folder"
                )
            if version == 1:
                _upgrade_from_1(connection)
            # Statement by statement: executescript would commit this transaction first.
            for statement in filter(str.strip, _SCHEMA.split(";")):
                connection.execute(statement)
            connection.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        self.clean_orphans()

    # -- connections ---------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        # A connection per operation: sqlite3 connections must not cross threads, and Streamlit
        # runs every browser session in its own thread.
        connection = sqlite3.connect(self.database, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        connection.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
        connection.execute("PRAGMA foreign_keys=ON")
        connection.row_factory = sqlite3.Row
        return connection

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, holding SQLite's write lock from its first statement."""
        with closing(self._connect()) as connection:
            connection.execute("BEGIN IMMEDIATE")
            try:
                yield connection
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")

    # -- files ---------------------------------------------------------------------------------

    def path(self, picture: Picture | PictureData) -> Path:
        """Where a picture's file lives."""
        return self._file_path(picture.file)

    def _file_path(self, name: str) -> Path:
        return self.files_dir / name[:2] / name

    def _write_file(self, picture: PictureData) -> None:
        target = self.path(picture)
        if target.exists():
            return  # content-addressed: the same bytes are already there
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = self.tmp_dir / f"{uuid.uuid4().hex}{picture.suffix}"
        with partial.open("wb") as handle:
            handle.write(picture.data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, target)

    def _referenced(self, connection: sqlite3.Connection, files: Sequence[str]) -> set[str]:
        referenced: set[str] = set()
        for start in range(0, len(files), 500):
            chunk = files[start : start + 500]
            rows = connection.execute(
                f"SELECT DISTINCT file FROM pictures WHERE file IN ({','.join('?' * len(chunk))})", chunk
            )
            referenced.update(row["file"] for row in rows)
        return referenced

    def clean_orphans(self) -> list[Path]:
        """Delete picture files no row refers to (left by a crash during a save or a delete) and
        unfinished writes. Returns what was deleted."""
        removed: list[Path] = []
        with self._write() as connection:
            # Files are only written inside a write transaction, and this one holds the lock:
            # anything in the temporary folder now belongs to a process that died.
            for partial in self.tmp_dir.iterdir():
                partial.unlink(missing_ok=True)
                removed.append(partial)
            on_disk = [p for p in self.files_dir.glob("??/*") if p.is_file()]
            referenced = self._referenced(connection, [p.name for p in on_disk])
            for path in on_disk:
                if path.name not in referenced:
                    path.unlink(missing_ok=True)
                    removed.append(path)
        return removed

    # -- writing -------------------------------------------------------------------------------

    def save(self, result: AnalysisResult, pictures: Sequence[PictureData], preview_scale: float) -> Record:
        """Store a result with its pictures: files first, then the rows in one transaction."""
        for picture in pictures:
            if picture.role not in ROLES:
                raise ValueError(f"unknown picture role {picture.role!r}")
        with self._write() as connection:
            existing = connection.execute(
                "SELECT * FROM analyses WHERE settings_key = ?", (result_settings_key(result),)
            ).fetchone()
            if existing:
                return self._record(connection, existing)  # stored by someone else meanwhile
            for picture in pictures:
                self._write_file(picture)
            analysis_id = self._insert_rows(connection, result, pictures, preview_scale)
        stored = tuple(Picture(p.role, p.position, p.face, p.track, p.model, p.file, p.crop_box) for p in pictures)
        return Record(analysis_id, result, preview_scale, stored)

    def _insert_rows(
        self,
        connection: sqlite3.Connection,
        result: AnalysisResult,
        pictures: Sequence[PictureData],
        preview_scale: float,
    ) -> int:
        """The analysis row and its picture rows, inside the caller's transaction; the new id."""
        cursor = connection.execute(
            "INSERT INTO analyses (settings_key, sha256, file_name, kind, verdict, fake_probability,"
            " created, preview_scale, result_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                result_settings_key(result),
                result.sha256,
                result.file,
                result.kind,
                result.verdict,
                result.fake_probability,
                result.created,
                preview_scale,
                json.dumps(result.to_json()),
            ),
        )
        analysis_id = int(cursor.lastrowid)
        connection.executemany(
            "INSERT INTO pictures (analysis_id, role, position, face, track, model, crop_box, file)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (analysis_id, p.role, p.position, p.face, p.track, p.model, json.dumps(p.crop_box), p.file)
                for p in pictures
            ],
        )
        return analysis_id

    def delete(self, analysis_id: int) -> bool:
        """Delete one analysis and the picture files no other analysis uses. False if absent."""
        with self._write() as connection:
            files = [
                row["file"]
                for row in connection.execute(
                    "SELECT DISTINCT file FROM pictures WHERE analysis_id = ?", (analysis_id,)
                )
            ]
            deleted = connection.execute("DELETE FROM analyses WHERE id = ?", (analysis_id,)).rowcount
        # The row is gone first, so a crash from here on leaves only orphan files. Files are
        # removed in a second transaction: a save in between may have started using one again.
        with self._write() as connection:
            still_used = self._referenced(connection, files)
            for name in files:
                if name not in still_used:
                    self._file_path(name).unlink(missing_ok=True)
        return bool(deleted)

    # -- reading -------------------------------------------------------------------------------

    def _record(self, connection: sqlite3.Connection, row: sqlite3.Row) -> Record:
        pictures = tuple(
            Picture(
                p["role"], p["position"], p["face"], p["track"], p["model"], p["file"], _box(json.loads(p["crop_box"]))
            )
            for p in connection.execute(
                "SELECT * FROM pictures WHERE analysis_id = ? ORDER BY position, face, model, role", (row["id"],)
            )
        )
        result = AnalysisResult.from_json(json.loads(row["result_json"]))
        return Record(row["id"], result, row["preview_scale"], pictures)

    def get(self, analysis_id: int) -> Record | None:
        """One stored analysis, or None."""
        with closing(self._connect()) as connection:
            row = connection.execute("SELECT * FROM analyses WHERE id = ?", (analysis_id,)).fetchone()
            return self._record(connection, row) if row else None

    def find(self, key: str) -> Record | None:
        """The latest analysis stored under a `settings_key`, or None."""
        with closing(self._connect()) as connection:
            row = connection.execute(
                "SELECT * FROM analyses WHERE settings_key = ? ORDER BY id DESC LIMIT 1", (key,)
            ).fetchone()
            return self._record(connection, row) if row else None

    def _where(self, where: HistoryFilter) -> tuple[str, list[object]]:
        clauses: list[str] = []
        params: list[object] = []
        if where.verdicts:
            clauses.append(f"verdict IN ({','.join('?' * len(where.verdicts))})")
            params += where.verdicts
        if where.kinds:
            clauses.append(f"kind IN ({','.join('?' * len(where.kinds))})")
            params += where.kinds
        # `created` is an ISO 8601 UTC timestamp, so text order is time order.
        if where.since:
            clauses.append("created >= ?")
            params.append(_day_start(where.since))
        if where.until:
            clauses.append("created < ?")
            params.append(_day_start(where.until + timedelta(days=1)))
        if where.name_contains.strip():
            clauses.append("file_name LIKE ? ESCAPE '\\'")
            escaped = where.name_contains.strip().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            params.append(f"%{escaped}%")
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params

    def summaries(self, where: HistoryFilter = HistoryFilter()) -> list[Summary]:
        """Stored analyses matching a filter, newest first."""
        sql, params = self._where(where)
        with closing(self._connect()) as connection:
            rows = connection.execute(
                "SELECT id, created, file_name, kind, verdict, fake_probability, sha256 FROM analyses"
                f"{sql} ORDER BY created DESC, id DESC",
                params,
            ).fetchall()
        return [Summary(**dict(row)) for row in rows]

    def records(self, where: HistoryFilter = HistoryFilter()) -> list[Record]:
        """Whole stored analyses matching a filter, newest first."""
        sql, params = self._where(where)
        with closing(self._connect()) as connection:
            rows = connection.execute(f"SELECT * FROM analyses{sql} ORDER BY created DESC, id DESC", params).fetchall()
            return [self._record(connection, row) for row in rows]
