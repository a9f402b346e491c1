"""What makes verdicts hold on media from sources the models never saw: the CLIP member with the
real encoder, self-blending masks from each face's own landmarks, the crowd rule, and the
cross-source table on a small subset."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline.engine.analyze import Engine
from pipeline.engine.clip import PATCH_MAX, ClipEncoder, ClipProbe, _tower_to_block
from pipeline.engine.ensemble import CLIP_PROBE, ENSEMBLE_FILE, Ensemble, EnsembleSpec, MemberSpec, spread_rows
from pipeline.engine.explain import explanation_maps
from pipeline.engine.faces import face_focus
from pipeline.engine.media import sha256_file
from pipeline.results import PATCH_SCORE_MAP
from pipeline.training.augment import FACE_PARTS, face_mask, part_mask, self_blend, template_landmarks
from pipeline.training.data import load_samples, read_face, read_rgb
from pipeline.training.probe import fit_probe
from tests.command_line import run_cli
from tests.subsets import copy_subset

COLLAGES = 20
FACES_PER_COLLAGE = 20
COLLAGE_SIDE = 150


def _subset(shared_data: Path, tmp_path: Path, source: str, per_label: int, split: str = "train") -> Path:
    """A small copy of a shared source (first files of a split per label), with its metadata."""
    return copy_subset(shared_data / source, tmp_path / source, per_label, (split,))


@pytest.fixture(scope="module")
def encoder() -> ClipEncoder:
    return ClipEncoder()


def _probe_ensemble(probes: dict[str, ClipProbe], models: Path) -> Ensemble:
    """An ensemble of the named `probes` in the folder `models`, loaded as the engine loads one."""
    models.mkdir()
    members = []
    for name, probe in probes.items():
        (models / f"{name}.json").write_text(json.dumps(probe.to_json()))
        file = models / f"{name}.json"
        members.append(MemberSpec(name, file.name, "clip-vit-b16", 224, kind=CLIP_PROBE, sha256=sha256_file(file)))
    EnsembleSpec(members=tuple(members)).save(models / ENSEMBLE_FILE)
    return Ensemble(models)


def test_the_clip_member_scores_a_face_with_the_real_encoder(
    encoder: ClipEncoder, shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A probe fitted here on the real encoder's features of 24 faces, shipped as a one-member
    ensemble: the engine's scores are the probe on the encoder's features of the crop. Two
    probes (class token and patches) share one encoder pass over the same faces of each person,
    and each scores them as it does alone."""
    train = load_samples(shared_data / "gan-faces", "train")
    train = [s for s in train if s.label == 0][:12] + [s for s in train if s.label == 1][:12]
    crops = np.stack([read_face(s.path, 224) for s in train])
    features = encoder.features(crops, [5])
    assert features.cls.shape == (24, 12, 768) and features.embed.shape == (24, 512)
    assert features.patches_of(5).shape == (24, 196, 768)
    assert np.allclose(features.patch_mean[:, 4], features.patches_of(5).mean(axis=1), atol=1e-4)
    assert not np.allclose(features.cls[:, 4], features.cls[:, 11], atol=1e-2)  # blocks differ
    with pytest.raises(ValueError, match="between 1 and 12"):
        features.named("cls", 0)  # not a silent read of the last block
    labels = np.asarray([s.label for s in train])
    probe = fit_probe(features.named("cls", 5), labels, ["gan-faces"] * 24, "cls", regularization=0.5, blocks=(5,))
    assert ((probe.logits(features) > 0) == labels).mean() >= 0.9  # it learned these faces

    ensemble = _probe_ensemble({"clip": probe}, tmp_path / "models")
    face = read_face(next(s.path for s in load_samples(shared_data / "gan-faces", "test") if s.label == 1), 224)
    scores = ensemble.score(face[None])
    expected = 1 / (1 + np.exp(-probe.logits(encoder.features(face[None]))))
    assert scores.members["clip"] == pytest.approx(expected, abs=1e-5)
    assert scores.ensemble == pytest.approx(expected, abs=1e-5)
    heat = explanation_maps(ensemble, face)["clip"]
    assert heat.shape == (224, 224) and heat.dtype == np.float32 and heat.min() >= 0 and heat.max() <= 1

    patches = ClipProbe(PATCH_MAX, probe.mean, probe.scale, probe.weights, probe.bias, blocks=(5,))
    pair = _probe_ensemble({"clip": probe, "patches": patches}, tmp_path / "pair")
    encoded: list[int] = []
    encode = pair.encoder.features
    monkeypatch.setattr(
        pair.encoder, "features", lambda crops, blocks=(): encoded.append(len(crops)) or encode(crops, blocks)
    )
    people = np.repeat([0, 1], 12)
    together = pair.score(crops, people=people, costly_per_person=3)
    assert encoded == [6]  # one pass, three faces of each person
    rows = spread_rows(people, 3)
    for name, alone in (("clip", probe), ("patches", patches)):
        scored = together.members[name]
        assert np.flatnonzero(np.isfinite(scored)).tolist() == sorted(rows.tolist())
        assert scored[rows] == pytest.approx(1 / (1 + np.exp(-alone.logits(features)[rows])), abs=1e-5)
    assert together.seconds["clip"] == together.seconds["patches"]  # the shared pass's time, split
    encoded.clear()
    assert list(explanation_maps(pair, crops[0], ["patches", "clip"])) == ["patches", "clip"]
    assert encoded == [1]  # both maps from one pass


def test_a_per_source_probe_is_the_mean_of_one_probe_per_source(encoder: ClipEncoder, shared_data: Path) -> None:
    """`per_source` (rule 86): one probe per training source, a pseudo-fake (`SOURCE/self-blend`)
    with its crop's source, folded into one linear probe whose logit is exactly their mean, on the
    real encoder's features of faces of two sources; not the pooled fit."""
    from pipeline.training.probe import fit_per_source_probe

    faces, sources = [], []
    for source in ("gan-faces", "swap-faces"):
        train = load_samples(shared_data / source, "train")
        chosen = [s for s in train if s.label == 0][:8] + [s for s in train if s.label == 1][:8]
        faces += [read_face(s.path, 224) for s in chosen]
        sources += [f"{source}/self-blend" if i == 15 else source for i in range(16)]
    labels = np.tile(np.repeat([0, 1], 8), 2)
    features = encoder.features(np.stack(faces), [5]).named("cls", 5)
    folded = fit_per_source_probe(features, labels, sources, "cls", 0.5, (5,))
    each = [
        fit_probe(features[rows], labels[rows], [sources[i] for i in rows], "cls", 0.5, (5,))
        for rows in (np.arange(16), np.arange(16, 32))
    ]
    expected = np.mean([probe.logits_of(features) for probe in each], axis=0)
    assert folded.block == 5 and folded.logits_of(features) == pytest.approx(expected, abs=1e-4)
    pooled = fit_probe(features, labels, sources, "cls", 0.5, (5,))
    assert not np.allclose(folded.logits_of(features), pooled.logits_of(features), atol=1e-2)
    assert ClipProbe.from_json(json.loads(json.dumps(folded.to_json()))).logits_of(features) == pytest.approx(
        expected, abs=1e-3
    )


