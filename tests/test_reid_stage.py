"""ReIDStage and the micro-batcher: embedding, dynamic batching and order, through thread and process queues."""

from __future__ import annotations

import logging
import multiprocessing as mp
import queue
import threading
import time

import numpy as np
import pytest
from pets_crops import identity_crops

from pipeline.batching import MicroBatcher
from pipeline.embedders.base import l2_normalize
from pipeline.messages import Crop, Embedding, EndOfStream, Tracks
from pipeline.reid_stage import ReIDStage
from pipeline.runtime.serving import serve_batches


class FakeEmbedder:
    """A tiny embedder: the feature of a crop is its normalised (mean B, mean G, mean R, height)."""

    dim = 4

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.batches: list[int] = []

    def embed(self, crops: list[np.ndarray]) -> np.ndarray:
        self.batches.append(len(crops))
        time.sleep(self.delay_s)
        rows = []
        for crop in crops:
            if crop.size == 0:
                raise ValueError(f"empty crop {crop.shape}")
            rows.append([*crop.reshape(-1, 3).mean(axis=0), crop.shape[0]])
        return l2_normalize(np.array(rows, np.float32).reshape(-1, 4))


def _crop(camera: str, track: int, frame: int, height: int = 40, value: int | None = None) -> Crop:
    fill = (track * 37 + frame) % 256 if value is None else value
    return Crop(camera, track, frame, frame / 10.0, np.full((height, 20, 3), fill, np.uint8), 0.5)


def _tracks(camera: str, frame: int) -> Tracks:
    xyxy = np.array([[0, 0, 10, 40]], np.float32)
    return Tracks(camera, frame, frame / 10.0, xyxy, np.ones(1, np.float32), np.array([1], np.int64))


def _key(message: Crop | Embedding) -> tuple:
    """What must survive the stage: the crop's camera, track and frame."""
    return (message.camera_id, message.track_id, message.frame_index)


def _drain(outbox, timeout: float = 10.0) -> list:
    """Messages until EndOfStream."""
    out = []
    while True:
        message = outbox.get(timeout=timeout)
        if isinstance(message, EndOfStream):
            return out
        out.append(message)


def _serve(stage: ReIDStage, inbox, outbox) -> None:
    """The local runtime's re-ID loop around `stage`: crops in, embeddings out, EndOfStream at the end."""

    def run_batch(crops):
        for embedding in stage.update_batch(crops):
            outbox.put(embedding)

    serve_batches(inbox, MicroBatcher(stage.max_batch, stage.max_wait_ms), run_batch, take=lambda m: True)
    outbox.put(EndOfStream("reid"))


def _run_in_thread(stage: ReIDStage, inbox, outbox) -> threading.Thread:
    thread = threading.Thread(target=_serve, args=(stage, inbox, outbox), daemon=True)
    thread.start()
    return thread


def test_embed_keeps_crop_identity_and_is_pure():
    stage = ReIDStage(FakeEmbedder(), max_batch=4)
    crops = [_crop("a", 1, 3), _crop("b", 2, 5, height=60)]
    embeddings = stage.embed(crops)
    assert [(e.camera_id, e.track_id, e.frame_index, e.timestamp, e.quality) for e in embeddings] == [
        ("a", 1, 3, 0.3, 0.5),
        ("b", 2, 5, 0.5, 0.5),
    ]
    np.testing.assert_allclose(embeddings[0].vector, FakeEmbedder().embed([crops[0].image])[0])
    assert stage.stats()["crops"] == 0


def test_a_crop_that_fails_is_skipped_with_a_warning(caplog):
    stage = ReIDStage(FakeEmbedder(), max_batch=8)
    empty = Crop("a", 9, 2, 0.2, np.zeros((0, 20, 3), np.uint8), 0.5)
    crops = [_crop("a", 1, 2), empty, _crop("a", 2, 2)]
    with caplog.at_level(logging.WARNING, logger="pipeline.reid_stage"):
        embeddings = stage.embed(crops)
    assert [e.track_id for e in embeddings] == [1, 2]
    assert "track 9" in caplog.text


