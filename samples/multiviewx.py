"""A multi-camera set from the MultiviewX sample: each view as an image sequence with MOTChallenge ground truth.

MultiviewX (Hou, Zheng, Gould, ECCV 2020) gives, per camera `CameraN`, `Image_subsets/CN/*.jpg` and
`matchings/CameraN.txt`: one line `frame pid x1 y1 ... x9 y9` per person and frame, the 8 projected corners
of a box around the person and then the foot point, frame k being the k-th image. `pid` is shared by every
camera. `make_multiviewx` writes, per camera, the MOTChallenge layout (`CN/img1/` linking the images,
`CN/seqinfo.ini`, `CN/gt/gt.txt`) and a `multicam.yaml` that `reid-pipeline eval` reads.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from pipeline.errors import PipelineError
from pipeline.motchallenge import MOT_CLASS_IDS, write_mot_txt, write_seqinfo
from pipeline.tools.multicam import write_manifest

logger = logging.getLogger(__name__)

FRAME_RATE = 2.0  # MultiviewX's frames are annotated 2 per second (its paper; the sample keeps that rate)
_CAMERA_FOLDER = re.compile(r"C(\d+)")


def read_matchings(path: str | Path) -> np.ndarray:
    """Rows (N, 20) of a `matchings/CameraN.txt`: frame, pid, then 9 image points (8 box corners, foot)."""
    path = Path(path)
    try:
        rows = np.loadtxt(path, ndmin=2)
    except (OSError, ValueError) as exc:
        raise PipelineError(f"{path}: not a MultiviewX matchings file ({exc})") from None
    if rows.size == 0:
        return np.empty((0, 20))
    if rows.shape[1] != 20:
        raise PipelineError(f"{path}: expected 20 columns (frame, pid, 9 x/y points), got {rows.shape[1]}")
    return rows


def matching_boxes(
    rows: np.ndarray, image_size: tuple[int, int], *, min_visible: float = 0.3, min_size: float = 4.0
) -> np.ndarray:
    """MOT gt rows (N, 9) `frame,id,x,y,w,h,1,1,vis` from matchings rows (N, 20).

    A box is the min/max of the 8 projected corners, clipped to the image (width, height); it is dropped
    when less than `min_visible` of it is inside or the clipped box is under `min_size` pixels wide or
    high. Ids are `-pid` (MultiviewX's are negative); `vis` is the fraction inside the image.
    """
    if len(rows) == 0:
        return np.empty((0, 9))
    corners = rows[:, 2:18].reshape(-1, 8, 2)  # (N, 8, 2)
    (x0, y0), (x1, y1) = corners.min(axis=1).T, corners.max(axis=1).T
    width, height = image_size
    ix0, iy0 = np.clip(x0, 0, width), np.clip(y0, 0, height)
    ix1, iy1 = np.clip(x1, 0, width), np.clip(y1, 0, height)
    iw, ih = ix1 - ix0, iy1 - iy0
    area = (x1 - x0) * (y1 - y0)
    visible = np.divide(iw * ih, area, out=np.zeros_like(area), where=area > 0)
    keep = (visible >= min_visible) & (iw >= min_size) & (ih >= min_size)
    out = np.empty((int(keep.sum()), 9))
    out[:, 0], out[:, 1] = rows[keep, 0], -rows[keep, 1]
    out[:, 2], out[:, 3], out[:, 4], out[:, 5] = ix0[keep], iy0[keep], iw[keep], ih[keep]
    out[:, 6], out[:, 7], out[:, 8] = 1.0, MOT_CLASS_IDS["pedestrian"], visible[keep]
    return out[np.lexsort((out[:, 1], out[:, 0]))]


def make_multiviewx(
    root: str | Path,
    out_dir: str | Path,
    *,
    cameras: Sequence[str] | None = None,
    min_visible: float = 0.3,
    min_size: float = 4.0,
) -> Path:
    """Write the MultiviewX views under `root` as a multi-camera set in `out_dir`; return the manifest path.

    `cameras` picks views by folder name (`C1`, ...; default all of `Image_subsets`). Images are linked
    (symlinks; copies where links cannot be made), not re-encoded.
    """
    root, out_dir = Path(root), Path(out_dir)
    subsets = root / "Image_subsets"
    if not subsets.is_dir():
        raise PipelineError(f"{root} holds no Image_subsets folder: is it the MultiviewX folder?")
    found = sorted(
        (p.name for p in subsets.iterdir() if p.is_dir() and _CAMERA_FOLDER.fullmatch(p.name)),
        key=lambda name: int(name[1:]),
    )
    names = list(cameras) if cameras is not None else found
    missing = sorted(set(names) - set(found))
    if missing or not names:
        raise PipelineError(f"MultiviewX views {missing or names} not in {subsets} (it has {found})")
    entries = []
    for name in names:
        number = int(name[1:])
        images = sorted(p for p in (subsets / name).iterdir() if p.suffix.lower() == ".jpg")
        if not images:
            raise PipelineError(f"{subsets / name} holds no .jpg images")
        first = cv2.imread(str(images[0]))
        if first is None:
            raise PipelineError(f"{images[0]}: OpenCV cannot read this image")
        size = (first.shape[1], first.shape[0])
        gt = matching_boxes(
            read_matchings(root / "matchings" / f"Camera{number}.txt"),
            size,
            min_visible=min_visible,
            min_size=min_size,
        )
        gt = gt[gt[:, 0] <= len(images)]
        cam_dir = out_dir / name
        _link_images(images, cam_dir / "img1")
        write_mot_txt(cam_dir / "gt" / "gt.txt", gt)
        write_seqinfo(
            cam_dir / "seqinfo.ini",
            {
                "name": name,
                "imDir": "img1",
                "frameRate": f"{FRAME_RATE:g}",
                "seqLength": len(images),
                "imWidth": size[0],
                "imHeight": size[1],
                "imExt": ".jpg",
            },
        )
        entries.append(
            {
                "id": name,
                "images": f"{name}/img1",
                "gt": f"{name}/gt/gt.txt",
                "seqinfo": f"{name}/seqinfo.ini",
                "fps": FRAME_RATE,
                "frames": len(images),
                "frame_offset": 0,
                "image_size": list(size),
                "calibration": {
                    "intrinsic": str(root / "calibrations" / "intrinsic" / f"intr_Camera{number}.xml"),
                    "extrinsic": str(root / "calibrations" / "extrinsic" / f"extr_Camera{number}.xml"),
                },
                "boxes": len(gt),
                "identities": len(np.unique(gt[:, 1])),
            }
        )
        logger.info(
            "camera %s: %d images, %d boxes, %d ids", name, len(images), len(gt), entries[-1]["identities"]
        )
    manifest = {
        "schema_version": 1,
        "source": {"dataset": "MultiviewX", "root": str(root), "fps": FRAME_RATE},
        "min_visible": min_visible,
        "min_size": min_size,
        "cameras": entries,
    }
    return write_manifest(out_dir, manifest)


def _link_images(images: Sequence[Path], folder: Path) -> None:
    """Put `images` into `folder` as symlinks (copies where the file system has none), replacing old ones."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for image in images:
        target = folder / image.name
        try:
            os.symlink(image.resolve(), target)
        except OSError:
            shutil.copyfile(image, target)
