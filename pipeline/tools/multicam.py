"""make-multicam: cut one annotated video into a multi-camera set, with per-camera ground truth."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import yaml

from pipeline.errors import PipelineError
from pipeline.ids import check_id
from pipeline.motchallenge import read_mot_txt, read_seqinfo, write_mot_txt, write_seqinfo
from pipeline.tools.virtual_cameras import (
    SPLITS,
    Camera,
    CameraSpec,
    View,
    camera_image,
    crop_ground_truth,
    parse_camera,
    parse_warp,
    preset_cameras,
    resolve_camera,
    view_fields,
    with_views,
)

logger = logging.getLogger(__name__)

VIDEO_FORMATS = {"mp4": "mp4v", "avi": "MJPG"}
MANIFEST_NAME = "multicam.yaml"


def source_fps(video: Path, capture: cv2.VideoCapture, seqinfo: Path | None) -> float:
    """The frame rate: `frameRate` of seqinfo.ini when there is one, else the container's."""
    if seqinfo is not None:
        rate = _read_seqinfo(seqinfo).get("frameRate")
        if rate:
            return _positive(rate, float, f"{seqinfo}: frameRate")
    fps = capture.get(cv2.CAP_PROP_FPS)
    if not fps or fps <= 0:
        raise PipelineError(f"{video}: the container gives no frame rate; pass --fps or add a seqinfo.ini")
    return float(fps)


def make_multicam(
    video: str | Path,
    out_dir: str | Path,
    cameras: Sequence[CameraSpec],
    *,
    gt: str | Path | None = None,
    seqinfo: str | Path | None = None,
    fps: float | None = None,
    max_frames: int | None = None,
    min_visible: float = 0.3,
    min_size: float = 4.0,
    video_format: str = "mp4",
) -> Path:
    """Write one video, gt/gt.txt and seqinfo.ini per camera plus multicam.yaml; return the manifest path.

    `gt` defaults to `<video folder>/gt/gt.txt` and `seqinfo` to `<video folder>/seqinfo.ini`. The source is
    decoded once; every camera is written in the same pass.
    """
    video, out_dir = Path(video), Path(out_dir)
    gt_path = Path(gt) if gt is not None else video.parent / "gt" / "gt.txt"
    seqinfo_path = Path(seqinfo) if seqinfo is not None else video.parent / "seqinfo.ini"
    if video_format not in VIDEO_FORMATS:
        raise PipelineError(f"video format {video_format!r}: choose one of {', '.join(VIDEO_FORMATS)}")
    if not cameras:
        raise PipelineError("no cameras: give --split or at least one --camera")
    if fps is not None and not 0 < fps < float("inf"):
        raise PipelineError(f"--fps: expected a positive frame rate, got {fps}")
    if max_frames is not None and max_frames < 1:
        raise PipelineError(f"--max-frames: expected at least 1, got {max_frames}")
    ids = [check_id(c.id, "camera id") for c in cameras]
    if len(set(ids)) != len(ids):
        raise PipelineError(f"camera ids must be unique, got {ids}")
    if not video.is_file():
        raise PipelineError(f"video {video} does not exist: check the path")
    gt_rows = _read_text_input(read_mot_txt, gt_path, "ground truth", "a MOTChallenge gt.txt")
    if out_dir.exists() and not out_dir.is_dir():
        raise PipelineError(f"output {out_dir} is a file, not a folder; give a new or existing folder")

    capture = cv2.VideoCapture(str(video))
    if not capture.isOpened():
        raise PipelineError(f"{video}: OpenCV cannot open this video")
    try:
        rate = float(fps) if fps else source_fps(video, capture, seqinfo_path)
        width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        num_frames = _source_length(capture, seqinfo_path)
        if max_frames is not None:
            num_frames = min(num_frames, max_frames)
        resolved = [resolve_camera(c, width, height, num_frames) for c in cameras]
        _make_out_dir(out_dir)
        written = _write_videos(capture, resolved, out_dir, rate, video_format)
    finally:
        capture.release()

    entries = []
    for cam in resolved:
        frames = written[cam.id]
        cam_gt = crop_ground_truth(gt_rows, cam, min_visible=min_visible, min_size=min_size)
        cam_gt = cam_gt[cam_gt[:, 0] <= frames]
        cam_dir = out_dir / cam.id
        write_mot_txt(cam_dir / "gt" / "gt.txt", cam_gt)
        write_seqinfo(
            cam_dir / "seqinfo.ini",
            {
                "name": cam.id,
                "video": f"{cam.id}.{video_format}",
                "frameRate": f"{rate:g}",
                "seqLength": frames,
                "imWidth": cam.image_size[0],
                "imHeight": cam.image_size[1],
            },
        )
        entry = {
            "id": cam.id,
            "video": f"{cam.id}/{cam.id}.{video_format}",
            "gt": f"{cam.id}/gt/gt.txt",
            "seqinfo": f"{cam.id}/seqinfo.ini",
            "fps": rate,
            "frames": frames,
            "frame_offset": cam.frame_offset,
            "crop": [cam.x0, cam.y0, cam.x1, cam.y1],
            "image_size": list(cam.image_size),
            # Source pixels -> this camera's pixels; H_b @ inv(H_a) maps camera a's image to camera b's.
            "homography_from_source": [[round(float(v), 12) + 0.0 for v in row] for row in cam.homography],
            "boxes": len(cam_gt),
            "identities": len(np.unique(cam_gt[:, 1])),
        }
        if cam.view is not None:
            entry["view"] = view_fields(cam.view)
            if cam.view.homography is not None:
                entry["view"]["homography"] = list(cam.view.homography)
            entry["view"]["gain"], entry["view"]["offset"] = list(cam.view.gain), list(cam.view.offset)
        entries.append(entry)
        logger.info(
            "camera %s: %d frames, %d boxes, %d ids", cam.id, frames, len(cam_gt), entries[-1]["identities"]
        )
    manifest = {
        "schema_version": 1,
        "source": {"video": str(video), "gt": str(gt_path), "fps": rate, "frames": num_frames},
        "source_size": [width, height],
        "min_visible": min_visible,
        "min_size": min_size,
        "cameras": entries,
    }
    return write_manifest(out_dir, manifest)


