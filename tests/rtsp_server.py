"""Real RTSP servers on loopback for the live-source tests (a helper module, not a test file).

`PerlRtspServer`: Debian's rtsp-server-perl fed by an ffmpeg publisher looping a clip (RTP over UDP only).
`GstRtspServer`: GStreamer's RTSP server serving a clip (RTP over TCP or UDP), run by the system Python
that has the GObject bindings. `scripts/install-rtsp-server.sh` installs both.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

SYSTEM_PYTHON = "/usr/bin/python3"
INSTALL_HINT = "run scripts/install-rtsp-server.sh"

_GST_SCRIPT = """
import sys
import gi
gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer
Gst.init(None)
port, clip = sys.argv[1], sys.argv[2]
server = GstRtspServer.RTSPServer()
server.set_address("127.0.0.1")
server.set_service(port)
factory = GstRtspServer.RTSPMediaFactory()
factory.set_launch(f"( filesrc location={clip} ! qtdemux ! h264parse ! rtph264pay name=pay0 pt=96 config-interval=1 )")
server.get_mount_points().add_factory("/live", factory)
server.attach(None)
GLib.MainLoop().run()
"""


_PERL_MAIN = (
    "my $script = shift @ARGV; "
    "my ($i) = grep { $ARGV[$_] eq '--rtp_start_port' } 0..$#ARGV; "
    "$RTSP::Server::RTP_START_PORT = $ARGV[$i + 1]; "
    "do $script; die $@ if $@;"
)


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def free_udp_pair() -> int:
    """An even loopback UDP port that is free together with the next one (an RTP/RTCP pair)."""
    rng = random.Random()
    for _ in range(100):
        port = rng.randrange(30000, 60000, 2)
        with (
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rtp,
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rtcp,
        ):
            try:
                rtp.bind(("127.0.0.1", port))
                rtcp.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
            return port
    raise RuntimeError("no free UDP port pair found")


def perl_server_missing() -> str | None:
    """Why the rtsp-server-perl setup cannot run here, or None when it can."""
    missing = [name for name in ("rtsp-server-perl", "ffmpeg") if shutil.which(name) is None]
    return f"{' and '.join(missing)} not installed; {INSTALL_HINT}" if missing else None


def gst_server_missing() -> str | None:
    """Why the GStreamer RTSP server cannot run here, or None when it can."""
    check = (
        "import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0'); "
        "from gi.repository import Gst; Gst.init(None); "
        "assert all(Gst.ElementFactory.find(e) for e in ('qtdemux', 'h264parse', 'rtph264pay'))"
    )
    if not Path(SYSTEM_PYTHON).exists():
        return f"{SYSTEM_PYTHON} not found; {INSTALL_HINT}"
    result = subprocess.run([SYSTEM_PYTHON, "-c", check], capture_output=True, timeout=30)
    if result.returncode != 0:
        return f"GStreamer RTSP server (python3-gi, gir1.2-gst-rtsp-server-1.0) not usable; {INSTALL_HINT}"
    return None


def make_clip(video: Path, out: Path, frames: int = 300, width: int = 192, height: int = 144) -> Path:
    """Encode the first `frames` frames of `video` as a small 10 fps H.264 mp4 (cheap to serve)."""
    command = ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(video), "-frames:v", str(frames)]
    command += ["-vf", f"scale={width}:{height}", "-r", "10", "-an", "-pix_fmt", "yuv420p"]
    command += ["-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "10", str(out)]
    subprocess.run(command, check=True, timeout=120)
    return out


def rtsp_answers(port: int, timeout_s: float = 1.0) -> bool:
    """Whether an RTSP server on loopback `port` answers OPTIONS."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
            sock.sendall(f"OPTIONS rtsp://127.0.0.1:{port}/live RTSP/1.0\r\nCSeq: 1\r\n\r\n".encode())
            return sock.recv(64).startswith(b"RTSP/1.0 200")
    except OSError:
        return False