def test_a_probe_on_several_blocks_reads_their_class_tokens_side_by_side(
    encoder: ClipEncoder, shared_data: Path, tmp_path: Path
) -> None:
    """Rule 92's all-block member: a probe fitted on blocks 1-12's class tokens side by side
    scores a face in the engine as its weights read those tokens, with the whole tower run once;
    its explanation map adds each block's patch tokens read through that block's part of the
    weights; its file names its blocks, and a file whose weights do not fit them is refused."""
    blocks = tuple(range(1, 13))
    train = load_samples(shared_data / "gan-faces", "train")
    train = [s for s in train if s.label == 0][:10] + [s for s in train if s.label == 1][:10]
    crops = np.stack([read_face(s.path, 224) for s in train])
    features = encoder.features(crops, blocks)
    side_by_side = features.cls.reshape(len(crops), -1)  # block 1's 768, then block 2's, ...
    labels = np.asarray([s.label for s in train])
    probe = fit_probe(side_by_side, labels, ["gan-faces"] * 20, "cls", 0.5, blocks)
    assert probe.blocks == blocks and probe.weights.shape == (12 * 768,)
    assert probe.logits(features) == pytest.approx(probe.logits_of(side_by_side), abs=1e-6)
    with pytest.raises(ValueError, match="not one"):
        probe.block  # noqa: B018 (a probe on several blocks has no one block to give)

    ensemble = _probe_ensemble({"clip_blocks": probe}, tmp_path / "models")
    assert ensemble.encoder.last_block == 12
    face = read_face(next(s.path for s in load_samples(shared_data / "gan-faces", "test") if s.label == 1), 224)
    alone = encoder.features(face[None], blocks)
    expected = 1 / (1 + np.exp(-probe.logits_of(alone.cls.reshape(1, -1))))
    assert ensemble.score(face[None]).members["clip_blocks"] == pytest.approx(expected, abs=1e-5)
    # The map: the weights' slice for block b, in raw units, read on block b's patch tokens, summed.
    direction = (probe.weights / probe.scale).reshape(12, 768)
    pushes = sum(alone.patches_of(b)[0] @ direction[b - 1] for b in blocks).reshape(14, 14)
    assert probe.patch_map([alone.patches_of(b)[0] for b in blocks]) == pytest.approx(pushes, rel=1e-4, abs=1e-4)
    assert not np.allclose(
        pushes, (alone.patches_of(12)[0] @ direction[11]).reshape(14, 14), atol=1e-2
    )  # every block counts
    heat = explanation_maps(ensemble, face)["clip_blocks"]
    assert heat.shape == (224, 224) and heat.max() <= 1 and heat.min() >= 0

    saved = probe.to_json()
    assert saved["blocks"] == list(blocks) and "block" not in saved
    assert ClipProbe.from_json(json.loads(json.dumps(saved))).logits(alone) == pytest.approx(
        probe.logits(alone), abs=1e-3
    )
    for broken, message in (
        ({**saved, "blocks": [5, 3]}, "must increase"),
        ({**saved, "blocks": [1, 2]}, "9216 weights for 2 blocks"),
        ({**saved, "block": 5}, "not both"),
        ({**saved, "feature": PATCH_MAX}, "after one block"),
    ):
        with pytest.raises(ValueError, match=message):
            ClipProbe.from_json(broken)


def test_clip_features_are_the_exact_integer_result_on_every_cpu(encoder: ClipEncoder, shared_data: Path) -> None:
    """The int8 tower's products run uint8 by uint8, which onnxruntime computes exactly on every
    CPU (uint8 by int8 saturates on x86 CPUs without VNNI, and the same face got other features
    there): block 5's class tokens of two faces lie near the reference made on an AVX-512 CPU.
    Near, not equal: the float parts between the products (layer norms, softmax, GELU) run other
    kernels on CPUs without AVX-512, and re-quantising each block's activations carries those
    last-bit differences on. Measured on an AMD EPYC with AVX2 only: 4% away (relative L2), the
    probe's logit 0.06 away; with the saturating products this guards against, 118% and 0.8-1.1."""
    import onnx

    graph = _tower_to_block(encoder.path, 5)
    model = onnx.load_from_string(graph)
    weights = {w.name: w.data_type for w in model.graph.initializer}
    products = [n for n in model.graph.node if n.op_type == "MatMulInteger"]
    assert products and all(weights[n.input[1]] == onnx.TensorProto.UINT8 for n in products)
    samples = load_samples(shared_data / "gan-faces", "train")[:2]
    tokens = encoder.features(np.stack([read_face(s.path, 224) for s in samples])).cls[:, 4]
    reference = np.load(Path(__file__).parent / "fixtures" / "clip_block5_reference.npy")
    relative = np.linalg.norm(tokens - reference) / np.linalg.norm(reference)
    assert relative < 0.15, relative


def test_the_cut_clip_tower_is_kept_and_read_back(
    encoder: ClipEncoder,
    shared_data: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The tower cut after block 5 is made once and kept in the cache folder; the next encoder
    reads it back without cutting again. A damaged copy is cut again with a warning; a folder where
    the copy should be, or a cache folder that cannot be written, costs a cut and a warning on each
    load: the same features every way, and the same as the whole tower's after its block 5."""
    from pipeline.config import CACHE_DIR_ENV

    samples = load_samples(shared_data / "gan-faces", "train")[:2]
    crops = np.stack([read_face(s.path, 224) for s in samples])
    whole = encoder.features(crops).cls[:, 4]
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "cache"))
    first = ClipEncoder(last_block=5)
    (kept,) = (tmp_path / "cache" / "onnx").glob("clip_encoder.int8-*-blocks5-*.onnx")
    stamp = kept.stat().st_mtime_ns
    cut = first.features(crops).cls
    assert cut.shape == (2, 5, 768) and np.allclose(cut[:, 4], whole, atol=1e-5)

    assert np.array_equal(ClipEncoder(last_block=5).features(crops).cls, cut)
    assert kept.stat().st_mtime_ns == stamp  # read back, not cut again

    kept.write_bytes(b"half a file")
    with caplog.at_level("WARNING", logger="pipeline.engine.clip"):
        assert np.array_equal(ClipEncoder(last_block=5).features(crops).cls, cut)
    assert any("is damaged; cutting it again" in r.getMessage() for r in caplog.records)
    assert kept.stat().st_size > 10_000_000

    kept.unlink()
    kept.mkdir()  # a folder where the cut should be: cut for this load, with a warning
    caplog.clear()
    with caplog.at_level("WARNING", logger="pipeline.engine.derived"):
        assert np.array_equal(ClipEncoder(last_block=5).features(crops).cls, cut)
    assert any("could not keep the CLIP tower cut after block 5" in r.getMessage() for r in caplog.records)
    assert kept.is_dir()

    blocked = tmp_path / "blocked"
    blocked.write_text("a file, not a folder")
    monkeypatch.setenv(CACHE_DIR_ENV, str(blocked))
    caplog.clear()
    with caplog.at_level("WARNING", logger="pipeline.engine.derived"):
        assert np.array_equal(ClipEncoder(last_block=5).features(crops).cls, cut)
    assert any("could not keep the CLIP tower cut after block 5" in r.getMessage() for r in caplog.records)
    assert blocked.read_text() == "a file, not a folder"


