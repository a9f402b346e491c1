"""The engine end to end with the shipped ensemble: timelines, people, per-model scores,
Grad-CAM, the ensemble file, and the command line on good and bad input."""

from __future__ import annotations

import copy
import json
import os
import platform
import re
from dataclasses import replace
from pathlib import Path

import cv2
import keras
import numpy as np
import pytest
from PIL import Image, ImageFilter

from pipeline.config import REPO_ROOT
from pipeline.engine.analyze import (
    COLOURLESS_CAVEAT,
    SMALL_FACE_CAVEAT,
    TURNED_FACE_CAVEAT,
    VIDEO_FRAMES_CAVEAT,
    AnalysisResult,
    Engine,
)
from pipeline.engine.ensemble import ENSEMBLE_FILE, KERAS, Ensemble, EnsembleSpec, MemberSpec, combine_logits, sigmoid
from pipeline.engine.explain import explanation_maps, face_overlays, most_suspicious_faces, overlay, overlay_on_frame
from pipeline.engine.faces import face_turn
from pipeline.engine.media import sample_frames
from pipeline.engine.verdict import TONED_CAVEAT, UNSEEN_SOURCES, VALIDATION_MIX, ScoredFace, decide
from pipeline.errors import ModelsMissingError
from tests import media_factory
from tests.command_line import CLI_TIMEOUT_S, first_stdout_line, run_cli, run_python, start_cli, terminate_after
from tests.scenes import grid_image, real_faces, toned, two_people_video, warmed
from tests.subsets import models_described_as


@pytest.fixture(scope="module")
def facing_photo(shared_data: Path) -> Path:
    """A real photo of one face, about 140 px across, turned to the camera: none of the engine's caveats."""
    return shared_data / "swap-faces" / "real" / "01080.jpg"


@pytest.fixture(scope="module")
def video_analysis(engine: Engine, shared_data: Path):  # -> Analysis
    return engine.analyze(shared_data / "videos" / "fake" / "abofeumbvv.mp4", frames=12)


def test_video_timeline_has_every_sampled_frame_and_every_model(video_analysis, engine: Engine) -> None:
    result = video_analysis.result
    members = set(engine.ensemble.member_names)
    assert result.kind == "video" and (result.width, result.height) == (1920, 1080)
    assert len(result.frames) == 12
    indices = [f.frame_number for f in result.frames]
    assert indices == sorted(set(indices))
    assert all(0 <= f.time_s <= result.duration_s for f in result.frames)
    faces = [face for frame in result.frames for face in frame.faces]
    assert len(faces) >= 6
    costly = {m.name for m in engine.ensemble.spec.members if m.costly}
    for face in faces:
        assert 0.0 <= face.fake_probability <= 1.0
        assert members - costly <= set(face.model_scores) <= members  # the cheap members score every face
        assert face.box[2] > 0 and face.box[3] > 0
    per_person = engine.settings.scoring.costly_faces_per_person
    for track in result.tracks:
        assert set(track.model_scores) == members  # every member judges every person
        for name in costly:
            scored = sum(name in f.model_scores for f in faces if f.track == track.track)
            assert 1 <= scored <= per_person
    assert result.verdict in {"real", "fake", "uncertain"} and 0 <= result.fake_probability <= 1
    assert set(result.model_scores) == members
    assert set(result.timing) == {"hash", "decode", "provenance", "detect", "score", "verdict", "total"}
    assert result.timing["total"] == pytest.approx(sum(v for k, v in result.timing.items() if k != "total"), abs=1e-9)
    assert len(result.sha256) == 64


def test_result_survives_a_json_round_trip(video_analysis) -> None:
    data = json.loads(json.dumps(video_analysis.result.to_json()))
    assert AnalysisResult.from_json(data) == video_analysis.result


def test_two_people_get_two_timelines(engine: Engine, shared_data: Path, tmp_path: Path) -> None:
    video = two_people_video(tmp_path / "two.avi", shared_data)
    result = engine.analyze(video, frames=8).result
    assert len(result.tracks) == 2
    assert all(t.faces >= 6 for t in result.tracks)
    for frame in result.frames:
        left, right = (sorted(frame.faces, key=lambda f: f.box[0]) + [None, None])[:2]
        if left and right:
            assert (left.track, right.track) == (0, 1)


@pytest.mark.parametrize("name", ["reaction.gif", "sticker.webp"])
def test_an_animation_is_analysed_as_a_video(engine: Engine, shared_data: Path, tmp_path: Path, name: str) -> None:
    """A face clip saved as an animated GIF (256 colours, as GIFs shared online are) or WebP:
    one person followed through the sampled frames, at the times the animation shows them."""
    frames = [Image.fromarray(f.rgb) for f in sample_frames(shared_data / "videos/fake/0_aaqaifqrwn.mp4", frames=10)]
    animation = tmp_path / name
    frames[0].save(animation, save_all=True, append_images=frames[1:], duration=80, loop=0)
    result = engine.analyze(animation, frames=5).result
    assert (result.kind, result.width, result.height) == ("video", *frames[0].size)
    assert [f.frame_number for f in result.frames] == [1, 3, 5, 7, 9]
    assert [f.time_s for f in result.frames] == pytest.approx([0.08, 0.24, 0.40, 0.56, 0.72])
    assert all(len(f.faces) == 1 for f in result.frames)
    (track,) = result.tracks
    assert track.faces == 5 and set(track.model_scores) == set(engine.ensemble.member_names)
    assert result.verdict in {"real", "fake", "uncertain"}
    # A GIF's palette is said beside its verdict (rule 24); an animated WebP has no such caveat.
    gif = name.endswith(".gif")
    assert (result.provenance.file_history is not None) == gif and ("GIF, whose 256 colours" in result.reason) == gif
    assert (VIDEO_FRAMES_CAVEAT in result.reason) != gif  # the WebP's frames carry no JPEG save either


