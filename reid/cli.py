"""`reid-pipeline reid train|eval|export|make-dataset`: thin argparse wrappers over the reid library."""

from __future__ import annotations

import argparse
import difflib
import json
import logging
import sys
from pathlib import Path

from pipeline.errors import PipelineError

logger = logging.getLogger(__name__)


def _size(text: str) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH such as 128x64, got {text!r}") from None
    return height, width


def train(argv: list[str]) -> int:
    """Train VPM-Net from a training YAML (configs/reid/*.yaml)."""
    parser = argparse.ArgumentParser(prog="reid-pipeline reid train", description=train.__doc__)
    parser.add_argument("config", help="training config YAML")
    parser.add_argument("-o", "--out", help="output folder (default runs/reid/<config name>)")
    parser.add_argument("--resume", help="checkpoint.pt to continue from")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    parser.add_argument("--device", help="auto | cpu | cuda | cuda:N (overrides run.device)")
    args = parser.parse_args(argv)
    from reid.train_config import load_train_config
    from reid.training import train as run_training

    overrides = args.overrides + ([f"run.device={args.device}"] if args.device else [])
    config = load_train_config(args.config, overrides)
    out = Path(args.out) if args.out else Path("runs") / "reid" / Path(args.config).stem
    summary = run_training(config, out, resume=args.resume)
    print(json.dumps(summary))
    return 0


def evaluate(argv: list[str]) -> int:
    """Evaluate a training checkpoint on a dataset's query/gallery split (Market-1501 protocol)."""
    parser = argparse.ArgumentParser(prog="reid-pipeline reid eval", description=evaluate.__doc__)
    parser.add_argument("checkpoint", help="checkpoint.pt written by reid train")
    parser.add_argument("--data-root", help="dataset folder (default: the one it was trained on)")
    parser.add_argument("--format", help="dataset format (default: the training one)")
    parser.add_argument("--rerank", action="store_true", help="apply k-reciprocal re-ranking")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, help="evaluation batch size")
    parser.add_argument("--json", dest="json_out", help="also write the metrics to this JSON file")
    args = parser.parse_args(argv)
    import dataclasses

    from reid.data import load_dataset
    from reid.engine import amp_dtype, evaluate_model, load_checkpoint, resolve_device
    from reid.training import eval_loaders, model_from_checkpoint

    device = resolve_device(args.device)
    model, config = model_from_checkpoint(load_checkpoint(args.checkpoint), device)
    data = dataclasses.replace(
        config.data,
        root=args.data_root or config.data.root,
        format=args.format or config.data.format,
        eval_batch_size=args.batch_size or config.data.eval_batch_size,
    )
    config = dataclasses.replace(config, data=data)
    dataset = load_dataset(data.format, data.root)
    if not dataset.query or not dataset.gallery:
        raise PipelineError(f"dataset {data.root} has no query/gallery split to evaluate on")
    query, gallery = eval_loaders(config, dataset, model)
    metrics = evaluate_model(model, query, gallery, rerank=args.rerank, device=device, amp=amp_dtype(device))
    result = {"checkpoint": args.checkpoint, "dataset": data.root, "rerank": args.rerank, **metrics}
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(result, indent=1))
    print(json.dumps(result))
    return 0


def export(argv: list[str]) -> int:
    """Export a training checkpoint's `encode` to ONNX."""
    parser = argparse.ArgumentParser(prog="reid-pipeline reid export", description=export.__doc__)
    parser.add_argument("checkpoint", help="checkpoint.pt written by reid train")
    parser.add_argument("-o", "--out", required=True, help="output .onnx path")
    args = parser.parse_args(argv)
    from reid.engine import load_checkpoint
    from reid.export import export_onnx
    from reid.training import model_from_checkpoint

    model, _ = model_from_checkpoint(load_checkpoint(args.checkpoint))
    path = export_onnx(model, args.out)
    print(json.dumps({"onnx": str(path)}))
    return 0


