"""`reid-pipeline view`: the web app over a run, driven in headless Debian chromium through Selenium."""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
import urllib.request
from pathlib import Path

import cv2
import pytest
from cli_runner import run_cli, start_cli

from pipeline.search import RunSearch
from pipeline.store import EmbeddingStore
from samples.queries import person_queries

pytest.importorskip("fastapi", reason="the viewer extra is not installed (pip install -e '.[viewer]')")

ARTIFACTS = Path(os.environ.get("REID_TEST_ARTIFACTS", Path(__file__).parent / "artifacts"))
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_http(url: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            assert time.monotonic() < deadline, f"{url} did not answer"
            time.sleep(0.3)


@pytest.fixture
def browser():
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
    if not (Path(CHROMIUM).is_file() and Path(CHROMEDRIVER).is_file()):
        pytest.skip("needs Debian's chromium and chromium-driver (scripts/install-browser.sh)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1500,1100",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(120)
    yield driver
    driver.quit()


def test_the_viewer_shows_a_finished_two_camera_run_and_searches_it(pets_finished_run, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    out, manifest = pets_finished_run
    tracks = json.loads((out / "tracks.json").read_text())
    port = _free_port()
    server = start_cli("view", str(out), "--port", str(port), cwd=tmp_path)
    try:
        _wait_http(f"http://127.0.0.1:{port}/api/run")
        browser.get(f"http://127.0.0.1:{port}/")
        wait = WebDriverWait(browser, 120)
        wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-loaded") == "true")
        cards = browser.find_elements(By.CSS_SELECTOR, "#gallery .identity")
        shown = {int(c.get_attribute("data-global-id")) for c in cards}
        assert shown == {i["global_id"] for i in tracks["identities"]}
        assert browser.find_element(By.ID, "status").text == "run complete"
        with_thumbnails = {
            i["global_id"] for i in tracks["identities"] if any(a["thumbnails"] for a in i["appearances"])
        }
        for card in cards:
            images = card.find_elements(By.TAG_NAME, "img")
            assert (len(images) > 0) == (int(card.get_attribute("data-global-id")) in with_thumbnails)
            assert all(browser.execute_script("return arguments[0].naturalWidth", img) > 0 for img in images)

        # An identity seen by both cameras: its timeline has a bar per appearance, in both cameras' rows.
        both = next(i for i in tracks["identities"] if len({a["camera"] for a in i["appearances"]}) == 2)
        browser.find_element(
            By.CSS_SELECTOR, f"#gallery .identity[data-global-id='{both['global_id']}']"
        ).click()
        bars = browser.find_elements(By.CSS_SELECTOR, "#timeline rect.appearance")
        assert len(bars) == len(both["appearances"])
        assert {b.get_attribute("data-camera") for b in bars} == {"left", "right"}
        # Playback at an appearance: the H.264 copy loads in the browser and seeks to the appearance.
        appearance = max(both["appearances"], key=lambda a: a["first_frame"])
        link = next(
            a
            for a in browser.find_elements(By.CSS_SELECTOR, "#detail a.appearance-link")
            if a.text.startswith(f"{appearance['camera']} track {appearance['local_track_id']}:")
        )
        link.click()
        expected = (appearance["first_frame"] - 1) / next(
            c["fps"] for c in tracks["cameras"] if c["id"] == appearance["camera"]
        )
        wait.until(
            lambda d: d.execute_script(
                "const v = document.getElementById('player'); return v.readyState >= 2 && !v.seeking"
            )
        )
        assert browser.execute_script("return document.getElementById('player').error") is None
        position = browser.execute_script("return document.getElementById('player').currentTime")
        assert abs(position - expected) < 1.0, (position, expected)

        # Search from the page with a photo of a person: the results are the run's own ranking.
        query = person_queries(manifest)[0]
        photo = tmp_path / "query.jpg"
        cv2.imwrite(str(photo), query.image)
        browser.find_element(By.ID, "photo").send_keys(str(photo))
        browser.find_element(By.ID, "search-button").click()
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#results .hit"))
        hits = [
            int(h.get_attribute("data-global-id"))
            for h in browser.find_elements(By.CSS_SELECTOR, "#results .hit")
        ]
        with RunSearch(out) as search:
            assert hits == [h.global_id for h in search.by_image([cv2.imread(str(photo))], top=10)]
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        screenshot = ARTIFACTS / "viewer.png"
        assert browser.save_screenshot(str(screenshot))
        print(f"viewer screenshot: {screenshot}")
        # A description on a run without VPM-Net says why, in the page.
        browser.find_element(By.ID, "photo").clear()
        browser.find_element(By.ID, "text").send_keys("a man in a red jacket")
        browser.find_element(By.ID, "search-button").click()
        wait.until(lambda d: "vpm" in d.find_element(By.ID, "search-error").text)
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_other_binds_need_a_token(tmp_path):
    (tmp_path / "run.json").write_text(json.dumps({"status": "complete", "config": {"cameras": []}}))
    result = run_cli("view", str(tmp_path), "--host", "0.0.0.0", cwd=tmp_path, timeout=60)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "--token" in result.stderr


def test_a_token_guards_every_request_and_the_api_refreshes_live(tmp_path):
    from fastapi.testclient import TestClient

    from pipeline.viewer.app import create_app

    config = {"cameras": [{"id": "cam"}], "reid": {"embedder": "onnx"}, "store": {"path": None}}
    (tmp_path / "run.json").write_text(json.dumps({"status": "running", "config": config}))
    client = TestClient(create_app(tmp_path, token="s3cret"))
    assert client.get("/api/run").status_code == 401
    assert client.get("/api/run?token=wrong").status_code == 401
    first = client.get("/?token=s3cret")
    assert first.status_code == 200 and "reid-pipeline viewer" in first.text
    assert client.get("/api/run").json() == {  # the cookie set by the first page carries the token
        "status": "running",
        "cameras": [{"id": "cam", "fps": 0.0, "start_frame": 1, "video": False}],
        "identities": [],
    }
    # While the run goes on, what it commits to its store shows on the next poll.
    store = EmbeddingStore(tmp_path / "store" / "gallery.sqlite", dim=4)
    session = store.begin_session()
    gid = store.new_identity(0.0)
    store.upsert_tracklet(
        session, "cam", 3, global_id=gid, first_frame=2, last_frame=9, first_time=0.1, last_time=0.9
    )
    store.commit()
    identities = client.get("/api/run", headers={"Authorization": "Bearer s3cret"}).json()["identities"]
    assert [(i["global_id"], i["cameras"], len(i["appearances"])) for i in identities] == [(gid, ["cam"], 1)]
    store.close()
    assert client.get("/video/cam.mp4").status_code == 503  # no finished video yet: said, not crashed
