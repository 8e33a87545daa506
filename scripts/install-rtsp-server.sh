#!/usr/bin/env bash
# Install what the live-source tests need: ffmpeg (publisher), rtsp-server-perl (an RTSP server speaking
# RTP over UDP) and GStreamer's RTSP server with Python bindings (speaks RTP over TCP too).
# Idempotent: packages already installed are skipped. Needs root (or sudo) and apt-get.
set -euo pipefail

packages=(
    ffmpeg
    rtsp-server-perl
    python3-gi
    gir1.2-gst-rtsp-server-1.0
    gstreamer1.0-plugins-base
    gstreamer1.0-plugins-good
    gstreamer1.0-plugins-bad
)

missing=()
for pkg in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$pkg")
    fi
done

if [ ${#missing[@]} -eq 0 ]; then
    echo "install-rtsp-server: all packages present (${packages[*]})"
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    sudo_cmd=()
elif command -v sudo >/dev/null 2>&1; then
    sudo_cmd=(sudo)
else
    echo "install-rtsp-server: need root or sudo to install: ${missing[*]}" >&2
    exit 1
fi

echo "install-rtsp-server: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y --no-install-recommends "${missing[@]}"