def test_update_embeds_one_crop_and_rejects_other_messages():
    stage = ReIDStage(FakeEmbedder())
    [embedding] = stage.update(_crop("a", 4, 2))
    assert (embedding.camera_id, embedding.track_id, embedding.frame_index) == ("a", 4, 2)
    assert stage.finish() == []
    with pytest.raises(TypeError, match="Tracks"):
        stage.update(_tracks("a", 1))


def test_a_failing_batch_is_retried_crop_by_crop(caplog):
    class Picky(FakeEmbedder):
        def embed(self, crops):
            if any(c.shape[0] == 13 for c in crops):
                raise RuntimeError("cannot embed a 13 px crop")
            return super().embed(crops)

    stage = ReIDStage(Picky())
    with caplog.at_level(logging.WARNING, logger="pipeline.reid_stage"):
        out = stage.update_batch([_crop("a", 1, 1), _crop("a", 2, 1, height=13), _crop("a", 3, 2)])
    assert [(m.track_id, m.frame_index) for m in out] == [(1, 1), (3, 2)]
    assert "13 px" in caplog.text
    assert stage.stats()["skipped"] == 1 and stage.stats()["batches"] == 1


def test_every_crop_of_concurrent_producers_is_embedded():
    sent = {camera: [_crop(camera, t, f) for f in range(1, 31) for t in range(1, 4)] for camera in "abc"}
    inbox, outbox = queue.Queue(maxsize=16), queue.Queue()
    stage = ReIDStage(FakeEmbedder(delay_s=0.002), max_batch=8, max_wait_ms=5)

    def produce(messages):
        rng = np.random.default_rng(len(messages))
        for message in messages:
            inbox.put(message)
            if rng.random() < 0.2:
                time.sleep(0.002)

    producers = [threading.Thread(target=produce, args=(s,)) for s in sent.values()]
    thread = _run_in_thread(stage, inbox, outbox)
    for producer in producers:
        producer.start()
    for producer in producers:
        producer.join()
    inbox.put(EndOfStream("runner"))
    out = _drain(outbox)
    thread.join(timeout=5)
    assert not thread.is_alive()
    for camera, crops in sent.items():  # each camera's embeddings keep the order its crops were sent in
        assert [_key(m) for m in out if m.camera_id == camera] == [_key(m) for m in crops]
    stats = stage.stats()
    assert stats["crops"] == sum(len(c) for c in sent.values())
    assert stats["batches"] == len(stage.embedder.batches)
    assert max(stage.embedder.batches) <= 8


def _stage_process(inbox, outbox) -> None:
    _serve(ReIDStage(FakeEmbedder(), max_batch=4, max_wait_ms=10), inbox, outbox)


def test_order_through_a_stage_process():
    context = mp.get_context("spawn")
    inbox, outbox = context.Queue(maxsize=32), context.Queue()
    process = context.Process(target=_stage_process, args=(inbox, outbox), daemon=True)
    process.start()
    sent = [
        _crop(camera, t, f)
        for camera, frames in (("a", 20), ("b", 10))
        for f in range(1, frames + 1)
        for t in (1, 2)
    ]
    for message in sent:
        inbox.put(message)
    inbox.put(EndOfStream("runner"))
    out = _drain(outbox, timeout=30)
    process.join(timeout=10)
    assert process.exitcode == 0
    assert [_key(m) for m in out] == [_key(m) for m in sent]
    expected = FakeEmbedder().embed([m.image for m in sent])
    np.testing.assert_allclose(np.stack([m.vector for m in out]), expected, atol=1e-6)