def test_a_clip_probe_names_the_block_it_reads(models_dir: Path) -> None:
    """A probe says which block's output it reads; one written before blocks were read (no
    `block`) read the last, and a block the tower does not have is refused."""
    shipped = json.loads((models_dir / "clip.json").read_text())
    old = {k: v for k, v in shipped.items() if k != "block"}
    assert ClipProbe.from_json(old).block == 12
    assert ClipProbe.from_json({**shipped, "block": 5}).to_json()["block"] == 5
    for block in (0, 13):
        with pytest.raises(ValueError, match="between 1 and 12"):
            ClipProbe.from_json({**shipped, "block": block})


def test_a_faces_clip_features_do_not_depend_on_the_faces_beside_it(encoder: ClipEncoder, shared_data: Path) -> None:
    """The int8 encoder quantises activations per run: features cached for training (many crops
    at once) and the engine's (one person's faces) must both be each face's own."""
    samples = load_samples(shared_data / "dfdc-faces", "test")[:8]
    crops = np.stack([read_face(s.path, 224) for s in samples])
    together = encoder.features(crops)
    for i in (0, 5):
        alone = encoder.features(crops[i : i + 1])
        assert np.allclose(alone.cls[0], together.cls[i], atol=1e-4)  # every block
        assert np.allclose(alone.embed[0], together.embed[i], atol=1e-4)


def test_the_landmark_model_loads_without_tensorflows_notices(
    shared_data: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """Loading the face mesh model and its first use warn nothing and print nothing: TensorFlow's
    notice that tf.lite moves to another package and XNNPACK's line are not for the person
    reading stderr (`prepare` loads it)."""
    import warnings

    import tensorflow  # noqa: F401  (its own import lines on stderr are not what this checks)

    from pipeline.training.landmarks import FaceLandmarks

    capfd.readouterr()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        photo = read_face(sorted((shared_data / "swap-faces" / "real").iterdir())[0], 256)
        points = FaceLandmarks().find(photo, (48, 48, 160, 160), (0, 0, 256, 256), 256)
    assert points is not None and points.shape == (468, 2)
    assert [str(w.message) for w in caught] == []
    assert capfd.readouterr().err == ""


def test_self_blend_masks_from_each_faces_landmarks_lie_on_the_face(
    shared_data: Path, tmp_path: Path, engine: Engine
) -> None:
    from pipeline.training.prepare import prepare
    from pipeline.training.sources import face_landmarks

    source = _subset(shared_data, tmp_path, "swap-faces", 4)
    prepare(source, tmp_path / "prepared")
    rng = np.random.default_rng(0)
    for sample in load_samples(tmp_path / "prepared", None):
        assert sample.landmarks is not None
        crop = read_face(sample.path, 160)
        points = face_landmarks(sample, 160)
        assert points.shape == (468, 2)
        mask = face_mask((160, 160), points, rng)
        # The mask's weight sits on the face: inside the mesh's outline (a few pixels of margin
        # for the blur and the random warp), around the mesh's centre, with its boundary inside
        # the picture at the cheeks and the chin (the tight crop cuts the forehead: the top may
        # be covered).
        hull = np.zeros((160, 160), np.uint8)
        cv2.fillConvexPoly(hull, cv2.convexHull(np.round(points).astype(np.int32)), 1)
        inside = cv2.dilate(hull, np.ones((15, 15), np.uint8)).astype(bool)
        assert mask[inside].sum() / mask.sum() > 0.9
        for band in (mask[:, :8], mask[:, -8:], mask[-8:, :]):  # left, right, bottom edges
            assert (band < 0.2).mean() > 0.3  # the boundary is crossed inside the picture
        assert 0.3 < (mask > 0.5).mean() < 0.9
        ys, xs = np.mgrid[0:160, 0:160]
        centre = np.array([(mask * xs).sum(), (mask * ys).sum()]) / mask.sum()
        hull_centre = np.array([(hull * xs).sum(), (hull * ys).sum()]) / hull.sum()
        assert np.linalg.norm(centre - hull_centre) < 20
        inside = mask > 0.5
        # The engine's own face box of this picture holds the mesh's centre.
        box = engine.analyze(source / sample.path.relative_to(tmp_path / "prepared").with_suffix(".jpg")).result
        assert box.frames[0].faces
        blended = self_blend(crop, points, rng)
        changed = np.abs(blended.astype(int) - crop).sum(axis=2) > 0
        assert changed[inside].mean() > changed[~inside].mean()


def _part_region(points: np.ndarray, part: str, size: int, grow: float) -> np.ndarray:
    """Where `part` of the face lies: the hulls of its regions of the mesh grown `grow` times."""
    region = np.zeros((size, size), np.uint8)
    for indices in FACE_PARTS[part]:
        chosen = points[list(indices)]
        centre = chosen.mean(axis=0)
        hull = cv2.convexHull(np.round(centre + (chosen - centre) * grow).astype(np.int32))
        cv2.fillConvexPoly(region, hull, 1)
    return region.astype(bool)


def test_part_self_blend_masks_lie_on_their_part_of_the_face(shared_data: Path, tmp_path: Path) -> None:
    """Rule 66's pseudo-fakes of one part (eyes, nose, mouth): the mask's weight sits on that part
    of this face's own mesh, not on the others, and covers less than half the face; with five
    template points, about the part's points."""
    from pipeline.training.prepare import prepare
    from pipeline.training.sources import face_landmarks

    prepare(_subset(shared_data, tmp_path, "swap-faces", 3), tmp_path / "prepared")
    rng = np.random.default_rng(0)
    samples = load_samples(tmp_path / "prepared", None)
    assert len(samples) == 6
    for sample in samples:
        points = face_landmarks(sample, 160)
        face = face_mask((160, 160), points, rng)
        for part in FACE_PARTS:
            mask = part_mask((160, 160), points, part, rng)
            assert mask.max() == pytest.approx(1.0)
            # Grown up to 1.5 times, then warped and blurred: within twice the part's outline.
            assert mask[_part_region(points, part, 160, 2.0)].sum() / mask.sum() > 0.9
            for other in set(FACE_PARTS) - {part}:
                assert mask[_part_region(points, other, 160, 1.0)].mean() < 0.2
            assert (mask > 0.5).sum() < 0.5 * (face > 0.5).sum()  # both eyes and brows, grown: the most
            crop = read_face(sample.path, 160)
            changed = np.abs(self_blend(crop, points, rng, part=part).astype(int) - crop).sum(axis=2) > 0
            on_part = _part_region(points, part, 160, 1.0)
            assert changed[on_part].mean() > 5 * max(changed[~_part_region(points, part, 160, 2.0)].mean(), 0.01)
    template = template_landmarks("gan-faces", 160)
    ys, xs = np.mgrid[0:160, 0:160]
    for part, near in (("eyes", template[:2]), ("nose", template[2:3]), ("mouth", template[3:])):
        mask = part_mask((160, 160), template, part, rng)
        centre = np.array([(mask * xs).sum(), (mask * ys).sum()]) / mask.sum()
        assert np.linalg.norm(centre - near.mean(axis=0)) < 8, part


def _collage(faces: list[np.ndarray]) -> np.ndarray:
    columns, gap = 5, 30
    rows = -(-len(faces) // columns)
    cell = COLLAGE_SIDE + gap
    canvas = np.full((rows * cell + gap, columns * cell + gap, 3), 235, np.uint8)
    for i, face in enumerate(faces):
        x, y = gap + (i % columns) * cell, gap + (i // columns) * cell
        canvas[y : y + COLLAGE_SIDE, x : x + COLLAGE_SIDE] = cv2.resize(
            face, (COLLAGE_SIDE, COLLAGE_SIDE), interpolation=cv2.INTER_AREA
        )
    return canvas


def test_a_crowd_of_real_faces_is_not_called_fake(engine: Engine, shared_data: Path, tmp_path: Path) -> None:
    """20 collages of 20 real test faces each, drawn from every source's real test photos: at
    least 95% are `real` or `uncertain`, whatever per-face false alarms there are."""
    reals = [
        s.path
        for source in ("dfdc-faces", "gan-faces", "swap-faces")
        for s in load_samples(shared_data / source, "test")
        if s.label == 0
    ]
    rng = np.random.default_rng(2026)
    verdicts = []
    for index in range(COLLAGES):
        picks = rng.choice(len(reals), FACES_PER_COLLAGE, replace=False)
        faces = [cv2.cvtColor(cv2.imread(str(reals[i])), cv2.COLOR_BGR2RGB) for i in picks]
        path = tmp_path / f"crowd_{index}.png"
        cv2.imwrite(str(path), cv2.cvtColor(_collage(faces), cv2.COLOR_RGB2BGR))
        result = engine.analyze(path).result
        assert len(result.tracks) >= FACES_PER_COLLAGE - 2, index  # the faces were found
        verdicts.append(result.verdict)
    assert sum(v in ("real", "uncertain") for v in verdicts) >= 0.95 * COLLAGES, verdicts


def test_reshared_crops_are_degraded_the_same_way_on_every_run(
    shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cross-source table's re-shared crops: the same size and labels, visibly degraded, a
    different degradation per crop, and bit for bit the same when made again from scratch."""
    from pipeline.config import CACHE_DIR_ENV
    from pipeline.engine.ensemble import jpeg_round_trip
    from pipeline.training.sources import reshared_samples

    samples = load_samples(_subset(shared_data, tmp_path, "swap-faces", 4, "val"), "val")
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "first"))
    first = reshared_samples(samples)
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "second"))
    second = reshared_samples(samples)
    assert [(s.label, s.group) for s in first] == [(s.label, s.group) for s in samples]
    changes = []
    for sample, copy, again in zip(samples, first, second, strict=True):
        assert copy.path != again.path and str(tmp_path / "first") in str(copy.path)
        original, degraded = cv2.imread(str(sample.path)), cv2.imread(str(copy.path))
        assert degraded.shape == original.shape
        assert np.array_equal(degraded, cv2.imread(str(again.path)))
        change = float(np.abs(degraded.astype(float) - original.astype(float)).mean())
        # Softer than the original's own JPEG noise at a high quality: degraded, not a copy.
        assert change > np.abs(jpeg_round_trip(original, 95).astype(float) - original.astype(float)).mean()
        changes.append(round(change, 3))
    assert len(set(changes)) == len(changes)  # each crop its own draw


def test_the_probe_can_train_on_the_cnns_degraded_views_of_its_crops(
    shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`augmented_views`: each view is the CNNs' own augmentation of every training crop, made
    once per crop and view, the same from scratch; the probe trains on the crops and their views
    (their features computed by the real encoder) and comes out different."""
    from pipeline.config import CACHE_DIR_ENV
    from pipeline.training.recipe import train_recipe_member
    from pipeline.training.sources import augmented_samples

    folder = _subset(shared_data, tmp_path, "gan-faces", 6)
    samples = load_samples(folder, "train")
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "again"))
    again = augmented_samples(samples, 0)
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "cache"))
    views = [augmented_samples(samples, view) for view in (0, 1)]
    for sample, first, second, remade in zip(samples, *views, again, strict=True):
        original = cv2.imread(str(sample.path))
        pictures = [cv2.imread(str(v.path)) for v in (first, second)]
        assert (first.label, first.group) == (sample.label, sample.group)
        assert all(p.shape == original.shape for p in pictures)
        assert np.array_equal(pictures[0], cv2.imread(str(remade.path)))
        assert not np.array_equal(pictures[0], pictures[1])  # each view its own draw
    member = {"kind": "clip_probe", "name": "clip", "block": 5, "regularization": 0.5}
    plain = train_recipe_member(member, [str(folder)], tmp_path / "runs")
    augmented = train_recipe_member({**member, "name": "aug", "augmented_views": 2}, [str(folder)], tmp_path / "runs")
    for view in views:
        copies = view[0].path.parent.parent
        assert len(list((copies / "features" / "clip-blocks").glob("chunk-*.npz"))) == 1
    weights = [np.asarray(json.loads(t.path.read_text())["weights"]) for t in (plain, augmented)]
    assert not np.allclose(*weights)


