"""ReIDStage: embedding, dynamic batching and message order, through thread and process queues."""

from __future__ import annotations

import logging
import multiprocessing as mp
import queue
import threading
import time

import numpy as np
import pytest
from pets_crops import identity_crops

from pipeline.embedders.base import l2_normalize
from pipeline.messages import CameraFinished, Crop, Embedding, TrackEnded, Tracks
from pipeline.reid_stage import ReIDStage


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


def _camera_stream(camera: str, frames: int) -> list:
    """A camera's messages as a worker sends them: tracks, crops of some tracks, ended tracks, finish."""
    out: list = []
    for frame in range(1, frames + 1):
        out.append(_tracks(camera, frame))
        out += [_crop(camera, track, frame) for track in range(1, 4) if (frame + track) % 3 == 0]
        if frame % 7 == 0:
            out.append(TrackEnded(camera, frame // 7, frame, frame / 10.0))
    out.append(CameraFinished(camera, frames))
    return out


def _key(message) -> tuple:
    """What must survive the stage: message kind (a Crop becomes an Embedding) and its identity."""
    kind = "embedding" if isinstance(message, Crop | Embedding) else type(message).__name__
    fields = [getattr(message, f, None) for f in ("camera_id", "track_id", "frame_index", "frames")]
    return (kind, *(tuple(v.tolist()) if isinstance(v, np.ndarray) else v for v in fields))


def _drain(outbox, timeout: float = 10.0) -> list:
    out = []
    while True:
        message = outbox.get(timeout=timeout)
        if message is None:
            return out
        out.append(message)


def _run_in_thread(stage: ReIDStage, inbox, outbox, **kwargs) -> threading.Thread:
    thread = threading.Thread(target=stage.run, args=(inbox, outbox), kwargs=kwargs, daemon=True)
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


def test_a_failing_batch_is_retried_crop_by_crop(caplog):
    class Picky(FakeEmbedder):
        def embed(self, crops):
            if any(c.shape[0] == 13 for c in crops):
                raise RuntimeError("cannot embed a 13 px crop")
            return super().embed(crops)

    stage = ReIDStage(Picky())
    inbox, outbox = queue.Queue(), queue.Queue()
    for message in [_crop("a", 1, 1), _crop("a", 2, 1, height=13), _tracks("a", 2), _crop("a", 3, 2), None]:
        inbox.put(message)
    with caplog.at_level(logging.WARNING, logger="pipeline.reid_stage"):
        stage.run(inbox, outbox)
    out = _drain(outbox, timeout=1)
    assert [_key(m)[:3] for m in out] == [("embedding", "a", 1), ("Tracks", "a", (1,)), ("embedding", "a", 3)]
    assert "13 px" in caplog.text
    assert stage.stats()["skipped"] == 1


def test_order_is_kept_per_camera_with_concurrent_producers():
    streams = {camera: _camera_stream(camera, 30) for camera in ("a", "b", "c")}
    inbox, outbox = queue.Queue(maxsize=16), queue.Queue()
    stage = ReIDStage(FakeEmbedder(delay_s=0.002), max_batch=8, max_wait_ms=5)

    def produce(messages):
        rng = np.random.default_rng(len(messages))
        for message in messages:
            inbox.put(message)
            if rng.random() < 0.2:
                time.sleep(0.002)

    producers = [threading.Thread(target=produce, args=(s,)) for s in streams.values()]
    thread = _run_in_thread(stage, inbox, outbox)
    for producer in producers:
        producer.start()
    for producer in producers:
        producer.join()
    inbox.put(None)
    out = _drain(outbox)
    thread.join(timeout=5)
    assert not thread.is_alive()
    for camera, sent in streams.items():
        assert [_key(m) for m in out if m.camera_id == camera] == [_key(m) for m in sent]
    assert all(isinstance(m, Embedding) for m in out if _key(m)[0] == "embedding")
    stats = stage.stats()
    assert stats["crops"] == sum(isinstance(m, Crop) for s in streams.values() for m in s)
    assert stats["batches"] == len(stage.embedder.batches)
    assert max(stage.embedder.batches) <= 8


def _stage_process(inbox, outbox) -> None:
    ReIDStage(FakeEmbedder(), max_batch=4, max_wait_ms=10).run(inbox, outbox)


def test_order_through_a_stage_process():
    context = mp.get_context("spawn")
    inbox, outbox = context.Queue(maxsize=32), context.Queue()
    process = context.Process(target=_stage_process, args=(inbox, outbox), daemon=True)
    process.start()
    sent = _camera_stream("a", 20) + _camera_stream("b", 10)
    for message in sent:
        inbox.put(message)
    inbox.put(None)
    out = _drain(outbox, timeout=30)
    process.join(timeout=10)
    assert process.exitcode == 0
    assert [_key(m) for m in out] == [_key(m) for m in sent]
    expected = FakeEmbedder().embed([m.image for m in sent if isinstance(m, Crop)])
    np.testing.assert_allclose(
        np.stack([m.vector for m in out if isinstance(m, Embedding)]), expected, atol=1e-6
    )


def test_real_onnx_model_keeps_order_and_features(assets):
    from pipeline.embedders.onnx import OnnxEmbedder

    embedder = OnnxEmbedder(assets / "models" / "osnet_x0_25_msmt17.onnx")
    people = identity_crops(assets, [1, 60])
    sent = []
    for person, frame, image in people:
        sent.append(_tracks("pets", frame))
        sent.append(Crop("pets", person, frame, frame / 7.0, image, 0.8))
    inbox, outbox = queue.Queue(), queue.Queue()
    for message in [*sent, None]:
        inbox.put(message)
    stage = ReIDStage(embedder, max_batch=4, max_wait_ms=1000)
    stage.run(inbox, outbox)
    out = _drain(outbox, timeout=1)
    assert [_key(m) for m in out] == [_key(m) for m in sent]
    vectors = np.stack([m.vector for m in out if isinstance(m, Embedding)])
    np.testing.assert_allclose(vectors, embedder.embed([image for _, _, image in people]), atol=1e-4)
    assert stage.stats()["batches"] == -(-len(people) // 4)


def test_queued_crops_are_batched_up_to_max_batch():
    inbox, outbox = queue.Queue(), queue.Queue()
    for i in range(100):
        inbox.put(_crop("a", i, 1))
    inbox.put(None)
    stage = ReIDStage(FakeEmbedder(), max_batch=16, max_wait_ms=1000)
    stage.run(inbox, outbox)
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
    inbox.put(_tracks("a", 2))  # held behind the crop
    assert isinstance(outbox.get(timeout=5), Embedding)
    waited = time.monotonic() - start
    assert isinstance(outbox.get(timeout=1), Tracks)
    inbox.put(None)
    assert outbox.get(timeout=5) is None
    thread.join(timeout=5)
    assert max_wait_ms / 1000 * 0.9 <= waited < max_wait_ms / 1000 + 0.5


def test_slow_trickle_runs_batches_of_one():
    inbox, outbox = queue.Queue(), queue.Queue()
    stage = ReIDStage(FakeEmbedder(), max_batch=8, max_wait_ms=10)
    thread = _run_in_thread(stage, inbox, outbox)
    for i in range(4):
        inbox.put(_crop("a", i, 1))
        assert isinstance(outbox.get(timeout=5), Embedding)  # each arrives without waiting for a full batch
    inbox.put(None)
    assert outbox.get(timeout=5) is None
    thread.join(timeout=5)
    assert stage.embedder.batches == [1, 1, 1, 1]


def test_other_messages_pass_at_once_when_nothing_is_pending():
    inbox, outbox = queue.Queue(), queue.Queue()
    stage = ReIDStage(FakeEmbedder(), max_batch=8, max_wait_ms=10_000)
    thread = _run_in_thread(stage, inbox, outbox)
    inbox.put(_tracks("a", 1))
    assert isinstance(outbox.get(timeout=2), Tracks)
    inbox.put(None)
    assert outbox.get(timeout=2) is None
    thread.join(timeout=5)


def test_end_of_stream_flushes_without_waiting():
    inbox, outbox = queue.Queue(), queue.Queue()
    stage = ReIDStage(FakeEmbedder(), max_batch=64, max_wait_ms=30_000)
    sent = [_crop("a", 1, 1), TrackEnded("a", 1, 1, 0.1), _crop("a", 2, 1), CameraFinished("a", 1)]
    for message in [*sent, None]:
        inbox.put(message)
    start = time.monotonic()
    stage.run(inbox, outbox)
    assert time.monotonic() - start < 5
    assert [_key(m) for m in _drain(outbox, timeout=1)] == [_key(m) for m in sent]
    assert outbox.empty()


def test_should_stop_flushes_and_returns_without_end_of_stream():
    inbox, outbox = queue.Queue(), queue.Queue()
    stop = threading.Event()
    stage = ReIDStage(FakeEmbedder(), max_batch=64, max_wait_ms=30_000)
    thread = _run_in_thread(stage, inbox, outbox, should_stop=stop.is_set)
    inbox.put(_crop("a", 1, 1))
    inbox.put(_tracks("a", 2))
    time.sleep(0.05)
    stop.set()
    thread.join(timeout=5)
    assert not thread.is_alive()
    assert [type(outbox.get(timeout=1)) for _ in range(2)] == [Embedding, Tracks]
    assert outbox.empty()


def test_invalid_settings_are_rejected():
    with pytest.raises(ValueError, match="max_batch"):
        ReIDStage(FakeEmbedder(), max_batch=0)
    with pytest.raises(ValueError, match="max_wait_ms"):
        ReIDStage(FakeEmbedder(), max_wait_ms=-1)
