"""The one thin layer that maps config dataclasses to the keyword arguments of each stage."""

from __future__ import annotations

from pathlib import Path

from pipeline.config import CameraConfig, ReIDConfig, RunConfig
from pipeline.errors import WeightsError


def resolve_device(device: str) -> str:
    """The device to run on: "auto" means "cuda" where a CUDA device is visible, else "cpu".

    "cuda" without a visible CUDA device is a ConfigError, before any process starts.
    """
    from pipeline.errors import ConfigError

    if device == "cpu":
        return device
    try:
        import torch

        visible = torch.cuda.is_available()
    except ImportError:
        visible = False
    if device == "auto":
        return "cuda" if visible else "cpu"
    if not visible:
        raise ConfigError(f"device: {device} requested but no CUDA device is visible")
    return device


def check_weights(config: RunConfig) -> None:
    """Open every configured weights file before any process starts, with the loaders' own resolution.

    A missing file, or one that is not the model its key needs (a detector for detector.weights, a re-ID
    model for reid.weights), is a WeightsError naming the key and the path. A `vpm` embedder is built once
    here on the CPU, so a checkpoint or tag that cannot load fails before any camera starts.
    """

    def require_file(key: str, weights: str | None, bare_name_ok: bool = False) -> None:
        path = Path(weights or "").expanduser()
        # A bare name such as yolov8n.pt is left to the backing library, which downloads it.
        if bare_name_ok and path.parent == Path(".") and str(weights) == path.name and not path.exists():
            return
        if not path.is_file():
            raise WeightsError(f"{key}: weights file {weights} not found; give the path to a local file")

    reid = config.reid
    key = "detector.weights"
    try:
        if config.detector.name == "yolo":
            from detectors.yolo import check_weights as check_detector

            require_file(key, config.detector.weights, bare_name_ok=True)
            check_detector(config.detector.weights)
        key = "reid.weights"
        if reid.embedder == "onnx":
            from pipeline.embedders.onnx import check_weights as check_onnx

            require_file(key, reid.weights)
            check_onnx(reid.weights, input_size=reid.input_size)
        elif reid.embedder == "vpm":
            from pipeline.embedders.vpm import check_weights as check_vpm

            if reid.weights:
                require_file(key, reid.weights)
            check_vpm(checkpoint=reid.weights, model=reid.model, pretrained=reid.pretrained)
    except WeightsError as exc:
        message = str(exc)
        raise WeightsError(message if message.startswith(f"{key}:") else f"{key}: {message}") from None


def build_source(camera: CameraConfig, max_frames: int | None = None):
    """The camera's source; `parse_source` decides its kind (video, image sequence, stream, webcam)."""
    from pipeline.sources import create_source, parse_source

    spec = parse_source(camera.id, camera.source)
    kwargs = {"fps_cap": camera.fps}
    if spec.live:
        policy = "latest" if camera.frame_policy == "auto" else camera.frame_policy
        kwargs.update(
            transport=camera.transport,
            reconnect=camera.reconnect,
            max_retries=camera.max_retries,
            read_timeout_s=camera.read_timeout_s,
            frame_policy=policy,
        )
    else:
        kwargs.update(
            start_frame=camera.start_frame,
            max_frames=min_limit(camera.max_frames, max_frames),
            loop=camera.loop,
            time_offset_s=camera.time_offset_s,
        )
    return create_source(camera.id, spec, **kwargs)


def build_detector(config: RunConfig, camera: CameraConfig, device: str):
    from detectors import create_detector

    detector = config.detector
    if detector.name == "mot":
        return create_detector("mot", path=camera.detections, min_confidence=detector.confidence)
    if detector.name == "yolo":
        found = create_detector(
            "yolo",
            weights=detector.weights,
            confidence=detector.confidence,
            iou=detector.iou,
            imgsz=detector.imgsz,
            device=device,
        )
    else:
        found = create_detector(detector.name)
    if detector.tiles == 1:
        return found
    from detectors.tiling import TiledDetector

    return TiledDetector(found, grid=detector.tiles)


def build_detection_stage(config: RunConfig, device: str):
    """The detector stage: one detector for every camera (one per camera for `mot` det.txt files)."""
    from pipeline.detection_stage import DetectionStage

    built: dict[str, object] = {}

    def detector_for(camera_id: str):
        key = camera_id if config.detector.name == "mot" else ""
        if key not in built:
            built[key] = build_detector(config, config.camera(camera_id), device)
        return built[key]

    return DetectionStage(
        detector_for=detector_for,
        tracker_for=lambda camera_id, fps: build_tracker(config, camera_id, fps),
    )


