"""Re-ID dataset splits (train / query / gallery lists) and the torch Dataset that decodes them."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from pipeline.errors import PipelineError

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


class Sample(NamedTuple):
    """One labelled person image: file path, identity and 0-based camera index."""

    path: str
    pid: int
    camid: int


@dataclass(frozen=True)
class ReIDDataset:
    """A re-ID benchmark: train samples (pids relabelled 0..N-1), query and gallery samples."""

    name: str
    root: Path
    train: tuple[Sample, ...]
    query: tuple[Sample, ...]
    gallery: tuple[Sample, ...]

    def __post_init__(self) -> None:
        pids = sorted({s.pid for s in self.train})
        if pids != list(range(len(pids))):
            raise ValueError(f"train pids must be relabelled to 0..{len(pids) - 1}, got {pids[:5]}...")

    @property
    def num_train_pids(self) -> int:
        return len({s.pid for s in self.train})

    @property
    def num_train_cams(self) -> int:
        return len({s.camid for s in self.train})

    def summary(self) -> str:
        """One line per split: images, identities, cameras."""
        lines = [f"dataset {self.name} at {self.root}"]
        for split in ("train", "query", "gallery"):
            samples: tuple[Sample, ...] = getattr(self, split)
            pids = {s.pid for s in samples}
            cams = {s.camid for s in samples}
            lines.append(f"  {split:8s} {len(samples):7d} images {len(pids):6d} ids {len(cams):3d} cameras")
        return "\n".join(lines)


def relabel(samples: Iterable[Sample]) -> tuple[Sample, ...]:
    """Map the pids of `samples` to 0..N-1 in sorted order."""
    samples = list(samples)
    mapping = {pid: i for i, pid in enumerate(sorted({s.pid for s in samples}))}
    return tuple(Sample(s.path, mapping[s.pid], s.camid) for s in samples)


def load_image(path: str | Path) -> Image.Image:
    """Decode an image file to RGB; a missing or undecodable file raises PipelineError naming it."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except FileNotFoundError:
        raise PipelineError(f"image file {path} does not exist") from None
    # ImportError: once ultralytics is imported it patches Image.open to look for a HEIF plugin on failure.
    except (UnidentifiedImageError, OSError, ValueError, ImportError) as exc:
        raise PipelineError(f"cannot decode image {path} ({exc}); remove or replace the file") from None


class ImageDataset(Dataset):
    """Decodes samples to `(image_tensor, pid, camid)` through `transform`."""

    def __init__(self, *, samples: Iterable[Sample], transform: Callable[[Image.Image], Any]) -> None:
        self.samples = tuple(samples)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Any, int, int]:
        sample = self.samples[index]
        return self.transform(load_image(sample.path)), sample.pid, sample.camid