def write_manifest(out_dir: Path, manifest: dict) -> Path:
    """Write a multi-camera set's manifest (multicam.yaml) into `out_dir`; returns its path."""
    path = out_dir / MANIFEST_NAME
    path.write_text(yaml.safe_dump(manifest, sort_keys=False, default_flow_style=None))
    return path


def _read_text_input(reader, path: Path, what: str, expected: str):
    """`reader(path)`, with a file that is not text (a video given as --gt) reported in one line."""
    if path.exists() and not path.is_file():
        raise PipelineError(f"{what} {path} is a folder; expected {expected}")
    try:
        return reader(path)
    except UnicodeDecodeError:
        raise PipelineError(f"{what} {path} is not a text file; expected {expected}") from None
    except OSError as exc:
        raise PipelineError(f"cannot read {what} {path}: {exc.strerror or exc}") from None


def _positive(text: str, kind: type, where: str) -> float:
    """`kind(text)` when it is a positive number, else a one-line PipelineError naming `where`."""
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or not value > 0 or value == float("inf"):
        raise PipelineError(f"{where}: expected a positive {kind.__name__}, got {text!r}")
    return value


def _read_seqinfo(path: Path) -> dict[str, str]:
    """The [Sequence] fields of a seqinfo.ini, or {} when there is none."""
    if not path.exists():
        return {}
    return _read_text_input(read_seqinfo, path, "seqinfo", "a MOTChallenge seqinfo.ini")


def _make_out_dir(out_dir: Path) -> None:
    """Create the output folder, or fail in one line when it is a file or cannot be made."""
    if out_dir.exists() and not out_dir.is_dir():
        raise PipelineError(f"output {out_dir} is a file, not a folder; give a new or existing folder")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PipelineError(f"cannot create output folder {out_dir}: {exc.strerror or exc}") from None


def _source_length(capture: cv2.VideoCapture, seqinfo: Path) -> int:
    """Number of frames: seqinfo.ini `seqLength` when present, else the container's count."""
    length = _read_seqinfo(seqinfo).get("seqLength")
    if length:
        return _positive(length, int, f"{seqinfo}: seqLength")
    return int(capture.get(cv2.CAP_PROP_FRAME_COUNT))


