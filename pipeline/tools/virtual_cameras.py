"""Virtual cameras cut from one source video: a crop, a frame range and a view (warp, scale, colour).

Their images of a source frame and their ground truth, projected from the source's.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from pipeline.errors import PipelineError
from pipeline.ids import check_id
from pipeline.motchallenge import has_mot_classes

SPLITS = ("overlap", "relay", "three", "warped", "gap", "quad")
# Left and right views of the presets: 60% of the width each, so the middle 20% is seen by both.
LEFT_VIEW = (0.0, 0.0, 0.6, 1.0)
RIGHT_VIEW = (0.4, 0.0, 1.0, 1.0)
# The `three` split: 40% of the width each, neighbours sharing 10% of it.
THREE_VIEWS = {"left": (0.0, 0.0, 0.4, 1.0), "middle": (0.3, 0.0, 0.7, 1.0), "right": (0.6, 0.0, 1.0, 1.0)}
# The `gap` split: 40% of the width each, a blind 20% strip between them that people take time to cross.
GAP_VIEWS = {"left": (0.0, 0.0, 0.4, 1.0), "right": (0.6, 0.0, 1.0, 1.0)}
# The `quad` split: a 2x2 grid, 56% of the width and height each, neighbours sharing 12% across and down.
QUAD_VIEWS = {
    "top-left": (0.0, 0.0, 0.56, 0.56),
    "top-right": (0.44, 0.0, 1.0, 0.56),
    "bottom-left": (0.0, 0.44, 0.56, 1.0),
    "bottom-right": (0.44, 0.44, 1.0, 1.0),
}
FIXED_VIEWS = {"three": THREE_VIEWS, "gap": GAP_VIEWS, "quad": QUAD_VIEWS}  # splits of crops alone
MIN_SIDE = 16  # pixels: the smallest camera image


@dataclass(frozen=True)
class View:
    """How a camera sees its crop: a perspective warp, then a rescale, then a colour shift.

    `tilt` is a keystone perspective: the camera sees the trapezoid of the crop whose top edge is inset by
    `tilt` of the crop's width on each side (negative: the bottom edge), stretched over its whole image.
    `homography` (9 numbers, row-major) is any other warp, from the crop's pixels to an image of the
    crop's size; give one or the other. `scale` resizes the image (even sides, as video encoders want).
    `hue` turns every hue by that many degrees; `gain` and `offset` then act per channel (R, G, B) on
    0-255 values.
    """

    tilt: float = 0.0
    homography: tuple[float, ...] | None = None
    scale: float = 1.0
    gain: tuple[float, float, float] = (1.0, 1.0, 1.0)
    offset: tuple[float, float, float] = (0.0, 0.0, 0.0)
    hue: float = 0.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.tilt) and abs(self.tilt) < 0.5):
            raise PipelineError(f"view tilt must be a number in (-0.5, 0.5), but got {self.tilt}")
        if self.homography is not None:
            if self.tilt:
                raise PipelineError("a view takes a tilt or a homography, not both")
            h = np.asarray(self.homography, dtype=np.float64)
            if h.shape != (9,) or not np.all(np.isfinite(h)):
                raise PipelineError(f"view homography must be 9 finite numbers, but got {self.homography}")
            if abs(np.linalg.det(h.reshape(3, 3))) < 1e-12:
                raise PipelineError(f"view homography {self.homography} is singular")
        if not (math.isfinite(self.scale) and 0 < self.scale <= 8):
            raise PipelineError(f"view scale must be in (0, 8], but got {self.scale}")
        for name, values, low in (("gain", self.gain, 0.0), ("offset", self.offset, -255.0)):
            if len(values) != 3 or not all(math.isfinite(v) and v >= low for v in values):
                raise PipelineError(
                    f"view {name} must be 3 finite numbers (R, G, B) >= {low:g}, but got {values}"
                )
        if not math.isfinite(self.hue):
            raise PipelineError(f"view hue must be a finite number of degrees, but got {self.hue}")

    @property
    def shifts_colour(self) -> bool:
        """Whether the view changes pixel values (hue, gain or offset)."""
        return bool(self.hue % 360) or self.gain != (1.0, 1.0, 1.0) or self.offset != (0.0, 0.0, 0.0)

    def warp(self, width: int, height: int) -> np.ndarray:
        """The perspective part as a 3x3 matrix from crop pixels to an image of the crop's size."""
        if self.homography is not None:
            return np.asarray(self.homography, dtype=np.float64).reshape(3, 3)
        if not self.tilt:
            return np.eye(3)
        inset = abs(self.tilt) * width
        w, h = float(width), float(height)
        rect = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
        trapezoid = rect.copy()
        if self.tilt > 0:
            trapezoid[0, 0], trapezoid[1, 0] = inset, w - inset
        else:
            trapezoid[3, 0], trapezoid[2, 0] = inset, w - inset
        return cv2.getPerspectiveTransform(trapezoid, rect).astype(np.float64)


