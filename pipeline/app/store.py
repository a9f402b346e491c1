"""The dashboard's history: every analysis result, the pictures kept with it, and the scan jobs
that filled it.

Where it lives. Rows go to a database through SQLAlchemy Core: SQLite in the data folder by
default (zero set-up), or the PostgreSQL database named by `$DEEPFAKE_DATABASE_URL` for a team
and for many scan workers writing at once. Pictures are always files in the data folder
(`pipeline.config.data_home()`, a shared folder for a team), named by their content:

    history.sqlite3          SQLite only: one row per analysis (the result as JSON), per kept
                             picture, per scan job and per file a scan went through
    files/ab/abcd...ef.jpg   pictures, named by the SHA-256 of their bytes (never by upload name)
    files/.tmp/              pictures being written

Crash safety (both databases): a save writes its pictures first (each to `files/.tmp`, fsynced,
then renamed into place, so a picture file is either complete or absent), then inserts the
analysis row and its picture rows in one transaction. A crash at any point leaves either the
whole row or no row; at worst it leaves picture files no row refers to, which `clean_orphans`
(run when a `Store` opens) deletes. A result is stored once per `settings_key` (a unique index;
a concurrent second insert does nothing): a second save of the same key returns the row that is
already there.

Concurrency: picture files are only created or deleted inside a write transaction that holds
the store's lock, so a cleanup never deletes a file a save is about to refer to, and a delete
never removes a file another row still uses. On SQLite the lock is the database's own write
lock (`BEGIN IMMEDIATE`; WAL mode, so readers never wait, and a busy timeout, so writers wait
for each other instead of failing). On PostgreSQL it is a transaction-level advisory lock:
saves share it (many workers save at once), cleanups and file deletions take it alone.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, RowMapping, create_engine, event, func, select, update
from sqlalchemy import delete as sql_delete
from sqlalchemy.dialects import postgresql as postgresql_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from pipeline.app import schema
from pipeline.app.schema import analyses, scan_files, scan_jobs
from pipeline.config import StoreSettings, data_home, database_url
from pipeline.errors import StoreError
from pipeline.results import AnalysisResult

SCHEMA_VERSION = schema.SCHEMA_VERSION
"""The schema version this app reads and writes (older stores are upgraded when opened)."""
picture_rows = schema.pictures
"""The pictures table (`pictures` is the name of what a save stores)."""

DATABASE_FILE = "history.sqlite3"
FILES_DIR = "files"

ROLES = ("frame", "face", "explanation_face", "explanation_frame")
"""What a kept picture shows: a sampled frame (preview size), one face crop, or a model's
explanation map over a face crop or over its frame."""

JOB_STATUSES = ("running", "finished", "interrupted", "failed")
"""A scan job is running until its driver stops it: finished (every file went through),
interrupted (Ctrl-C; run the scan again to resume), or failed (it could not go on)."""
FILE_STATUSES = ("done", "skipped", "failed")
"""What a scan did with one file: analysed and stored it, found it in the history already, or
could not analyse it (the reason is kept)."""

_ADVISORY_LOCK_KEY = int.from_bytes(hashlib.sha256(b"deepfake-dashboard history").digest()[:8], "big", signed=True)
"""PostgreSQL advisory lock id of the history's files (any 64-bit number no one else uses)."""


def settings_key(
    sha256: str, kind: str, frames: int, aggregation: str, models: Mapping[str, str], ensemble_version: str = ""
) -> str:
    """What makes two analyses interchangeable: the same bytes, analysed with the same frame
    count, aggregation rule, models (by content hash) and way of combining and deciding them
    (`EnsembleSpec.version`; empty for results stored before it was kept, whose keys stay as they
    were). An image always has one frame, so its frame count does not count."""
    canonical = {
        "sha256": sha256,
        "frames": 1 if kind == "image" else int(frames),
        "aggregation": aggregation,
        "models": dict(sorted(models.items())),
    }
    if ensemble_version:
        canonical["ensemble"] = ensemble_version
    return hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()


def result_settings_key(result: AnalysisResult) -> str:
    """`settings_key` of a finished result."""
    return settings_key(
        result.sha256, result.kind, result.frames_requested, result.aggregation, result.models, result.ensemble_version
    )


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


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
    job_id: int | None = None
    """Only the results of one scan job (analysed by it, or found in the history by it)."""


