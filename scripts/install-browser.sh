#!/usr/bin/env bash
# Install what the viewer's browser test needs: Debian's chromium and its chromedriver (Selenium drives
# them headless), and ffmpeg (the viewer transcodes annotated videos to browser-playable H.264 MP4).
# Idempotent: packages already installed are skipped. Needs root (or sudo) and apt-get.
set -euo pipefail

packages=(
    ffmpeg
    chromium
    chromium-driver
)

missing=()
for pkg in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$pkg")
    fi
done

if [ ${#missing[@]} -eq 0 ]; then
    echo "install-browser: all packages present (${packages[*]})"
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    sudo_cmd=()
elif command -v sudo >/dev/null 2>&1; then
    sudo_cmd=(sudo)
else
    echo "install-browser: need root or sudo to install: ${missing[*]}" >&2
    exit 1
fi

echo "install-browser: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y --no-install-recommends "${missing[@]}"
