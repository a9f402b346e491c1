"""What an analysis produces, as plain data: the engine builds it, the CLI writes it as JSON,
the dashboard stores, charts and exports it. Nothing here imports the engine, so the store and
the pages can read a result without loading a model.

Words used throughout: a *frame* is one picture of the media; `frame_number` is its number in
the video (0 for an image) and `position` its place among the sampled frames (the index into
`AnalysisResult.frames`). A *person* is a track of faces across frames.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any


@dataclass
class FaceResult:
    """One face in one sampled frame."""

    box: list[int]
    """x, y, width, height in pixels of the original frame."""
    track: int
    """The person the face belongs to (0-based)."""
    confidence: float
    """The face finder's confidence that this is a face."""
    fake_probability: float
    model_scores: dict[str, float]
    """Model name -> that model's calibrated fake probability for this face."""


@dataclass
class FrameResult:
    """One sampled frame and the faces found in it."""

    frame_number: int
    time_s: float
    faces: list[FaceResult]


@dataclass
class TrackResult:
    """One person across the sampled frames."""

    track: int
    faces: int
    fake_probability: float
    model_scores: dict[str, float]
    verdict: str
    decides: bool
    """False for a person seen too briefly to carry the verdict alone."""


IPTC_SOURCE_TYPES = "http://cv.iptc.org/newscodes/digitalsourcetype/"
"""Where the IPTC digital source types live; C2PA actions and XMP name them by this address."""

DIGITAL_SOURCE_TYPES = {
    "digitalCapture": "captured by a camera",
    "computationalCapture": "captured by a camera with computational processing",
    "negativeFilm": "scanned from a negative",
    "positiveFilm": "scanned from a slide",
    "print": "scanned from a print",
    "humanEdits": "edited by a person",
    "minorHumanEdits": "minor edits by a person",
    "compositeCapture": "a composite of captures",
    "algorithmicallyEnhanced": "enhanced by an algorithm",
    "dataDrivenMedia": "made from data",
    "digitalArt": "digital art made by a person",
    "digitalCreation": "created digitally by a person",
    "virtualRecording": "a recording of a virtual scene",
    "compositeSynthetic": "a composite with synthetic elements",
    "trainedAlgorithmicMedia": "made by a trained AI model",
    "compositeWithTrainedAlgorithmicMedia": "a composite with AI-generated parts",
    "algorithmicMedia": "made by an algorithm without training data",
    "screenCapture": "a screen capture",
}
"""IPTC digital source types (the last part of their address) and what they mean."""

AI_SOURCE_TYPES = ("trainedAlgorithmicMedia", "compositeWithTrainedAlgorithmicMedia")
"""The digital source types that say a trained AI model made all or part of the media."""


def source_type_name(value: str) -> str:
    """The short name of a digital source type given by its address (or already short)."""
    return value.rstrip("/").rsplit("/", 1)[-1]


def describe_source_type(value: str) -> str:
    """A digital source type for a person: its short name and, when known, what it means."""
    name = source_type_name(value)
    meaning = DIGITAL_SOURCE_TYPES.get(name)
    return f"{name} ({meaning})" if meaning else name


@dataclass
class CredentialAction:
    """One action a C2PA manifest records (created, edited, ...)."""

    action: str
    """The C2PA action, e.g. `c2pa.created`, `c2pa.edited`."""
    digital_source_type: str | None = None
    """The IPTC digital source type the action names (an address), if any."""
    software_agent: str | None = None
    """The tool the manifest says performed the action."""


