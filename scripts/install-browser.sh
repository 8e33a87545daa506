#!/usr/bin/env bash
# Install what the viewer's browser test needs: Debian's chromium and its chromedriver (Selenium drives
# them headless), and ffmpeg (the viewer transcodes annotated videos to browser-playable H.264 MP4).
# Idempotent: packages already installed are skipped. Needs root (or sudo) and apt-get.
set -euo pipefail

exec bash "$(dirname "$0")/apt-install.sh" install-browser ffmpeg chromium chromium-driver
