"""The `reid-pipeline` command: a thin layer over the library functions."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from pathlib import Path

from pipeline.errors import PipelineError

log = logging.getLogger("reid-pipeline")

EXIT_ERROR = 2
EXIT_CAMERA_FAILED = 1
EXIT_STOPPED = 130
_PACKAGES = ("pipeline", "detectors", "reid")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    os.environ.setdefault("YOLO_AUTOINSTALL", "false")
    os.environ.setdefault("YOLO_OFFLINE", "true")
    os.environ.setdefault("YOLO_VERBOSE", "false")
    os.environ.setdefault("ULTRALYTICS_SAFE_LOAD", "true")  # .pt weights may not run code when unpickled
    # FFmpeg's and OpenCV's own messages: we report problems ourselves, in one line.
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    argv = sys.argv[1:] if argv is None else argv
    # SIGTERM before a run installs its own handlers ends like Ctrl-C: one line, exit code 130.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    # Subcommands that own their arguments are dispatched before argparse sees them.
    if argv and argv[0] in _DELEGATED:
        return _guard(lambda: _DELEGATED[argv[0]](argv[1:]))
    args = _parser().parse_args(argv)
    verbose, quiet = getattr(args, "verbose", False), getattr(args, "quiet", False)
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    # Our own packages log at `level`; third-party libraries only their warnings unless --verbose.
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for package in _PACKAGES:
        logging.getLogger(package).setLevel(level)
    return _guard(lambda: args.func(args))


def _guard(command) -> int:
    try:
        return command() or 0
    except PipelineError as e:
        print(f"reid-pipeline: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("reid-pipeline: interrupted", file=sys.stderr)
        return EXIT_STOPPED


class _Parser(argparse.ArgumentParser):
    """argparse with its usage errors in one line (`reid-pipeline run: error: ...`), exit code 2."""

    def error(self, message: str):
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message} (see --help)\n")


def _parser() -> argparse.ArgumentParser:
    # -v/-q are accepted before and after the subcommand.
    verbosity = _Parser(add_help=False)
    verbosity.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="debug logging"
    )
    verbosity.add_argument(
        "-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="warnings only"
    )
    parser = _Parser(
        prog="reid-pipeline", description="Multi-camera person re-identification.", parents=[verbosity]
    )
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the pipeline over the cameras of a config", parents=[verbosity])
    run.add_argument("config", nargs="?", type=Path, help="cameras.yaml (optional with --resume)")
    run.add_argument("-o", "--output", type=Path, help="output folder (default: out/<config name>)")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    run.add_argument("--max-frames", type=_positive_int, help="stop each camera after N processed frames")
    run.add_argument("--device", choices=["auto", "cpu", "cuda"], help="overrides the config's device")
    run.add_argument(
        "--resume", type=Path, metavar="OUT", help="continue a run in OUT with its identity store"
    )
    run.add_argument(
        "--overwrite",
        action="store_true",
        help="remove an earlier run's outputs and store in OUT (default: move them to OUT/previous/<n>/)",
    )
    run.add_argument("--no-progress", action="store_true", help="no progress display")
    run.set_defaults(func=_run)

    ev = sub.add_parser("eval", help="IDF1 / MOTA / HOTA of a run against ground truth", parents=[verbosity])
    ev.add_argument("out", type=Path, help="a run's output folder (with mot/<camera>.txt)")
    ev.add_argument("gt", type=Path, help="ground-truth manifest (multicam.yaml)")
    ev.add_argument("--json", action="store_true", help="print the metrics as JSON")
    ev.set_defaults(func=_eval)

    se = sub.add_parser("search", help="find identities by photo, description or id", parents=[verbosity])
    se.add_argument("out", type=Path, help="a run's output folder")
    query = se.add_mutually_exclusive_group(required=True)
    query.add_argument("--image", type=Path, help="a photo (crop) of the person")
    query.add_argument("--text", help='a description, e.g. "a man in a red jacket" (vpm embedder runs)')
    query.add_argument("--identity", type=int, metavar="N", help="where global identity N was seen")
    se.add_argument("--camera", action="append", metavar="ID", help="only these cameras (repeatable)")
    se.add_argument("--since", help="seen at or after T (seconds, or an ISO date and time)")
    se.add_argument("--until", help="seen at or before T (seconds, or an ISO date and time)")
    se.add_argument("--top", type=_positive_int, default=10, help="how many identities (default 10)")
    se.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="where the query is embedded")
    se.add_argument("--json", action="store_true", help="print the hits as JSON")
    se.set_defaults(func=_search)

    fo = sub.add_parser("forget", help="erase identities from a run's store and exports", parents=[verbosity])
    fo.add_argument("out", type=Path, help="a run's output folder")
    fo.add_argument("global_ids", type=int, nargs="+", metavar="GLOBAL_ID")
    fo.set_defaults(func=_forget)

    vi = sub.add_parser("view", help="a local web app over a run's identities", parents=[verbosity])
    vi.add_argument("out", type=Path, help="a run's output folder (may be running)")
    vi.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    vi.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 picks a free one)")
    vi.add_argument("--token", help="access token; required to bind anything but localhost")
    vi.set_defaults(func=_view)
    for name, help_text in _DELEGATED_HELP.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def _run(args: argparse.Namespace) -> int:
    from pipeline import config as config_module
    from pipeline import runner

    config_path, overrides, out_dir = args.config, list(args.overrides), args.output
    if args.resume is not None:
        out_dir = args.resume
        previous = _previous_run(args.resume)
        config_path = config_path or Path(previous["config_path"])
        overrides = previous.get("overrides", []) + overrides
    if config_path is None:
        raise PipelineError("run: give a config file (or --resume OUT)")
    if args.no_progress:
        overrides.append("runner.progress=false")
    config = config_module.load(config_path, overrides)
    out_dir = out_dir or Path("out") / config_path.stem
    result = runner.run(
        config,
        out_dir,
        max_frames=args.max_frames,
        device=args.device,
        resume=args.resume is not None,
        overwrite=args.overwrite,
        log_level=logging.getLogger("pipeline").level,
        invocation={"config_path": str(config_path.resolve()), "overrides": overrides},
    )
    if result.error:
        raise PipelineError(result.error)
    # Failed cameras were reported by the runner as they failed.
    print(f"outputs in {result.out_dir} ({result.status})")
    if result.status in ("stopped", "killed"):
        return EXIT_STOPPED
    if result.status == "failed":
        return EXIT_ERROR
    return EXIT_CAMERA_FAILED if result.failed_cameras else 0


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _previous_run(out_dir: Path) -> dict:
    """The run.json of the run to resume, checked for what resuming needs."""
    try:
        previous = json.loads((out_dir / "run.json").read_text())
    except (OSError, ValueError):
        raise PipelineError(
            f"{out_dir}: not a run's output folder (no readable run.json to resume from)"
        ) from None
    overrides = previous.get("overrides", []) if isinstance(previous, dict) else None
    if (
        not isinstance(previous, dict)
        or not isinstance(previous.get("config_path"), str)
        or not isinstance(overrides, list)
        or not all(isinstance(o, str) for o in overrides)
    ):
        raise PipelineError(f"{out_dir}/run.json: not a run record (needs config_path and overrides)")
    return previous


def _eval(args: argparse.Namespace) -> int:
    from pipeline.evaluation import evaluate_run, format_table

    results = evaluate_run(args.out, args.gt)
    print(json.dumps(results, indent=1) if args.json else format_table(results))
    return 0


def _search(args: argparse.Namespace) -> int:
    from pipeline.search import RunSearch, format_hits, parse_time, read_image

    since = None if args.since is None else parse_time(args.since)
    until = None if args.until is None else parse_time(args.until)
    filters = {"cameras": args.camera, "since": since, "until": until}
    with RunSearch(args.out, device=args.device) as search:
        if args.identity is not None:
            hits = [search.identity(args.identity, **filters)]
        elif args.text is not None:
            hits = search.by_text(args.text, top=args.top, **filters)
        else:
            hits = search.by_image([read_image(args.image)], top=args.top, **filters)
    if args.json:
        print(json.dumps([h.to_dict() for h in hits], indent=1))
    else:
        print(format_hits(hits, with_similarity=args.identity is None))
    return 0


def _forget(args: argparse.Namespace) -> int:
    from pipeline.forget import forget

    result = forget(args.out, args.global_ids)
    print(
        f"forgot identities {', '.join(map(str, result.global_ids))}: {result.tracklets} tracklets, "
        f"{result.boxes} boxes, {result.prototypes} features, {result.thumbnails} thumbnails; "
        f"videos re-rendered with them blurred: {', '.join(result.videos) or 'none'}"
    )
    return 0


def _view(args: argparse.Namespace) -> int:
    from pipeline.viewer import serve

    serve(args.out, host=args.host, port=args.port, token=args.token)
    return 0


def _reid(argv: list[str]) -> int:
    from reid.cli import main as reid_main

    return reid_main(argv)


def _make_multicam(argv: list[str]) -> int:
    from pipeline.tools.multicam import main as multicam_main

    return multicam_main(argv)


def _demo(argv: list[str]) -> int:
    from pipeline.tools.demo import main as demo_main

    return demo_main(argv)


_DELEGATED = {"reid": _reid, "make-multicam": _make_multicam, "demo": _demo}
_DELEGATED_HELP = {
    "reid": "VPM-Net: train, eval, export, make-dataset",
    "make-multicam": "turn one annotated video into a multi-camera set",
    "demo": "build a two-camera input from sample footage and run the pipeline on it",
}


if __name__ == "__main__":
    sys.exit(main())
