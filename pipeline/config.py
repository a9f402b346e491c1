"""Every setting of the product in one place.

Modules take a `Settings` (or one of its parts) rather than literals of their own, so a test, the
CLI and the dashboard can change behaviour without touching the stages. Folders outside the
repository (the history, caches, the shared data) are found here too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
APP_NAME = "deepfake-dashboard"

DATA_HOME_ENV = "DEEPFAKE_DATA_HOME"
"""Moves the dashboard's history (database and pictures)."""
DATABASE_URL_ENV = "DEEPFAKE_DATABASE_URL"
"""Puts the history's rows in another database (`postgresql+psycopg://user:password@host/db` for a
team); the pictures stay files under the data folder. Unset: SQLite in the data folder."""
MODELS_DIR_ENV = "DEEPFAKE_MODELS_DIR"
SHARED_DATA_ENV = "DEEPFAKE_DATA_DIR"
CACHE_DIR_ENV = "DEEPFAKE_CACHE_DIR"
TRUST_ANCHORS_ENV = "DEEPFAKE_TRUST_ANCHORS"
"""A PEM file of root certificates whose Content Credentials signers are trusted."""

DEFAULT_AGGREGATION = "mean"
"""The aggregation rule a new ensemble gets when its fit does not choose one; a shipped
ensemble's own rule (ensemble.json) is the engine's default."""


