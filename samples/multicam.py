"""Make a multi-camera set (crops and time windows of one annotated video) with per-camera ground truth."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import yaml

from pipeline.errors import PipelineError
from pipeline.ids import check_id
from pipeline.motchallenge import has_mot_classes, read_mot_txt, read_seqinfo, write_mot_txt, write_seqinfo

logger = logging.getLogger(__name__)

SPLITS = ("overlap", "relay")
VIDEO_FORMATS = {"mp4": "mp4v", "avi": "MJPG"}
MANIFEST_NAME = "multicam.yaml"
# Left and right views of the presets: 60% of the width each, so the middle 20% is seen by both.
LEFT_VIEW = (0.0, 0.0, 0.6, 1.0)
RIGHT_VIEW = (0.4, 0.0, 1.0, 1.0)


@dataclass(frozen=True)
class CameraSpec:
    """A camera as asked for: a crop (pixels, or fractions when all values are <= 1) and 1-based frames."""

    id: str
    crop: tuple[float, float, float, float]
    start: int | None = None
    end: int | None = None


@dataclass(frozen=True)
class Camera:
    """A camera resolved against the source: pixel crop [x0, x1) x [y0, y1) and inclusive source frames."""

    id: str
    x0: int
    y0: int
    x1: int
    y1: int
    first: int
    last: int

    @property
    def width(self) -> int:
        """Crop width in pixels."""
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        """Crop height in pixels."""
        return self.y1 - self.y0

    @property
    def frame_offset(self) -> int:
        """Source frame number = camera frame number + frame_offset."""
        return self.first - 1


def parse_camera(text: str) -> CameraSpec:
    """Parse `id:x0,y0,x1,y1[:start-end]` (either bound of the frame range may be left empty)."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or not parts[0]:
        raise PipelineError(
            f"--camera {text!r}: expected id:x0,y0,x1,y1[:start-end], e.g. left:0,0,0.6,1:1-400"
        )
    check_id(parts[0], "--camera id")  # the id names the camera's folder and files
    try:
        crop = tuple(float(v) for v in parts[1].split(","))
    except ValueError:
        crop = ()
    if len(crop) != 4:
        raise PipelineError(f"--camera {text!r}: the crop must be four numbers x0,y0,x1,y1")
    start = end = None
    if len(parts) == 3:
        lo, sep, hi = parts[2].partition("-")
        try:
            start = int(lo) if lo else None
            end = int(hi) if hi else None
        except ValueError:
            sep = ""
        if not sep:
            raise PipelineError(f"--camera {text!r}: the frame range must be start-end, e.g. 1-400 or 200-")
    return CameraSpec(id=parts[0], crop=crop, start=start, end=end)  # type: ignore[arg-type]


def preset_cameras(split: str, num_frames: int) -> list[CameraSpec]:
    """Cameras of a preset: `overlap` (left/right 60%, all frames) or `relay` (left early, right late)."""
    if split == "overlap":
        return [CameraSpec("left", LEFT_VIEW), CameraSpec("right", RIGHT_VIEW)]
    if split == "relay":
        half = num_frames // 2
        return [
            CameraSpec("left", LEFT_VIEW, 1, half),
            CameraSpec("right", RIGHT_VIEW, half + 1, num_frames),
        ]
    raise PipelineError(f"unknown split {split!r}: choose one of {', '.join(SPLITS)}")


def resolve_camera(spec: CameraSpec, width: int, height: int, num_frames: int) -> Camera:
    """Turn a spec into pixels and frames inside the source; even crop sizes, as video encoders want."""
    crop = np.asarray(spec.crop, dtype=np.float64)
    if np.all(crop <= 1.0):
        crop = crop * [width, height, width, height]
    x0, y0 = max(0, round(crop[0])), max(0, round(crop[1]))
    x1, y1 = min(width, round(crop[2])), min(height, round(crop[3]))
    # Trim an odd pixel off the side that is not on the source border, so right/bottom crops stay flush.
    if (x1 - x0) % 2:
        x0, x1 = (x0 + 1, x1) if x1 == width else (x0, x1 - 1)
    if (y1 - y0) % 2:
        y0, y1 = (y0 + 1, y1) if y1 == height else (y0, y1 - 1)
    if x1 - x0 < 16 or y1 - y0 < 16:
        raise PipelineError(
            f"camera {spec.id!r}: crop {spec.crop} is empty or under 16 px inside the {width}x{height} source"
        )
    first = max(1, spec.start or 1)
    last = min(num_frames, spec.end or num_frames)
    if first > last:
        raise PipelineError(
            f"camera {spec.id!r}: frames {spec.start}-{spec.end} hold none of the source's 1-{num_frames}"
        )
    return Camera(id=spec.id, x0=x0, y0=y0, x1=x1, y1=y1, first=first, last=last)