HISTORY_ORDERS = ("newest", "most_suspicious")
"""How `summaries` sorts: newest first, or highest fake probability first (no face last)."""


@dataclass(frozen=True)
class ScanJob:
    """A scan: what it was asked to do, how far it got, and how it ended."""

    id: int
    name: str
    settings: dict[str, Any]
    """The analysis settings (frames, aggregation, models and their versions), the workers and
    the paths given."""
    status: str
    """One of `JOB_STATUSES`."""
    total: int
    """Files the scan found to go through."""
    done: int
    """Files analysed and stored by this scan."""
    skipped: int
    """Files found in the history already (same bytes, settings and models)."""
    failed: int
    """Files that could not be analysed (see `Store.job_files`)."""
    started: str
    updated: str
    """When the last file went through (the start if none has)."""
    finished: str | None
    message: str
    """Why it stopped, when it did not finish."""

    @property
    def processed(self) -> int:
        """Files that went through, whatever became of them."""
        return self.done + self.skipped + self.failed


@dataclass(frozen=True)
class JobFile:
    """A file a scan job is analysing: the row a save records with its result."""

    job_id: int
    path: str
    attempts: int = 1


@dataclass(frozen=True)
class JobFileRecord:
    """What a scan did with one file."""

    path: str
    status: str
    """One of `FILE_STATUSES`."""
    analysis_id: int | None
    error: str
    attempts: int
    finished: str


def _box(value: list[int] | None) -> tuple[int, int, int, int] | None:
    return (value[0], value[1], value[2], value[3]) if value else None


def _day_start(day: date) -> str:
    return datetime.combine(day, time(0), tzinfo=UTC).isoformat(timespec="seconds")


def resolve_url(url: str | None, root: Path) -> URL:
    """The database URL of a store in `root`: `url`, else `$DEEPFAKE_DATABASE_URL`, else the
    SQLite file in `root`. `postgresql://` means the psycopg driver (the one installed)."""
    text = url or database_url()
    if text is None:
        return URL.create("sqlite", database=str(root / DATABASE_FILE))
    try:
        parsed = make_url(text)
    except ArgumentError:
        raise StoreError("DEEPFAKE_DATABASE_URL is not a database URL (e.g. postgresql://user@host/db)") from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise StoreError(
            f"the history runs on SQLite or PostgreSQL, not {parsed.get_backend_name()} ({shown_url(parsed)})"
        )
    return parsed


def shown_url(url: URL) -> str:
    """A database URL as messages show it: never its password."""
    return url.render_as_string(hide_password=True)


def _one_line(error: BaseException) -> str:
    """A database driver's error as one line without SQL (the first line says what happened)."""
    original = getattr(error, "orig", None) or error
    return " ".join(str(original).strip().splitlines()[:1]) or type(original).__name__


def _sqlite_engine(url: URL, settings: StoreSettings) -> Engine:
    engine = create_engine(
        url,
        connect_args={"timeout": settings.busy_timeout_s},
        pool_size=settings.pool_size,
        max_overflow=settings.max_overflow,
        pool_timeout=settings.pool_timeout_s,
    )

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, _record: Any) -> None:
        # The driver's own transaction handling is off; `_begin` below says when one starts.
        dbapi_connection.isolation_level = None
        dbapi_connection.execute(f"PRAGMA busy_timeout={int(settings.busy_timeout_s * 1000)}")
        dbapi_connection.execute("PRAGMA foreign_keys=ON")

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        # A write takes SQLite's write lock at its first statement: two writers queue up
        # instead of one of them failing half-way (a deferred BEGIN would upgrade too late).
        exclusive = connection.get_execution_options().get("history_write", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if exclusive else "BEGIN")

    return engine


def _postgresql_engine(url: URL, settings: StoreSettings) -> Engine:
    return create_engine(
        url,
        connect_args={"connect_timeout": max(1, round(settings.connect_timeout_s))},
        pool_size=settings.pool_size,
        max_overflow=settings.max_overflow,
        pool_timeout=settings.pool_timeout_s,
        pool_pre_ping=True,  # a server restart or an idle timeout leaves dead pooled connections
    )