# Named views for --warp: a moderate perspective tilt, and that tilt rescaled with a warm colour cast.
VIEW_PRESETS = {
    "tilt": View(tilt=0.15),
    "oblique": View(tilt=0.15, scale=0.8, gain=(1.2, 1.0, 0.8)),
}


@dataclass(frozen=True)
class CameraSpec:
    """A camera as asked for: a crop (pixels, or fractions when all values are <= 1), 1-based frames and
    optionally a view (perspective, scale, colour) through which it sees the crop."""

    id: str
    crop: tuple[float, float, float, float]
    start: int | None = None
    end: int | None = None
    view: View | None = None


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
    view: View | None = None

    @property
    def width(self) -> int:
        """Crop width in pixels."""
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        """Crop height in pixels."""
        return self.y1 - self.y0

    @property
    def image_size(self) -> tuple[int, int]:
        """Width and height of the camera's images: the crop's, rescaled by the view (even sides)."""
        if self.view is None or self.view.scale == 1.0:
            return self.width, self.height
        return _even(self.view.scale * self.width), _even(self.view.scale * self.height)

    @property
    def frame_offset(self) -> int:
        """Source frame number = camera frame number + frame_offset."""
        return self.first - 1

    @property
    def homography(self) -> np.ndarray:
        """3x3 matrix from source pixels to this camera's image pixels: crop, then warp, then rescale."""
        crop = np.array([[1.0, 0.0, -self.x0], [0.0, 1.0, -self.y0], [0.0, 0.0, 1.0]])
        if self.view is None:
            return crop
        image_w, image_h = self.image_size
        rescale = np.diag([image_w / self.width, image_h / self.height, 1.0])
        matrix = rescale @ self.view.warp(self.width, self.height) @ crop
        return matrix / matrix[2, 2]


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


_WARP_USAGE = (
    "expected ID:ITEM[:ITEM...], items a preset (tilt, oblique) or tilt=T, homography=H11,...,H33, "
    "scale=S, gain=R,G,B, offset=R,G,B, hue=DEGREES; e.g. right:tilt:scale=0.8:gain=1.2,1,0.8"
)


def parse_warp(text: str) -> tuple[str, View]:
    """Parse `id:item[:item...]` into a camera id and its view; later items override earlier ones."""
    camera_id, _, rest = text.partition(":")
    if not camera_id or not rest:
        raise PipelineError(f"--warp {text!r}: {_WARP_USAGE}")
    check_id(camera_id, "--warp id")
    fields: dict[str, object] = {}
    for item in rest.split(":"):
        key, sep, value = item.partition("=")
        if not sep and key in VIEW_PRESETS:
            # A preset sets what it changes and leaves the rest to the other items.
            preset = view_fields(VIEW_PRESETS[key])
            fields.update({k: v for k, v in preset.items() if v != view_fields(View())[k]})
            continue
        try:
            numbers = [float(v) for v in value.split(",")] if sep else []
        except ValueError:
            numbers = []
        if key in ("tilt", "scale", "hue") and len(numbers) == 1:
            fields[key] = numbers[0]
            if key == "tilt":
                fields["homography"] = None
        elif key in ("gain", "offset") and len(numbers) in (1, 3):
            fields[key] = tuple(numbers * 3 if len(numbers) == 1 else numbers)
        elif key == "homography" and len(numbers) == 9:
            fields[key], fields["tilt"] = tuple(numbers), 0.0
        else:
            raise PipelineError(f"--warp {text!r}: cannot read {item!r}; {_WARP_USAGE}")
    try:
        return camera_id, View(**fields)  # type: ignore[arg-type]
    except PipelineError as exc:
        raise PipelineError(f"--warp {text!r}: {exc}") from None