@dataclass(frozen=True)
class MediaSettings:
    """Limits and sampling for reading images and videos."""

    frames: int = 32
    """Frames sampled from a video, evenly spaced in time."""
    max_frames: int = 512
    """Most frames a user may ask to sample."""
    max_image_pixels: int = 80_000_000
    """Larger images are refused as possible decompression bombs (30k x 30k = 900 M)."""
    max_decoded_side: int = 4096
    """Images are decoded at most this large on their longer side (a JPEG at a reduced DCT scale,
    other formats reduced right after decoding): faces are found on a 640 px copy and cropped to
    224 px, so more pixels only cost memory."""
    max_video_pixels: int = 4096 * 2304
    """Largest frame size accepted (4K)."""
    comb_levels: int = 12
    """An interlaced frame's odd-row pixel whose green stands out from both even rows around it,
    brighter or darker, by more than this many levels is combing (a moving edge caught by the
    two fields at two moments) and becomes their mean; less is detail, kept."""
    max_video_seconds: float = 3 * 3600.0
    shown_frame_ms: tuple[float, float] = (10.0, 100.0)
    """A frame of an animated WebP, AVIF or PNG whose duration is at most the first number of ms is
    taken to show for the second, as browsers show them: such files are made to play "as fast as
    possible" (AVIF stores 1 ms), and their frames' times would otherwise be nearly all 0. FFmpeg
    times a GIF's frames of 0 so too, but keeps a GIF's 10 ms."""
    max_file_bytes: int = 2 * 1024**3
    min_jpeg_bits_per_block: float = 1.0
    """A Huffman-coded JPEG spends at least one bit per 8x8 block; a file with fewer bytes than
    that for the size its header claims is corrupt (a decoder would fill the rest with grey)."""
    image_suffixes: tuple[str, ...] = (
        *(".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".avif", ".gif"),
        *(".heic", ".heif"),  # how iPhones (and many phones and cameras) save photos
        ".hif",  # HEIF as Canon and Sony cameras name it (their HDR photos too)
    )
    animation_suffixes: tuple[str, ...] = (".gif", ".webp", ".avif", ".png")
    """Pictures that may be animations, which are read as videos (by their content:
    `pipeline.engine.media.detect_kind`)."""
    video_suffixes: tuple[str, ...] = (
        *(".mp4", ".mov", ".m4v", ".3gp", ".3g2"),  # ISO media: phones, cameras, the web
        *(".avi", ".mkv", ".webm", ".wmv", ".asf", ".flv"),
        *(".ts", ".mts", ".m2ts", ".mpg", ".mpeg"),  # MPEG streams: broadcast, camcorders (AVCHD), DVD-era files
    )
    shared_suffixes: tuple[str, ...] = (".ts", ".mts")
    """Video suffixes that source code uses too (TypeScript, and its ES modules): a folder scan
    takes such a file only when its content is a video, so a project's sources are not failures."""
    max_heif_meta_bytes: int = 16 * 1024**2
    """Largest description (`meta` box) of a HEIF picture read (an iPhone's is some kilobytes)."""
    max_heif_tiles: int = 1024
    """Most coded pictures a HEIF grid may be made of (an iPhone's 12-megapixel photo is 48 tiles;
    each costs a decoder of its own)."""


@dataclass(frozen=True)
class FaceSettings:
    """Face finding, cropping and tracking."""

    detect_max_side: int = 640
    """Frames are downscaled so that their longer side is at most this before MTCNN runs."""
    recheck_max_side: int = 1920
    """Second look, at up to this size, at frames where the fast pass found no face or lost a
    person that was seen before and after (see `pipeline.engine.faces.find_faces`)."""
    min_face_px: int = 40
    """Smallest face kept, in pixels of the original frame (shorter box side)."""
    min_frame_px: int = 12
    """Frames narrower than this (MTCNN's smallest window) hold no face to find."""
    min_confidence: float = 0.85
    max_faces_per_frame: int = 20
    crop_scale: float = 0.92
    """Side of the square crop as a multiple of sqrt(box width * box height), centred on the box.
    Measured on `dfdc-faces`: its crops are MTCNN's box made square with no extra margin."""
    crop_size: int = 224
    """Side of the face crop in pixels; each model resizes it to its own input size."""
    track_iou: float = 0.3
    """Boxes in consecutive sampled frames with at least this overlap belong to one person."""
    detect_batch: int = 4
    """Frames per MTCNN call (the package batches frames of one size). With TensorFlow Lite the
    batch hardly changes the time (1.58, 1.63, 1.59 s a bench video at 8, 4, 2 frames), while the
    proposal network's buffers grow with it (peak memory 1,403 MB at 8 and 1,345 at 4 on the
    5-minute bench video); and a batch of frames that all miss their face is searched again with
    a border (a face filling the frame), so a batch too small would retry on a scene's few misses."""
    dark_mean_light: float = 0.09
    """A frame in which no face is found and whose mean linear light (0..1) is under this (half of
    18% grey: a stop under what automatic exposure aims at) is looked at again brightened; MTCNN
    loses faces in dark scenes (rule 31, benchmarks/README.md). 0 turns the look off."""
    dark_target_light: float = 0.18
    """The mean linear light a dark frame is brightened to for that look (18% grey)."""
    dark_max_gain: float = 16.0
    """At most this much brighter (4 stops): a black frame stays black."""
    mtcnn_runtime: str = "tflite"
    """What runs MTCNN's three networks: "tflite" (TensorFlow Lite copies of the package's Keras
    networks, converted once and cached: the same outputs to within 1e-4, and detection 1.4-1.9
    times as fast on 2 AVX2 cores, `benchmarks/tflite_speed.py`) or "keras" (the package's
    networks, compiled into TensorFlow graphs)."""


@dataclass(frozen=True)
class ScoringSettings:
    """How faces are scored."""

    batch_size: int = 4
    """Crops a CNN member scores at once. Small on purpose: a TensorFlow Lite interpreter keeps
    buffers for its largest batch, and at 16 crops MobileNetV2-224's were where the engine's peak
    memory was (1,560 MB against 1,432 at 4 on the 5-minute bench video, Intel Xeon, 2026-12-02);
    the logits are the same and a crop is scored a little faster at 4 (benchmarks/README.md)."""
    cnn_runtime: str = "tflite"
    """What runs the CNN members when they score: "tflite" (TensorFlow Lite, fp32, XNNPACK: the same
    logits to about 1e-4 and 2.6-3.8 times faster on CPU, benchmarks/tflite_speed.py; converted once
    per model file and cached) or "keras" (the Keras model itself, which explanation maps always use)."""
    costly_faces_per_person: int = 6
    """Faces of each person the costly members score (CLIP: about 0.05 s a face on 2 cores run
    up to block 5, 0.13 s for the whole tower), evenly spread over the person's appearances; the
    others score every face."""
    resaved_crop_quality: int | None = None
    """Each face crop saved as JPEG at this quality (libjpeg's scale, 4:2:0) and read back before the
    members score it; None (shipped) scores crops as cut. The DFDC training crops were saved at 75,
    while video frames carry no JPEG history: a knob for rule 34's measurement
    (benchmarks/README.md), on in no release."""
    resaved_frame_quality: int | None = None
    """Each frame of a video saved as JPEG at this quality (libjpeg's scale, 4:2:0) at its own
    size and read back before faces are found and cut from it; pictures are left as they are. The
    DFDC training crops were cut at about the face's own size and saved at 75 there, which rule 34's
    re-save of the already resized crops did not reproduce; rule 36 found the CLIP member reads the
    difference. None (shipped) scores frames as decoded: rule 37 (benchmarks/README.md) did not
    adopt it, since with the shipped band three fake clips lost their `fake`."""


@dataclass(frozen=True)
class VerdictSettings:
    """How face scores become a verdict."""

    min_track_fraction: float = 0.2
    """A person seen in fewer than this share of the most-seen person's frames is shown but
    does not decide the verdict (a passer-by or a false detection)."""
    crowd_false_alarm_chance: float = 0.05
    """Several people: the media is `fake` only if the chance that as many real people include
    one scored as high as the most suspicious person (from the false-alarm curve in
    ensemble.json) is below this; else `uncertain`. Conventional 5%."""
    false_alarm_points: tuple[float, ...] = (*(round(0.5 + 0.01 * k, 2) for k in range(50)), 0.995, 0.999)
    """Probabilities at which the cross-source table (held-out real faces) and `fit_ensemble`
    (validation real faces) record the share of real faces scored at least that high."""
    miss_points: tuple[float, ...] = (0.001, 0.005, *(round(0.01 * k, 2) for k in range(1, 51)))
    """Probabilities at which the same two record the share of fake faces scored at most that
    low (what a `real` verdict is worth)."""
    trained_face_px: int = 66
    """The 5th percentile of the training faces' sizes (the shorter side of the engine's face box
    in each source's own pixels, every source weighing the same; rule 44,
    `python -m benchmarks.training_face_sizes`): a verdict whose most suspicious person's median
    face, as the models were given it, is smaller says so (real faces made smaller were told `real`
    less often, rule 21). 0 says nothing."""
    trained_face_focus: int = 76
    """The 5th percentile of the training faces' focus (`pipeline.engine.faces.face_focus` of the
    crop the members are given, every source weighing the same; rule 47, the same command): a
    verdict whose most suspicious person's median focus is lower says so, and in the media of
    `uncertain_when_soft` is `uncertain` (blurred real photos were told `fake` far more often,
    rules 46 and 101). 0 turns both off."""
    turned_face: float = 0.38
    """A person whose faces' median `pipeline.engine.faces.face_turn` (from MTCNN's five points) is
    at least this is turned away from the camera, and a verdict they decide says so: validation
    faces so turned were ranked worse (their fakes, re-shared, told `fake` less often) and their
    real faces were told `fake` no more often (rules 130-131). Fitted on training crops against their face meshes' turn of 45 degrees
    (rule 131, `python -m benchmarks.turned_faces fit`). 0 says nothing."""
    colourless_chroma: float = 3.0
    """A person whose faces' median `pipeline.engine.faces.face_chroma` is under this has no colour
    (a black-and-white picture or video), and a verdict they decide says so: every training face
    was in colour, and validation photos made black-and-white were ranked worse and their real
    faces scored higher (rule 117). Grey crops measure 0, also once saved as colour JPEG; the shared
    sources' validation crops, all in colour, measure 5.2 at the least, 1% of DFDC's under 10.3 (run
    2026-12-07, benchmarks/README.md, rule 117). 0 says nothing."""
    toned_colour_spread: float = 0.925
    """A face that holds colour (`face_chroma` at least `colourless_chroma`) but whose colour follows
    its brightness alone (`pipeline.engine.faces.face_colour_spread` under this: a sepia, blue or
    otherwise toned black-and-white picture) is toned; a person most of whose faces are toned is
    `uncertain`, and so is the media when they are the most suspicious: real photos so toned were
    told `fake` 25.7% of the time (rule 118). The value is the 0.1st percentile of the shared
    sources' validation pictures in colour, as they are, saved as JPEG 75, warmed and made vivid,
    each face read at the picture's own resolution (rule 121, benchmarks/README.md; 0.1-0.2% of
    them are under it); toned copies of the same pictures are all under it as PNG, 95% of sepia
    ones saved as JPEG 90 and 51% at 75. 0 turns it off."""
    toned_reduction: int = 4
    """`face_colour_spread` reads a face averaged down to 1/this of its side in the picture's own
    pixels (at most the crop's; rule 121). An eighth recognises far more toned JPEGs (sepia at
    JPEG 75: 9.6% missed against 48.6%) but takes small faces in colour (70-74 px) for toned, two
    of rule 101's 562 pictures, so it was not adopted (rules 122 and 124)."""
    unseen_odds: bool = False
    """A person (and the media) is `fake` or `real` only if the unseen-source curves at their
    probability give the odds the uncertain band gives the probability itself (rule 111: between
    about 0.05 and 0.95 a score is little evidence on a source the models never saw); else
    `uncertain`. Only where every curve came from unseen sources."""
    uncertain_when_soft: tuple[str, ...] = ("image",)
    """Media kinds in which a person softer than `trained_face_focus` is `uncertain`, and so is the
    media when they are its most suspicious person (rule 103: pictures). A video's frames' faces
    are often softer than every training crop, its fakes still told apart: there the label stands
    (rule 102)."""


@dataclass(frozen=True)
class PictureSettings:
    """The pictures the dashboard keeps with a result."""

    preview_max_side: int = 960
    """Sampled frames are kept (and overlays drawn) at most this large."""
    frame_jpeg_quality: int = 85
    """Frames and overlays on them are for display only."""
    crop_jpeg_quality: int = 95
    """Face crops are explained again later: keep them close to what the models scored."""
    explained_faces_per_person: int = 1
    """Most suspicious faces per person explained when the analysis runs."""
    max_upload_name_bytes: int = 200
    """Upload names are cut to this many bytes (file systems allow 255)."""


@dataclass(frozen=True)
class StoreSettings:
    """How the history talks to its database."""

    busy_timeout_s: float = 30.0
    """SQLite: how long a writer waits for another one before giving up."""
    connect_timeout_s: float = 10.0
    """PostgreSQL: how long to wait for the server before saying it cannot be reached."""
    pool_size: int = 5
    """Connections kept open per process (PostgreSQL and SQLite alike)."""
    max_overflow: int = 5
    """Extra connections a busy process may open beyond `pool_size`."""
    pool_timeout_s: float = 30.0
    """How long a thread waits for a free connection from the pool."""


@dataclass(frozen=True)
class MemorySettings:
    """How glibc's allocator behaves in a process that analyses media. Every engine sets it when
    it is made (`pipeline.engine.allocator`); scan workers also get it in their environment, so
    it holds from their first allocation."""

    arena_max: int = 2
    """glibc gives every thread that allocates its own malloc arena, and TensorFlow's threads
    leave them fragmented: two arenas cut a scan worker's peak memory by about 70 MB at no
    measurable cost in speed."""
    mmap_threshold_bytes: int = 1024**2
    """Allocations at least this big get their own mapping, returned to the system when freed.
    glibc otherwise raises the threshold after the first large frees, so a 1080p clip's frames
    (6 MB each) then come from the heap and stay resident after the clip (measured, 28 shared
    videos in one process: 1,406 MB of private memory at the end against 985 MB)."""

    def environment(self) -> dict[str, str]:
        """The same settings as glibc reads them from a new process's environment."""
        return {"MALLOC_ARENA_MAX": str(self.arena_max), "MALLOC_MMAP_THRESHOLD_": str(self.mmap_threshold_bytes)}


@dataclass(frozen=True)
class ScanSettings:
    """Batch analysis on Ray (`python -m pipeline scan`)."""

    cpus_per_worker: float = 1.0
    """CPU cores a worker asks Ray for when the number of workers is not given (a worker runs
    its models with this many threads, at least one)."""
    in_flight_per_worker: int = 2
    """Files queued on each worker at once: the next file starts without waiting for the
    driver, and a list of millions of files is never scheduled all at once."""
    attempts: int = 2
    """Tries per file when its worker dies while analysing it (killed, out of memory, a crash
    in a library); a file that fails this many times is recorded as failed."""
    worker_memory_bytes: int = 1_500 * 1024**2
    """Memory one worker may need at its peak (about 1.2 GB measured, plus headroom): the
    default number of local workers is capped so that they fit in the free memory."""
    connect_timeout_s: float = 10.0
    """How long to wait for a Ray cluster given by `--address` to answer (Ray itself would retry
    for ever)."""
    worker_start_timeout_s: float = 600.0
    """No worker ready after this long (no room on the cluster, models that do not load): the
    scan stops with a message instead of waiting for ever."""
    max_start_failures: int = 3
    """Workers that may die while starting, in a row, before the scan gives up."""
    store_pool_size: int = 2
    """Database connections each worker keeps (a worker saves one result at a time)."""
    object_store_bytes: int = 256 * 1024**2
    """Ray's shared object store on a local instance: only paths and small summaries travel."""
    list_suffixes: tuple[str, ...] = (".txt", ".lst", ".list", ".csv")
    """A file argument with one of these suffixes is a list of paths, one per line."""


@dataclass(frozen=True)
class ProvenanceSettings:
    """Reading where a file says it comes from (Content Credentials and metadata). A file's
    metadata is written by whoever made the file, so everything here is a bound on hostile input:
    what is larger is reported as a problem and skipped, never read."""

    max_metadata_bytes: int = 1024**2
    """Largest EXIF, XMP or text block read (a camera's EXIF is some kilobytes; a generator's
    prompt and workflow some tens)."""
    max_manifest_bytes: int = 16 * 1024**2
    """Largest C2PA manifest store checked (a signed photo's is some tens of kilobytes, with
    thumbnails and ingredients some megabytes)."""
    max_container_entries: int = 100_000
    """Most JPEG segments, PNG or RIFF chunks, or MP4 top-level boxes walked to find metadata (a
    large PNG has thousands of 8 KB picture chunks; each costs one 8-byte read)."""
    max_text_chars: int = 2000
    """Longest text kept from a metadata field (a generator's prompt) in the result."""
    max_items: int = 50
    """Most actions, ingredients, validation failures or tags kept from one file."""
    max_counted_pages: int = 1000
    """Most pages of a TIFF counted (the models see only the first; its verdict says how many
    more there are): a file can chain its pages' directories by the million, or in a loop."""
    generator_text_keys: tuple[tuple[str, str], ...] = (
        ("parameters", "the Stable Diffusion web UI's format"),  # AUTOMATIC1111, Forge, Fooocus
        ("prompt", "ComfyUI"),
        ("workflow", "ComfyUI"),
        ("sd-metadata", "InvokeAI"),
        ("invokeai_metadata", "InvokeAI"),
        ("dream", "InvokeAI"),
    )
    """PNG text keys (lowercase) that image generators write and cameras and editors never do,
    each with the tool that writes it."""
    generator_comment_fields: tuple[str, ...] = ("Steps: ", "Seed: ")
    """Fields that the Stable Diffusion web UI's generation text always holds ("...Steps: 20,
    Sampler: Euler a, CFG scale: 7, Seed: 1234, Size: 512x512, Model: ..."): an EXIF
    `UserComment` holding all of them is that text, which the web UI (AUTOMATIC1111, Forge)
    writes into the JPEG and WebP pictures it saves, as it writes a PNG's `parameters`."""
    generator_names: tuple[str, ...] = (
        "stable diffusion",
        "stablediffusion",
        "stability ai",
        "dreamstudio",
        "midjourney",
        "dall-e",
        "dall·e",
        "openai",
        "adobe firefly",
        "novelai",
        "comfyui",
        "automatic1111",
        "invokeai",
        "fooocus",
        "leonardo.ai",
        "ideogram",
        "craiyon",
        "nightcafe",
        "runway gen",
        "black forest labs",
        "google imagen",
    )
    """Names (lowercase, matched as whole words) of AI generators that may appear as the software
    of a file: EXIF `Software`, XMP `CreatorTool`, PNG `Software`/`Source`, a video's encoder."""
    generic_encoders: tuple[str, ...] = ("lavf", "lavc", "aom coding")
    """Encoder tags of FFmpeg's libraries and of the AV1 encoder libaom, which AVIF animations
    carry (prefixes, lowercase): nearly every tool writes them, so they name no camera, editor or
    generator."""
    trained_jpeg_quality: int = 90
    """The JPEG quality of the photos the models were trained on (the shared gan-faces, swap-faces
    and sd-faces pictures are all q90; the DFDC crops, frames of videos, q75). A photo last saved
    below it is more compressed than they were, and its verdict says so: re-saved at quality 45-75,
    validation photos were ranked worse and real ones told fake more often (the model card's "A
    photo saved more compressed than the training photos"). Read from the data, not tuned."""
    trust_anchors: Path | None = field(
        default_factory=lambda: Path(os.environ[TRUST_ANCHORS_ENV]) if os.environ.get(TRUST_ANCHORS_ENV) else None
    )
    """PEM file of the root certificates to trust (e.g. the C2PA trust list, saved locally):
    a Content Credentials signer is trusted when its certificate leads to one of them. None (the
    default): no signer is trusted, and a valid signature is reported as such, by an untrusted
    signer."""


@dataclass(frozen=True)
class Settings:
    """All settings. Build with defaults and `dataclasses.replace` to change a part."""

    media: MediaSettings = field(default_factory=MediaSettings)
    faces: FaceSettings = field(default_factory=FaceSettings)
    scoring: ScoringSettings = field(default_factory=ScoringSettings)
    verdict: VerdictSettings = field(default_factory=VerdictSettings)
    pictures: PictureSettings = field(default_factory=PictureSettings)
    provenance: ProvenanceSettings = field(default_factory=ProvenanceSettings)
    memory: MemorySettings = field(default_factory=MemorySettings)
    models_dir: Path = field(default_factory=lambda: Path(os.environ.get(MODELS_DIR_ENV, REPO_ROOT / "models")))


def data_home() -> Path:
    """The dashboard's data folder (history and pictures): `$DEEPFAKE_DATA_HOME`, else the
    platform's user data folder (`~/.local/share/deepfake-dashboard` on Linux)."""
    if os.environ.get(DATA_HOME_ENV):
        return Path(os.environ[DATA_HOME_ENV]).expanduser()
    from platformdirs import user_data_path

    return user_data_path(APP_NAME, appauthor=False)


def database_url() -> str | None:
    """The history database named by `$DEEPFAKE_DATABASE_URL`, or None for SQLite in the data
    folder."""
    return os.environ.get(DATABASE_URL_ENV, "").strip() or None


def cache_dir() -> Path:
    """Where long training jobs keep what they computed (prepared crops, features), so a stopped
    job resumes: `$DEEPFAKE_CACHE_DIR`, else the platform's user cache folder."""
    if os.environ.get(CACHE_DIR_ENV):
        return Path(os.environ[CACHE_DIR_ENV]).expanduser()
    from platformdirs import user_cache_path

    return user_cache_path(APP_NAME, appauthor=False)


def shared_data_dir() -> Path:
    """Where the shared real data lives: `$DEEPFAKE_DATA_DIR` or `../shared/data`."""
    return Path(os.environ.get(SHARED_DATA_ENV, REPO_ROOT.parent / "shared" / "data"))
