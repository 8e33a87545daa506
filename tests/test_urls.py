"""redact_url: credentials in camera URLs never reach logs, errors or exports."""

from __future__ import annotations

import pytest

from pipeline.sources.urls import describe_source, redact_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("rtsp://user:pass@host/x", "rtsp://***@host/x"),
        ("rtsp://admin:p@ss/w0rd@10.0.0.5:554/Streaming/101", "rtsp://***@10.0.0.5:554/Streaming/101"),
        ("rtsps://onlyuser@cam.local/live", "rtsps://***@cam.local/live"),
        ("http://u:p@cam:8080/video.mjpg?fps=5", "http://***@cam:8080/video.mjpg?fps=5"),
        ("http://cam/snap.cgi?user=admin&pwd=hunter2&res=1", "http://cam/snap.cgi?user=***&pwd=***&res=1"),
        ("https://cam/stream?token=abc.def", "https://cam/stream?token=***"),
        ("rtsp://127.0.0.1:8554/live", "rtsp://127.0.0.1:8554/live"),
        ("videos/a.mp4", "videos/a.mp4"),
        # Any scheme, and the typos a hand-written URL gets.
        ("rtps://admin:pw@host/x", "rtps://***@host/x"),
        ("ftp://admin:pw@host/x", "ftp://***@host/x"),
        ("rtsp:/admin:pw@host/x", "rtsp:/***@host/x"),
        ("rtsp:///admin:pw@host/x", "rtsp:///***@host/x"),
        ("rtsp//admin:pw@host/x", "rtsp//***@host/x"),
        ("admin:pw@host/x", "admin:***@host/x"),
        ("admin:pw:more@host/x", "admin:***@host/x"),
        ("rtsp://admin:p?ss#w@host/x", "rtsp://***@host/x"),
        ("[{id: a, source: 'rtsp://admin:pw@h/x'}]", "***@h/x'}]"),
        ("/data/me@home/a.mp4", "/data/me@home/a.mp4"),
        # ${VAR} references are not secrets (a resumed run expands them again); defaults may be.
        ("rtsp://admin:${CAM_PW}@host/x", "rtsp://admin:${CAM_PW}@host/x"),
        ("rtsp://${CAM_USER}:${CAM_PW}@host/x", "rtsp://${CAM_USER}:${CAM_PW}@host/x"),
        ("rtsp://admin:${CAM_PW:-pw}@host/x", "rtsp://***@host/x"),
        ("rtsp://admin:pw${CAM_PW}@host/x", "rtsp://***@host/x"),
    ],
)
def test_redact_url(url, expected):
    assert redact_url(url) == expected


def test_describe_source_names_webcams_and_redacts_urls():
    assert describe_source(0) == "webcam 0"
    assert describe_source("rtsp://a:b@h/x") == "rtsp://***@h/x"


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ("cameras.cam_a.source=rtsp://admin:pw@h/x", "cameras.cam_a.source=rtsp://***@h/x"),
        ("cameras.cam_a.source=rtsp:/admin:pw@h/x", "cameras.cam_a.source=rtsp:/***@h/x"),
        ("cameras.cam_a.fps=5", "cameras.cam_a.fps=5"),
        ("admin:pw@h", "admin:***@h"),
    ],
)
def test_redact_override(item, expected):
    from pipeline.run_info import redact_override

    assert redact_override(item) == expected