def test_recompression_only_views_change_the_file_history_not_the_face(
    shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`augmented_settings` narrows the probe's degraded views: with every augmentation but
    downscaling and JPEG switched off, a view is the same face in the same place and colours
    (no flip, shift, blur, noise or colour change), only recompressed, and it is kept apart
    from the default views' copies."""
    from pipeline.config import CACHE_DIR_ENV
    from pipeline.training.augment import AugmentSettings
    from pipeline.training.sources import augmented_samples

    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "cache"))
    folder = _subset(shared_data, tmp_path, "gan-faces", 6)
    samples = load_samples(folder, "train")
    off = dict.fromkeys(("blur_p", "noise_p", "color_p", "flip_p", "affine_p"), 0.0)
    settings = AugmentSettings.from_json({**off, "jpeg_p": 1, "jpeg_quality": [40, 60], "rescale_p": 0})
    recompressed = augmented_samples(samples, 0, settings)
    default = augmented_samples(samples, 0)
    assert recompressed[0].path.parents[2] != default[0].path.parents[2]
    for sample, view in zip(samples, recompressed, strict=True):
        original = cv2.imread(str(sample.path)).astype(float)
        picture = cv2.imread(str(view.path)).astype(float)
        assert (view.label, view.group) == (sample.label, sample.group)
        assert 0 < np.abs(picture - original).mean() < 6  # recompressed...
        assert np.abs(picture.mean(axis=(0, 1)) - original.mean(axis=(0, 1))).max() < 2  # ...same colours
        flipped = np.abs(picture - original[:, ::-1]).mean()
        assert np.abs(picture - original).mean() < flipped  # ...and not mirrored or moved


