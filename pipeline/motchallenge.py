"""MOTChallenge text formats: box files (`gt.txt`, tracker output) and `seqinfo.ini`."""

from __future__ import annotations

import configparser
import logging
from pathlib import Path

import numpy as np

from pipeline.atomic import atomic_open
from pipeline.errors import PipelineError

logger = logging.getLogger(__name__)

# MOT16+ class numbers (MOTChallenge devkit); MOT15 files carry world coordinates in these columns instead.
MOT_CLASS_IDS = {
    "pedestrian": 1,
    "person_on_vehicle": 2,
    "car": 3,
    "bicycle": 4,
    "motorbike": 5,
    "non_mot_vehicle": 6,
    "static_person": 7,
    "distractor": 8,
    "occluder": 9,
    "occluder_on_ground": 10,
    "occluder_full": 11,
    "reflection": 12,
    "crowd": 13,
}


def read_mot_txt(path: str | Path) -> np.ndarray:
    """Read a MOT box file into a float64 array (N, C), C >= 6: frame, id, x, y, w, h[, conf, ...]."""
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"MOT file {path} does not exist: check the path")
    rows: list[list[float]] = []
    with path.open() as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            parts = line.replace(",", " ").split()
            try:
                rows.append([float(p) for p in parts])
            except ValueError:
                raise PipelineError(
                    f"{path}:{lineno}: not a MOT line (expected numbers 'frame,id,x,y,w,h,...'): {line!r}"
                ) from None
            if len(parts) < 6:
                raise PipelineError(f"{path}:{lineno}: needs at least 6 columns (frame,id,x,y,w,h): {line!r}")
    if not rows:
        return np.empty((0, 10), dtype=np.float64)
    width = max(len(r) for r in rows)
    # Short rows are padded with -1, the MOT "unused" value.
    out = np.full((len(rows), width), -1.0, dtype=np.float64)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


def has_mot_classes(gt: np.ndarray) -> bool:
    """True when column 8 (1-based) holds MOT16+ class numbers rather than MOT15 world coordinates."""
    if gt.ndim != 2 or gt.shape[1] < 8 or len(gt) == 0:
        return False
    classes = gt[:, 7]
    return bool(
        np.all(classes == np.round(classes)) and np.all(np.isin(classes, list(MOT_CLASS_IDS.values())))
    )


def write_mot_txt(path: str | Path, rows: np.ndarray, *, int_cols: int = 2) -> None:
    """Write rows (N, C) as comma-separated MOT lines; the first `int_cols` columns as integers."""
    with atomic_open(Path(path)) as fh:
        for row in rows:
            head = [str(int(v)) for v in row[:int_cols]]
            tail = [_fmt(v) for v in row[int_cols:]]
            fh.write(",".join(head + tail) + "\n")


def _fmt(value: float) -> str:
    """Format a float compactly: integers without a fraction, others with up to 3 decimals."""
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.3f}".rstrip("0").rstrip(".")


def read_seqinfo(path: str | Path) -> dict[str, str]:
    """Read the `[Sequence]` section of a seqinfo.ini (keys as written, values as strings)."""
    parser = configparser.ConfigParser()
    parser.optionxform = str  # keep camelCase keys such as frameRate
    try:
        parser.read(path)
    except configparser.Error as exc:
        raise PipelineError(f"{path}: not a valid seqinfo.ini ({exc})") from None
    if not parser.has_section("Sequence"):
        raise PipelineError(f"{path}: no [Sequence] section; expected a MOTChallenge seqinfo.ini")
    return dict(parser["Sequence"])


def write_seqinfo(path: str | Path, fields: dict[str, object]) -> None:
    """Write a MOTChallenge seqinfo.ini with one `[Sequence]` section."""
    lines = ["[Sequence]"] + [f"{k}={v}" for k, v in fields.items()]
    Path(path).write_text("\n".join(lines) + "\n")