def crop_ground_truth(
    gt: np.ndarray, camera: Camera, *, min_visible: float = 0.3, min_size: float = 4.0
) -> np.ndarray:
    """Boxes of `gt` seen by `camera` as MOT rows (frame,id,x,y,w,h,conf,class,vis) in camera coordinates.

    Frames are renumbered from 1; boxes are clipped to the crop and dropped when less than `min_visible` of
    their area remains or the clipped box is under `min_size` pixels wide or high. Ids are kept as they are.
    """
    if len(gt) == 0:
        return np.empty((0, 9))
    frames = gt[:, 0].astype(int)
    gt = gt[(frames >= camera.first) & (frames <= camera.last)]
    x, y, w, h = gt[:, 2], gt[:, 3], gt[:, 4], gt[:, 5]
    ix0, iy0 = np.maximum(x, camera.x0), np.maximum(y, camera.y0)
    ix1, iy1 = np.minimum(x + w, camera.x1), np.minimum(y + h, camera.y1)
    iw, ih = np.clip(ix1 - ix0, 0, None), np.clip(iy1 - iy0, 0, None)
    area = w * h
    visible = np.divide(iw * ih, area, out=np.zeros_like(area), where=area > 0)
    keep = (visible >= min_visible) & (iw >= min_size) & (ih >= min_size)
    n = int(keep.sum())
    out = np.empty((n, 9))
    out[:, 0] = gt[keep, 0] - camera.frame_offset
    out[:, 1] = gt[keep, 1]
    out[:, 2], out[:, 3] = ix0[keep] - camera.x0, iy0[keep] - camera.y0
    out[:, 4], out[:, 5] = iw[keep], ih[keep]
    out[:, 6] = gt[keep, 6] if gt.shape[1] > 6 else 1.0
    if has_mot_classes(gt):
        out[:, 7] = gt[keep, 7]
        source_vis = np.clip(gt[keep, 8], 0.0, 1.0) if gt.shape[1] > 8 else 1.0
        out[:, 8] = source_vis * visible[keep]
    else:  # MOT15-style files: every box is a pedestrian
        out[:, 7] = 1.0
        out[:, 8] = visible[keep]
    return out[np.lexsort((out[:, 1], out[:, 0]))]


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
                "imWidth": cam.width,
                "imHeight": cam.height,
            },
        )
        entries.append(
            {
                "id": cam.id,
                "video": f"{cam.id}/{cam.id}.{video_format}",
                "gt": f"{cam.id}/gt/gt.txt",
                "seqinfo": f"{cam.id}/seqinfo.ini",
                "fps": rate,
                "frames": frames,
                "frame_offset": cam.frame_offset,
                "crop": [cam.x0, cam.y0, cam.x1, cam.y1],
                "boxes": len(cam_gt),
                "identities": len(np.unique(cam_gt[:, 1])),
            }
        )
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
            writer = cv2.VideoWriter(str(partial[cam.id]), fourcc, fps, (cam.width, cam.height))
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
                    writers[cam.id].write(np.ascontiguousarray(frame[cam.y0 : cam.y1, cam.x0 : cam.x1]))
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
    parser.add_argument("--split", choices=SPLITS, help="preset: overlap (left/right 60%%) or relay")
    parser.add_argument(
        "--camera",
        action="append",
        default=[],
        metavar="ID:X0,Y0,X1,Y1[:START-END]",
        help="a camera: crop in pixels or fractions, optional 1-based source frame range (repeatable)",
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
        if not specs:
            length = source_length(args.video, args.seqinfo, args.max_frames)
            specs = preset_cameras(args.split or "overlap", length)
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
