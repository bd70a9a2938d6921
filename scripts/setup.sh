#!/usr/bin/env bash
# Installs what alpr-edge needs on a fresh Debian/Ubuntu machine: mosquitto (for the demo
# and the tests) and the package with its development extras. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
if ! command -v mosquitto >/dev/null 2>&1 && [ ! -x /usr/sbin/mosquitto ]; then
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq mosquitto >/dev/null
fi
# The package service would start a broker on :1883 we do not use; the demo and the tests
# start their own on a free loopback port.
python3 -m pip install -q --disable-pip-version-check -e '.[dev]'
# Model training only (not the daemon, not the tests): torch and the extra plate-like fonts the
# synthetic renderer draws from (scripts/synth/plates.py).
if [ "${1:-}" = "--training" ]; then
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get install -y -qq --no-install-recommends fonts-bebas-neue fonts-urw-base35 \
        fonts-texgyre fonts-open-sans fonts-b612 fonts-league-spartan fonts-noto-core >/dev/null
    python3 -m pip install -q --disable-pip-version-check -e ".[dev,train]"
fi
