"""What the matcher learned of a site, on disk: topology.json, read back to seed a later run."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from pipeline.atomic import write_json
from pipeline.errors import PipelineError

logger = logging.getLogger(__name__)

TOPOLOGY_VERSION = 1
STORE_SUFFIX = ".topology.json"  # the copy kept beside the identity store, for the runs that share it


def read_topology(path: Path) -> dict:
    """A topology.json as written by `write_topology`, checked; PipelineError in one line if it is not."""
    from pipeline.calibration import ScoreCalibration
    from pipeline.geometry import OverlapLearner
    from pipeline.transit import TransitModel

    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise PipelineError(
            f"{path}: no such file (point it at the topology.json of an earlier run)"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise PipelineError(f"{path}: not a readable topology.json ({type(e).__name__})") from None
    if not isinstance(data, dict) or data.get("schema_version") != TOPOLOGY_VERSION:
        found = data.get("schema_version") if isinstance(data, dict) else type(data).__name__
        raise PipelineError(
            f"{path}: expected a topology.json of schema_version {TOPOLOGY_VERSION}, got {found!r}"
        )
    try:
        OverlapLearner.from_dict(data.get("overlaps") or {"version": TOPOLOGY_VERSION})
        if data.get("score_calibration"):
            ScoreCalibration.from_dict(data["score_calibration"])
        if data.get("transit"):
            TransitModel.from_dict(data["transit"])
    except (KeyError, TypeError, ValueError) as e:
        raise PipelineError(f"{path}: {e}") from None
    return data


def store_copy(store_path: Path) -> Path:
    """Where the topology learned with an identity store is kept beside it."""
    return store_path.with_name(store_path.name + STORE_SUFFIX)


def seed_topology(learned: str | None, store_path: Path) -> dict | None:
    """What a run starts from: `topology.learned` when set, else what the runs of its store learned."""
    if learned:
        return read_topology(Path(learned))
    copy = store_copy(store_path)
    if not copy.is_file():
        return None
    try:
        return read_topology(copy)
    except PipelineError as e:  # a damaged copy costs what it held, not the run
        logger.warning("%s; the matcher starts without it", e)
        return None


def write_topology(topology: dict, out_dir: Path, store_path: Path) -> None:
    """Write OUT/topology.json and its copy beside the identity store, each atomically."""
    write_json(out_dir / "topology.json", topology)
    write_json(store_copy(store_path), topology)
