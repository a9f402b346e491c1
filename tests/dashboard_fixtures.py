"""Fixtures for the dashboard's tests: the dashboard's service around conftest.py's real engine
(the models of `Settings().models_dir`, so `DEEPFAKE_MODELS_DIR` is honoured) and real analyses
of shared media, each made once per test session.

Test modules load it with `pytest_plugins = ["dashboard_fixtures"]` and never import from it at
run time: a plugin's session fixtures exist once per session (imported into each module, they
would be made once per module), and a module imported before pytest loads it as a plugin loses
pytest's assertion rewriting."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from pipeline.app.pictures import collect
from pipeline.app.service import AnalysisService
from pipeline.app.store import PictureData
from pipeline.engine.analyze import AnalysisResult, Engine

IMAGE = "gan-faces/real/cv_69000.jpg"
"""A real photo with one face (128 x 128)."""
OTHER_IMAGE = "dfdc-faces/fake/aabdogagch.jpg"
"""A face crop from a DFDC fake."""
VIDEO = "videos/fake/0_aaqaifqrwn.mp4"
"""A small face-crop clip: fast to analyse."""
LONG_VIDEO = "videos/fake/abofeumbvv.mp4"
"""1080p, 10 s, one person."""
VIDEO_FRAMES = 8


@dataclass(frozen=True)
class Media:
    """The shared files the dashboard's tests analyse."""

    image: Path
    other_image: Path
    video: Path
    long_video: Path
    video_frames: int = VIDEO_FRAMES


@dataclass(frozen=True)
class Analysed:
    """A real analysis as the dashboard stores it."""

    result: AnalysisResult
    pictures: list[PictureData]
    preview_scale: float
    path: Path


@pytest.fixture(scope="session")
def media(shared_data: Path) -> Media:
    """Paths of the shared media the tests use."""
    return Media(shared_data / IMAGE, shared_data / OTHER_IMAGE, shared_data / VIDEO, shared_data / LONG_VIDEO)


@pytest.fixture(scope="session")
def service(engine: Engine) -> AnalysisService:
    """The dashboard's service around the session's engine (conftest.py: models loaded once)."""
    return AnalysisService(engine)


def analyse(service: AnalysisService, path: Path, frames: int = VIDEO_FRAMES) -> Analysed:
    """Run the real engine on a file and collect the pictures the dashboard keeps."""
    analysis = service.engine.analyze(path, frames=frames)
    return Analysed(analysis.result, collect(service.ensemble, analysis), analysis.preview_scale, path)


@pytest.fixture(scope="session")
def analysed_image(service: AnalysisService, media: Media) -> Analysed:
    """The real analysis of a photo with one face."""
    return analyse(service, media.image)


@pytest.fixture(scope="session")
def analysed_video(service: AnalysisService, media: Media) -> Analysed:
    """The real analysis of a small video (8 frames)."""
    return analyse(service, media.video)


@pytest.fixture(scope="session")
def generated_image(tmp_path_factory: pytest.TempPathFactory, media: Media) -> Path:
    """The shared photo with Content Credentials, signed here with a test certificate, saying an
    AI model generated it (the picture itself is unchanged)."""
    from tests import provenance_factory as pf

    path = tmp_path_factory.mktemp("generated") / "generated.jpg"
    definition = pf.manifest(path.name, pf.AI_GENERATED, agent="Test Diffusion")
    return pf.sign(media.image, path, pf.make_certificates(), definition)


@pytest.fixture(scope="session")
def analysed_generated_image(service: AnalysisService, generated_image: Path) -> Analysed:
    """The real analysis of `generated_image`."""
    return analyse(service, generated_image)


@pytest.fixture
def counted(service: AnalysisService, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the files the engine really analyses during a test."""
    calls: list[str] = []
    analyze = service.engine.analyze

    def counting(path: Path, *args: object, **kwargs: object):
        calls.append(path.name)
        return analyze(path, *args, **kwargs)

    monkeypatch.setattr(service.engine, "analyze", counting)
    return calls
