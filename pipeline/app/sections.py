"""The sections of a result as the dashboard and the HTML report both show them: built once here
from a stored record, rendered twice (Streamlit widgets in `pages/_views.py`, a Jinja2 template
in `pipeline/app/export.py`), so the two never disagree."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.app.store import Picture, Record, Store
from pipeline.results import (
    GRADCAM_MAP,
    PATCH_PUSH_MAP,
    PATCH_SCORE_MAP,
    PATCH_SHARE_MAP,
    AnalysisResult,
    FileHistory,
    Provenance,
    describe_source_type,
)

VERDICT_LABELS = {"fake": "FAKE", "real": "REAL", "uncertain": "UNCERTAIN", "no_face": "NO FACE"}
ENSEMBLE = "ensemble"
PROVENANCE_NOTE = (
    "Provenance is read from the file itself, without any model, and shown beside the models' verdict; "
    "neither overrides the other. Valid Content Credentials are strong evidence of where a file comes from; "
    "metadata is not signed, and anyone can write or remove it. Its absence proves nothing: most apps and "
    "platforms strip it. A signer whose certificate leads to no trusted root (a test certificate, for one) is "
    "shown as not on a trust list: the signature may be valid, but nobody vouches for the signer."
)
NOT_READ = "Provenance was not read for this result: it was analysed by an earlier version of this app."


@dataclass(frozen=True)
class VerdictSection:
    """The verdict line and what it rests on."""

    verdict: str
    label: str
    fake_probability: float | None
    reason: str
    threshold: float
    uncertain_band: tuple[float, float]
    file: str
    kind: str
    size: str
    created: str

    @property
    def caption(self) -> str:
        """The rule and the file in one sentence."""
        low, high = self.uncertain_band
        return (
            f"{self.reason}. Threshold {self.threshold:.2f}, uncertain band {low:.2f}-{high:.2f}; "
            f"{self.file}, {self.kind} {self.size}, analysed {self.created.replace('T', ' ')}."
        )


@dataclass(frozen=True)
class ScoreRow:
    """The verdict-level probability of the ensemble or of one model."""

    model: str
    fake_probability: float | None
    version: str
    ms_per_face: float | None


@dataclass(frozen=True)
class PersonRow:
    """One person: their probability, verdict and each model's score."""

    person: int
    faces: int
    fake_probability: float
    verdict: str
    decides: bool
    model_scores: dict[str, float]


EXPLANATION_NOTE = (
    "The most suspicious face of each person. A CNN's map (Grad-CAM): red areas raised that model's "
    "fake score most. The CLIP member's map: red patches look fake to its probe each on its own, "
    "which does not show where a face was changed (model card, Explanation maps)."
)
"""What the maps show, said once for the dashboard and the HTML report (rule 69: the CLIP map's
patches rank fakes at chance where its class token finds them): of a result stored before its maps
were told apart, whose CLIP member was a class-token probe, as every shipped one was until then."""

MAP_MEANINGS = {
    GRADCAM_MAP: "Grad-CAM, red areas raised the model's fake score most",
    PATCH_PUSH_MAP: (
        "red patches look fake to its probe each on its own, which does not show where a face was changed "
        "(model card, Explanation maps)"
    ),
    PATCH_SHARE_MAP: "each patch's share of its probe's score, red patches raised it most",
    PATCH_SCORE_MAP: (
        "its probe's score of each patch, which it was trained to give where a face was changed: red patches "
        "look changed, and the reddest one is the face's score"
    ),
}
"""What each kind of explanation map shows, in the words of `EXPLANATION_NOTE`."""


def explanation_note(result: AnalysisResult) -> str:
    """What the maps of this result show, said of each model by the kind of map it made."""
    if not result.explanation_maps:
        return EXPLANATION_NOTE
    models_by_map: dict[str, list[str]] = {}
    for model, kind in result.explanation_maps.items():
        models_by_map.setdefault(kind, []).append(model)
    said = [
        f"{', '.join(models)}: {MAP_MEANINGS.get(kind, f'a {kind} map, which this version cannot describe')}."
        for kind, models in models_by_map.items()
    ]
    return " ".join(["The most suspicious face of each person.", *said])


@dataclass(frozen=True)
class ExplanationMaps:
    """One model's explanation map of one face: over the crop and over the frame (None when the
    file is missing from the history folder)."""

    model: str
    on_face: Path | None
    on_frame: Path | None