def make_dataset(argv: list[str]) -> int:
    """Turn MOTChallenge-style sequences (video + gt/gt.txt) into a Market-1501-layout re-ID dataset."""
    parser = argparse.ArgumentParser(prog="reid-pipeline reid make-dataset", description=make_dataset.__doc__)
    parser.add_argument("out", help="new output folder")
    parser.add_argument("--sequence", action="append", required=True, help="sequence folder (repeatable)")
    parser.add_argument(
        "--cameras",
        action="append",
        choices=("views", "time"),
        help="cut each sequence into side-by-side views or time ranges (once, or once per sequence)",
    )
    parser.add_argument("--num-cameras", type=int, default=2, help="cameras per sequence for --cameras")
    parser.add_argument(
        "--camera",
        action="append",
        default=[],
        metavar="x1,y1,x2,y2@start-end",
        help="explicit camera (region and/or frame range), repeatable; used for every sequence",
    )
    parser.add_argument("--frame-step", type=int, default=5, help="use every n-th frame")
    parser.add_argument("--min-height", type=int, default=32, help="smallest box height in pixels")
    parser.add_argument(
        "--min-visibility", type=float, default=0.5, help="smallest visible fraction of a box"
    )
    parser.add_argument("--test-fraction", type=float, default=0.33, help="share of identities held apart")
    parser.add_argument("--queries-per-camera", type=int, default=1)
    parser.add_argument("--image-size", type=_size, help="resize crops to HEIGHTxWIDTH (default: keep)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)  # fmt: skip
    from reid.data.from_mot import (
        convert_mot_to_market,
        open_sequence,
        parse_camera_spec,
        split_time,
        split_views,
    )

    sequences = [open_sequence(folder) for folder in args.sequence]
    modes = args.cameras or ["views"]
    if len(modes) not in (1, len(sequences)):
        raise PipelineError(f"--cameras given {len(modes)} times for {len(sequences)} sequences; give it once "
                            "or once per sequence")  # fmt: skip
    modes = modes * len(sequences) if len(modes) == 1 else modes
    if args.num_cameras < 1:
        raise PipelineError(f"--num-cameras must be at least 1, got {args.num_cameras}")
    if args.camera:
        explicit = tuple(parse_camera_spec(spec) for spec in args.camera)
        cameras = [explicit] * len(sequences)
    else:
        split = {"views": split_views, "time": split_time}
        cameras = [split[mode](seq, args.num_cameras) for seq, mode in zip(sequences, modes, strict=True)]
    summary = convert_mot_to_market(
        sequences, args.out, cameras=cameras, frame_step=args.frame_step, min_height=args.min_height,
        min_visibility=args.min_visibility, test_fraction=args.test_fraction,
        queries_per_camera=args.queries_per_camera, image_size=args.image_size, seed=args.seed,
    )  # fmt: skip
    print(json.dumps({"out": args.out, **summary["counts"], "train_ids": len(summary["train_ids"]),
                      "test_ids": len(summary["test_ids"])}))  # fmt: skip
    return 0


COMMANDS = {"train": train, "eval": evaluate, "export": export, "make-dataset": make_dataset}


def main(argv: list[str] | None = None) -> int:
    """Dispatch `reid <command> ...`; user errors propagate as PipelineError for the caller to print."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        usage = "usage: reid-pipeline reid {" + ",".join(COMMANDS) + "} ..."
        lines = [usage] + [f"  {name:13s} {fn.__doc__}" for name, fn in COMMANDS.items()]
        if argv and argv[0] not in ("-h", "--help"):
            close = difflib.get_close_matches(argv[0], list(COMMANDS), n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"choose from {', '.join(COMMANDS)}"
            raise PipelineError(f"unknown reid command {argv[0]!r}; {hint}")
        print("\n".join(lines))
        return 0 if argv else 2
    return COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        sys.exit(main())
    except PipelineError as exc:
        print(f"reid: error: {exc}", file=sys.stderr)
        sys.exit(1)