class Store:
    """The history: rows in a database, pictures in a data folder. Safe to share between
    threads; each process opens its own. `close()` returns its database connections."""

    def __init__(
        self,
        root: Path | None = None,
        url: str | None = None,
        settings: StoreSettings = StoreSettings(),
        clean: bool = True,
    ) -> None:
        """Open (and create, upgrade or refuse: `StoreError`) the history whose pictures live in
        `root` (default `data_home()`) and whose rows live at `url` (default
        `$DEEPFAKE_DATABASE_URL`, else SQLite in `root`). `clean=False` skips the orphan
        cleanup (a scan worker whose driver has just run it)."""
        self.root = (root or data_home()).expanduser()
        self.files_dir = self.root / FILES_DIR
        self.tmp_dir = self.files_dir / ".tmp"
        # Private: the history shows what people analysed.
        try:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            self.tmp_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StoreError(f"cannot create the history folder {self.root}: {error.strerror}") from None
        self.url = resolve_url(url, self.root)
        self.backend = self.url.get_backend_name()
        self.database: Path | None = Path(self.url.database or "") if self.backend == "sqlite" else None
        """The SQLite file, or None when the rows live on a server."""
        self._engine = (
            _sqlite_engine(self.url, settings) if self.backend == "sqlite" else _postgresql_engine(self.url, settings)
        )
        try:
            if self.backend == "sqlite":
                # WAL is a property of the database file: set once (outside any transaction, on
                # the driver's own connection), kept by every later connection.
                raw = self._engine.raw_connection()
                try:
                    raw.driver_connection.execute("PRAGMA journal_mode=WAL")
                finally:
                    raw.close()
            with self._write(exclusive=True, doing="open") as connection:
                schema.prepare(connection, self.where)
        except SQLAlchemyError as error:  # the WAL pragma
            self._engine.dispose()
            raise StoreError(f"cannot open the history database {self.where}: {_one_line(error)}") from None
        except BaseException:
            self._engine.dispose()
            raise
        if clean:
            self.clean_orphans()

    @property
    def where(self) -> str:
        """The history's database as messages and pages show it (no password)."""
        return str(self.database) if self.database is not None else shown_url(self.url)

    def close(self) -> None:
        """Close the pooled database connections (the store reopens them if used again)."""
        self._engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- connections ---------------------------------------------------------------------------

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        try:
            with self._engine.connect() as connection:
                yield connection
        except SQLAlchemyError as error:
            raise StoreError(f"cannot read the history database {self.where}: {_one_line(error)}") from None

    @contextmanager
    def _write(self, exclusive: bool, doing: str = "write to") -> Iterator[Connection]:
        """One write transaction holding the store's lock: alone (`exclusive`: cleanups, file
        deletions, schema changes) or shared with other saves (PostgreSQL; SQLite has one
        writer at a time anyway)."""
        try:
            with self._engine.connect() as connection:
                connection.execution_options(history_write=True)
                with connection.begin():
                    if self.backend == "postgresql":
                        lock = func.pg_advisory_xact_lock if exclusive else func.pg_advisory_xact_lock_shared
                        connection.execute(select(lock(_ADVISORY_LOCK_KEY)))
                    yield connection
        except SQLAlchemyError as error:
            raise StoreError(f"cannot {doing} the history database {self.where}: {_one_line(error)}") from None

    def _insert(self, table: Any) -> Any:
        """An INSERT that can skip a row whose unique key is already there (both dialects)."""
        dialect = postgresql_dialect if self.backend == "postgresql" else sqlite_dialect
        return dialect.insert(table)

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

    def _referenced(self, connection: Connection, files: Sequence[str]) -> set[str]:
        referenced: set[str] = set()
        for start in range(0, len(files), 500):
            chunk = list(files[start : start + 500])
            rows = connection.execute(select(picture_rows.c.file).distinct().where(picture_rows.c.file.in_(chunk)))
            referenced.update(rows.scalars())
        return referenced

    def clean_orphans(self) -> list[Path]:
        """Delete picture files no row refers to (left by a crash during a save or a delete) and
        unfinished writes. Returns what was deleted."""
        removed: list[Path] = []
        with self._write(exclusive=True) as connection:
            # Files are only written inside a write transaction, and this one holds the lock
            # alone: anything in the temporary folder now belongs to a process that died.
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

    def save(
        self,
        result: AnalysisResult,
        pictures: Sequence[PictureData],
        preview_scale: float,
        job: JobFile | None = None,
    ) -> Record:
        """Store a result with its pictures: files first, then the rows in one transaction.
        With `job`, the scan job's row for that file is written in the same transaction (status
        'done', or 'skipped' when the result was already stored)."""
        for picture in pictures:
            if picture.role not in ROLES:
                raise ValueError(f"unknown picture role {picture.role!r}")
        key = result_settings_key(result)
        with self._write(exclusive=False) as connection:
            existing = connection.execute(select(analyses).where(analyses.c.settings_key == key)).mappings().first()
            analysis_id = None
            if existing is None:
                for picture in pictures:
                    self._write_file(picture)
                analysis_id = self._insert_rows(connection, result, pictures, preview_scale)
            if analysis_id is None:
                # Stored by someone else meanwhile (before this transaction, or at the same time
                # on PostgreSQL, where the unique index made this insert do nothing).
                existing = connection.execute(select(analyses).where(analyses.c.settings_key == key)).mappings().one()
                if job is not None:
                    self._insert_job_file(connection, job, "skipped", existing["id"], "")
                return self._record(connection, existing)
            if job is not None:
                self._insert_job_file(connection, job, "done", analysis_id, "")
        stored = tuple(Picture(p.role, p.position, p.face, p.track, p.model, p.file, p.crop_box) for p in pictures)
        return Record(analysis_id, result, preview_scale, stored)

    def _insert_rows(
        self,
        connection: Connection,
        result: AnalysisResult,
        pictures: Sequence[PictureData],
        preview_scale: float,
    ) -> int | None:
        """The analysis row and its picture rows, inside the caller's transaction: the new id,
        or None when a row with the same settings_key is already there."""
        inserted = connection.execute(
            self._insert(analyses)
            .values(
                settings_key=result_settings_key(result),
                sha256=result.sha256,
                file_name=result.file,
                kind=result.kind,
                verdict=result.verdict,
                fake_probability=result.fake_probability,
                created=result.created,
                preview_scale=preview_scale,
                result_json=json.dumps(result.to_json()),
            )
            .on_conflict_do_nothing(index_elements=["settings_key"])
            .returning(analyses.c.id)
        ).scalar_one_or_none()
        if inserted is None:
            return None
        analysis_id = int(inserted)
        if pictures:
            connection.execute(
                picture_rows.insert(),
                [
                    {
                        "analysis_id": analysis_id,
                        "role": p.role,
                        "position": p.position,
                        "face": p.face,
                        "track": p.track,
                        "model": p.model,
                        "crop_box": json.dumps(p.crop_box),
                        "file": p.file,
                    }
                    for p in pictures
                ],
            )
        return analysis_id

    def delete(self, analysis_id: int) -> bool:
        """Delete one analysis and the picture files no other analysis uses. False if absent."""
        with self._write(exclusive=False) as connection:
            files = list(
                connection.execute(
                    select(picture_rows.c.file).distinct().where(picture_rows.c.analysis_id == analysis_id)
                ).scalars()
            )
            deleted = connection.execute(sql_delete(analyses).where(analyses.c.id == analysis_id)).rowcount
        # The row is gone first, so a crash from here on leaves only orphan files. Files are
        # removed in a second transaction, holding the lock alone: a save in between may have
        # started using one again, and no save may pick one up while it is being removed.
        with self._write(exclusive=True) as connection:
            still_used = self._referenced(connection, files)
            for name in files:
                if name not in still_used:
                    self._file_path(name).unlink(missing_ok=True)
        return bool(deleted)

    # -- scan jobs -----------------------------------------------------------------------------

    def start_job(self, name: str, settings: Mapping[str, Any], total: int) -> ScanJob:
        """A new scan job, running, that will go through `total` files."""
        with self._write(exclusive=False) as connection:
            job_id = connection.execute(
                self._insert(scan_jobs)
                .values(
                    name=name,
                    settings_json=json.dumps(dict(settings), sort_keys=True),
                    status="running",
                    total=int(total),
                    started=_now(),
                    finished=None,
                    message="",
                )
                .returning(scan_jobs.c.id)
            ).scalar_one()
        job = self.job(int(job_id))
        assert job is not None
        return job

    def finish_job(self, job_id: int, status: str, message: str = "") -> ScanJob | None:
        """Mark a job finished, interrupted or failed (with why); returns it as it now is."""
        if status not in JOB_STATUSES or status == "running":
            raise ValueError(f"a job ends finished, interrupted or failed, not {status!r}")
        with self._write(exclusive=False) as connection:
            connection.execute(
                update(scan_jobs)
                .where(scan_jobs.c.id == job_id)
                .values(status=status, finished=_now(), message=message)
            )
        return self.job(job_id)

    def _insert_job_file(
        self, connection: Connection, job: JobFile, status: str, analysis_id: int | None, error: str
    ) -> None:
        # The first word on a file is kept: a retry after a worker died having already stored
        # the file must not turn 'done' into 'skipped', nor count the file twice.
        connection.execute(
            self._insert(scan_files)
            .values(
                job_id=job.job_id,
                path=job.path,
                status=status,
                analysis_id=analysis_id,
                error=error,
                attempts=job.attempts,
                finished=_now(),
            )
            .on_conflict_do_nothing(index_elements=["job_id", "path"])
        )

    def record_job_file(self, job: JobFile, status: str, analysis_id: int | None = None, error: str = "") -> str:
        """Record what a scan did with a file that `save` did not store: 'skipped' (found in
        the history: `analysis_id`) or 'failed' (`error` says why). Returns the file's status
        as stored (the first record of a file in a job is kept)."""
        if status not in FILE_STATUSES:
            raise ValueError(f"unknown scan file status {status!r}")
        with self._write(exclusive=False) as connection:
            self._insert_job_file(connection, job, status, analysis_id, error)
            return connection.execute(
                select(scan_files.c.status).where((scan_files.c.job_id == job.job_id) & (scan_files.c.path == job.path))
            ).scalar_one()

    def _jobs(self, connection: Connection, job_id: int | None) -> list[ScanJob]:
        counts = select(
            scan_files.c.job_id,
            scan_files.c.status,
            func.count().label("files"),
            func.max(scan_files.c.finished).label("last"),
        ).group_by(scan_files.c.job_id, scan_files.c.status)
        if job_id is not None:
            counts = counts.where(scan_files.c.job_id == job_id)
        by_job: dict[int, dict[str, tuple[int, str]]] = {}
        for row in connection.execute(counts):
            by_job.setdefault(row.job_id, {})[row.status] = (row.files, row.last)
        query = select(scan_jobs).order_by(scan_jobs.c.id.desc())
        if job_id is not None:
            query = query.where(scan_jobs.c.id == job_id)
        jobs = []
        for row in connection.execute(query).mappings():
            files = by_job.get(row["id"], {})
            last = max((finished for _, finished in files.values()), default=row["started"])
            jobs.append(
                ScanJob(
                    id=row["id"],
                    name=row["name"],
                    settings=json.loads(row["settings_json"]),
                    status=row["status"],
                    total=row["total"],
                    done=files.get("done", (0, ""))[0],
                    skipped=files.get("skipped", (0, ""))[0],
                    failed=files.get("failed", (0, ""))[0],
                    started=row["started"],
                    updated=last,
                    finished=row["finished"],
                    message=row["message"],
                )
            )
        return jobs

    def job(self, job_id: int) -> ScanJob | None:
        """One scan job with its counts, or None."""
        with self._read() as connection:
            found = self._jobs(connection, job_id)
        return found[0] if found else None

    def jobs(self) -> list[ScanJob]:
        """Every scan job with its counts, newest first."""
        with self._read() as connection:
            return self._jobs(connection, None)

    def job_files(self, job_id: int, status: str | None = None) -> list[JobFileRecord]:
        """What a job did with each file it went through (optionally one status), in order."""
        query = select(scan_files).where(scan_files.c.job_id == job_id)
        if status is not None:
            query = query.where(scan_files.c.status == status)
        with self._read() as connection:
            rows = connection.execute(query.order_by(scan_files.c.finished, scan_files.c.path)).mappings().all()
        return [
            JobFileRecord(r["path"], r["status"], r["analysis_id"], r["error"], r["attempts"], r["finished"])
            for r in rows
        ]

    # -- reading -------------------------------------------------------------------------------

    def _record(self, connection: Connection, row: RowMapping) -> Record:
        stored = tuple(
            Picture(
                p["role"], p["position"], p["face"], p["track"], p["model"], p["file"], _box(json.loads(p["crop_box"]))
            )
            for p in connection.execute(
                select(picture_rows)
                .where(picture_rows.c.analysis_id == row["id"])
                .order_by(picture_rows.c.position, picture_rows.c.face, picture_rows.c.model, picture_rows.c.role)
            ).mappings()
        )
        result = AnalysisResult.from_json(json.loads(row["result_json"]))
        return Record(row["id"], result, row["preview_scale"], stored)

    def get(self, analysis_id: int) -> Record | None:
        """One stored analysis, or None."""
        with self._read() as connection:
            row = connection.execute(select(analyses).where(analyses.c.id == analysis_id)).mappings().first()
            return self._record(connection, row) if row else None

    def find(self, key: str) -> Record | None:
        """The analysis stored under a `settings_key`, or None."""
        with self._read() as connection:
            row = (
                connection.execute(
                    select(analyses).where(analyses.c.settings_key == key).order_by(analyses.c.id.desc()).limit(1)
                )
                .mappings()
                .first()
            )
            return self._record(connection, row) if row else None

    @staticmethod
    def _where(query: Any, where: HistoryFilter) -> Any:
        if where.verdicts:
            query = query.where(analyses.c.verdict.in_(where.verdicts))
        if where.kinds:
            query = query.where(analyses.c.kind.in_(where.kinds))
        # `created` is an ISO 8601 UTC timestamp, so text order is time order.
        if where.since:
            query = query.where(analyses.c.created >= _day_start(where.since))
        if where.until:
            query = query.where(analyses.c.created < _day_start(where.until + timedelta(days=1)))
        if where.name_contains.strip():
            # % and _ are characters to find, not wildcards; case-insensitive on both databases.
            escaped = where.name_contains.strip().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            query = query.where(analyses.c.file_name.ilike(f"%{escaped}%", escape="\\"))
        if where.job_id is not None:
            in_job = select(scan_files.c.analysis_id).where(
                (scan_files.c.job_id == where.job_id) & scan_files.c.analysis_id.is_not(None)
            )
            query = query.where(analyses.c.id.in_(in_job))
        return query

    @staticmethod
    def _ordered(query: Any, order: str) -> Any:
        if order == "most_suspicious":
            # No probability (no face) last, on both databases.
            return query.order_by(
                analyses.c.fake_probability.is_(None), analyses.c.fake_probability.desc(), analyses.c.id.desc()
            )
        if order != "newest":
            raise ValueError(f"unknown history order {order!r}; choose one of {', '.join(HISTORY_ORDERS)}")
        return query.order_by(analyses.c.created.desc(), analyses.c.id.desc())

    def summaries(self, where: HistoryFilter = HistoryFilter(), order: str = "newest") -> list[Summary]:
        """Stored analyses matching a filter, newest first (or `order='most_suspicious'`)."""
        columns = [
            analyses.c.id,
            analyses.c.created,
            analyses.c.file_name,
            analyses.c.kind,
            analyses.c.verdict,
            analyses.c.fake_probability,
            analyses.c.sha256,
        ]
        query = self._ordered(self._where(select(*columns), where), order)
        with self._read() as connection:
            rows = connection.execute(query).mappings().all()
        return [Summary(**dict(row)) for row in rows]

    def records(self, where: HistoryFilter = HistoryFilter(), order: str = "newest") -> list[Record]:
        """Whole stored analyses matching a filter, newest first (or `order='most_suspicious'`)."""
        query = self._ordered(self._where(select(analyses), where), order)
        with self._read() as connection:
            rows = connection.execute(query).mappings().all()
            return [self._record(connection, row) for row in rows]