@dataclass(frozen=True)
class ExplainedFace:
    """A person's most suspicious face with each model's map."""

    person: int
    where: str
    fake_probability: float
    maps: tuple[ExplanationMaps, ...]


@dataclass(frozen=True)
class ProvenanceSection:
    """Where the file says it comes from, as rows of (what, value) for a table."""

    summary: str
    """The strongest evidence in one line (or that there is none, or that it was not read)."""
    read: bool
    """False for a result stored before provenance was read."""
    ai_generated: bool
    ai_claims: tuple[str, ...]
    credentials: tuple[tuple[str, str], ...]
    """The Content Credentials' fields; empty when the file has none."""
    metadata: tuple[tuple[str, str], ...]
    """What the metadata names; empty when it names nothing."""
    problems: tuple[str, ...]
    failing: bool = False
    """Whether the file's Content Credentials fail validation (evidence of a change too)."""
    history: tuple[tuple[str, str], ...] = ()
    """How the file was last saved (images); empty for videos and older results."""
    caveat: str | None = None
    """What the file's compression means for the verdict, as a sentence, when it is more
    compressed than the models' training pictures."""
    note: str = PROVENANCE_NOTE

    @property
    def tables(self) -> tuple[tuple[str, tuple[tuple[str, str], ...]], ...]:
        """The titled tables of evidence that have rows, in the order both renderings show them."""
        titled = (
            ("Content Credentials (C2PA)", self.credentials),
            ("Metadata", self.metadata),
            ("How the file was last saved", self.history),
        )
        return tuple((title, rows) for title, rows in titled if rows)

    @property
    def headline(self) -> str:
        """The line shown beside the verdict."""
        return f"Provenance: {self.summary}"


@dataclass(frozen=True)
class ResultSections:
    """Everything about one stored result that both renderings show."""

    verdict: VerdictSection
    scores: tuple[ScoreRow, ...]
    people: tuple[PersonRow, ...]
    explained: tuple[ExplainedFace, ...]
    explanation_note: str
    """What the explanation maps show (`explanation_note`)."""
    timings: tuple[tuple[str, float], ...]
    models: tuple[str, ...]
    sampling: str
    provenance: ProvenanceSection


def frame_label(result: AnalysisResult, position: int) -> str:
    """Where a sampled frame is: 'the image', or its number and time."""
    if result.kind == "image":
        return "the image"
    frame = result.frames[position]
    return f"frame {frame.frame_number} ({frame.time_s:.2f} s)"


def existing(store: Store, picture: Picture | None) -> Path | None:
    """A stored picture's file, or None when it is missing."""
    if picture is None:
        return None
    path = store.path(picture)
    return path if path.is_file() else None


def verdict_section(result: AnalysisResult) -> VerdictSection:
    """The verdict of a result."""
    size = f"{result.width}×{result.height}" + (f", {result.duration_s:.1f} s" if result.duration_s else "")
    return VerdictSection(
        verdict=result.verdict,
        label=VERDICT_LABELS[result.verdict],
        fake_probability=result.fake_probability,
        reason=result.reason,
        threshold=result.threshold,
        uncertain_band=(result.uncertain_band[0], result.uncertain_band[1]),
        file=result.file,
        kind=result.kind,
        size=size,
        created=result.created,
    )


def _rows(pairs: list[tuple[str, str | None]]) -> tuple[tuple[str, str], ...]:
    return tuple((label, value) for label, value in pairs if value)


def last_saved(history: FileHistory | None) -> str:
    """How a file was last saved, in a few words ('' for a video or an older result)."""
    if history is None:
        return ""
    if history.jpeg_quality is None:
        return history.format
    about = "" if history.standard_tables else "about "
    return f"{history.format} at {about}quality {history.jpeg_quality}"


def _sentence(clause: str | None) -> str | None:
    """A clause of a verdict's reason as a sentence of its own."""
    return f"{clause[0].upper()}{clause[1:]}." if clause else None


