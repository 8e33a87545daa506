"""The re-ID stage: owns the embedder and embeds the crops of all cameras in dynamic micro-batches."""

from __future__ import annotations

import logging
import time

import numpy as np

from pipeline.embedders.base import Embedder
from pipeline.messages import Crop, Embedding

logger = logging.getLogger(__name__)


class ReIDStage:
    """Turns Crop messages into Embedding messages; the crops of one call are embedded as one batch.

    `max_batch` and `max_wait_ms` are the batching policy the runtime applies (a `MicroBatcher`): a batch
    runs when it holds `max_batch` crops or `max_wait_ms` after its first crop arrived.
    """

    def __init__(self, embedder: Embedder, max_batch: int = 32, max_wait_ms: float = 20.0) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, but got {max_batch}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, but got {max_wait_ms}")
        self.embedder = embedder
        self.max_batch = max_batch
        self.max_wait_ms = max_wait_ms
        self._crops = 0
        self._skipped = 0
        self._batches = 0
        self._embed_seconds = 0.0

    def embed(self, crops: list[Crop]) -> list[Embedding]:
        """Embeddings of the crops, in order; a crop that cannot be embedded is skipped with a warning."""
        return [e for e in self._embed_each(crops) if e is not None]

    def stats(self) -> dict[str, float]:
        """Counters of `update_batch`: crops, skipped, batches, mean batch size, embed seconds, crops per second."""
        return {
            "crops": self._crops,
            "skipped": self._skipped,
            "batches": self._batches,
            "mean_batch_size": self._crops / self._batches if self._batches else 0.0,
            "embed_seconds": self._embed_seconds,
            "crops_per_second": self._crops / self._embed_seconds if self._embed_seconds > 0 else 0.0,
        }

    def update(self, message: Crop) -> list[Embedding]:
        """The Embedding of one crop (none where it cannot be embedded)."""
        if not isinstance(message, Crop):
            raise TypeError(f"ReIDStage cannot take a {type(message).__name__} message")
        return self.update_batch([message])

    def update_batch(self, crops: list[Crop]) -> list[Embedding]:
        """Embed `crops` as one batch, counted in `stats()`; a crop that cannot be embedded is skipped."""
        if not crops:
            return []
        start = time.perf_counter()
        embeddings = self._embed_each(crops)
        self._embed_seconds += time.perf_counter() - start
        self._batches += 1
        self._crops += len(crops)
        self._skipped += sum(e is None for e in embeddings)
        return [e for e in embeddings if e is not None]

    def finish(self) -> list[Embedding]:
        """Nothing is held between calls: the runtime's batcher holds the crops of a batch."""
        logger.info("re-ID stage finished: %s", self._stats_line())
        return []

    def _embed_each(self, crops: list[Crop]) -> list[Embedding | None]:
        """One entry per crop: its Embedding, or None where the crop could not be embedded."""
        results: list[Embedding | None] = [None] * len(crops)
        valid = []
        for i, crop in enumerate(crops):
            if crop.image.shape[0] == 0 or crop.image.shape[1] == 0:
                logger.warning(
                    "skipping an empty crop (shape %s) of camera %s track %d frame %d",
                    crop.image.shape,
                    crop.camera_id,
                    crop.track_id,
                    crop.frame_index,
                )
            else:
                valid.append(i)
        if not valid:
            return results
        try:
            features = self._features([crops[i] for i in valid])
            rows = list(zip(valid, features, strict=True))
        except Exception:
            # One bad crop must not cost the others: retry one by one to find it.
            logger.warning("a batch of %d crops failed to embed; retrying one by one", len(valid))
            rows = []
            for i in valid:
                try:
                    rows.append((i, self._features([crops[i]])[0]))
                except Exception as exc:
                    crop = crops[i]
                    logger.warning(
                        "skipping a crop of camera %s track %d frame %d that failed to embed: %s",
                        crop.camera_id,
                        crop.track_id,
                        crop.frame_index,
                        exc,
                    )
        for i, vector in rows:
            crop = crops[i]
            if not np.all(np.isfinite(vector)):
                logger.warning(
                    "skipping a non-finite embedding of camera %s track %d frame %d",
                    crop.camera_id,
                    crop.track_id,
                    crop.frame_index,
                )
                continue
            results[i] = Embedding(
                crop.camera_id, crop.track_id, crop.frame_index, crop.timestamp, vector.copy(), crop.quality
            )
        return results

    def _features(self, crops: list[Crop]) -> np.ndarray:
        features = np.asarray(self.embedder.embed([c.image for c in crops]), np.float32)
        if features.ndim != 2 or len(features) != len(crops):
            raise ValueError(
                f"embedder returned features of shape {features.shape} for {len(crops)} crops; "
                f"expected ({len(crops)}, dim)"
            )
        return features

    def _stats_line(self) -> str:
        s = self.stats()
        return (
            f"{s['crops']} crops in {s['batches']} batches (mean {s['mean_batch_size']:.1f}), "
            f"{s['skipped']} skipped, {s['crops_per_second']:.1f} crops/s"
        )
