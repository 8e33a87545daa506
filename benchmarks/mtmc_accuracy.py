"""Cross-camera accuracy of the pipeline on a suite of multi-camera sets: linked against the same run unlinked.

The suite is made from the footage in the assets folder: PETS09-S2L1 cut by make-multicam into two
overlapping views (`pets-overlap`), a hand-over (`pets-relay`: left view early, right view late), two
disjoint views with a blind strip between them (`pets-gap`), three views (`pets-three`), two views
with the right one seen through a perspective tilt, rescaled and colour-cast (`pets-warped`) and four
views on a 2x2 grid (`pets-quad`); TUD-Campus as two overlapping views (`tud-campus`); the six
synthetic MultiviewX views (`multiviewx`); and the full PETS view as one camera (`pets-full`). Sets
whose footage is missing are skipped.

Every set runs `reid-pipeline run` twice on a plain cameras.yaml (YOLOv8n int8 ONNX at confidence 0.3,
BoT-SORT, OSNet x0.25 ONNX, no topology; cameras on one clock): as configured ("linked") and with
`matcher.threshold=1.0`, so no track joins another ("unlinked"). Both are evaluated with
`pipeline.evaluation` against the set's ground truth. One table: cross-camera IDF1 and HOTA linked (cameras
laid end to end, so a person must keep one id in every camera), cross-camera IDF1 unlinked, the gain, and
per-camera IDF1 linked and unlinked.

    python benchmarks/mtmc_accuracy.py                                  # the whole suite
    python benchmarks/mtmc_accuracy.py --sets pets-overlap pets-warped --frames 200 --json acc.json
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from common import PETS_VIDEO, begin, benchmark_parser, run_pipeline, write_config

from pipeline.evaluation import (
    CROSS_CAMERA,
    evaluate,
    evaluate_run,
    load_gt_manifest,
    perfect_links,
    run_predictions,
)
from pipeline.tools.multicam import make_multicam, source_length
from pipeline.tools.virtual_cameras import CameraSpec, preset_cameras
from samples.multiviewx import make_multiviewx

logger = logging.getLogger("mtmc_accuracy")

PETS_FRAMES = 795
TUD_VIDEO = Path("data") / "TUD-Campus" / "TUD-Campus.mp4"
MULTIVIEWX = Path("data") / "MultiviewX"
UNLINKED = "matcher.threshold=1.0"  # no similarity reaches 1.0: every track keeps an identity of its own
SETTINGS = {
    "detector": {"confidence": 0.3},
    "output": {"video": False},
}


@dataclass(frozen=True)
class SuiteSet:
    """One set of the suite: how to build it from the assets, and what its cameras.yaml declares."""

    name: str
    description: str
    footage: Path  # relative to the assets folder; the set is skipped without it
    build: Callable[[Path, Path, int | None], Path]  # (assets, folder, PETS frames) -> multicam.yaml
    topology: dict = field(default_factory=dict)


def _pets(cameras: Callable[[int], list[CameraSpec]]) -> Callable[[Path, Path, int | None], Path]:
    def build(assets: Path, folder: Path, frames: int | None) -> Path:
        video = assets / PETS_VIDEO
        length = source_length(video, max_frames=frames)
        return make_multicam(video, folder, cameras(length), max_frames=length)

    return build


def _tud(assets: Path, folder: Path, frames: int | None) -> Path:
    video = assets / TUD_VIDEO
    return make_multicam(video, folder, preset_cameras("overlap", source_length(video)))


def _multiviewx(assets: Path, folder: Path, frames: int | None) -> Path:
    return make_multiviewx(assets / MULTIVIEWX, folder)


SETS = {
    s.name: s
    for s in (
        SuiteSet("pets-overlap", "PETS09-S2L1, two overlapping views", PETS_VIDEO,
                 _pets(lambda n: preset_cameras("overlap", n))),
        SuiteSet("pets-relay", "PETS09-S2L1, hand-over: left view early, right view late", PETS_VIDEO,
                 _pets(lambda n: preset_cameras("relay", n))),
        SuiteSet("pets-gap", "PETS09-S2L1, two disjoint views with a blind strip between", PETS_VIDEO,
                 _pets(lambda n: preset_cameras("gap", n))),
        SuiteSet("pets-three", "PETS09-S2L1, three overlapping views", PETS_VIDEO,
                 _pets(lambda n: preset_cameras("three", n))),
        SuiteSet("pets-warped", "PETS09-S2L1, two overlapping views, the right one tilted, scaled, cast",
                 PETS_VIDEO, _pets(lambda n: preset_cameras("warped", n))),
        SuiteSet("pets-quad", "PETS09-S2L1, four views on a 2x2 grid, neighbours overlapping", PETS_VIDEO,
                 _pets(lambda n: preset_cameras("quad", n))),
        SuiteSet("tud-campus", "TUD-Campus, two overlapping views", TUD_VIDEO, _tud),
        SuiteSet("multiviewx", "MultiviewX, six synthetic overlapping views", MULTIVIEWX, _multiviewx),
        SuiteSet("pets-full", "PETS09-S2L1, the full view as one camera", PETS_VIDEO,
                 _pets(lambda n: [CameraSpec("view", (0.0, 0.0, 1.0, 1.0))])),
    )
}  # fmt: skip


def camera_entries(manifest: Path) -> list[dict]:
    """cameras.yaml entries for a set's cameras: their video or images, on the clock of the set's source."""
    entries = []
    for cam in yaml.safe_load(manifest.read_text())["cameras"]:
        source = cam.get("video") or cam.get("images")
        entry = {"id": cam["id"], "source": str((manifest.parent / source).resolve())}
        if cam.get("frame_offset"):
            entry["time_offset_s"] = cam["frame_offset"] / cam["fps"]
        entries.append(entry)
    return entries


def write_set_config(path: Path, assets: Path, manifest: Path, topology: dict | None = None) -> Path:
    """The set's plain cameras.yaml: the suite's detector, tracker and re-ID model; `topology` if any."""
    sections = dict(SETTINGS)
    if topology:
        sections["topology"] = topology
    return write_config(path, assets, camera_entries(manifest), **sections)


@dataclass(frozen=True)
class SetResult:
    """Linked and unlinked results of one set, and those of the unlinked tracks linked perfectly
    (`perfect_links`): `evaluate` dictionaries; and run seconds."""

    name: str
    cameras: list[str]
    frames: dict[str, int]
    linked: dict[str, dict[str, float]]
    unlinked: dict[str, dict[str, float]]
    perfect: dict[str, dict[str, float]]
    seconds: dict[str, float]

    def row(self) -> dict:
        """The set's figures for the table and the JSON report."""
        linked, unlinked = self.linked[CROSS_CAMERA], self.unlinked[CROSS_CAMERA]
        return {
            "set": self.name,
            "cameras": self.cameras,
            "frames": self.frames,
            "cross_idf1_linked": linked["IDF1"],
            "cross_hota_linked": linked["HOTA"],
            "cross_idf1_unlinked": unlinked["IDF1"],
            "gain": linked["IDF1"] - unlinked["IDF1"],
            "cross_idf1_perfect_links": self.perfect[CROSS_CAMERA]["IDF1"],
            "camera_idf1_linked": {c: self.linked[c]["IDF1"] for c in self.cameras},
            "camera_idf1_unlinked": {c: self.unlinked[c]["IDF1"] for c in self.cameras},
            "run_seconds": self.seconds,
        }


