"""`reid-pipeline view`: a local web app over a run (needs the `viewer` extra: FastAPI and uvicorn)."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

from pipeline.errors import PipelineError

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
TOKEN_ENV = "REID_VIEW_TOKEN"


def serve(
    out_dir: Path | str, *, host: str = "127.0.0.1", port: int = 8765, token: str | None = None
) -> None:
    """Serve the viewer until interrupted. Any bind but localhost needs a token (`--token` or REID_VIEW_TOKEN)."""
    out_dir = Path(out_dir)
    if not (out_dir / "run.json").is_file():
        raise PipelineError(f"{out_dir}: not a run's output folder (no run.json)")
    token = token or os.environ.get(TOKEN_ENV) or None
    if host not in LOCAL_HOSTS and not token:
        raise PipelineError(
            f"view: binding to {host} exposes the run beyond this machine; give --token (or set {TOKEN_ENV})"
        )
    if not 0 <= port <= 65535:
        raise PipelineError(f"view --port: expected 0..65535, got {port}")
    try:
        import uvicorn

        from pipeline.viewer.app import create_app
    except ImportError as e:
        raise PipelineError(
            f"view needs the viewer extra ({e.name} is missing): pip install 'reid-pipeline[viewer]'"
        ) from None
    if port == 0:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.bind((host, 0))
            port = probe.getsockname()[1]
    app = create_app(out_dir, token=token)
    shown = f"[{host}]" if ":" in host else host
    print(f"viewer at http://{shown}:{port}/" + (f"?token={token}" if token else ""), flush=True)
    print("(Ctrl-C stops it)", file=sys.stderr, flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")
