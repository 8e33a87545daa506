"""The demo: fetching footage with checksums, and a short offline run from REID_ASSETS."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from pipeline.errors import PipelineError
from pipeline.tools import demo


def test_fetch_checks_the_checksum(tmp_path: Path):
    origin = tmp_path / "origin.bin"
    origin.write_bytes(b"footage" * 1000)
    digest = hashlib.sha256(origin.read_bytes()).hexdigest()
    target = tmp_path / "cache/footage.bin"
    assert demo.fetch(origin.as_uri(), digest, target) == target
    assert target.read_bytes() == origin.read_bytes()
    with pytest.raises(PipelineError, match="checksum mismatch"):
        demo.fetch(origin.as_uri(), "0" * 64, tmp_path / "cache/other.bin")
    assert not list((tmp_path / "cache").glob("other*"))


def test_no_network_says_what_to_provide(tmp_path: Path):
    with pytest.raises(PipelineError, match="set REID_ASSETS") as err:
        demo.fetch("http://127.0.0.1:9/vtest.avi", "0" * 64, tmp_path / "vtest.avi")
    assert "\n" not in str(err.value)


def test_demo_runs_offline_from_assets(assets: Path, tmp_path: Path, capsys):
    assert demo.main(["--frames", "20", "-o", str(tmp_path / "demo")]) == 0
    printed = capsys.readouterr().out
    assert "annotated videos" in printed
    tracks = json.loads((tmp_path / "demo/run/tracks.json").read_text())
    assert [c["frames"] for c in tracks["cameras"]] == [20, 20]
    assert tracks["identities"]
