#!/usr/bin/env bash
# Install what the live-source tests need: ffmpeg (publisher), rtsp-server-perl (an RTSP server speaking
# RTP over UDP) and GStreamer's RTSP server with Python bindings (speaks RTP over TCP too).
# Idempotent: packages already installed are skipped. Needs root (or sudo) and apt-get.
set -euo pipefail

exec bash "$(dirname "$0")/apt-install.sh" install-rtsp-server \
    ffmpeg \
    rtsp-server-perl \
    python3-gi \
    gir1.2-gst-rtsp-server-1.0 \
    gstreamer1.0-plugins-base \
    gstreamer1.0-plugins-good \
    gstreamer1.0-plugins-bad