def test_the_probe_can_train_on_self_blended_copies_of_its_real_crops(
    shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`self_blended_views`: each real crop blended with an altered copy of itself inside its own
    face mesh, labelled fake, made once per crop and view, the same from scratch; the change
    sits on the face; the probe trains on them and comes out different."""
    from pipeline.config import CACHE_DIR_ENV
    from pipeline.training.prepare import prepare
    from pipeline.training.probe import fit_probe
    from pipeline.training.recipe import clip_rows, train_recipe_member
    from pipeline.training.sources import face_landmarks, self_blended_samples

    prepared = tmp_path / "prepared"
    prepare(_subset(shared_data, tmp_path, "swap-faces", 4), prepared)
    samples = load_samples(prepared, "train")
    reals = [s for s in samples if s.label == 0]
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "again"))
    again = self_blended_samples(samples, 0)
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "cache"))
    copies = self_blended_samples(samples, 0)
    assert len(copies) == len(reals) == 4
    for real, copy, remade in zip(reals, copies, again, strict=True):
        assert (copy.label, copy.group, copy.source) == (1, real.group, f"{real.source}/self-blend")
        original, blended = cv2.imread(str(real.path)), cv2.imread(str(copy.path))
        assert np.array_equal(blended, cv2.imread(str(remade.path)))
        changed = np.abs(blended.astype(int) - original.astype(int)).max(axis=2) > 2
        # The tight crop is mostly face (its mesh's hull covers about 90% of it): the blend
        # changes much of the hull, and less of what lies outside it.
        hull = np.zeros(original.shape[:2], np.uint8)
        points = face_landmarks(real, original.shape[0])
        cv2.fillConvexPoly(hull, cv2.convexHull(np.round(points).astype(np.int32)), 1)
        on_face = hull.astype(bool)
        assert changed[on_face].mean() > 0.3
        assert changed[on_face].mean() > changed[~on_face].mean()
    member = {"kind": "clip_probe", "name": "clip", "block": 5, "regularization": 0.5}
    plain = train_recipe_member(member, [str(prepared)], tmp_path / "runs")
    blended = train_recipe_member(
        {**member, "name": "sbi", "self_blended_views": 1}, [str(prepared)], tmp_path / "runs"
    )
    weights = [np.asarray(json.loads(t.path.read_text())["weights"]) for t in (plain, blended)]
    assert not np.allclose(*weights)
    # `source_fakes: false`: the real crops against their own pseudo-fakes, the source's fakes unseen.
    only_blends = train_recipe_member(
        {**member, "name": "sbi_only", "self_blended_views": 1, "source_fakes": False},
        [str(prepared)],
        tmp_path / "runs",
    )
    seen = reals + copies
    expected = fit_probe(
        clip_rows(seen, "cls", 5), np.asarray([s.label for s in seen]), [s.source for s in seen], "cls", 0.5, (5,)
    )
    found = np.asarray(json.loads(only_blends.path.read_text())["weights"])
    assert np.allclose(found, expected.weights, atol=1e-6) and not np.allclose(found, weights[1])
    # With degraded views too, only the clean crops are blended (a degraded view has no mesh).
    train_recipe_member(
        {**member, "name": "both", "augmented_views": 1, "self_blended_views": 1}, [str(prepared)], tmp_path / "runs"
    )
    blended_from = [folder.name for folder in (tmp_path / "cache" / "self-blended" / "view0").iterdir()]
    assert len(blended_from) == 1 and blended_from[0].startswith("prepared-"), blended_from
    # `self_blend_blur: false` (rule 48): pseudo-fakes whose pasted face is never blurred, kept apart.
    train_recipe_member(
        {**member, "name": "sbi_unblurred", "self_blended_views": 1, "self_blend_blur": False},
        [str(prepared)],
        tmp_path / "runs",
    )
    assert sorted(f.name for f in (tmp_path / "cache" / "self-blended").iterdir()) == ["view0", "view0-unblurred"]
    # `part_blended_views` (rule 66): one part of each real face blended, beside the whole-face
    # copies, kept apart; the change sits on a part of the face, the probe comes out different.
    parts = train_recipe_member(
        {**member, "name": "sbi_parts", "self_blended_views": 1, "part_blended_views": 1},
        [str(prepared)],
        tmp_path / "runs",
    )
    folder = tmp_path / "cache" / "self-blended" / "view0-parts"
    part_copies = sorted(folder.rglob("*.png")) + sorted(folder.rglob("*.jpg"))
    assert len(part_copies) == len(reals)
    for real, copy in zip(reals, self_blended_samples(samples, 0, parts=True), strict=True):
        original, blended = cv2.imread(str(real.path)), cv2.imread(str(copy.path))
        changed = np.abs(blended.astype(int) - original.astype(int)).max(axis=2) > 2
        points = face_landmarks(real, original.shape[0])
        hull = np.zeros(original.shape[:2], np.uint8)
        cv2.fillConvexPoly(hull, cv2.convexHull(np.round(points).astype(np.int32)), 1)
        assert 0 < changed.mean() < 0.3 and changed[hull.astype(bool)].mean() > changed[~hull.astype(bool)].mean()
    assert not np.allclose(np.asarray(json.loads(parts.path.read_text())["weights"]), weights[1])


def test_a_patch_probe_learns_where_self_blends_changed_a_face_and_scores_it_in_the_engine(
    encoder: ClipEncoder, shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`feature: patch_max` (rule 72): a probe on each patch token, trained on real crops (every
    patch real) and their whole-face and part self-blends (a patch fake where the blend changed
    it); a crop's logit is its largest patch logit, in training as in the engine, where its map
    is the patch logits themselves."""
    from pipeline.config import CACHE_DIR_ENV
    from pipeline.training.features import PATCH_TOKEN_DIR, patch_tokens
    from pipeline.training.prepare import prepare
    from pipeline.training.recipe import patch_training_set, train_recipe_member, trained_logits
    from pipeline.training.sources import face_landmarks

    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "cache"))
    prepared = tmp_path / "prepared"
    prepare(_subset(shared_data, tmp_path, "swap-faces", 4), prepared)
    member = {
        "kind": "clip_probe",
        "name": "patches",
        "feature": "patch_max",
        "block": 5,
        "regularization": 0.5,
        "source_fakes": False,
        "self_blended_views": 1,
        "part_blended_views": 1,
    }
    samples, patch_labels = patch_training_set(member, [str(prepared)])
    reals = [s for s in load_samples(prepared, "train") if s.label == 0]
    assert [s.path for s in samples[:4]] == [s.path for s in reals] and len(samples) == 12
    assert patch_labels.shape == (12, 196) and not patch_labels[:4].any()
    whole, part = patch_labels[4:8].sum(axis=1), patch_labels[8:].sum(axis=1)
    assert (part > 0).all() and (whole > part).all(), (whole, part)  # a part changes fewer patches
    for real, labels in zip(reals * 2, patch_labels[4:], strict=True):
        # The changed patches lie on the face: their centres mostly inside its mesh's hull.
        hull = np.zeros((224, 224), np.uint8)
        cv2.fillConvexPoly(hull, cv2.convexHull(np.round(face_landmarks(real, 224)).astype(np.int32)), 1)
        centres = hull[8::16, 8::16].ravel().astype(bool)
        assert centres[labels].mean() > 0.8
    # With the source's fakes (rule 73): after the reals, every patch of each fake labelled fake.
    with_fakes, fake_labels = patch_training_set({**member, "source_fakes": True}, [str(prepared)])
    fakes = [s for s in load_samples(prepared, "train") if s.label == 1]
    assert [s.path for s in with_fakes[4:8]] == [s.path for s in fakes] and len(with_fakes) == 16
    assert fake_labels[4:8].all() and np.array_equal(np.delete(fake_labels, range(4, 8), axis=0), patch_labels)

    trained = train_recipe_member(member, [str(prepared)], tmp_path / "runs")
    probe = ClipProbe.from_json(json.loads(trained.path.read_text()))
    assert probe.feature == "patch_max" and probe.block == 5
    # The tokens kept in the cache are the encoder's, each crop once.
    tokens = patch_tokens([s.path for s in samples], 5)
    kept = sorted((tmp_path / "cache" / PATCH_TOKEN_DIR).rglob("*.npy"))
    assert len(kept) == 12
    crops = np.stack([read_face(s.path, 224) for s in samples])
    fresh = encoder.features(crops, [5]).patches_of(5)
    assert np.allclose(tokens.astype(np.float32), fresh, atol=0.02 * np.abs(fresh).max())
    patch_logits = probe.patch_logits(tokens)
    assert patch_logits[patch_labels].mean() > patch_logits[~patch_labels].mean() + 1  # it learned the patches
    logits = trained_logits(trained, samples)
    assert np.allclose(logits, patch_logits.max(axis=1))
    assert logits[4:].mean() > logits[:4].mean()
    assert [f.stat().st_mtime_ns for f in kept] == [
        f.stat().st_mtime_ns for f in sorted((tmp_path / "cache" / PATCH_TOKEN_DIR).rglob("*.npy"))
    ]  # scored from the cache, nothing encoded again

    # In the engine: one member, scored on the patch tokens of the crop; its map is the patch logits.
    ensemble = _probe_ensemble({"patches": probe}, tmp_path / "models")
    face = crops[5]
    expected = probe.patch_logits(fresh[5:6])[0]
    assert ensemble.logits("patches", face[None]) == pytest.approx([expected.max()], abs=1e-4)
    assert ensemble.score(face[None]).members["patches"] == pytest.approx(1 / (1 + np.exp(-expected.max())), abs=1e-5)
    heat = explanation_maps(ensemble, face)["patches"]
    assert heat.shape == (224, 224) and heat.min() >= 0 and heat.max() <= 1
    assert ensemble.explanation_map("patches") == PATCH_SCORE_MAP  # what the dashboard's note says of it
    brightest = np.unravel_index(np.argmax(heat[8::16, 8::16]), (14, 14))
    assert expected.reshape(14, 14)[brightest] == pytest.approx(expected.max(), abs=1e-3)