def _write_videos(
    capture: cv2.VideoCapture, cameras: list[Camera], out_dir: Path, fps: float, video_format: str
) -> dict[str, int]:
    """Decode the source once and write each camera's crop; return frames written per camera."""
    fourcc = cv2.VideoWriter_fourcc(*VIDEO_FORMATS[video_format])
    writers: dict[str, cv2.VideoWriter] = {}
    partial: dict[str, Path] = {}
    counts = {cam.id: 0 for cam in cameras}
    try:
        for cam in cameras:
            (out_dir / cam.id).mkdir(parents=True, exist_ok=True)
            partial[cam.id] = out_dir / cam.id / f"{cam.id}.partial.{video_format}"
            writer = cv2.VideoWriter(str(partial[cam.id]), fourcc, fps, cam.image_size)
            if not writer.isOpened():
                raise PipelineError(f"camera {cam.id!r}: OpenCV cannot write {partial[cam.id]}")
            writers[cam.id] = writer
        last = max(cam.last for cam in cameras)
        for index in range(1, last + 1):
            ok, frame = capture.read()
            if not ok:
                logger.warning("source ended after %d frames (expected %d)", index - 1, last)
                break
            for cam in cameras:
                if cam.first <= index <= cam.last:
                    writers[cam.id].write(camera_image(frame, cam))
                    counts[cam.id] += 1
            if index % 200 == 0:
                logger.info("frame %d/%d", index, last)
    finally:
        for writer in writers.values():
            writer.release()
    for cam in cameras:
        partial[cam.id].replace(out_dir / cam.id / f"{cam.id}.{video_format}")
    return counts


def build_parser() -> argparse.ArgumentParser:
    """Command-line arguments of make-multicam."""
    parser = argparse.ArgumentParser(
        prog="reid-pipeline make-multicam",
        description="Cut one MOTChallenge-annotated video into cameras with their own ground truth.",
    )
    parser.add_argument("video", type=Path, help="source video file")
    parser.add_argument("-o", "--out", type=Path, required=True, help="output folder")
    parser.add_argument("--gt", type=Path, help="ground truth (default: <video folder>/gt/gt.txt)")
    parser.add_argument("--seqinfo", type=Path, help="seqinfo.ini (default: <video folder>/seqinfo.ini)")
    parser.add_argument(
        "--fps", type=float, help="frame rate (default: seqinfo.ini frameRate, else container)"
    )
    parser.add_argument(
        "--split",
        choices=SPLITS,
        help="preset: overlap (left/right 60%%), relay (left early, right late), three (40%% each), "
        "warped (overlap, the right camera seen obliquely), gap (left/right 40%%, a blind strip between), "
        "quad (a 2x2 grid of overlapping views)",
    )
    parser.add_argument(
        "--camera",
        action="append",
        default=[],
        metavar="ID:X0,Y0,X1,Y1[:START-END]",
        help="a camera: crop in pixels or fractions, optional 1-based source frame range (repeatable)",
    )
    parser.add_argument(
        "--warp",
        action="append",
        default=[],
        metavar="ID:ITEM[:ITEM...]",
        help="see a camera through a view: presets tilt, oblique; tilt=T (keystone, fraction of the width), "
        "homography=H11,...,H33 (crop pixels), scale=S, gain=R,G,B, offset=R,G,B, hue=DEGREES (repeatable)",
    )
    parser.add_argument("--max-frames", type=int, help="use only the first N source frames")
    parser.add_argument("--min-visible", type=float, default=0.3, help="drop boxes less visible in the crop")
    parser.add_argument("--min-size", type=float, default=4.0, help="drop boxes clipped under this many px")
    parser.add_argument("--format", choices=sorted(VIDEO_FORMATS), default="mp4", dest="video_format")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run make-multicam; user errors end with one line on stderr and exit code 2."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if args.split and args.camera:
            raise PipelineError("give either --split or --camera, not both")
        specs = [parse_camera(c) for c in args.camera]
        views: dict[str, View] = {}
        for text in args.warp:
            camera_id, view = parse_warp(text)
            if camera_id in views:
                raise PipelineError(f"--warp {text!r}: camera {camera_id!r} already has a --warp")
            views[camera_id] = view
        if not specs:
            length = source_length(args.video, args.seqinfo, args.max_frames)
            specs = preset_cameras(args.split or "overlap", length)
        specs = with_views(specs, views)
        manifest = make_multicam(
            args.video,
            args.out,
            specs,
            gt=args.gt,
            seqinfo=args.seqinfo,
            fps=args.fps,
            max_frames=args.max_frames,
            min_visible=args.min_visible,
            min_size=args.min_size,
            video_format=args.video_format,
        )
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    logger.info("wrote %s", manifest)
    return 0


def source_length(video: str | Path, seqinfo: str | Path | None = None, max_frames: int | None = None) -> int:
    """Number of source frames to use: seqinfo.ini `seqLength` (else the container), capped by max_frames."""
    video = Path(video)
    capture = cv2.VideoCapture(str(video))
    if not capture.isOpened():
        raise PipelineError(f"{video}: OpenCV cannot open this video")
    try:
        length = _source_length(capture, Path(seqinfo) if seqinfo else video.parent / "seqinfo.ini")
    finally:
        capture.release()
    return min(length, max_frames) if max_frames is not None else length


if __name__ == "__main__":
    raise SystemExit(main())