def _history_rows(history: FileHistory | None) -> tuple[tuple[str, str], ...]:
    if history is None:
        return ()
    quality = None
    if history.jpeg_quality is not None:
        tables = "libjpeg's own tables" if history.standard_tables else "the encoder's own tables, nearest libjpeg's"
        quality = f"{history.jpeg_quality} of 100 ({tables})"
    return _rows(
        [
            ("format", history.format),
            ("JPEG quality", quality),
            ("colour stored", history.chroma_subsampling),
            ("scans", ("progressive" if history.progressive else "baseline") if history.format == "JPEG" else None),
            ("pages", f"{history.pages:,} (the first analysed)" if history.pages and history.pages > 1 else None),
            ("colours", f"{history.colour_space}, converted to sRGB" if history.colour_space else None),
        ]
    )


def provenance_section(provenance: Provenance | None) -> ProvenanceSection:
    """The provenance of a result (None: stored before provenance was read)."""
    if provenance is None:
        return ProvenanceSection(NOT_READ, False, False, (), (), (), ())
    credentials = provenance.credentials
    credential_rows: tuple[tuple[str, str], ...] = ()
    if credentials is not None:
        trust = "trusted signer" if credentials.signer_trusted else "not on a trust list"
        actions = "; ".join(
            a.action
            + (f": {describe_source_type(a.digital_source_type)}" if a.digital_source_type else "")
            + (f", by {a.software_agent}" if a.software_agent else "")
            for a in credentials.actions
        )
        credential_rows = _rows(
            [
                (
                    "signature",
                    "valid" if credentials.signature == "valid" else "INVALID: fails validation (see failed checks)",
                ),
                ("signer", f"{credentials.signer or 'unnamed'} ({trust})"),
                ("signed at", credentials.signed_at or "no trusted timestamp"),
                ("written by", credentials.claim_generator),
                ("title", credentials.title),
                ("actions", actions or "none recorded"),
                ("ingredients", "; ".join(credentials.ingredients)),
                ("failed checks", "; ".join(credentials.failures)),
                ("manifests in the file", str(credentials.manifests)),
            ]
        )
    metadata = provenance.metadata
    metadata_rows = _rows(
        [
            ("camera", metadata.camera),
            ("captured", metadata.captured),
            ("software", metadata.software),
            ("generator", metadata.generator),
            ("generator's text", metadata.generator_text),
            (
                "digital source type",
                describe_source_type(metadata.digital_source_type) if metadata.digital_source_type else None,
            ),
            ("container encoder", metadata.encoder),
        ]
    )
    return ProvenanceSection(
        summary=provenance.summary,
        read=True,
        ai_generated=provenance.ai_generated,
        ai_claims=tuple(provenance.ai_claims),
        credentials=credential_rows,
        metadata=metadata_rows,
        problems=tuple(provenance.problems),
        failing=credentials is not None and credentials.signature == "invalid",
        history=_history_rows(provenance.file_history),
        caveat=_sentence(provenance.file_history.caveat) if provenance.file_history else None,
    )


def result_sections(record: Record, store: Store) -> ResultSections:
    """The sections of one stored result."""
    result = record.result
    scores = [ScoreRow(ENSEMBLE, result.fake_probability, "", None)] + [
        ScoreRow(
            name,
            result.model_scores.get(name),
            version,
            1000 * result.model_seconds_per_face[name] if name in result.model_seconds_per_face else None,
        )
        for name, version in result.models.items()
    ]
    people = [
        PersonRow(t.track + 1, t.faces, t.fake_probability, t.verdict, t.decides, dict(t.model_scores))
        for t in result.tracks
    ]
    explained = []
    for position, face, track in sorted(
        {(p.position, p.face, p.track) for p in record.pictures_of("explanation_face")}
    ):
        stored = {(p.role, p.model): p for p in record.pictures if (p.position, p.face) == (position, face)}
        maps = tuple(
            ExplanationMaps(
                model,
                existing(store, stored.get(("explanation_face", model))),
                existing(store, stored.get(("explanation_frame", model))),
            )
            for model in result.models
        )
        probability = result.frames[position].faces[face].fake_probability
        explained.append(ExplainedFace(track + 1, frame_label(result, position), probability, maps))
    sampling = (
        f"Aggregation rule '{result.aggregation}', {len(result.frames)} sampled frame(s) of "
        f"{result.frames_requested} requested."
    )
    return ResultSections(
        verdict=verdict_section(result),
        scores=tuple(scores),
        people=tuple(people),
        explained=tuple(explained),
        explanation_note=explanation_note(result),
        timings=tuple(result.timing.items()),
        models=tuple(result.models),
        sampling=sampling,
        provenance=provenance_section(result.provenance),
    )