def test_the_probe_can_degrade_its_self_blends_alike_under_their_own_label(
    shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`augment_self_blends`: the degraded views are made of the real crops and of their
    self-blends alike, each under its own label, so a changed picture is as often real as fake;
    with `source_fakes: false` the source's fakes are neither seen nor degraded. The probe is
    exactly the fit on those crops (their features from the real encoder)."""
    from pipeline.config import CACHE_DIR_ENV
    from pipeline.training.augment import AugmentSettings
    from pipeline.training.prepare import prepare
    from pipeline.training.recipe import clip_rows, train_recipe_member
    from pipeline.training.sources import augmented_samples, self_blended_samples

    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "cache"))
    prepared = tmp_path / "prepared"
    prepare(_subset(shared_data, tmp_path, "swap-faces", 3), prepared)
    samples = load_samples(prepared, "train")
    reals = [s for s in samples if s.label == 0]
    handling = {"flip_p": 0, "color_p": 0, "noise_p": 0, "affine_p": 0, "rescale_p": 0, "blur_p": 0}
    handling |= {"sharpen_p": 1, "jpeg_p": 1, "jpeg_quality": [60, 80]}
    member = {
        "kind": "clip_probe",
        "name": "handled",
        "block": 5,
        "regularization": 0.5,
        "source_fakes": False,
        "self_blended_views": 1,
        "augmented_views": 1,
        "augment_self_blends": True,
        "augmented_settings": handling,
    }
    trained = train_recipe_member(member, [str(prepared)], tmp_path / "runs")
    blends = self_blended_samples(samples, 0)
    handled = augmented_samples(reals + blends, 0, AugmentSettings.from_json(handling))
    assert [s.label for s in handled] == [0] * len(reals) + [1] * len(blends) and len(reals) == 3
    for before, after in zip(reals + blends, handled, strict=True):
        assert not np.array_equal(cv2.imread(str(before.path)), cv2.imread(str(after.path)))
    seen = reals + handled + blends
    expected = fit_probe(
        clip_rows(seen, "cls", 5), np.asarray([s.label for s in seen]), [s.source for s in seen], "cls", 0.5, (5,)
    )
    assert np.allclose(json.loads(trained.path.read_text())["weights"], expected.weights, atol=1e-6)
    # Only the three reals and their three blends were degraded: the source's fakes were not.
    copies = list((tmp_path / "cache" / "augmented").rglob("*.png"))
    assert len(copies) == 6, copies


def test_the_probe_can_degrade_its_real_crops_only(
    shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`augment_reals_only` (rule 55): the degraded views are made of the real crops alone, kept
    real, so a change that comes with the fake label in the data (softness) comes with both; the
    source's fakes are seen as they are. The probe is exactly the fit on those crops."""
    from pipeline.config import CACHE_DIR_ENV
    from pipeline.training.augment import AugmentSettings
    from pipeline.training.prepare import prepare
    from pipeline.training.recipe import clip_rows, train_recipe_member
    from pipeline.training.sources import augmented_samples

    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "cache"))
    prepared = tmp_path / "prepared"
    prepare(_subset(shared_data, tmp_path, "swap-faces", 3), prepared)
    samples = load_samples(prepared, "train")
    reals = [s for s in samples if s.label == 0]
    blur = {"flip_p": 0, "color_p": 0, "noise_p": 0, "affine_p": 0, "rescale_p": 0, "jpeg_p": 0, "blur_p": 1}
    member = {
        "kind": "clip_probe",
        "name": "soft_reals",
        "block": 5,
        "regularization": 0.5,
        "augmented_views": 1,
        "augment_reals_only": True,
        "augmented_settings": blur,
    }
    trained = train_recipe_member(member, [str(prepared)], tmp_path / "runs")
    softened = augmented_samples(reals, 0, AugmentSettings.from_json(blur))
    assert [s.label for s in softened] == [0] * len(reals) and len(reals) == 3 and len(samples) > len(reals)
    for before, after in zip(reals, softened, strict=True):
        assert face_focus(read_rgb(after.path)) < face_focus(read_rgb(before.path))
    seen = samples + softened
    expected = fit_probe(
        clip_rows(seen, "cls", 5), np.asarray([s.label for s in seen]), [s.source for s in seen], "cls", 0.5, (5,)
    )
    assert np.allclose(json.loads(trained.path.read_text())["weights"], expected.weights, atol=1e-6)
    assert len(list((tmp_path / "cache" / "augmented").rglob("*.png"))) == 3  # the fakes were not degraded