@dataclass
class ContentCredentials:
    """The active C2PA manifest of a file (its Content Credentials), checked offline."""

    claim_generator: str
    """The software that wrote the manifest."""
    title: str | None
    signer: str | None
    """Who signed: the signing certificate's common name and organisation."""
    signed_at: str | None
    """When, from a trusted timestamp in the manifest (None without one)."""
    signature: str
    """`valid`: the signature and every hash check out for these bytes; `invalid`: they do not
    (the file or its manifest changed after signing; see `failures`)."""
    signer_trusted: bool
    """Whether the signing certificate leads to a trusted root (`DEEPFAKE_TRUST_ANCHORS`; none
    by default, so False for every signer). A valid signature by an untrusted signer says the
    manifest is intact and who holds the key, not that anyone vouches for them."""
    actions: list[CredentialAction]
    ingredients: list[str]
    """Files the manifest says this one was made from: title and relationship."""
    failures: list[str]
    """The checks that failed (code: explanation), the untrusted signer aside."""
    manifests: int
    """Manifests in the store: more than one when earlier edits were signed too."""

    @property
    def ai_source_type(self) -> str | None:
        """The first AI digital source type an action names, if any."""
        return next(
            (
                a.digital_source_type
                for a in self.actions
                if a.digital_source_type and source_type_name(a.digital_source_type) in AI_SOURCE_TYPES
            ),
            None,
        )


@dataclass
class ProvenanceMetadata:
    """What a file's own metadata says about its origin (none of it is signed)."""

    camera: str | None = None
    """Camera make and model (EXIF, or a video's tags)."""
    captured: str | None = None
    """Date and time the metadata gives for the capture or creation."""
    software: str | None = None
    """The camera firmware, editor or tool named (EXIF `Software`, XMP `CreatorTool`, PNG
    `Software`, a video's encoder other than FFmpeg's)."""
    generator: str | None = None
    """The AI generator the metadata names, or the generator's kind of text it carries."""
    generator_text: str | None = None
    """The generator's own text (prompt, settings), cut short."""
    digital_source_type: str | None = None
    """The XMP `DigitalSourceType` (an IPTC address)."""
    encoder: str | None = None
    """A video container's `encoder` tag, as written."""


@dataclass
class FileHistory:
    """How an image file was last saved, read from its own structure without any model: its
    format and, for a JPEG, the compression of its last save (its tables, which any encoder can
    write as it likes). Earlier saves leave no trace this reads: a photo recompressed at quality
    60 and saved again at 95 reads 95."""

    format: str
    """The container: JPEG, PNG, WebP, TIFF, ..."""
    jpeg_quality: int | None = None
    """A JPEG's last save's quality on the libjpeg scale (1-100), the one whose quantisation tables
    are nearest the file's; None when the file is not a JPEG or its tables were not found."""
    standard_tables: bool = False
    """Whether the tables are exactly libjpeg's at that quality (Pillow, OpenCV, most apps); a
    camera's or an editor's own tables only come near one, so the quality is then approximate."""
    chroma_subsampling: str | None = None
    """How colour was stored: 4:2:0 (halved both ways), 4:2:2, 4:4:4, or grey."""
    progressive: bool = False
    pages: int | None = None
    """How many pictures (pages) a TIFF holds, counted up to `ProvenanceSettings.max_counted_pages`
    (None for other formats): only the first is analysed."""
    colour_space: str | None = None
    """The colour profile (its own name, e.g. "Display P3") the picture's colours were converted
    from to sRGB before the models saw them; None for sRGB and pictures without a profile."""
    caveat: str | None = None
    """When the last save was more compressed than the models' training pictures, is a lossy WebP,
    a GIF or a HEIC photo, or holds pages the models did not see: what that means for the verdict,
    one line (None otherwise)."""


