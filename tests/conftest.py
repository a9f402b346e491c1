"""Fixtures shared by the test modules."""

from __future__ import annotations

import os

# Before anything imports Ray: a local Ray cluster started by a test (or by the scan command it
# runs) uses 127.0.0.1 for every node and listens on no other address, and never reports usage.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.config import CACHE_DIR_ENV, DATA_HOME_ENV, DATABASE_URL_ENV, shared_data_dir


@pytest.fixture(scope="session", autouse=True)
def private_folders(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The tests' history and caches live in temporary folders, never in the user's own (a test
    that needs its own folder sets the variable again); no test writes to a team's database."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(DATA_HOME_ENV, str(tmp_path_factory.mktemp("data-home")))
        patch.setenv(CACHE_DIR_ENV, str(tmp_path_factory.mktemp("cache")))
        patch.delenv(DATABASE_URL_ENV, raising=False)
        yield


def _on_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def missing(message: str) -> None:
    """Something a test needs is not installed: fail under CI (CI must never pass by skipping),
    skip on a developer machine."""
    if _on_ci():
        pytest.fail(f"CI is set and {message}", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def postgresql_server(tmp_path_factory: pytest.TempPathFactory):  # -> tests.postgres_server.PostgresServer
    """A throwaway PostgreSQL server for the session (Debian's postgresql; `make postgresql`)."""
    from tests.postgres_server import PostgresServer, find_binaries

    binaries = find_binaries()
    if binaries is None:
        missing("PostgreSQL's initdb and pg_ctl are not installed; run `make postgresql`")
    server = PostgresServer.start(binaries)
    yield server
    server.stop()


@pytest.fixture
def postgresql_url(postgresql_server) -> Iterator[str]:
    """The URL of a fresh, empty database on the session's server, dropped after the test."""
    url = postgresql_server.create_database()
    yield url
    postgresql_server.drop_database(url)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared real data folder (`pipeline.config.shared_data_dir()`, see its README.md).

    Missing: the test fails loudly when `CI` is set (CI must never pass by skipping the real
    data), and is skipped on a developer machine without the data.
    """
    folder = shared_data_dir()
    if not folder.is_dir():
        message = f"shared test data not found at {folder}; put it there or set DEEPFAKE_DATA_DIR"
        if _on_ci():
            pytest.fail(f"CI is set and {message}", pytrace=False)
        pytest.skip(message)
    return folder


@pytest.fixture(scope="session")
def models_dir() -> Path:
    """The trained ensemble the engine loads (`models/`, or `DEEPFAKE_MODELS_DIR`)."""
    from pipeline.config import Settings

    folder = Settings().models_dir
    if not (folder / "ensemble.json").exists():
        pytest.fail(f"no trained ensemble in {folder}: the repository ships one in models/", pytrace=False)
    return folder


@pytest.fixture(scope="session")
def engine(models_dir: Path):  # -> pipeline.analyze.Engine
    """One engine (MTCNN and the ensemble loaded once) for every test that analyses media."""
    from pipeline.config import Settings
    from pipeline.engine.analyze import Engine

    return Engine(Settings(models_dir=models_dir))