def run_set(
    suite_set: SuiteSet, assets: Path, out: Path, frames: int | None, overrides: Sequence[str] = ()
) -> SetResult:
    """Build one set under `out/sets`, run it linked and unlinked under `out/runs` (with config
    `overrides`, KEY=VALUE), evaluate both."""
    began = time.perf_counter()
    set_dir = out / "sets" / suite_set.name
    manifest = suite_set.build(assets, set_dir, frames)
    gt, lengths = load_gt_manifest(manifest)
    logger.info(
        "%s: built %d cameras (%s frames) in %.0f s",
        suite_set.name,
        len(gt),
        "/".join(str(n) for n in lengths.values()),
        time.perf_counter() - began,
    )
    config = write_set_config(set_dir / "cameras.yaml", assets, manifest, suite_set.topology)
    results, seconds = {}, {}
    for mode, extra in (("linked", ()), ("unlinked", (UNLINKED,))):
        run_dir = out / "runs" / suite_set.name / mode
        if run_dir.exists():
            shutil.rmtree(run_dir)  # a run of an earlier invocation of this script
        run = run_pipeline(config, run_dir, overrides=[*overrides, *extra], sample_interval_s=None)
        results[mode] = evaluate_run(run_dir, manifest)
        seconds[mode] = round(run.run_seconds, 1)
        logger.info(
            "%s %s: %d frames in %.0f s, cross-camera IDF1 %.3f",
            suite_set.name,
            mode,
            run.frames,
            run.run_seconds,
            results[mode][CROSS_CAMERA]["IDF1"],
        )
    # the ceiling of linking: the same tracks, each labelled as the person it follows most
    unlinked = run_predictions(out / "runs" / suite_set.name / "unlinked")
    perfect = evaluate(perfect_links(unlinked, gt), gt, num_frames=lengths)
    return SetResult(
        suite_set.name, list(gt), lengths, results["linked"], results["unlinked"], perfect, seconds
    )


