"""Fast accuracy loop for tracking and linking: record the suite's detections and crop embeddings once,
then replay tracker, crop sampler and matcher over them in seconds and evaluate.

`record` runs the detector (at a low confidence, so any threshold can be replayed) and the re-ID model
on every confident detection of every camera of the chosen sets of `mtmc_accuracy.py`, and keeps them
in OUT/<set>.npz. `replay` runs the in-camera tracker, the crop sampler and the matcher as the pipeline
does, on one clock (messages of all cameras in time order), with an embedding taken from the recorded
detection under each sampled track box, and prints cross-camera and per-camera IDF1, linked and
unlinked, per set. It measures the matcher and the tracker, not the runtime: the decoder, detector and
re-ID model are not run again.

    python benchmarks/replay_suite.py record --out replay --frames 400
    python benchmarks/replay_suite.py replay --out replay --set tracker.params.track_buffer=60
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
from common import begin, benchmark_parser
from mtmc_accuracy import SETS, write_set_config

from pipeline import build
from pipeline.config import load
from pipeline.evaluation import CROSS_CAMERA, evaluate, load_gt_manifest, perfect_links
from pipeline.messages import CameraFinished, Detections, Embedding, Frame, Tracks
from pipeline.sinks.exports import box_holders, handover_ends
from pipeline.store import EmbeddingStore
from pipeline.tracklet_spans import box_ious

logger = logging.getLogger("replay_suite")

RECORD_CONFIDENCE = 0.05  # detections kept; replays apply the configured confidence
EMBED_CONFIDENCE = 0.3  # detections embedded (the sampler takes crops of confidence >= 0.4 by default)
EMBED_MIN_HEIGHT = 32
MATCH_IOU = 0.5  # a sampled track box takes the embedding of the recorded detection it overlaps this much


def record_set(name: str, assets: Path, out: Path, frames: int | None, overrides: list[str]) -> Path:
    """Build one set, detect and embed every camera (`overrides`: config KEY=VALUE, such as detector
    settings); write OUT/<name>.npz and return its path."""
    set_dir = out / "sets" / name
    manifest = SETS[name].build(assets, set_dir, frames)
    config = load(
        write_set_config(set_dir / "cameras.yaml", assets, manifest),
        [*overrides, f"detector.confidence={RECORD_CONFIDENCE}"],
    )
    embedder = build.build_embedder(config, "cpu")
    arrays: dict[str, np.ndarray] = {}
    for camera in config.cameras:
        began = time.perf_counter()
        detector = build.build_detector(config, camera, "cpu")
        source = build.build_source(camera)
        source.open()
        rows, vectors, shape = [], [], None
        for frame in source.frames():
            shape = frame.image.shape
            (found,) = detector.detect([frame.image], frame_indices=[frame.index])
            h, w = shape[:2]
            crops, which = [], []
            for box, conf in zip(found.xyxy, found.confidence, strict=True):
                rows.append([frame.index, frame.timestamp, *box.tolist(), float(conf)])
                x1, y1 = max(int(box[0]), 0), max(int(box[1]), 0)
                x2, y2 = min(int(np.ceil(box[2])), w), min(int(np.ceil(box[3])), h)
                if conf >= EMBED_CONFIDENCE and y2 - y1 >= EMBED_MIN_HEIGHT and x2 > x1:
                    crops.append(frame.image[y1:y2, x1:x2])
                    which.append(len(rows) - 1)
            row_vectors = np.full((len(found), 0), np.nan, np.float32)
            if crops:
                features = embedder.embed(crops)
                row_vectors = np.full((len(found), features.shape[1]), np.nan, np.float32)
                start = len(rows) - len(found)
                for j, r in enumerate(which):
                    row_vectors[r - start] = features[j]
            vectors.append(row_vectors)
        source.close()
        dim = max((v.shape[1] for v in vectors), default=0)
        table = np.array(rows, np.float64).reshape(-1, 7)
        emb = np.concatenate(
            [v if v.shape[1] == dim else np.full((len(v), dim), np.nan, np.float32) for v in vectors]
        )
        arrays[f"{camera.id}/detections"] = table
        arrays[f"{camera.id}/embeddings"] = emb
        arrays[f"{camera.id}/shape"] = np.array(shape or (0, 0, 3))
        arrays[f"{camera.id}/fps"] = np.array(source.fps)
        logger.info(
            "%s %s: %d detections in %.0f s", name, camera.id, len(table), time.perf_counter() - began
        )
    path = out / f"{name}.npz"
    np.savez_compressed(path, manifest=str(manifest), **arrays)
    return path


def _camera_messages(config, camera_id: str, data) -> list[tuple[float, int, object]]:
    """The messages one camera's worker and re-ID stage would send, keyed for a time-ordered merge."""
    table, vectors = data[f"{camera_id}/detections"], data[f"{camera_id}/embeddings"]
    shape, fps = tuple(data[f"{camera_id}/shape"]), float(data[f"{camera_id}/fps"])
    tracker = build.build_tracker(config, camera_id, fps)
    sampler = build.build_sampler(config)
    image = np.zeros(shape, np.uint8)
    keep = table[:, 6] >= config.detector.confidence
    frames = np.unique(table[:, 0]).astype(int)
    by_frame = {int(f): np.flatnonzero((table[:, 0] == f) & keep) for f in frames}
    times = {int(f): float(table[table[:, 0] == f][0, 1]) for f in frames}
    offset = next(c.time_offset_s for c in config.cameras if c.id == camera_id)
    out: list[tuple[float, int, object]] = []
    seq = 0
    last_index = last_time = 0
    if len(frames):
        last_index, last_time = int(frames.max()), times[int(frames.max())]
    for index in range(1, last_index + 1):
        rows = by_frame.get(index, np.empty(0, int))
        timestamp = times.get(index, offset + (index - 1) / fps)  # the file source's clock
        found = Detections(
            table[rows, 2:6].astype(np.float32),
            table[rows, 6].astype(np.float32),
            np.zeros(len(rows), np.int32),
        )
        frame = Frame(camera_id, index, timestamp, image)
        tracks, ended = tracker.update(found, frame)
        out.append((timestamp, (seq := seq + 1), tracks))
        for crop in sampler.update(frame, tracks):
            box = tracks.xyxy[int(np.flatnonzero(tracks.track_id == crop.track_id)[0])]
            if not len(rows):
                continue
            ious = box_ious(box, table[rows, 2:6])
            best = int(np.argmax(ious))
            vector = vectors[rows[best]] if vectors.shape[1] else None
            if ious[best] < MATCH_IOU or vector is None or np.isnan(vector).any():
                continue
            emb = Embedding(
                camera_id, crop.track_id, index, timestamp, vector.astype(np.float32), crop.quality
            )
            out.append((timestamp, (seq := seq + 1), emb))
        for track in ended:
            sampler.forget(track.track_id)
            out.append((timestamp, (seq := seq + 1), track))
    for track in tracker.finish(last_index, last_time):
        out.append((last_time, (seq := seq + 1), track))
    out.append((last_time, (seq := seq + 1), CameraFinished(camera_id, last_index)))
    return out


