"""Readers for the standard re-ID folder layouts: Market-1501, DukeMTMC-reID, MSMT17 and folder-per-identity.

Folder-per-identity layout (``format: folder``)::

    root/train/<identity>/<image>      training images (required)
    root/query/<identity>/<image>      query images (optional, together with gallery/)
    root/gallery/<identity>/<image>    gallery images

An identity folder holds either images directly, whose camera is the file-name prefix before the first
``_`` (``cam2_000123.jpg`` -> camera ``cam2``; no ``_`` -> camera ``0``), or one sub-folder per camera
(``<identity>/<camera>/<image>``). Identity and camera names are any strings; they are numbered in sorted
order, identities shared by query and gallery keep one number. If ``root`` holds identity folders
directly (no ``train/``), they all form the training split.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from pathlib import Path

from pipeline.errors import PipelineError
from pipeline.registry import Registry
from reid.data.dataset import IMAGE_SUFFIXES, ReIDDataset, Sample, relabel

logger = logging.getLogger(__name__)

_MARKET_NAME = re.compile(r"^([-\d]+)_c(\d+)")
MARKET_LAYOUT = (
    "bounding_box_train/, query/, bounding_box_test/ with images named like 0002_c1s1_000451_03.jpg"
)
MSMT_LAYOUT = (
    "list_train.txt, list_val.txt, list_query.txt, list_gallery.txt and train/ + test/ (V1) "
    "or mask_train_v2/ + mask_test_v2/ (V2)"
)
FOLDER_LAYOUT = "train/<identity>/<images> (optional query/ and gallery/ alike), or <identity>/<images>"

READERS: Registry[ReIDDataset] = Registry("dataset format")


def register_reader(name: str) -> Callable:
    """Register a dataset reader `reader(root: Path) -> ReIDDataset` under `name` (a decorator)."""
    return READERS.register(name)


def list_dataset_formats() -> list[str]:
    """Names of the registered dataset layouts."""
    return READERS.names()


def load_dataset(name: str, root: str | Path) -> ReIDDataset:
    """Read the dataset at `root` in the layout registered as `name` (see `list_dataset_formats`)."""
    reader = READERS.get(name)
    root = Path(root)
    if not root.is_dir():
        raise PipelineError(f"dataset folder {root} does not exist")
    dataset = reader(root)
    logger.info("%s", dataset.summary())
    return dataset


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _read_market_split(folder: Path, *, keep_distractors: bool) -> list[Sample]:
    """Parse `pid_cN...` names; pid -1 (junk) is dropped, pid 0 (distractor) is kept only if asked."""
    samples = []
    for path in _images_in(folder):
        match = _MARKET_NAME.match(path.name)
        if match is None:
            raise PipelineError(f"image {path} is not named like 0002_c1s1_000451_03.jpg (pid_cCAMERA...)")
        pid, cam = int(match.group(1)), int(match.group(2))
        if pid == -1 or (pid == 0 and not keep_distractors):
            continue
        samples.append(Sample(str(path), pid, cam - 1))
    return samples


def _read_market_like(root: Path, name: str) -> ReIDDataset:
    for sub in ("bounding_box_train", "query", "bounding_box_test"):
        if not (root / sub).is_dir():
            raise PipelineError(f"{name} folder {root} has no {sub}/; expected {MARKET_LAYOUT}")
    train = _read_market_split(root / "bounding_box_train", keep_distractors=False)
    query = _read_market_split(root / "query", keep_distractors=False)
    gallery = _read_market_split(root / "bounding_box_test", keep_distractors=True)
    if not train:
        raise PipelineError(f"{name} folder {root / 'bounding_box_train'} holds no labelled images")
    return ReIDDataset(name=name, root=root, train=relabel(train), query=tuple(query), gallery=tuple(gallery))


@register_reader("market1501")
def read_market1501(root: Path) -> ReIDDataset:
    """Market-1501 (also any dataset written in its layout)."""
    return _read_market_like(Path(root), "market1501")


@register_reader("dukemtmc")
def read_dukemtmc(root: Path) -> ReIDDataset:
    """DukeMTMC-reID: Market-1501 layout and naming."""
    return _read_market_like(Path(root), "dukemtmc")


def _read_msmt_list(list_file: Path, image_dir: Path) -> list[Sample]:
    samples = []
    for line_no, line in enumerate(list_file.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        try:
            rel, pid = parts[0], int(parts[1])
            camid = int(Path(rel).name.split("_")[2]) - 1
        except (IndexError, ValueError):
            raise PipelineError(
                f"{list_file}:{line_no}: expected 'PID/PID_INDEX_CAMERA_....jpg PID', got {line.strip()!r}"
            ) from None
        samples.append(Sample(str(image_dir / rel), pid, camid))
    return samples


@register_reader("msmt17")
def read_msmt17(root: Path) -> ReIDDataset:
    """MSMT17 V1 or V2: list files name the images; train + val form the training split."""
    root = Path(root)
    for train_dir, test_dir in (("train", "test"), ("mask_train_v2", "mask_test_v2")):
        if (root / train_dir).is_dir() and (root / test_dir).is_dir():
            break
    else:
        raise PipelineError(
            f"msmt17 folder {root} has no train/ + test/ or mask_train_v2/ + mask_test_v2/; "
            f"expected {MSMT_LAYOUT}"
        )
    lists = {}
    for split in ("train", "val", "query", "gallery"):
        list_file = root / f"list_{split}.txt"
        if not list_file.is_file():
            if split == "val":
                continue
            raise PipelineError(f"msmt17 folder {root} has no {list_file.name}; expected {MSMT_LAYOUT}")
        lists[split] = list_file
    train = _read_msmt_list(lists["train"], root / train_dir)
    if "val" in lists:
        train += _read_msmt_list(lists["val"], root / train_dir)
    query = _read_msmt_list(lists["query"], root / test_dir)
    gallery = _read_msmt_list(lists["gallery"], root / test_dir)
    for sample in train[:1] + query[:1] + gallery[:1]:
        if not Path(sample.path).is_file():
            raise PipelineError(
                f"msmt17 list names {sample.path}, which does not exist; expected {MSMT_LAYOUT}"
            )
    return ReIDDataset(
        name="msmt17", root=root, train=relabel(train), query=tuple(query), gallery=tuple(gallery)
    )


def _read_identity_folders(folder: Path) -> list[tuple[str, str, Path]]:
    """(identity, camera, path) for every image under `folder/<identity>/`; an empty identity is an error."""
    found = []
    for id_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        images = [(Path(p).name.split("_")[0] if "_" in Path(p).name else "0", p) for p in _images_in(id_dir)]
        for cam_dir in sorted(p for p in id_dir.iterdir() if p.is_dir()):
            images += [(cam_dir.name, p) for p in _images_in(cam_dir)]
        if not images:
            raise PipelineError(f"identity folder {id_dir} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        found += [(id_dir.name, cam, path) for cam, path in images]
    return found


@register_reader("folder")
def read_folder(root: Path) -> ReIDDataset:
    """Folder-per-identity layout (see the module docstring)."""
    root = Path(root)
    train_dir = root / "train" if (root / "train").is_dir() else root
    splits = {"train": _read_identity_folders(train_dir)}
    if not splits["train"]:
        raise PipelineError(f"folder dataset {root} has no identity folders; expected {FOLDER_LAYOUT}")
    has_query, has_gallery = (root / "query").is_dir(), (root / "gallery").is_dir()
    if has_query != has_gallery:
        raise PipelineError(
            f"folder dataset {root} needs both query/ and gallery/ or neither; expected {FOLDER_LAYOUT}"
        )
    if has_query:
        splits["query"] = _read_identity_folders(root / "query")
        splits["gallery"] = _read_identity_folders(root / "gallery")
    cameras = {cam: i for i, cam in enumerate(sorted({c for items in splits.values() for _, c, _ in items}))}
    test_ids = {
        pid: i
        for i, pid in enumerate(sorted({p for k in ("query", "gallery") for p, _, _ in splits.get(k, [])}))
    }
    train_ids = {pid: i for i, pid in enumerate(sorted({p for p, _, _ in splits["train"]}))}

    def samples(split: str, ids: dict[str, int]) -> tuple[Sample, ...]:
        return tuple(Sample(str(path), ids[pid], cameras[cam]) for pid, cam, path in splits.get(split, []))

    return ReIDDataset(
        name="folder",
        root=root,
        train=samples("train", train_ids),
        query=samples("query", test_ids),
        gallery=samples("gallery", test_ids),
    )
