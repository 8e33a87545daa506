"""The viewer's web app (FastAPI): identity gallery, timelines, search and video playback over one run."""

from __future__ import annotations

import json
import logging
import secrets
import threading
from pathlib import Path
from typing import Annotated

from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles

from pipeline.errors import PipelineError
from pipeline.search import RunSearch, decode_image, parse_time
from pipeline.viewer.video import annotated_video, browser_video

logger = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
TOKEN_COOKIE = "reid_view_token"


def create_app(out_dir: Path | str, *, token: str | None = None, device: str = "cpu") -> FastAPI:
    """The app over the run in `out_dir`; with `token`, every request must carry it (query, cookie or bearer)."""
    out_dir = Path(out_dir)
    app = FastAPI(title="reid-pipeline viewer", docs_url=None, redoc_url=None, openapi_url=None)
    embedder_lock = threading.Lock()
    cached: dict = {}

    if token is not None:

        @app.middleware("http")
        async def require_token(request: Request, call_next):
            header = request.headers.get("authorization", "")
            given = (
                request.query_params.get("token")
                or request.cookies.get(TOKEN_COOKIE)
                or (header[7:] if header.lower().startswith("bearer ") else None)
            )
            if given is None or not secrets.compare_digest(given, token):
                return PlainTextResponse("this viewer needs its access token (?token=...)", status_code=401)
            response = await call_next(request)
            if request.query_params.get("token"):
                response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict")
            return response

    def open_search() -> RunSearch:
        with embedder_lock:
            search = RunSearch(out_dir, device=device, embedder=cached.get("embedder"))
        return search

    @app.get("/")
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/app.js")
    def script() -> FileResponse:
        return FileResponse(STATIC / "app.js", media_type="text/javascript")

    @app.get("/api/run")
    def run_state() -> JSONResponse:
        info = _read_json(out_dir / "run.json") or {}
        try:
            with open_search() as search:
                identities = [_identity(h) for h in search.identities()]
        except PipelineError:  # the run has not opened its store yet
            identities = []
        return JSONResponse(
            {
                "status": info.get("status", "starting"),
                "cameras": _cameras(out_dir, info),
                "identities": identities,
            }
        )

    @app.post("/api/search")
    def search(
        image: Annotated[UploadFile | None, File()] = None,
        text: Annotated[str, Form()] = "",
        top: Annotated[int, Form()] = 10,
        camera: Annotated[str, Form()] = "",
        since: Annotated[str, Form()] = "",
        until: Annotated[str, Form()] = "",
    ) -> JSONResponse:
        try:
            filters = {
                "top": max(1, min(int(top), 100)),
                "cameras": [c for c in camera.split(",") if c] or None,
                "since": parse_time(since) if since else None,
                "until": parse_time(until) if until else None,
            }
            data = image.file.read() if image is not None else b""
            with open_search() as run:
                if data:
                    hits = run.by_image([decode_image(data)], **filters)
                elif text.strip():
                    hits = run.by_text(text.strip(), **filters)
                else:
                    raise PipelineError("give a photo or a description to search for")
                with embedder_lock:
                    cached.setdefault("embedder", run.embedder)
        except PipelineError as e:
            return JSONResponse({"error": str(e)}, status_code=400)
        return JSONResponse({"hits": [_identity(h) for h in hits]})

    @app.get("/video/{camera}.mp4")
    def video(camera: str) -> FileResponse:
        if camera not in {c["id"] for c in _cameras(out_dir, _read_json(out_dir / "run.json") or {})}:
            return PlainTextResponse(f"no camera {camera}", status_code=404)
        try:
            path = browser_video(out_dir, camera)
        except PipelineError as e:
            return PlainTextResponse(str(e), status_code=503)
        return FileResponse(path, media_type="video/mp4")

    app.mount(
        "/thumbnails", StaticFiles(directory=out_dir / "thumbnails", check_dir=False), name="thumbnails"
    )
    return app


def _identity(hit) -> dict:
    return {
        "global_id": hit.global_id,
        "similarity": hit.similarity,
        "cameras": hit.cameras,
        "thumbnails": hit.thumbnails,
        "appearances": [
            {
                "camera": a.camera,
                "local_track_id": a.local_track_id,
                "first_frame": a.first_frame,
                "last_frame": a.last_frame,
                "start_time": a.start_time,
                "end_time": a.end_time,
            }
            for a in hit.appearances
        ],
    }


def _cameras(out_dir: Path, info: dict) -> list[dict]:
    """Each camera with what playback needs: fps and first frame (video time = (frame - first) / fps)."""
    tracks = _read_json(out_dir / "tracks.json") or {}
    fps = {c["id"]: c.get("fps") for c in tracks.get("cameras", [])}
    stats = info.get("cameras", {})
    cameras = []
    for camera in info.get("config", {}).get("cameras", []):
        cid = camera["id"]
        cameras.append(
            {
                "id": cid,
                "fps": fps.get(cid) or stats.get(cid, {}).get("fps") or 0.0,
                "start_frame": camera.get("start_frame") or 1,
                "video": annotated_video(out_dir, cid) is not None,
            }
        )
    return cameras


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