def format_rows(rows: Sequence[dict]) -> str:
    """The suite's table: one line per set; IDF1 and HOTA as fractions, per-camera values in camera order."""
    header = ["set", "cams", "frames", "xIDF1", "xHOTA", "xIDF1 unlinked", "gain", "xIDF1 perfect links",
              "camera IDF1 linked", "camera IDF1 unlinked"]  # fmt: skip
    lines = []
    for row in rows:
        lines.append(
            [
                row["set"],
                str(len(row["cameras"])),
                "/".join(str(row["frames"][c]) for c in row["cameras"]),
                f"{row['cross_idf1_linked']:.3f}",
                f"{row['cross_hota_linked']:.3f}",
                f"{row['cross_idf1_unlinked']:.3f}",
                f"{row['gain']:+.3f}",
                f"{row['cross_idf1_perfect_links']:.3f}",
                " ".join(f"{row['camera_idf1_linked'][c]:.3f}" for c in row["cameras"]),
                " ".join(f"{row['camera_idf1_unlinked'][c]:.3f}" for c in row["cameras"]),
            ]
        )
    widths = [max(len(cells[i]) for cells in [header, *lines]) for i in range(len(header))]
    left = {0, 8, 9}  # text columns
    return "\n".join(
        "  ".join(
            c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))
        ).rstrip()
        for cells in [header, *lines]
    )


def main(argv: list[str] | None = None) -> int:
    parser = benchmark_parser(__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", choices=list(SETS), default=list(SETS), metavar="NAME",
                        help=f"sets to run (default all): {', '.join(SETS)}")  # fmt: skip
    parser.add_argument(
        "--frames", type=int, help=f"cut the PETS sets to the first N source frames ({PETS_FRAMES})"
    )
    parser.add_argument(
        "--out", type=Path, help="keep the sets and runs in this folder (default: a temporary one)"
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the table as JSON")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="a config setting for every run, as `reid-pipeline run --set`")  # fmt: skip
    args = parser.parse_args(argv)
    begin(parser, args)
    if args.frames is not None and args.frames < 1:
        parser.error(f"--frames: expected at least 1, got {args.frames}")
    args.assets = args.assets.resolve()
    chosen = []
    for name in dict.fromkeys(args.sets):
        if (args.assets / SETS[name].footage).exists():
            chosen.append(SETS[name])
        else:
            logger.warning("%s: skipped, %s is not in %s", name, SETS[name].footage, args.assets)
    if not chosen:
        parser.error(f"none of the sets' footage is in {args.assets}")

    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out.resolve() if args.out else Path(tmp)
        rows = [run_set(s, args.assets, out, args.frames, args.overrides).row() for s in chosen]
    frames = f"first {args.frames} frames of PETS" if args.frames else "all frames"
    print(f"cpu cores: {os.cpu_count()}, {frames}, {time.perf_counter() - began:.0f} s")
    print(format_rows(rows))
    if args.json:
        report = {"command": [Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])],
                  "settings": SETTINGS, "unlinked": UNLINKED, "sets": rows}  # fmt: skip
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