def test_real_onnx_model_keeps_order_and_features(assets):
    from pipeline.embedders.onnx import OnnxEmbedder

    embedder = OnnxEmbedder(assets / "models" / "osnet_x0_25_msmt17.onnx")
    people = identity_crops(assets, [1, 60])
    sent = [Crop("pets", person, frame, frame / 7.0, image, 0.8) for person, frame, image in people]
    inbox, outbox = queue.Queue(), queue.Queue()
    for message in [*sent, EndOfStream("runner")]:
        inbox.put(message)
    stage = ReIDStage(embedder, max_batch=4, max_wait_ms=1000)
    _serve(stage, inbox, outbox)
    out = _drain(outbox, timeout=1)
    assert [_key(m) for m in out] == [_key(m) for m in sent]
    vectors = np.stack([m.vector for m in out])
    np.testing.assert_allclose(vectors, embedder.embed([image for _, _, image in people]), atol=1e-4)
    assert stage.stats()["batches"] == -(-len(people) // 4)


def test_queued_crops_are_batched_up_to_max_batch():
    inbox, outbox = queue.Queue(), queue.Queue()
    for i in range(100):
        inbox.put(_crop("a", i, 1))
    inbox.put(EndOfStream("runner"))
    stage = ReIDStage(FakeEmbedder(), max_batch=16, max_wait_ms=1000)
    _serve(stage, inbox, outbox)
    assert len(_drain(outbox, timeout=1)) == 100
    assert stage.embedder.batches == [16] * 6 + [4]
    stats = stage.stats()
    assert stats["batches"] == 7 and stats["mean_batch_size"] == pytest.approx(100 / 7)
    assert stats["crops_per_second"] > 0 and stats["embed_seconds"] > 0


def test_a_lone_crop_waits_about_max_wait():
    max_wait_ms = 100
    inbox, outbox = queue.Queue(), queue.Queue()
    stage = ReIDStage(FakeEmbedder(), max_batch=8, max_wait_ms=max_wait_ms)
    thread = _run_in_thread(stage, inbox, outbox)
    start = time.monotonic()
    inbox.put(_crop("a", 1, 1))
    assert isinstance(outbox.get(timeout=5), Embedding)
    waited = time.monotonic() - start
    inbox.put(EndOfStream("runner"))
    assert isinstance(outbox.get(timeout=5), EndOfStream)
    thread.join(timeout=5)
    assert max_wait_ms / 1000 * 0.9 <= waited < max_wait_ms / 1000 + 0.5


def test_slow_trickle_runs_batches_of_one():
    inbox, outbox = queue.Queue(), queue.Queue()
    stage = ReIDStage(FakeEmbedder(), max_batch=8, max_wait_ms=10)
    thread = _run_in_thread(stage, inbox, outbox)
    for i in range(4):
        inbox.put(_crop("a", i, 1))
        assert isinstance(outbox.get(timeout=5), Embedding)  # each arrives without waiting for a full batch
    inbox.put(EndOfStream("runner"))
    assert isinstance(outbox.get(timeout=5), EndOfStream)
    thread.join(timeout=5)
    assert stage.embedder.batches == [1, 1, 1, 1]


def test_end_of_stream_flushes_without_waiting():
    inbox, outbox = queue.Queue(), queue.Queue()
    stage = ReIDStage(FakeEmbedder(), max_batch=64, max_wait_ms=30_000)
    sent = [_crop("a", 1, 1), _crop("a", 2, 1)]
    for message in [*sent, EndOfStream("runner")]:
        inbox.put(message)
    start = time.monotonic()
    _serve(stage, inbox, outbox)
    assert time.monotonic() - start < 5
    assert [_key(m) for m in _drain(outbox, timeout=1)] == [_key(m) for m in sent]
    assert outbox.empty()


def test_the_batcher_runs_a_batch_when_full_or_due():
    batcher = MicroBatcher(max_batch=3, max_wait_ms=100)
    assert batcher.timeout(0.0) is None and not batcher.due(0.0)
    assert batcher.add("a", now=1.0) is None
    assert batcher.timeout(1.05) == pytest.approx(0.05)
    assert batcher.add("b", now=1.05) is None
    assert not batcher.due(1.09) and batcher.due(1.1)
    assert batcher.add("c", now=1.2) == ["a", "b", "c"]
    assert len(batcher) == 0 and batcher.timeout(1.2) is None
    batcher.add("d", now=2.0)
    assert batcher.timeout(3.0) == 0.0 and batcher.take() == ["d"]


def test_invalid_settings_are_rejected():
    with pytest.raises(ValueError, match="max_batch"):
        ReIDStage(FakeEmbedder(), max_batch=0)
    with pytest.raises(ValueError, match="max_wait_ms"):
        ReIDStage(FakeEmbedder(), max_wait_ms=-1)
    with pytest.raises(ValueError, match="max_batch"):
        MicroBatcher(max_batch=0)
    with pytest.raises(ValueError, match="max_wait_ms"):
        MicroBatcher(max_wait_ms=-1)
