#!/usr/bin/env bash
# Install Debian packages that are missing: apt-install.sh NAME PACKAGE... (NAME prefixes the messages).
# Idempotent: packages already installed are skipped. Needs root (or sudo) and apt-get.
set -euo pipefail

name="$1"
shift
packages=("$@")

missing=()
for pkg in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$pkg")
    fi
done

if [ ${#missing[@]} -eq 0 ]; then
    echo "$name: all packages present (${packages[*]})"
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    sudo_cmd=()
elif command -v sudo >/dev/null 2>&1; then
    sudo_cmd=(sudo)
else
    echo "$name: need root or sudo to install: ${missing[*]}" >&2
    exit 1
fi

echo "$name: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y --no-install-recommends "${missing[@]}"