def build_tracker(config: RunConfig, camera_id: str, frame_rate: float):
    from pipeline.tracking import InCameraTracker

    return InCameraTracker(
        camera_id, method=config.tracker.method, frame_rate=round(frame_rate) or 30, **config.tracker.params
    )


def build_sampler(config: RunConfig, thumbnails_dir: Path | None = None):
    """The crop sampler; with `thumbnails_dir` (one camera's folder) it also keeps thumbnails there."""
    from pipeline.crop_sampler import CropSampler
    from pipeline.thumbnails import ThumbnailKeeper

    s, out = config.sampler, config.output
    keeper = None
    if thumbnails_dir is not None and out.thumbnails > 0:
        keeper = ThumbnailKeeper(thumbnails_dir, per_track=out.thumbnails, size=out.thumbnail_size)
    return CropSampler(
        min_height=s.min_height,
        min_confidence=s.min_confidence,
        every_k=s.every_k,
        max_per_track=s.max_per_track,
        edge_margin=s.edge_margin,
        max_overlap=s.max_overlap,
        thumbnails=keeper,
    )


def build_embedder(config: RunConfig, device: str):
    return build_reid_embedder(config.reid, device)


def build_reid_embedder(reid: ReIDConfig, device: str):
    """The embedder of a `reid:` section (also what search uses to embed a query like the run did)."""
    from pipeline.embedders import create_embedder

    if reid.embedder == "vpm":
        return create_embedder(
            "vpm", checkpoint=reid.weights, model=reid.model, pretrained=reid.pretrained, device=device
        )
    return create_embedder(
        "onnx",
        weights=reid.weights,
        input_size=reid.input_size,
        mean=reid.mean,
        std=reid.std,
        scale=reid.scale,
        channel_order=reid.channel_order,
        device=device,
    )


def store_path(config: RunConfig, out_dir: Path) -> Path:
    return resolve_store_path(config.store.path, out_dir)


def resolve_store_path(configured: str | Path | None, out_dir: Path) -> Path:
    """Where a run keeps its identity store: `store.path` when set, else OUT/store/gallery.sqlite."""
    return Path(configured) if configured else out_dir / "store" / "gallery.sqlite"


def build_store(config: RunConfig, out_dir: Path, dim: int):
    from pipeline.store import EmbeddingStore

    s = config.store
    return EmbeddingStore(
        store_path(config, out_dir),
        dim=dim,
        index=s.index,
        approximate_threshold=s.approximate_threshold,
        max_prototypes=s.max_prototypes,
    )


def build_matcher(config: RunConfig, store, session: int, seed_store: Path | None = None):
    """The run's Matcher on `store`; it starts from what `topology.learned` or the runs of `seed_store`
    (default: `store`'s file) learned."""
    from pipeline.matcher import Matcher
    from pipeline.topology import seed_topology

    m, topology = config.matcher, config.topology
    seed = store.path if seed_store is None else seed_store
    return Matcher(
        store,
        session,
        threshold=m.threshold,
        min_embeddings=m.min_embeddings,
        revise_every=m.revise_every,
        top_k=m.top_k,
        overlaps=topology.overlaps,
        transitions={(t.source, t.target): (t.min_s, t.max_s) for t in topology.transitions},
        commit_interval_s=config.store.commit_interval_s,
        rejoin_max_gap_s=m.rejoin_max_gap_s,
        refine_at_end=m.refine,
        refine_interval_s=m.refine_interval_s if m.refine else None,
        learned=None if seed is None else seed_topology(topology.learned, seed),
        model=reid_model_name(config.reid),
    )


def reid_model_name(reid: ReIDConfig) -> str:
    """What names the re-ID model a run used, for what is learned per model (score calibration)."""
    weights = Path(reid.weights).name if reid.weights else reid.pretrained
    return (
        f"{reid.embedder}:{reid.model}:{weights}" if reid.embedder == "vpm" else f"{reid.embedder}:{weights}"
    )


def min_limit(a: int | None, b: int | None) -> int | None:
    """The tighter of two optional limits."""
    return b if a is None else a if b is None else min(a, b)
