"""Camera passwords never reach the terminal or the run folder, whatever the scheme, typo or way in."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from cli_runner import run_cli, write_run_config

SECRET = "S3cretPw"


@pytest.fixture
def workspace(tmp_path: Path, assets: Path) -> Path:
    (tmp_path / "video.avi").symlink_to(assets / "data/PETS09-S2L1/vtest.avi")
    write_run_config(
        tmp_path,
        assets,
        "  - id: cam_a\n    source: video.avi\n    max_retries: 0\n",
    )
    return tmp_path


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on: a connection is refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _assert_secret_nowhere(result, out: Path) -> None:
    assert "Traceback" not in result.stderr, result.stderr
    assert SECRET not in result.stdout
    assert SECRET not in result.stderr, result.stderr
    for path in out.rglob("*") if out.exists() else []:
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


@pytest.mark.parametrize(
    "source",
    [
        f"rtps://admin:{SECRET}@cam.local/live",
        f"ftp://admin:{SECRET}@cam.local/x.mp4",
        f"rtsp:/admin:{SECRET}@cam.local/live",
        f"admin:{SECRET}@cam.local/live",
    ],
    ids=["mistyped-scheme", "unsupported-scheme", "single-slash", "no-scheme"],
)
def test_bad_source_urls_fail_in_one_line_without_the_password(workspace: Path, source: str):
    config = workspace / "cameras.yaml"
    config.write_text(config.read_text().replace("source: video.avi", f"source: '{source}'"))
    result = run_cli("run", "cameras.yaml", "-o", "out", cwd=workspace)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "camera cam_a" in lines[0], result.stderr
    assert "cam.local" in lines[0]  # the redacted URL still says which camera
    _assert_secret_nowhere(result, workspace / "out")


def test_a_set_override_with_a_password_stays_out_of_run_json(workspace: Path, closed_port: int):
    url = f"rtsp://admin:{SECRET}@127.0.0.1:{closed_port}/live"
    result = run_cli(
        "-v",
        "run",
        "cameras.yaml",
        "-o",
        "out",
        "--no-progress",
        "--set",
        f"cameras.cam_a.source={url}",
        cwd=workspace,
    )
    assert result.returncode in (1, 2), result.stderr
    info = json.loads((workspace / "out/run.json").read_text())
    assert f"cameras.cam_a.source=rtsp://***@127.0.0.1:{closed_port}/live" in info["overrides"]
    assert info["config"]["cameras"][0]["source"] == f"rtsp://***@127.0.0.1:{closed_port}/live"
    _assert_secret_nowhere(result, workspace / "out")


def test_a_password_from_the_environment_is_kept_as_its_reference(
    workspace: Path, closed_port: int, monkeypatch
):
    monkeypatch.setenv("CAM_PW", SECRET)
    override = f"cameras.cam_a.source=rtsp://admin:${{CAM_PW}}@127.0.0.1:{closed_port}/live"
    result = run_cli("-q", "run", "cameras.yaml", "-o", "out", "--set", override, cwd=workspace)
    assert result.returncode in (1, 2), result.stderr
    info = json.loads((workspace / "out/run.json").read_text())
    assert override in info["overrides"]  # what --resume needs to connect again
    _assert_secret_nowhere(result, workspace / "out")