@dataclass
class Provenance:
    """Where a file says it comes from: Content Credentials (C2PA) and metadata, read without
    any model. Present evidence is strong when valid; absent evidence proves nothing (most
    platforms strip metadata on upload)."""

    summary: str
    """One line: the strongest evidence, or that there is none."""
    found: bool
    """Whether any provenance information was found (credentials, camera, editor or generator)."""
    ai_generated: bool
    """Whether valid Content Credentials or a generator's own metadata say AI made the file."""
    ai_claims: list[str]
    """Each source that says so, one line each."""
    credentials: ContentCredentials | None
    metadata: ProvenanceMetadata
    problems: list[str]
    """What could not be read (damaged, too large, stored elsewhere), one line each; the rest
    of the analysis goes on."""
    file_history: FileHistory | None = None
    """How the file was last saved (images only); None for videos and for results stored before
    it was read."""

    @staticmethod
    def from_json(data: dict[str, Any]) -> Provenance:
        """A provenance object from `to_json`'s data."""
        data = dict(data)
        credentials = data.get("credentials")
        if credentials is not None:
            credentials = dict(credentials)
            credentials["actions"] = [CredentialAction(**a) for a in credentials["actions"]]
            credentials = ContentCredentials(**credentials)
        data["credentials"] = credentials
        data["metadata"] = ProvenanceMetadata(**data["metadata"])
        if data.get("file_history") is not None:
            data["file_history"] = FileHistory(**data["file_history"])
        return Provenance(**data)


GRADCAM_MAP = "grad-cam"
"""A CNN's explanation map: Grad-CAM of its last convolution."""
PATCH_PUSH_MAP = "patch-push"
"""A CLIP class-token probe's map: the probe applied to each patch token on its own."""
PATCH_SHARE_MAP = "patch-share"
"""A CLIP patch-mean probe's map: each patch token's exact share of the logit."""
PATCH_SCORE_MAP = "patch-score"
"""A CLIP patch probe's map: its own logit of each patch token, the largest being the face's."""


@dataclass
class AnalysisResult:
    """Everything the CLI writes as JSON and the dashboard stores and shows."""

    file: str
    sha256: str
    kind: str
    width: int
    height: int
    duration_s: float | None
    verdict: str
    fake_probability: float | None
    reason: str
    model_scores: dict[str, float]
    threshold: float
    uncertain_band: list[float]
    aggregation: str
    frames_requested: int
    models: dict[str, str]
    """Model name -> short hash of its file: which models made this result."""
    frames: list[FrameResult]
    tracks: list[TrackResult]
    timing: dict[str, float]
    """Seconds per stage; the stages add up to `total`."""
    model_seconds_per_face: dict[str, float]
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    provenance: Provenance | None = None
    """Where the file says it comes from; None in results stored before provenance was read."""
    explanation_maps: dict[str, str] = field(default_factory=dict)
    """Model name -> what its explanation map is (`GRADCAM_MAP`, `PATCH_PUSH_MAP`, ...); empty in
    results stored before maps were told apart, when every CLIP member's map was a patch push."""
    weights: dict[str, float] = field(default_factory=dict)
    """Model name -> its weight in the combination that scored this result (a picture's may
    differ from a video's: `EnsembleSpec.pictures`); empty in results stored before it was kept."""
    ensemble_version: str = ""
    """Short hash of how the ensemble combined and decided this media (`EnsembleSpec.version`):
    with `models`, which ensemble made this result, since a release may change the weighing or
    the threshold and keep every model file; empty in results stored before it was kept."""

    def to_json(self) -> dict[str, Any]:
        """The result as JSON-ready data (the CLI's `--json` format)."""
        return asdict(self)

    @staticmethod
    def from_json(data: dict[str, Any]) -> AnalysisResult:
        """A result from `to_json`'s data, also as written by earlier versions."""
        data = dict(data)
        data["frames"] = [
            FrameResult(
                # Results stored before version 2 called the frame number `index`.
                frame_number=f["frame_number"] if "frame_number" in f else f["index"],
                time_s=f["time_s"],
                faces=[FaceResult(**x) for x in f["faces"]],
            )
            for f in data["frames"]
        ]
        data["tracks"] = [TrackResult(**t) for t in data["tracks"]]
        if data.get("provenance") is not None:
            data["provenance"] = Provenance.from_json(data["provenance"])
        known = AnalysisResult.__dataclass_fields__
        return AnalysisResult(**{k: v for k, v in data.items() if k in known})

    @property
    def face_count(self) -> int:
        """Faces found in all sampled frames."""
        return sum(len(frame.faces) for frame in self.frames)