def _wait_until(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise TimeoutError(f"{what} not ready within {timeout_s} s")


def _stop_process(process: subprocess.Popen | None) -> None:
    if process is None or process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(process.pid, signal.SIGCONT)  # a stopped process cannot act on SIGTERM
        process.terminate()
    try:
        process.wait(timeout=3)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=3)


class _Server:
    """Common start/stop/pause handling; `url` stays the same across restarts."""

    def __init__(self, clip: Path, log_dir: Path) -> None:
        self.clip = clip
        self.log_dir = log_dir
        self.port = free_port()
        self.url = f"rtsp://127.0.0.1:{self.port}/live"
        self.processes: list[subprocess.Popen] = []
        self.starts = 0

    def _spawn(self, command: list[str], name: str) -> subprocess.Popen:
        log = open(self.log_dir / f"{name}-{self.starts}.log", "wb")  # noqa: SIM115 - the child owns it
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.processes.append(process)
        return process

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        """Stop every process (publisher first); the port then refuses connections."""
        for process in reversed(self.processes):
            _stop_process(process)
        self.processes = []

    def pause(self) -> None:
        """SIGSTOP every process: connections stay open but nothing flows (a stalled stream)."""
        for process in self.processes:
            os.kill(process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        for process in self.processes:
            os.kill(process.pid, signal.SIGCONT)

    def __enter__(self) -> _Server:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


class PerlRtspServer(_Server):
    """rtsp-server-perl on loopback fed by `ffmpeg -re -stream_loop -1 ... -c copy`; RTP over UDP only."""

    transport = "udp"

    def __init__(self, clip: Path, log_dir: Path) -> None:
        super().__init__(clip, log_dir)
        self.source_port = free_port()
        self.rtp_port = free_udp_pair()

    @property
    def publish_url(self) -> str:
        """Where a publisher sends the stream (`ffmpeg ... -f rtsp URL`)."""
        return f"rtsp://127.0.0.1:{self.source_port}/live"

    def start(self, publish: bool = True) -> None:
        """Start the server and (unless `publish` is false) the clip publisher; return once both are up."""
        self.starts += 1
        # The server resets its RTP port counter to the package default (20000) whenever it has no
        # stream, ignoring --rtp_start_port; setting the default too lets servers run side by side.
        server = ["perl", "-MRTSP::Server", "-e", _PERL_MAIN, "--", shutil.which("rtsp-server-perl")]
        server += ["-c", str(self.port), "-s", str(self.source_port)]
        server += ["--client_listen_address", "127.0.0.1", "--source_listen_address", "127.0.0.1"]
        server += ["--rtp_start_port", str(self.rtp_port)]
        self._spawn(server, "rtsp-server")
        _wait_until(lambda: rtsp_answers(self.source_port), 10, "rtsp-server-perl")
        if not publish:
            return
        command = ["ffmpeg", "-nostdin", "-loglevel", "error", "-re", "-stream_loop", "-1"]
        command += ["-i", str(self.clip), "-c", "copy", "-f", "rtsp", self.publish_url]
        publisher = self._spawn(command, "publisher")
        time.sleep(0.5)  # ANNOUNCE/RECORD take a few round trips; clients may only DESCRIBE after them
        if publisher.poll() is not None:
            raise RuntimeError(f"ffmpeg publisher exited with {publisher.returncode}; see {self.log_dir}")


class GstRtspServer(_Server):
    """GStreamer's RTSP server on loopback, serving the clip to each client from its start (TCP or UDP)."""

    transport = "tcp"

    def start(self) -> None:
        """Start the server; return once it answers."""
        self.starts += 1
        self._spawn([SYSTEM_PYTHON, "-c", _GST_SCRIPT, str(self.port), str(self.clip)], "gst-rtsp-server")
        _wait_until(lambda: rtsp_answers(self.port), 15, "GStreamer RTSP server")


if __name__ == "__main__":  # serve a clip by hand: python tests/rtsp_server.py clip.mp4
    with PerlRtspServer(Path(sys.argv[1]).resolve(), Path(".")) as served:
        sys.stderr.write(f"serving {served.url} (Ctrl-C stops)\n")
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()
