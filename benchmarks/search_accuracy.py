"""How often `search --image` finds a person: a crop of each ground-truth person against a two-camera run.

The set is PETS09-S2L1's `overlap` split (two cameras) cut by make-multicam, run as
`configs/pets_two_cameras.yaml` runs it (YOLOv8n int8 ONNX at confidence 0.3, BoT-SORT, OSNet x0.25
ONNX, overlap declared). For each ground-truth person, the query is the crop of their tallest clear box
(at least 80 px, inside the frame, at most 10% covered) in the first camera that shows one
(`samples.queries.person_queries`); their identity is the global id that the cross-camera IDF1 matching
pairs them with (`pipeline.evaluation.identity_matches`). Prints, per K, how many people have that id
among the top K hits, and each person's rank.

    python benchmarks/search_accuracy.py --frames 795
    python benchmarks/search_accuracy.py --frames 200 --out /tmp/search_run
    python benchmarks/search_accuracy.py --frames 200 --out /tmp/search_run --reuse   # search that run again
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

import yaml
from common import PETS_VIDEO, begin, benchmark_parser, run_pipeline

from pipeline.evaluation import CROSS_CAMERA, evaluate_run, identity_matches, load_gt_manifest
from pipeline.search import RunSearch
from pipeline.tools.multicam import make_multicam
from pipeline.tools.virtual_cameras import preset_cameras
from samples.queries import person_queries


def main(argv: list[str] | None = None) -> int:
    parser = benchmark_parser(__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=795, help="frames of PETS09-S2L1 to use (default all)")
    parser.add_argument("--top", type=int, nargs="+", default=[1, 3, 5], help="the K values to report")
    parser.add_argument(
        "--out", type=Path, help="keep the set and the run here (default: a temporary folder)"
    )
    parser.add_argument("--reuse", action="store_true", help="search the finished run already in --out")
    args = parser.parse_args(argv)
    begin(parser, args)
    root = args.out or Path(tempfile.mkdtemp(prefix="search_accuracy_"))
    out = root / "out"
    try:
        if args.reuse and args.out is not None and (out / "tracks.json").is_file():
            manifest = root / "cameras" / "multicam.yaml"
        else:
            manifest = _run(args, root, out)
        gt, lengths = load_gt_manifest(manifest)
        matched = identity_matches({c: out / "mot" / f"{c}.txt" for c in gt}, gt, num_frames=lengths)
        queries = [q for q in person_queries(manifest) if q.gt_id in matched]
        ranks = {}
        start = time.perf_counter()
        with RunSearch(out) as search:
            for query in queries:
                ids = [h.global_id for h in search.by_image([query.image], top=1000)]
                want = matched[query.gt_id]
                ranks[query.gt_id] = ids.index(want) + 1 if want in ids else None
        seconds = time.perf_counter() - start
        idf1 = evaluate_run(out, manifest)[CROSS_CAMERA]["IDF1"]
        frames = yaml.safe_load(manifest.read_text())["cameras"][0]["frames"]
        print(
            f"PETS09-S2L1 overlap, {frames} frames: {len(ranks)} people with a query and a matched identity"
        )
        print(f"run cross-camera IDF1 {idf1:.3f}; {len(ranks)} searches in {seconds:.1f} s")
        for k in args.top:
            found = sum(1 for r in ranks.values() if r is not None and r <= k)
            print(f"top-{k}: {found}/{len(ranks)} = {found / max(len(ranks), 1):.2f}")
        print("rank per gt person:", " ".join(f"{g}:{r or '-'}" for g, r in sorted(ranks.items())))
    finally:
        if args.out is None:
            shutil.rmtree(root, ignore_errors=True)
    return 0


def _run(args, root: Path, out: Path) -> Path:
    """Cut the set and run the pipeline on it into `out`; returns the set's manifest."""
    frames = preset_cameras("overlap", args.frames)
    manifest = make_multicam(args.assets / PETS_VIDEO, root / "cameras", frames, max_frames=args.frames)
    cameras = yaml.safe_load(manifest.read_text())["cameras"]
    config = {
        "cameras": [{"id": c["id"], "source": str(manifest.parent / c["video"])} for c in cameras],
        "detector": {
            "name": "yolo",
            "weights": str(args.assets / "models/yolov8n_int8.onnx"),
            "confidence": 0.3,
        },
        "reid": {"embedder": "onnx", "weights": str(args.assets / "models/osnet_x0_25_msmt17.onnx")},
        "topology": {"overlaps": [[cameras[0]["id"], cameras[1]["id"]]]},
        "runner": {"progress": False},
    }
    (root / "cameras.yaml").write_text(yaml.safe_dump(config))
    run_pipeline(root / "cameras.yaml", out, sample_interval_s=None)
    return manifest


if __name__ == "__main__":
    sys.exit(main())