def replay_set(path: Path, assets: Path, overrides: list[str]) -> dict:
    """Replay one recorded set linked and unlinked; cross-camera and per-camera IDF1 of both."""
    data = np.load(path)
    manifest = Path(str(data["manifest"]))
    gt, lengths = load_gt_manifest(manifest)
    config_path = write_set_config(Path(tempfile.mkdtemp()) / "cameras.yaml", assets, manifest)
    config = load(config_path, overrides)
    cameras = [c.id for c in config.cameras]
    streams = [(c, m) for i, c in enumerate(cameras) for m in _camera_messages(config, c, data)]
    order = sorted(
        range(len(streams)), key=lambda k: (streams[k][1][0], cameras.index(streams[k][0]), streams[k][1][1])
    )
    messages = [streams[k][1][2] for k in order]
    dim = next(m.vector.shape[0] for m in messages if isinstance(m, Embedding))
    results = {}
    for mode, extra in (("linked", []), ("unlinked", ["matcher.threshold=1.0"])):
        run_config = load(config_path, [*overrides, *extra])
        store = EmbeddingStore(None, dim=dim)
        session = store.begin_session()
        matcher = build.build_matcher(run_config, store, session)
        for message in messages:
            matcher.update(message)
        matcher.finish()
        records = store.tracklets(session=session)
        identity = {(t.camera, t.track_id): t.global_id for t in records}
        ends = handover_ends(records)
        holder = box_holders(records)
        pred = {c: [] for c in cameras}
        for m in messages:
            if isinstance(m, Tracks):
                for box, conf, track in zip(m.xyxy, m.confidence, m.track_id, strict=True):
                    tid = holder(m.camera_id, int(track), m.frame_index)
                    if m.frame_index > ends.get((m.camera_id, tid), m.frame_index):
                        continue
                    x1, y1, x2, y2 = box.tolist()
                    gid = identity[(m.camera_id, tid)]
                    pred[m.camera_id].append([m.frame_index, gid, x1, y1, x2 - x1, y2 - y1, conf, -1, -1, -1])
        pred_arrays = {c: np.array(rows, np.float64).reshape(-1, 10) for c, rows in pred.items()}
        results[mode] = evaluate(pred_arrays, gt, num_frames=lengths)
        if mode == "unlinked":  # the ceiling of linking the same tracks
            results["perfect"] = evaluate(perfect_links(pred_arrays, gt), gt, num_frames=lengths)
        results[mode]["topology"] = matcher.topology()
        store.close()
    return {
        "set": path.stem,
        "cameras": cameras,
        "cross_idf1_linked": results["linked"][CROSS_CAMERA]["IDF1"],
        "cross_idf1_unlinked": results["unlinked"][CROSS_CAMERA]["IDF1"],
        "cross_idf1_perfect_links": results["perfect"][CROSS_CAMERA]["IDF1"],
        "camera_idf1_linked": {c: results["linked"][c]["IDF1"] for c in cameras},
        "camera_idf1_unlinked": {c: results["unlinked"][c]["IDF1"] for c in cameras},
    }


