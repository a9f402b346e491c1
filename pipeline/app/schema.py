"""The history's tables (SQLAlchemy Core), the schema version, and the upgrades between versions.

One schema for SQLite and PostgreSQL. The version lives where each database keeps it best:
SQLite's `PRAGMA user_version` (so an older app, which reads that number, refuses a newer store
instead of misreading it) and a one-row `history_schema` table on PostgreSQL. `prepare` runs
inside the store's exclusive write transaction, so two processes opening a store at once
upgrade it once.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import (
    Column,
    Connection,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    delete,
    insert,
    inspect,
    select,
)

from pipeline.errors import StoreError

SCHEMA_VERSION = 3
"""1: the first release. 2: pictures.frame is called position, explanation roles renamed, one
row per settings_key. 3: scan jobs (scan_jobs, scan_files)."""

metadata = MetaData()

analyses = Table(
    "analyses",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("settings_key", Text, nullable=False),
    Column("sha256", Text, nullable=False),
    Column("file_name", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("verdict", Text, nullable=False),
    Column("fake_probability", Float),
    Column("created", Text, nullable=False),
    Column("preview_scale", Float, nullable=False),
    Column("result_json", Text, nullable=False),
    Index("analyses_by_settings", "settings_key", unique=True),
    Index("analyses_by_created", "created"),
    sqlite_autoincrement=True,  # ids are never reused: a deleted result's id stays dead
)

pictures = Table(
    "pictures",
    metadata,
    Column("analysis_id", Integer, ForeignKey("analyses.id", ondelete="CASCADE"), nullable=False),
    Column("role", Text, nullable=False),
    Column("position", Integer, nullable=False),
    Column("face", Integer, nullable=False),
    Column("track", Integer, nullable=False),
    Column("model", Text, nullable=False),
    Column("crop_box", Text, nullable=False),
    Column("file", Text, nullable=False),
    Index("pictures_by_analysis", "analysis_id"),
    Index("pictures_by_file", "file"),
)

scan_jobs = Table(
    "scan_jobs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", Text, nullable=False),
    Column("settings_json", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("total", Integer, nullable=False),
    Column("started", Text, nullable=False),
    Column("finished", Text),
    Column("message", Text, nullable=False),
    sqlite_autoincrement=True,
)

scan_files = Table(
    "scan_files",
    metadata,
    Column("job_id", Integer, ForeignKey("scan_jobs.id", ondelete="CASCADE"), nullable=False),
    Column("path", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("analysis_id", Integer, ForeignKey("analyses.id", ondelete="SET NULL")),
    Column("error", Text, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("finished", Text, nullable=False),
    Index("scan_files_by_job_path", "job_id", "path", unique=True),
    Index("scan_files_by_analysis", "analysis_id"),
)

_VERSION_TABLE = Table("history_schema", MetaData(), Column("version", Integer, nullable=False))
"""PostgreSQL only: the schema version (SQLite keeps it in PRAGMA user_version)."""


def _read_version(connection: Connection, where: str) -> int:
    if connection.dialect.name == "sqlite":
        return int(connection.exec_driver_sql("PRAGMA user_version").scalar_one())
    tables = inspect(connection)
    if tables.has_table(_VERSION_TABLE.name):
        return int(connection.execute(select(_VERSION_TABLE.c.version)).scalar_one_or_none() or 0)
    if tables.has_table(analyses.name):
        raise StoreError(
            f"the database {where} has a table named analyses but no history schema version: it "
            "was not written by this app; point DEEPFAKE_DATABASE_URL at a database of its own"
        )
    return 0


def _write_version(connection: Connection, version: int) -> None:
    if connection.dialect.name == "sqlite":
        connection.exec_driver_sql(f"PRAGMA user_version={int(version)}")
        return
    _VERSION_TABLE.create(connection, checkfirst=True)
    connection.execute(delete(_VERSION_TABLE))
    connection.execute(insert(_VERSION_TABLE).values(version=version))


def _upgrade_from_1(connection: Connection) -> None:
    """Schema 1 -> 2 (only SQLite stores were ever version 1)."""
    connection.exec_driver_sql("ALTER TABLE pictures RENAME COLUMN frame TO position")
    connection.exec_driver_sql("UPDATE pictures SET role = 'explanation_face' WHERE role = 'gradcam_face'")
    connection.exec_driver_sql("UPDATE pictures SET role = 'explanation_frame' WHERE role = 'gradcam_frame'")
    # Version 1 could store one settings_key twice (two tabs at once): keep the first row.
    connection.exec_driver_sql(
        "DELETE FROM analyses WHERE id NOT IN (SELECT MIN(id) FROM analyses GROUP BY settings_key)"
    )
    # Recreated unique by `prepare`.
    connection.exec_driver_sql("DROP INDEX IF EXISTS analyses_by_settings")


def _upgrade_from_2(connection: Connection) -> None:
    """Schema 2 -> 3: the scan tables, which `prepare` creates."""


_UPGRADES: dict[int, Callable[[Connection], None]] = {1: _upgrade_from_1, 2: _upgrade_from_2}
"""Version -> the step that brings a store of that version to the next one."""


def prepare(connection: Connection, where: str) -> None:
    """Create the schema in an empty database, upgrade an older one, or refuse a newer one
    (`StoreError`). Runs inside the caller's exclusive write transaction; `where` names the
    store in messages."""
    version = _read_version(connection, where)
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"the history in {where} was written by a newer version of this app (schema "
            f"{version}; this one reads up to {SCHEMA_VERSION}); update the app or set "
            "DEEPFAKE_DATA_HOME (or DEEPFAKE_DATABASE_URL) to another history"
        )
    if version:
        for step in range(version, SCHEMA_VERSION):
            if step not in _UPGRADES:
                raise StoreError(f"the history in {where} has schema {version}, which this app cannot upgrade")
            _UPGRADES[step](connection)
    metadata.create_all(connection, checkfirst=True)
    # create_all makes the indexes of new tables only; an upgraded table may lack one.
    for table in metadata.sorted_tables:
        for index in table.indexes:
            index.create(connection, checkfirst=True)
    _write_version(connection, SCHEMA_VERSION)