def view_fields(view: View) -> dict[str, object]:
    """The fields of `view` by name."""
    return {f.name: getattr(view, f.name) for f in dataclasses.fields(view)}


def with_views(cameras: Sequence[CameraSpec], views: Mapping[str, View]) -> list[CameraSpec]:
    """`cameras` with the views of `views` (camera id -> view) set; an id that is no camera is an error."""
    ids = [c.id for c in cameras]
    unknown = sorted(set(views) - set(ids))
    if unknown:
        raise PipelineError(f"a view (--warp) for camera(s) {unknown} that are not among the cameras {ids}")
    return [dataclasses.replace(c, view=views[c.id]) if c.id in views else c for c in cameras]


def preset_cameras(split: str, num_frames: int, views: Mapping[str, View] | None = None) -> list[CameraSpec]:
    """Cameras of a preset split, with `views` (camera id -> view) applied.

    `overlap`: left/right 60% of the width, all frames. `relay`: the same crops, left the first half of
    the frames, right the second. `three`: left/middle/right 40% each, neighbours sharing 10%. `warped`:
    `overlap` with the right camera seen through the `oblique` view (tilt, rescale, colour cast). `gap`:
    left/right 40% each, disjoint: people cross a blind strip between them (hand-overs with a transit time).
    `quad`: four cameras on a 2x2 grid, neighbours overlapping across and down (people leave by every border).
    """
    if split == "overlap":
        cameras = [CameraSpec("left", LEFT_VIEW), CameraSpec("right", RIGHT_VIEW)]
    elif split == "relay":
        half = num_frames // 2
        cameras = [
            CameraSpec("left", LEFT_VIEW, 1, half),
            CameraSpec("right", RIGHT_VIEW, half + 1, num_frames),
        ]
    elif split in FIXED_VIEWS:
        cameras = [CameraSpec(camera_id, crop) for camera_id, crop in FIXED_VIEWS[split].items()]
    elif split == "warped":
        cameras = [
            CameraSpec("left", LEFT_VIEW),
            CameraSpec("right", RIGHT_VIEW, view=VIEW_PRESETS["oblique"]),
        ]
    else:
        raise PipelineError(f"unknown split {split!r}: choose one of {', '.join(SPLITS)}")
    return with_views(cameras, views or {})


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
    if x1 - x0 < MIN_SIDE or y1 - y0 < MIN_SIDE:
        raise PipelineError(
            f"camera {spec.id!r}: crop {spec.crop} is empty or under {MIN_SIDE} px inside the "
            f"{width}x{height} source"
        )
    first = max(1, spec.start or 1)
    last = min(num_frames, spec.end or num_frames)
    if first > last:
        raise PipelineError(
            f"camera {spec.id!r}: frames {spec.start}-{spec.end} hold none of the source's 1-{num_frames}"
        )
    camera = Camera(id=spec.id, x0=x0, y0=y0, x1=x1, y1=y1, first=first, last=last, view=spec.view)
    if min(camera.image_size) < MIN_SIDE:
        raise PipelineError(
            f"camera {spec.id!r}: scale {spec.view.scale} makes its images {camera.image_size[0]}x"
            f"{camera.image_size[1]}, under {MIN_SIDE} px"
        )
    return camera