def main(argv: list[str] | None = None) -> int:
    parser = benchmark_parser(__doc__.splitlines()[0])
    parser.add_argument("action", choices=("record", "replay"))
    parser.add_argument("--out", type=Path, required=True, help="folder of the recordings")
    parser.add_argument("--sets", nargs="+", choices=list(SETS), default=list(SETS), metavar="NAME")
    parser.add_argument("--frames", type=int, help="record: cut the PETS sets to the first N frames")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--json", type=Path, help="replay: also write the rows as JSON")
    args = parser.parse_args(argv)
    begin(parser, args)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.action == "record":
        for name in args.sets:
            if (args.assets / SETS[name].footage).exists():
                record_set(name, args.assets.resolve(), args.out.resolve(), args.frames, args.overrides)
        return 0
    rows = []
    for name in args.sets:
        path = args.out / f"{name}.npz"
        if not path.exists():
            continue
        began = time.perf_counter()
        row = replay_set(path, args.assets.resolve(), args.overrides)
        rows.append(row)
        print(
            f"{name:13s} x {row['cross_idf1_linked']:.3f} / {row['cross_idf1_unlinked']:.3f} "
            f"gain {row['cross_idf1_linked'] - row['cross_idf1_unlinked']:+.3f} "
            f"perfect links {row['cross_idf1_perfect_links']:.3f}  cams "
            + " ".join(f"{row['camera_idf1_linked'][c]:.3f}" for c in row["cameras"])
            + " / "
            + " ".join(f"{row['camera_idf1_unlinked'][c]:.3f}" for c in row["cameras"])
            + f"  ({time.perf_counter() - began:.0f} s)",
            flush=True,
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