def test_sharpening_adds_detail_and_leaves_earlier_views_where_they_were(
    shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Unsharp masking as a view: the face gains fine detail and keeps its colours; settings
    without it keep the folder (and so the cached features) of the views made before it existed."""
    from pipeline.config import CACHE_DIR_ENV
    from pipeline.training.augment import AugmentSettings
    from pipeline.training.sources import augmented_samples

    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "cache"))
    samples = load_samples(_subset(shared_data, tmp_path, "gan-faces", 3), "train")
    off = dict.fromkeys(("jpeg_p", "blur_p", "rescale_p", "noise_p", "color_p", "flip_p", "affine_p"), 0.0)
    views = augmented_samples(samples, 0, AugmentSettings.from_json({**off, "sharpen_p": 1}))
    for sample, view in zip(samples, views, strict=True):
        original = cv2.imread(str(sample.path)).astype(float)
        picture = cv2.imread(str(view.path)).astype(float)
        detail = [
            cv2.Laplacian(cv2.cvtColor(p.astype(np.uint8), cv2.COLOR_BGR2GRAY), cv2.CV_64F).var()
            for p in (original, picture)
        ]
        assert detail[1] > 1.3 * detail[0]
        assert np.abs(picture.mean(axis=(0, 1)) - original.mean(axis=(0, 1))).max() < 2
    # The folders of the default views and of rule 15's recompressed views, as named before
    # sharpening was added (their cached features are found by these names).
    default = augmented_samples(samples, 0)[0].path.parents[2].name
    recompressed = AugmentSettings.from_json(
        {**off, "jpeg_p": 1, "jpeg_quality": [40, 95], "rescale_p": 0.5, "rescale_factor": [0.4, 1.0]}
    )
    assert default == "0703dd2b-view0"
    assert augmented_samples(samples, 0, recompressed)[0].path.parents[2].name == "6f3dfe35-view0"


@dataclass
class TinyTable:
    """A cross-source table of a tiny recipe on a small subset, and where it was made."""

    recipe: Path
    runs: Path
    cache: Path
    table_path: Path
    table: dict
    stdout: str

    def cross_source(self, *arguments: str) -> subprocess.CompletedProcess[str]:
        """`cross-source` with `swap-faces` held out, on this table's recipe, runs and cache."""
        from pipeline.config import CACHE_DIR_ENV

        return run_cli(
            "cross-source",
            "--held-out",
            "swap-faces",
            "--recipe",
            str(self.recipe),
            "--runs",
            str(self.runs),
            *arguments,
            env={CACHE_DIR_ENV: str(self.cache)},
            timeout=900,
        )


@pytest.fixture(scope="module")
def tiny_table(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> TinyTable:
    """`evaluate --leave-out swap-faces` of a CLIP probe and a tiny CNN on a small subset of
    three sources."""
    from pipeline.config import CACHE_DIR_ENV
    from pipeline.training.prepare import prepare

    tmp_path = tmp_path_factory.mktemp("cross-source")
    cache = tmp_path / "cache"
    for source, per_label in (("gan-faces", 10), ("swap-faces", 12), ("sd-faces", 10)):
        folder = copy_subset(shared_data / source, tmp_path / "subsets" / source, per_label, ("train", "val"))
        prepare(folder, cache / "prepared" / source, landmarks=False)
    recipe = tmp_path / "recipe.json"
    recipe.write_text(
        json.dumps(
            {
                "sources": ["gan-faces", "swap-faces", "sd-faces"],
                "val_per_class": 50,
                "held_out_per_class": 1000,
                "members": [
                    {"kind": "clip_probe", "name": "clip", "feature": "cls", "block": 5, "regularization": 0.5},
                    {
                        "kind": "keras",
                        "name": "tiny",
                        "backbone": "mobilenetv2",
                        "input_size": 64,
                        "train_per_class": 20,
                        "val_per_class": 20,
                        "views": 1,
                        "self_blend": 0.0,
                        "trainable_blocks": 1,
                        "head_epochs": 1,
                        "finetune_epochs": 1,
                        "batch_size": 16,
                    },
                ],
                "weights": {"clip": 1.0, "tiny": 1.0},
                "pictures": {"weights": {"clip": 3.0, "tiny": 1.0}},
            }
        )
    )
    out = tmp_path / "table.json"
    run = run_cli(
        "evaluate",
        "--leave-out",
        "swap-faces",
        "--recipe",
        str(recipe),
        "--runs",
        str(tmp_path / "runs"),
        "--json",
        str(out),
        env={CACHE_DIR_ENV: str(cache)},
        timeout=900,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return TinyTable(recipe, tmp_path / "runs", cache, out, json.loads(out.read_text()), run.stdout)


@pytest.mark.training
def test_leave_out_trains_without_the_source_and_scores_all_of_it(tiny_table: TinyTable) -> None:
    """`evaluate --leave-out` on a small subset: each member of the recipe trains on the other
    sources only, and the table covers the whole held-out source."""
    from pipeline.errors import DataError
    from pipeline.training.cross_source import compare_tables
    from pipeline.training.sources import source_samples

    table, cache, stdout = tiny_table.table, tiny_table.cache, tiny_table.stdout
    fold = table["folds"]["swap-faces"]
    held_out = source_samples("swap-faces", None, root=cache / "prepared")  # every split, its half of the reals
    assert fold["ensemble"]["n"] == len(held_out) and {s.label for s in held_out} == {0, 1}
    for name in ("ensemble", "clip", "tiny"):
        assert {"roc_auc", "average_precision", "eer", "ece", "accuracy"} <= set(fold[name])
        # The bootstrap 95% interval holds the ROC AUC itself, per fold and over the folds.
        for metrics in (fold[name], table["mean"][name]):
            low, high = metrics["roc_auc_interval"]
            assert low <= metrics["roc_auc"] <= high and low < high
    assert "| swap-faces | **ensemble** |" in stdout
    assert f"{fold['ensemble']['roc_auc']:.3f} [" in stdout
    assert table["bootstrap"]["held_out"]["swap-faces"].startswith(f"{len(held_out)} items ")
    # Against itself, the paired comparison is exactly zero: both tables drew the same resamples.
    for column in compare_tables(table, table).values():
        assert column["difference"] == 0 and column["interval"] == [0.0, 0.0]
    other = {**table, "bootstrap": {**table["bootstrap"], "held_out": {"swap-faces": "3 items 0123"}}}
    with pytest.raises(DataError, match="other folds or items"):
        compare_tables(table, other)
    # The same held-out crops re-shared, scored by the same fold.
    again = table["reshared_folds"]["swap-faces"]
    assert again["ensemble"]["n"] == fold["ensemble"]["n"]
    with np.load(tiny_table.runs / "cross-source" / "swap-faces" / "clip" / "logits.npz") as logits:
        assert all(str(cache / "reshared") in path for path in logits["held_out_reshared__paths"])
        assert not np.allclose(logits["held_out_reshared"], logits["held_out"])
    assert set(table["reshared_mean"]) == {"ensemble", "clip", "tiny"}
    assert "re-shared: ROC AUC" in stdout
    # Both together ("mixed"): every held-out item twice, its interval drawn by item.
    both = table["mixed_folds"]["swap-faces"]["ensemble"]
    assert both["n"] == 2 * fold["ensemble"]["n"]
    low, high = table["mixed_mean"]["ensemble"]["roc_auc_interval"]
    assert low <= table["mixed_mean"]["ensemble"]["roc_auc"] <= high
    assert "mixed: ROC AUC" in stdout and compare_tables(table, table)["mixed"]["difference"] == 0
    # How often the held-out real faces score at least p: never rising with p, a share of them.
    shares = [share for _, share in table["false_alarm_curve"]]
    assert len(shares) > 2 and all(0 <= b <= a <= 1 for a, b in zip(shares, shares[1:]))
    # How often the held-out fakes score at most p: never falling with p.
    shares = [share for _, share in table["miss_curve"]]
    assert len(shares) > 2 and all(0 <= a <= b <= 1 for a, b in zip(shares, shares[1:]))
    # Beside each, the other class at the same points (rule 109): fakes at least p, reals at most p.
    hits, rejections = dict(table["hit_curve"]), dict(table["correct_rejection_curve"])
    assert list(hits) == [p for p, _ in table["false_alarm_curve"]]
    assert list(rejections) == [p for p, _ in table["miss_curve"]]
    assert all(0 <= b <= a <= 1 for a, b in zip(list(hits.values()), list(hits.values())[1:]))
    assert all(0 <= a <= b <= 1 for a, b in zip(list(rejections.values()), list(rejections.values())[1:]))
    # At 0.5, where both curves of a class are measured, they share out its faces between them.
    assert hits[0.5] + dict(table["miss_curve"])[0.5] == pytest.approx(1.0, abs=0.02)
    assert rejections[0.5] + dict(table["false_alarm_curve"])[0.5] == pytest.approx(1.0, abs=0.02)
    # Each weight trial says what it costs in domain: the ensemble's ROC AUC on the fold's
    # validation mix (rule 88); the CLIP probe alone's is the probe's own.
    from sklearn.metrics import roc_auc_score

    with np.load(tiny_table.runs / "cross-source" / "swap-faces" / "clip" / "logits.npz") as logits:
        val_labels = [int(Path(path).parent.name == "fake") for path in logits["val__paths"]]
        clip_alone = roc_auc_score(val_labels, logits["val"])
    trial = next(t for t in table["weight_trials"] if t["weights"] == {"clip": 1.0, "tiny": 0.0})
    assert trial["mean_roc_auc_validation"] == pytest.approx(clip_alone)
    assert len({round(t["mean_roc_auc_validation"], 6) for t in table["weight_trials"]}) > 1
    assert "(in brackets, on the folds' validation mixes: the cost in domain)" in stdout
    # Each member of the fold trained without the held-out source.
    config = json.loads((tiny_table.runs / "cross-source" / "swap-faces" / "tiny" / "config.json").read_text())
    assert config["data"] == ["gan-faces", "sd-faces"]


@pytest.mark.training
def test_a_baseline_of_other_folds_is_one_line_and_the_table_is_kept(tiny_table: TinyTable, tmp_path: Path) -> None:
    """The paired comparison refuses a baseline made on other items, after the table (its folds
    may have taken hours) is written."""
    other = tmp_path / "other.json"
    bootstrap = {**tiny_table.table["bootstrap"], "held_out": {"swap-faces": "3 items 0123"}}
    other.write_text(json.dumps({**tiny_table.table, "bootstrap": bootstrap}))
    out = tmp_path / "table.json"
    run = tiny_table.cross_source("--json", str(out), "--baseline", str(other))
    assert run.returncode != 0 and "other folds or items" in run.stderr and "Traceback" not in run.stderr
    assert json.loads(out.read_text())["folds"] == tiny_table.table["folds"]


@pytest.mark.training
def test_pictures_weighs_the_same_folds_as_the_recipe_weighs_pictures(tiny_table: TinyTable, tmp_path: Path) -> None:
    """`cross-source --pictures` scores the folds already trained with the recipe's `pictures`
    weights: each member's figures are the videos' table's, the ensemble's its own."""
    out = tmp_path / "pictures.json"
    run = tiny_table.cross_source("--pictures", "--json", str(out))
    assert run.returncode == 0, run.stderr[-3000:]
    pictures, videos = json.loads(out.read_text()), tiny_table.table
    assert pictures["weights"] == {"clip": 3.0, "tiny": 1.0} and videos["weights"] == {"clip": 1.0, "tiny": 1.0}
    for name in ("clip", "tiny"):
        assert pictures["folds"]["swap-faces"][name] == videos["folds"]["swap-faces"][name]
    assert pictures["folds"]["swap-faces"]["ensemble"] != videos["folds"]["swap-faces"]["ensemble"]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--seeds", "1", "1"], "--seeds names a seed twice: 1 1"),
        (["--seeds", "1", "-5"], "--seeds takes whole numbers from 0 to 4294967295, not -5"),
        (
            ["--seeds", "1", "2", "3", "--baseline", "a.json", "b.json"],
            "--baseline takes one table, or one per seed (3)",
        ),
        (["--seeds", "1", "2", "--json", "no-such-folder/t.json"], "the folder no-such-folder does not exist"),
    ],
)
def test_cross_source_options_it_cannot_use_are_one_line_before_anything_runs(
    tmp_path: Path, arguments: list[str], message: str
) -> None:
    run = run_cli("cross-source", "--runs", str(tmp_path / "runs"), *arguments)
    assert run.returncode != 0 and message in run.stderr and "Traceback" not in run.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.training
def test_cross_source_with_seeds_trains_the_cnns_once_per_seed_and_reports_their_spread(
    tiny_table: TinyTable, tmp_path: Path
) -> None:
    """`cross-source --seeds`: the recipe's own seed reuses its folds, another seed trains the
    CNN anew in its own folder while the CLIP probe (which draws nothing at random) stays, and
    each figure's mean and range over the seeds is printed and written, with each seed's
    difference to a baseline."""
    fold = tiny_table.runs / "cross-source" / "swap-faces"
    trained = (fold / "tiny" / "model.keras").stat().st_mtime_ns
    out = tmp_path / "seeds.json"
    run = tiny_table.cross_source("--seeds", "1234", "77", "--json", str(out), "--baseline", str(tiny_table.table_path))
    assert run.returncode == 0, run.stderr[-3000:]
    own, other = (json.loads((tmp_path / f"seeds.seed-{seed}.json").read_text()) for seed in (1234, 77))
    # The recipe's own seed (TrainConfig's default here): the same fold, not trained again.
    assert (fold / "tiny" / "model.keras").stat().st_mtime_ns == trained and not (fold / "seed-1234").exists()
    assert own["folds"] == tiny_table.table["folds"] and own["cnn_seeds"] == {"tiny": 1234}
    # Another seed: the CNN trained from it in the fold's seed-77 folder, the probe's logits reused.
    assert json.loads((fold / "seed-77" / "tiny" / "config.json").read_text())["seed"] == 77
    assert other["cnn_seeds"] == {"tiny": 77} and not (fold / "seed-77" / "clip").exists()
    assert other["folds"]["swap-faces"]["clip"] == own["folds"]["swap-faces"]["clip"]
    assert other["folds"]["swap-faces"]["tiny"]["roc_auc"] != own["folds"]["swap-faces"]["tiny"]["roc_auc"]
    # The spread: each figure's values per seed, their mean and range, printed and written.
    spread = json.loads(out.read_text())
    assert spread["seeds"] == [1234, 77]
    tiny = spread["columns"]["as they are"]["swap-faces"]["tiny"]
    values = [own["folds"]["swap-faces"]["tiny"]["roc_auc"], other["folds"]["swap-faces"]["tiny"]["roc_auc"]]
    assert tiny["values"] == values and tiny["mean"] == pytest.approx(np.mean(values))
    assert tiny["range"] == pytest.approx(abs(values[0] - values[1])) and tiny["range"] > 0
    assert spread["columns"]["re-shared"]["mean"]["clip"]["range"] == 0
    assert f"{values[0]:.3f} / {values[1]:.3f} | {np.mean(values):.3f} | {abs(values[0] - values[1]):.3f}" in run.stdout
    assert "## CNN training seed 77" in run.stdout
    # Each seed's table paired with the baseline (here the first table, for both seeds).
    own_mean, other_mean = (t["mean"]["ensemble"]["roc_auc"] for t in (own, other))
    against = spread["against_baseline"]["as_they_are"]["values"]
    assert against == [0.0, pytest.approx(other_mean - own_mean)]
    assert other["against_baseline"]["as_they_are"]["difference"] == pytest.approx(other_mean - own_mean)
