#!/usr/bin/env bash
# Sets up a fresh machine, renders a synthetic traffic clip, starts a local mosquitto and
# runs the daemon on the clip, printing the reads that arrive on the broker.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
python3 scripts/demo.py "$@"
