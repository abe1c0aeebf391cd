#!/usr/bin/env bash
# Install everything iris needs on a fresh Debian machine (run as root, or with sudo):
# system packages (the Fashion-MNIST benchmark data, Chromium for browser tests) and the
# Python package with its extras. Safe to re-run: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != "0" ] && command -v sudo >/dev/null; then SUDO="sudo"; fi

apt_packages=(dataset-fashion-mnist chromium chromium-driver fonts-dejavu-core)
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing system packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

PYTHON=${PYTHON:-python3}
# Installed, importable, and installed from this checkout (not from another clone)?
here="$(pwd)/iris"
installed=$(cd / && $PYTHON -c "import iris, toloka.client, pytest, playwright, os; print(os.path.dirname(iris.__file__))" 2>/dev/null || true)
if [ "$installed" != "$here" ]; then
  echo "installing iris and its Python dependencies (torch 2.14.1 comes from the local cache)"
  $PYTHON -m pip install -q --disable-pip-version-check -e ".[toloka,dev]"
fi