def test_a_tiff_of_several_pages_is_analysed_on_its_first(engine: Engine, shared_data: Path, tmp_path: Path) -> None:
    """Only the first page of a TIFF is looked at (a face there, none on the second, two on the
    third), and the verdict's reason says there are more."""
    first, third = real_faces(shared_data, 1)[0], grid_image(real_faces(shared_data, 2), columns=2)[0]
    blank = np.full_like(first, 200)
    path = tmp_path / "scans.tif"
    Image.fromarray(first).save(path, save_all=True, append_images=[Image.fromarray(blank), Image.fromarray(third)])
    result = engine.analyze(path).result
    assert (result.kind, result.width, result.height) == ("image", first.shape[1], first.shape[0])
    assert len(result.frames[0].faces) == 1 and len(result.tracks) == 1
    assert result.reason.endswith(
        "; the file is a TIFF of 3 pages, and only the first was analysed: the verdict says nothing about the faces on the others"
    )


def test_twenty_faces_in_one_photo_are_all_scored(engine: Engine, shared_data: Path, tmp_path: Path) -> None:
    picture, _ = grid_image(real_faces(shared_data, 20), columns=5)
    path = tmp_path / "crowd.png"
    cv2.imwrite(str(path), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
    result = engine.analyze(path).result
    assert result.kind == "image" and len(result.frames) == 1
    assert len(result.frames[0].faces) == 20
    assert len(result.tracks) == 20


def test_a_photo_without_a_face_says_so(engine: Engine, tmp_path: Path) -> None:
    from skimage import data

    path = tmp_path / "coffee.jpg"
    cv2.imwrite(str(path), cv2.cvtColor(data.coffee(), cv2.COLOR_RGB2BGR))
    result = engine.analyze(path).result
    assert result.verdict == "no_face" and result.fake_probability is None
    assert "no face" in result.reason


def test_ensemble_score_is_the_calibrated_weighted_logit_mean(engine: Engine, shared_data: Path) -> None:
    ensemble = engine.ensemble
    crops = np.stack([real_faces(shared_data, 3)[i] for i in range(3)])
    crops = np.stack([cv2.resize(c, (224, 224)) for c in crops])
    scores = ensemble.score(crops)
    logits = {n: ensemble.logits(n, crops) for n in ensemble.member_names}
    np.testing.assert_allclose(scores.ensemble, sigmoid(combine_logits(logits, ensemble.spec)), atol=1e-5)
    for member in ensemble.spec.members:
        np.testing.assert_allclose(
            scores.members[member.name], sigmoid(logits[member.name] / member.temperature), atol=1e-5
        )


def test_a_picture_is_weighed_and_decided_as_the_ensemble_says_pictures_are(
    models_dir: Path, shared_data: Path, tmp_path: Path
) -> None:
    """Rule 79: an ensemble with its own spec for pictures combines a photo's members with that
    spec's weights and calibration and decides it at that spec's threshold, and records the
    weights it used; a video is weighed and decided as before."""
    from pipeline.config import Settings

    shipped = EnsembleSpec.load(models_dir / ENSEMBLE_FILE)
    # Weights unlike the shipped ones, one per member, whatever the members are.
    weights = {m.name: float(1 + (3 * i) % 5) for i, m in enumerate(shipped.members)}
    assert weights != {m.name: m.weight for m in shipped.members}
    pictures = replace(
        shipped,
        pictures=None,
        members=tuple(replace(m, weight=weights[m.name]) for m in shipped.members),
        offset=shipped.offset + 0.5,
        threshold=0.42,
        uncertain_low=0.3,
        uncertain_high=0.55,
    )
    copy = models_described_as(models_dir, tmp_path / "models", replace(shipped, pictures=pictures))
    engine = Engine(Settings(models_dir=copy))
    assert engine.spec.for_media("image") == pictures and engine.spec.for_media("video").threshold == shipped.threshold

    photo = sorted((shared_data / "swap-faces" / "real").iterdir())[1]
    result = engine.analyze(photo).result
    (face,) = result.frames[0].faces
    logits = {n: np.log(p / (1 - p)) for n, p in face.model_scores.items()}  # calibrated logits
    combined = sum(weights[n] * logit for n, logit in logits.items()) / sum(weights.values())
    assert face.fake_probability == pytest.approx(sigmoid(combined / pictures.temperature + pictures.offset), abs=1e-4)
    assert (result.weights, result.threshold, result.uncertain_band) == (weights, 0.42, [0.3, 0.55])

    video = engine.analyze(shared_data / "videos" / "real" / "lynaeydofd.mp4", frames=2).result
    assert video.weights == {m.name: m.weight for m in shipped.members} and video.threshold == shipped.threshold
    face = next(f for frame in video.frames for f in frame.faces if len(f.model_scores) == len(weights))
    logits = {n: np.log(p / (1 - p)) for n, p in face.model_scores.items()}
    combined = sum(m.weight * logits[m.name] for m in shipped.members) / sum(m.weight for m in shipped.members)
    assert face.fake_probability == pytest.approx(sigmoid(combined / shipped.temperature + shipped.offset), abs=1e-4)


def test_crops_re_saved_as_jpeg_are_what_the_members_score_when_asked(
    engine: Engine, shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`ScoringSettings.resaved_crop_quality` (rule 34's measurement): the members score each crop
    saved as JPEG and read back, not the crop as cut; off, as cut."""
    from pipeline.config import ScoringSettings
    from pipeline.engine.ensemble import jpeg_round_trip

    path = tmp_path / "face.png"
    cv2.imwrite(str(path), cv2.cvtColor(real_faces(shared_data, 1)[0], cv2.COLOR_RGB2BGR))
    as_cut = engine.analyze(path)
    monkeypatch.setattr(engine, "settings", replace(engine.settings, scoring=ScoringSettings(resaved_crop_quality=60)))
    resaved = engine.analyze(path)
    crop = as_cut.faces[0][0].crop
    assert np.array_equal(resaved.faces[0][0].crop, crop)  # the crop shown is the one cut
    expected = engine.ensemble.score(jpeg_round_trip(crop, 60)[None], spec=engine.spec.for_media("image"))
    scored = resaved.result.frames[0].faces[0]
    assert scored.fake_probability == pytest.approx(float(expected.ensemble[0]), abs=1e-6)
    for name, score in scored.model_scores.items():
        assert score == pytest.approx(float(expected.members[name][0]), abs=1e-6)
    assert scored.model_scores != as_cut.result.frames[0].faces[0].model_scores


def test_video_frames_re_saved_as_jpeg_are_what_faces_are_cut_from_when_asked(
    engine: Engine, shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`ScoringSettings.resaved_frame_quality` (rule 37): each video frame is saved as JPEG at its
    own size before faces are cut from it; a picture is scored as it is either way."""
    from pipeline.engine.ensemble import jpeg_round_trip
    from pipeline.engine.faces import crop_square
    from pipeline.engine.media import sample_frames

    video = shared_data / "videos" / "fake" / "0_aaqaifqrwn.mp4"
    photo = tmp_path / "face.png"
    cv2.imwrite(str(photo), cv2.cvtColor(real_faces(shared_data, 1)[0], cv2.COLOR_RGB2BGR))
    frames = [frame.rgb for frame in sample_frames(video, frames=2)]
    scores: dict[int | None, list[list[dict[str, float]]]] = {}
    for quality in (None, 60):
        scoring = replace(engine.settings.scoring, resaved_frame_quality=quality)
        monkeypatch.setattr(engine, "settings", replace(engine.settings, scoring=scoring))
        analysis = engine.analyze(video, frames=2)
        cut_from = frames if quality is None else [jpeg_round_trip(rgb, quality) for rgb in frames]
        faces = [face for frame_faces in analysis.faces for face in frame_faces]
        assert faces
        for face in faces:
            expected = crop_square(cut_from[face.position], face.crop_box, engine.settings.faces.crop_size)
            assert np.array_equal(face.crop, expected)
        photo_faces = engine.analyze(photo).result.frames[0].faces
        scores[quality] = [
            [face.model_scores for frame in analysis.result.frames for face in frame.faces],
            [face.model_scores for face in photo_faces],
        ]
    assert scores[None][0] != scores[60][0]  # the video's faces are scored otherwise
    assert scores[None][1] == scores[60][1]  # the photo's face is not


def test_a_video_verdict_says_what_video_frames_do_to_the_clip_member(
    engine: Engine, shared_data: Path, tmp_path: Path
) -> None:
    """Rules 36-37: the CLIP member reads video frames, which carry no JPEG save, as more fake than
    the JPEG-saved crops it trained on. A video's reason says so after the models' own words when
    that member scored its faces; a photo's and a video scored without it do not."""
    video = shared_data / "videos" / "real" / "lynaeydofd.mp4"
    with_clip = engine.analyze(video, frames=2).result
    assert with_clip.reason.endswith(f"; {VIDEO_FRAMES_CAVEAT}")
    assert not with_clip.reason.startswith(VIDEO_FRAMES_CAVEAT)  # the models' reason comes first
    cnn = next(spec.name for spec in engine.ensemble.spec.members if spec.kind == KERAS)
    assert VIDEO_FRAMES_CAVEAT not in engine.analyze(video, frames=2, models=[cnn]).result.reason
    photo = tmp_path / "face.png"
    cv2.imwrite(str(photo), cv2.cvtColor(real_faces(shared_data, 1)[0], cv2.COLOR_RGB2BGR))
    assert VIDEO_FRAMES_CAVEAT not in engine.analyze(photo).result.reason


def test_a_verdict_says_when_its_face_is_smaller_than_the_training_faces(
    engine: Engine, facing_photo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rule 44: a face under `trained_face_px` in the pixels the models were given is said after the
    models' reason, and printed as a note; the same photo at its own size is not. A large picture
    decoded smaller than its file (over `max_decoded_side`) is judged by the size decoded."""
    floor = engine.settings.verdict.trained_face_px
    as_it_is = engine.analyze(facing_photo)
    assert min(as_it_is.result.frames[0].faces[0].box[2:]) >= floor
    assert as_it_is.caveats == [] and "trained on were" not in as_it_is.result.reason
    small = tmp_path / "small.png"
    Image.open(facing_photo).reduce(3).save(small)
    analysis = engine.analyze(small)
    (face,) = analysis.result.frames[0].faces
    caveat = SMALL_FACE_CAVEAT.format(person=1, size=min(face.box[2:]), floor=floor)
    assert min(face.box[2:]) < floor and analysis.caveats == [caveat]
    assert analysis.result.reason.endswith(f"; {caveat}") and not analysis.result.reason.startswith("person 1's")
    run = run_cli("analyze", str(small))
    assert run.returncode == 0 and f"  note: {caveat}" in run.stderr.splitlines(), run.stderr

    big = tmp_path / "big.png"
    Image.open(facing_photo).resize((512, 512)).save(big)
    monkeypatch.setattr(
        engine, "settings", replace(engine.settings, media=replace(engine.settings.media, max_decoded_side=100))
    )
    analysis = engine.analyze(big)
    (face,) = analysis.result.frames[0].faces
    assert min(face.box[2:]) > 2 * floor  # in the file's own pixels
    (small_face,) = [caveat for caveat in analysis.caveats if " px across " in caveat]
    assert small_face.startswith("person 1's face is ") and int(small_face.split()[4]) < floor


def test_a_verdict_says_when_its_face_has_no_colour(engine: Engine, facing_photo: Path, tmp_path: Path) -> None:
    """Rule 117: the models trained on faces in colour only, and rank black-and-white photos worse.
    A black-and-white copy of a real photo says so after the models' reason, also as a note on the
    command line, and saved as a colour JPEG still does; the photo in colour does not."""
    caveat = COLOURLESS_CAVEAT.format(person=1)
    section_title = caveat.split("model card: '")[1].rstrip("')")
    assert f"\n## {section_title}\n" in (REPO_ROOT / "models" / "MODEL_CARD.md").read_text()
    assert engine.analyze(facing_photo).caveats == []
    grey = tmp_path / "grey.png"
    Image.open(facing_photo).convert("L").save(grey)
    analysis = engine.analyze(grey)
    assert analysis.caveats == [caveat] and analysis.result.reason.endswith(f"; {caveat}")
    run = run_cli("analyze", str(grey))
    assert run.returncode == 0 and f"  note: {caveat}" in run.stderr.splitlines(), run.stderr
    grey_jpeg = tmp_path / "grey.jpg"
    Image.open(grey).convert("RGB").save(grey_jpeg, quality=75)
    assert engine.analyze(grey_jpeg).caveats == [caveat]


def test_a_verdict_says_when_its_face_is_turned_away_from_the_camera(
    engine: Engine, shared_data: Path, facing_photo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rule 131: faces turned away from the camera are ranked worse and their fakes found less, so a
    real photo of a face in profile says so after the models' reason, also as a note on the command
    line, without changing its label; a photo of a face turned towards the camera does not."""
    caveat = TURNED_FACE_CAVEAT.format(person=1)
    section_title = caveat.split("model card: '")[1].rstrip("')")
    assert f"\n## {section_title}\n" in (REPO_ROOT / "models" / "MODEL_CARD.md").read_text()
    assert engine.analyze(facing_photo).caveats == []
    profile = shared_data / "swap-faces" / "real" / "05595.jpg"  # a girl in a hood, seen from her left
    analysis = engine.analyze(profile)
    (face,) = analysis.faces[0]
    assert face_turn(face.landmarks) >= engine.settings.verdict.turned_face
    assert analysis.caveats == [caveat] and analysis.result.reason.endswith(f"; {caveat}")
    run = run_cli("analyze", str(profile))
    assert run.returncode == 0 and f"  note: {caveat}" in run.stderr.splitlines(), run.stderr
    verdict = replace(engine.settings.verdict, turned_face=0.0)  # 0 says nothing
    monkeypatch.setattr(engine, "settings", replace(engine.settings, verdict=verdict))
    unsaid = engine.analyze(profile)
    assert unsaid.caveats == [] and unsaid.result.verdict == analysis.result.verdict


def test_a_toned_black_and_white_face_is_uncertain_and_says_why(
    engine: Engine, shared_data: Path, tmp_path: Path
) -> None:
    """Rules 118-121: a sepia copy of a real photo (colour that follows brightness alone) makes its
    person and the photo `uncertain` and says why, as PNG and as JPEG at 95 and 90 (at 75 this
    face is missed: JPEG blurs colour more than brightness); the photo in colour, and the same
    photo graded warm (a colour filter, not a tone), say nothing of it."""
    photo = sorted((shared_data / "swap-faces" / "real").iterdir())[1]  # one face, about 130 px
    caveat = TONED_CAVEAT.format(person=1)
    section_title = caveat.split("model card: '")[1].rstrip("')")
    assert f"\n## {section_title}\n" in (REPO_ROOT / "models" / "MODEL_CARD.md").read_text()
    colour = np.asarray(Image.open(photo).convert("RGB"))
    sepia = Image.fromarray(toned(colour))
    sepia.save(tmp_path / "sepia.png")
    Image.fromarray(warmed(colour)).save(tmp_path / "warm.png")
    for quality in (95, 90):
        sepia.save(tmp_path / f"sepia{quality}.jpg", quality=quality)
    for name in ["sepia.png", "sepia95.jpg", "sepia90.jpg"]:
        analysis = engine.analyze(tmp_path / name)
        (person,) = analysis.result.tracks
        assert (analysis.result.verdict, person.verdict) == ("uncertain", "uncertain"), name
        assert caveat in analysis.caveats and caveat in analysis.result.reason, name
    for picture in [photo, tmp_path / "warm.png"]:
        analysis = engine.analyze(picture)
        assert caveat not in analysis.caveats and "toned" not in analysis.result.reason, picture.name


def test_a_face_softer_than_the_training_faces_is_uncertain_and_says_why(
    engine: Engine, facing_photo: Path, tmp_path: Path
) -> None:
    """Rules 47 and 103: a face whose focus (the crop's Laplacian variance) is under
    `trained_face_focus` makes its person and the photo `uncertain`, and the reason says why;
    the same photo as it is, sharp, gets a label of its own and no such caveat."""
    from pipeline.engine.faces import face_focus
    from pipeline.engine.verdict import SOFT_FACE_CAVEAT, SOFT_FACE_EVIDENCE, SOFT_FACE_UNCERTAIN

    floor = engine.settings.verdict.trained_face_focus
    sharp = engine.analyze(facing_photo)
    assert face_focus(sharp.faces[0][0].crop) >= floor and sharp.caveats == []
    blurred = tmp_path / "blurred.png"
    Image.open(facing_photo).convert("RGB").filter(ImageFilter.GaussianBlur(2)).save(blurred)
    analysis = engine.analyze(blurred)
    (face,) = analysis.faces[0]
    focus = round(face_focus(face.crop))
    caveat = SOFT_FACE_CAVEAT.format(
        person=1, focus=focus, floor=floor, evidence=SOFT_FACE_EVIDENCE["image"], consequence=SOFT_FACE_UNCERTAIN
    )
    assert face_focus(face.crop) < floor and analysis.caveats == [caveat]
    assert f"; {caveat}" in analysis.result.reason
    assert analysis.result.verdict == "uncertain" and analysis.result.tracks[0].verdict == "uncertain"
    # The models still read it (its probability is kept); blur pushes a real face towards fake.
    assert analysis.result.fake_probability is not None
    assert analysis.result.fake_probability > sharp.result.fake_probability


def test_a_video_whose_faces_are_soft_keeps_its_label_and_says_so(video_analysis, engine: Engine) -> None:
    """Rule 102: a video's faces are often softer than every training crop (this 1080p DFDC
    scene's are), and its fakes are still told apart: the caveat is said, the label stands."""
    from pipeline.engine.verdict import SOFT_FACE_EVIDENCE, SOFT_FACE_UNCERTAIN, ScoredFace, decide

    result = video_analysis.result
    (soft,) = [caveat for caveat in video_analysis.caveats if "softer than 95% of the faces" in caveat]
    assert SOFT_FACE_UNCERTAIN not in soft and f"; {soft}" in result.reason
    # It quotes what was measured nearest to a video's frames, not the photos' share.
    assert f"({SOFT_FACE_EVIDENCE['video']})" in soft and SOFT_FACE_EVIDENCE["image"] not in soft
    faces = [
        ScoredFace(position, face.track, face.fake_probability, face.model_scores)
        for position, frame in enumerate(result.frames)
        for face in frame.faces
    ]
    spec = engine.ensemble.spec.for_media(result.kind)
    unfloored = decide(faces, len(result.frames), result.aggregation, spec.decision_rule, focus_floor=0)
    assert result.verdict == unfloored.label
    assert [t.verdict for t in result.tracks] == [t.label for t in unfloored.tracks]


def test_flip_averaging_scores_a_face_and_its_mirror_image_alike(engine: Engine, shared_data: Path) -> None:
    from pipeline.engine.ensemble import Ensemble, predict_crops
    from pipeline.training.data import read_face

    faces = sorted((shared_data / "dfdc-faces" / "real").iterdir())[:2] + [
        shared_data / "dfdc-faces" / "fake" / "hoykxrljpv.jpg"
    ]
    crops = np.stack([read_face(path, 224) for path in faces])
    ensemble = Ensemble(engine.settings.models_dir)
    ensemble.spec = replace(ensemble.spec, flip_average=True)
    name = next(iter(ensemble.models))  # a CNN member (CLIP does not flip)
    size = ensemble.member(name).input_size
    plain = predict_crops(ensemble.models[name], crops, size, 16).reshape(-1)
    mirrored = predict_crops(ensemble.models[name], crops[:, :, ::-1], size, 16).reshape(-1)
    assert not np.allclose(plain, mirrored, atol=1e-3)  # the model alone is not mirror-symmetric
    np.testing.assert_allclose(ensemble.logits(name, crops), (plain + mirrored) / 2, atol=1e-4)
    np.testing.assert_allclose(ensemble.logits(name, crops[:, :, ::-1]), ensemble.logits(name, crops), atol=1e-4)


def test_the_cnns_score_through_tensorflow_lite_as_keras_scores_them(engine: Engine, shared_data: Path) -> None:
    """The engine scores the CNN members with TensorFlow Lite: the same logits as the Keras
    models to within 1e-4, converted once (cached, named by the file's content), and right when
    two threads (two dashboard tabs) score at once."""
    from concurrent.futures import ThreadPoolExecutor

    from pipeline.config import cache_dir
    from pipeline.engine.lite import LiteModel
    from pipeline.errors import PipelineError
    from pipeline.training.data import read_face

    faces = [path for label in ("real", "fake") for path in sorted((shared_data / "gan-faces" / label).iterdir())[:6]]
    crops = np.stack([read_face(path, 224) for path in faces])
    lite, by_keras = engine.ensemble, Ensemble(engine.settings.models_dir, 16, "keras")
    files = [Path(lite.member(name).file).stem for name in lite.models]
    converted = [path for stem in files for path in (cache_dir() / "tflite").glob(f"{stem}-*.tflite")]
    assert len(converted) == len(lite.models) == 2
    for name in lite.models:
        assert isinstance(lite.runners[name], LiteModel) and by_keras.runners[name] is by_keras.models[name]
        np.testing.assert_allclose(lite.logits(name, crops), by_keras.logits(name, crops), atol=1e-4)
    alone = {name: lite.logits(name, crops) for name in lite.models}
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda name: (name, lite.logits(name, crops)), [*lite.models] * 2))
    for name, logits in together:
        np.testing.assert_array_equal(logits, alone[name])
    stamps = [path.stat().st_mtime_ns for path in converted]
    cached = Ensemble(engine.settings.models_dir)  # loads the cached conversions, converts nothing
    assert [path.stat().st_mtime_ns for path in converted] == stamps
    # ... nor loads a Keras model, until an explanation map needs one (then the same map).
    assert cached.keras_loaded == []
    np.testing.assert_allclose(cached.logits(name, crops), alone[name])
    crop = crops[0]
    np.testing.assert_allclose(
        explanation_maps(cached, crop, [name])[name], explanation_maps(lite, crop, [name])[name], atol=1e-6
    )
    assert cached.keras_loaded == [name]
    # A damaged cached copy is converted again, not a traceback.
    converted[0].write_bytes(b"not a flatbuffer")
    again = Ensemble(engine.settings.models_dir)
    assert all(isinstance(runner, LiteModel) for runner in again.runners.values())
    assert again.keras_loaded == [next(iter(lite.models))]  # the damaged copy's member alone, to convert it
    LiteModel(converted[0].read_bytes())  # the cache holds a working copy again
    with pytest.raises(PipelineError, match="unknown CNN runtime"):
        Ensemble(engine.settings.models_dir, 16, "onnx")


def test_one_model_can_be_chosen(engine: Engine, shared_data: Path) -> None:
    name = engine.ensemble.member_names[0]
    result = engine.analyze(shared_data / "dfdc-faces" / "fake" / "hoykxrljpv.jpg", models=[name]).result
    assert set(result.model_scores) == {name} and list(result.models) == [name]


def test_gradcam_marks_the_face_for_every_model(video_analysis, engine: Engine) -> None:
    face = most_suspicious_faces(video_analysis)[0]
    maps = explanation_maps(engine.ensemble, face.crop)
    assert set(maps) == set(engine.ensemble.member_names)
    for heat in maps.values():
        assert heat.shape == (224, 224) and heat.dtype == np.float32
        assert heat.min() >= 0.0 and heat.max() <= 1.0 and heat.max() > 0.5
    pictures = face_overlays(engine.ensemble, video_analysis, face)
    for on_crop, on_frame in pictures.values():
        assert on_crop.shape == face.crop.shape
        preview = video_analysis.previews[face.position]
        assert on_frame.shape == preview.shape
        # The overlay changes the face's region of the frame and nothing far from it.
        x, y, side, _ = (round(v * video_analysis.preview_scale) for v in face.crop_box)
        changed = np.abs(on_frame.astype(int) - preview.astype(int)).sum(axis=2) > 0
        ys, xs = np.nonzero(changed)
        assert (
            changed.any()
            and xs.min() >= x - 2
            and xs.max() <= x + side + 2
            and ys.min() >= y - 2
            and ys.max() <= y + side + 2
        )


def test_overlay_blends_heat_over_the_picture() -> None:
    picture = np.full((8, 8, 3), 100, np.uint8)
    hot = overlay(picture, np.ones((8, 8), np.float32))
    cold = overlay(picture, np.zeros((8, 8), np.float32))
    assert hot[..., 0].mean() > cold[..., 0].mean() and cold[..., 2].mean() > hot[..., 2].mean()
    assert np.array_equal(overlay_on_frame(picture, (100, 100, 10, 10), np.ones((10, 10), np.float32)), picture)


def test_missing_models_say_how_to_get_them(tmp_path: Path) -> None:
    with pytest.raises(ModelsMissingError, match="train"):
        Ensemble(tmp_path)


@pytest.mark.parametrize(
    "damage",
    [
        {"false_alarm_curve": [["x", 1], [0.5]]},  # not (probability, share) pairs
        {"miss_curve": [[0.5]]},
        {"hit_curve": [["x", 1]]},  # the curves a verdict quotes beside them (rule 109)
        {"correct_rejection_curve": "abc"},
        {"members": [{"name": "a"}]},  # a member without its file
        {"members": None},
        {"an_unknown_setting": 1},
        {"offset": "x"},  # the calibration numbers every score uses
        {"temperature": None},
        {"pictures": 3},
        {"disagreement": "loudest"},  # no such measure of the members' disagreement
        # A picture's spec weighs other members than the ensemble holds.
        {"pictures": {"members": [{"name": "a", "file": "a.keras", "backbone": "mobilenetv2", "input_size": 32}]}},
    ],
)
def test_a_malformed_ensemble_description_is_one_clear_error(
    models_dir: Path, tmp_path: Path, damage: dict[str, object]
) -> None:
    raw = json.loads((models_dir / ENSEMBLE_FILE).read_text())
    (tmp_path / ENSEMBLE_FILE).write_text(json.dumps({**raw, **damage}))
    with pytest.raises(ModelsMissingError, match="is malformed"):
        EnsembleSpec.load(tmp_path / ENSEMBLE_FILE)


def test_how_disagreement_is_measured_is_part_of_the_ensembles_version(models_dir: Path) -> None:
    raw = json.loads((models_dir / ENSEMBLE_FILE).read_text())
    raw.pop("format")
    shipped = EnsembleSpec.from_dict(raw)
    # Saying the default aloud decides nothing new: the version, and stored results, are kept.
    assert EnsembleSpec.from_dict({**raw, "disagreement": "range"}).version == shipped.version
    weighed = EnsembleSpec.from_dict({**raw, "disagreement": "weighted_spread"})
    assert weighed.version != shipped.version
    assert EnsembleSpec.from_dict(weighed.to_dict()).disagreement == "weighted_spread"
    rule = weighed.decision_rule
    assert rule.disagreement == "weighted_spread" and dict(rule.member_weights) == weighed.weights


def test_an_ensemble_without_the_curves_beside_its_curves_keeps_its_version(models_dir: Path) -> None:
    """Rule 109 added curves a verdict quotes beside the false-alarm and miss curves; an ensemble
    made before them keeps its version, so the results stored under it stay reusable."""
    raw = json.loads((models_dir / ENSEMBLE_FILE).read_text())
    raw.pop("format")
    added = ("hit_curve", "correct_rejection_curve")
    shipped = EnsembleSpec.from_dict(raw)
    assert shipped.hit_curve and shipped.pictures is not None and shipped.pictures.correct_rejection_curve
    before = {k: v for k, v in copy.deepcopy(raw).items() if k not in added}
    before["pictures"] = {k: v for k, v in before["pictures"].items() if k not in added}
    for name in ("hit_curve_from", "correct_rejection_curve_from"):
        before["metrics"]["validation"].pop(name, None)
    old = EnsembleSpec.from_dict(before)
    # What its version hashes is exactly what it hashed before the curves existed.
    assert not set(added) & set(old.to_dict())
    assert old.decision_rule.hit_share(0.9) is None and old.decision_rule.correct_rejection_share(0.1) is None
    # The shipped curves decide what a verdict says, so they are part of its version.
    assert shipped.version != old.version and shipped.pictures.version != old.pictures.version


def test_a_verdict_names_where_its_curves_were_measured(models_dir: Path) -> None:
    # The shipped curves come from the cross-source table's held-out sources; an ensemble fitted
    # without them falls back on its validation mix, and its reasons must not claim otherwise.
    shipped = EnsembleSpec.load(models_dir / ENSEMBLE_FILE)
    rule = shipped.decision_rule
    assert (rule.false_alarm_faces, rule.miss_faces) == (UNSEEN_SOURCES, UNSEEN_SOURCES)
    assert (rule.hit_faces, rule.correct_rejection_faces) == (UNSEEN_SOURCES, UNSEEN_SOURCES)
    real = [ScoredFace(i, 0, 0.01, {"clip": 0.01, "mobilenetv2": 0.01}) for i in range(4)]
    reason = decide(real, sampled_frames=4, rule="mean", decision=rule).reason
    assert re.search(
        r"of fake faces and [0-9.]+% of real faces from sources the models never saw score 0.01 or less", reason
    )
    validation = {**shipped.metrics["validation"], "false_alarm_curve_from": "validation reals"}
    validation.pop("miss_curve_from")
    rule = replace(shipped, metrics={"validation": validation}).decision_rule
    assert (rule.false_alarm_faces, rule.miss_faces) == (VALIDATION_MIX, VALIDATION_MIX)
    real = [ScoredFace(i, 0, 0.01, {"clip": 0.01, "mobilenetv2": 0.01}) for i in range(4)]
    reason = decide(real, sampled_frames=4, rule="mean", decision=rule).reason
    assert "of fake faces from the validation mix" in reason and "never saw" not in reason


def test_a_model_file_that_hides_code_is_refused(tmp_path: Path) -> None:
    inputs = keras.Input((32, 32, 3))
    outputs = keras.layers.Lambda(lambda x: x[:, :1, 0, 0])(inputs)
    keras.Model(inputs, outputs).save(tmp_path / "evil.keras")
    EnsembleSpec((MemberSpec("evil", "evil.keras", "mobilenetv2", 32),)).save(tmp_path / ENSEMBLE_FILE)
    with pytest.raises(ModelsMissingError, match="refused to load evil.keras"):
        Ensemble(tmp_path)


def test_ensemble_file_round_trip(models_dir: Path, tmp_path: Path) -> None:
    spec = EnsembleSpec.load(models_dir / ENSEMBLE_FILE)
    spec.save(tmp_path / ENSEMBLE_FILE)
    assert EnsembleSpec.load(tmp_path / ENSEMBLE_FILE) == spec
    # The shipped ensemble weighs pictures with a spec of its own (v7.3), kept by the round trip;
    # one without writes no `pictures` and scores pictures as videos.
    assert spec.pictures is not None and spec.for_media("image") is spec.pictures
    assert spec.for_media("video") is spec and spec.pictures.weights != spec.weights
    videos_only = replace(spec, pictures=None)
    videos_only.save(tmp_path / ENSEMBLE_FILE)
    assert "pictures" not in json.loads((tmp_path / ENSEMBLE_FILE).read_text())
    assert EnsembleSpec.load(tmp_path / ENSEMBLE_FILE) == videos_only and videos_only.for_media("image") is videos_only
    assert spec.uncertain_low <= spec.threshold <= spec.uncertain_high
    assert all((models_dir / m.file).exists() for m in spec.members)
    assert all(m.gradcam_layer for m in spec.members if m.kind == KERAS)


def test_cli_writes_a_32_frame_timeline_and_gradcam(shared_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    video = shared_data / "videos" / "fake" / "0_aaqaifqrwn.mp4"
    run = run_cli("analyze", str(video), "--json", str(out), "--cam", str(tmp_path / "cam"))
    assert run.returncode == 0, run.stderr
    result = json.loads(out.read_text())
    assert result["file"] == "0_aaqaifqrwn.mp4" and result["kind"] == "video"
    assert len(result["frames"]) == 32
    assert {"file", "sha256", "kind", "verdict", "fake_probability", "model_scores", "frames", "timing"} <= set(result)
    face = next(f for frame in result["frames"] for f in frame["faces"])
    assert {"box", "track", "fake_probability", "model_scores"} <= set(face)
    assert sorted(p.name.split("_")[-1] for p in (tmp_path / "cam").iterdir()).count("crop.png") >= 2
    assert "0_aaqaifqrwn.mp4" in run.stdout and result["verdict"] in run.stdout
    # What video frames do to the CLIP member is said on the console, as a file's caveat is.
    assert result["reason"].endswith(f"; {VIDEO_FRAMES_CAVEAT}") and f"  note: {VIDEO_FRAMES_CAVEAT}" in run.stderr


def test_cli_turns_bad_input_into_one_line_each(shared_data: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 50)
    truncated = media_factory.truncate_copy(
        shared_data / "videos" / "fake" / "abofeumbvv.mp4", tmp_path / "cut.mp4", 0.05
    )
    bomb = media_factory.png_bomb(tmp_path / "bomb.png", 30_000, 30_000)
    broken_jpeg = tmp_path / "broken.jpg"
    broken_jpeg.write_bytes(
        (shared_data / "gan-faces" / "real" / os.listdir(shared_data / "gan-faces" / "real")[0]).read_bytes()[:300]
    )
    no_face = tmp_path / "coffee.png"
    from skimage import data

    cv2.imwrite(str(no_face), data.coffee()[..., ::-1])
    bad = [empty, text, truncated, bomb, broken_jpeg]
    run = run_cli("analyze", *map(str, bad), str(no_face), "--frames", "4", "--json", str(tmp_path / "out.json"))
    assert run.returncode == 1
    assert "Traceback" not in run.stderr
    errors = [line for line in run.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == len(bad), run.stderr
    for path, line in zip(bad, errors):
        assert str(path) in line
    assert f"{no_face}: no_face" in run.stderr
    results = json.loads((tmp_path / "out.json").read_text())
    assert [r.get("verdict") for r in results] == [None] * len(bad) + ["no_face"]
    assert [r["file"] for r in results] == [p.name for p in [*bad, no_face]]
    assert all(r["error"] for r in results[: len(bad)])


def test_kill_stops_analyze_and_keeps_the_files_done(shared_data: Path, tmp_path: Path) -> None:
    """`kill` (SIGTERM, as a batch system sends) while `analyze` works through several files
    stops it as Ctrl-C does: exit 130, one line, and the JSON of every file done written. All 25
    shared fake clips: the signal goes once the first result is read, and on a busy machine
    `analyze` finished three more short clips before it arrived (a fresh clone's run, 2026-12-07)."""
    clips = [shared_data / "videos" / "fake" / name for name in sorted(os.listdir(shared_data / "videos" / "fake"))]
    assert len(clips) == 25
    out = tmp_path / "done.json"
    run = start_cli("analyze", *map(str, clips), "--frames", "4", "--json", str(out))
    first, stdout, stderr = terminate_after(run, lambda process: first_stdout_line(process, CLI_TIMEOUT_S))
    assert run.returncode == 130, stderr
    assert "Traceback" not in stderr and stderr.strip().splitlines()[-1] == "interrupted", stderr
    printed = [Path(line.split("\t")[0]).name for line in (first + stdout).splitlines() if "\t" in line]
    done = json.loads(out.read_text())
    assert 1 <= len(printed) < len(clips)
    assert [entry["file"] for entry in done] == printed and all(entry["verdict"] for entry in done)


def test_benchmark_prints_a_table_of_stage_timings(shared_data: Path, models_dir: Path) -> None:
    from pipeline.engine.bench import run_benchmark

    table = run_benchmark([shared_data / "videos" / "fake" / "0_aaqaifqrwn.mp4"], frames=4, repeat=1)
    assert (
        "| video | size | faces | found / full-res faces | hash (s) | decode (s) | provenance (s) | detect (s) | score (s) | verdict (s) | total (s) |"
        in table
    )
    assert "| 0_aaqaifqrwn.mp4 | 256x256 | 4 | 4/4 |" in table
    assert "Face recall against MTCNN at full resolution on the same frames: 4/4 = 100.0% (target: 95%)." in table
    assert "target: 8 s" in table
    assert re.search(r"Loading MTCNN, the ensemble and the CLIP encoder once per process: \d+\.\d s", table)
    assert re.search(
        r"One photo \(portrait_1024.jpg, 1024x1024, one face\), warm: median \d+\.\d\d s \(target: 1.5 s\)", table
    )


def _in_heap(address: int) -> bool:
    """Whether an address lies in the process's brk heap (glibc's main arena)."""
    for line in Path("/proc/self/maps").read_text().splitlines():
        if line.endswith("[heap]"):
            low, high = (int(part, 16) for part in line.split()[0].split("-"))
            if low <= address < high:
                return True
    return False


@pytest.mark.skipif(
    platform.libc_ver()[0] != "glibc" or not Path("/proc/self/maps").exists(),
    reason="glibc's allocator, seen through Linux's /proc",
)
def test_an_engine_keeps_large_frames_out_of_the_heap() -> None:
    # Freeing a 6 MB block raises glibc's default (dynamic) mmap threshold past 4 MB, so the
    # next frame-sized block would come from the heap and stay resident after it is freed.
    # An engine fixes the threshold at 1 MB, so it gets a mapping of its own. Checked in a
    # process of its own: in this one, earlier tests have scored faces, and TensorFlow Lite's
    # freed buffers leave holes in the heap that a frame may reuse (reuse, not growth: the heap
    # stays within 1 MB over 30 analyses; see the stop's note).
    script = (
        "import numpy as np\n"
        "from pipeline.engine.analyze import Engine\n"
        "from tests.test_engine import _in_heap\n"
        "Engine()\n"
        "freed = np.ones(6 * 1024**2, np.uint8)\n"
        "del freed\n"
        "frame = np.ones(4 * 1024**2, np.uint8)\n"
        "print('in heap' if _in_heap(frame.ctypes.data) else 'mapped')\n"
    )
    run = run_python("-c", script, timeout=300)
    assert run.returncode == 0 and run.stdout.strip() == "mapped", run.stderr[-2000:]