def crop_ground_truth(
    gt: np.ndarray, camera: Camera, *, min_visible: float = 0.3, min_size: float = 4.0
) -> np.ndarray:
    """Boxes of `gt` seen by `camera` as MOT rows (frame,id,x,y,w,h,conf,class,vis) in its image coordinates.

    A box's corners go through the camera's homography (crop, view warp, rescale); their bounding box is
    clipped to the image and dropped when less than `min_visible` of its area remains or the clipped box
    is under `min_size` pixels wide or high. Frames are renumbered from 1; ids are kept as they are.
    """
    if len(gt) == 0:
        return np.empty((0, 9))
    frames = gt[:, 0].astype(int)
    gt = gt[(frames >= camera.first) & (frames <= camera.last)]
    x0, y0, x1, y1, in_front = _project_boxes(gt[:, 2:6], camera.homography)
    image_w, image_h = camera.image_size
    ix0, iy0 = np.maximum(x0, 0.0), np.maximum(y0, 0.0)
    ix1, iy1 = np.minimum(x1, image_w), np.minimum(y1, image_h)
    iw, ih = np.clip(ix1 - ix0, 0, None), np.clip(iy1 - iy0, 0, None)
    area = (x1 - x0) * (y1 - y0)
    visible = np.divide(iw * ih, area, out=np.zeros_like(area), where=area > 0)
    keep = in_front & (visible >= min_visible) & (iw >= min_size) & (ih >= min_size)
    n = int(keep.sum())
    out = np.empty((n, 9))
    out[:, 0] = gt[keep, 0] - camera.frame_offset
    out[:, 1] = gt[keep, 1]
    out[:, 2], out[:, 3] = ix0[keep], iy0[keep]
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


def _project_boxes(xywh: np.ndarray, homography: np.ndarray) -> tuple[np.ndarray, ...]:
    """Bounding boxes (x0, y0, x1, y1) of xywh boxes (N, 4) seen through `homography`, and which boxes lie
    wholly in front of it (positive projective depth at every corner; the others have no image)."""
    x, y, w, h = xywh.T
    corners = np.stack(
        [np.stack([x, y]), np.stack([x + w, y]), np.stack([x + w, y + h]), np.stack([x, y + h])]
    )
    points = np.concatenate([corners, np.ones((4, 1, len(x)))], axis=1)  # (4, 3, N)
    projected = np.einsum("ij,kjn->kin", homography, points)  # (4, 3, N)
    depth = projected[:, 2]  # (4, N)
    in_front = np.all(depth > 1e-9, axis=0)
    xy = projected[:, :2] / np.where(depth > 1e-9, depth, 1.0)[:, None]  # (4, 2, N)
    return xy[:, 0].min(0), xy[:, 1].min(0), xy[:, 0].max(0), xy[:, 1].max(0), in_front


def camera_image(frame: np.ndarray, camera: Camera) -> np.ndarray:
    """The camera's image of a source frame (H, W, 3) BGR: its crop, or the source through its view."""
    if camera.view is None:
        return np.ascontiguousarray(frame[camera.y0 : camera.y1, camera.x0 : camera.x1])
    image = cv2.warpPerspective(
        frame, camera.homography, camera.image_size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT
    )
    return shift_colour(image, camera.view) if camera.view.shifts_colour else image


def shift_colour(image: np.ndarray, view: View) -> np.ndarray:
    """`image` (H, W, 3) uint8 BGR with the view's hue turn, then its per-channel gain and offset."""
    out = image.astype(np.float32)
    if view.hue % 360:
        hsv = cv2.cvtColor(out / 255.0, cv2.COLOR_BGR2HSV)  # float input: hue in degrees [0, 360)
        hsv[..., 0] = (hsv[..., 0] + view.hue) % 360.0
        out = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR) * 255.0
    gain = np.asarray(view.gain[::-1], dtype=np.float32)  # R, G, B -> the image's B, G, R
    offset = np.asarray(view.offset[::-1], dtype=np.float32)
    return np.clip(np.rint(out * gain + offset), 0, 255).astype(np.uint8)


def _even(value: float) -> int:
    """`value` rounded to an even integer."""
    return 2 * round(value / 2)
