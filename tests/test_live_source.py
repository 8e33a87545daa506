"""LiveSource against real RTSP servers on loopback: frames, reconnects, stalls, failures, frame policies."""

from __future__ import annotations

import logging
import random
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from rtsp_server import (
    GstRtspServer,
    PerlRtspServer,
    free_port,
    gst_server_missing,
    make_clip,
    perl_server_missing,
)

from pipeline.errors import SourceError
from pipeline.sources import live
from pipeline.sources.capture import backoff_delay, capture_options
from pipeline.sources.live import LiveSource

FAST = {"open_timeout_s": 3.0, "read_timeout_s": 2.0, "backoff_initial_s": 0.2, "backoff_max_s": 0.5}


@pytest.fixture(scope="session")
def clip(assets: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 30 s, 192x144, 10 fps H.264 clip of PETS09-S2L1, made once per session."""
    if reason := perl_server_missing():
        pytest.skip(reason)
    video = assets / "data" / "PETS09-S2L1" / "vtest.avi"
    return make_clip(video, tmp_path_factory.mktemp("rtsp") / "pets.mp4")


@pytest.fixture
def perl_server(clip: Path, tmp_path: Path):
    """An rtsp-server-perl + ffmpeg publisher pair, not yet started (RTP over UDP)."""
    server = PerlRtspServer(clip, tmp_path)
    yield server
    server.stop()


@pytest.fixture
def gst_server(clip: Path, tmp_path: Path):
    """A GStreamer RTSP server, not yet started (RTP over TCP)."""
    if reason := gst_server_missing():
        pytest.skip(reason)
    server = GstRtspServer(clip, tmp_path)
    yield server
    server.stop()


@pytest.fixture
def silent_port():
    """A loopback port whose listening socket never accepts: connections hang, nothing is ever answered."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock.getsockname()[1]


def wait_for(predicate, timeout_s: float, what: str) -> float:
    """Poll `predicate` until true; return the seconds it took, fail the test after `timeout_s`."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout_s:
            pytest.fail(f"{what} did not happen within {timeout_s} s")
        time.sleep(0.02)
    return time.monotonic() - start


def take_fresh_frames(source: LiveSource, count: int, since: float, timeout_s: float = 15.0) -> list:
    """The next `count` frames timestamped after `since` (older buffered frames are skipped)."""
    frames, deadline = [], time.monotonic() + timeout_s
    for frame in source.frames():
        if frame.timestamp > since:
            frames.append(frame)
        if len(frames) == count or time.monotonic() > deadline:
            break
    assert len(frames) == count, f"got {len(frames)} fresh frames of {count}; state {source.state}"
    return frames


@pytest.mark.parametrize("server_name", ["perl_server", "gst_server"])
def test_frames_arrive_with_wall_clock_timestamps(request, server_name):
    server = request.getfixturevalue(server_name)
    server.start()
    started = time.time()
    source = LiveSource("cam_a", server.url, transport=server.transport, **FAST)
    with source:
        frames = take_fresh_frames(source, 12, since=0.0)
        done = time.time()
    assert [f.index for f in frames] == list(range(1, 13))
    assert all(f.camera_id == "cam_a" and f.image.shape == (144, 192, 3) for f in frames)
    stamps = np.array([f.timestamp for f in frames])
    assert started <= stamps[0] and stamps[-1] <= done
    assert np.all(np.diff(stamps) >= 0)
    assert 8 <= source.fps <= 12  # the clip is 10 fps
    states = [change.state for change in source.state_changes()]
    assert states[:2] == ["connecting", "live"] and states[-1] == "stopped"
    assert source.state == "stopped"


def test_camera_down_at_start_connects_when_it_comes_up(perl_server):
    with LiveSource("cam_b", perl_server.url, transport="udp", **FAST) as source:
        wait_for(lambda: source.state == "retrying", 5, "a failed first attempt")
        time.sleep(0.5)  # a few refused attempts
        assert source.state == "retrying"
        perl_server.start()
        up = time.time()
        take_fresh_frames(source, 3, since=up)
        assert source.state == "live"
        assert source.reconnects == 0  # it had never been live: this is its first connection
    states = [change.state for change in source.state_changes()]
    assert states[0] == "connecting" and "retrying" in states and "live" in states


def test_reconnects_after_every_server_restart(perl_server):
    perl_server.start()
    with LiveSource("cam_c", perl_server.url, transport="udp", **FAST) as source:
        take_fresh_frames(source, 3, since=0.0)
        for restart in range(1, 4):
            perl_server.stop()
            wait_for(lambda: source.state == "retrying", 5, f"losing the stream (stop {restart})")
            perl_server.start()
            back = time.time()
            frames = take_fresh_frames(source, 3, since=back)
            assert source.reconnects == restart
            assert frames[0].index > 3 * restart  # indices keep counting across reconnects
    states = [change.state for change in source.state_changes()]
    assert states.count("live") == 4 and states.count("retrying") >= 3


def test_stalled_stream_fires_read_timeout_and_recovers(perl_server):
    perl_server.start()
    with LiveSource("cam_d", perl_server.url, transport="udp", **FAST) as source:
        take_fresh_frames(source, 3, since=0.0)
        source.state_changes()
        perl_server.pause()  # connections stay open, nothing flows
        took = wait_for(lambda: source.state == "retrying", 6, "the read timeout")
        assert took >= 1.5  # it waited for read_timeout_s (2 s, less the age of the last frame)
        (change,) = source.state_changes()
        assert change.state == "retrying" and "no frame for 2 s" in change.detail
        perl_server.resume()
        take_fresh_frames(source, 2, since=time.time())
        assert source.reconnects == 1


class _BlockingCapture:
    """A capture whose grab() blocks after a few frames, as FFmpeg can on a stream that stalls."""

    def __init__(self, release: threading.Event) -> None:
        self.release_event, self.grabs = release, 0

    def isOpened(self) -> bool:
        return True

    def get(self, prop: int) -> float:
        return 10.0

    def grab(self) -> bool:
        self.grabs += 1
        if self.grabs > 3:
            self.release_event.wait()
            return False
        time.sleep(0.05)
        return True

    def retrieve(self) -> tuple[bool, np.ndarray]:
        return True, np.zeros((4, 6, 3), np.uint8)

    def release(self) -> None:
        pass


def test_watchdog_fires_even_when_the_capture_blocks(monkeypatch):
    unblock = threading.Event()
    monkeypatch.setattr(live, "open_capture", lambda *args, **kwargs: _BlockingCapture(unblock))
    source = LiveSource("cam_e", "rtsp://cam.example/x", read_timeout_s=0.5, max_retries=0)
    try:
        start = time.monotonic()
        frames = list(source.frames())  # ends when the camera fails
        elapsed = time.monotonic() - start
    finally:
        unblock.set()
        source.close()
    assert len(frames) == 3 and source.state == "failed"
    assert elapsed < 2.5
    assert "no frame for 0.5 s" in str(source.error)


def test_refused_url_fails_with_a_redacted_error(caplog):
    url = f"rtsp://admin:s3cr3t@127.0.0.1:{free_port()}/live"
    source = LiveSource("cam_f", url, max_retries=2, **FAST)
    with caplog.at_level(logging.DEBUG, logger="pipeline"):
        start = time.monotonic()
        assert list(source.frames()) == []
        elapsed = time.monotonic() - start
    source.close()
    assert source.state == "failed" and elapsed < 5
    assert isinstance(source.error, SourceError)
    message = str(source.error)
    assert "cam_f" in message and "rtsp://***@127.0.0.1:" in message and "3 attempts" in message
    records = source.state_changes()
    assert [r.state for r in records] == ["connecting", "retrying", "retrying", "failed"]
    everything = message + caplog.text + repr(records)
    assert "s3cr3t" not in everything and "admin" not in everything


def test_host_that_never_answers_fails_within_a_bounded_time(silent_port):
    url = f"rtsp://viewer:pw@127.0.0.1:{silent_port}/live"
    source = LiveSource("cam_g", url, open_timeout_s=1.0, max_retries=1, backoff_initial_s=0.1)
    start = time.monotonic()
    assert list(source.frames()) == []
    elapsed = time.monotonic() - start
    source.close()
    assert source.state == "failed"
    assert 2.0 <= elapsed < 5.0  # two attempts of about open_timeout_s each
    assert "cam_g" in str(source.error) and f"rtsp://***@127.0.0.1:{silent_port}/live" in str(source.error)


def test_close_is_prompt_while_connecting(silent_port):
    source = LiveSource("cam_h", f"rtsp://127.0.0.1:{silent_port}/live", open_timeout_s=10.0)
    source.open()
    time.sleep(0.3)
    assert source.state == "connecting"
    start = time.monotonic()
    source.close()
    assert time.monotonic() - start < 1.2
    assert source.state == "stopped"
    assert list(source.frames()) == []


def test_latest_policy_drops_stale_frames_for_a_slow_consumer(perl_server):
    perl_server.start()
    with LiveSource("cam_i", perl_server.url, transport="udp", frame_policy="latest", **FAST) as source:
        take_fresh_frames(source, 1, since=0.0)
        ages = []
        for frame in source.frames():
            ages.append(time.time() - frame.timestamp)
            if len(ages) == 4:
                break
            time.sleep(0.45)  # the stream delivers about 4 frames meanwhile
    assert source.frames_dropped >= 6
    assert max(ages) < 0.3  # the consumer always got a recent frame, never a backlog


def test_all_policy_keeps_every_frame_for_a_slow_consumer(perl_server):
    perl_server.start()
    with LiveSource("cam_j", perl_server.url, transport="udp", frame_policy="all", **FAST) as source:
        indices = []
        for frame in source.frames():
            indices.append(frame.index)
            if len(indices) == 6:
                break
            time.sleep(0.3)
    assert indices == list(range(1, 7)) and source.frames_dropped == 0


def test_fps_cap_skips_frames(perl_server):
    perl_server.start()
    with LiveSource(
        "cam_k", perl_server.url, transport="udp", fps_cap=4.0, frame_policy="all", **FAST
    ) as source:
        first = take_fresh_frames(source, 1, since=0.0)[0]
        frames = take_fresh_frames(source, 6, since=first.timestamp)
    rate = (len(frames) - 1) / (frames[-1].timestamp - frames[0].timestamp)
    assert rate <= 4.5 and source.frames_skipped >= 5
    assert source.fps == 4.0


def test_backoff_grows_exponentially_up_to_the_cap_with_bounded_jitter():
    rng = random.Random(0)
    assert [backoff_delay(n, 0.5, 30.0, 0.0) for n in (1, 2, 3, 4, 10)] == [0.5, 1.0, 2.0, 4.0, 30.0]
    delays = [backoff_delay(3, 0.5, 30.0, 0.25, rng) for _ in range(200)]
    assert 1.5 <= min(delays) < 1.8 and 2.2 < max(delays) <= 2.5


def test_capture_options_set_the_rtsp_transport_and_keep_user_options():
    assert capture_options("rtsp://h/x", "udp") == "analyzeduration;1000000|rtsp_transport;udp"
    merged = capture_options("rtsp://h/x", "tcp", "rtsp_transport;udp|stimeout;100|analyzeduration;5")
    assert merged == "analyzeduration;5|stimeout;100|rtsp_transport;tcp"  # the camera's transport wins
    assert capture_options("http://h/x.mjpg", "tcp", "stimeout;100") == "stimeout;100"
    assert capture_options("http://h/x.mjpg", "tcp") is None
    assert capture_options(0, "tcp", "stimeout;100") is None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"transport": "quic"},
        {"frame_policy": "oldest"},
        {"fps_cap": 0},
        {"read_timeout_s": 0},
        {"max_retries": -1},
        {"jitter": 1.5},
    ],
)
def test_invalid_arguments_name_the_camera(kwargs):
    with pytest.raises(ValueError, match="camera cam_z"):
        LiveSource("cam_z", "rtsp://h/x", **kwargs)


@pytest.mark.parametrize("source", ["rtsp://h/x", "https://h/video.mjpg", 0, "2"])
def test_create_source_builds_a_live_source_for_streams_and_webcams(source):
    from pipeline.sources import create_source

    built = create_source("cam_y", source, transport="udp", fps_cap=5.0, max_retries=3, frame_policy="latest")
    assert isinstance(built, LiveSource) and built.state == "connecting" and built.max_retries == 3
